//! The connection recycler (seed component 9): when to replace a connection, and the
//! make-before-break migration of its assets to the replacement.
//!
//! Pure state machine, owned and driven by the **event loop thread**: no I/O, no threads, no
//! clock reads (every time-dependent method takes `now: Instant`). It owns the set of recycles
//! in progress (which old connections are being replaced by which new one, which assets have
//! not moved yet), the queue of forced recycles and the recycling statistics. The registry, the
//! pool plan and the sockets stay with the event loop, which carries out what this module says.
//!
//! # Triggers (seed `ConnectionRecycler._check_all_connections`)
//!
//! [`Recycler::candidates`] looks at every connection's [`ConnHealth`] at most once per
//! `check_interval` (seed `HEALTH_CHECK_INTERVAL`, 60 s) and proposes, most urgent first:
//! - [`RecycleReason::Unhealthy`]: the connection is suspected frozen (`watchdog.rs`: the
//!   freeze probe saw data it did not deliver, or it is silent far beyond its own recent
//!   rate). The event loop also asks for that recycle at once ([`Recycler::request`]), so
//!   the make-before-break replacement comes long before the data-silence backstop's
//!   reconnect, which would be a gap. A single stalled asset does not make its connection unhealthy: it is
//!   resubscribed on its own (`event_loop` watchdogs), since an asset the venue never serves
//!   would otherwise get its connection recycled again and again;
//! - [`RecycleReason::Pollution`]: `pollution_ratio ≥ 0.30` (expired / total) and the
//!   connection is at least 5 minutes old (seed `POLLUTION_THRESHOLD`, minimum age);
//! - [`RecycleReason::Age`]: the connection is at least 24 h old (seed `AGE_THRESHOLD`).
//!
//! Forced recycles ([`Recycler::force`], seed `force_recycle`) are taken first, at the next
//! call, whatever the interval. At most `max_concurrent` recycles (seed
//! `MAX_CONCURRENT_RECYCLES`, 2) run at once; a connection that is being recycled, or is itself
//! a replacement, is never proposed. Only open connections are proposed automatically (a
//! dropped connection belongs to the reconnect logic); a forced one is taken open or not.
//!
//! A connection with **no active assets** has nothing to migrate, so it is never recycled:
//! when it is polluted (all its assets expired) it is proposed as [`Candidate::Close`] instead
//! (close it, no replacement). Closes take no recycle slot. Empty connections that are not
//! polluted are left alone: the pool may still fill them.
//!
//! [`Recycler::repack_candidates`] proposes folding several under-used connections into one
//! ([`RecycleReason::Repack`]): when at least two eligible connections each carry fewer than
//! half of `target_per_conn` active assets, the smallest ones, as many as fit in one
//! connection, are recycled into a single replacement. Each repack closes at least one
//! connection, so repeated repacks converge.
//!
//! # Migration protocol (make-before-break, `docs/ARCHITECTURE.md` "Recycling")
//!
//! The seeds waited a fixed `STABILIZATION_DELAY` (3 s) and then swapped every asset at once,
//! which applies the new connection's deltas against a book built from the old one. Here each
//! asset moves on its own, at the moment the replacement delivers that asset's `book`
//! snapshot: the book is rebuilt from that snapshot, the old connection's later messages for
//! the asset are ignored, so there is no gap and nothing is applied twice.
//!
//! 1. **Pick.** Call [`Recycler::candidates`] (and, after beginning those,
//!    [`Recycler::repack_candidates`]) when [`Recycler::next_deadline`] passes or every loop
//!    turn; both are cheap when nothing is due. Close every [`Candidate::Close`].
//! 2. **Begin.** For a [`Candidate::Recycle`], reserve a connection id (pool
//!    `reserve_connection(true)`), mark the old connection draining, open the new connection
//!    subscribing every active asset of the old one(s), and call [`Recycler::begin`] with each
//!    old connection and its active assets. Ownership does not change yet: the old connection
//!    keeps delivering and stays the registry owner of every asset.
//! 3. **Move.** For each record that is an `Event::BookBegin` arriving on a connection for
//!    which [`Recycler::is_replacement`] holds (an O(1) check), and *before* the owner check,
//!    call [`Recycler::on_snapshot`]. A returned [`Move`] means: re-point the registry owner of
//!    `asset` to `to` now (`Registry::reassign_connection`); the snapshot and everything after
//!    it on `to` are applied, the old connection's messages for it are dropped as foreign.
//!    `None` (the common case) means: do nothing special.
//! 4. **Expire.** When an asset expires or is removed during a recycle, call
//!    [`Recycler::forget_asset`] so completion does not wait for it.
//! 5. **Finish.** Call [`Recycler::tick`] every loop turn (it costs O(active recycles), at most
//!    `max_concurrent`) and carry out each [`RecycleEvent`]:
//!    - [`RecycleEvent::Completed`]: every asset moved; close the old connections, clear the
//!      replacement's draining mark.
//!    - [`RecycleEvent::TimedOut`]: `migrate_deadline` passed with some snapshots missing;
//!      move each straggler to the replacement anyway (it is subscribed there), mark it
//!      untrusted and resync it there, then close the old connections. Each straggler is
//!      counted in `data_gaps`.
//!    - [`RecycleEvent::Failed`]: nothing ever arrived on the replacement
//!      ([`FailReason::NoSnapshot`]) or it was lost ([`Recycler::on_new_lost`],
//!      [`FailReason::ReplacementLost`]); close the replacement, clear the old connections'
//!      draining mark, and apply each `returned` [`Move`] (assets that had already moved go
//!      back to their old connection) and resync those assets; each is a data gap.
//!
//! An old connection that drops during a recycle needs nothing from the recycler: its assets
//! keep moving as the replacement's snapshots arrive, and the deadline still applies.
//!
//! `enabled = false` turns the automatic triggers and repacking off; explicit
//! [`Recycler::force`] requests (an operator's) are still honoured.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::market::AssetId;
use crate::registry::ConnId;

/// Recycling policy. Defaults are the seeds' values (`ConnectionRecycler` constants).
#[derive(Clone, Debug, PartialEq)]
pub struct RecyclerConfig {
    /// Automatic triggers and repacking on (seed `enable_recycling`, default true).
    pub enabled: bool,
    /// Recycle when `expired / total ≥` this (seed `POLLUTION_THRESHOLD`, 0.30).
    pub pollution_threshold: f64,
    /// … but only connections at least this old (seed: 5 minutes).
    pub pollution_min_age: Duration,
    /// Recycle connections at least this old (seed `AGE_THRESHOLD`, 24 h).
    pub max_age: Duration,
    /// Recycles in progress at most (seed `MAX_CONCURRENT_RECYCLES`, 2).
    pub max_concurrent: usize,
    /// A recycle with snapshots still missing this long after it began times out (30 s; the
    /// venue sends a `book` within a second of a subscription, so 30 s means it will not come).
    pub migrate_deadline: Duration,
    /// Evaluate the automatic triggers at most this often (seed `HEALTH_CHECK_INTERVAL`, 60 s).
    pub check_interval: Duration,
}

impl Default for RecyclerConfig {
    fn default() -> RecyclerConfig {
        RecyclerConfig {
            enabled: true,
            pollution_threshold: 0.30,
            pollution_min_age: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(24 * 60 * 60),
            max_concurrent: 2,
            migrate_deadline: Duration::from_secs(30),
            check_interval: Duration::from_secs(60),
        }
    }
}

/// What the event loop knows about one connection, for trigger evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnHealth {
    /// The connection.
    pub conn: ConnId,
    /// Time since it was created.
    pub age: Duration,
    /// Expired / total assets (registry `connection_stats`).
    pub pollution_ratio: f64,
    /// Subscribed (not expired) assets on it.
    pub active_assets: usize,
    /// Suspected frozen (probe evidence or rate-aware silence, `event_loop/freeze.rs`).
    pub silent: bool,
    /// Connected (handshake done, not closed or reconnecting).
    pub open: bool,
}

/// Why a connection is recycled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecycleReason {
    /// Too many of its assets expired.
    Pollution,
    /// Too old.
    Age,
    /// Silent, or some of its assets stalled.
    Unhealthy,
    /// Asked for ([`Recycler::force`]).
    Forced,
    /// Several under-used connections folded into one.
    Repack,
}

impl RecycleReason {
    /// snake_case name for stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RecycleReason::Pollution => "pollution",
            RecycleReason::Age => "age",
            RecycleReason::Unhealthy => "unhealthy",
            RecycleReason::Forced => "forced",
            RecycleReason::Repack => "repack",
        }
    }

    /// Order among automatic candidates: data at risk first.
    fn rank(self) -> u8 {
        match self {
            RecycleReason::Forced => 0,
            RecycleReason::Unhealthy => 1,
            RecycleReason::Pollution => 2,
            RecycleReason::Age => 3,
            RecycleReason::Repack => 4,
        }
    }
}

/// A proposal from [`Recycler::candidates`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// Open a replacement for `conn` and call [`Recycler::begin`].
    Recycle {
        /// The connection to replace.
        conn: ConnId,
        /// Why.
        reason: RecycleReason,
    },
    /// `conn` has no active assets left and is polluted: close it (no replacement; its
    /// expired subscriptions go with it).
    Close {
        /// The connection to close.
        conn: ConnId,
    },
}

impl Candidate {
    /// The connection concerned.
    pub fn conn(self) -> ConnId {
        match self {
            Candidate::Recycle { conn, .. } | Candidate::Close { conn } => conn,
        }
    }
}

/// Identifies one recycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct RecycleId(pub u64);

/// An asset's ownership moving between connections: re-point the registry owner of `asset`
/// to `to` (`Registry::reassign_connection(asset, Some(to))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The asset.
    pub asset: AssetId,
    /// Its owner until now.
    pub from: ConnId,
    /// Its owner from now on.
    pub to: ConnId,
}

/// Why a recycle failed. Either way the assets stay on (or go back to) the old connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// The replacement connection died before every asset moved ([`Recycler::on_new_lost`]).
    ReplacementLost,
    /// The deadline passed without a single snapshot on the replacement: it is not trusted
    /// with the stragglers.
    NoSnapshot,
}

/// The outcome of a recycle, from [`Recycler::tick`] or [`Recycler::on_new_lost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecycleEvent {
    /// Every asset moved: close the old connections.
    Completed {
        /// The recycle.
        id: RecycleId,
        /// Connections replaced: close them.
        olds: Vec<ConnId>,
        /// The replacement, now an ordinary connection.
        new: ConnId,
        /// Assets moved by their snapshot.
        migrated: usize,
        /// From [`Recycler::begin`] to the last asset's move (or to the tick that saw the
        /// last asset forgotten).
        duration: Duration,
    },
    /// The deadline passed with snapshots missing: move the stragglers to `new` anyway,
    /// resync them there, close the old connections.
    TimedOut {
        /// The recycle.
        id: RecycleId,
        /// Connections replaced: close them.
        olds: Vec<ConnId>,
        /// The replacement, now an ordinary connection.
        new: ConnId,
        /// Assets moved by their snapshot.
        migrated: usize,
        /// Assets whose snapshot never came on `new`, ascending.
        stragglers: Vec<AssetId>,
    },
    /// The recycle was abandoned: close `new`; apply `returned` and resync those assets.
    Failed {
        /// The recycle.
        id: RecycleId,
        /// Connections that stay (clear their draining mark).
        olds: Vec<ConnId>,
        /// The replacement: close it.
        new: ConnId,
        /// Why.
        reason: FailReason,
        /// Assets that had already moved to `new`, moving back to their old connection.
        returned: Vec<Move>,
    },
}

/// Why [`Recycler::begin`] refused a recycle. In every case nothing changed: close the
/// replacement connection that was opened for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecycleError {
    /// `max_concurrent` recycles already run; wait for one to finish.
    #[error("too many recycles in progress: max_concurrent={0}")]
    AtCapacity(usize),
    /// The connection is already an old or new connection of a recycle in progress.
    #[error("connection already part of a recycle: conn={0}")]
    Busy(ConnId),
    /// The replacement is also listed as an old connection.
    #[error("replacement is one of the replaced connections: conn={0}")]
    SelfReplacement(ConnId),
    /// No old connection was given.
    #[error("recycle without an old connection: new={0}")]
    NoOldConnection(ConnId),
}

/// Recycles begun, per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReasonCounts {
    /// [`RecycleReason::Pollution`].
    pub pollution: u64,
    /// [`RecycleReason::Age`].
    pub age: u64,
    /// [`RecycleReason::Unhealthy`].
    pub unhealthy: u64,
    /// [`RecycleReason::Forced`].
    pub forced: u64,
    /// [`RecycleReason::Repack`].
    pub repack: u64,
}

impl ReasonCounts {
    fn bump(&mut self, reason: RecycleReason) {
        let slot = match reason {
            RecycleReason::Pollution => &mut self.pollution,
            RecycleReason::Age => &mut self.age,
            RecycleReason::Unhealthy => &mut self.unhealthy,
            RecycleReason::Forced => &mut self.forced,
            RecycleReason::Repack => &mut self.repack,
        };
        *slot += 1;
    }
}

/// Recycler statistics for `/stats` (the seeds' `RecycleStats` plus gap accounting).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RecyclerStats {
    /// Automatic triggers on.
    pub enabled: bool,
    /// Recycles begun.
    pub recycles_initiated: u64,
    /// Recycles that replaced their connections (including timed-out ones).
    pub recycles_completed: u64,
    /// Of the completed, those that hit the deadline with stragglers.
    pub recycles_timed_out: u64,
    /// Recycles abandoned (assets stayed on the old connections).
    pub recycles_failed: u64,
    /// `completed / (completed + failed)`, 1.0 when none finished.
    pub success_rate: f64,
    /// Assets moved by their snapshot in completed recycles.
    pub markets_migrated: u64,
    /// Old connections being recycled now, ascending (the seeds' `get_active_recycles()`).
    pub active_recycles: Vec<ConnId>,
    /// Assets that may have missed data because of recycling: stragglers of timed-out
    /// recycles plus assets returned by failed ones. The target is 0.
    pub data_gaps: u64,
    /// Duration of the last completed recycle, ms (`None` before the first).
    pub last_recycle_duration_ms: Option<u64>,
    /// Recycles begun, per reason.
    pub by_reason: ReasonCounts,
}

#[derive(Debug)]
struct Recycle {
    olds: Vec<ConnId>,
    new: ConnId,
    started: Instant,
    /// Assets not moved yet → their old connection.
    pending: FxHashMap<AssetId, ConnId>,
    /// Assets moved so far (kept to send them back if the recycle fails).
    moved: Vec<Move>,
    /// When the last pending asset moved.
    emptied_at: Option<Instant>,
}

/// The recycler; see the module doc for the protocol.
#[derive(Debug)]
pub struct Recycler {
    config: RecyclerConfig,
    next_id: u64,
    active: BTreeMap<RecycleId, Recycle>,
    /// Asset being migrated → its recycle (the hot-path lookup).
    migrating: FxHashMap<AssetId, RecycleId>,
    /// Replacement connection → its recycle.
    replacements: FxHashMap<ConnId, RecycleId>,
    /// Old connection → its recycle.
    olds: FxHashMap<ConnId, RecycleId>,
    forced: VecDeque<(ConnId, RecycleReason)>,
    last_check: Option<Instant>,
    stats: RecyclerStats,
}

impl Recycler {
    /// A recycler with nothing in progress.
    pub fn new(config: RecyclerConfig) -> Recycler {
        let stats = RecyclerStats {
            enabled: config.enabled,
            ..RecyclerStats::default()
        };
        Recycler {
            config,
            next_id: 0,
            active: BTreeMap::new(),
            migrating: FxHashMap::default(),
            replacements: FxHashMap::default(),
            olds: FxHashMap::default(),
            forced: VecDeque::new(),
            last_check: None,
            stats,
        }
    }

    /// The policy.
    pub fn config(&self) -> &RecyclerConfig {
        &self.config
    }

    /// True when `conn` is the replacement of a recycle in progress (O(1); gate
    /// [`Recycler::on_snapshot`] with it).
    #[inline]
    pub fn is_replacement(&self, conn: ConnId) -> bool {
        self.replacements.contains_key(&conn)
    }

    /// True when `conn` is being replaced by a recycle in progress.
    pub fn is_recycling(&self, conn: ConnId) -> bool {
        self.olds.contains_key(&conn)
    }

    /// Recycles in progress.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    fn busy(&self, conn: ConnId) -> bool {
        self.is_recycling(conn) || self.is_replacement(conn)
    }

    fn check_due(&self, now: Instant) -> bool {
        self.last_check
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.check_interval)
    }

    /// When the loop should call [`Recycler::candidates`] / [`Recycler::tick`] next at the
    /// latest (`now` when something is due already): the next trigger check (when enabled or
    /// a force is queued) or the earliest migration deadline. `None` when nothing is scheduled.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let check = if !self.forced.is_empty() {
            Some(now)
        } else if self.config.enabled {
            Some(
                self.last_check
                    .map_or(now, |t| t + self.config.check_interval),
            )
        } else {
            None
        };
        let migrate = self
            .active
            .values()
            .map(|r| {
                if r.pending.is_empty() {
                    now
                } else {
                    r.started + self.config.migrate_deadline
                }
            })
            .min();
        match (check, migrate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues a forced recycle of `conn` (seed `force_recycle`), taken first at the next
    /// [`Recycler::candidates`] call once a slot is free. Ignored when already queued; dropped
    /// at that call when `conn` is unknown, already being recycled, or a replacement.
    pub fn force(&mut self, conn: ConnId) {
        self.request(conn, RecycleReason::Forced);
    }

    /// Like [`force`](Self::force), counted under `reason`: the event loop asks for an
    /// [`RecycleReason::Unhealthy`] recycle at once when it suspects a connection is frozen
    /// (`watchdog::FreezeDetector`), without waiting for the next check.
    pub fn request(&mut self, conn: ConnId, reason: RecycleReason) {
        if !self.forced.iter().any(|(c, _)| *c == conn) {
            self.forced.push_back((conn, reason));
        }
    }

    /// Which connections to recycle or close now, most urgent first; see the module doc.
    /// `conns` must list every connection of the pool. Recycle proposals never exceed the
    /// free slots (`max_concurrent` minus recycles in progress); nothing is reserved until
    /// [`Recycler::begin`].
    pub fn candidates(&mut self, now: Instant, conns: &[ConnHealth]) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut free = self.config.max_concurrent.saturating_sub(self.active.len());

        // Forced first, in request order; those without a slot stay queued.
        let mut keep = VecDeque::new();
        while let Some((conn, reason)) = self.forced.pop_front() {
            let known = conns.iter().any(|h| h.conn == conn);
            let taken = out.iter().any(|c: &Candidate| c.conn() == conn);
            if !known || taken || self.busy(conn) {
                continue;
            }
            if free == 0 {
                keep.push_back((conn, reason));
                continue;
            }
            free -= 1;
            out.push(Candidate::Recycle { conn, reason });
        }
        self.forced = keep;

        if !self.config.enabled || !self.check_due(now) {
            return out;
        }
        self.last_check = Some(now);

        // (reason, urgency, conn): urgency sorts descending within a reason.
        let mut auto: Vec<(RecycleReason, f64, ConnId)> = Vec::new();
        for h in conns {
            if !h.open || self.busy(h.conn) || out.iter().any(|c| c.conn() == h.conn) {
                continue;
            }
            let polluted = h.pollution_ratio >= self.config.pollution_threshold
                && h.age >= self.config.pollution_min_age;
            if h.active_assets == 0 {
                if polluted {
                    out.push(Candidate::Close { conn: h.conn });
                }
                continue;
            }
            let (reason, urgency) = if h.silent {
                (RecycleReason::Unhealthy, f64::INFINITY)
            } else if polluted {
                (RecycleReason::Pollution, h.pollution_ratio)
            } else if h.age >= self.config.max_age {
                (RecycleReason::Age, h.age.as_secs_f64())
            } else {
                continue;
            };
            auto.push((reason, urgency, h.conn));
        }
        auto.sort_by(|a, b| {
            a.0.rank()
                .cmp(&b.0.rank())
                .then(b.1.total_cmp(&a.1))
                .then(a.2.cmp(&b.2))
        });
        out.extend(
            auto.into_iter()
                .take(free)
                .map(|(reason, _, conn)| Candidate::Recycle { conn, reason }),
        );
        out
    }

    /// Proposes folding under-used connections into one replacement
    /// ([`RecycleReason::Repack`]), smallest first, as many as fit in `target_per_conn`.
    /// Eligible: open, not part of a recycle, at least `pollution_min_age` old (the pool may
    /// still be filling younger ones), healthy, with `0 < active_assets < target_per_conn / 2`.
    /// `None` unless at least two qualify and fit together, recycling is enabled and a slot is
    /// free. Call it after beginning the recycles [`Recycler::candidates`] proposed.
    pub fn repack_candidates(
        &self,
        conns: &[ConnHealth],
        target_per_conn: usize,
    ) -> Option<Vec<ConnId>> {
        if !self.config.enabled || self.active.len() >= self.config.max_concurrent {
            return None;
        }
        let mut small: Vec<&ConnHealth> = conns
            .iter()
            .filter(|h| {
                h.open
                    && !self.busy(h.conn)
                    && !h.silent
                    && h.age >= self.config.pollution_min_age
                    && h.active_assets > 0
                    && h.active_assets * 2 < target_per_conn
            })
            .collect();
        small.sort_by_key(|h| (h.active_assets, h.conn));
        let mut total = 0;
        let mut fold = Vec::new();
        for h in small {
            if total + h.active_assets > target_per_conn {
                break;
            }
            total += h.active_assets;
            fold.push(h.conn);
        }
        (fold.len() >= 2).then_some(fold)
    }

    /// Starts a recycle: the caller opened `new` and subscribes on it every asset listed in
    /// `olds` (each old connection with its active assets). Ownership does not change until
    /// each asset's snapshot arrives on `new` ([`Recycler::on_snapshot`]). An asset already
    /// migrating in another recycle is left to that one.
    ///
    /// # Errors
    /// [`RecycleError`] when the recycle would break an invariant; nothing changes then.
    pub fn begin(
        &mut self,
        olds: Vec<(ConnId, Vec<AssetId>)>,
        new: ConnId,
        reason: RecycleReason,
        now: Instant,
    ) -> Result<RecycleId, RecycleError> {
        if olds.is_empty() {
            return Err(RecycleError::NoOldConnection(new));
        }
        if self.active.len() >= self.config.max_concurrent {
            return Err(RecycleError::AtCapacity(self.config.max_concurrent));
        }
        if self.busy(new) {
            return Err(RecycleError::Busy(new));
        }
        let mut old_ids: Vec<ConnId> = Vec::with_capacity(olds.len());
        for (old, _) in &olds {
            if *old == new {
                return Err(RecycleError::SelfReplacement(new));
            }
            if self.busy(*old) {
                return Err(RecycleError::Busy(*old));
            }
            if !old_ids.contains(old) {
                old_ids.push(*old);
            }
        }
        let id = RecycleId(self.next_id);
        self.next_id += 1;
        let mut pending = FxHashMap::default();
        for (old, assets) in olds {
            for asset in assets {
                if let std::collections::hash_map::Entry::Vacant(e) = self.migrating.entry(asset) {
                    e.insert(id);
                    pending.insert(asset, old);
                }
            }
        }
        for old in &old_ids {
            self.olds.insert(*old, id);
        }
        self.replacements.insert(new, id);
        self.active.insert(
            id,
            Recycle {
                olds: old_ids,
                new,
                started: now,
                pending,
                moved: Vec::new(),
                emptied_at: None,
            },
        );
        self.stats.recycles_initiated += 1;
        self.stats.by_reason.bump(reason);
        Ok(id)
    }

    /// A `book` snapshot for `asset` arrived on `conn`. Returns the [`Move`] to carry out now
    /// when `conn` is the replacement `asset` is migrating to; `None` otherwise (one hash
    /// lookup when the asset is not migrating).
    #[inline]
    pub fn on_snapshot(&mut self, conn: ConnId, asset: AssetId, now: Instant) -> Option<Move> {
        let id = *self.migrating.get(&asset)?;
        let recycle = self.active.get_mut(&id)?;
        if recycle.new != conn {
            // A snapshot on the old connection (a resync there): ownership stays.
            return None;
        }
        let from = recycle.pending.remove(&asset)?;
        self.migrating.remove(&asset);
        let m = Move {
            asset,
            from,
            to: conn,
        };
        recycle.moved.push(m);
        if recycle.pending.is_empty() {
            recycle.emptied_at = Some(now);
        }
        Some(m)
    }

    /// The asset expired or was removed: stop waiting for it. Returns whether it was
    /// migrating.
    pub fn forget_asset(&mut self, asset: AssetId) -> bool {
        let Some(id) = self.migrating.remove(&asset) else {
            return false;
        };
        if let Some(r) = self.active.get_mut(&id) {
            r.pending.remove(&asset);
        }
        true
    }

    /// The replacement connection `new` died (or was closed) before its recycle finished:
    /// returns [`RecycleEvent::Failed`] with the assets to send back; `None` when `new` is not
    /// a replacement.
    pub fn on_new_lost(&mut self, new: ConnId) -> Option<RecycleEvent> {
        let id = *self.replacements.get(&new)?;
        let r = self.remove(id)?;
        Some(self.fail(id, r, FailReason::ReplacementLost))
    }

    fn remove(&mut self, id: RecycleId) -> Option<Recycle> {
        let r = self.active.remove(&id)?;
        for asset in r.pending.keys() {
            self.migrating.remove(asset);
        }
        for old in &r.olds {
            self.olds.remove(old);
        }
        self.replacements.remove(&r.new);
        Some(r)
    }

    fn fail(&mut self, id: RecycleId, r: Recycle, reason: FailReason) -> RecycleEvent {
        let returned: Vec<Move> = r
            .moved
            .into_iter()
            .map(|m| Move {
                asset: m.asset,
                from: m.to,
                to: m.from,
            })
            .collect();
        self.stats.recycles_failed += 1;
        self.stats.data_gaps += returned.len() as u64;
        RecycleEvent::Failed {
            id,
            olds: r.olds,
            new: r.new,
            reason,
            returned,
        }
    }

    /// Finishes recycles whose assets all moved ([`RecycleEvent::Completed`]) or whose
    /// deadline passed ([`RecycleEvent::TimedOut`], or [`RecycleEvent::Failed`] with
    /// [`FailReason::NoSnapshot`] when nothing moved at all). Call every loop turn.
    pub fn tick(&mut self, now: Instant) -> Vec<RecycleEvent> {
        let mut events = Vec::new();
        let deadline = self.config.migrate_deadline;
        let due: Vec<RecycleId> = self
            .active
            .iter()
            .filter(|(_, r)| {
                r.pending.is_empty() || now.saturating_duration_since(r.started) >= deadline
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(r) = self.remove(id) else {
                continue;
            };
            if !r.pending.is_empty() && r.moved.is_empty() {
                events.push(self.fail(id, r, FailReason::NoSnapshot));
                continue;
            }
            let migrated = r.moved.len();
            self.stats.recycles_completed += 1;
            self.stats.markets_migrated += migrated as u64;
            if r.pending.is_empty() {
                let duration = r
                    .emptied_at
                    .unwrap_or(now)
                    .saturating_duration_since(r.started);
                self.stats.last_recycle_duration_ms =
                    Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
                events.push(RecycleEvent::Completed {
                    id,
                    olds: r.olds,
                    new: r.new,
                    migrated,
                    duration,
                });
            } else {
                let mut stragglers: Vec<AssetId> = r.pending.keys().copied().collect();
                stragglers.sort_unstable();
                self.stats.recycles_timed_out += 1;
                self.stats.data_gaps += stragglers.len() as u64;
                self.stats.last_recycle_duration_ms =
                    Some(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX));
                events.push(RecycleEvent::TimedOut {
                    id,
                    olds: r.olds,
                    new: r.new,
                    migrated,
                    stragglers,
                });
            }
        }
        events
    }

    /// Statistics for `/stats`.
    pub fn stats(&self) -> RecyclerStats {
        let mut s = self.stats.clone();
        let finished = s.recycles_completed + s.recycles_failed;
        s.success_rate = if finished == 0 {
            1.0
        } else {
            s.recycles_completed as f64 / finished as f64
        };
        let mut active: Vec<ConnId> = self.olds.keys().copied().collect();
        active.sort_unstable();
        s.active_recycles = active;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn healthy(conn: ConnId) -> ConnHealth {
        ConnHealth {
            conn,
            age: 10 * MIN,
            pollution_ratio: 0.0,
            active_assets: 100,
            silent: false,
            open: true,
        }
    }

    fn polluted(conn: ConnId, ratio: f64) -> ConnHealth {
        ConnHealth {
            pollution_ratio: ratio,
            ..healthy(conn)
        }
    }

    fn assets(ids: &[u32]) -> Vec<AssetId> {
        ids.iter().map(|i| AssetId(*i)).collect()
    }

    fn recycle(conn: ConnId, reason: RecycleReason) -> Candidate {
        Candidate::Recycle { conn, reason }
    }

    #[test]
    fn pollution_needs_threshold_and_min_age() {
        let now = Instant::now();
        let conns = [
            polluted(0, 0.30),
            polluted(1, 0.29),
            ConnHealth {
                age: 4 * MIN,
                ..polluted(2, 0.9)
            },
            polluted(3, 0.5),
        ];
        let mut r = Recycler::new(RecyclerConfig::default());
        // Most polluted first.
        assert_eq!(
            r.candidates(now, &conns),
            vec![
                recycle(3, RecycleReason::Pollution),
                recycle(0, RecycleReason::Pollution)
            ]
        );
    }

    #[test]
    fn age_trigger() {
        let now = Instant::now();
        let conns = [
            ConnHealth {
                age: Duration::from_secs(24 * 3600),
                ..healthy(0)
            },
            ConnHealth {
                age: Duration::from_secs(24 * 3600 - 1),
                ..healthy(1)
            },
        ];
        let mut r = Recycler::new(RecyclerConfig::default());
        assert_eq!(
            r.candidates(now, &conns),
            vec![recycle(0, RecycleReason::Age)]
        );
    }

    #[test]
    fn unhealthy_trigger_comes_first_at_any_age() {
        let now = Instant::now();
        let conns = [
            polluted(0, 0.9),
            ConnHealth {
                age: Duration::from_secs(1),
                ..healthy(1)
            },
            ConnHealth {
                silent: true,
                ..healthy(2)
            },
            healthy(3),
        ];
        let mut r = Recycler::new(RecyclerConfig {
            max_concurrent: 3,
            ..RecyclerConfig::default()
        });
        assert_eq!(
            r.candidates(now, &conns),
            vec![
                recycle(2, RecycleReason::Unhealthy),
                recycle(0, RecycleReason::Pollution),
            ]
        );
    }

    #[test]
    fn empty_polluted_connection_is_closed_not_recycled() {
        let now = Instant::now();
        let conns = [
            ConnHealth {
                active_assets: 0,
                ..polluted(0, 1.0)
            },
            ConnHealth {
                active_assets: 0,
                ..healthy(1)
            },
            polluted(2, 0.5),
            polluted(3, 0.5),
        ];
        let mut r = Recycler::new(RecyclerConfig::default());
        // The close takes no slot: both polluted connections still get one.
        assert_eq!(
            r.candidates(now, &conns),
            vec![
                Candidate::Close { conn: 0 },
                recycle(2, RecycleReason::Pollution),
                recycle(3, RecycleReason::Pollution),
            ]
        );
    }

    #[test]
    fn closed_connections_and_disabled_recycler_are_skipped() {
        let now = Instant::now();
        let down = ConnHealth {
            open: false,
            silent: true,
            ..polluted(0, 0.9)
        };
        let mut r = Recycler::new(RecyclerConfig::default());
        assert!(r.candidates(now, &[down]).is_empty());
        let mut off = Recycler::new(RecyclerConfig {
            enabled: false,
            ..RecyclerConfig::default()
        });
        assert!(off.candidates(now, &[polluted(1, 0.9)]).is_empty());
        assert_eq!(off.repack_candidates(&[], 200), None);
    }

    #[test]
    fn checks_once_per_interval() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        assert!(r.candidates(t0, &[healthy(0)]).is_empty());
        assert_eq!(r.next_deadline(t0), Some(t0 + 60 * Duration::from_secs(1)));
        let bad = [polluted(0, 0.9)];
        assert!(r.candidates(t0 + Duration::from_secs(59), &bad).is_empty());
        assert_eq!(
            r.candidates(t0 + MIN, &bad),
            vec![recycle(0, RecycleReason::Pollution)]
        );
    }

    #[test]
    fn never_more_than_max_concurrent() {
        let t0 = Instant::now();
        let conns = [polluted(0, 0.4), polluted(1, 0.5), polluted(2, 0.6)];
        let mut r = Recycler::new(RecyclerConfig::default());
        let c = r.candidates(t0, &conns);
        assert_eq!(
            c,
            vec![
                recycle(2, RecycleReason::Pollution),
                recycle(1, RecycleReason::Pollution)
            ]
        );
        r.begin(vec![(2, assets(&[1]))], 10, RecycleReason::Pollution, t0)
            .unwrap();
        r.begin(vec![(1, assets(&[2]))], 11, RecycleReason::Pollution, t0)
            .unwrap();
        assert_eq!(
            r.begin(vec![(0, assets(&[3]))], 12, RecycleReason::Pollution, t0),
            Err(RecycleError::AtCapacity(2))
        );
        assert_eq!(r.active_count(), 2);
        // Next check: slots full, nothing proposed; the busy ones are never proposed.
        let t1 = t0 + MIN;
        assert!(r.candidates(t1, &conns).is_empty());
        assert_eq!(r.repack_candidates(&conns, 200), None);
        assert_eq!(r.stats().active_recycles, vec![1, 2]);
    }

    #[test]
    fn recycling_and_replacement_connections_are_not_proposed() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig {
            max_concurrent: 5,
            ..RecyclerConfig::default()
        });
        r.begin(vec![(0, assets(&[1]))], 1, RecycleReason::Forced, t0)
            .unwrap();
        let conns = [polluted(0, 0.9), polluted(1, 0.9), polluted(2, 0.9)];
        assert_eq!(
            r.candidates(t0, &conns),
            vec![recycle(2, RecycleReason::Pollution)]
        );
        assert_eq!(
            r.begin(vec![(2, vec![])], 0, RecycleReason::Pollution, t0),
            Err(RecycleError::Busy(0))
        );
        assert_eq!(
            r.begin(vec![(1, vec![])], 3, RecycleReason::Pollution, t0),
            Err(RecycleError::Busy(1))
        );
        assert_eq!(
            r.begin(vec![(2, vec![])], 2, RecycleReason::Pollution, t0),
            Err(RecycleError::SelfReplacement(2))
        );
        assert_eq!(
            r.begin(vec![], 4, RecycleReason::Pollution, t0),
            Err(RecycleError::NoOldConnection(4))
        );
        assert_eq!(r.stats().recycles_initiated, 1);
    }

    #[test]
    fn force_is_taken_first_and_waits_for_a_slot() {
        let t0 = Instant::now();
        let conns = [healthy(0), healthy(1), polluted(2, 0.9), healthy(3)];
        let mut r = Recycler::new(RecyclerConfig::default());
        assert!(r.candidates(t0, &conns[..2]).is_empty());
        // Not due for a check, yet the force is taken at once.
        r.force(1);
        r.force(1);
        assert_eq!(r.next_deadline(t0), Some(t0));
        assert_eq!(
            r.candidates(t0 + Duration::from_secs(1), &conns),
            vec![recycle(1, RecycleReason::Forced)]
        );
        // Forced ahead of automatic candidates.
        r.force(0);
        assert_eq!(
            r.candidates(t0 + MIN, &conns),
            vec![
                recycle(0, RecycleReason::Forced),
                recycle(2, RecycleReason::Pollution)
            ]
        );
        r.begin(vec![(0, vec![])], 10, RecycleReason::Forced, t0 + MIN)
            .unwrap();
        r.begin(vec![(2, vec![])], 11, RecycleReason::Pollution, t0 + MIN)
            .unwrap();
        // No slot: the force stays queued until one frees.
        r.force(3);
        assert!(r.candidates(t0 + MIN, &conns).is_empty());
        assert_eq!(r.tick(t0 + MIN).len(), 2);
        assert_eq!(
            r.candidates(t0 + MIN, &conns),
            vec![recycle(3, RecycleReason::Forced)]
        );
        // Unknown and replacement connections are dropped.
        r.begin(vec![(3, assets(&[9]))], 12, RecycleReason::Forced, t0 + MIN)
            .unwrap();
        r.force(12);
        r.force(99);
        let mut all = conns.to_vec();
        all.push(healthy(12));
        assert!(r.candidates(t0 + MIN, &all).is_empty());
        assert!(r.forced.is_empty());
        // Forces work while the automatic triggers are off.
        let mut off = Recycler::new(RecyclerConfig {
            enabled: false,
            ..RecyclerConfig::default()
        });
        off.force(0);
        assert_eq!(
            off.candidates(t0, &conns),
            vec![recycle(0, RecycleReason::Forced)]
        );
    }

    #[test]
    fn full_migration_completes() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        let id = r
            .begin(vec![(0, assets(&[1, 2, 3]))], 5, RecycleReason::Age, t0)
            .unwrap();
        assert!(r.is_replacement(5) && r.is_recycling(0));
        assert!(!r.is_replacement(0) && !r.is_recycling(5));
        let t = |s| t0 + Duration::from_millis(s);
        assert_eq!(
            r.on_snapshot(5, AssetId(2), t(100)),
            Some(Move {
                asset: AssetId(2),
                from: 0,
                to: 5
            })
        );
        // A second snapshot for a moved asset (a resync on the new connection) moves nothing.
        assert_eq!(r.on_snapshot(5, AssetId(2), t(150)), None);
        assert_eq!(
            r.on_snapshot(5, AssetId(1), t(200)).map(|m| m.from),
            Some(0)
        );
        assert!(r.tick(t(250)).is_empty(), "asset 3 still pending");
        assert!(r.on_snapshot(5, AssetId(3), t(300)).is_some());
        assert_eq!(
            r.tick(t(1000)),
            vec![RecycleEvent::Completed {
                id,
                olds: vec![0],
                new: 5,
                migrated: 3,
                duration: Duration::from_millis(300),
            }]
        );
        assert!(r.tick(t(2000)).is_empty());
        assert!(!r.is_replacement(5) && !r.is_recycling(0));
        let s = r.stats();
        assert_eq!(
            (
                s.recycles_initiated,
                s.recycles_completed,
                s.markets_migrated,
                s.data_gaps
            ),
            (1, 1, 3, 0)
        );
        assert_eq!(s.last_recycle_duration_ms, Some(300));
        assert_eq!(s.by_reason.age, 1);
        assert!(s.active_recycles.is_empty());
        assert_eq!(s.success_rate, 1.0);
    }

    #[test]
    fn repack_migration_moves_each_asset_from_its_own_old_connection() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        r.begin(
            vec![(0, assets(&[1, 2])), (3, assets(&[7]))],
            9,
            RecycleReason::Repack,
            t0,
        )
        .unwrap();
        assert!(r.is_recycling(0) && r.is_recycling(3));
        assert_eq!(r.on_snapshot(9, AssetId(7), t0).map(|m| m.from), Some(3));
        assert_eq!(r.on_snapshot(9, AssetId(1), t0).map(|m| m.from), Some(0));
        assert_eq!(r.on_snapshot(9, AssetId(2), t0).map(|m| m.from), Some(0));
        match r.tick(t0).as_slice() {
            [RecycleEvent::Completed { olds, migrated, .. }] => {
                assert_eq!((olds.as_slice(), *migrated), (&[0, 3][..], 3));
            }
            other => panic!("expected completion, got {other:?}"),
        }
        assert_eq!(r.stats().by_reason.repack, 1);
    }

    #[test]
    fn old_connection_messages_change_nothing() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        r.begin(vec![(0, assets(&[1, 2]))], 5, RecycleReason::Age, t0)
            .unwrap();
        // Snapshots on the old connection (or an unrelated one) do not move anything.
        assert!(!r.is_replacement(0));
        assert_eq!(r.on_snapshot(0, AssetId(1), t0), None);
        assert_eq!(r.on_snapshot(7, AssetId(1), t0), None);
        // Non-migrating assets on the replacement: nothing.
        assert_eq!(r.on_snapshot(5, AssetId(42), t0), None);
        assert!(r.tick(t0 + Duration::from_secs(1)).is_empty());
        // Asset 1 is still waiting for the replacement's snapshot.
        assert!(r.on_snapshot(5, AssetId(1), t0).is_some());
        assert!(r.on_snapshot(5, AssetId(2), t0).is_some());
        assert!(matches!(
            r.tick(t0 + Duration::from_secs(1)).as_slice(),
            [RecycleEvent::Completed { migrated: 2, .. }]
        ));
    }

    #[test]
    fn deadline_times_out_with_the_stragglers() {
        let t0 = Instant::now();
        // Automatic triggers off: the only deadline is the migration's.
        let mut r = Recycler::new(RecyclerConfig {
            enabled: false,
            ..RecyclerConfig::default()
        });
        let id = r
            .begin(
                vec![(0, assets(&[4, 1, 3, 2]))],
                5,
                RecycleReason::Pollution,
                t0,
            )
            .unwrap();
        assert!(r.on_snapshot(5, AssetId(3), t0).is_some());
        assert_eq!(r.next_deadline(t0), Some(t0 + Duration::from_secs(30)));
        assert!(r.tick(t0 + Duration::from_millis(29_999)).is_empty());
        assert_eq!(
            r.tick(t0 + Duration::from_secs(30)),
            vec![RecycleEvent::TimedOut {
                id,
                olds: vec![0],
                new: 5,
                migrated: 1,
                stragglers: assets(&[1, 2, 4]),
            }]
        );
        // The stragglers are no longer migrating.
        assert_eq!(r.on_snapshot(5, AssetId(1), t0), None);
        assert!(!r.is_replacement(5));
        let s = r.stats();
        assert_eq!(
            (s.recycles_completed, s.recycles_timed_out, s.data_gaps),
            (1, 1, 3)
        );
    }

    #[test]
    fn deadline_without_any_snapshot_fails() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        let id = r
            .begin(vec![(0, assets(&[1, 2]))], 5, RecycleReason::Age, t0)
            .unwrap();
        assert_eq!(
            r.tick(t0 + Duration::from_secs(30)),
            vec![RecycleEvent::Failed {
                id,
                olds: vec![0],
                new: 5,
                reason: FailReason::NoSnapshot,
                returned: vec![],
            }]
        );
        let s = r.stats();
        assert_eq!((s.recycles_failed, s.data_gaps), (1, 0));
        assert_eq!(s.success_rate, 0.0);
    }

    #[test]
    fn replacement_lost_fails_and_returns_moved_assets() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        let id = r
            .begin(
                vec![(0, assets(&[1, 2])), (3, assets(&[7]))],
                5,
                RecycleReason::Repack,
                t0,
            )
            .unwrap();
        assert!(r.on_snapshot(5, AssetId(7), t0).is_some());
        assert_eq!(
            r.on_new_lost(0),
            None,
            "an old connection is not a replacement"
        );
        assert_eq!(
            r.on_new_lost(5),
            Some(RecycleEvent::Failed {
                id,
                olds: vec![0, 3],
                new: 5,
                reason: FailReason::ReplacementLost,
                returned: vec![Move {
                    asset: AssetId(7),
                    from: 5,
                    to: 3
                }],
            })
        );
        assert_eq!(r.on_new_lost(5), None);
        assert_eq!(r.on_snapshot(5, AssetId(1), t0), None);
        assert!(r.tick(t0 + Duration::from_secs(60)).is_empty());
        assert!(!r.is_recycling(0) && !r.is_recycling(3));
        let s = r.stats();
        assert_eq!(
            (s.recycles_failed, s.data_gaps, s.markets_migrated),
            (1, 1, 0)
        );
        // The old connections can be recycled again.
        r.begin(vec![(0, vec![])], 6, RecycleReason::Forced, t0)
            .unwrap();
        r.tick(t0);
        let s = r.stats();
        assert_eq!(s.success_rate, 0.5);
    }

    #[test]
    fn forgotten_asset_does_not_hold_up_completion() {
        let t0 = Instant::now();
        let mut r = Recycler::new(RecyclerConfig::default());
        r.begin(vec![(0, assets(&[1, 2]))], 5, RecycleReason::Pollution, t0)
            .unwrap();
        assert!(r.on_snapshot(5, AssetId(1), t0).is_some());
        assert!(r.tick(t0 + Duration::from_secs(1)).is_empty());
        assert!(r.forget_asset(AssetId(2)));
        assert!(!r.forget_asset(AssetId(2)));
        assert!(!r.forget_asset(AssetId(1)), "already moved");
        assert_eq!(r.on_snapshot(5, AssetId(2), t0), None);
        assert!(matches!(
            r.tick(t0 + Duration::from_secs(2)).as_slice(),
            [RecycleEvent::Completed { migrated: 1, duration, .. }]
                if *duration == Duration::from_secs(2)
        ));
        assert_eq!(r.stats().data_gaps, 0);
    }

    #[test]
    fn repack_folds_the_smallest_connections() {
        let small = |conn, active| ConnHealth {
            active_assets: active,
            ..healthy(conn)
        };
        let r = Recycler::new(RecyclerConfig::default());
        let conns = [
            small(0, 60),
            small(1, 150),
            small(2, 10),
            small(3, 30),
            small(4, 99),
            ConnHealth {
                age: Duration::from_secs(10),
                ..small(5, 1)
            },
            ConnHealth {
                open: false,
                ..small(6, 1)
            },
            small(7, 0),
        ];
        // Below half of 200: 10, 30, 60, 99, smallest first; together 199 fit in one.
        assert_eq!(r.repack_candidates(&conns, 200), Some(vec![2, 3, 0, 4]));
        // With a target of 100 only 10 and 30 are under half; they fold together.
        assert_eq!(r.repack_candidates(&conns, 100), Some(vec![2, 3]));
        // One small connection alone is not worth a recycle.
        assert_eq!(r.repack_candidates(&conns[1..3], 200), None);
        // Two small ones that do not fit together either.
        assert_eq!(
            r.repack_candidates(&[small(0, 99), small(1, 99)], 150),
            None
        );
        // Connections in a recycle are left alone.
        let mut busy = Recycler::new(RecyclerConfig::default());
        busy.begin(vec![(2, vec![])], 8, RecycleReason::Forced, Instant::now())
            .unwrap();
        assert_eq!(busy.repack_candidates(&conns, 200), Some(vec![3, 0, 4]));
    }

    #[test]
    fn stats_serialize_with_the_seed_fields() {
        let r = Recycler::new(RecyclerConfig::default());
        let json = serde_json::to_value(r.stats()).unwrap();
        for key in [
            "recycles_initiated",
            "recycles_completed",
            "recycles_failed",
            "success_rate",
            "markets_migrated",
            "active_recycles",
            "data_gaps",
            "last_recycle_duration_ms",
            "by_reason",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["success_rate"], 1.0);
        assert_eq!(json["active_recycles"], serde_json::json!([]));
    }
}
