//! Per-worker statistics: single-writer atomics, histograms, and a plain snapshot.
//!
//! Each [`WorkerStats`] is written only by its book worker thread (load + store, `Relaxed`:
//! plain moves, no locked instructions) and read by any thread (engine, HTTP) through
//! [`WorkerStats::snapshot`]. Counters that change per record sit together on their own
//! cache lines; gauges and rare counters on others. Nothing here allocates after
//! construction except `snapshot`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use serde::Serialize;

use crate::handoff::bump;
use crate::orderbook::UntrustReason;

/// Sub-buckets per power of two (2^3 = 8: at most 12.5 % relative bucket width).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to 2^40 - 1 ns (about 18 minutes).
const MAX_BITS: u32 = 40;
const BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as usize) << SUB_BITS;

/// A log-linear histogram of nanosecond values in single-writer atomics.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

#[inline]
fn bucket_of(v: u64) -> usize {
    let v = v.min((1 << MAX_BITS) - 1);
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    (((shift + 1) as usize) << SUB_BITS) + ((v >> shift) & (SUB - 1)) as usize
}

/// Lowest value and width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    if (i as u64) < SUB {
        return (i as u64, 1);
    }
    let shift = (i >> SUB_BITS) as u32 - 1;
    let low = (SUB | (i as u64 & (SUB - 1))) << shift;
    (low, 1 << shift)
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value. Single writer only.
    #[inline]
    pub fn record(&self, v: u64) {
        bump(&self.buckets[bucket_of(v)], 1);
        bump(&self.sum, v);
        if v > self.max.load(Ordering::Relaxed) {
            self.max.store(v, Ordering::Relaxed);
        }
    }

    /// Count, mean and quantiles (each quantile is the midpoint of its bucket, clamped to
    /// the maximum seen).
    pub fn snapshot(&self) -> HistogramSnapshot {
        Histogram::merged(&[self])
    }

    /// One summary over several histograms (e.g. every worker's latency).
    pub fn merged(parts: &[&Histogram]) -> HistogramSnapshot {
        let mut all = HistogramCounts::default();
        for h in parts {
            h.add_to(&mut all);
        }
        all.summary()
    }

    /// Adds this histogram's bucket counts, sum and maximum to `into` (a plain copy that
    /// can be kept, merged and subtracted: see [`HistogramCounts::since`]).
    pub fn add_to(&self, into: &mut HistogramCounts) {
        if into.counts.len() != BUCKETS {
            into.counts = vec![0; BUCKETS];
        }
        for (c, b) in into.counts.iter_mut().zip(self.buckets.iter()) {
            *c += b.load(Ordering::Relaxed);
        }
        into.sum = into.sum.wrapping_add(self.sum.load(Ordering::Relaxed));
        into.max = into.max.max(self.max.load(Ordering::Relaxed));
    }
}

/// A plain copy of one or more [`Histogram`]s at one moment: bucket counts, sum, maximum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    counts: Vec<u64>,
    sum: u64,
    max: u64,
}

impl HistogramCounts {
    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Count, mean and quantiles (each quantile is the midpoint of its bucket, clamped to
    /// the maximum).
    pub fn summary(&self) -> HistogramSnapshot {
        let count = self.count();
        let max = self.max;
        let quantile = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    let (low, width) = bucket_range(i);
                    return (low + width / 2).min(max);
                }
            }
            max
        };
        HistogramSnapshot {
            count,
            mean_ns: self.sum.checked_div(count).unwrap_or(0),
            p50_ns: quantile(0.50),
            p90_ns: quantile(0.90),
            p99_ns: quantile(0.99),
            p999_ns: quantile(0.999),
            max_ns: max,
        }
    }

    /// The samples recorded between `older` and `self` (two copies of the same histograms,
    /// `older` taken first). The maximum of the interval is not known exactly: it is the
    /// upper end of the highest non-empty bucket, clamped to the all-time maximum.
    pub fn since(&self, older: &HistogramCounts) -> HistogramCounts {
        let mut counts: Vec<u64> = self.counts.clone();
        for (c, o) in counts.iter_mut().zip(&older.counts) {
            *c = c.saturating_sub(*o);
        }
        let max = counts.iter().rposition(|c| *c > 0).map_or(0, |i| {
            let (low, width) = bucket_range(i);
            (low + width - 1).min(self.max)
        });
        HistogramCounts {
            counts,
            sum: self.sum.wrapping_sub(older.sum),
            max,
        }
    }
}

impl Histogram {
    /// Cumulative counts at each of `bounds_ns` (ascending), plus total count and sum: the
    /// shape of a Prometheus histogram. A sample counts under a bound when its whole bucket
    /// lies at or below it, so each cumulative count is exact to one bucket width.
    pub fn cumulative(&self, bounds_ns: &[u64]) -> CumulativeHistogram {
        let mut below = vec![0u64; bounds_ns.len()];
        let mut count = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            let c = b.load(Ordering::Relaxed);
            if c == 0 {
                continue;
            }
            count += c;
            let (low, width) = bucket_range(i);
            let high = low + width - 1;
            for (k, bound) in bounds_ns.iter().enumerate() {
                if high <= *bound {
                    below[k] += c;
                }
            }
        }
        CumulativeHistogram {
            bounds_ns: bounds_ns.to_vec(),
            cumulative: below,
            count,
            sum_ns: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram as cumulative counts at fixed bounds (see [`Histogram::cumulative`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CumulativeHistogram {
    /// Upper bounds, ns.
    pub bounds_ns: Vec<u64>,
    /// Samples ≤ each bound.
    pub cumulative: Vec<u64>,
    /// All samples.
    pub count: u64,
    /// Sum of samples, ns.
    pub sum_ns: u64,
}

impl CumulativeHistogram {
    /// Adds another histogram with the same bounds (summing workers).
    pub fn merge(&mut self, other: &CumulativeHistogram) {
        if self.bounds_ns.is_empty() {
            *self = other.clone();
            return;
        }
        for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
    }
}

/// Summary of a [`Histogram`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistogramSnapshot {
    /// Samples.
    pub count: u64,
    /// Mean, ns.
    pub mean_ns: u64,
    /// Median, ns (bucket midpoint, ≤ 6 % error).
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Largest sample, ns.
    pub max_ns: u64,
}

const REASONS: usize = 8;

pub(crate) fn reason_index(r: UntrustReason) -> usize {
    match r {
        UntrustReason::AwaitingSnapshot => 0,
        UntrustReason::TickSizeChange => 1,
        UntrustReason::IncompleteSnapshot => 2,
        UntrustReason::HashMismatch => 3,
        UntrustReason::BboMismatch => 4,
        UntrustReason::Crossed => 5,
        UntrustReason::DataLoss => 6,
        UntrustReason::Stale => 7,
    }
}

/// Counters that change per record (one writer: the worker).
#[derive(Debug, Default)]
pub(crate) struct Hot {
    pub(crate) messages_processed: AtomicU64,
    pub(crate) records_applied: AtomicU64,
    pub(crate) updates_applied: AtomicU64,
    pub(crate) skipped_untrusted: AtomicU64,
    pub(crate) stray: AtomicU64,
    pub(crate) no_book: AtomicU64,
    pub(crate) trades: AtomicU64,
    pub(crate) groups_settled: AtomicU64,
    pub(crate) hash_matched: AtomicU64,
    pub(crate) hash_matched_inferred_trade: AtomicU64,
    pub(crate) hash_mismatched: AtomicU64,
    pub(crate) hash_not_checked: AtomicU64,
    pub(crate) hash_skipped: AtomicU64,
    pub(crate) entry_hash_matched: AtomicU64,
    pub(crate) entry_hash_mismatched: AtomicU64,
    pub(crate) bbo_mismatches: AtomicU64,
    pub(crate) crossed: AtomicU64,
    pub(crate) chunks: AtomicU64,
    pub(crate) processing_ns: AtomicU64,
}

/// Rare counters and gauges (one writer: the worker).
#[derive(Debug, Default)]
pub(crate) struct Cold {
    pub(crate) snapshots_received: AtomicU64,
    pub(crate) snapshot_hash_matched: AtomicU64,
    pub(crate) snapshot_hash_mismatched: AtomicU64,
    pub(crate) meta_inferred: AtomicU64,
    pub(crate) tick_size_changes: AtomicU64,
    pub(crate) data_loss_marks: AtomicU64,
    pub(crate) books_added: AtomicU64,
    pub(crate) books_removed: AtomicU64,
    pub(crate) untrusted: [AtomicU64; REASONS],
    pub(crate) resync_sent: AtomicU64,
    pub(crate) resync_dropped: AtomicU64,
    pub(crate) timer_settles: AtomicU64,
    pub(crate) queries_answered: AtomicU64,
    pub(crate) orderbook_count: AtomicU64,
    pub(crate) trusted_books: AtomicU64,
    pub(crate) memory_usage: AtomicU64,
    pub(crate) max_chunk_ns: AtomicU64,
    pub(crate) pinned: AtomicBool,
    pub(crate) core: AtomicU64,
}

/// Liveness: written every loop iteration.
#[derive(Debug, Default)]
pub(crate) struct Beat {
    pub(crate) heartbeat_ns: AtomicU64,
    pub(crate) loops: AtomicU64,
    pub(crate) running: AtomicBool,
}

/// The statistics of one book worker. Shared as `Arc<WorkerStats>`; written only by it.
#[derive(Debug)]
pub struct WorkerStats {
    worker: usize,
    pub(crate) hot: CachePadded<Hot>,
    pub(crate) cold: CachePadded<Cold>,
    pub(crate) beat: CachePadded<Beat>,
    /// Time to apply one ring chunk (pop → applied, handler included), ns.
    pub(crate) processing: Histogram,
    /// Wire → applied: apply time minus `Record::received_ns`, per stamped record, ns.
    pub(crate) latency: Histogram,
}

const NO_CORE: u64 = u64::MAX;

impl WorkerStats {
    /// Zeroed statistics for worker `worker`.
    pub fn new(worker: usize) -> WorkerStats {
        let s = WorkerStats {
            worker,
            hot: CachePadded::new(Hot::default()),
            cold: CachePadded::new(Cold::default()),
            beat: CachePadded::new(Beat::default()),
            processing: Histogram::new(),
            latency: Histogram::new(),
        };
        s.cold.core.store(NO_CORE, Ordering::Relaxed);
        s
    }

    /// The worker index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Last heartbeat on the [`now_ns`](super::now_ns) clock (0 before the first loop).
    pub fn heartbeat_ns(&self) -> u64 {
        self.beat.heartbeat_ns.load(Ordering::Relaxed)
    }

    /// Loop iterations so far.
    pub fn loops(&self) -> u64 {
        self.beat.loops.load(Ordering::Relaxed)
    }

    /// True from the start of the worker loop until it returns or unwinds.
    pub fn is_running(&self) -> bool {
        self.beat.running.load(Ordering::Acquire)
    }

    /// Wire → applied latency, per stamped record.
    pub fn latency_histogram(&self) -> &Histogram {
        &self.latency
    }

    /// Processing time per ring chunk.
    pub fn processing_histogram(&self) -> &Histogram {
        &self.processing
    }

    /// Ring items processed so far (records and control items).
    pub fn messages_processed(&self) -> u64 {
        self.hot.messages_processed.load(Ordering::Relaxed)
    }

    pub(crate) fn untrusted(&self, r: UntrustReason) {
        bump(&self.cold.untrusted[reason_index(r)], 1);
    }

    /// A plain copy (allocates; for `/stats`, not for hot paths).
    pub fn snapshot(&self) -> WorkerStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let h = &*self.hot;
        let c = &*self.cold;
        let u = |r: UntrustReason| g(&c.untrusted[reason_index(r)]);
        let processed = g(&h.messages_processed);
        let processing_ns = g(&h.processing_ns);
        let heartbeat = g(&self.beat.heartbeat_ns);
        let core = g(&c.core);
        WorkerStatsSnapshot {
            worker: self.worker,
            running: self.is_running(),
            pinned: c.pinned.load(Ordering::Relaxed),
            core: (core != NO_CORE).then_some(core as usize),
            messages_processed: processed,
            records_applied: g(&h.records_applied),
            updates_applied: g(&h.updates_applied),
            snapshots_received: g(&c.snapshots_received),
            trades: g(&h.trades),
            tick_size_changes: g(&c.tick_size_changes),
            skipped_untrusted: g(&h.skipped_untrusted),
            stray: g(&h.stray),
            no_book: g(&h.no_book),
            data_loss_marks: g(&c.data_loss_marks),
            groups_settled: g(&h.groups_settled),
            timer_settles: g(&c.timer_settles),
            hash_matched: g(&h.hash_matched),
            hash_matched_inferred_trade: g(&h.hash_matched_inferred_trade),
            hash_mismatched: g(&h.hash_mismatched),
            hash_not_checked: g(&h.hash_not_checked),
            hash_skipped: g(&h.hash_skipped),
            snapshot_hash_matched: g(&c.snapshot_hash_matched),
            snapshot_hash_mismatched: g(&c.snapshot_hash_mismatched),
            meta_inferred: g(&c.meta_inferred),
            entry_hash_matched: g(&h.entry_hash_matched),
            entry_hash_mismatched: g(&h.entry_hash_mismatched),
            bbo_mismatches: g(&h.bbo_mismatches),
            crossed: g(&h.crossed),
            untrusted: UntrustCounts {
                tick_size_change: u(UntrustReason::TickSizeChange),
                incomplete_snapshot: u(UntrustReason::IncompleteSnapshot),
                hash_mismatch: u(UntrustReason::HashMismatch),
                bbo_mismatch: u(UntrustReason::BboMismatch),
                crossed: u(UntrustReason::Crossed),
                data_loss: u(UntrustReason::DataLoss),
                stale: u(UntrustReason::Stale),
            },
            resync_requests_sent: g(&c.resync_sent),
            resync_requests_dropped: g(&c.resync_dropped),
            books_added: g(&c.books_added),
            books_removed: g(&c.books_removed),
            orderbook_count: g(&c.orderbook_count),
            trusted_books: g(&c.trusted_books),
            memory_usage: g(&c.memory_usage),
            queries_answered: g(&c.queries_answered),
            heartbeat_ns: heartbeat,
            heartbeat_age_ms: super::now_ns().saturating_sub(heartbeat) / 1_000_000,
            loops: g(&self.beat.loops),
            chunks: g(&h.chunks),
            avg_processing_time_us: if processed == 0 {
                0.0
            } else {
                processing_ns as f64 / processed as f64 / 1_000.0
            },
            max_chunk_ns: g(&c.max_chunk_ns),
            processing: self.processing.snapshot(),
            latency: self.latency.snapshot(),
        }
    }
}

/// Transitions into the untrusted state, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UntrustCounts {
    /// `tick_size_change`.
    pub tick_size_change: u64,
    /// Snapshot with missing or extra levels.
    pub incomplete_snapshot: u64,
    /// Hash disagreed after a settled group.
    pub hash_mismatch: u64,
    /// Best bid/ask disagreed after a settled group.
    pub bbo_mismatch: u64,
    /// Book crossed after a settled group.
    pub crossed: u64,
    /// Upstream data loss (DataLoss marker).
    pub data_loss: u64,
    /// Connection suspected frozen (MarkStale item).
    pub stale: u64,
}

/// A plain copy of one worker's statistics (the seeds' worker stats plus integrity checks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatsSnapshot {
    /// Worker index.
    pub worker: usize,
    /// The worker loop is running (false after it returned or panicked).
    pub running: bool,
    /// The thread is pinned to `core`.
    pub pinned: bool,
    /// The core it is pinned to.
    pub core: Option<usize>,
    /// Ring items processed (records and control items).
    pub messages_processed: u64,
    /// Records that changed a book (deltas, snapshot parts, trades).
    pub records_applied: u64,
    /// `price_change` entries applied to a trusted book (level updates).
    pub updates_applied: u64,
    /// Complete snapshots applied.
    pub snapshots_received: u64,
    /// `last_trade_price` records.
    pub trades: u64,
    /// `tick_size_change` records.
    pub tick_size_changes: u64,
    /// Deltas skipped because the book was not trusted.
    pub skipped_untrusted: u64,
    /// Snapshot parts without a start (lost records).
    pub stray: u64,
    /// Records for assets this worker has no book for.
    pub no_book: u64,
    /// DataLoss markers received.
    pub data_loss_marks: u64,
    /// Same-timestamp groups settled and checked.
    pub groups_settled: u64,
    /// Groups settled by the `settle_after` timer.
    pub timer_settles: u64,
    /// Settled groups whose hash matched.
    pub hash_matched: u64,
    /// Settled groups whose hash matched once a trade price was inferred.
    pub hash_matched_inferred_trade: u64,
    /// Settled groups whose hash did not match.
    pub hash_mismatched: u64,
    /// Settled groups not hash-checked (no hash, sampling, or off).
    pub hash_not_checked: u64,
    /// Of those, groups that carried a hash but were left out by sampling
    /// ([`CheckMode::Sampled`](crate::orderbook::CheckMode), or `Adaptive` under backlog).
    pub hash_skipped: u64,
    /// Snapshots whose hash matched.
    pub snapshot_hash_matched: u64,
    /// Snapshots whose hash did not match (counted; the book stays trusted).
    pub snapshot_hash_mismatched: u64,
    /// Books whose unknown `min_order_size` / `neg_risk` were inferred from a hash (markets
    /// announced by `new_market`); these hashes count as matched.
    pub meta_inferred: u64,
    /// Entries whose own hash matched (`CheckMode::EveryEntry` only).
    pub entry_hash_matched: u64,
    /// Entries whose own hash did not match (`CheckMode::EveryEntry` only).
    pub entry_hash_mismatched: u64,
    /// Settled groups whose best bid/ask disagreed.
    pub bbo_mismatches: u64,
    /// Settled groups that left the book crossed.
    pub crossed: u64,
    /// Transitions to untrusted, by cause.
    pub untrusted: UntrustCounts,
    /// Resync requests sent to the event loop.
    pub resync_requests_sent: u64,
    /// Resync requests dropped because the channel was full.
    pub resync_requests_dropped: u64,
    /// Books added.
    pub books_added: u64,
    /// Books removed.
    pub books_removed: u64,
    /// Books owned now.
    pub orderbook_count: u64,
    /// Trusted books now.
    pub trusted_books: u64,
    /// Heap bytes held by the books (refreshed periodically).
    pub memory_usage: u64,
    /// Book queries answered.
    pub queries_answered: u64,
    /// Last loop iteration, `now_ns` clock.
    pub heartbeat_ns: u64,
    /// Age of the heartbeat when the snapshot was taken, ms.
    pub heartbeat_age_ms: u64,
    /// Loop iterations.
    pub loops: u64,
    /// Ring chunks processed.
    pub chunks: u64,
    /// Mean processing time per ring item, µs.
    pub avg_processing_time_us: f64,
    /// Longest chunk (stall detector), ns.
    pub max_chunk_ns: u64,
    /// Processing time per ring chunk.
    pub processing: HistogramSnapshot,
    /// Wire → applied latency per record.
    pub latency: HistogramSnapshot,
}

/// Of the settled groups that carried a hash, the share that was compared (1 when there
/// were none): what sampling left unverified, over all `workers`.
pub fn hash_verified_share(workers: &[WorkerStatsSnapshot]) -> f64 {
    let checked: u64 = workers
        .iter()
        .map(|w| w.hash_matched + w.hash_matched_inferred_trade + w.hash_mismatched)
        .sum();
    let skipped: u64 = workers.iter().map(|w| w.hash_skipped).sum();
    if checked + skipped == 0 {
        1.0
    } else {
        checked as f64 / (checked + skipped) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut prev_end = 0;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, prev_end, "bucket {i}");
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(low + width - 1), i);
            prev_end = low + width;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 100);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max_ns, 1_000_000);
        assert_eq!(s.mean_ns, 500_050);
        for (got, want) in [
            (s.p50_ns, 500_000u64),
            (s.p99_ns, 990_000),
            (s.p90_ns, 900_000),
        ] {
            assert!(got.abs_diff(want) * 100 / want <= 7, "{got} vs {want}");
        }
        assert_eq!(Histogram::new().snapshot(), HistogramSnapshot::default());
    }

    #[test]
    fn cumulative_counts_whole_buckets_under_each_bound() {
        let h = Histogram::new();
        for v in [5u64, 900, 1_000, 50_000, 2_000_000] {
            h.record(v);
        }
        let c = h.cumulative(&[10, 1_024, 100_000, 1_000_000]);
        assert_eq!(c.cumulative, vec![1, 3, 4, 4]);
        assert_eq!((c.count, c.sum_ns), (5, 2_051_905));
        let mut m = CumulativeHistogram::default();
        m.merge(&c);
        m.merge(&c);
        assert_eq!((m.cumulative[1], m.count), (6, 10));
    }
}
