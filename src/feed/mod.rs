//! The book feed: what each book worker did to each book, as typed, sequenced events.
//!
//! Owns the feed's rings and their two ends. A [`FeedPublisher`] is a [`Handler`] that runs on
//! a **book worker thread** (it wraps the user's own handler, which it calls first); it turns
//! every callback into a [`FeedEvent`] and pushes it into the worker's own rtrb SPSC ring. The
//! other end, a [`FeedConsumer`], is read by one consumer thread (the stream server,
//! `src/stream/`, or an embedder's own thread).
//!
//! # Events
//! Every event names its asset, carries the asset's **sequence number** (one more than the
//! asset's previous published event), the venue timestamp (ms) and the engine's receive time
//! of the frame it came from. A snapshot is one [`FeedKind::Snapshot`] event followed by its
//! levels as [`FeedKind::Level`] items (same asset and seq; bids then asks, each in the venue's
//! order: bids ascending, asks descending), so no event holds heap memory: the snapshot is
//! carried as a bounded copy of the levels (the ring must be larger than the largest book;
//! a book that cannot fit is counted in `oversized`). A [`FeedItem::Meta`] (token id,
//! condition id, hash inputs) precedes an asset's first snapshot, and again when they change.
//!
//! # Never blocking, never losing silently
//! Publishing is one `push` per event (all slots of a snapshot are checked first, so a
//! snapshot is published whole or not at all). When the ring is full the asset is marked
//! *gapped*: its events are not published (not numbered either) and the gap is counted
//! (`gaps`, `events_dropped`); its next published item is a full snapshot with `repair` set,
//! taken either at its next event or at the end of the worker's chunk
//! ([`Handler::on_flush`]), whichever finds room first. A consumer therefore sees, per asset,
//! `seq` rising by one after each snapshot, and a snapshot after anything it missed.
//!
//! Nothing here allocates per event once warm: per-asset state grows when a new asset
//! appears, and a [`BookMeta`] is copied once per asset (and when it changes).
//!
//! # Embedding
//! The engine builds a feed for its stream server; an embedder can read one itself:
//!
//! ```no_run
//! use std::sync::Arc;
//! use polypy::engine::{Engine, EngineHooks};
//! use polypy::feed::{Feed, FeedItem, FeedKind, FeedWake};
//!
//! let config = polypy::config::EngineConfig::default();
//! // No wake-up callback: this consumer polls.
//! let (feed, handlers, mut consumers) = Feed::new(
//!     config.workers,
//!     polypy::feed::DEFAULT_FEED_CAPACITY,
//!     polypy::worker::noop_factory(),
//!     Arc::new(FeedWake::default()),
//! );
//! let engine = Engine::start_with(config, EngineHooks { handlers, ..EngineHooks::default() })?;
//! loop {
//!     for c in &mut consumers {
//!         while let Some(FeedItem::Event(e)) = c.pop() {
//!             if let FeedKind::Change { side, price, size } = e.kind {
//!                 println!("{:?} seq {} {side:?} {price} {size}", e.asset, e.seq);
//!             }
//!         }
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(1));
//! #   break;
//! }
//! # drop((feed, engine));
//! # Ok::<(), polypy::engine::EngineError>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use crossbeam_channel::Receiver;

pub mod mirror;
pub use mirror::MirrorBook;
use rtrb::{Consumer, Producer, RingBuffer};

use crate::handoff::bump;
use crate::market::{AssetId, Event, Price, QuotedPrice, Record, Side, Size};
use crate::orderbook::{BookMeta, OrderBook, UntrustReason};
use crate::worker::{BookLookup, Handler, HandlerFactory};

/// Default items per feed ring (one ring per worker).
pub const DEFAULT_FEED_CAPACITY: usize = 1 << 16;

/// What happened to a book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    /// A full snapshot; `bids + asks` [`FeedKind::Level`] items follow with the same seq.
    Snapshot {
        /// Bid levels that follow (first).
        bids: u32,
        /// Ask levels that follow (after the bids).
        asks: u32,
        /// Tick size, when known.
        tick_size: Option<Price>,
        /// Last trade price, as the venue wrote it.
        last_trade: Option<QuotedPrice>,
        /// Why the book is not trusted (`None`: trusted).
        untrusted: Option<UntrustReason>,
        /// Published to repair a gap (the consumer missed events of this asset), not because
        /// the venue sent a snapshot.
        repair: bool,
    },
    /// One level of the preceding snapshot.
    Level {
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// Size.
        size: Size,
    },
    /// One `price_change` entry: the level's new size (zero removes it).
    Change {
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// New size.
        size: Size,
    },
    /// A `last_trade_price`.
    Trade {
        /// Price, as written.
        price: QuotedPrice,
        /// Size.
        size: Size,
        /// Taker side.
        side: Side,
    },
    /// A `tick_size_change`; the book is untrusted until its next snapshot.
    TickSize {
        /// Old tick.
        old: Price,
        /// New tick.
        new: Price,
    },
    /// The book became trusted (`reason == None`) or untrusted.
    Trust {
        /// Untrust reason; `None` = trusted again.
        reason: Option<UntrustReason>,
    },
    /// The book was removed from the engine (its market expired); nothing follows.
    Removed,
}

/// One event of the feed (`Copy`, no heap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    /// The asset.
    pub asset: AssetId,
    /// Per-asset sequence number (see the module docs).
    pub seq: u64,
    /// Venue timestamp, Unix ms (0 when the venue gave none).
    pub venue_ts: u64,
    /// `worker::now_ns` when the engine received the frame (0 for repairs and trust changes).
    pub recv_ns: u64,
    /// What happened.
    pub kind: FeedKind,
}

/// An item of a feed ring.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// An event.
    Event(FeedEvent),
    /// The static facts of an asset's book (before its first snapshot, and when changed).
    Meta {
        /// The asset.
        asset: AssetId,
        /// Token id, condition id, hash inputs.
        meta: Arc<BookMeta>,
    },
}

/// Counters of one publisher (single writer: its worker).
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Events published (snapshot levels not counted).
    pub events: AtomicU64,
    /// Snapshots published (venue and repair).
    pub snapshots: AtomicU64,
    /// Snapshots published to repair a gap.
    pub repairs: AtomicU64,
    /// Gaps opened (an asset's event did not fit in the ring).
    pub gaps: AtomicU64,
    /// Events not published because their asset was gapped.
    pub events_dropped: AtomicU64,
    /// Snapshots that can never fit in the ring.
    pub oversized: AtomicU64,
    /// Times this publisher woke the sleeping consumer (one system call each).
    pub wakes: AtomicU64,
}

/// A point-in-time copy of [`FeedStats`] (summed over workers by [`Feed::stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FeedStatsSnapshot {
    /// See [`FeedStats::events`].
    pub events: u64,
    /// See [`FeedStats::snapshots`].
    pub snapshots: u64,
    /// See [`FeedStats::repairs`].
    pub repairs: u64,
    /// See [`FeedStats::gaps`].
    pub gaps: u64,
    /// See [`FeedStats::events_dropped`].
    pub events_dropped: u64,
    /// See [`FeedStats::oversized`].
    pub oversized: u64,
    /// See [`FeedStats::wakes`].
    pub wakes: u64,
}

/// Wakes the consumer thread at most once per worker chunk, only while it sleeps.
#[derive(Default)]
pub struct FeedWake {
    sleeping: AtomicBool,
    notify: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for FeedWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedWake")
            .field("sleeping", &self.sleeping.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FeedWake {
    /// Calls `notify` (e.g. a `mio::Waker`) when a publisher pushed while the consumer sleeps.
    pub fn new(notify: Box<dyn Fn() + Send + Sync>) -> FeedWake {
        FeedWake {
            sleeping: AtomicBool::new(false),
            notify: Some(notify),
        }
    }

    /// The consumer is about to sleep: call, then check its rings once more, then sleep.
    pub fn sleeping(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        // Pairs with the fence in `wake` (Dekker): either the publisher sees the flag, or the
        // consumer's re-check sees the pushed items.
        fence(Ordering::SeqCst);
    }

    /// The consumer woke up.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Wakes the consumer if it sleeps; true when it did.
    fn wake(&self) -> bool {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(n) = &self.notify {
                n();
            }
            return true;
        }
        false
    }
}

#[derive(Clone, Debug, Default)]
struct AssetState {
    /// Seq of the last published event.
    seq: u64,
    /// Venue timestamp of the last record published (stamps events without a record, such
    /// as trust changes).
    last_ts: u64,
    /// Events are not published until a snapshot could be.
    gapped: bool,
    /// In `repair`.
    queued: bool,
    meta: Option<Arc<BookMeta>>,
}

/// The [`Handler`] that publishes a worker's events (see the module docs).
pub struct FeedPublisher {
    inner: Box<dyn Handler>,
    ring: Producer<FeedItem>,
    assets: Vec<AssetState>,
    repair: Vec<AssetId>,
    stats: Arc<FeedStats>,
    wake: Arc<FeedWake>,
    pushed: bool,
    /// Receive time of the venue snapshot being published (0 for repairs).
    recv_ns: u64,
}

impl std::fmt::Debug for FeedPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedPublisher")
            .field("assets", &self.assets.len())
            .field("repair", &self.repair.len())
            .finish_non_exhaustive()
    }
}

impl FeedPublisher {
    fn state(&mut self, asset: AssetId) -> &mut AssetState {
        let i = asset.index();
        if i >= self.assets.len() {
            self.assets.resize_with(i + 1, AssetState::default);
        }
        &mut self.assets[i]
    }

    fn gap(&mut self, asset: AssetId, counted: bool) {
        let st = self.state(asset);
        let first = !st.gapped;
        st.gapped = true;
        let queue = !st.queued;
        st.queued = true;
        if queue {
            self.repair.push(asset);
        }
        if counted {
            bump(&self.stats.events_dropped, 1);
            if first {
                bump(&self.stats.gaps, 1);
            }
        }
    }

    /// Publishes one non-snapshot event (or a repair snapshot when the asset is gapped).
    fn event(
        &mut self,
        asset: AssetId,
        rec: Option<&Record>,
        kind: FeedKind,
        book: Option<&OrderBook>,
    ) {
        let st = self.state(asset);
        if st.gapped || st.meta.is_none() {
            let counted = st.meta.is_some();
            match book {
                Some(b) if self.snapshot(asset, b, counted) => {}
                _ => self.gap(asset, counted),
            }
            return;
        }
        if self.ring.slots() == 0 {
            self.gap(asset, true);
            return;
        }
        let st = self.state(asset);
        st.seq += 1;
        if let Some(r) = rec {
            st.last_ts = r.exchange_ts;
        }
        let ev = FeedEvent {
            asset,
            seq: st.seq,
            venue_ts: st.last_ts,
            recv_ns: rec.map_or(0, |r| r.received_ns),
            kind,
        };
        let _ = self.ring.push(FeedItem::Event(ev));
        bump(&self.stats.events, 1);
        self.pushed = true;
    }

    /// A snapshot from the venue: published, or the asset is gapped.
    fn venue_snapshot(&mut self, asset: AssetId, recv_ns: u64, book: &OrderBook) {
        let repair = self.state(asset).gapped;
        self.recv_ns = recv_ns;
        let ok = self.snapshot(asset, book, repair);
        self.recv_ns = 0;
        if !ok {
            let counted = self.state(asset).meta.is_some();
            self.gap(asset, counted);
        }
    }

    /// Publishes a whole snapshot of `book` if it fits; false otherwise (nothing pushed).
    fn snapshot(&mut self, asset: AssetId, book: &OrderBook, repair: bool) -> bool {
        let bids = book.bids().wire_order();
        let asks = book.asks().wire_order();
        let st = self.state(asset);
        let meta_due = st.meta.as_deref() != Some(book.meta());
        let need = 1 + bids.len() + asks.len() + usize::from(meta_due);
        if need > self.ring.buffer().capacity() {
            bump(&self.stats.oversized, 1);
            return false;
        }
        if self.ring.slots() < need {
            return false;
        }
        if meta_due {
            // Once per asset (and when its metadata changes): not per message.
            let meta = Arc::new(book.meta().clone());
            self.state(asset).meta = Some(Arc::clone(&meta));
            let _ = self.ring.push(FeedItem::Meta { asset, meta });
        }
        let st = self.state(asset);
        st.seq += 1;
        st.gapped = false;
        st.last_ts = book.last_timestamp();
        let seq = st.seq;
        let head = FeedEvent {
            asset,
            seq,
            venue_ts: book.last_timestamp(),
            recv_ns: self.recv_ns,
            kind: FeedKind::Snapshot {
                bids: bids.len() as u32,
                asks: asks.len() as u32,
                tick_size: book.tick_size(),
                last_trade: book.last_trade(),
                untrusted: book.trust().err(),
                repair,
            },
        };
        let _ = self.ring.push(FeedItem::Event(head));
        for (side, levels) in [(Side::Bid, bids), (Side::Ask, asks)] {
            for l in levels {
                let _ = self.ring.push(FeedItem::Event(FeedEvent {
                    kind: FeedKind::Level {
                        side,
                        price: l.price,
                        size: l.size,
                    },
                    ..head
                }));
            }
        }
        bump(&self.stats.events, 1);
        bump(&self.stats.snapshots, 1);
        if repair {
            bump(&self.stats.repairs, 1);
        }
        self.pushed = true;
        true
    }
}

impl Handler for FeedPublisher {
    fn on_snapshot(&mut self, asset: AssetId, book: &OrderBook) {
        self.inner.on_snapshot(asset, book);
        self.venue_snapshot(asset, 0, book);
    }

    fn on_snapshot_record(&mut self, asset: AssetId, rec: &Record, book: &OrderBook) {
        self.inner.on_snapshot_record(asset, rec, book);
        self.venue_snapshot(asset, rec.received_ns, book);
    }

    fn on_change(&mut self, asset: AssetId, rec: &Record, book: &OrderBook) {
        self.inner.on_change(asset, rec, book);
        if let Event::Change {
            side, price, size, ..
        } = rec.event
        {
            self.event(
                asset,
                Some(rec),
                FeedKind::Change { side, price, size },
                Some(book),
            );
        }
    }

    fn on_trade(&mut self, asset: AssetId, rec: &Record, book: &OrderBook) {
        self.inner.on_trade(asset, rec, book);
        if let Event::Trade { price, size, side } = rec.event {
            self.event(
                asset,
                Some(rec),
                FeedKind::Trade { price, size, side },
                Some(book),
            );
        }
    }

    fn on_tick_size(&mut self, asset: AssetId, rec: &Record, book: &OrderBook) {
        self.inner.on_tick_size(asset, rec, book);
        if let Event::TickSize { old, new } = rec.event {
            self.event(
                asset,
                Some(rec),
                FeedKind::TickSize { old, new },
                Some(book),
            );
        }
    }

    fn on_trust_change(&mut self, asset: AssetId, trusted: bool, reason: Option<UntrustReason>) {
        self.inner.on_trust_change(asset, trusted, reason);
        let reason = if trusted {
            None
        } else {
            Some(reason.unwrap_or(UntrustReason::DataLoss))
        };
        self.event(asset, None, FeedKind::Trust { reason }, None);
    }

    fn on_remove(&mut self, asset: AssetId) {
        self.inner.on_remove(asset);
        let known = self.state(asset).meta.is_some();
        if known {
            if self.ring.slots() == 0 {
                // The consumer keeps a stale book; counted like any lost event.
                bump(&self.stats.events_dropped, 1);
            } else {
                let st = self.state(asset);
                st.seq += 1;
                let ev = FeedEvent {
                    asset,
                    seq: st.seq,
                    venue_ts: 0,
                    recv_ns: 0,
                    kind: FeedKind::Removed,
                };
                let _ = self.ring.push(FeedItem::Event(ev));
                bump(&self.stats.events, 1);
                self.pushed = true;
            }
        }
        // A book added again later starts over (meta, snapshot).
        if let Some(st) = self.assets.get_mut(asset.index()) {
            *st = AssetState::default();
        }
    }

    fn on_flush(&mut self, books: &dyn BookLookup) {
        self.inner.on_flush(books);
        let mut i = 0;
        while i < self.repair.len() {
            let asset = self.repair[i];
            let Some(book) = books.book(asset) else {
                // The book is gone: nothing to repair.
                let st = self.state(asset);
                st.queued = false;
                self.repair.swap_remove(i);
                continue;
            };
            let st = self.state(asset);
            if !st.gapped && st.meta.is_some() {
                st.queued = false;
                self.repair.swap_remove(i);
                continue;
            }
            let counted = st.meta.is_some();
            if self.snapshot(asset, book, counted) {
                self.state(asset).queued = false;
                self.repair.swap_remove(i);
            } else if self.ring.slots() == 0 {
                break;
            } else {
                i += 1;
            }
        }
        if std::mem::take(&mut self.pushed) && self.wake.wake() {
            bump(&self.stats.wakes, 1);
        }
    }
}

/// The read end of one worker's feed ring (one consumer thread).
#[derive(Debug)]
pub struct FeedConsumer {
    /// The worker whose ring this is.
    pub worker: usize,
    ring: Consumer<FeedItem>,
}

impl FeedConsumer {
    /// Pops one item.
    #[inline]
    pub fn pop(&mut self) -> Option<FeedItem> {
        self.ring.pop().ok()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.ring.slots()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// The feed of a set of workers: the publishers' factory side and the consumers.
#[derive(Debug)]
pub struct Feed {
    stats: Vec<Arc<FeedStats>>,
}

impl Feed {
    /// Builds `workers` rings of `capacity` items. Returns the feed (stats), a handler factory
    /// that wraps `inner` (worker `i` gets ring `i`; call it once per worker) and the
    /// consumers. `wake` is called after a chunk that published while the consumer sleeps.
    pub fn new(
        workers: usize,
        capacity: usize,
        inner: HandlerFactory,
        wake: Arc<FeedWake>,
    ) -> (Feed, HandlerFactory, Vec<FeedConsumer>) {
        let n = workers.max(1);
        let mut stats = Vec::with_capacity(n);
        let mut slots: Vec<Receiver<Producer<FeedItem>>> = Vec::with_capacity(n);
        let mut consumers = Vec::with_capacity(n);
        for worker in 0..n {
            let (p, c) = RingBuffer::new(capacity.max(2));
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = tx.send(p);
            slots.push(rx);
            stats.push(Arc::new(FeedStats::default()));
            consumers.push(FeedConsumer { worker, ring: c });
        }
        let stats_for = stats.clone();
        let factory: HandlerFactory = Arc::new(move |i| {
            let inner_h = inner(i);
            let ring = slots.get(i).and_then(|rx| rx.try_recv().ok());
            match (ring, stats_for.get(i)) {
                (Some(ring), Some(stats)) => Box::new(FeedPublisher {
                    inner: inner_h,
                    ring,
                    assets: Vec::new(),
                    repair: Vec::new(),
                    stats: Arc::clone(stats),
                    wake: Arc::clone(&wake),
                    pushed: false,
                    recv_ns: 0,
                }),
                // Called twice for one worker, or out of range: no feed for it.
                _ => inner_h,
            }
        });
        (Feed { stats }, factory, consumers)
    }

    /// The counters summed over workers.
    pub fn stats(&self) -> FeedStatsSnapshot {
        let mut s = FeedStatsSnapshot::default();
        for f in &self.stats {
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.events += l(&f.events);
            s.snapshots += l(&f.snapshots);
            s.repairs += l(&f.repairs);
            s.gaps += l(&f.gaps);
            s.events_dropped += l(&f.events_dropped);
            s.oversized += l(&f.oversized);
            s.wakes += l(&f.wakes);
        }
        s
    }
}

#[cfg(test)]
mod tests;
