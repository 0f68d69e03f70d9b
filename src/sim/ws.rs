//! THREADS `sim-ws-accept` and `sim-ws-r{id}`: the market WebSocket's acceptor and readers.
//!
//! The acceptor takes TCP connections on the WebSocket port and gives each a reader thread.
//! A reader applies the slow-start and refusal faults, performs the handshake (only
//! `/ws/market` upgrades; others get 404, refused ones 429), starts the connection's writer
//! thread (`writer.rs`), registers the connection with the core, then reads client frames:
//! text `PING` is answered `PONG` (through the writer, so a stalled connection still answers),
//! subscription frames go to the core, and a frame naming more than `max_ids_per_frame`
//! assets makes the server close the socket shortly after (docs/venue-protocol.md §2.5).
//!
//! The reader's tungstenite instance never writes to the socket itself: its automatic replies
//! (pong, close) are forwarded to the writer as raw bytes, so frames never interleave.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::StatusCode;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::calendar::Clock;
use super::conn::{ConnShared, Outbound};
use super::core::{ClientOp, ClientRequest, Command, CoreClient};
use super::faults::FaultState;
use super::record::RecordItem;
use super::writer::Writer;

/// The one WebSocket path the venue serves for market data.
pub(crate) const WS_PATH: &str = "/ws/market";
const READER_STACK: usize = 256 * 1024;

/// What the acceptor and every reader share.
#[derive(Debug)]
pub(crate) struct WsContext {
    /// The core.
    pub(crate) core: CoreClient,
    /// Global faults.
    pub(crate) faults: Arc<FaultState>,
    /// Set when the sim stops.
    pub(crate) stop: Arc<AtomicBool>,
    /// Never receives; disconnects when the sim stops (wakes waits).
    pub(crate) stop_rx: Receiver<()>,
    /// The recorder's queue.
    pub(crate) recorder: Option<Sender<RecordItem>>,
    /// Clock.
    pub(crate) clock: Clock,
    /// Outbound queue capacity.
    pub(crate) queue_capacity: usize,
    /// Most ids a subscription frame may carry.
    pub(crate) max_ids_per_frame: usize,
    /// Delay before closing a socket that sent too many ids.
    pub(crate) close_delay: Duration,
    /// Share of writes batched into array frames.
    pub(crate) array_share: f64,
    /// RNG seed.
    pub(crate) seed: u64,
    /// Next connection id.
    pub(crate) next_id: AtomicU32,
}

impl WsContext {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits `d` unless the sim stops first; false when it stopped.
    fn wait(&self, d: Duration) -> bool {
        matches!(self.stop_rx.recv_timeout(d), Err(RecvTimeoutError::Timeout)) && !self.stopping()
    }
}

/// The acceptor thread: runs until the sim stops, then cuts and joins every connection.
pub(crate) fn accept_loop(listener: TcpListener, ctx: Arc<WsContext>) {
    let mut conns: Vec<(JoinHandle<()>, TcpStream)> = Vec::new();
    for stream in listener.incoming() {
        if ctx.stopping() {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("Sim accept failed: error={e}");
                continue;
            }
        };
        let (done, running): (Vec<_>, Vec<_>) = conns.drain(..).partition(|(h, _)| h.is_finished());
        conns = running;
        for (h, _) in done {
            let _ = h.join();
        }
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let c = Arc::clone(&ctx);
        match thread::Builder::new()
            .name("sim-ws-r".into())
            .stack_size(READER_STACK)
            .spawn(move || connection(stream, peer, &c))
        {
            Ok(h) => conns.push((h, clone)),
            Err(e) => log::error!("Sim reader spawn failed: error={e}"),
        }
    }
    for (_, s) in &conns {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    for (h, _) in conns {
        let _ = h.join();
    }
}

/// The reader's socket: reads the TCP stream; writes go to the socket during the handshake
/// and to the writer thread afterwards.
#[derive(Debug)]
struct ReaderIo {
    stream: TcpStream,
    forward: Option<Sender<Outbound>>,
    pending: Vec<u8>,
}

impl Read for ReaderIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for ReaderIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.forward.is_none() {
            return self.stream.write(buf);
        }
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.forward {
            None => self.stream.flush(),
            Some(tx) => {
                if !self.pending.is_empty() {
                    let bytes = std::mem::take(&mut self.pending);
                    // A full queue means the connection is being dropped as slow anyway.
                    let _ = tx.try_send(Outbound::Raw(bytes));
                }
                Ok(())
            }
        }
    }
}

fn error_response(status: StatusCode) -> ErrorResponse {
    let mut r = ErrorResponse::new(status.canonical_reason().map(str::to_string));
    *r.status_mut() = status;
    r
}

/// The client frames the market channel understands.
#[derive(Debug, Deserialize)]
struct ClientFrame {
    assets_ids: Option<Vec<String>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    operation: Option<String>,
    initial_dump: Option<bool>,
    custom_feature_enabled: Option<bool>,
}

fn parse_client(text: &str) -> Option<ClientRequest> {
    let f: ClientFrame = serde_json::from_str(text).ok()?;
    let op = match f.operation.as_deref() {
        Some("subscribe") => ClientOp::Subscribe,
        Some("unsubscribe") => ClientOp::Unsubscribe,
        Some(_) => return None,
        None if f
            .kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("market")) =>
        {
            ClientOp::Initial
        }
        None => return None,
    };
    Some(ClientRequest {
        op,
        assets_ids: f.assets_ids.unwrap_or_default(),
        initial_dump: f.initial_dump.unwrap_or(true),
        custom: f.custom_feature_enabled,
    })
}

/// One connection's reader thread.
fn connection(stream: TcpStream, peer: SocketAddr, ctx: &WsContext) {
    let delay = ctx.faults.handshake_delay();
    if !delay.is_zero() && !ctx.wait(delay) {
        return;
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let refuse = ctx.faults.refusing();
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let io = ReaderIo {
        stream: read_half,
        forward: None,
        pending: Vec::new(),
    };
    // The error type is tungstenite's (`http::Response`); it is built at most once per
    // handshake.
    #[allow(clippy::result_large_err, reason = "tungstenite's callback signature")]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != WS_PATH {
            return Err(error_response(StatusCode::NOT_FOUND));
        }
        if refuse {
            return Err(error_response(StatusCode::TOO_MANY_REQUESTS));
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20));
    let mut ws = match tungstenite::accept_hdr_with_config(io, callback, Some(config)) {
        Ok(ws) => ws,
        Err(e) => {
            log::debug!("Sim handshake refused or failed: peer={peer} error={e}");
            return;
        }
    };
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let Ok(shared) = ConnShared::new(id, peer, &stream).map(Arc::new) else {
        return;
    };
    let (tx, rx) = crossbeam_channel::bounded(ctx.queue_capacity);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let writer = Writer::new(
        write_half,
        Arc::clone(&shared),
        rx,
        ctx.seed,
        ctx.array_share,
        ctx.recorder.clone(),
        ctx.clock,
    );
    let writer = match thread::Builder::new()
        .name(format!("sim-ws-w{id}"))
        .stack_size(READER_STACK)
        .spawn(move || writer.run())
    {
        Ok(h) => h,
        Err(e) => {
            log::error!("Sim writer spawn failed: error={e}");
            shared.shutdown();
            return;
        }
    };
    ws.get_mut().forward = Some(tx.clone());
    let registered = ctx
        .core
        .send(Command::Register {
            shared: Arc::clone(&shared),
            tx: tx.clone(),
        })
        .is_ok();
    drop(tx);
    if registered {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if read_loop(&mut ws, &shared, ctx) == ReadEnd::Cut {
            shared.shutdown();
        }
        let _ = ctx.core.send(Command::Disconnected { conn: id });
    } else {
        shared.shutdown();
    }
    // The writer drains what is queued (a close reply, say), then cuts the socket.
    drop(ws);
    shared.reader_done.store(true, Ordering::Relaxed);
    let _ = writer.join();
}

/// How a reader's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// The client left, the socket failed, or the sim is stopping.
    Gone,
    /// The server decided to cut the connection.
    Cut,
}

fn read_loop(ws: &mut WebSocket<ReaderIo>, shared: &ConnShared, ctx: &WsContext) -> ReadEnd {
    while !ctx.stopping() && !shared.closed.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(Message::Text(text)) => {
                if text.as_str().trim() == "PING" {
                    if let Some(tx) = &ws.get_ref().forward {
                        let _ = tx.try_send(Outbound::Pong);
                    }
                    continue;
                }
                let Some(request) = parse_client(text.as_str()) else {
                    continue;
                };
                if request.assets_ids.len() > ctx.max_ids_per_frame {
                    // The venue closes such sockets ~100-200 ms later (rs-clob-client-v2#116).
                    log::debug!(
                        "Closing connection after oversized subscribe: conn={} ids={}",
                        shared.id,
                        request.assets_ids.len()
                    );
                    ctx.wait(ctx.close_delay);
                    return ReadEnd::Cut;
                }
                if ctx
                    .core
                    .send(Command::Client {
                        conn: shared.id,
                        request,
                    })
                    .is_err()
                {
                    return ReadEnd::Gone;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return ReadEnd::Gone,
        }
    }
    ReadEnd::Gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_frames() {
        let r = parse_client(r#"{"assets_ids":["1","2"],"type":"market","initial_dump":true,"custom_feature_enabled":true}"#).unwrap();
        assert_eq!(r.op, ClientOp::Initial);
        assert_eq!(r.assets_ids, vec!["1", "2"]);
        assert_eq!(r.custom, Some(true));
        let r = parse_client(r#"{"operation":"unsubscribe","assets_ids":["1"]}"#).unwrap();
        assert_eq!(r.op, ClientOp::Unsubscribe);
        assert!(r.initial_dump);
        assert!(parse_client("PING").is_none());
        assert!(parse_client(r#"{"type":"user"}"#).is_none());
    }
}
