//! The hand-off from the event loop to the book workers: one rtrb SPSC ring per worker.
//!
//! Owned and run by the **event loop thread**. The [`Router`] owns every ring [`Producer`],
//! the asset → worker table and one pending batch per worker; nothing here blocks, sleeps,
//! locks or allocates per record once warm. The workers own the other ends
//! ([`crate::worker`]).
//!
//! # Flow
//! [`Router::route`] appends a record to its worker's pending batch (an array lookup by
//! [`AssetId`]; a `price_change` naming assets of different workers is split naturally,
//! since every entry is its own record). Control items ([`WorkItem::AddBook`], …) travel in
//! the same batches, so their order with records is preserved. At the end of a poll iteration
//! the event loop calls [`Router::flush`], which pushes each batch with one
//! `write_chunk_uninit` (a batch that fills up is flushed early by `route`).
//!
//! # Backpressure policy (a full ring)
//! The router never blocks and never spins on a full ring:
//! - the prefix of the batch that fits is pushed; the rest is dropped and counted
//!   (`messages_dropped`, one `queue_full_events` per flush of that worker);
//! - every asset that lost a record gets a pending [`WorkItem::DataLoss`] marker, pushed ahead
//!   of anything else for that worker at the next flush, so the worker marks the book
//!   untrusted before it could apply a later delta on a gapped book; while markers (or
//!   deferred control items) are waiting, that worker receives no records;
//! - every asset that lost a record is reported once per [`Router::flush`] call, so the event
//!   loop resyncs it (fresh snapshot). An asset is reported again whenever a later flush drops
//!   its records, including the records of a resync snapshot, so a resync that was itself lost
//!   is requested again;
//! - control items are never dropped: those that do not fit wait, in order, and go first at
//!   the next flush.
//!
//! Until its marker is delivered a gapped book still looks trusted to readers; no record after
//! the gap can be applied before the marker, so it is stale, never wrong.

pub mod routing;
mod wake;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use rtrb::Producer;
use serde::Serialize;

pub use routing::{token_hash, worker_for_token};
pub use wake::Unparker;

use crate::market::{AssetId, Record};
use crate::orderbook::BookMeta;

/// One item on a worker's ring. Records and control items share the ring so their relative
/// order is preserved. At most 72 bytes (asserted in the tests).
#[derive(Debug)]
pub enum WorkItem {
    /// A decoded record for a book of this worker.
    Record(Record),
    /// Create the book of `asset` (or replace its metadata if it exists). The `Box` keeps the
    /// item small; it is allocated once per asset registration, never per message.
    AddBook {
        /// The asset.
        asset: AssetId,
        /// Its static metadata (token id text, condition id, hash inputs).
        meta: Box<BookMeta>,
    },
    /// Drop the book of `asset`.
    RemoveBook {
        /// The asset.
        asset: AssetId,
    },
    /// Records of `asset` were dropped (full ring, reconnect, parse error): mark the book
    /// untrusted until its next snapshot.
    DataLoss {
        /// The asset.
        asset: AssetId,
    },
    /// The connection of `asset` is suspected frozen: mark its book untrusted (`stale`)
    /// until its next snapshot (which the replacement connection brings).
    MarkStale {
        /// The asset.
        asset: AssetId,
    },
}

/// Why a record or control item could not be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The asset was never registered with [`Router::register`]. The record is dropped and
    /// counted in `routing_errors`; register assets before routing their records.
    #[error("asset {asset:?} is not registered with the router")]
    UnknownAsset {
        /// The asset.
        asset: AssetId,
    },
    /// The worker index is out of range. A programming error in the caller.
    #[error("no worker {worker}: the router has {workers}")]
    NoSuchWorker {
        /// The requested worker.
        worker: usize,
        /// Number of workers.
        workers: usize,
    },
}

/// What one [`Router::flush`] did (plus any early flushes `route` made since the last call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Items pushed to rings (records, markers, control items).
    pub pushed: usize,
    /// Records dropped because a ring was full.
    pub dropped: usize,
    /// Assets newly appended to the caller's resync list.
    pub resync: usize,
}

const NO_WORKER: u16 = u16::MAX;

/// Default pending-batch capacity per worker (records between flushes before an early flush).
pub const DEFAULT_BATCH_CAPACITY: usize = 1024;

struct Lane {
    producer: Producer<WorkItem>,
    capacity: usize,
    batch: Vec<WorkItem>,
    /// Control items that did not fit; pushed first at the next flush.
    held: Vec<WorkItem>,
    /// Assets owed a DataLoss marker; pushed after `held`, before any record.
    markers: Vec<AssetId>,
    unparker: Option<Unparker>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("capacity", &self.capacity)
            .field("batch", &self.batch.len())
            .field("held", &self.held.len())
            .field("markers", &self.markers.len())
            .finish()
    }
}

/// Routes records to the book workers' rings. Owned by the event loop thread.
#[derive(Debug)]
pub struct Router {
    lanes: Vec<Lane>,
    batch_capacity: usize,
    /// Worker of each asset, `NO_WORKER` when unregistered.
    worker_of: Vec<u16>,
    /// True while the asset owes a DataLoss marker.
    marker_owed: Vec<bool>,
    /// `flush` epoch in which the asset was last reported for resync.
    reported_in: Vec<u32>,
    epoch: u32,
    /// Assets to resync, reported since the last `flush`.
    resync: Vec<AssetId>,
    report: FlushReport,
    stats: Arc<RouterStats>,
}

impl Router {
    /// A router over one ring producer per worker, with [`DEFAULT_BATCH_CAPACITY`].
    pub fn new(producers: Vec<Producer<WorkItem>>) -> Router {
        Router::with_batch_capacity(producers, DEFAULT_BATCH_CAPACITY)
    }

    /// A router whose per-worker pending batches hold `batch_capacity` items (min 1).
    pub fn with_batch_capacity(
        producers: Vec<Producer<WorkItem>>,
        batch_capacity: usize,
    ) -> Router {
        let batch_capacity = batch_capacity.max(1);
        let lanes: Vec<Lane> = producers
            .into_iter()
            .map(|producer| Lane {
                capacity: producer.buffer().capacity(),
                producer,
                batch: Vec::with_capacity(batch_capacity),
                held: Vec::new(),
                markers: Vec::new(),
                unparker: None,
            })
            .collect();
        let stats = Arc::new(RouterStats::new(lanes.len()));
        for (w, lane) in lanes.iter().enumerate() {
            stats
                .lane(w)
                .capacity
                .store(lane.capacity as u64, Ordering::Relaxed);
        }
        Router {
            lanes,
            batch_capacity,
            worker_of: Vec::new(),
            marker_owed: Vec::new(),
            reported_in: Vec::new(),
            epoch: 1,
            resync: Vec::new(),
            report: FlushReport::default(),
            stats,
        }
    }

    /// Wakes parked workers after pushing to their rings (one unparker per worker, in worker
    /// order). Without unparkers a parked worker notices new items within its park timeout.
    pub fn set_unparkers(&mut self, unparkers: Vec<Unparker>) {
        for (lane, u) in self.lanes.iter_mut().zip(unparkers) {
            lane.unparker = Some(u);
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.lanes.len()
    }

    /// The router's counters (shared with readers on other threads).
    pub fn stats(&self) -> Arc<RouterStats> {
        Arc::clone(&self.stats)
    }

    /// The worker that owns `token` under this router's worker count.
    pub fn worker_for_token(&self, token: &str) -> usize {
        worker_for_token(token, self.lanes.len())
    }

    /// Routes `asset`'s records to `worker` from now on. Allocates when `asset` is the
    /// largest id seen so far (registration time, not per message).
    ///
    /// # Errors
    /// [`RouteError::NoSuchWorker`] when `worker` is out of range.
    pub fn register(&mut self, asset: AssetId, worker: usize) -> Result<(), RouteError> {
        self.check_worker(worker)?;
        let i = asset.index();
        if i >= self.worker_of.len() {
            self.worker_of.resize(i + 1, NO_WORKER);
            self.marker_owed.resize(i + 1, false);
            self.reported_in.resize(i + 1, 0);
        }
        self.worker_of[i] = worker as u16;
        Ok(())
    }

    /// Forgets `asset`: its later records count as routing errors.
    pub fn unregister(&mut self, asset: AssetId) {
        if let Some(w) = self.worker_of.get_mut(asset.index()) {
            *w = NO_WORKER;
        }
    }

    /// The worker `asset` is registered with.
    pub fn worker_of(&self, asset: AssetId) -> Option<usize> {
        match self.worker_of.get(asset.index()) {
            Some(&w) if w != NO_WORKER => Some(usize::from(w)),
            _ => None,
        }
    }

    /// Registers `asset` with the worker its token hashes to and queues an
    /// [`WorkItem::AddBook`] for it. Returns the worker.
    pub fn add_book(&mut self, asset: AssetId, meta: BookMeta) -> usize {
        let worker = self.worker_for_token(&meta.asset_id);
        // `worker` is in range by construction.
        let _ = self.register(asset, worker);
        let _ = self.send_control(
            worker,
            WorkItem::AddBook {
                asset,
                meta: Box::new(meta),
            },
        );
        worker
    }

    /// Queues a [`WorkItem::RemoveBook`] for `asset` and unregisters it.
    ///
    /// # Errors
    /// [`RouteError::UnknownAsset`] when `asset` is not registered.
    pub fn remove_book(&mut self, asset: AssetId) -> Result<(), RouteError> {
        let worker = self
            .worker_of(asset)
            .ok_or(RouteError::UnknownAsset { asset })?;
        self.send_control(worker, WorkItem::RemoveBook { asset })?;
        self.unregister(asset);
        Ok(())
    }

    /// Queues a [`WorkItem::MarkStale`] for `asset` (its connection is suspected frozen): its
    /// book becomes untrusted (`stale`), in order with its records, until its next snapshot.
    ///
    /// # Errors
    /// [`RouteError::UnknownAsset`] when `asset` is not registered.
    pub fn mark_stale(&mut self, asset: AssetId) -> Result<(), RouteError> {
        let worker = self
            .worker_of(asset)
            .ok_or(RouteError::UnknownAsset { asset })?;
        self.send_control(worker, WorkItem::MarkStale { asset })
    }

    /// Queues a [`WorkItem::DataLoss`] for `asset` (reconnect, parse error on a frame naming
    /// it): its book becomes untrusted, in order with its records. The caller resyncs it.
    ///
    /// # Errors
    /// [`RouteError::UnknownAsset`] when `asset` is not registered.
    pub fn mark_data_loss(&mut self, asset: AssetId) -> Result<(), RouteError> {
        let worker = self
            .worker_of(asset)
            .ok_or(RouteError::UnknownAsset { asset })?;
        self.send_control(worker, WorkItem::DataLoss { asset })
    }

    /// Appends `rec` to its worker's pending batch; flushes that batch early when full.
    ///
    /// # Errors
    /// [`RouteError::UnknownAsset`] when the asset is not registered (the record is dropped
    /// and counted in `routing_errors`).
    #[inline]
    pub fn route(&mut self, rec: Record) -> Result<(), RouteError> {
        let w = match self.worker_of.get(rec.asset.index()) {
            Some(&w) if w != NO_WORKER => usize::from(w),
            _ => {
                bump(&self.stats.routing_errors, 1);
                return Err(RouteError::UnknownAsset { asset: rec.asset });
            }
        };
        self.push_item(w, WorkItem::Record(rec));
        Ok(())
    }

    /// Appends a control item to `worker`'s pending batch (ordered with its records).
    ///
    /// # Errors
    /// [`RouteError::NoSuchWorker`] when `worker` is out of range.
    pub fn send_control(&mut self, worker: usize, item: WorkItem) -> Result<(), RouteError> {
        self.check_worker(worker)?;
        bump(&self.stats.control_items, 1);
        self.push_item(worker, item);
        Ok(())
    }

    /// Items waiting in `worker`'s pending batch.
    pub fn pending(&self, worker: usize) -> usize {
        self.lanes
            .get(worker)
            .map_or(0, |l| l.batch.len() + l.held.len() + l.markers.len())
    }

    /// Free slots in `worker`'s ring right now.
    pub fn free_slots(&self, worker: usize) -> usize {
        self.lanes.get(worker).map_or(0, |l| l.producer.slots())
    }

    /// Pushes every pending batch to its ring. Assets that lost records since the last call
    /// are appended to `resync` (each once); the event loop must resync them.
    pub fn flush(&mut self, resync: &mut Vec<AssetId>) -> FlushReport {
        for w in 0..self.lanes.len() {
            self.flush_worker(w);
        }
        let mut report = std::mem::take(&mut self.report);
        report.resync = self.resync.len();
        resync.append(&mut self.resync);
        self.epoch = self.epoch.wrapping_add(1).max(1);
        report
    }

    #[inline]
    fn push_item(&mut self, w: usize, item: WorkItem) {
        if self.lanes[w].batch.len() >= self.batch_capacity {
            self.flush_worker(w);
        }
        self.lanes[w].batch.push(item);
    }

    fn check_worker(&self, worker: usize) -> Result<(), RouteError> {
        if worker < self.lanes.len() {
            Ok(())
        } else {
            Err(RouteError::NoSuchWorker {
                worker,
                workers: self.lanes.len(),
            })
        }
    }

    fn flush_worker(&mut self, w: usize) {
        let lane = &mut self.lanes[w];
        if lane.batch.is_empty() && lane.held.is_empty() && lane.markers.is_empty() {
            return;
        }
        let mut free = lane.producer.slots();
        let mut pushed = 0usize;

        // 1. Control items deferred by an earlier full ring, in order.
        if !lane.held.is_empty() {
            let n = free.min(lane.held.len());
            pushed += write(&mut lane.producer, n, lane.held.drain(..n));
            free -= n;
        }
        // 2. DataLoss markers owed, before any record of this worker.
        if lane.held.is_empty() && !lane.markers.is_empty() {
            let n = free.min(lane.markers.len());
            let owed = &mut self.marker_owed;
            let markers = lane.markers.drain(..n).map(|asset| {
                if let Some(f) = owed.get_mut(asset.index()) {
                    *f = false;
                }
                WorkItem::DataLoss { asset }
            });
            let written = write(&mut lane.producer, n, markers);
            pushed += written;
            free -= n;
            bump(&self.stats.data_loss_markers, written as u64);
        }
        // 3. The batch: the prefix that fits; records beyond it are dropped.
        let blocked = !lane.held.is_empty() || !lane.markers.is_empty();
        let n = if blocked {
            0
        } else {
            free.min(lane.batch.len())
        };
        let mut records = 0u64;
        let mut dropped = 0usize;
        {
            let mut drain = lane.batch.drain(..);
            if n > 0 {
                let counted = drain.by_ref().take(n).inspect(|item| {
                    if matches!(item, WorkItem::Record(_)) {
                        records += 1;
                    }
                });
                pushed += write(&mut lane.producer, n, counted);
            }
            for item in drain {
                match item {
                    WorkItem::Record(rec) => {
                        dropped += 1;
                        let i = rec.asset.index();
                        if let Some(owed) = self.marker_owed.get_mut(i) {
                            if !*owed {
                                *owed = true;
                                lane.markers.push(rec.asset);
                            }
                        }
                        if let Some(r) = self.reported_in.get_mut(i) {
                            if *r != self.epoch {
                                *r = self.epoch;
                                self.resync.push(rec.asset);
                                bump(&self.stats.resync_assets, 1);
                            }
                        }
                    }
                    WorkItem::DataLoss { asset } => {
                        // An explicit marker: owed like one from a drop, deduplicated.
                        if let Some(owed) = self.marker_owed.get_mut(asset.index()) {
                            if !*owed {
                                *owed = true;
                                lane.markers.push(asset);
                            }
                        }
                    }
                    other => {
                        bump(&self.stats.control_deferred, 1);
                        lane.held.push(other);
                    }
                }
            }
        }

        let stats = &self.stats;
        bump(&stats.messages_routed, records);
        if pushed > 0 {
            bump(&stats.batches_sent, 1);
            if let Some(u) = &lane.unparker {
                u.unpark();
            }
        }
        if dropped > 0 || !lane.held.is_empty() || !lane.markers.is_empty() {
            bump(&stats.queue_full_events, 1);
        }
        bump(&stats.messages_dropped, dropped as u64);
        let depth = (lane.capacity - lane.producer.slots()) as u64;
        let ls = stats.lane(w);
        ls.depth.store(depth, Ordering::Relaxed);
        if depth > ls.depth_max.load(Ordering::Relaxed) {
            ls.depth_max.store(depth, Ordering::Relaxed);
        }
        self.report.pushed += pushed;
        self.report.dropped += dropped;
    }
}

/// Writes exactly the first `n` items of `items` into `producer`; `n` must not exceed the
/// producer's free slots (checked by the callers).
fn write(
    producer: &mut Producer<WorkItem>,
    n: usize,
    items: impl Iterator<Item = WorkItem>,
) -> usize {
    if n == 0 {
        return 0;
    }
    match producer.write_chunk_uninit(n) {
        Ok(chunk) => chunk.fill_from_iter(items.take(n)),
        // Cannot happen (n <= slots and this thread is the only producer); the items are
        // dropped by the caller's drain and would be lost, so fail loudly in debug builds.
        Err(_) => {
            debug_assert!(false, "ring has fewer than {n} free slots");
            0
        }
    }
}

/// Single-writer increment: the owner thread is the only writer, so load + store is exact
/// and compiles to plain moves (no locked instruction).
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Per-worker ring gauges.
#[derive(Debug, Default)]
pub struct LaneStats {
    /// Items in the ring after the last flush.
    pub depth: AtomicU64,
    /// Largest depth seen after a flush.
    pub depth_max: AtomicU64,
    /// Ring capacity.
    pub capacity: AtomicU64,
}

/// Router counters; written by the event loop only, read by anyone.
#[derive(Debug)]
pub struct RouterStats {
    /// Records pushed to rings.
    pub messages_routed: AtomicU64,
    /// Records dropped on a full ring (their assets were resynced).
    pub messages_dropped: AtomicU64,
    /// Non-empty chunk writes.
    pub batches_sent: AtomicU64,
    /// Flushes of one worker that could not push everything.
    pub queue_full_events: AtomicU64,
    /// Records of unregistered assets.
    pub routing_errors: AtomicU64,
    /// DataLoss markers pushed.
    pub data_loss_markers: AtomicU64,
    /// Control items queued.
    pub control_items: AtomicU64,
    /// Control items that waited for room in a ring.
    pub control_deferred: AtomicU64,
    /// Assets reported for resync after drops.
    pub resync_assets: AtomicU64,
    lanes: Vec<CachePadded<LaneStats>>,
}

impl RouterStats {
    fn new(workers: usize) -> RouterStats {
        RouterStats {
            messages_routed: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            queue_full_events: AtomicU64::new(0),
            routing_errors: AtomicU64::new(0),
            data_loss_markers: AtomicU64::new(0),
            control_items: AtomicU64::new(0),
            control_deferred: AtomicU64::new(0),
            resync_assets: AtomicU64::new(0),
            lanes: (0..workers)
                .map(|_| CachePadded::new(LaneStats::default()))
                .collect(),
        }
    }

    fn lane(&self, w: usize) -> &LaneStats {
        &self.lanes[w]
    }

    /// A consistent-enough copy for `/stats`.
    pub fn snapshot(&self) -> RouterStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RouterStatsSnapshot {
            messages_routed: get(&self.messages_routed),
            messages_dropped: get(&self.messages_dropped),
            batches_sent: get(&self.batches_sent),
            queue_full_events: get(&self.queue_full_events),
            routing_errors: get(&self.routing_errors),
            data_loss_markers: get(&self.data_loss_markers),
            control_items: get(&self.control_items),
            control_deferred: get(&self.control_deferred),
            resync_assets: get(&self.resync_assets),
            queue_depths: self.lanes.iter().map(|l| get(&l.depth)).collect(),
            queue_depths_max: self.lanes.iter().map(|l| get(&l.depth_max)).collect(),
            queue_capacity: self.lanes.iter().map(|l| get(&l.capacity)).collect(),
        }
    }
}

/// Plain copy of [`RouterStats`] (the seeds' router stats plus ring gauges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterStatsSnapshot {
    /// Records pushed to rings.
    pub messages_routed: u64,
    /// Records dropped on a full ring.
    pub messages_dropped: u64,
    /// Non-empty chunk writes.
    pub batches_sent: u64,
    /// Flushes of one worker that could not push everything.
    pub queue_full_events: u64,
    /// Records of unregistered assets.
    pub routing_errors: u64,
    /// DataLoss markers pushed.
    pub data_loss_markers: u64,
    /// Control items queued.
    pub control_items: u64,
    /// Control items that waited for room.
    pub control_deferred: u64,
    /// Assets reported for resync after drops.
    pub resync_assets: u64,
    /// Ring depth per worker after the last flush.
    pub queue_depths: Vec<u64>,
    /// Largest depth per worker.
    pub queue_depths_max: Vec<u64>,
    /// Ring capacity per worker.
    pub queue_capacity: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::{Bbo, Event, Price, Side, Size};
    use rtrb::{Consumer, RingBuffer};

    fn change(asset: u32, ts: u64) -> Record {
        Record {
            asset: AssetId(asset),
            exchange_ts: ts,
            received_ns: 0,
            event: Event::Change {
                side: Side::Bid,
                price: Price::from_raw(500_000).unwrap(),
                size: Size::from_raw(1),
                hash: None,
                bbo: Bbo::default(),
            },
        }
    }

    fn drain(c: &mut Consumer<WorkItem>) -> Vec<WorkItem> {
        std::iter::from_fn(|| c.pop().ok()).collect()
    }

    #[test]
    fn work_item_is_small() {
        assert!(
            std::mem::size_of::<WorkItem>() <= 72,
            "{}",
            std::mem::size_of::<WorkItem>()
        );
    }

    #[test]
    fn full_ring_drops_suffix_then_marker_precedes_later_records() {
        let (p, mut c) = RingBuffer::new(4);
        let mut r = Router::new(vec![p]);
        r.register(AssetId(1), 0).unwrap();
        r.register(AssetId(2), 0).unwrap();
        for ts in 0..3 {
            r.route(change(2, ts)).unwrap();
        }
        for ts in 0..4 {
            r.route(change(1, ts)).unwrap();
        }
        let mut resync = Vec::new();
        let rep = r.flush(&mut resync);
        assert_eq!((rep.pushed, rep.dropped, rep.resync), (4, 3, 1));
        assert_eq!(resync, vec![AssetId(1)]);
        assert_eq!(drain(&mut c).len(), 4);

        // Nothing new for asset 1, but its marker is owed: it goes first.
        r.route(change(2, 9)).unwrap();
        r.route(change(1, 9)).unwrap();
        resync.clear();
        let rep = r.flush(&mut resync);
        assert_eq!((rep.pushed, rep.dropped), (3, 0));
        assert!(resync.is_empty());
        let items = drain(&mut c);
        assert!(matches!(items[0], WorkItem::DataLoss { asset: AssetId(1) }));
        assert!(matches!(
            items[2],
            WorkItem::Record(Record {
                asset: AssetId(1),
                ..
            })
        ));
        let s = r.stats().snapshot();
        assert_eq!(
            (s.messages_routed, s.messages_dropped, s.data_loss_markers),
            (6, 3, 1)
        );
        assert_eq!(s.queue_full_events, 1);
    }

    #[test]
    fn markers_that_do_not_fit_block_records_and_report_again() {
        let (p, mut c) = RingBuffer::new(2);
        let mut r = Router::new(vec![p]);
        for a in 0..4 {
            r.register(AssetId(a), 0).unwrap();
            r.route(change(a, 1)).unwrap();
        }
        let mut resync = Vec::new();
        r.flush(&mut resync);
        assert_eq!(resync, vec![AssetId(2), AssetId(3)]);
        // Ring still full: the markers wait, the new record of asset 0 is dropped too.
        r.route(change(0, 2)).unwrap();
        resync.clear();
        let rep = r.flush(&mut resync);
        assert_eq!((rep.pushed, rep.dropped), (0, 1));
        assert_eq!(resync, vec![AssetId(0)]);
        // Room for two: the first two markers go, records still wait behind the third.
        drain(&mut c);
        r.route(change(1, 3)).unwrap();
        resync.clear();
        r.flush(&mut resync);
        let items = drain(&mut c);
        assert!(matches!(
            items[..],
            [
                WorkItem::DataLoss { asset: AssetId(2) },
                WorkItem::DataLoss { asset: AssetId(3) }
            ]
        ));
        assert_eq!(resync, vec![AssetId(1)]);
        r.flush(&mut resync);
        let items = drain(&mut c);
        assert!(matches!(
            items[..],
            [
                WorkItem::DataLoss { asset: AssetId(0) },
                WorkItem::DataLoss { asset: AssetId(1) }
            ]
        ));
    }

    #[test]
    fn control_items_are_deferred_never_dropped() {
        let (p, mut c) = RingBuffer::new(1);
        let mut r = Router::new(vec![p]);
        r.register(AssetId(0), 0).unwrap();
        r.route(change(0, 1)).unwrap();
        r.send_control(0, WorkItem::RemoveBook { asset: AssetId(7) })
            .unwrap();
        let mut resync = Vec::new();
        r.flush(&mut resync);
        assert_eq!(r.pending(0), 1);
        drain(&mut c);
        r.flush(&mut resync);
        assert!(matches!(
            drain(&mut c)[..],
            [WorkItem::RemoveBook { asset: AssetId(7) }]
        ));
        assert_eq!(r.stats().snapshot().control_deferred, 1);
    }

    #[test]
    fn full_batch_flushes_early_and_unknown_assets_are_errors() {
        let (p, mut c) = RingBuffer::new(16);
        let mut r = Router::with_batch_capacity(vec![p], 2);
        r.register(AssetId(0), 0).unwrap();
        for ts in 0..3 {
            r.route(change(0, ts)).unwrap();
        }
        assert_eq!(drain(&mut c).len(), 2);
        assert_eq!(
            r.route(change(5, 0)),
            Err(RouteError::UnknownAsset { asset: AssetId(5) })
        );
        assert!(r.register(AssetId(0), 3).is_err());
        assert_eq!(r.stats().snapshot().routing_errors, 1);
    }
}
