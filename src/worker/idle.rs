//! What a book worker does when its ring is empty. Runs on the book worker thread.
//!
//! A parked thread costs 12–50 µs to wake on this VM (`docs/machine-reference.md` §3), a
//! spinning one burns a core. The default [`IdleStrategy::Backoff`] spins briefly (a burst's
//! next batch usually arrives within microseconds), then yields (gives the core to the event
//! loop when they share it), then parks for at most 1 ms at a time, so an idle engine costs
//! next to nothing while the first message after a quiet spell waits at most ~1 ms. The
//! router unparks a parked worker when it pushes to its ring
//! ([`Router::set_unparkers`](crate::handoff::Router::set_unparkers)), which cuts that wait
//! to the wake-up cost.

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
    /// `Backoff { spin: 20 µs, yield_for: 200 µs, park: 1 ms }`.
    fn default() -> IdleStrategy {
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

/// Idle state of one worker: when the ring went empty.
#[derive(Debug)]
pub(crate) struct Idler {
    strategy: IdleStrategy,
    since_ns: Option<u64>,
}

impl Idler {
    pub(crate) fn new(strategy: IdleStrategy) -> Idler {
        Idler {
            strategy,
            since_ns: None,
        }
    }

    /// Work arrived: the next idle spell starts from the spin phase.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.since_ns = None;
    }

    /// The action for an idle round at `now_ns`.
    pub(crate) fn next(&mut self, now_ns: u64) -> IdleAction {
        let since = *self.since_ns.get_or_insert(now_ns);
        let idle = Duration::from_nanos(now_ns.saturating_sub(since));
        match self.strategy {
            IdleStrategy::Spin => IdleAction::Spin,
            IdleStrategy::Yield => IdleAction::Yield,
            IdleStrategy::Park(d) => IdleAction::Park(d),
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
    fn backoff_walks_spin_yield_park_and_resets() {
        let mut i = Idler::new(IdleStrategy::default());
        assert_eq!(i.next(1_000), IdleAction::Spin);
        assert_eq!(i.next(1_000 + 30_000), IdleAction::Yield);
        assert_eq!(
            i.next(1_000 + 300_000),
            IdleAction::Park(Duration::from_millis(1))
        );
        i.reset();
        assert_eq!(i.next(10_000_000), IdleAction::Spin);
        let mut p = Idler::new(IdleStrategy::Park(Duration::from_micros(5)));
        assert_eq!(p.next(0), IdleAction::Park(Duration::from_micros(5)));
    }
}
