//! What a book worker does when its ring is empty. Runs on the book worker thread.
//!
//! A parked thread costs 12–50 µs to wake on this VM (`docs/machine-reference.md` §3), a
//! spinning one burns a core, and a `yield_now` with nobody else to run is a spin too. The
//! default [`IdleStrategy::Adaptive`] is rate-aware: it spins only while the recent gaps
//! between batches say the next one is due within its spin window (a wake-up would cost more
//! than the wait), and otherwise parks at once, for at most 5 ms at a time. So a worker whose
//! batches are far apart costs one wake-up per batch and nothing between them, and one whose
//! batches come back to back never sleeps. The router unparks a parked worker when it pushes
//! to its ring ([`Router::set_unparkers`](crate::handoff::Router::set_unparkers)), which cuts
//! the wait to the wake-up cost. [`IdleStrategy::Backoff`] (spin, yield, park) is the
//! previous default, kept for comparison.

use std::time::Duration;

/// Idle policy of a hot thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Busy-spin (`spin_loop`): lowest latency, burns the core. Only with a dedicated core.
    Spin,
    /// `thread::yield_now()` in a loop: burns the core unless another thread wants it.
    Yield,
    /// Park for up to the duration (woken early by the router or a query).
    Park(Duration),
    /// Rate-aware: spin for up to `spin` when the recent mean gap between batches is at most
    /// `spin`, else park at once; park for up to `park` at a time.
    Adaptive {
        /// Spin window: gaps shorter than this are waited for spinning.
        spin: Duration,
        /// Park timeout.
        park: Duration,
    },
    /// Spin for `spin`, then yield until `spin + yield_for` has passed since the ring went
    /// empty, then park for up to `park` at a time.
    Backoff {
        /// Spin phase length.
        spin: Duration,
        /// Yield phase length.
        yield_for: Duration,
        /// Park timeout.
        park: Duration,
    },
}

impl Default for IdleStrategy {
    /// `Adaptive { spin: 15 µs, park: 5 ms }`: a timer wake-up cost ~22 µs of CPU on this
    /// (busy) VM kind (`docs/loadtest.md`, 2026-12-07), so spinning through a gap shorter
    /// than 15 µs is the cheaper of the two; the router
    /// and queries unpark a parked worker, so the timeout only paces the settle scan.
    fn default() -> IdleStrategy {
        IdleStrategy::Adaptive {
            spin: Duration::from_micros(15),
            park: Duration::from_millis(5),
        }
    }
}

impl IdleStrategy {
    /// The previous default: `Backoff { spin: 20 µs, yield_for: 200 µs, park: 1 ms }`.
    pub fn backoff() -> IdleStrategy {
        IdleStrategy::Backoff {
            spin: Duration::from_micros(20),
            yield_for: Duration::from_micros(200),
            park: Duration::from_millis(1),
        }
    }
}

/// What to do for one idle round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleAction {
    Spin,
    Yield,
    Park(Duration),
}

/// Gaps count at most this much in the mean (a quiet minute is as far from spinning as a
/// quiet millisecond), so the mean comes back within a few dozen close batches.
const MAX_GAP_NS: u64 = 1_000_000;

/// Idle state of one worker: when the ring went empty, and the recent gap between batches.
#[derive(Debug)]
pub(crate) struct Idler {
    strategy: IdleStrategy,
    since_ns: Option<u64>,
    /// When the last batch was taken.
    last_work_ns: u64,
    /// Mean gap between batches (exponential, weight 1/8 for the newest).
    gap_ns: u64,
}

impl Idler {
    pub(crate) fn new(strategy: IdleStrategy) -> Idler {
        Idler {
            strategy,
            since_ns: None,
            last_work_ns: 0,
            gap_ns: MAX_GAP_NS,
        }
    }

    /// A batch was taken at `now_ns`: the next idle spell starts afresh, and the gap since
    /// the previous batch joins the mean.
    #[inline]
    pub(crate) fn work(&mut self, now_ns: u64) {
        self.since_ns = None;
        let gap = now_ns.saturating_sub(self.last_work_ns).min(MAX_GAP_NS);
        self.last_work_ns = now_ns;
        self.gap_ns = self.gap_ns - self.gap_ns / 8 + gap / 8;
    }

    /// The action for an idle round at `now_ns`.
    pub(crate) fn next(&mut self, now_ns: u64) -> IdleAction {
        let since = *self.since_ns.get_or_insert(now_ns);
        let idle = Duration::from_nanos(now_ns.saturating_sub(since));
        match self.strategy {
            IdleStrategy::Spin => IdleAction::Spin,
            IdleStrategy::Yield => IdleAction::Yield,
            IdleStrategy::Park(d) => IdleAction::Park(d),
            IdleStrategy::Adaptive { spin, park } => {
                let window = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
                if self.gap_ns <= window && idle < spin {
                    IdleAction::Spin
                } else {
                    IdleAction::Park(park)
                }
            }
            IdleStrategy::Backoff {
                spin,
                yield_for,
                park,
            } => {
                if idle < spin {
                    IdleAction::Spin
                } else if idle < spin + yield_for {
                    IdleAction::Yield
                } else {
                    IdleAction::Park(park)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_spins_only_when_batches_come_close() {
        let mut i = Idler::new(IdleStrategy::default());
        let park = IdleAction::Park(Duration::from_millis(5));
        // Nothing known yet: park.
        assert_eq!(i.next(1_000), park);
        // Batches 500 µs apart (2,000 a second): park at once.
        let mut t = 1_000_000;
        for _ in 0..40 {
            t += 500_000;
            i.work(t);
        }
        assert_eq!(i.next(t + 100), park);
        // Back to back (every 5 µs): spin through the window, then park.
        for _ in 0..40 {
            t += 5_000;
            i.work(t);
        }
        assert_eq!(i.next(t + 100), IdleAction::Spin);
        assert_eq!(i.next(t + 14_000), IdleAction::Spin);
        assert_eq!(i.next(t + 16_000), park);
        // The rate falls again: the mean follows within a few batches.
        for _ in 0..30 {
            t += 400_000;
            i.work(t);
        }
        assert_eq!(i.next(t + 100), park);
    }

    #[test]
    fn backoff_walks_spin_yield_park_and_resets() {
        let mut i = Idler::new(IdleStrategy::backoff());
        assert_eq!(i.next(1_000), IdleAction::Spin);
        assert_eq!(i.next(1_000 + 30_000), IdleAction::Yield);
        assert_eq!(
            i.next(1_000 + 300_000),
            IdleAction::Park(Duration::from_millis(1))
        );
        i.work(5_000_000);
        assert_eq!(i.next(10_000_000), IdleAction::Spin);
        let mut p = Idler::new(IdleStrategy::Park(Duration::from_micros(5)));
        assert_eq!(p.next(0), IdleAction::Park(Duration::from_micros(5)));
    }
}
