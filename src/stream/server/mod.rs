//! The stream thread's loop (see the module docs of `stream`).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the loop, accept, handshake, reads, closes, writes |
//! | `requests.rs` | subscribe / unsubscribe / ping / legacy requests |
//! | `fanout.rs` | the feed: mirrors, message encoding, fan-out, conflation |
//! | `nats.rs` | the same messages handed to the NATS sink, snapshots after gaps, the KV |
//! | `timers.rs` | pending snapshots, conflated and legacy subscriptions, slow clients, heartbeat |

mod fanout;
pub(super) mod nats;
mod requests;
mod timers;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Token};
use rustc_hash::{FxHashMap, FxHashSet};
use tungstenite::HandshakeError;
use tungstenite::protocol::WebSocketConfig;

use super::client::{BookOpts, Chunk, Client, ClientIo, Conn, PathCheck, Subs};
use super::protocol::{self as p, Channel};
use super::{StreamConfig, StreamServer, StreamStats};
use crate::feed::mirror::mirror_context;
use crate::feed::{FeedConsumer, FeedItem, MirrorBook};
use crate::market::AssetId;
use crate::orderbook::{BookMeta, CheckContext, Level, UntrustReason};

pub(super) const LISTENER: Token = Token(0);
pub(super) const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;
/// Feed items handled per ring per loop iteration.
pub(super) const FEED_BATCH: usize = 4096;
/// Frames read per client per loop iteration.
const READ_BUDGET: usize = 64;
/// Bad requests tolerated before the connection is closed.
const MAX_BAD_REQUESTS: u32 = 100;
/// How long a queued close may take to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Timer granularity (conflated subscriptions, legacy messages, slow clients).
const TICK: Duration = Duration::from_millis(5);

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The stream thread's copy of one book.
struct AssetBook {
    mirror: MirrorBook,
    meta: Arc<BookMeta>,
    seq: u64,
    recv_ns: u64,
    untrusted: Option<UntrustReason>,
    bbo: (Option<Level>, Option<Level>),
    /// The snapshot being received is a repair.
    repair: bool,
    /// Clients with an explicit subscription.
    subs: Vec<usize>,
    last_hash: Option<Instant>,
    /// The full-depth snapshot frame at seq `.0` (shared by every client that needs it).
    cached: Option<(u64, Arc<[u8]>)>,
}

impl AssetBook {
    fn token(&self) -> &str {
        &self.meta.asset_id
    }
}

struct Server {
    poll: mio::Poll,
    /// `None`: the feed side only (`--no-stream` with `--nats-url`).
    listener: Option<mio::net::TcpListener>,
    cfg: StreamConfig,
    stats: Arc<StreamStats>,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    open: usize,
    books: Vec<Option<AssetBook>>,
    by_token: FxHashMap<Box<str>, AssetId>,
    by_market: FxHashMap<Box<str>, Vec<AssetId>>,
    all_subs: Vec<usize>,
    ctx: CheckContext,
    buf: Vec<u8>,
    batch: Vec<FeedItem>,
    last_of_burst: Vec<bool>,
    seen: FxHashSet<AssetId>,
    to_write: Vec<usize>,
    /// Clients whose read budget ran out (read again next iteration).
    read_again: Vec<usize>,
    /// Some client needs the timer tick (conflated, legacy, behind, closing).
    timers_wanted: bool,
    started: Instant,
    nats: Option<nats::NatsTap>,
}

pub(super) fn run(
    s: StreamServer,
    mut feeds: Vec<FeedConsumer>,
    stats: Arc<StreamStats>,
    stop: Arc<AtomicBool>,
) {
    let wake = s.wake();
    let mut srv = Server {
        poll: s.poll,
        listener: s.listener,
        cfg: s.config,
        stats,
        clients: Vec::new(),
        free: Vec::new(),
        open: 0,
        books: Vec::new(),
        by_token: FxHashMap::default(),
        by_market: FxHashMap::default(),
        all_subs: Vec::new(),
        ctx: mirror_context(),
        buf: Vec::with_capacity(1 << 16),
        batch: Vec::with_capacity(FEED_BATCH),
        last_of_burst: Vec::with_capacity(FEED_BATCH),
        seen: FxHashSet::default(),
        to_write: Vec::new(),
        read_again: Vec::new(),
        timers_wanted: false,
        started: Instant::now(),
        nats: s.nats.map(nats::NatsTap::new),
    };
    let mut events = Events::with_capacity(1024);
    let mut next_tick = Instant::now();
    let mut next_heartbeat = Instant::now() + srv.cfg.heartbeat;
    while !stop.load(Ordering::Acquire) {
        let busy = feeds.iter().any(|f| !f.is_empty()) || !srv.read_again.is_empty();
        let timeout = if busy {
            Duration::ZERO
        } else {
            let until = if srv.timers_wanted || srv.nats_busy() {
                next_tick
            } else {
                next_heartbeat
            };
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100))
        };
        if timeout.is_zero() {
            srv.poll_once(&mut events, Duration::ZERO);
        } else {
            wake.sleeping();
            if feeds.iter().any(|f| !f.is_empty()) {
                wake.awake();
                srv.poll_once(&mut events, Duration::ZERO);
            } else {
                srv.poll_once(&mut events, timeout);
                wake.awake();
            }
        }
        srv.read_more();
        for f in &mut feeds {
            srv.drain(f);
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TICK;
            srv.timers(now);
            srv.nats_tick(now);
        }
        if now >= next_heartbeat {
            next_heartbeat = now + srv.cfg.heartbeat;
            srv.heartbeat();
        }
        srv.write_all();
    }
    let n = srv.clients.len();
    for i in 0..n {
        srv.remove(i);
    }
    log::info!("Stream server stopped");
}

impl Server {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn poll_once(&mut self, events: &mut Events, timeout: Duration) {
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("Stream poll failed: error={e}");
            }
            return;
        }
        for ev in events.iter() {
            match ev.token() {
                LISTENER => self.accept(),
                WAKER => {}
                Token(t) => {
                    let i = t - FIRST_CLIENT;
                    if ev.is_writable() {
                        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                            c.writable = true;
                        }
                        self.list(i);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        self.read(i);
                    }
                }
            }
        }
    }

    fn list(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            if !c.listed {
                c.listed = true;
                self.to_write.push(i);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut stream, _peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("Stream accept failed: error={e}");
                    return;
                }
            };
            if self.open >= self.cfg.max_clients {
                bump(&self.stats.refused, 1);
                use std::io::Write as _;
                let _ = stream.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let _ = stream.set_nodelay(true);
            if let Some(n) = self.cfg.send_buffer_bytes {
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(n);
            }
            let i = self.free.pop().unwrap_or_else(|| {
                self.clients.push(None);
                self.clients.len() - 1
            });
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(i + FIRST_CLIENT),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.free.push(i);
                continue;
            }
            let io = ClientIo {
                stream,
                replies: Vec::new(),
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(self.cfg.max_message_bytes))
                .max_frame_size(Some(self.cfg.max_message_bytes));
            let check: PathCheck = super::client::check_path;
            self.open += 1;
            bump(&self.stats.accepted, 1);
            self.stats
                .clients
                .store(self.open as u64, Ordering::Relaxed);
            let conn = match tungstenite::accept_hdr_with_config(io, check, Some(config)) {
                Ok(ws) => Conn::Open(Box::new(ws)),
                Err(HandshakeError::Interrupted(mid)) => Conn::Handshake(Some(Box::new(mid))),
                Err(HandshakeError::Failure(_)) => {
                    bump(&self.stats.handshake_failures, 1);
                    self.open -= 1;
                    self.stats
                        .clients
                        .store(self.open as u64, Ordering::Relaxed);
                    self.free.push(i);
                    continue;
                }
            };
            self.clients[i] = Some(Client::new(conn));
            self.after_io(i);
        }
    }

    /// Queues tungstenite's replies and lists the client for writing.
    fn after_io(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            c.take_replies();
            if !c.out.is_empty() {
                self.list(i);
            }
        }
    }

    fn read_more(&mut self) {
        let again = std::mem::take(&mut self.read_again);
        for &i in &again {
            self.read(i);
        }
    }

    fn read(&mut self, i: usize) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        c.read_more = false;
        if let Conn::Handshake(mid) = &mut c.conn {
            let Some(m) = mid.take() else { return };
            match m.handshake() {
                Ok(ws) => c.conn = Conn::Open(Box::new(ws)),
                Err(HandshakeError::Interrupted(m)) => {
                    *mid = Some(Box::new(m));
                    return;
                }
                Err(HandshakeError::Failure(_)) => {
                    // The error response (404) was written into the replies: send it, drop.
                    bump(&self.stats.handshake_failures, 1);
                    c.conn = Conn::Gone;
                    self.remove(i);
                    return;
                }
            }
            self.after_io(i);
        }
        let max_ids = self.cfg.max_ids_per_request;
        let mut texts: Vec<Result<String, (u16, &'static str)>> = Vec::new();
        let mut gone = false;
        {
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let Conn::Open(ws) = &mut c.conn else { return };
            let mut budget = READ_BUDGET;
            loop {
                if budget == 0 {
                    if !c.read_more {
                        c.read_more = true;
                        self.read_again.push(i);
                    }
                    break;
                }
                budget -= 1;
                match ws.read() {
                    Ok(tungstenite::Message::Text(t)) => texts.push(Ok(t.as_str().to_owned())),
                    Ok(tungstenite::Message::Binary(_)) => {
                        texts.push(Err((
                            1003,
                            "binary frames are not accepted: send JSON text",
                        )));
                        break;
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break;
                    }
                    Err(tungstenite::Error::Capacity(_)) => {
                        texts.push(Err((1009, "message too big")));
                        break;
                    }
                    Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    )) => {
                        gone = true;
                        break;
                    }
                    Err(tungstenite::Error::Protocol(_)) => {
                        texts.push(Err((1002, "protocol error")));
                        break;
                    }
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
        }
        self.after_io(i);
        for t in texts {
            match t {
                Ok(text) => match p::parse_request(&text, max_ids) {
                    Ok(req) => self.request(i, req),
                    Err(e) => self.bad_request(i, &e),
                },
                Err((code, why)) => {
                    bump(&self.stats.protocol_closes, 1);
                    self.close(i, code, why);
                }
            }
        }
        if gone {
            // Flush what tungstenite queued (a close reply), then drop.
            if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                let _ = c.write_out();
            }
            self.remove(i);
        }
    }

    fn send_own(&mut self, i: usize, json: &[u8]) {
        let frame = p::text_frame(json);
        let cap = self.cfg.max_queued_bytes;
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            // Answers are queued even when the client is behind (they are small), up to twice
            // the bound: a client that sends without reading is then closed as slow.
            if c.queued + frame.len() <= 2 * cap {
                c.push(Chunk::Owned(frame));
            } else {
                bump(&self.stats.dropped, 1);
            }
            if c.queued > cap {
                c.behind_since.get_or_insert_with(Instant::now);
                self.timers_wanted = true;
            }
        }
        self.list(i);
    }

    fn error(&mut self, i: usize, msg: &str) {
        let mut out = Vec::with_capacity(msg.len() + 32);
        out.extend_from_slice(b"{\"type\":\"error\",\"error\":");
        p::write_str(&mut out, msg);
        out.push(b'}');
        self.send_own(i, &out);
    }

    fn bad_request(&mut self, i: usize, msg: &str) {
        bump(&self.stats.bad_requests, 1);
        self.error(i, msg);
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            c.bad_requests += 1;
            if c.bad_requests > MAX_BAD_REQUESTS {
                bump(&self.stats.protocol_closes, 1);
                self.close(i, 1008, "too many bad requests");
            }
        }
    }

    /// Queues a close frame (dropping what was not sent) and drops the connection once it
    /// is written or after [`CLOSE_GRACE`].
    fn close(&mut self, i: usize, code: u16, reason: &str) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.clear_unsent();
        c.snap_queue.clear();
        c.dirty.clear();
        c.push(Chunk::Owned(p::close_frame(code, reason)));
        c.closing = Some(Instant::now() + CLOSE_GRACE);
        self.unsubscribe_everything(i);
        self.list(i);
    }

    fn remove(&mut self, i: usize) {
        self.unsubscribe_everything(i);
        let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) else {
            return;
        };
        if let Some(io) = c.conn.io() {
            let _ = self.poll.registry().deregister(&mut io.stream);
            let _ = io.stream.shutdown(std::net::Shutdown::Both);
        }
        c.conn = Conn::Gone;
        self.free.push(i);
        self.open = self.open.saturating_sub(1);
        self.stats
            .clients
            .store(self.open as u64, Ordering::Relaxed);
    }

    fn unsubscribe_everything(&mut self, i: usize) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut subs = 0u64;
        for (a, ca) in c.assets.drain() {
            if ca.explicit.any() {
                subs += count(&ca.explicit);
                if let Some(b) = self.books.get_mut(a.index()).and_then(Option::as_mut) {
                    b.subs.retain(|&x| x != i);
                }
            }
        }
        subs += count(&c.all);
        c.all = Subs::default();
        c.legacy.clear();
        c.dirty.clear();
        c.conflated = false;
        self.all_subs.retain(|&x| x != i);
        self.stats.subscriptions.fetch_sub(
            subs.min(self.stats.subscriptions.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }

    fn write_all(&mut self) {
        let list = std::mem::take(&mut self.to_write);
        for &i in &list {
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            c.listed = false;
            if !c.writable || c.out.is_empty() {
                continue;
            }
            match c.write_out() {
                Ok(w) => {
                    bump(&self.stats.messages_sent, w.frames);
                    bump(&self.stats.bytes_sent, w.bytes);
                    if c.closing.is_some() && c.out.is_empty() {
                        self.remove(i);
                    }
                }
                Err(_) => self.remove(i),
            }
        }
        let mut list = list;
        list.clear();
        if self.to_write.is_empty() {
            self.to_write = list;
        }
    }
}

fn count(s: &Subs) -> u64 {
    u64::from(s.book.is_some()) + u64::from(s.bbo) + u64::from(s.trades)
}

fn set_channel(s: &mut Subs, ch: Channel, opts: Option<BookOpts>) {
    match ch {
        Channel::Book => s.book = opts,
        Channel::Bbo => s.bbo = opts.is_some(),
        Channel::Trades => s.trades = opts.is_some(),
    }
}

fn snapshot_json(out: &mut Vec<u8>, b: &AssetBook, hash: &str, depth: u32) {
    p::snapshot(
        out,
        b.mirror.book(),
        &p::SnapshotHead {
            seq: b.seq,
            recv_ns: b.recv_ns,
            untrusted: b.untrusted,
            hash,
            depth,
        },
    );
}
