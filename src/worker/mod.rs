//! Book workers: one pinned thread per shard, owning the order books of its assets.
//!
//! A [`BookWorker`] runs on its own **book worker thread** ([`BookWorker::run`]). It owns
//! the consumer end of its rtrb ring (fed by the event loop's
//! [`Router`](crate::handoff::Router)), every [`OrderBook`] of its shard, a
//! [`CheckContext`], the user's [`Handler`] and its query receiver. It shares only its
//! [`WorkerStats`] (single-writer atomics), a park flag and channels with other threads.
//!
//! # Loop
//! 1. Pop up to `max_chunk` items with one `read_chunk`; apply each: records go to
//!    [`OrderBook::apply`] (all book logic and checks live there), control items add/remove
//!    books or mark them untrusted ([`WorkItem::DataLoss`]). Call the handler, count.
//! 2. Answer pending [`BookQuery`]s (`try_recv`).
//! 3. Settle same-timestamp groups that got no record for `settle_after` (only books on a
//!    short pending list are looked at, never all books).
//! 4. Refresh gauges (books, heap bytes) every `stats_interval`; beat the heartbeat.
//! 5. Ring empty: run the [`IdleStrategy`]. Exit when the shutdown flag is set, or when the
//!    producer is gone and the ring is empty.
//!
//! # Integrity
//! A book that becomes untrusted because of a failed check (hash, best bid/ask, crossed), a
//! `tick_size_change` or an incomplete snapshot produces a [`ResyncRequest`] on a bounded
//! channel (`try_send`: never blocks; a full channel is counted) and one notify call per
//! chunk (e.g. the event loop's `mio::Waker`). Books untrusted by a DataLoss marker are not
//! requested again: whoever sent the marker (the router's flush report) already knows.
//!
//! Nothing in the loop blocks, locks, logs per message or allocates per record once warm
//! (queries and book additions allocate).

pub mod clock;
pub mod handler;
pub mod idle;
pub mod query;
pub mod stats;
pub mod window;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;
use rtrb::{Consumer, RingBuffer};

pub use clock::now_ns;
pub use handler::{BookLookup, Handler, HandlerFactory, NoopHandler, noop_factory};
pub use idle::IdleStrategy;
pub use query::{BookQuerier, BookQuery, BookView, QueryError};
pub use stats::{
    CumulativeHistogram, Histogram, HistogramCounts, HistogramSnapshot, UntrustCounts, WorkerStats,
    WorkerStatsSnapshot, hash_verified_share,
};
pub use window::{LatencyWindow, RECENT_WINDOW, RecentLatency};

pub use crate::handoff::Unparker;
use crate::handoff::{Router, WorkItem, bump};
use crate::market::{AssetId, Event, Record};
use crate::orderbook::{
    CheckContext, CheckMode, Effect, HashVerdict, OrderBook, UntrustReason, Verdict,
};
use crate::pinning::{CorePlacement, pin_current_thread};
use idle::{IdleAction, Idler};

/// The default hash-check mode: every settled group while the worker keeps up, one in 16 when
/// it has a backlog. Hashing a group costs several times the whole rest of the apply path on
/// realistic books (`benches/pipeline.rs`, `benches/BENCHMARKS.md` "Pipeline and workers"),
/// so under backlog one in 16 keeps the worker ahead while a diverged book is still caught
/// within a few of its updates; with slack, every group is verified. `/stats`
/// `hash_skipped` counts the groups a sample left out.
pub const DEFAULT_CHECK_MODE: CheckMode =
    CheckMode::Adaptive(match std::num::NonZeroU32::new(16) {
        Some(n) => n,
        None => unreachable!(),
    });

/// Configuration of one book worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// How often book hashes are checked.
    pub check_mode: CheckMode,
    /// What to do when the ring is empty.
    pub idle: IdleStrategy,
    /// Settle a same-timestamp group when its book got no record for this long.
    pub settle_after: Duration,
    /// Most ring items popped per chunk (bounds query and settle latency under load).
    pub max_chunk: usize,
    /// How often gauges (heap bytes) are recomputed.
    pub stats_interval: Duration,
    /// `WorkerHandle::is_alive` is false when the heartbeat is older than this.
    pub heartbeat_timeout: Duration,
    /// Where to pin the thread (falls back to unpinned with one warning).
    pub placement: CorePlacement,
    /// Capacity of the query channel.
    pub query_capacity: usize,
}

impl Default for WorkerConfig {
    /// [`DEFAULT_CHECK_MODE`], [`IdleStrategy::default`], settle after 50 ms, chunks of 256,
    /// gauges every 100 ms, heartbeat timeout 2 s, unpinned, 64 queued queries.
    fn default() -> WorkerConfig {
        WorkerConfig {
            check_mode: DEFAULT_CHECK_MODE,
            idle: IdleStrategy::default(),
            settle_after: Duration::from_millis(50),
            max_chunk: 256,
            stats_interval: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_secs(2),
            placement: CorePlacement::Unpinned,
            query_capacity: 64,
        }
    }
}

/// A book that needs a fresh snapshot, sent to the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncRequest {
    /// The asset.
    pub asset: AssetId,
    /// Why its book became untrusted.
    pub reason: UntrustReason,
    /// The worker that owns it.
    pub worker: usize,
}

/// Where workers send [`ResyncRequest`]s, plus an optional wake-up for the receiver.
#[derive(Clone, Default)]
pub struct ResyncSink {
    tx: Option<Sender<ResyncRequest>>,
    notify: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ResyncSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResyncSink")
            .field("channel", &self.tx.is_some())
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

impl ResyncSink {
    /// Requests go to `tx` (make it bounded; a full channel drops and counts).
    pub fn new(tx: Sender<ResyncRequest>) -> ResyncSink {
        ResyncSink {
            tx: Some(tx),
            notify: None,
        }
    }

    /// Requests are counted and discarded (tests, replay).
    pub fn disabled() -> ResyncSink {
        ResyncSink::default()
    }

    /// Calls `notify` after a chunk that sent at least one request.
    pub fn with_notify(mut self, notify: Arc<dyn Fn() + Send + Sync>) -> ResyncSink {
        self.notify = Some(notify);
        self
    }

    /// Wakes a mio `Poll` after a chunk that sent at least one request.
    pub fn with_waker(self, waker: Arc<mio::Waker>) -> ResyncSink {
        self.with_notify(Arc::new(move || {
            // A failed wake means the poll is gone (shutdown); nothing to do.
            let _ = waker.wake();
        }))
    }

    fn try_send(&self, req: ResyncRequest) -> bool {
        match &self.tx {
            Some(tx) => match tx.try_send(req) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }

    fn notify(&self) {
        if let Some(n) = &self.notify {
            n();
        }
    }
}

struct Slot {
    book: Box<OrderBook>,
    /// `now_ns` of the last chunk that left a pending group on the book.
    touched_ns: u64,
    in_pending: bool,
    /// Trust as last reported to the handler.
    reported_trusted: bool,
}

/// Everything a record's consequences touch besides its book.
struct Outputs {
    worker: usize,
    handler: Box<dyn Handler>,
    stats: Arc<WorkerStats>,
    resync: ResyncSink,
    notify_due: bool,
    books: u64,
    trusted: u64,
}

impl Outputs {
    fn verdict(&self, v: &Verdict) {
        let h = &self.stats.hot;
        bump(&h.groups_settled, 1);
        bump(
            match v.hash {
                HashVerdict::NotChecked => &h.hash_not_checked,
                HashVerdict::Skipped => {
                    bump(&h.hash_skipped, 1);
                    &h.hash_not_checked
                }
                HashVerdict::Matched => &h.hash_matched,
                HashVerdict::MatchedInferredMeta => {
                    bump(&self.stats.cold.meta_inferred, 1);
                    &h.hash_matched
                }
                HashVerdict::MatchedInferredTrade => &h.hash_matched_inferred_trade,
                HashVerdict::Mismatch => &h.hash_mismatched,
            },
            1,
        );
        if !v.bbo_ok {
            bump(&h.bbo_mismatches, 1);
        }
        if v.crossed {
            bump(&h.crossed, 1);
        }
    }

    /// Reacts to the book's trust after a record or settle: counts, resync, handler.
    fn trust(&mut self, asset: AssetId, slot: &mut Slot, prev: Result<(), UntrustReason>) {
        let cur = slot.book.trust();
        if cur != prev {
            if let Err(reason) = cur {
                if reason != UntrustReason::AwaitingSnapshot {
                    self.stats.untrusted(reason);
                }
                if needs_resync(reason) {
                    self.request_resync(asset, reason);
                }
            }
        }
        if cur.is_ok() != slot.reported_trusted {
            match cur {
                Ok(()) => {
                    slot.reported_trusted = true;
                    self.set_trusted(self.trusted + 1);
                    self.handler.on_trust_change(asset, true, None);
                }
                // A fresh snapshot of a trusted book is being received: not reported.
                Err(UntrustReason::AwaitingSnapshot) => {}
                Err(reason) => {
                    slot.reported_trusted = false;
                    self.set_trusted(self.trusted.saturating_sub(1));
                    self.handler.on_trust_change(asset, false, Some(reason));
                }
            }
        }
    }

    fn set_trusted(&mut self, n: u64) {
        self.trusted = n;
        self.stats.cold.trusted_books.store(n, Ordering::Relaxed);
    }

    fn set_books(&mut self, n: u64) {
        self.books = n;
        self.stats.cold.orderbook_count.store(n, Ordering::Relaxed);
    }

    fn request_resync(&mut self, asset: AssetId, reason: UntrustReason) {
        let req = ResyncRequest {
            asset,
            reason,
            worker: self.worker,
        };
        if self.resync.try_send(req) {
            bump(&self.stats.cold.resync_sent, 1);
            self.notify_due = true;
        } else {
            bump(&self.stats.cold.resync_dropped, 1);
        }
    }
}

/// Whether a book untrusted for `reason` needs a resync request from its worker.
fn needs_resync(reason: UntrustReason) -> bool {
    match reason {
        UntrustReason::TickSizeChange
        | UntrustReason::IncompleteSnapshot
        | UntrustReason::HashMismatch
        | UntrustReason::BboMismatch
        | UntrustReason::Crossed => true,
        // Waiting for a snapshot already requested; DataLoss was reported by its sender.
        // Stale: the event loop heals it by recycling the frozen connection.
        UntrustReason::AwaitingSnapshot | UntrustReason::DataLoss | UntrustReason::Stale => false,
    }
}

/// The books of one shard and what applying records to them touches.
struct Shard {
    books: Vec<Option<Slot>>,
    /// Assets whose books may hold a pending group (may contain stale entries).
    pending: Vec<AssetId>,
    ctx: CheckContext,
    out: Outputs,
}

impl Shard {
    fn item(&mut self, item: WorkItem, now: u64) {
        match item {
            WorkItem::Record(rec) => self.record(&rec, now),
            WorkItem::AddBook { asset, meta } => {
                let i = asset.index();
                if i >= self.books.len() {
                    self.books.resize_with(i + 1, || None);
                }
                match &mut self.books[i] {
                    Some(slot) => slot.book.set_meta(*meta),
                    empty @ None => {
                        *empty = Some(Slot {
                            book: Box::new(OrderBook::new(*meta)),
                            touched_ns: 0,
                            in_pending: false,
                            reported_trusted: false,
                        });
                        bump(&self.out.stats.cold.books_added, 1);
                        self.out.set_books(self.out.books + 1);
                    }
                }
            }
            WorkItem::RemoveBook { asset } => {
                if let Some(slot) = self.books.get_mut(asset.index()).and_then(Option::take) {
                    if slot.reported_trusted {
                        self.out.set_trusted(self.out.trusted.saturating_sub(1));
                    }
                    bump(&self.out.stats.cold.books_removed, 1);
                    self.out.set_books(self.out.books.saturating_sub(1));
                    self.out.handler.on_remove(asset);
                }
            }
            WorkItem::MarkStale { asset } => {
                if let Some(slot) = self.books.get_mut(asset.index()).and_then(Option::as_mut) {
                    let prev = slot.book.trust();
                    if prev.is_ok() {
                        slot.book.mark_untrusted(UntrustReason::Stale);
                        self.out.trust(asset, slot, prev);
                    }
                }
            }
            WorkItem::DataLoss { asset } => {
                bump(&self.out.stats.cold.data_loss_marks, 1);
                if let Some(slot) = self.books.get_mut(asset.index()).and_then(Option::as_mut) {
                    let prev = slot.book.trust();
                    slot.book.mark_untrusted(UntrustReason::DataLoss);
                    self.out.trust(asset, slot, prev);
                }
            }
        }
    }

    #[inline]
    fn record(&mut self, rec: &Record, now: u64) {
        let stats: &WorkerStats = &self.out.stats;
        let hot = &stats.hot;
        let asset = rec.asset;
        let Some(slot) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            bump(&hot.no_book, 1);
            return;
        };
        let prev = slot.book.trust();
        let step = slot.book.apply(rec, &mut self.ctx);
        if let Some(v) = &step.settled {
            self.out.verdict(v);
        }
        match step.entry_hash {
            Some(true) => bump(&hot.entry_hash_matched, 1),
            Some(false) => bump(&hot.entry_hash_mismatched, 1),
            None => {}
        }
        let book = &*slot.book;
        let handler = &mut self.out.handler;
        match step.effect {
            Effect::Applied => {
                bump(&hot.records_applied, 1);
                match rec.event {
                    Event::Change { .. } => {
                        bump(&hot.updates_applied, 1);
                        handler.on_change(asset, rec, book);
                    }
                    Event::Trade { .. } => {
                        bump(&hot.trades, 1);
                        handler.on_trade(asset, rec, book);
                    }
                    _ => {}
                }
            }
            Effect::Staged => bump(&hot.records_applied, 1),
            Effect::SnapshotApplied { hash } => {
                bump(&hot.records_applied, 1);
                let cold = &stats.cold;
                bump(&cold.snapshots_received, 1);
                match hash {
                    HashVerdict::Matched | HashVerdict::MatchedInferredTrade => {
                        bump(&cold.snapshot_hash_matched, 1);
                    }
                    HashVerdict::MatchedInferredMeta => {
                        bump(&cold.snapshot_hash_matched, 1);
                        bump(&cold.meta_inferred, 1);
                    }
                    HashVerdict::Mismatch => bump(&cold.snapshot_hash_mismatched, 1),
                    HashVerdict::NotChecked | HashVerdict::Skipped => {}
                }
                handler.on_snapshot_record(asset, rec, book);
            }
            Effect::SkippedNotTrusted => bump(&hot.skipped_untrusted, 1),
            Effect::BecameUntrusted(_) => match rec.event {
                Event::TickSize { .. } => {
                    bump(&stats.cold.tick_size_changes, 1);
                    handler.on_tick_size(asset, rec, book);
                }
                Event::Trade { .. } => {
                    // The trade was recorded; the group it settled failed its checks.
                    bump(&hot.records_applied, 1);
                    bump(&hot.trades, 1);
                    handler.on_trade(asset, rec, book);
                }
                _ => {}
            },
            Effect::Stray => bump(&hot.stray, 1),
        }
        self.out.trust(asset, slot, prev);
        if slot.book.has_pending_group() {
            slot.touched_ns = now;
            if !slot.in_pending {
                slot.in_pending = true;
                self.pending.push(asset);
            }
        }
    }

    /// Settles groups of books that got no record for `settle_after`.
    fn settle_due(&mut self, now: u64, settle_after_ns: u64) {
        let mut i = 0;
        while i < self.pending.len() {
            let asset = self.pending[i];
            let Some(slot) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
                self.pending.swap_remove(i);
                continue;
            };
            if !slot.book.has_pending_group() {
                slot.in_pending = false;
                self.pending.swap_remove(i);
                continue;
            }
            if now.saturating_sub(slot.touched_ns) < settle_after_ns {
                i += 1;
                continue;
            }
            let prev = slot.book.trust();
            if let Some(v) = slot.book.settle(&mut self.ctx) {
                self.out.verdict(&v);
                bump(&self.out.stats.cold.timer_settles, 1);
            }
            self.out.trust(asset, slot, prev);
            slot.in_pending = false;
            self.pending.swap_remove(i);
        }
    }

    /// Gives the handler its end-of-chunk call with read access to the books.
    fn flush_handler(&mut self) {
        self.out.handler.on_flush(&Books(&self.books));
    }

    fn heap_bytes(&self) -> u64 {
        let books: usize = self
            .books
            .iter()
            .flatten()
            .map(|s| s.book.heap_bytes() + std::mem::size_of::<OrderBook>())
            .sum();
        (books
            + self.books.capacity() * std::mem::size_of::<Option<Slot>>()
            + self.pending.capacity() * std::mem::size_of::<AssetId>()) as u64
    }
}

/// The books of a shard as [`Handler::on_flush`] sees them.
struct Books<'a>(&'a [Option<Slot>]);

impl BookLookup for Books<'_> {
    fn book(&self, asset: AssetId) -> Option<&OrderBook> {
        self.0
            .get(asset.index())
            .and_then(Option::as_ref)
            .map(|s| &*s.book)
    }
}

/// A book worker, before or while it runs. Build with [`BookWorker::new`], start with
/// [`BookWorker::spawn`] (or call [`BookWorker::run`] on a thread of your own).
pub struct BookWorker {
    id: usize,
    consumer: Consumer<WorkItem>,
    queries: Receiver<BookQuery>,
    query_tx: Sender<BookQuery>,
    shard: Shard,
    config: WorkerConfig,
    shutdown: Arc<AtomicBool>,
    parked: Arc<CachePadded<AtomicBool>>,
    /// `received_ns` of the records of the current chunk.
    received: Vec<u64>,
}

impl std::fmt::Debug for BookWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookWorker")
            .field("id", &self.id)
            .field("books", &self.shard.out.books)
            .field("config", &self.config)
            .finish()
    }
}

struct RunningGuard(usize, Arc<WorkerStats>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        // Also runs when the worker unwinds from a panic (a handler's, say): the same path in
        // every build profile (none aborts on panic).
        self.1.beat.running.store(false, Ordering::Release);
        if std::thread::panicking() {
            log::error!(
                "Book worker {} died (panic): its books are no longer updated or served; \
                 /health reports 503 until the process is restarted",
                self.0
            );
        }
    }
}

impl BookWorker {
    /// A worker with index `id` consuming `consumer`. `shutdown` stops it at the next loop
    /// iteration (it also stops when the ring's producer is dropped and the ring is empty).
    pub fn new(
        id: usize,
        consumer: Consumer<WorkItem>,
        config: WorkerConfig,
        handler: Box<dyn Handler>,
        resync: ResyncSink,
        shutdown: Arc<AtomicBool>,
    ) -> BookWorker {
        let (query_tx, queries) = crossbeam_channel::bounded(config.query_capacity.max(1));
        let stats = Arc::new(WorkerStats::new(id));
        let max_chunk = config.max_chunk.max(1);
        BookWorker {
            id,
            consumer,
            queries,
            query_tx,
            shard: Shard {
                books: Vec::new(),
                pending: Vec::new(),
                ctx: CheckContext::new(config.check_mode),
                out: Outputs {
                    worker: id,
                    handler,
                    stats,
                    resync,
                    notify_due: false,
                    books: 0,
                    trusted: 0,
                },
            },
            config: WorkerConfig {
                max_chunk,
                ..config
            },
            shutdown,
            parked: Arc::new(CachePadded::new(AtomicBool::new(false))),
            received: Vec::with_capacity(max_chunk),
        }
    }

    /// The worker's statistics.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.shard.out.stats)
    }

    /// A querier for this worker that does not unpark it (it answers within its idle
    /// strategy's park timeout). [`WorkerHandle::querier`] is the better one once spawned.
    pub fn querier(&self) -> BookQuerier {
        BookQuerier::new(self.id, self.query_tx.clone(), None)
    }

    /// Starts the worker on a new thread named `book-{id}`.
    ///
    /// # Errors
    /// The OS refused to create the thread.
    pub fn spawn(self) -> io::Result<WorkerHandle> {
        let id = self.id;
        let stats = self.stats();
        let query_tx = self.query_tx.clone();
        let parked = Arc::clone(&self.parked);
        let heartbeat_timeout = self.config.heartbeat_timeout;
        // Marked running before the thread starts so a fresh handle is alive.
        stats.beat.running.store(true, Ordering::Release);
        stats.beat.heartbeat_ns.store(now_ns(), Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name(format!("book-{id}"))
            .spawn(move || self.run());
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                stats.beat.running.store(false, Ordering::Release);
                return Err(e);
            }
        };
        let t = thread.thread().clone();
        Ok(WorkerHandle {
            id,
            stats,
            querier: BookQuerier::new(id, query_tx, Some(t.clone())),
            unparker: Unparker::new(parked, t),
            thread,
            heartbeat_timeout,
        })
    }

    /// The worker loop (see the module docs). Returns when shut down or abandoned.
    pub fn run(mut self) {
        let stats = self.stats();
        stats.beat.running.store(true, Ordering::Release);
        let _running = RunningGuard(self.id, Arc::clone(&stats));
        self.pin(&stats);
        log::info!(
            "Book worker started: worker={} placement={:?}",
            self.id,
            self.config.placement
        );

        let mut idler = Idler::new(self.config.idle);
        let settle_after_ns = duration_ns(self.config.settle_after);
        let scan_every_ns = (settle_after_ns / 2).max(100_000);
        let stats_every_ns = duration_ns(self.config.stats_interval);
        let mut now = now_ns();
        let mut last_scan = now;
        let mut last_gauges = now;
        self.refresh_gauges();
        loop {
            let available = self.consumer.slots().min(self.config.max_chunk);
            if available > 0 {
                // More than a chunk waiting: a backlog (adaptive hash checks sample).
                self.shard
                    .ctx
                    .set_backlog(self.consumer.slots() > self.config.max_chunk);
                now = self.process_chunk(available);
                idler.work(now);
            } else {
                now = now_ns();
            }
            stats.beat.heartbeat_ns.store(now, Ordering::Relaxed);
            bump(&stats.beat.loops, 1);
            self.answer_queries();
            if now.saturating_sub(last_scan) >= scan_every_ns {
                last_scan = now;
                self.shard.settle_due(now, settle_after_ns);
                self.shard.flush_handler();
            }
            if self.shard.out.notify_due {
                self.shard.out.notify_due = false;
                self.shard.out.resync.notify();
            }
            if now.saturating_sub(last_gauges) >= stats_every_ns {
                last_gauges = now;
                self.refresh_gauges();
            }
            if self.shutdown.load(Ordering::Acquire) {
                break;
            }
            if available == 0 {
                if self.consumer.is_abandoned() && self.consumer.slots() == 0 {
                    break;
                }
                match idler.next(now) {
                    IdleAction::Spin => std::hint::spin_loop(),
                    IdleAction::Yield => std::thread::yield_now(),
                    IdleAction::Park(d) => self.park(d),
                }
            }
        }
        self.refresh_gauges();
        stats.beat.heartbeat_ns.store(now_ns(), Ordering::Relaxed);
        log::info!("Book worker stopped: worker={}", self.id);
    }

    fn pin(&self, stats: &WorkerStats) {
        let placement = self.config.placement;
        match pin_current_thread(placement) {
            Ok(()) => {
                if let CorePlacement::Core(core) = placement {
                    stats.cold.pinned.store(true, Ordering::Relaxed);
                    stats.cold.core.store(core as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                log::warn!("Book worker runs unpinned: worker={} error={e}", self.id);
            }
        }
    }

    /// Pops and applies up to `n` items; returns the time after applying them.
    fn process_chunk(&mut self, n: usize) -> u64 {
        let start = now_ns();
        let Ok(chunk) = self.consumer.read_chunk(n) else {
            return start;
        };
        self.received.clear();
        for item in chunk {
            if let WorkItem::Record(rec) = &item {
                if rec.received_ns != 0 && self.received.len() < self.received.capacity() {
                    self.received.push(rec.received_ns);
                }
            }
            self.shard.item(item, start);
        }
        self.shard.flush_handler();
        let end = now_ns();
        let stats = &self.shard.out.stats;
        let took = end.saturating_sub(start);
        bump(&stats.hot.messages_processed, n as u64);
        bump(&stats.hot.chunks, 1);
        bump(&stats.hot.processing_ns, took);
        stats.processing.record(took);
        if took > stats.cold.max_chunk_ns.load(Ordering::Relaxed) {
            stats.cold.max_chunk_ns.store(took, Ordering::Relaxed);
        }
        for &r in &self.received {
            stats.latency.record(end.saturating_sub(r));
        }
        end
    }

    fn answer_queries(&mut self) {
        // Bounded per iteration so a query storm cannot starve the ring.
        for _ in 0..16 {
            let Ok(q) = self.queries.try_recv() else {
                return;
            };
            let shard = &mut self.shard;
            let view = shard
                .books
                .get(q.asset.index())
                .and_then(Option::as_ref)
                .map(|slot| {
                    BookView::of(q.asset, self.id, &slot.book, q.depth, &mut shard.ctx.hasher)
                });
            // The asker may have given up (deadline passed): nothing to do.
            let _ = q.reply.try_send(view);
            bump(&shard.out.stats.cold.queries_answered, 1);
        }
    }

    fn refresh_gauges(&self) {
        let cold = &self.shard.out.stats.cold;
        cold.memory_usage
            .store(self.shard.heap_bytes(), Ordering::Relaxed);
    }

    fn park(&self, timeout: Duration) {
        self.parked.store(true, Ordering::Relaxed);
        // Pairs with the fence in `Unparker::unpark` (Dekker): after it, either the router
        // sees the flag or this thread sees the items it pushed.
        fence(Ordering::SeqCst);
        if self.consumer.slots() == 0
            && self.queries.is_empty()
            && !self.shutdown.load(Ordering::Acquire)
        {
            std::thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::Relaxed);
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A running worker, owned by the engine.
#[derive(Debug)]
pub struct WorkerHandle {
    id: usize,
    stats: Arc<WorkerStats>,
    querier: BookQuerier,
    unparker: Unparker,
    thread: JoinHandle<()>,
    heartbeat_timeout: Duration,
}

/// A worker thread ended by panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("book worker {worker} panicked")]
pub struct WorkerPanicked {
    /// The worker.
    pub worker: usize,
}

impl WorkerHandle {
    /// Worker index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Its statistics.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// A cloneable querier (for the HTTP thread).
    pub fn querier(&self) -> BookQuerier {
        self.querier.clone()
    }

    /// Its unparker (for the router).
    pub fn unparker(&self) -> Unparker {
        self.unparker.clone()
    }

    /// Wakes the worker if parked (after setting the shutdown flag, say).
    pub fn unpark(&self) {
        self.thread.thread().unpark();
    }

    /// See [`BookQuerier::query`].
    ///
    /// # Errors
    /// [`QueryError::Timeout`] or [`QueryError::Disconnected`].
    pub fn query(
        &self,
        asset: AssetId,
        depth: usize,
        deadline: Duration,
    ) -> Result<Option<BookView>, QueryError> {
        self.querier.query(asset, depth, deadline)
    }

    /// Age of the last heartbeat.
    pub fn heartbeat_age(&self) -> Duration {
        Duration::from_nanos(now_ns().saturating_sub(self.stats.heartbeat_ns()))
    }

    /// True while the thread runs its loop and its heartbeat is younger than the configured
    /// `heartbeat_timeout`. False after a panic, after shutdown, or when stalled.
    pub fn is_alive(&self) -> bool {
        !self.thread.is_finished()
            && self.stats.is_running()
            && self.heartbeat_age() < self.heartbeat_timeout
    }

    /// True once the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread to end (set the shutdown flag or drop the router first).
    ///
    /// # Errors
    /// [`WorkerPanicked`] when the worker ended by panicking.
    pub fn join(self) -> Result<(), WorkerPanicked> {
        self.thread
            .join()
            .map_err(|_| WorkerPanicked { worker: self.id })
    }
}

/// Configuration of a set of workers and their rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of workers (at least 1).
    pub workers: usize,
    /// Items per ring.
    pub ring_capacity: usize,
    /// Per-worker settings (its `placement` is overridden by `placements`).
    pub worker: WorkerConfig,
    /// Placement of worker `i`; missing entries are [`CorePlacement::Unpinned`]. See
    /// [`crate::pinning::spread_placements`].
    pub placements: Vec<CorePlacement>,
    /// Router batch capacity per worker.
    pub batch_capacity: usize,
}

impl Default for PoolConfig {
    /// Two workers, rings of 16,384 items, default worker config, unpinned, batches of 1,024.
    fn default() -> PoolConfig {
        PoolConfig {
            workers: 2,
            ring_capacity: 16_384,
            worker: WorkerConfig::default(),
            placements: Vec::new(),
            batch_capacity: crate::handoff::DEFAULT_BATCH_CAPACITY,
        }
    }
}

/// Creates one ring per worker, spawns the workers (handler `factory(i)` each) and returns
/// the [`Router`] (with unparkers set) for the event loop plus the handles.
///
/// # Errors
/// The OS refused to create a thread. The rings' producers are dropped on return, so the
/// workers already started see an abandoned ring and exit by themselves.
pub fn spawn_workers(
    cfg: &PoolConfig,
    factory: &HandlerFactory,
    resync: &ResyncSink,
    shutdown: &Arc<AtomicBool>,
) -> io::Result<(Router, Vec<WorkerHandle>)> {
    let n = cfg.workers.max(1);
    let mut producers = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (p, c) = RingBuffer::new(cfg.ring_capacity.max(1));
        producers.push(p);
        let config = WorkerConfig {
            placement: cfg
                .placements
                .get(i)
                .copied()
                .unwrap_or(CorePlacement::Unpinned),
            ..cfg.worker
        };
        let worker = BookWorker::new(
            i,
            c,
            config,
            factory(i),
            resync.clone(),
            Arc::clone(shutdown),
        );
        handles.push(worker.spawn()?);
    }
    let mut router = Router::with_batch_capacity(producers, cfg.batch_capacity);
    router.set_unparkers(handles.iter().map(WorkerHandle::unparker).collect());
    Ok((router, handles))
}
