//! The stream thread's loop (see the module docs of `stream`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Token};
use rustc_hash::{FxHashMap, FxHashSet};
use tungstenite::HandshakeError;
use tungstenite::protocol::WebSocketConfig;

use super::client::{
    BookOpts, Chunk, Client, ClientAsset, ClientIo, Conn, Legacy, PathCheck, Subs,
};
use super::protocol::{self as p, Channel, Request, Selector};
use super::{StreamConfig, StreamServer, StreamStats};
use crate::feed::mirror::mirror_context;
use crate::feed::{FeedConsumer, FeedEvent, FeedItem, FeedKind, MirrorBook};
use crate::market::AssetId;
use crate::orderbook::{BookMeta, CheckContext, Level, UntrustReason};

pub(super) const LISTENER: Token = Token(0);
pub(super) const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;
/// Feed items handled per ring per loop iteration.
const FEED_BATCH: usize = 4096;
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
}

impl AssetBook {
    fn token(&self) -> &str {
        &self.meta.asset_id
    }
}

struct Server {
    poll: mio::Poll,
    listener: mio::net::TcpListener,
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
    started: Instant,
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
        started: Instant::now(),
    };
    let mut events = Events::with_capacity(1024);
    let mut next_tick = Instant::now();
    let mut next_heartbeat = Instant::now() + srv.cfg.heartbeat;
    while !stop.load(Ordering::Acquire) {
        let busy = feeds.iter().any(|f| !f.is_empty())
            || srv.clients.iter().flatten().any(|c| c.read_more);
        let timeout = if busy {
            Duration::ZERO
        } else {
            let now = Instant::now();
            let timers = srv.clients.iter().flatten().any(|c| {
                c.conflated
                    || !c.legacy.is_empty()
                    || c.behind_since.is_some()
                    || c.closing.is_some()
            });
            let until = if timers { next_tick } else { next_heartbeat };
            until
                .saturating_duration_since(now)
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
        }
        if now >= next_heartbeat {
            next_heartbeat = now + srv.cfg.heartbeat;
            srv.heartbeat();
        }
        srv.drain_snapshots();
        srv.write_all();
        srv.stats.queued_bytes.store(
            srv.clients.iter().flatten().map(|c| c.queued as u64).sum(),
            Ordering::Relaxed,
        );
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
            let (mut stream, _peer) = match self.listener.accept() {
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
        let again: Vec<usize> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| c.read_more).map(|_| i))
            .collect();
        for i in again {
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
                    c.read_more = true;
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
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            // Control answers are small and always queued (bounded by the read budget).
            c.push(Chunk::Owned(frame));
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
        c.conflated = false;
        self.all_subs.retain(|&x| x != i);
        self.stats.subscriptions.fetch_sub(
            subs.min(self.stats.subscriptions.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }

    // ---- requests -------------------------------------------------------------------

    fn resolve(&mut self, i: usize, sel: &Selector) -> Option<Vec<AssetId>> {
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        match sel {
            Selector::All => return None,
            Selector::Assets(v) => {
                for t in v {
                    match self.by_token.get(t.as_str()) {
                        Some(&a) => out.push(a),
                        None => unknown.push(t.as_str()),
                    }
                }
            }
            Selector::Markets(v) => {
                for m in v {
                    match self.by_market.get(m.as_str()) {
                        Some(list) => out.extend_from_slice(list),
                        None => unknown.push(m.as_str()),
                    }
                }
            }
        }
        if !unknown.is_empty() {
            let what = if matches!(sel, Selector::Markets(_)) {
                "market"
            } else {
                "asset"
            };
            let shown: Vec<&str> = unknown.iter().take(10).copied().collect();
            let msg = format!(
                "unknown {what}{} ({} of them): {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.len(),
                shown.join(", ")
            );
            bump(&self.stats.bad_requests, 1);
            self.error(i, &msg);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    fn request(&mut self, i: usize, req: Request) {
        match req {
            Request::Ping => self.send_own(i, b"{\"type\":\"pong\"}"),
            Request::Legacy { asset, interval_ms } => {
                let Some(&a) = self.by_token.get(asset.as_str()) else {
                    bump(&self.stats.bad_requests, 1);
                    self.error(i, &format!("unknown asset: {asset}"));
                    return;
                };
                let now = self.now_ms();
                if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                    c.legacy.retain(|l| l.asset != a);
                    c.legacy.push(Legacy {
                        asset: a,
                        interval_ms: u64::from(interval_ms),
                        next_ms: now,
                    });
                }
            }
            Request::Subscribe {
                channel,
                selector,
                depth,
                interval_ms,
            } => self.subscribe(i, channel, &selector, BookOpts { depth, interval_ms }),
            Request::Unsubscribe { channel, selector } => self.unsubscribe(i, channel, &selector),
        }
    }

    fn subscribe(&mut self, i: usize, channel: Channel, sel: &Selector, opts: BookOpts) {
        let assets = self.resolve(i, sel);
        let all = assets.is_none();
        let list: Vec<AssetId> = match assets {
            Some(v) => v,
            None => self
                .books
                .iter()
                .enumerate()
                .filter_map(|(k, b)| b.as_ref().map(|_| AssetId(k as u32)))
                .collect(),
        };
        let mut new_subs = 0u64;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if all {
            let was = c.all.any();
            let before = count(&c.all);
            set_channel(&mut c.all, channel, Some(opts));
            new_subs += count(&c.all) - before;
            if !was {
                self.all_subs.push(i);
            }
        }
        for &a in &list {
            let ca = c.assets.entry(a).or_default();
            if !all {
                let had = ca.explicit.any();
                let before = count(&ca.explicit);
                set_channel(&mut ca.explicit, channel, Some(opts));
                new_subs += count(&ca.explicit) - before;
                if !had {
                    if let Some(b) = self.books.get_mut(a.index()).and_then(Option::as_mut) {
                        b.subs.push(i);
                    }
                }
            }
            if channel == Channel::Book {
                if opts.interval_ms > 0 {
                    ca.dirty = true;
                    ca.last_snap_ms = 0;
                } else if !ca.need_snap {
                    ca.need_snap = true;
                    c.snap_queue.push_back(a);
                }
            }
        }
        if channel == Channel::Book && opts.interval_ms > 0 {
            c.conflated = true;
        }
        bump(&self.stats.subscriptions, new_subs);
        let mut msg = Vec::with_capacity(64);
        msg.extend_from_slice(b"{\"type\":\"subscribed\",\"channel\":\"");
        msg.extend_from_slice(channel.as_str().as_bytes());
        msg.extend_from_slice(b"\",\"assets\":");
        crate::market::price::write_u64(&mut msg, list.len() as u64);
        if all {
            msg.extend_from_slice(b",\"all\":true");
        }
        msg.push(b'}');
        self.send_own(i, &msg);
        if channel == Channel::Bbo {
            for a in list {
                self.send_bbo_to(i, a);
            }
        }
    }

    fn unsubscribe(&mut self, i: usize, channel: Channel, sel: &Selector) {
        let assets = self.resolve(i, sel);
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut removed = 0u64;
        let n = match &assets {
            None => {
                let before = count(&c.all);
                set_channel(&mut c.all, channel, None);
                removed += before - count(&c.all);
                if !c.all.any() {
                    self.all_subs.retain(|&x| x != i);
                }
                0
            }
            Some(list) => {
                for a in list {
                    if let Some(ca) = c.assets.get_mut(a) {
                        let before = count(&ca.explicit);
                        set_channel(&mut ca.explicit, channel, None);
                        removed += before - count(&ca.explicit);
                        if !ca.explicit.any() {
                            if let Some(b) = self.books.get_mut(a.index()).and_then(Option::as_mut)
                            {
                                b.subs.retain(|&x| x != i);
                            }
                        }
                    }
                }
                list.len()
            }
        };
        self.stats.subscriptions.fetch_sub(
            removed.min(self.stats.subscriptions.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        let mut msg = Vec::with_capacity(64);
        msg.extend_from_slice(b"{\"type\":\"unsubscribed\",\"channel\":\"");
        msg.extend_from_slice(channel.as_str().as_bytes());
        msg.extend_from_slice(b"\",\"assets\":");
        crate::market::price::write_u64(&mut msg, n as u64);
        msg.push(b'}');
        self.send_own(i, &msg);
    }

    // ---- feed -----------------------------------------------------------------------

    fn drain(&mut self, f: &mut FeedConsumer) {
        self.batch.clear();
        while self.batch.len() < FEED_BATCH {
            match f.pop() {
                Some(item) => self.batch.push(item),
                None => break,
            }
        }
        if self.batch.is_empty() {
            return;
        }
        bump(&self.stats.feed_items, self.batch.len() as u64);
        // The last change of each asset in the batch may carry the book's hash.
        self.last_of_burst.clear();
        self.last_of_burst.resize(self.batch.len(), false);
        self.seen.clear();
        for (k, item) in self.batch.iter().enumerate().rev() {
            if let FeedItem::Event(e) = item {
                if matches!(e.kind, FeedKind::Change { .. }) && self.seen.insert(e.asset) {
                    self.last_of_burst[k] = true;
                }
            }
        }
        let batch = std::mem::take(&mut self.batch);
        for (k, item) in batch.iter().enumerate() {
            match item {
                FeedItem::Meta { asset, meta } => self.meta(*asset, meta),
                FeedItem::Event(e) => self.event(e, self.last_of_burst[k]),
            }
        }
        self.batch = batch;
    }

    fn meta(&mut self, asset: AssetId, meta: &Arc<BookMeta>) {
        let i = asset.index();
        if i >= self.books.len() {
            self.books.resize_with(i + 1, || None);
        }
        match &mut self.books[i] {
            Some(b) => {
                b.mirror.set_meta((**meta).clone());
                b.meta = Arc::clone(meta);
            }
            slot @ None => {
                *slot = Some(AssetBook {
                    mirror: MirrorBook::new((**meta).clone()),
                    meta: Arc::clone(meta),
                    seq: 0,
                    recv_ns: 0,
                    untrusted: Some(UntrustReason::AwaitingSnapshot),
                    bbo: (None, None),
                    repair: false,
                    subs: Vec::new(),
                    last_hash: None,
                });
            }
        }
        self.by_token.insert(meta.asset_id.clone(), asset);
        let list = self.by_market.entry(meta.market.clone()).or_default();
        if !list.contains(&asset) {
            list.push(asset);
        }
    }

    fn event(&mut self, e: &FeedEvent, last_of_burst: bool) {
        let Some(b) = self.books.get_mut(e.asset.index()).and_then(Option::as_mut) else {
            bump(&self.stats.seq_errors, 1);
            return;
        };
        let ctx = &mut self.ctx;
        match e.kind {
            FeedKind::Snapshot {
                bids,
                asks,
                tick_size,
                last_trade,
                untrusted,
                repair,
            } => {
                b.seq = e.seq;
                b.untrusted = untrusted;
                b.repair = repair;
                b.recv_ns = e.recv_ns;
                b.mirror
                    .begin(ctx, e.venue_ts, bids, asks, tick_size, last_trade);
                if !b.mirror.in_snapshot() {
                    self.snapshot_done(e.asset);
                }
            }
            FeedKind::Level { side, price, size } => {
                if !b.mirror.in_snapshot() || e.seq != b.seq {
                    bump(&self.stats.seq_errors, 1);
                    return;
                }
                b.mirror.level(ctx, e.venue_ts, side, price, size);
                if !b.mirror.in_snapshot() {
                    self.snapshot_done(e.asset);
                }
            }
            _ => {
                if e.seq != b.seq + 1 || b.mirror.in_snapshot() {
                    bump(&self.stats.seq_errors, 1);
                }
                b.seq = e.seq;
                b.recv_ns = e.recv_ns;
                self.delta_like(e, last_of_burst);
            }
        }
    }

    fn snapshot_done(&mut self, asset: AssetId) {
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        if b.repair {
            bump(&self.stats.feed_gaps, 1);
        }
        let targets = self.targets(asset);
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        let bbo = (b.mirror.book().best_bid(), b.mirror.book().best_ask());
        let bbo_changed = bbo != b.bbo;
        b.bbo = bbo;
        if targets.is_empty() {
            return;
        }
        // Everyone on the book channel gets it (full-depth frame shared, depth-limited ones
        // built per client); conflated subscriptions are marked.
        let hash = b.mirror.hash_hex(&mut self.ctx);
        b.last_hash = Some(Instant::now());
        let mut full: Option<Arc<[u8]>> = None;
        for &i in &targets {
            let (subs, _) = self.effective(i, asset);
            let Some(opts) = subs.book else { continue };
            if opts.interval_ms > 0 {
                self.mark_dirty(i, asset);
                continue;
            }
            let frame = if opts.depth == 0 {
                full.get_or_insert_with(|| {
                    let b = self.books[asset.index()].as_ref();
                    let mut out = Vec::new();
                    if let Some(b) = b {
                        snapshot_json(&mut out, b, &hash, 0);
                    }
                    Arc::from(p::text_frame(&out))
                })
                .clone()
            } else {
                let mut out = Vec::new();
                if let Some(b) = self.books[asset.index()].as_ref() {
                    snapshot_json(&mut out, b, &hash, opts.depth);
                }
                Arc::from(p::text_frame(&out))
            };
            self.send_book(i, asset, Chunk::Shared(frame), true);
        }
        if bbo_changed {
            self.bbo_out(asset, &targets);
        }
    }

    /// Changes, trades, tick sizes, trust changes.
    fn delta_like(&mut self, e: &FeedEvent, last_of_burst: bool) {
        let asset = e.asset;
        let targets = self.targets(asset);
        let every = self.cfg.delta_hash_every;
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        let ctx = &mut self.ctx;
        let mut trade_frame = false;
        match e.kind {
            FeedKind::Change { side, price, size } => {
                b.mirror.change(ctx, e.venue_ts, side, price, size);
            }
            FeedKind::Trade { price, size, side } => {
                b.mirror.trade(ctx, e.venue_ts, price, size, side);
                trade_frame = true;
            }
            FeedKind::TickSize { old, new } => {
                b.mirror.tick_size(ctx, e.venue_ts, old, new);
                b.untrusted = Some(UntrustReason::TickSizeChange);
            }
            FeedKind::Trust { reason } => b.untrusted = reason,
            FeedKind::Snapshot { .. } | FeedKind::Level { .. } => return,
        }
        let bbo = (b.mirror.book().best_bid(), b.mirror.book().best_ask());
        let bbo_changed = bbo != b.bbo;
        b.bbo = bbo;
        if targets.is_empty() {
            return;
        }
        let want_book = targets.iter().any(|&i| {
            self.effective(i, asset)
                .0
                .book
                .is_some_and(|o| o.interval_ms == 0)
        });
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        let mut frame: Option<Arc<[u8]>> = None;
        if want_book || trade_frame {
            let mut out = std::mem::take(&mut self.buf);
            out.clear();
            let token: &str = &b.meta.asset_id;
            match e.kind {
                FeedKind::Change { side, price, size } => {
                    let hash = if last_of_burst && b.last_hash.is_none_or(|t| t.elapsed() >= every)
                    {
                        b.last_hash = Some(Instant::now());
                        Some(b.mirror.hash_hex(&mut self.ctx))
                    } else {
                        None
                    };
                    p::delta(
                        &mut out,
                        token,
                        e.seq,
                        e.venue_ts,
                        e.recv_ns,
                        (side, price, size),
                        hash.as_deref(),
                        b.untrusted,
                    );
                }
                FeedKind::Trade { price, size, side } => {
                    p::trade(
                        &mut out,
                        token,
                        e.seq,
                        e.venue_ts,
                        e.recv_ns,
                        (price, size, side),
                    );
                }
                FeedKind::TickSize { old, new } => {
                    p::tick_size(&mut out, token, e.seq, e.venue_ts, e.recv_ns, old, new);
                }
                FeedKind::Trust { reason } => {
                    p::status(&mut out, token, e.seq, e.venue_ts, reason);
                }
                _ => {}
            }
            frame = Some(Arc::from(p::text_frame(&out)));
            self.buf = out;
        }
        for &i in &targets {
            let (subs, _) = self.effective(i, asset);
            if let (Some(_), Some(f)) = (subs.book, &frame) {
                self.send_book(i, asset, Chunk::Shared(Arc::clone(f)), false);
            }
            if trade_frame && subs.trades && subs.book.is_none() {
                if let Some(f) = &frame {
                    self.send_droppable(i, Chunk::Shared(Arc::clone(f)));
                }
            }
        }
        if bbo_changed {
            self.bbo_out(asset, &targets);
        }
    }

    fn bbo_json(&self, asset: AssetId, out: &mut Vec<u8>) -> bool {
        let Some(b) = self.books.get(asset.index()).and_then(Option::as_ref) else {
            return false;
        };
        p::bbo(
            out,
            b.token(),
            b.seq,
            b.mirror.book().last_timestamp(),
            b.recv_ns,
            b.bbo.0,
            b.bbo.1,
        );
        true
    }

    fn bbo_out(&mut self, asset: AssetId, targets: &[usize]) {
        let mut frame: Option<Arc<[u8]>> = None;
        for &i in targets {
            if !self.effective(i, asset).0.bbo {
                continue;
            }
            let f = match &frame {
                Some(f) => Arc::clone(f),
                None => {
                    let mut out = Vec::new();
                    if !self.bbo_json(asset, &mut out) {
                        return;
                    }
                    let f: Arc<[u8]> = Arc::from(p::text_frame(&out));
                    frame = Some(Arc::clone(&f));
                    f
                }
            };
            self.send_droppable(i, Chunk::Shared(f));
        }
    }

    fn send_bbo_to(&mut self, i: usize, asset: AssetId) {
        let mut out = Vec::new();
        if self.bbo_json(asset, &mut out) {
            self.send_droppable(i, Chunk::Owned(p::text_frame(&out)));
        }
    }

    /// Clients to consider for `asset`: explicit subscribers, then `all` ones (once each).
    fn targets(&self, asset: AssetId) -> Vec<usize> {
        let mut t = match self.books.get(asset.index()).and_then(Option::as_ref) {
            Some(b) => b.subs.clone(),
            None => Vec::new(),
        };
        for &i in &self.all_subs {
            if !t.contains(&i) {
                t.push(i);
            }
        }
        t
    }

    /// The channels client `i` gets for `asset`: explicit ones over `all` ones.
    fn effective(&self, i: usize, asset: AssetId) -> (Subs, bool) {
        let Some(c) = self.clients.get(i).and_then(Option::as_ref) else {
            return (Subs::default(), false);
        };
        if !c.is_open() {
            return (Subs::default(), false);
        }
        let e = c.assets.get(&asset).map(|a| a.explicit).unwrap_or_default();
        (
            Subs {
                book: e.book.or(c.all.book),
                bbo: e.bbo || c.all.bbo,
                trades: e.trades || c.all.trades,
            },
            true,
        )
    }

    fn mark_dirty(&mut self, i: usize, asset: AssetId) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            c.assets.entry(asset).or_default().dirty = true;
        }
    }

    /// A book-channel frame for an interval-0 subscription: queued, or conflated.
    fn send_book(&mut self, i: usize, asset: AssetId, frame: Chunk, is_snapshot: bool) {
        let cap = self.cfg.max_queued_bytes;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let ca: &mut ClientAsset = c.assets.entry(asset).or_default();
        if ca.need_snap && !is_snapshot {
            return;
        }
        let len = frame.bytes().len();
        if c.queued + len <= cap {
            if is_snapshot && ca.need_snap {
                ca.need_snap = false;
            }
            c.push(frame);
            if !c.listed {
                c.listed = true;
                self.to_write.push(i);
            }
        } else {
            if !ca.need_snap {
                ca.need_snap = true;
                c.snap_queue.push_back(asset);
                bump(&self.stats.conflations, 1);
            }
            c.behind_since.get_or_insert_with(Instant::now);
        }
    }

    /// bbo and trades-channel frames: queued, or dropped when the client is behind.
    fn send_droppable(&mut self, i: usize, frame: Chunk) {
        let cap = self.cfg.max_queued_bytes;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.room(frame.bytes().len(), cap) {
            c.push(frame);
            self.list(i);
        } else {
            bump(&self.stats.dropped, 1);
            c.behind_since.get_or_insert_with(Instant::now);
        }
    }

    // ---- timers and writes ------------------------------------------------------------

    /// Sends pending snapshots to clients with room (half the queue bound free).
    fn drain_snapshots(&mut self) {
        let cap = self.cfg.max_queued_bytes;
        for i in 0..self.clients.len() {
            while let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                if c.snap_queue.is_empty() || c.queued > cap / 2 || !c.is_open() {
                    break;
                }
                let Some(asset) = c.snap_queue.pop_front() else {
                    break;
                };
                let (subs, _) = self.effective(i, asset);
                let Some(opts) = subs.book else {
                    if let Some(ca) = self
                        .clients
                        .get_mut(i)
                        .and_then(Option::as_mut)
                        .and_then(|c| c.assets.get_mut(&asset))
                    {
                        ca.need_snap = false;
                    }
                    continue;
                };
                let Some(frame) = self.snapshot_frame(asset, opts.depth) else {
                    continue;
                };
                if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                    if let Some(ca) = c.assets.get_mut(&asset) {
                        ca.need_snap = false;
                    }
                    c.push(Chunk::Owned(frame));
                }
                self.list(i);
            }
        }
    }

    fn snapshot_frame(&mut self, asset: AssetId, depth: u32) -> Option<Vec<u8>> {
        let b = self.books.get(asset.index()).and_then(Option::as_ref)?;
        if b.mirror.in_snapshot() {
            return None;
        }
        let hash = b.mirror.hash_hex(&mut self.ctx);
        let mut out = Vec::new();
        snapshot_json(&mut out, b, &hash, depth);
        Some(p::text_frame(&out))
    }

    fn timers(&mut self, now: Instant) {
        let now_ms = self.now_ms();
        let cap = self.cfg.max_queued_bytes;
        let slow_after = self.cfg.slow_close_after;
        for i in 0..self.clients.len() {
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(deadline) = c.closing {
                if c.out.is_empty() || now >= deadline {
                    self.remove(i);
                }
                continue;
            }
            if let Some(since) = c.behind_since {
                if c.snap_queue.is_empty() && c.queued <= cap / 4 {
                    c.behind_since = None;
                } else if now.duration_since(since) >= slow_after {
                    bump(&self.stats.slow_closes, 1);
                    let reason = format!(
                        "too slow: could not keep up for {} s (output bound {} bytes)",
                        slow_after.as_secs(),
                        cap
                    );
                    self.close(i, 1008, &reason);
                    continue;
                }
            }
            // Conflated subscriptions.
            if c.conflated && c.queued <= cap / 2 {
                let mut due = Vec::new();
                for (a, ca) in &mut c.assets {
                    if !ca.dirty {
                        continue;
                    }
                    due.push((*a, ca.last_snap_ms));
                }
                for (a, last) in due {
                    let (subs, _) = self.effective(i, a);
                    let Some(opts) = subs.book.filter(|o| o.interval_ms > 0) else {
                        continue;
                    };
                    if last != 0 && now_ms < last + u64::from(opts.interval_ms) {
                        continue;
                    }
                    let Some(frame) = self.snapshot_frame(a, opts.depth) else {
                        continue;
                    };
                    if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                        if let Some(ca) = c.assets.get_mut(&a) {
                            ca.dirty = false;
                            ca.last_snap_ms = now_ms.max(1);
                        }
                        c.push(Chunk::Owned(frame));
                    }
                    self.list(i);
                }
            }
            // Legacy top-10 messages.
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if c.legacy.is_empty() || !c.is_open() {
                continue;
            }
            let mut due = Vec::new();
            for l in &mut c.legacy {
                if now_ms >= l.next_ms {
                    l.next_ms = now_ms + l.interval_ms;
                    due.push(l.asset);
                }
            }
            for a in due {
                let Some(b) = self.books.get(a.index()).and_then(Option::as_ref) else {
                    continue;
                };
                let hash = b.mirror.hash_hex(&mut self.ctx);
                let mut out = Vec::new();
                p::legacy_orderbook(&mut out, b.mirror.book(), &hash, b.untrusted.is_none());
                self.send_droppable(i, Chunk::Owned(p::text_frame(&out)));
            }
        }
    }

    fn heartbeat(&mut self) {
        let ms = jiff::Timestamp::now().as_millisecond();
        let json = format!("{{\"type\":\"heartbeat\",\"ts_ms\":{ms}}}");
        let frame: Arc<[u8]> = Arc::from(p::text_frame(json.as_bytes()));
        for i in 0..self.clients.len() {
            if self.clients[i].as_ref().is_some_and(Client::is_open) {
                self.send_droppable(i, Chunk::Shared(Arc::clone(&frame)));
            }
        }
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
