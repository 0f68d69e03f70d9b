//! The watchdog and resync rules (pure): which connections are frozen, which assets are late
//! or silent, and which wanted assets may be resubscribed now, with every resync counted by
//! cause.
//!
//! Owns the resync bookkeeping: assets waiting for a snapshot (since when), assets wanted for a
//! resync (why), when each asset was last resynced, and the counts per cause. No I/O and no
//! clock: every method takes `now`. The event loop owns one [`Resyncs`] (in its `Core`) and
//! carries out what it decides (`event_loop/resync.rs`: disconnecting frozen connections,
//! sending unsubscribe + subscribe); the hot path only calls
//! [`Resyncs::snapshot_arrived`].
//!
//! Silent freezes (the socket stays open, `PONG`s flow, data stops) are judged on evidence,
//! not one fixed timeout: [`FreezeDetector`] convicts an owner connection when the probe
//! connection received flow messages for the owner's assets that the owner did not deliver
//! (seconds, whatever the rate); [`RateWindow`] + [`improbable_silence`] suspect a connection
//! silent for far longer than its own recent rate makes likely (quiet markets are quiet, not
//! frozen). The event loop then marks the connection's books `stale` and recycles it
//! make-before-break.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::market::AssetId;
use crate::orderbook::UntrustReason;
use crate::registry::ConnId;

/// Why an asset is being resynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResyncCause {
    /// Its connection dropped and came back.
    Reconnect,
    /// Records were dropped on a full ring.
    RingFull,
    /// A frame naming it failed to decode.
    DecodeFailure,
    /// Its worker found the book untrusted: a failed check (hash, best bid/ask, crossed,
    /// incomplete snapshot), a tick-size change, or a data-loss marker.
    Book(UntrustReason),
    /// No snapshot within the timeout after subscribing.
    NoSnapshot,
    /// No data for the asset for a long time while its connection delivered.
    AssetSilent,
    /// A recycle could not move it by snapshot (deadline passed or replacement lost).
    Recycle,
    /// Asked for by an operator or another component.
    Requested,
}

impl ResyncCause {
    /// snake_case name for stats.
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncCause::Reconnect => "reconnect",
            ResyncCause::RingFull => "ring_full",
            ResyncCause::DecodeFailure => "decode_failure",
            ResyncCause::Book(r) => r.as_str(),
            ResyncCause::NoSnapshot => "no_snapshot",
            ResyncCause::AssetSilent => "asset_silent",
            ResyncCause::Recycle => "recycle",
            ResyncCause::Requested => "requested",
        }
    }
}

/// A connection is frozen when it is open with assets and no data message arrived for
/// `silence` (since the last one, or since it connected): `PONG`s may still flow, which is
/// why the connection's own silence timeout does not catch it. `silence` zero = never.
pub fn is_frozen(
    now: Instant,
    last_message_at: Option<Instant>,
    connected_since: Option<Instant>,
    silence: Duration,
) -> bool {
    !silence.is_zero()
        && last_message_at
            .or(connected_since)
            .is_some_and(|t| now.saturating_duration_since(t) >= silence)
}

/// An asset is silent when it had a record once (`last_record_ns` ≠ 0) and none for
/// `silence_ns` while its connection delivers. `silence_ns` zero = never.
pub fn is_silent(now_ns: u64, last_record_ns: u64, silence_ns: u64) -> bool {
    silence_ns > 0 && last_record_ns != 0 && now_ns.saturating_sub(last_record_ns) > silence_ns
}

/// Where a wanted asset's owner connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The asset has no owner (unsubscribed, removed): nothing to resync.
    None,
    /// The owner is not open: its reconnect will resubscribe the asset.
    Down,
    /// The owner is open: resubscribe there.
    Live(ConnId),
}

/// Resync bookkeeping of every asset (see the module docs).
#[derive(Debug)]
pub struct Resyncs {
    snapshot_timeout: Duration,
    /// Subscribed and waiting for a snapshot, since.
    awaiting: FxHashMap<AssetId, Instant>,
    /// To resync at the next tick, with the first cause.
    wanted: FxHashMap<AssetId, ResyncCause>,
    /// Last resubscription of each asset (the per-asset rate limit).
    last_resync: FxHashMap<AssetId, Instant>,
    counts: BTreeMap<&'static str, u64>,
}

impl Resyncs {
    /// Bookkeeping where a snapshot must follow a subscription within `snapshot_timeout`, and
    /// an asset is resubscribed at most once per half of it.
    pub fn new(snapshot_timeout: Duration) -> Resyncs {
        Resyncs {
            snapshot_timeout,
            awaiting: FxHashMap::default(),
            wanted: FxHashMap::default(),
            last_resync: FxHashMap::default(),
            counts: BTreeMap::new(),
        }
    }

    /// Wants `asset` resynced; an asset already wanted keeps its first cause.
    pub fn want(&mut self, asset: AssetId, cause: ResyncCause) {
        self.wanted.entry(asset).or_insert(cause);
    }

    /// Counts a resync that happens by other means (a reconnect resubscribes everything).
    pub fn count(&mut self, cause: ResyncCause) {
        *self.counts.entry(cause.as_str()).or_default() += 1;
    }

    /// `asset` was (re)subscribed at `now`: a snapshot must follow.
    pub fn subscribed(&mut self, asset: AssetId, now: Instant) {
        self.awaiting.insert(asset, now);
    }

    /// A snapshot of `asset` arrived (hot path: one hash-map removal).
    #[inline]
    pub fn snapshot_arrived(&mut self, asset: AssetId) {
        self.awaiting.remove(&asset);
    }

    /// Whether `asset` waits for a snapshot.
    pub fn is_awaiting(&self, asset: AssetId) -> bool {
        self.awaiting.contains_key(&asset)
    }

    /// Assets waiting for a snapshot.
    pub fn awaiting_len(&self) -> usize {
        self.awaiting.len()
    }

    /// Assets wanted for a resync.
    pub fn wanted_len(&self) -> usize {
        self.wanted.len()
    }

    /// `asset`'s connection was lost: its reconnect resubscribes it, so it neither waits
    /// nor is wanted any more.
    pub fn connection_lost(&mut self, asset: AssetId) {
        self.awaiting.remove(&asset);
        self.wanted.remove(&asset);
    }

    /// `asset` left the registry: forget it entirely.
    pub fn forget(&mut self, asset: AssetId) {
        self.connection_lost(asset);
        self.last_resync.remove(&asset);
    }

    /// Assets whose snapshot is overdue at `now` become wanted ([`ResyncCause::NoSnapshot`]);
    /// returns how many.
    pub fn check_late(&mut self, now: Instant) -> usize {
        let timeout = self.snapshot_timeout;
        let late: Vec<AssetId> = self
            .awaiting
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in &late {
            self.want(*a, ResyncCause::NoSnapshot);
        }
        late.len()
    }

    /// The wanted assets to resubscribe now, grouped by owner connection. An asset goes when
    /// its owner is live and it was not resynced within half the snapshot timeout; it then
    /// waits for a snapshot and its cause is counted. Wanted assets without an owner are
    /// dropped; those whose owner is down stay wanted (the reconnect takes care of them).
    pub fn due(
        &mut self,
        now: Instant,
        mut owner: impl FnMut(AssetId) -> Owner,
    ) -> BTreeMap<ConnId, Vec<AssetId>> {
        let mut by_conn: BTreeMap<ConnId, Vec<AssetId>> = BTreeMap::new();
        if self.wanted.is_empty() {
            return by_conn;
        }
        let min_gap = self.snapshot_timeout / 2;
        let wanted: Vec<(AssetId, ResyncCause)> =
            self.wanted.iter().map(|(a, c)| (*a, *c)).collect();
        for (a, cause) in wanted {
            let conn = match owner(a) {
                Owner::None => {
                    self.wanted.remove(&a);
                    continue;
                }
                Owner::Down => continue,
                Owner::Live(conn) => conn,
            };
            if self
                .last_resync
                .get(&a)
                .is_some_and(|t| now.saturating_duration_since(*t) < min_gap)
            {
                continue;
            }
            self.wanted.remove(&a);
            self.last_resync.insert(a, now);
            self.awaiting.insert(a, now);
            self.count(cause);
            by_conn.entry(conn).or_default().push(a);
        }
        for assets in by_conn.values_mut() {
            assets.sort_unstable();
        }
        by_conn
    }

    /// Resyncs so far, per cause.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
}

/// How frozen connections are detected (`docs/ARCHITECTURE.md`, "Silent freezes").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreezeConfig {
    /// Run the probe connection: a small extra connection subscribed to the busiest few
    /// assets of every connection, whose messages are never applied but prove that the venue
    /// sends data an owner did not deliver. Default on.
    pub probe: bool,
    /// Flow messages per second the probe aims to see of each connection: its busiest assets
    /// are added until their recent rate reaches this. Default 5.
    pub probe_target_rate: f64,
    /// Fewest assets (that have traffic) the probe follows per connection unless their rates
    /// add up to four times the target: the busiest quiet assets of a short window overstate
    /// their rate. Default 10.
    pub probe_min_per_conn: usize,
    /// Most assets the probe follows per connection. Default 25.
    pub probe_max_per_conn: usize,
    /// How often the probe's assets are chosen again. Default 30 s.
    pub probe_reselect: Duration,
    /// An owner that delivered nothing for this long before a probe message missed it.
    /// Default 0.5 s.
    pub match_window: Duration,
    /// Probe messages the owner missed before it is suspected. Default 2.
    pub min_evidence: u32,
    /// … and the first of them at least this old. Default 0.5 s.
    pub grace: Duration,
    /// Rate-aware silence: a gap this many times the connection's mean gap between flow
    /// messages (over the last [`RATE_WINDOW`]) is improbable. Default 30.
    pub gap_factor: f64,
    /// Rate-aware silence never suspects a gap shorter than this. Default 10 s.
    pub min_gap: Duration,
}

impl Default for FreezeConfig {
    fn default() -> Self {
        FreezeConfig {
            probe: true,
            probe_target_rate: 5.0,
            probe_min_per_conn: 10,
            probe_max_per_conn: 25,
            probe_reselect: Duration::from_secs(30),
            match_window: Duration::from_millis(500),
            min_evidence: 2,
            grace: Duration::from_millis(500),
            gap_factor: 30.0,
            min_gap: Duration::from_secs(10),
        }
    }
}

/// Why a connection is suspected frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suspicion {
    /// The probe received data for its assets that it did not deliver.
    Probe,
    /// Silent for far longer than its own recent message rate makes likely.
    Rate,
}

impl Suspicion {
    /// snake_case name for stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Suspicion::Probe => "probe",
            Suspicion::Rate => "rate",
        }
    }
}

/// The span over which a connection's message rate is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(120);
const RATE_STEP: Duration = Duration::from_secs(10);

/// A connection's recent rate of flow messages (changes, trades: what every subscriber of an
/// asset receives; snapshots are excluded, as they come in bursts after each subscribe).
/// Copies of the connection's running count, one per [`RATE_STEP`], over [`RATE_WINDOW`].
#[derive(Debug, Default, Clone)]
pub struct RateWindow {
    copies: std::collections::VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Takes the running count `total` at `now` (at most one copy per 10 s kept).
    pub fn observe(&mut self, now: Instant, total: u64) {
        if self
            .copies
            .back()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) < RATE_STEP)
        {
            return;
        }
        self.copies.push_back((now, total));
        while self
            .copies
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.copies.pop_front();
        }
    }

    /// Mean gap between flow messages over the window; `None` until the window spans at
    /// least 30 s or when no message arrived in it.
    pub fn mean_gap(&self) -> Option<Duration> {
        let ((t0, n0), (t1, n1)) = (self.copies.front()?, self.copies.back()?);
        let span = t1.saturating_duration_since(*t0);
        let n = n1.saturating_sub(*n0);
        (span >= Duration::from_secs(30) && n > 0).then(|| span / n.min(u64::from(u32::MAX)) as u32)
    }
}

/// The silence after which a connection with mean gap `mean_gap` is improbably silent:
/// `gap_factor × mean_gap`, at least `floor`. `None` (never) while the rate is unknown.
pub fn improbable_silence(
    mean_gap: Option<Duration>,
    gap_factor: f64,
    floor: Duration,
) -> Option<Duration> {
    mean_gap.map(|g| g.mul_f64(gap_factor).max(floor))
}

#[derive(Debug, Clone, Copy)]
struct Evidence {
    first: Instant,
    count: u32,
}

/// Probe evidence per owner connection (pure; the event loop owns one).
#[derive(Debug, Default)]
pub struct FreezeDetector {
    evidence: FxHashMap<ConnId, Evidence>,
}

impl FreezeDetector {
    /// The probe received a flow message at `now` for an asset `owner` owns, and `owner`
    /// last delivered a data message at `owner_last` (`None`: never).
    pub fn on_probe(
        &mut self,
        cfg: &FreezeConfig,
        owner: ConnId,
        now: Instant,
        owner_last: Option<Instant>,
    ) {
        let delivered = owner_last.is_some_and(|t| t + cfg.match_window >= now);
        if delivered {
            self.evidence.remove(&owner);
            return;
        }
        let e = self.evidence.entry(owner).or_insert(Evidence {
            first: now,
            count: 0,
        });
        e.count += 1;
    }

    /// Connections the evidence convicts at `now` (each returned once; its evidence is
    /// dropped). `owner_last` gives each connection's last data message: evidence older
    /// than a delivery is void.
    pub fn convicted(
        &mut self,
        cfg: &FreezeConfig,
        now: Instant,
        mut owner_last: impl FnMut(ConnId) -> Option<Instant>,
    ) -> Vec<ConnId> {
        let mut out = Vec::new();
        self.evidence.retain(|conn, e| {
            if owner_last(*conn).is_some_and(|t| t > e.first) {
                return false; // it delivered since
            }
            if e.count >= cfg.min_evidence && now.saturating_duration_since(e.first) >= cfg.grace {
                out.push(*conn);
                return false;
            }
            true
        });
        out.sort_unstable();
        out
    }

    /// Forgets `conn` (lost, closed, or already being healed).
    pub fn forget(&mut self, conn: ConnId) {
        self.evidence.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn frozen_and_silent_rules() {
        let t = Instant::now();
        let s = Duration::from_secs(5);
        assert!(!is_frozen(t + s, Some(t), None, Duration::ZERO), "off");
        assert!(!is_frozen(t + s / 2, Some(t), None, s));
        assert!(is_frozen(t + s, Some(t), None, s));
        // Never a data message: measured from the connection's start.
        assert!(is_frozen(t + s, None, Some(t), s));
        assert!(!is_frozen(t + s, None, None, s), "never connected");
        assert!(!is_silent(100, 0, 10), "never had data");
        assert!(!is_silent(100, 95, 10));
        assert!(is_silent(100, 80, 10));
        assert!(!is_silent(100, 80, 0), "off");
    }

    #[test]
    fn a_missing_snapshot_is_wanted_after_the_timeout_only() {
        let t = Instant::now();
        let mut r = Resyncs::new(TIMEOUT);
        r.subscribed(AssetId(1), t);
        r.subscribed(AssetId(2), t);
        r.snapshot_arrived(AssetId(2));
        assert_eq!(r.check_late(t + TIMEOUT / 2), 0);
        assert_eq!(r.check_late(t + TIMEOUT), 1);
        let due = r.due(t + TIMEOUT, |_| Owner::Live(7));
        assert_eq!(due.get(&7), Some(&vec![AssetId(1)]));
        assert_eq!(r.counts().get("no_snapshot"), Some(&1));
        assert!(r.is_awaiting(AssetId(1)), "waits again after the resync");
    }

    #[test]
    fn resyncs_are_rate_limited_per_asset_and_keep_the_first_cause() {
        let t = Instant::now();
        let mut r = Resyncs::new(TIMEOUT);
        r.want(AssetId(1), ResyncCause::RingFull);
        r.want(AssetId(1), ResyncCause::Requested);
        assert_eq!(r.due(t, |_| Owner::Live(0)).len(), 1);
        assert_eq!(r.counts().get("ring_full"), Some(&1));
        assert_eq!(r.counts().get("requested"), None);
        // Wanted again at once: held until half the timeout passed, then sent.
        r.snapshot_arrived(AssetId(1));
        r.want(AssetId(1), ResyncCause::DecodeFailure);
        assert!(r.due(t + TIMEOUT / 4, |_| Owner::Live(0)).is_empty());
        assert_eq!(r.wanted_len(), 1);
        assert_eq!(r.due(t + TIMEOUT / 2, |_| Owner::Live(0)).len(), 1);
        assert_eq!(r.wanted_len(), 0);
    }

    #[test]
    fn owners_down_keep_the_want_and_no_owner_drops_it() {
        let t = Instant::now();
        let mut r = Resyncs::new(TIMEOUT);
        r.want(AssetId(1), ResyncCause::Requested);
        r.want(AssetId(2), ResyncCause::Requested);
        let due = r.due(t, |a| {
            if a == AssetId(1) {
                Owner::Down
            } else {
                Owner::None
            }
        });
        assert!(due.is_empty());
        assert_eq!(r.wanted_len(), 1, "asset 1 waits for its reconnect");
        // The connection is lost: its reconnect resubscribes, nothing stays wanted.
        r.connection_lost(AssetId(1));
        assert_eq!((r.wanted_len(), r.awaiting_len()), (0, 0));
        assert!(r.counts().is_empty(), "nothing was resynced");
    }

    #[test]
    fn forgotten_assets_lose_their_rate_limit() {
        let t = Instant::now();
        let mut r = Resyncs::new(TIMEOUT);
        r.want(AssetId(3), ResyncCause::Requested);
        assert_eq!(r.due(t, |_| Owner::Live(1)).len(), 1);
        r.forget(AssetId(3));
        assert_eq!(r.awaiting_len(), 0);
        r.want(AssetId(3), ResyncCause::Requested);
        assert_eq!(
            r.due(t, |_| Owner::Live(1)).len(),
            1,
            "a new asset, no limit"
        );
    }

    #[test]
    fn probe_evidence_convicts_an_owner_that_missed_messages() {
        let cfg = FreezeConfig::default();
        let t = Instant::now();
        let mut d = FreezeDetector::default();
        let last = Some(t);
        // The owner delivered at t: a probe message 0.5 s later is matched.
        d.on_probe(&cfg, 4, t + Duration::from_millis(500), last);
        assert!(
            d.convicted(&cfg, t + Duration::from_secs(5), |_| last)
                .is_empty()
        );
        // Two probe messages after 2 s and 2.5 s of owner silence: convicted after the grace.
        d.on_probe(&cfg, 4, t + Duration::from_secs(2), last);
        d.on_probe(&cfg, 4, t + Duration::from_millis(2_500), last);
        assert!(
            d.convicted(&cfg, t + Duration::from_millis(2_400), |_| last)
                .is_empty()
        );
        assert_eq!(
            d.convicted(&cfg, t + Duration::from_millis(2_500), |_| last),
            vec![4]
        );
        assert!(
            d.convicted(&cfg, t + Duration::from_secs(4), |_| last)
                .is_empty(),
            "once"
        );
    }

    #[test]
    fn a_delivery_voids_the_evidence() {
        let cfg = FreezeConfig::default();
        let t = Instant::now();
        let mut d = FreezeDetector::default();
        d.on_probe(&cfg, 1, t + Duration::from_secs(2), Some(t));
        d.on_probe(&cfg, 1, t + Duration::from_secs(3), Some(t));
        // The owner delivered at 3.1 s (it was only slow): nothing to convict.
        let later = Some(t + Duration::from_millis(3_100));
        assert!(
            d.convicted(&cfg, t + Duration::from_secs(5), |_| later)
                .is_empty()
        );
        // One message alone never convicts.
        d.on_probe(&cfg, 2, t + Duration::from_secs(2), Some(t));
        assert!(
            d.convicted(&cfg, t + Duration::from_secs(9), |_| Some(t))
                .is_empty()
        );
    }

    #[test]
    fn rate_window_and_improbable_silence() {
        let t = Instant::now();
        let mut w = RateWindow::default();
        assert_eq!(w.mean_gap(), None);
        // 5 flow messages a second for a minute.
        for s in 0..=60u64 {
            w.observe(t + Duration::from_secs(s), s * 5);
        }
        let gap = w.mean_gap().expect("known");
        assert_eq!(gap, Duration::from_millis(200));
        let floor = Duration::from_secs(10);
        assert_eq!(improbable_silence(Some(gap), 30.0, floor), Some(floor));
        // A quiet connection: one message per 30 s → 15 minutes before silence is improbable.
        let mut q = RateWindow::default();
        for s in (0..=120u64).step_by(10) {
            q.observe(t + Duration::from_secs(s), s / 30);
        }
        let quiet = improbable_silence(q.mean_gap(), 30.0, floor).expect("known");
        assert!(quiet >= Duration::from_secs(600), "{quiet:?}");
        // Nothing at all in the window: unknown, never improbable.
        let mut none = RateWindow::default();
        for s in (0..=60u64).step_by(10) {
            none.observe(t + Duration::from_secs(s), 7);
        }
        assert_eq!(improbable_silence(none.mean_gap(), 30.0, floor), None);
    }
}
