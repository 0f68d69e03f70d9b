//! One stream client: its socket (tungstenite for the handshake and for reading frames), its
//! bounded output queue of pre-encoded frames, and its subscriptions. Runs on the stream
//! thread only.
//!
//! tungstenite never writes to the socket: its own replies (the handshake response, pongs,
//! close replies) land in [`ClientIo::replies`] and are queued like any other frame, so
//! frames never interleave and every byte leaving is accounted in the queue.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustc_hash::FxHashMap;
use tungstenite::WebSocket;
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::server::{ErrorResponse, Request, Response, ServerHandshake};

use crate::market::AssetId;

// The error type is tungstenite's; it is built at most once per handshake.
#[allow(clippy::result_large_err, reason = "tungstenite's callback signature")]
/// The paths that upgrade: `/ws`, and `/ws/orderbook` (the original system's).
pub(crate) fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    match req.uri().path() {
        "/ws" | "/ws/" | "/ws/orderbook" => Ok(resp),
        _ => {
            let mut r = ErrorResponse::new(Some("not found: the stream is at /ws".into()));
            *r.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(r)
        }
    }
}

/// The path check's type (a plain function).
pub(crate) type PathCheck = fn(&Request, Response) -> Result<Response, ErrorResponse>;

/// The socket as tungstenite sees it: reads the TCP stream, writes into `replies`.
#[derive(Debug)]
pub(crate) struct ClientIo {
    pub(crate) stream: TcpStream,
    pub(crate) replies: Vec<u8>,
}

impl Read for ClientIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for ClientIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.replies.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the connection is.
pub(crate) enum Conn {
    /// Waiting for the rest of the HTTP upgrade request.
    Handshake(Option<Box<MidHandshake<ServerHandshake<ClientIo, PathCheck>>>>),
    /// Open.
    Open(Box<WebSocket<ClientIo>>),
    /// Being torn down.
    Gone,
}

impl Conn {
    pub(crate) fn io(&mut self) -> Option<&mut ClientIo> {
        match self {
            Conn::Handshake(Some(m)) => Some(m.get_mut().get_mut()),
            Conn::Open(ws) => Some(ws.get_mut()),
            _ => None,
        }
    }
}

/// A frame waiting to be written.
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    /// Shared by every client that gets it.
    Shared(Arc<[u8]>),
    /// This client's alone.
    Owned(Vec<u8>),
}

impl Chunk {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(a) => a,
            Chunk::Owned(v) => v,
        }
    }
}

/// Options of a book-channel subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BookOpts {
    pub(crate) depth: u32,
    pub(crate) interval_ms: u32,
}

/// Channels of one selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Subs {
    pub(crate) book: Option<BookOpts>,
    pub(crate) bbo: bool,
    pub(crate) trades: bool,
}

impl Subs {
    pub(crate) fn any(&self) -> bool {
        self.book.is_some() || self.bbo || self.trades
    }
}

/// A client's state for one asset.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientAsset {
    /// Subscribed by name (token or market).
    pub(crate) explicit: Subs,
    /// No book-channel messages until a snapshot is sent (queued in `snap_queue`).
    pub(crate) need_snap: bool,
    /// Conflated subscription: changed since the last snapshot.
    pub(crate) dirty: bool,
    /// Conflated subscription: when the last snapshot went out (ms on the server clock).
    pub(crate) last_snap_ms: u64,
}

/// A legacy `{"subscribe":…}` subscription.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Legacy {
    pub(crate) asset: AssetId,
    pub(crate) interval_ms: u64,
    pub(crate) next_ms: u64,
}

/// One client.
pub(crate) struct Client {
    pub(crate) conn: Conn,
    pub(crate) out: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    pub(crate) off: usize,
    /// Bytes queued (not yet written).
    pub(crate) queued: usize,
    pub(crate) writable: bool,
    /// In the server's to-write list.
    pub(crate) listed: bool,
    /// `all: true` subscriptions.
    pub(crate) all: Subs,
    pub(crate) assets: FxHashMap<AssetId, ClientAsset>,
    pub(crate) snap_queue: VecDeque<AssetId>,
    /// Conflated subscriptions changed since their last snapshot (`ClientAsset::dirty`).
    pub(crate) dirty: Vec<AssetId>,
    pub(crate) legacy: Vec<Legacy>,
    /// Has a conflated (interval) subscription.
    pub(crate) conflated: bool,
    /// Since when the client could not take everything sent to it.
    pub(crate) behind_since: Option<Instant>,
    /// A close was queued: drop the connection once written or at this deadline.
    pub(crate) closing: Option<Instant>,
    pub(crate) bad_requests: u32,
    /// More frames may be waiting to be read (the read budget ran out).
    pub(crate) read_more: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("queued", &self.queued)
            .field("assets", &self.assets.len())
            .finish_non_exhaustive()
    }
}

/// What one write pass did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
}

impl Client {
    pub(crate) fn new(conn: Conn) -> Client {
        Client {
            conn,
            out: VecDeque::new(),
            off: 0,
            queued: 0,
            writable: true,
            listed: false,
            all: Subs::default(),
            assets: FxHashMap::default(),
            snap_queue: VecDeque::new(),
            dirty: Vec::new(),
            legacy: Vec::new(),
            conflated: false,
            behind_since: None,
            closing: None,
            bad_requests: 0,
            read_more: false,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.conn, Conn::Open(_)) && self.closing.is_none()
    }

    /// Queues a chunk, whatever its size (callers check [`Client::room`] first).
    pub(crate) fn push(&mut self, c: Chunk) {
        self.queued += c.bytes().len();
        self.out.push_back(c);
    }

    /// True when `len` more bytes fit under `cap`.
    pub(crate) fn room(&self, len: usize, cap: usize) -> bool {
        self.queued + len <= cap
    }

    /// Moves tungstenite's own replies into the queue.
    pub(crate) fn take_replies(&mut self) {
        if let Some(io) = self.conn.io() {
            if !io.replies.is_empty() {
                let r = std::mem::take(&mut io.replies);
                self.push(Chunk::Owned(r));
            }
        }
    }

    /// Drops every queued frame not yet started (a partly written one stays, so framing holds).
    pub(crate) fn clear_unsent(&mut self) {
        let keep = if self.off > 0 { 1 } else { 0 };
        while self.out.len() > keep {
            if let Some(c) = self.out.pop_back() {
                self.queued -= c.bytes().len();
            }
        }
    }

    /// Writes as much as the socket takes.
    ///
    /// # Errors
    /// The socket failed (the client is gone).
    pub(crate) fn write_out(&mut self) -> io::Result<Written> {
        let mut w = Written::default();
        let Some(io) = self.conn.io() else {
            return Ok(w);
        };
        let stream = &mut io.stream;
        while !self.out.is_empty() {
            let mut slices: [IoSlice<'_>; 32] = [IoSlice::new(&[]); 32];
            let mut n = 0;
            for (i, c) in self.out.iter().take(32).enumerate() {
                let b = c.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.off..] } else { b });
                n = i + 1;
            }
            match stream.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut done) => {
                    w.bytes += done as u64;
                    self.queued -= done;
                    while done > 0 {
                        let Some(front) = self.out.front() else { break };
                        let left = front.bytes().len() - self.off;
                        if done >= left {
                            done -= left;
                            self.off = 0;
                            self.out.pop_front();
                            w.frames += 1;
                        } else {
                            self.off += done;
                            done = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(w)
    }
}
