//! THREAD: the HTTP API (tiny_http). Serves `/health`, `/ready`, `/stats`, `/metrics`,
//! `/markets` and `/orderbook/{asset_id}?depth=N`, and the live dashboard at `/` ([`page`]).
//!
//! The server owns only its `tiny_http::Server`. Answers come from an [`ApiSource`] (the
//! engine): cheap ones from atomics, the rest by asking the owning thread with a deadline, so
//! no request can stall the engine, and a slow owner yields a 503, not a hang. tiny_http reads
//! each client connection on its own pool thread, so idle keep-alive clients do not block
//! `/health`.

pub mod page;
pub mod render;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

pub use render::{BookAnswer, Components, Health, OrderbookJson};

/// Default `depth` of `/orderbook`.
pub const DEFAULT_DEPTH: usize = 10;
/// Largest accepted `depth`.
pub const MAX_DEPTH: usize = 1000;

/// What the API needs from the engine. Implementations answer within their own deadlines.
pub trait ApiSource: Send + Sync + 'static {
    /// Health (never blocks).
    fn health(&self) -> Health;
    /// `Ok` when ready to serve books, else the reason.
    fn ready(&self) -> Result<(), String>;
    /// `/stats` body, or why it is unavailable.
    fn stats(&self) -> Result<serde_json::Value, String>;
    /// `/metrics` body (Prometheus text).
    fn metrics(&self) -> Result<String, String>;
    /// `/markets` body.
    fn markets(&self) -> Result<serde_json::Value, String>;
    /// A book: `Ok(None)` for an unknown asset.
    fn book(&self, asset_id: &str, depth: usize) -> Result<Option<BookAnswer>, String>;
}

/// A running HTTP server; dropping it does not stop it, call [`HttpServer::stop`].
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Binding failed (port in use, no permission). The engine keeps running without HTTP.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS's reason.
        message: String,
    },
    /// The server thread could not be spawned.
    #[error("cannot start the http thread: {0}")]
    Spawn(#[from] std::io::Error),
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A listening socket with `TCP_NODELAY`, which accepted sockets inherit (Linux): tiny_http
/// writes a response through a 1 KiB buffer, so a larger body leaves in several writes, and
/// with Nagle on, the last one waits for the client's delayed ACK (~40 ms per request on a
/// kept-alive connection; measured by `polypy-loadtest`, docs/loadtest.md).
fn listener(addr: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs as _;
    let sa = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(sa),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&sa.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl HttpServer {
    /// Binds `addr` and serves on a new thread.
    ///
    /// # Errors
    /// [`HttpError::Bind`] when the address cannot be bound.
    pub fn start<S: ApiSource>(addr: &str, source: Arc<S>) -> Result<HttpServer, HttpError> {
        let bind_err = |message: String| HttpError::Bind {
            addr: addr.to_string(),
            message,
        };
        let listener = listener(addr).map_err(|e| bind_err(e.to_string()))?;
        let server = Server::from_listener(listener, None).map_err(|e| bind_err(e.to_string()))?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| HttpError::Bind {
                addr: addr.to_string(),
                message: "not an ip address".into(),
            })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let server = Arc::clone(&server);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || serve(&server, &*source, &stop))?
        };
        log::info!("HTTP API listening: addr={local}");
        Ok(HttpServer {
            addr: local,
            stop,
            server,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, source: &dyn ApiSourceDyn, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => handle(request, source),
            Ok(None) => {}
            Err(e) => {
                log::warn!("HTTP accept failed: {e}");
            }
        }
    }
}

/// Object-safe view of [`ApiSource`] for the server loop.
trait ApiSourceDyn {
    fn health(&self) -> Health;
    fn ready(&self) -> Result<(), String>;
    fn stats(&self) -> Result<serde_json::Value, String>;
    fn metrics(&self) -> Result<String, String>;
    fn markets(&self) -> Result<serde_json::Value, String>;
    fn book(&self, asset_id: &str, depth: usize) -> Result<Option<BookAnswer>, String>;
}

impl<S: ApiSource> ApiSourceDyn for S {
    fn health(&self) -> Health {
        ApiSource::health(self)
    }
    fn ready(&self) -> Result<(), String> {
        ApiSource::ready(self)
    }
    fn stats(&self) -> Result<serde_json::Value, String> {
        ApiSource::stats(self)
    }
    fn metrics(&self) -> Result<String, String> {
        ApiSource::metrics(self)
    }
    fn markets(&self) -> Result<serde_json::Value, String> {
        ApiSource::markets(self)
    }
    fn book(&self, asset_id: &str, depth: usize) -> Result<Option<BookAnswer>, String> {
        ApiSource::book(self, asset_id, depth)
    }
}

/// A response: status, content type, body.
struct Reply(u16, &'static str, std::borrow::Cow<'static, str>);

const JSON: &str = "application/json";

fn json(status: u16, v: &impl serde::Serialize) -> Reply {
    Reply(
        status,
        JSON,
        serde_json::to_string(v)
            .unwrap_or_else(|_| "{}".into())
            .into(),
    )
}

fn err(status: u16, message: &str) -> Reply {
    Reply(status, JSON, render::error_json(message).into())
}

fn handle(request: Request, source: &dyn ApiSourceDyn) {
    let reply = route(request.method(), request.url(), source);
    let Reply(status, ctype, body) = reply;
    let mut response = Response::from_data(body.as_bytes()).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()) {
        response.add_header(h);
    }
    if status == 405 {
        if let Ok(h) = Header::from_bytes(&b"Allow"[..], &b"GET"[..]) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn route(method: &Method, url: &str, source: &dyn ApiSourceDyn) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some((ctype, body)) = page::asset(path) {
        return match *method {
            Method::Get => Reply(200, ctype, body.into()),
            _ => err(405, "method not allowed; use GET"),
        };
    }
    let known = matches!(
        path,
        "/health" | "/ready" | "/stats" | "/metrics" | "/markets"
    ) || path.starts_with("/orderbook/");
    if !known {
        return err(404, "not found");
    }
    if *method != Method::Get {
        return err(405, "method not allowed; use GET");
    }
    match path {
        "/health" => {
            let h = source.health();
            json(if h.healthy { 200 } else { 503 }, &h)
        }
        "/ready" => match source.ready() {
            Ok(()) => json(200, &serde_json::json!({ "ready": true })),
            Err(reason) => json(
                503,
                &serde_json::json!({ "ready": false, "reason": reason }),
            ),
        },
        "/stats" => match source.stats() {
            Ok(v) => json(200, &v),
            Err(e) => err(503, &e),
        },
        "/metrics" => match source.metrics() {
            Ok(text) => Reply(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text.into(),
            ),
            Err(e) => err(503, &e),
        },
        "/markets" => match source.markets() {
            Ok(v) => json(200, &v),
            Err(e) => err(503, &e),
        },
        _ => orderbook(path, query, source),
    }
}

fn orderbook(path: &str, query: &str, source: &dyn ApiSourceDyn) -> Reply {
    let asset = path.trim_start_matches("/orderbook/");
    if asset.is_empty() || asset.contains('/') {
        return err(404, "not found");
    }
    let mut depth = DEFAULT_DEPTH;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "depth" {
            match v.parse::<usize>() {
                Ok(d) if (1..=MAX_DEPTH).contains(&d) => depth = d,
                _ => {
                    return err(
                        400,
                        &format!("depth must be an integer within 1..={MAX_DEPTH}"),
                    );
                }
            }
        }
    }
    match source.book(asset, depth) {
        Ok(Some(b)) => json(200, &render::orderbook_json(&b)),
        Ok(None) => err(404, &format!("unknown asset {asset}")),
        Err(e) => err(503, &e),
    }
}
