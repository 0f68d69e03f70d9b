//! THREADS `sim-http-N`: Gamma, CLOB REST and the `/sim/...` control endpoints (tiny_http).
//!
//! | route | serves |
//! |---|---|
//! | `GET /markets`, `GET /markets/keyset` | Gamma (`gamma.rs`) |
//! | `GET /book?token_id=`, `POST /books` | CLOB REST books (≤ 500 tokens per request) |
//! | `GET /sim/truth/{asset_id}`, `GET /sim/truth` | ground truth (one book / all books) |
//! | `POST /sim/pause`, `POST /sim/resume` | stop/restart the flow; pause answers once flushed |
//! | `GET /sim/stats` | counters, per connection |
//! | `POST /sim/fault/{name}?…` | faults (see [`fault`]) |
//!
//! Gamma and CLOB answer with the status set by the `gamma_error` / `clob_error` faults
//! instead of data while those are on; `/sim/...` is never faulted. Workers poll with a short
//! timeout so they notice the stop flag.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tiny_http::{Header, Method, Request, Response, Server};

use super::SimError;
use super::conn::ConnTarget;
use super::core::{Command, CoreClient};
use super::faults::{FaultState, Faults};
use super::gamma::{self, Query};

/// The real CLOB's limit on `POST /books`.
pub(crate) const MAX_BOOKS_PER_REQUEST: usize = 500;
const MAX_BODY: u64 = 4 << 20;

/// The tiny_http server shared by the workers (tiny_http's type has no `Debug`).
#[derive(Clone)]
pub(crate) struct SharedServer(pub(crate) Arc<Server>);

impl std::fmt::Debug for SharedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedServer({:?})", self.0.server_addr().to_ip())
    }
}

/// One HTTP worker.
#[derive(Debug)]
pub(crate) struct HttpWorker {
    /// The shared server.
    pub(crate) server: SharedServer,
    /// The core.
    pub(crate) core: CoreClient,
    /// Global faults.
    pub(crate) fault_state: Arc<FaultState>,
    /// The fault switchboard.
    pub(crate) faults: Faults,
    /// Stop flag.
    pub(crate) stop: Arc<AtomicBool>,
    /// How long `/sim/pause` waits for the flush.
    pub(crate) flush_timeout: Duration,
}

type Reply = (u16, String);

fn json_error(status: u16, msg: &str) -> Reply {
    (
        status,
        format!("{{\"error\":{}}}", serde_json::Value::from(msg)),
    )
}

fn sim_error(e: &SimError) -> Reply {
    let status = match e {
        SimError::Timeout { .. } => 504,
        _ => 503,
    };
    json_error(status, &e.to_string())
}

/// Decodes `%XX` and `+` in a query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split_url(url: &str) -> (&str, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    (path, pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Deserialize)]
struct BookRequest {
    token_id: String,
}

impl HttpWorker {
    /// Serves requests until the stop flag is set.
    pub(crate) fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.server.0.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(req)) => self.serve(req),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("Sim HTTP receive failed: error={e}");
                    break;
                }
            }
        }
    }

    fn serve(&self, mut req: Request) {
        let url = req.url().to_string();
        let (path, pairs) = split_url(&url);
        let method = req.method().clone();
        let (status, body) = match (&method, path) {
            (Method::Get, "/markets") | (Method::Get, "/markets/keyset") => {
                self.gamma(path, &pairs)
            }
            (Method::Get, "/book") => self.book(&pairs),
            (Method::Post, "/books") => {
                let mut body = String::new();
                match req.as_reader().take(MAX_BODY).read_to_string(&mut body) {
                    Ok(_) => self.books(&body),
                    Err(_) => json_error(400, "Invalid payload"),
                }
            }
            (Method::Get, "/sim/truth") => self.truth(None),
            (Method::Get, p) if p.starts_with("/sim/truth/") => {
                self.truth(Some(&p["/sim/truth/".len()..]))
            }
            (Method::Post, "/sim/pause") => match self.core.pause(self.flush_timeout) {
                Ok(()) => (200, "{\"paused\":true}".into()),
                Err(e) => sim_error(&e),
            },
            (Method::Post, "/sim/resume") => match self.core.send(Command::Resume) {
                Ok(()) => (200, "{\"paused\":false}".into()),
                Err(e) => sim_error(&e),
            },
            (Method::Get, "/sim/stats") => {
                match self.core.request(|reply| Command::Stats { reply }) {
                    Ok(s) => (200, serde_json::to_string(&s).unwrap_or_default()),
                    Err(e) => sim_error(&e),
                }
            }
            (Method::Post, p) if p.starts_with("/sim/fault/") => {
                match fault(&self.faults, &p["/sim/fault/".len()..], &pairs) {
                    Ok(n) => (200, format!("{{\"affected\":{n}}}")),
                    Err(reply) => reply,
                }
            }
            _ => json_error(404, "not found"),
        };
        let header = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]);
        let mut response = Response::from_string(body).with_status_code(status);
        if let Ok(h) = header {
            response = response.with_header(h);
        }
        if let Err(e) = req.respond(response) {
            log::debug!("Sim HTTP respond failed: path={path} error={e}");
        }
    }

    fn gamma(&self, path: &str, pairs: &[(String, String)]) -> Reply {
        if let Some(status) = self.fault_state.gamma_error() {
            return json_error(status, "injected gamma error");
        }
        let query = match Query::parse(pairs) {
            Ok(q) => q,
            Err(e) => return e,
        };
        let catalog = match self.core.request(|reply| Command::Catalog { reply }) {
            Ok(c) => c,
            Err(e) => return sim_error(&e),
        };
        let page = if path == "/markets" {
            gamma::list(&catalog, &query)
        } else {
            gamma::keyset(&catalog, &query)
        };
        page.map(|body| (200, body)).unwrap_or_else(|e| e)
    }

    fn rest_books(&self, tokens: Vec<String>) -> Result<Vec<String>, Reply> {
        self.core
            .request(|reply| Command::RestBooks { tokens, reply })
            .map_err(|e| sim_error(&e))
    }

    fn book(&self, pairs: &[(String, String)]) -> Reply {
        if let Some(status) = self.fault_state.clob_error() {
            return json_error(status, "injected clob error");
        }
        let token = match param(pairs, "token_id") {
            Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.to_string(),
            _ => return json_error(400, "Invalid token id"),
        };
        match self.rest_books(vec![token]) {
            Ok(mut books) => match books.pop() {
                Some(b) => (200, b),
                None => json_error(404, "No orderbook exists for the requested token id"),
            },
            Err(reply) => reply,
        }
    }

    fn books(&self, body: &str) -> Reply {
        if let Some(status) = self.fault_state.clob_error() {
            return json_error(status, "injected clob error");
        }
        let Ok(requests) = serde_json::from_str::<Vec<BookRequest>>(body) else {
            return json_error(400, "Invalid payload");
        };
        if requests.len() > MAX_BOOKS_PER_REQUEST {
            return json_error(400, "Payload exceeds the limit");
        }
        match self.rest_books(requests.into_iter().map(|r| r.token_id).collect()) {
            Ok(books) => (200, format!("[{}]", books.join(","))),
            Err(reply) => reply,
        }
    }

    fn truth(&self, asset: Option<&str>) -> Reply {
        let one = asset.is_some();
        match self.core.request(|reply| Command::Truth {
            asset: asset.map(str::to_string),
            reply,
        }) {
            Ok(books) if one => match books.first() {
                Some(b) => (200, b.to_json()),
                None => json_error(404, "unknown asset"),
            },
            Ok(books) => (200, serde_json::to_string(&books).unwrap_or_default()),
            Err(e) => sim_error(&e),
        }
    }
}

fn target(pairs: &[(String, String)]) -> Result<ConnTarget, Reply> {
    match param(pairs, "conn") {
        None | Some("all") => Ok(ConnTarget::All),
        Some(c) => c
            .parse()
            .map(ConnTarget::Conn)
            .map_err(|_| json_error(400, "conn must be a connection id or all")),
    }
}

fn number(pairs: &[(String, String)], name: &str, default: u64) -> Result<u64, Reply> {
    match param(pairs, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| json_error(400, &format!("{name} must be a number"))),
    }
}

fn flag(pairs: &[(String, String)]) -> bool {
    !matches!(param(pairs, "on"), Some("false" | "0" | "off"))
}

/// `POST /sim/fault/{name}`: `drop`, `malformed`, `garbage`, `oversized?bytes=`,
/// `stall?on=`, `stall_asset?asset_id=&on=`, `split_writes?chunk=` (0 = off),
/// `handshake_delay?ms=`, `refuse?ms=`, `gamma_error?status=` (0 = off), `clob_error?status=`,
/// `clear`. Connection faults take `conn=ID` or `conn=all` (default all).
fn fault(faults: &Faults, name: &str, pairs: &[(String, String)]) -> Result<usize, Reply> {
    let core_err = |e: SimError| sim_error(&e);
    match name {
        "drop" => faults.drop_connection(target(pairs)?).map_err(core_err),
        "malformed" => faults.malformed_frame(target(pairs)?).map_err(core_err),
        "garbage" => faults.garbage_bytes(target(pairs)?).map_err(core_err),
        "oversized" => {
            let bytes = number(pairs, "bytes", 20 << 20)? as usize;
            faults
                .oversized_frame(target(pairs)?, bytes)
                .map_err(core_err)
        }
        "stall" => faults
            .stall_connection(target(pairs)?, flag(pairs))
            .map_err(core_err),
        "stall_asset" => {
            let asset =
                param(pairs, "asset_id").ok_or_else(|| json_error(400, "asset_id missing"))?;
            faults.stall_asset(asset, flag(pairs)).map_err(core_err)
        }
        "split_writes" => {
            let chunk = number(pairs, "chunk", 7)? as usize;
            faults
                .split_writes(target(pairs)?, (chunk > 0).then_some(chunk))
                .map_err(core_err)
        }
        "handshake_delay" => {
            faults.set_handshake_delay(Duration::from_millis(number(pairs, "ms", 0)?));
            Ok(1)
        }
        "refuse" => {
            faults.refuse_connections_for(Duration::from_millis(number(pairs, "ms", 0)?));
            Ok(1)
        }
        "gamma_error" => {
            let s = number(pairs, "status", 0)? as u16;
            faults.set_gamma_error((s != 0).then_some(s));
            Ok(1)
        }
        "clob_error" => {
            let s = number(pairs, "status", 0)? as u16;
            faults.set_clob_error((s != 0).then_some(s));
            Ok(1)
        }
        "clear" => faults.clear().map(|()| 1).map_err(core_err),
        _ => Err(json_error(404, "unknown fault")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_decodes_queries() {
        let (path, pairs) =
            split_url("/markets?limit=5&closed=true&clob_token_ids=12&x=a%20b+c&flag");
        assert_eq!(path, "/markets");
        assert_eq!(param(&pairs, "limit"), Some("5"));
        assert_eq!(param(&pairs, "x"), Some("a b c"));
        assert_eq!(param(&pairs, "flag"), Some(""));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
