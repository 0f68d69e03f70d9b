//! What the event loop publishes for other threads (HTTP, metrics, embedders) so that they
//! never ask it: the latest [`LoopSnapshot`] and the followed markets.
//!
//! The event loop is the only writer: it stores a fresh snapshot every
//! [`SNAPSHOT_INTERVAL`] from its timer tick, and a new market list only when the registry's
//! revision moved (at most once per [`MARKETS_INTERVAL`]). Readers load an `Arc` from a
//! lock-free slot (`arc-swap`): a reader never delays the loop, however often it reads,
//! and the loop never waits for a reader. Building a snapshot costs the loop about as much
//! as one answer used to (milliseconds at 50,000 assets), but at a fixed rate instead of one
//! per HTTP request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::snapshot::{LoopSnapshot, MarketView};

/// How often the loop publishes its snapshot.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(500);

/// Shortest time between two market-list rebuilds while the registry keeps changing.
pub const MARKETS_INTERVAL: Duration = Duration::from_secs(1);

/// A published value and when the loop built it.
#[derive(Debug)]
pub struct Stamped<T> {
    /// When it was built.
    pub at: Instant,
    /// The value.
    pub value: T,
}

impl<T> std::ops::Deref for Stamped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The slots (inside `LoopShared`).
#[derive(Debug, Default)]
pub struct Published {
    snapshot: ArcSwapOption<Stamped<LoopSnapshot>>,
    markets: ArcSwapOption<Stamped<Vec<MarketView>>>,
}

impl Published {
    /// Event loop: replaces the snapshot; returns it.
    pub(super) fn store_snapshot(
        &self,
        at: Instant,
        value: LoopSnapshot,
    ) -> Arc<Stamped<LoopSnapshot>> {
        let s = Arc::new(Stamped { at, value });
        self.snapshot.store(Some(Arc::clone(&s)));
        s
    }

    /// Event loop: replaces the market list.
    pub(super) fn store_markets(&self, at: Instant, value: Vec<MarketView>) {
        self.markets.store(Some(Arc::new(Stamped { at, value })));
    }

    /// The latest snapshot, if the loop published one.
    pub fn snapshot(&self) -> Option<Arc<Stamped<LoopSnapshot>>> {
        self.snapshot.load_full()
    }

    /// The latest market list, if the loop published one.
    pub fn markets(&self) -> Option<Arc<Stamped<Vec<MarketView>>>> {
        self.markets.load_full()
    }
}

/// When the loop publishes (pure; the loop owns one).
#[derive(Debug, Default)]
pub(super) struct PublishClock {
    next_snapshot: Option<Instant>,
    next_markets: Option<Instant>,
    markets_revision: Option<u64>,
}

impl PublishClock {
    /// True when a snapshot is due at `now` (and books the next one).
    pub(super) fn snapshot_due(&mut self, now: Instant) -> bool {
        if self.next_snapshot.is_some_and(|t| now < t) {
            return false;
        }
        self.next_snapshot = Some(now + SNAPSHOT_INTERVAL);
        true
    }

    /// True when the market list must be rebuilt for registry `revision` at `now`.
    pub(super) fn markets_due(&mut self, now: Instant, revision: u64) -> bool {
        if self.markets_revision == Some(revision) || self.next_markets.is_some_and(|t| now < t) {
            return false;
        }
        self.markets_revision = Some(revision);
        self.next_markets = Some(now + MARKETS_INTERVAL);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_at_a_fixed_rate() {
        let mut c = PublishClock::default();
        let t = Instant::now();
        assert!(c.snapshot_due(t));
        assert!(!c.snapshot_due(t + SNAPSHOT_INTERVAL / 2));
        assert!(c.snapshot_due(t + SNAPSHOT_INTERVAL));
    }

    #[test]
    fn markets_only_when_the_registry_changed_and_not_too_often() {
        let mut c = PublishClock::default();
        let t = Instant::now();
        assert!(c.markets_due(t, 1));
        assert!(!c.markets_due(t + MARKETS_INTERVAL * 5, 1), "unchanged");
        assert!(!c.markets_due(t + MARKETS_INTERVAL / 2, 2), "too soon");
        assert!(c.markets_due(t + MARKETS_INTERVAL, 2));
    }
}
