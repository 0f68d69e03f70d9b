//! [`Endpoint`]: a parsed `ws://` / `wss://` URL plus its resolved socket addresses.
//!
//! Parsing is pure. [`Endpoint::resolve`] does blocking DNS and therefore runs off the event
//! loop (at start-up, or on a helper thread); the event loop only ever reads the addresses.
//! A host that is an IP literal needs no DNS: `parse` fills in its address.

use std::{
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs},
};

use super::ConnectionError;

/// The venue's public market channel. The path must be `/ws/market`: the bare `/ws/` answers 404
/// (docs/venue-protocol.md §1).
pub const POLYMARKET_MARKET_URL: &str = "wss://ws-subscriptions-clob.polymarket.com/ws/market";

/// `ws` (plain TCP) or `wss` (TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `ws://`, default port 80.
    Ws,
    /// `wss://`, default port 443.
    Wss,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// The port used when the URL names none.
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
}

/// Where a connection goes: scheme, host (the TLS server name), port, path and the addresses to
/// try, in order (a reconnect moves to the next one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
    addrs: Vec<SocketAddr>,
}

impl Endpoint {
    /// Parses `ws://host[:port][/path][?query]` or `wss://…`. IPv6 hosts go in brackets.
    /// User info and fragments are refused.
    ///
    /// # Errors
    /// [`ConnectionError::InvalidUrl`] naming what is wrong.
    pub fn parse(url: &str) -> Result<Endpoint, ConnectionError> {
        let invalid = |reason: &'static str| ConnectionError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("ws") => (Scheme::Ws, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("wss") => (Scheme::Wss, rest),
            _ => return Err(invalid("scheme must be ws:// or wss://")),
        };
        if rest.contains('#') {
            return Err(invalid("fragments are not allowed in websocket urls"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid("user info is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (v6, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unterminated ipv6 literal"))?;
            if v6.parse::<Ipv6Addr>().is_err() {
                return Err(invalid("invalid ipv6 literal"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("junk after ipv6 literal"))?,
                ),
            };
            (v6, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("empty host"));
        }
        let host_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
        if !host_ok {
            return Err(invalid("invalid character in host"));
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(invalid("port must be 1..=65535")),
                Ok(p) => p,
            },
        };
        let path = match tail {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        let url = format!("{}://{authority}{path}", scheme.as_str());
        // tungstenite builds the upgrade request from this string; refuse now what it would
        // refuse at every connect.
        if url.parse::<tungstenite::http::Uri>().is_err() {
            return Err(invalid("not a valid uri"));
        }
        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => Vec::new(),
        };
        Ok(Endpoint {
            url,
            scheme,
            host: host.to_owned(),
            port,
            path,
            addrs,
        })
    }

    /// Resolves the host with the system resolver and replaces the address list.
    /// **Blocks**: never call it on the event loop.
    ///
    /// # Errors
    /// [`ConnectionError::Resolve`] when resolution fails or finds nothing (retryable).
    pub fn resolve(&mut self) -> Result<(), ConnectionError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            self.addrs = vec![SocketAddr::new(ip, self.port)];
            return Ok(());
        }
        let resolve_error = |source| ConnectionError::Resolve {
            host: self.host.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no address",
            )));
        }
        self.addrs = addrs;
        Ok(())
    }

    /// Replaces the addresses to connect to (a resolver elsewhere, or tests pinning
    /// `localhost` to `127.0.0.1` while keeping the TLS server name).
    pub fn with_addrs(mut self, addrs: Vec<SocketAddr>) -> Endpoint {
        self.addrs = addrs;
        self
    }

    /// The normalised URL (`scheme://authority/path?query`), as sent in the upgrade request.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `ws` or `wss`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Wss
    }

    /// The host: DNS name or IP literal (without brackets). It is also the TLS server name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (explicit or the scheme's default).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Resolved addresses, in the order they are tried.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_urls() {
        // (url, scheme, host, port, path, addresses known without dns)
        let cases = [
            // TC0: the venue.
            (
                POLYMARKET_MARKET_URL,
                Scheme::Wss,
                "ws-subscriptions-clob.polymarket.com",
                443,
                "/ws/market",
                0,
            ),
            // TC1: explicit port, ip literal resolves immediately.
            (
                "ws://127.0.0.1:9001/ws/market",
                Scheme::Ws,
                "127.0.0.1",
                9001,
                "/ws/market",
                1,
            ),
            // TC2: no path, upper-case scheme.
            ("WS://localhost", Scheme::Ws, "localhost", 80, "/", 0),
            // TC3: query without path.
            (
                "wss://h.example?x=1",
                Scheme::Wss,
                "h.example",
                443,
                "/?x=1",
                0,
            ),
            // TC4: ipv6.
            (
                "ws://[::1]:8080/a?b=c",
                Scheme::Ws,
                "::1",
                8080,
                "/a?b=c",
                1,
            ),
        ];
        for (url, scheme, host, port, path, addrs) in cases {
            let e = Endpoint::parse(url).unwrap_or_else(|err| panic!("{url}: {err}"));
            assert_eq!(e.scheme(), scheme, "{url}");
            assert_eq!(e.host(), host, "{url}");
            assert_eq!(e.port(), port, "{url}");
            assert_eq!(e.path(), path, "{url}");
            assert_eq!(e.addrs().len(), addrs, "{url}");
            assert!(e.url().parse::<tungstenite::http::Uri>().is_ok(), "{url}");
        }
        let v6 = Endpoint::parse("ws://[::1]:8080/").unwrap();
        assert_eq!(v6.addrs()[0], "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn rejects_invalid_urls() {
        for url in [
            "http://example.com/ws",
            "example.com/ws",
            "ws://",
            "ws://:80/",
            "ws://user@host/",
            "ws://host:0/",
            "ws://host:70000/",
            "ws://host:port/",
            "ws://host/#frag",
            "ws://[::1/",
            "ws://[nothex]/",
            "ws://ho st/",
        ] {
            let err = Endpoint::parse(url).expect_err(url);
            assert!(matches!(err, ConnectionError::InvalidUrl { .. }), "{url}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn resolve_keeps_ip_literals_and_with_addrs_overrides() {
        let mut e = Endpoint::parse("ws://127.0.0.1:1234/x").unwrap();
        e.resolve().unwrap();
        assert_eq!(e.addrs(), &["127.0.0.1:1234".parse().unwrap()]);
        let pinned = Endpoint::parse("wss://localhost:1/x")
            .unwrap()
            .with_addrs(vec!["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(pinned.host(), "localhost");
        assert_eq!(pinned.addrs().len(), 1);
    }
}
