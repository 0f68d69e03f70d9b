//! [`ConnectionError`]: everything that can go wrong with one WebSocket connection, and what the
//! caller should do about it. Pure data, built and consumed on the event-loop thread.
//!
//! Contract: when `Connection::on_ready`, `Connection::on_tick` or `Connection::send_text` return
//! an error other than [`ConnectionError::InvalidState`], the connection has already been torn
//! down (socket deregistered and dropped, status `Disconnected`). The event loop then treats
//! it as a lost connection (books untrusted, reconnect scheduled); an error that
//! [`ConnectionError::is_retryable`] says will not heal is retried with backoff as well and
//! logged at error level, so an operator sees it.

use std::{fmt, io};

use super::Status;

/// Which part of a connection's life an error happened in (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Non-blocking TCP connect.
    Tcp,
    /// TLS handshake (`wss://` only).
    Tls,
    /// WebSocket upgrade (HTTP request and `101` response).
    WebSocket,
    /// The open connection: reading frames, sending text, keep-alive.
    Open,
}

impl Stage {
    /// Lower-case name used in logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Tcp => "tcp",
            Stage::Tls => "tls",
            Stage::WebSocket => "websocket",
            Stage::Open => "open",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the connection layer. Each variant says what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The URL is not a usable `ws://` or `wss://` URL. Fix the configuration; retrying cannot
    /// help.
    #[error("invalid websocket url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// DNS resolution failed or found no address. Retry later, off the event loop
    /// (`Endpoint::resolve` blocks).
    #[error("cannot resolve host={host}: {source}")]
    Resolve {
        /// The host name that did not resolve.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// `Connection::connect` was called on an endpoint with no resolved address. Programming
    /// error: call `Endpoint::resolve` at start-up. Not retryable.
    #[error("endpoint host={host} has no resolved address")]
    NotResolved {
        /// The endpoint's host.
        host: String,
    },
    /// The host is not a valid TLS server name (SNI). Fix the URL; not retryable.
    #[error("invalid tls server name host={host}")]
    InvalidServerName {
        /// The endpoint's host.
        host: String,
    },
    /// The operation is not valid in the connection's current status (for example `send_text`
    /// while connecting, or `connect` on a closed connection). Nothing was changed. Programming
    /// error in the caller; not retryable.
    #[error("conn={conn} cannot {op} while {status}")]
    InvalidState {
        /// Connection id.
        conn: u32,
        /// The refused operation.
        op: &'static str,
        /// The status the connection was in.
        status: Status,
    },
    /// A socket error (connection refused, reset, broken pipe, ...). The connection is
    /// disconnected: schedule a reconnect.
    #[error("conn={conn} io error during {stage}: {source}")]
    Io {
        /// Connection id.
        conn: u32,
        /// Where it happened.
        stage: Stage,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The server's certificate was rejected. A trust-store, clock or interception problem:
    /// retrying with the same configuration fails the same way, so alert an operator. Not
    /// retryable.
    #[error("conn={conn} tls certificate rejected: {source}")]
    Certificate {
        /// Connection id.
        conn: u32,
        /// rustls' verdict.
        #[source]
        source: rustls::Error,
    },
    /// Any other TLS failure (alert, bad record, ...). The connection is disconnected: schedule a
    /// reconnect.
    #[error("conn={conn} tls error: {source}")]
    Tls {
        /// Connection id.
        conn: u32,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The server answered the WebSocket upgrade with HTTP `status` instead of `101`. `429`
    /// (throttled) and `5xx` are retryable with backoff; anything else (`404`: the path must be
    /// `/ws/market`) is a configuration error.
    #[error("conn={conn} websocket upgrade rejected with http status {status}")]
    Rejected {
        /// Connection id.
        conn: u32,
        /// The HTTP status code.
        status: u16,
    },
    /// TCP connect, TLS and WebSocket upgrade did not finish within `handshake_timeout`. The
    /// connection is disconnected: schedule a reconnect.
    #[error("conn={conn} handshake timed out in {stage} after {after_ms} ms")]
    HandshakeTimeout {
        /// Connection id.
        conn: u32,
        /// The stage that was still running.
        stage: Stage,
        /// Time since `connect`.
        after_ms: u64,
    },
    /// Nothing at all (no data, no `PONG`, no control frame) arrived for `silence_timeout`: the
    /// socket is presumably dead but open. It was torn down: schedule a reconnect.
    #[error("conn={conn} silent for {silent_ms} ms")]
    Silent {
        /// Connection id.
        conn: u32,
        /// Time since the last inbound frame (or since the upgrade).
        silent_ms: u64,
    },
    /// The peer closed the connection (close frame, TLS close or TCP end of stream). Schedule a
    /// reconnect.
    #[error("conn={conn} closed by peer (close code {code:?})")]
    ClosedByPeer {
        /// Connection id.
        conn: u32,
        /// The close code of the peer's close frame, if it sent one.
        code: Option<u16>,
    },
    /// A message exceeded `max_message_size`. Schedule a reconnect; if it repeats, raise the
    /// limit or put fewer assets on the connection.
    #[error("conn={conn} message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Connection id.
        conn: u32,
        /// Announced size of the message.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The server broke the WebSocket protocol (bad upgrade response, invalid frame, invalid
    /// UTF-8 in a text frame, ...). Schedule a reconnect.
    #[error("conn={conn} websocket error during {stage}: {source}")]
    WebSocket {
        /// Connection id.
        conn: u32,
        /// Where it happened.
        stage: Stage,
        /// tungstenite's error.
        #[source]
        source: tungstenite::Error,
    },
}

impl ConnectionError {
    /// Whether a new connection attempt (after backoff) can be expected to help.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectionError::InvalidUrl { .. }
            | ConnectionError::NotResolved { .. }
            | ConnectionError::InvalidServerName { .. }
            | ConnectionError::InvalidState { .. }
            | ConnectionError::Certificate { .. } => false,
            ConnectionError::Rejected { status, .. } => {
                *status == 429 || (500..600).contains(status)
            }
            ConnectionError::Resolve { .. }
            | ConnectionError::Io { .. }
            | ConnectionError::Tls { .. }
            | ConnectionError::HandshakeTimeout { .. }
            | ConnectionError::Silent { .. }
            | ConnectionError::ClosedByPeer { .. }
            | ConnectionError::MessageTooLarge { .. }
            | ConnectionError::WebSocket { .. } => true,
        }
    }

    /// A short stable name of the variant, for metrics labels and `last_error` in stats.
    pub const fn kind(&self) -> &'static str {
        match self {
            ConnectionError::InvalidUrl { .. } => "invalid_url",
            ConnectionError::Resolve { .. } => "resolve",
            ConnectionError::NotResolved { .. } => "not_resolved",
            ConnectionError::InvalidServerName { .. } => "invalid_server_name",
            ConnectionError::InvalidState { .. } => "invalid_state",
            ConnectionError::Io { .. } => "io",
            ConnectionError::Certificate { .. } => "certificate",
            ConnectionError::Tls { .. } => "tls",
            ConnectionError::Rejected { .. } => "rejected",
            ConnectionError::HandshakeTimeout { .. } => "handshake_timeout",
            ConnectionError::Silent { .. } => "silent",
            ConnectionError::ClosedByPeer { .. } => "closed_by_peer",
            ConnectionError::MessageTooLarge { .. } => "message_too_large",
            ConnectionError::WebSocket { .. } => "websocket",
        }
    }

    /// Classifies a rustls error: certificate problems are not retryable, the rest are.
    pub(crate) fn from_tls(conn: u32, source: rustls::Error) -> Self {
        match source {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                ConnectionError::Certificate { conn, source }
            }
            source => ConnectionError::Tls { conn, source },
        }
    }

    /// Classifies an I/O error. TLS failures travel through `io::Read`/`io::Write` as
    /// `InvalidData` wrapping a `rustls::Error` (rustls' own convention); unwrap them. A TCP or
    /// TLS end of stream without a close frame is the peer closing.
    pub(crate) fn from_io(conn: u32, stage: Stage, source: io::Error) -> Self {
        if source
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            let kind = source.kind();
            return match source
                .into_inner()
                .map(|inner| inner.downcast::<rustls::Error>())
            {
                Some(Ok(tls)) => Self::from_tls(conn, *tls),
                Some(Err(other)) => ConnectionError::Io {
                    conn,
                    stage,
                    source: io::Error::new(kind, other),
                },
                None => ConnectionError::Io {
                    conn,
                    stage,
                    source: kind.into(),
                },
            };
        }
        match source.kind() {
            io::ErrorKind::UnexpectedEof => ConnectionError::ClosedByPeer { conn, code: None },
            _ => ConnectionError::Io {
                conn,
                stage,
                source,
            },
        }
    }

    /// Classifies a tungstenite error (handshake or open connection).
    pub(crate) fn from_ws(conn: u32, stage: Stage, source: tungstenite::Error) -> Self {
        use tungstenite::error::{CapacityError, ProtocolError};
        match source {
            tungstenite::Error::Io(e) => Self::from_io(conn, stage, e),
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                ConnectionError::ClosedByPeer { conn, code: None }
            }
            tungstenite::Error::Http(response) => ConnectionError::Rejected {
                conn,
                status: response.status().as_u16(),
            },
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                ConnectionError::MessageTooLarge {
                    conn,
                    size,
                    max: max_size,
                }
            }
            source => ConnectionError::WebSocket {
                conn,
                stage,
                source,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let io = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let cases: Vec<(ConnectionError, bool)> = vec![
            // TC0: configuration problems are final.
            (
                ConnectionError::InvalidUrl {
                    url: "http://x".into(),
                    reason: "scheme",
                },
                false,
            ),
            (
                ConnectionError::Rejected {
                    conn: 1,
                    status: 404,
                },
                false,
            ),
            (
                ConnectionError::from_tls(
                    1,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ),
                false,
            ),
            // TC1: transient problems are retried.
            (
                ConnectionError::Rejected {
                    conn: 1,
                    status: 429,
                },
                true,
            ),
            (
                ConnectionError::Rejected {
                    conn: 1,
                    status: 503,
                },
                true,
            ),
            (ConnectionError::from_io(1, Stage::Tcp, io()), true),
            (
                ConnectionError::Silent {
                    conn: 1,
                    silent_ms: 30_000,
                },
                true,
            ),
            (
                ConnectionError::from_tls(1, rustls::Error::DecryptError),
                true,
            ),
        ];
        for (error, retryable) in cases {
            assert_eq!(error.is_retryable(), retryable, "{error}");
        }
    }

    #[test]
    fn io_wrapping_tls_error_is_unwrapped() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        let error = ConnectionError::from_io(7, Stage::Tls, wrapped);
        assert!(
            matches!(error, ConnectionError::Certificate { conn: 7, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn eof_is_peer_close() {
        let error = ConnectionError::from_io(3, Stage::Open, io::ErrorKind::UnexpectedEof.into());
        assert!(matches!(
            error,
            ConnectionError::ClosedByPeer {
                conn: 3,
                code: None
            }
        ));
    }
}
