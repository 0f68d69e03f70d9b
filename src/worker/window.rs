//! Recent-window latency: the samples of the last [`RECENT_WINDOW`], not since start.
//!
//! Since-start quantiles are dominated for the whole run by start-up bursts (every snapshot
//! arriving at once); operators need what happens now. [`LatencyWindow`] keeps plain copies
//! ([`HistogramCounts`]) of the workers' histograms taken at most once per
//! [`SAMPLE_EVERY`] and answers with the difference between the newest copy and the one
//! taken a window earlier. Pure: the caller passes `now` and the copies. The event loop owns
//! one and feeds it from its publish tick (`event_loop/published.rs`); the result travels in
//! the published snapshot to `/stats`, `/metrics` and the progress line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::stats::{HistogramCounts, HistogramSnapshot};

/// Length of the recent window.
pub const RECENT_WINDOW: Duration = Duration::from_secs(15);

/// Copies closer together than this are not kept.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Latency over the recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecentLatency {
    /// The interval the figures cover (shorter than [`RECENT_WINDOW`] during the first
    /// seconds), ns.
    pub window_ns: u64,
    /// Quantiles of the samples in that interval.
    pub latency: HistogramSnapshot,
}

/// Copies of a histogram over the last window (bounded: about
/// `RECENT_WINDOW / SAMPLE_EVERY + 2` copies).
#[derive(Debug, Default)]
pub struct LatencyWindow {
    copies: VecDeque<(Instant, HistogramCounts)>,
}

impl LatencyWindow {
    /// Takes `copy` (the histograms at `now`) if [`SAMPLE_EVERY`] passed since the last one,
    /// and forgets copies no longer needed as the window's start.
    pub fn observe(&mut self, now: Instant, copy: impl FnOnce() -> HistogramCounts) {
        if self
            .copies
            .back()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) < SAMPLE_EVERY)
        {
            return;
        }
        self.copies.push_back((now, copy()));
        let start = now.checked_sub(RECENT_WINDOW);
        // Keep the newest copy taken at or before the window's start as its baseline.
        while let (Some(start), Some((second, _))) = (start, self.copies.get(1)) {
            if *second > start {
                break;
            }
            self.copies.pop_front();
        }
    }

    /// The latency between the oldest kept copy and the newest.
    pub fn recent(&self) -> RecentLatency {
        match (self.copies.front(), self.copies.back()) {
            (Some((t0, first)), Some((t1, last))) if t1 > t0 => RecentLatency {
                window_ns: u64::try_from(t1.duration_since(*t0).as_nanos()).unwrap_or(u64::MAX),
                latency: last.since(first).summary(),
            },
            _ => RecentLatency::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Histogram;

    fn copy(h: &Histogram) -> HistogramCounts {
        let mut c = HistogramCounts::default();
        h.add_to(&mut c);
        c
    }

    #[test]
    fn a_start_up_burst_leaves_the_window() {
        let h = Histogram::new();
        let mut w = LatencyWindow::default();
        let t0 = Instant::now();
        // Start-up: 10,000 slow samples (5 ms).
        for _ in 0..10_000 {
            h.record(5_000_000);
        }
        w.observe(t0, || copy(&h));
        // Then one fast sample (20 µs) per 10 ms for 30 s, observed every 500 ms.
        for tick in 1..=60u64 {
            for _ in 0..50 {
                h.record(20_000);
            }
            w.observe(t0 + Duration::from_millis(500 * tick), || copy(&h));
        }
        let since_start = h.snapshot();
        assert!(since_start.p50_ns > 1_000_000, "{since_start:?}");
        let recent = w.recent();
        assert_eq!(recent.window_ns, RECENT_WINDOW.as_nanos() as u64);
        assert_eq!(recent.latency.count, 15 * 100, "{recent:?}");
        assert!(recent.latency.p99_ns < 25_000, "{recent:?}");
        assert!(recent.latency.max_ns < 25_000, "{recent:?}");
        assert!(w.copies.len() <= 17, "bounded: {}", w.copies.len());
    }

    #[test]
    fn copies_are_taken_at_most_once_per_interval() {
        let h = Histogram::new();
        let mut w = LatencyWindow::default();
        let t0 = Instant::now();
        let mut taken = 0;
        for ms in (0..3_000).step_by(100) {
            w.observe(t0 + Duration::from_millis(ms), || {
                taken += 1;
                copy(&h)
            });
        }
        assert_eq!(taken, 3);
        assert_eq!(w.recent().latency.count, 0);
    }
}
