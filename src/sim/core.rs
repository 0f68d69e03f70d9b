//! THREAD `sim-core`: the exchange's single owner.
//!
//! Owns the [`Exchange`] (markets, true books), the connection table and the subscription
//! lists. Every other thread talks to it through [`Command`]s on one bounded channel:
//! connection readers register connections and forward subscribe frames, the handle and the
//! HTTP threads ask for truth, REST books, the Gamma catalog and counters, set faults, pause
//! and resume. Between commands it generates flow at the configured rate (a token bucket
//! refilled from a monotonic clock, in batches) and pushes each message, serialised once, into
//! the outbound queue of every connection that should get it.
//!
//! Backpressure: queues are bounded. With [`Overflow::Disconnect`] (the default) a full
//! queue drops that connection (a slow subscriber, counted) and the generator never blocks;
//! with [`Overflow::Block`] the generator waits (throughput measurements).
//!
//! Pause: the core stops generating and puts a `Flush` marker behind everything already
//! queued on every connection; each writer drops its marker once it has flushed the data
//! before it, so the pauser knows when every frame generated before the pause is on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use rustc_hash::FxHashSet;
use tungstenite::Utf8Bytes;

use super::calendar::Clock;
use super::conn::{ConnShared, ConnStats, Outbound};
use super::conn::{ConnTarget, FaultCommand};
use super::exchange::{Emit, Exchange, Listen, Route};
use super::gamma::Catalog;
use super::truth::TruthBook;
use super::{MarketInfo, Overflow, SimConfig, SimError, SimStats};
use std::sync::atomic::Ordering;

/// What a client asked for in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientOp {
    /// The first `{"assets_ids":…,"type":"market"}` message.
    Initial,
    /// `{"operation":"subscribe",…}`.
    Subscribe,
    /// `{"operation":"unsubscribe",…}`.
    Unsubscribe,
}

/// A parsed client frame.
#[derive(Debug, Clone)]
pub(crate) struct ClientRequest {
    /// Kind.
    pub(crate) op: ClientOp,
    /// Token ids.
    pub(crate) assets_ids: Vec<String>,
    /// `initial_dump` (default true).
    pub(crate) initial_dump: bool,
    /// `custom_feature_enabled`, when sent.
    pub(crate) custom: Option<bool>,
}

/// A request to the core thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// A new connection and its queue.
    Register {
        /// Shared state.
        shared: Arc<ConnShared>,
        /// Its outbound queue.
        tx: Sender<Outbound>,
    },
    /// A client frame.
    Client {
        /// Connection id.
        conn: u32,
        /// The request.
        request: ClientRequest,
    },
    /// The connection is gone.
    Disconnected {
        /// Connection id.
        conn: u32,
    },
    /// Stop generating; drop `ack` once every queue is flushed.
    Pause {
        /// Dropped by the last writer to flush.
        ack: Sender<()>,
    },
    /// Generate again.
    Resume,
    /// Truth of one asset (`Some`) or all (`None`).
    Truth {
        /// Token id.
        asset: Option<String>,
        /// Reply.
        reply: Sender<Vec<TruthBook>>,
    },
    /// CLOB REST summaries of the tokens that have a live book.
    RestBooks {
        /// Token ids.
        tokens: Vec<String>,
        /// Reply: one JSON object per token with a book.
        reply: Sender<Vec<String>>,
    },
    /// The Gamma catalog.
    Catalog {
        /// Reply.
        reply: Sender<Arc<Catalog>>,
    },
    /// Every market.
    Markets {
        /// Reply.
        reply: Sender<Vec<MarketInfo>>,
    },
    /// Counters.
    Stats {
        /// Reply.
        reply: Sender<SimStats>,
    },
    /// A fault; the reply says how many connections (or assets) it reached.
    Fault {
        /// The fault.
        fault: FaultCommand,
        /// Reply.
        reply: Sender<usize>,
    },
    /// Shut everything down.
    Stop,
}

/// The sending side of the core's channel, with request/reply helpers.
#[derive(Debug, Clone)]
pub(crate) struct CoreClient {
    tx: Sender<Command>,
    timeout: Duration,
}

impl CoreClient {
    /// A client of the channel; replies are awaited for at most `timeout`.
    pub(crate) fn new(tx: Sender<Command>, timeout: Duration) -> CoreClient {
        CoreClient { tx, timeout }
    }

    /// Sends a command.
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the core is gone.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), SimError> {
        self.tx.send(cmd).map_err(|_| SimError::Stopped)
    }

    /// Sends a command built around a reply channel and waits for the reply.
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the core is gone, [`SimError::Timeout`] when it does not
    /// answer in time.
    pub(crate) fn request<T>(
        &self,
        make: impl FnOnce(Sender<T>) -> Command,
    ) -> Result<T, SimError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.send(make(reply))?;
        rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => SimError::Timeout { what: "core reply" },
            RecvTimeoutError::Disconnected => SimError::Stopped,
        })
    }

    /// Pauses the flow and waits until every connection has flushed what was generated
    /// before the pause.
    ///
    /// # Errors
    /// [`SimError::Stopped`], or [`SimError::Timeout`] when some connection did not flush
    /// within `flush_timeout` (a client that stopped reading).
    pub(crate) fn pause(&self, flush_timeout: Duration) -> Result<(), SimError> {
        let (ack, flushed) = crossbeam_channel::bounded::<()>(0);
        self.send(Command::Pause { ack })?;
        match flushed.recv_timeout(flush_timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(SimError::Timeout {
                what: "pause flush",
            }),
        }
    }
}

/// One connection in the table.
#[derive(Debug)]
struct Slot {
    shared: Arc<ConnShared>,
    tx: Option<Sender<Outbound>>,
    assets: FxHashSet<u32>,
    custom: bool,
    initialized: bool,
}

/// The core thread's state.
#[derive(Debug)]
pub(crate) struct Core {
    cfg: SimConfig,
    clock: Clock,
    ex: Exchange,
    rx: Receiver<Command>,
    conns: Vec<Option<Slot>>,
    subs: Vec<Vec<u32>>,
    marks: Vec<u64>,
    epoch: u64,
    targets: Vec<u32>,
    emits: Vec<Emit>,
    paused: bool,
    stall_all: bool,
    split_all: usize,
    origin: Instant,
    produced: u64,
    generated: u64,
    next_lifecycle: Instant,
    next_new_market: Option<Instant>,
    slow_drops: u64,
}

const BATCH: u64 = 4_096;
const LIFECYCLE_EVERY: Duration = Duration::from_millis(50);

impl Core {
    /// Builds the universe and the books (this can take a moment for large universes).
    pub(crate) fn new(cfg: SimConfig, clock: Clock, rx: Receiver<Command>) -> Core {
        let ex = Exchange::new(&cfg, clock.now_us());
        let now = Instant::now();
        Core {
            subs: vec![Vec::new(); ex.asset_count()],
            next_new_market: cfg.new_market_every.map(|d| now + d),
            cfg,
            clock,
            ex,
            rx,
            conns: Vec::new(),
            marks: Vec::new(),
            epoch: 0,
            targets: Vec::new(),
            emits: Vec::new(),
            paused: false,
            stall_all: false,
            split_all: 0,
            origin: now,
            produced: 0,
            generated: 0,
            next_lifecycle: now + LIFECYCLE_EVERY,
            slow_drops: 0,
        }
    }

    /// Runs until [`Command::Stop`] or until every sender is gone.
    pub(crate) fn run(mut self) {
        loop {
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            return self.shutdown();
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.shutdown(),
                }
            }
            if self.paused {
                match self.rx.recv() {
                    Ok(cmd) => {
                        if self.handle(cmd) {
                            continue;
                        }
                        return self.shutdown();
                    }
                    Err(_) => return self.shutdown(),
                }
            }
            let now = Instant::now();
            if now >= self.next_lifecycle {
                self.lifecycle(now);
                self.next_lifecycle = now + LIFECYCLE_EVERY;
            }
            let due = self.due(now);
            if due > 0 {
                self.generate(due.min(BATCH));
                continue;
            }
            let wait = self
                .until_next(now)
                .min(self.next_lifecycle.saturating_duration_since(now));
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => {
                    if !self.handle(cmd) {
                        return self.shutdown();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.shutdown(),
            }
        }
    }

    fn restart_bucket(&mut self, now: Instant) {
        self.origin = now;
        self.produced = 0;
    }

    /// Messages due by `now` under the rate (a bounded batch when unlimited).
    /// Messages per minute (`rate_per_min` when set, else `rate_per_sec` × 60; 0 = unlimited).
    fn per_minute(&self) -> u64 {
        if self.cfg.rate_per_min > 0 {
            self.cfg.rate_per_min
        } else {
            self.cfg.rate_per_sec.saturating_mul(60)
        }
    }

    fn due(&mut self, now: Instant) -> u64 {
        let rate = self.per_minute();
        if rate == 0 {
            return BATCH;
        }
        let allowed =
            (u128::from(rate) * now.duration_since(self.origin).as_nanos() / 60_000_000_000) as u64;
        let due = allowed.saturating_sub(self.produced);
        // After a long stall (a blocked queue, a slow machine) do not burst to catch up.
        if due > rate / 600 + BATCH {
            self.restart_bucket(now);
            return BATCH.min(rate);
        }
        due
    }

    fn until_next(&self, now: Instant) -> Duration {
        let rate = self.per_minute().max(1);
        let at = Duration::from_nanos(
            ((u128::from(self.produced) + 1) * 60_000_000_000 / u128::from(rate)) as u64,
        );
        (self.origin + at).saturating_duration_since(now)
    }

    fn generate(&mut self, budget: u64) {
        let mut made = 0;
        while made < budget {
            let Some(mi) = self.ex.pick_market() else {
                made = budget;
                break;
            };
            let listen = self.listen(mi);
            let ts = self.clock.now_ms();
            let mut emits = std::mem::take(&mut self.emits);
            let n = self.ex.step(mi, listen, ts, &mut emits);
            for e in emits.drain(..) {
                self.deliver(&e);
            }
            self.emits = emits;
            made += n.max(1);
            self.generated += n;
        }
        self.produced += made;
    }

    fn lifecycle(&mut self, now: Instant) {
        let new_market = match (self.next_new_market, self.cfg.new_market_every) {
            (Some(at), Some(every)) if now >= at => {
                self.next_new_market = Some(now + every);
                true
            }
            _ => false,
        };
        let send = self
            .conns
            .iter()
            .flatten()
            .any(|s| s.custom && s.tx.is_some());
        let mut emits = std::mem::take(&mut self.emits);
        if self
            .ex
            .lifecycle(self.clock.now_us(), new_market, send, &mut emits)
            > 0
        {
            self.subs.resize(self.ex.asset_count(), Vec::new());
        }
        for e in emits.drain(..) {
            self.deliver(&e);
        }
        self.emits = emits;
    }

    fn deliverable(&self, conn: u32) -> bool {
        match self.conns.get(conn as usize) {
            Some(Some(s)) => {
                s.tx.is_some()
                    && !s.shared.stalled.load(Ordering::Relaxed)
                    && s.assets.len() <= self.cfg.max_assets_per_conn
            }
            _ => false,
        }
    }

    fn is_custom(&self, conn: u32) -> bool {
        matches!(self.conns.get(conn as usize), Some(Some(s)) if s.custom)
    }

    fn listen(&self, mi: u32) -> Listen {
        let mut l = Listen::default();
        for (k, a) in self.ex.assets_of(mi).into_iter().enumerate() {
            for &c in &self.subs[a as usize] {
                if self.deliverable(c) {
                    l.market = true;
                    l.custom[k] |= self.is_custom(c);
                }
            }
        }
        l
    }

    fn add_targets(&mut self, conns: &[u32], custom_only: bool) {
        for &c in conns {
            let i = c as usize;
            if self.marks[i] != self.epoch
                && self.deliverable(c)
                && (!custom_only || self.is_custom(c))
            {
                self.marks[i] = self.epoch;
                self.targets.push(c);
            }
        }
    }

    fn deliver(&mut self, e: &Emit) {
        self.epoch += 1;
        self.targets.clear();
        match e.route {
            Route::Market(mi) => {
                for a in self.ex.assets_of(mi) {
                    let subs = std::mem::take(&mut self.subs[a as usize]);
                    self.add_targets(&subs, false);
                    self.subs[a as usize] = subs;
                }
            }
            Route::Asset(a) | Route::AssetCustom(a) => {
                let subs = std::mem::take(&mut self.subs[a as usize]);
                self.add_targets(&subs, matches!(e.route, Route::AssetCustom(_)));
                self.subs[a as usize] = subs;
            }
            Route::CustomAll => {
                let all: Vec<u32> = (0..self.conns.len() as u32).collect();
                self.add_targets(&all, true);
            }
        }
        let targets = std::mem::take(&mut self.targets);
        for &c in &targets {
            self.push(c, Outbound::Msg(e.text.clone()));
        }
        self.targets = targets;
    }

    /// Queues an item for a connection, applying the overflow policy.
    fn push(&mut self, conn: u32, item: Outbound) {
        let Some(Some(slot)) = self.conns.get_mut(conn as usize) else {
            return;
        };
        let Some(tx) = &slot.tx else {
            return;
        };
        let failed = match self.cfg.overflow {
            Overflow::Block => tx.send(item).is_err(),
            Overflow::Disconnect => match tx.try_send(item) {
                Ok(()) => false,
                Err(TrySendError::Full(_)) => {
                    log::warn!(
                        "Slow subscriber dropped: conn={conn} queue={}",
                        self.cfg.queue_capacity
                    );
                    slot.shared.killed_slow.store(true, Ordering::Relaxed);
                    slot.shared.shutdown();
                    self.slow_drops += 1;
                    true
                }
                Err(TrySendError::Disconnected(_)) => true,
            },
        };
        if failed {
            self.close(conn);
        }
    }

    /// Forgets a connection's queue and subscriptions (its stats stay).
    fn close(&mut self, conn: u32) {
        let Some(Some(slot)) = self.conns.get_mut(conn as usize) else {
            return;
        };
        slot.tx = None;
        slot.shared.closed.store(true, Ordering::Relaxed);
        let assets: Vec<u32> = slot.assets.drain().collect();
        for a in assets {
            self.subs[a as usize].retain(|&c| c != conn);
        }
    }

    /// Handles one command; false means stop.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Register { shared, tx } => self.register(shared, tx),
            Command::Client { conn, request } => self.client(conn, request),
            Command::Disconnected { conn } => self.close(conn),
            Command::Pause { ack } => {
                self.paused = true;
                let open: Vec<u32> = self.open_conns().collect();
                for c in open {
                    self.push(c, Outbound::Flush(ack.clone()));
                }
            }
            Command::Resume => {
                if self.paused {
                    self.paused = false;
                    self.restart_bucket(Instant::now());
                }
            }
            Command::Truth { asset, reply } => {
                let books = match asset {
                    Some(token) => self
                        .ex
                        .asset_index(&token)
                        .map(|a| vec![self.ex.truth(a)])
                        .unwrap_or_default(),
                    None => (0..self.ex.asset_count() as u32)
                        .map(|a| self.ex.truth(a))
                        .collect(),
                };
                let _ = reply.send(books);
            }
            Command::RestBooks { tokens, reply } => {
                let ts = self.clock.now_ms();
                let books = tokens
                    .iter()
                    .filter_map(|t| self.ex.rest_book(t, ts))
                    .collect();
                let _ = reply.send(books);
            }
            Command::Catalog { reply } => {
                let _ = reply.send(self.ex.catalog());
            }
            Command::Markets { reply } => {
                let _ = reply.send(self.ex.market_infos());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Fault { fault, reply } => {
                let n = self.fault(fault);
                let _ = reply.send(n);
            }
            Command::Stop => return false,
        }
        true
    }

    fn open_conns(&self) -> impl Iterator<Item = u32> + '_ {
        self.conns
            .iter()
            .flatten()
            .filter(|s| s.tx.is_some())
            .map(|s| s.shared.id)
    }

    fn register(&mut self, shared: Arc<ConnShared>, tx: Sender<Outbound>) {
        let i = shared.id as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
            self.marks.resize(i + 1, 0);
        }
        if self.stall_all {
            shared.stalled.store(true, Ordering::Relaxed);
        }
        if self.split_all > 0 {
            shared.split_chunk.store(self.split_all, Ordering::Relaxed);
        }
        log::debug!(
            "Connection registered: conn={} peer={}",
            shared.id,
            shared.peer
        );
        self.conns[i] = Some(Slot {
            shared,
            tx: Some(tx),
            assets: FxHashSet::default(),
            custom: false,
            initialized: false,
        });
    }

    fn client(&mut self, conn: u32, req: ClientRequest) {
        let Some(Some(slot)) = self.conns.get_mut(conn as usize) else {
            return;
        };
        if slot.tx.is_none() {
            return;
        }
        match req.op {
            ClientOp::Initial if slot.initialized => {
                // Re-sending the initial message on an open socket adds nothing
                // (docs/venue-protocol.md §2.2).
            }
            ClientOp::Initial | ClientOp::Subscribe => {
                slot.initialized = true;
                if let Some(custom) = req.custom {
                    slot.custom = custom;
                }
                self.subscribe(conn, &req.assets_ids, req.initial_dump);
            }
            ClientOp::Unsubscribe => {
                for token in &req.assets_ids {
                    if let Some(a) = self.ex.asset_index(token) {
                        if slot.assets.remove(&a) {
                            self.subs[a as usize].retain(|&c| c != conn);
                        }
                    }
                }
            }
        }
    }

    fn subscribe(&mut self, conn: u32, tokens: &[String], dump: bool) {
        let mut dumped = Vec::new();
        for token in tokens {
            let Some(a) = self.ex.asset_index(token) else {
                continue;
            };
            if !self.ex.is_live(a) {
                continue;
            }
            if let Some(Some(slot)) = self.conns.get_mut(conn as usize) {
                if slot.assets.insert(a) {
                    self.subs[a as usize].push(conn);
                }
            }
            if !self.ex.is_stalled(a) {
                dumped.push(a);
            }
        }
        if !dump || tokens.is_empty() || !self.deliverable(conn) {
            return;
        }
        let ts = self.clock.now_ms();
        let mut out = Vec::with_capacity(2048 * dumped.len() + 2);
        out.push(b'[');
        for (i, &a) in dumped.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.ex.dump_book(a, ts, &mut out);
        }
        out.push(b']');
        if let Ok(text) = Utf8Bytes::try_from(out) {
            self.push(conn, Outbound::Frame(text));
        }
    }

    fn targets_of(&self, target: ConnTarget) -> Vec<u32> {
        match target {
            ConnTarget::All => self.open_conns().collect(),
            ConnTarget::Conn(c) => self.open_conns().filter(|&x| x == c).collect(),
        }
    }

    fn fault(&mut self, fault: FaultCommand) -> usize {
        match fault {
            FaultCommand::Inject(target, injection) => {
                let conns = self.targets_of(target);
                for &c in &conns {
                    self.push(c, Outbound::Inject(injection));
                }
                conns.len()
            }
            FaultCommand::StallConn(target, on) => {
                if target == ConnTarget::All {
                    self.stall_all = on;
                }
                let conns = self.targets_of(target);
                for &c in &conns {
                    if let Some(Some(s)) = self.conns.get(c as usize) {
                        s.shared.stalled.store(on, Ordering::Relaxed);
                    }
                }
                conns.len()
            }
            FaultCommand::StallAsset(token, on) => usize::from(self.ex.stall(&token, on)),
            FaultCommand::SplitWrites(target, chunk) => {
                if target == ConnTarget::All {
                    self.split_all = chunk;
                }
                let conns = self.targets_of(target);
                for &c in &conns {
                    if let Some(Some(s)) = self.conns.get(c as usize) {
                        s.shared.split_chunk.store(chunk, Ordering::Relaxed);
                    }
                }
                conns.len()
            }
            FaultCommand::Clear => {
                self.stall_all = false;
                self.split_all = 0;
                self.ex.clear_stalls();
                for s in self.conns.iter().flatten() {
                    s.shared.stalled.store(false, Ordering::Relaxed);
                    s.shared.split_chunk.store(0, Ordering::Relaxed);
                }
                self.conns.iter().flatten().count()
            }
        }
    }

    fn stats(&self) -> SimStats {
        let (markets_active, markets_closed) = self.ex.market_counts();
        SimStats {
            generated_messages: self.generated,
            slow_consumer_drops: self.slow_drops,
            truth_errors: self.ex.truth_errors(),
            markets_active,
            markets_closed,
            assets: self.ex.asset_count(),
            paused: self.paused,
            recorded_frames: 0,
            connections: self
                .conns
                .iter()
                .flatten()
                .map(|s| {
                    s.shared.stats(
                        s.assets.len(),
                        s.custom,
                        s.tx.as_ref().map_or(0, Sender::len),
                    )
                })
                .collect::<Vec<ConnStats>>(),
        }
    }

    fn shutdown(mut self) {
        for slot in self.conns.iter_mut().flatten() {
            slot.tx = None;
            slot.shared.shutdown();
        }
        log::debug!("Sim core stopped: generated={}", self.generated);
    }
}
