//! Silent freezes, acting half (runs on the event-loop thread): the probe connection, the
//! rate-aware silence check, and what happens to a connection suspected frozen. The rules are
//! pure and live in `watchdog.rs` ([`FreezeDetector`](crate::watchdog::FreezeDetector),
//! [`RateWindow`](crate::watchdog::RateWindow), [`improbable_silence`]).
//!
//! - **The probe** is one extra connection (id [`PROBE_ID`], outside the pool and the
//!   registry's ownership) subscribed to the busiest few assets of every connection (enough
//!   for about 5 flow messages a second of each, at least 10 and at most 25 per connection
//!   and 450 in all, by a decaying per-asset rate),
//!   chosen again every `probe_reselect`. Its frames are decoded for evidence only
//!   (`Core::on_probe_frame`): nothing it receives is applied, so the owner rule stands. A flow
//!   message it receives for an asset whose owner delivered nothing around that time is
//!   evidence against the owner; enough of it convicts the owner within seconds. The probe's
//!   own failures touch no book: it is dropped and reopened after [`PROBE_RETRY`].
//! - **Rate-aware silence**: a connection silent for `gap_factor ×` its own recent mean gap
//!   (at least `min_gap`) is suspected too, so connections the probe cannot see into are
//!   covered, and quiet connections (a message every few minutes) are never suspected early.
//! - **A suspect** has every book it owns marked `stale` at once (a `MarkStale` item in order
//!   with its records: untrusted until a snapshot), the suspicion counted by evidence, and an
//!   `unhealthy` recycle requested at once: the replacement subscribes, each asset moves at its
//!   snapshot (make-before-break), and the old connection closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::run::{EventLoop, token_of};
use crate::connection::{Connection, Progress, Status};
use crate::market::AssetId;
use crate::recycler::RecycleReason;
use crate::registry::ConnId;
use crate::venue::subscribe::{self, Operation};
use crate::watchdog::{Suspicion, improbable_silence, is_frozen};

/// The probe connection's id (and, through [`token_of`], its poll token). Never a pool id.
pub(super) const PROBE_ID: ConnId = ConnId::MAX - 1;

/// Most assets the probe follows (the venue serves at most 500 per connection).
const PROBE_MAX_ASSETS: usize = 450;

/// Delay before a failed probe connection is opened again.
const PROBE_RETRY: Duration = Duration::from_secs(5);

/// Before any asset has traffic, the probe looks again this soon.
const PROBE_FIRST_LOOK: Duration = Duration::from_secs(5);

/// The probe connection.
pub(super) struct ProbeSlot {
    pub(super) conn: Connection,
    /// Assets followed (sorted).
    pub(super) assets: Vec<AssetId>,
    pub(super) open: bool,
    next_select: Instant,
    retry_at: Option<Instant>,
}

impl EventLoop {
    /// Every tick: rate windows, convictions, rate-aware suspicion, the probe's upkeep.
    pub(super) fn freeze_tick(&mut self, now: Instant) {
        for slot in self.conns.values_mut() {
            slot.rate.observe(now, slot.flow);
        }
        let cfg = self.config.freeze;
        if cfg.probe {
            let conns = &self.conns;
            let convicted = self.freeze.convicted(&cfg, now, |c| {
                conns.get(&c).and_then(|s| s.conn.stats().last_message_at)
            });
            for conn in convicted {
                self.suspect(conn, Suspicion::Probe, now);
            }
        }
        let rate_suspects: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, s)| {
                s.conn.status() == Status::Connected
                    && !s.assets.is_empty()
                    && !self.suspected.contains_key(*id)
            })
            .filter(|(_, s)| {
                let st = s.conn.stats();
                improbable_silence(s.rate.mean_gap(), cfg.gap_factor, cfg.min_gap).is_some_and(
                    |limit| is_frozen(now, st.last_message_at, st.connected_since, limit),
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in rate_suspects {
            self.suspect(conn, Suspicion::Rate, now);
        }
        if cfg.probe {
            self.probe_upkeep(now);
        }
    }

    /// `conn` is suspected frozen: its books are marked stale and it is recycled.
    pub(super) fn suspect(&mut self, conn: ConnId, why: Suspicion, now: Instant) {
        let Some(slot) = self.conns.get(&conn) else {
            return;
        };
        if slot.conn.status() != Status::Connected || self.suspected.contains_key(&conn) {
            return;
        }
        self.suspected.insert(conn, now);
        self.freeze.forget(conn);
        *self
            .core
            .stats
            .freeze_suspected
            .entry(why.as_str().to_string())
            .or_default() += 1;
        let mut marked = 0usize;
        for a in &slot.assets {
            if self.core.registry.owner(*a) == Some(conn) && self.core.router.mark_stale(*a).is_ok()
            {
                marked += 1;
            }
        }
        log::warn!(
            "Connection suspected frozen: conn={conn} evidence={} books_marked_stale={marked}; \
             recycling it make-before-break",
            why.as_str()
        );
        // A replacement or a connection already being recycled is healed by its recycle.
        self.core.recycler.request(conn, RecycleReason::Unhealthy);
    }

    /// `conn` is gone (lost or closed): it is no longer suspected, and the probe chooses
    /// its assets again soon (ownership moved).
    pub(super) fn forget_suspect(&mut self, conn: ConnId) {
        self.suspected.remove(&conn);
        self.freeze.forget(conn);
        self.probe_soon(Instant::now());
    }

    /// The connections changed (one opened, closed or took over assets): the probe looks
    /// again within [`PROBE_FIRST_LOOK`] instead of at its next regular choice.
    pub(super) fn probe_soon(&mut self, now: Instant) {
        if let Some(probe) = self.probe.as_mut() {
            probe.next_select = probe.next_select.min(now + PROBE_FIRST_LOOK);
        }
    }

    /// Reads everything the probe has; its flow messages become evidence.
    pub(super) fn drive_probe(&mut self, now: Instant) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        let core = &mut self.core;
        let result = probe
            .conn
            .on_ready(self.poll.registry(), now, &mut |text: &str| {
                core.on_probe_frame(text, 0);
            });
        match result {
            Ok(Progress::Connected { .. }) => {
                probe.open = true;
                log::info!("Probe connected: assets={}", probe.assets.len());
                let assets = probe.assets.clone();
                self.probe_send(Operation::Subscribe, &assets, true, now);
            }
            Ok(_) => {}
            Err(crate::connection::ConnectionError::InvalidState { .. }) => {}
            Err(e) => self.probe_lost(&e.to_string(), now),
        }
        let cfg = self.config.freeze;
        let mut hits = std::mem::take(&mut self.core.probe_hits);
        for owner in hits.drain(..) {
            let last = self
                .conns
                .get(&owner)
                .filter(|s| s.conn.status() == Status::Connected)
                .map(|s| s.conn.stats().last_message_at);
            if let Some(last) = last {
                self.freeze.on_probe(&cfg, owner, now, last);
            }
        }
        self.core.probe_hits = hits;
    }

    /// Chooses the probe's assets when due, and keeps its connection open.
    fn probe_upkeep(&mut self, now: Instant) {
        let due = self.probe.as_ref().is_none_or(|p| now >= p.next_select);
        if due {
            let chosen = self.probe_choose(now);
            let next = now
                + if chosen.is_empty() {
                    PROBE_FIRST_LOOK
                } else {
                    self.config.freeze.probe_reselect
                };
            let probe = self.probe.get_or_insert_with(|| ProbeSlot {
                conn: Connection::new(
                    PROBE_ID,
                    Arc::clone(&self.endpoint),
                    self.config.connection.clone(),
                ),
                assets: Vec::new(),
                open: false,
                next_select: next,
                retry_at: None,
            });
            probe.next_select = next;
            if chosen != probe.assets {
                let old = std::mem::replace(&mut probe.assets, chosen);
                if probe.open {
                    let gone: Vec<AssetId> = old
                        .iter()
                        .filter(|a| probe.assets.binary_search(a).is_err())
                        .copied()
                        .collect();
                    let new: Vec<AssetId> = probe
                        .assets
                        .iter()
                        .filter(|a| old.binary_search(a).is_err())
                        .copied()
                        .collect();
                    self.probe_send(Operation::Unsubscribe, &gone, false, now);
                    self.probe_send(Operation::Subscribe, &new, false, now);
                }
            }
        }
        let registry = self.poll.registry();
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        match probe.conn.status() {
            Status::Disconnected
                if !probe.assets.is_empty() && probe.retry_at.is_none_or(|t| now >= t) =>
            {
                probe.retry_at = Some(now + PROBE_RETRY);
                if let Err(e) = probe.conn.connect(registry, token_of(PROBE_ID), now) {
                    log::warn!("Probe connect failed to start: {e}");
                }
            }
            Status::Connecting | Status::Connected => {
                if let Err(e) = probe.conn.on_tick(registry, now) {
                    self.probe_lost(&e.to_string(), now);
                }
            }
            _ => {}
        }
    }

    /// For every open connection, its busiest assets by recent rate, until their rates add up
    /// to `probe_target_rate` and there are `probe_min_per_conn` of them, or to four times the
    /// target (at most `probe_max_per_conn`). The probe's traffic is then a
    /// small, bounded share of the total.
    ///
    /// An asset's rate is an average that halves at every choice before the new window's count
    /// is added ([`decayed_rate`]), not the count of the last window alone: a connection that
    /// froze just after a choice delivered nothing since, and choosing by that window would
    /// drop the probe's watch on exactly the connection that needs it. With the decay its
    /// assets keep (half) their rate and it keeps, or widens, its watchers.
    fn probe_choose(&mut self, now: Instant) -> Vec<AssetId> {
        let cfg = self.config.freeze;
        let secs = self
            .probe_counted_since
            .map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64())
            .max(1.0);
        let counts = &self.core.flow_counts;
        let rates = &mut self.probe_rates;
        rates.resize(counts.len(), 0.0);
        for (r, n) in rates.iter_mut().zip(counts) {
            *r = decayed_rate(*r, *n, secs);
        }
        let rates = &self.probe_rates;
        let mut picked: Vec<(f64, AssetId)> = Vec::new();
        for (id, slot) in &self.conns {
            // A replacement is included: the assets that moved to it are its own now.
            if slot.conn.status() != Status::Connected {
                continue;
            }
            let mut busiest: Vec<(f64, AssetId)> = slot
                .assets
                .iter()
                .filter(|a| self.core.registry.owner(**a) == Some(*id))
                .filter_map(|a| {
                    let r = rates.get(a.index()).copied().unwrap_or(0.0);
                    (r > 0.0).then_some((r, *a))
                })
                .collect();
            busiest.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)));
            let mut seen = 0.0;
            for (i, (r, a)) in busiest.into_iter().take(cfg.probe_max_per_conn).enumerate() {
                // Few assets suffice when they are busy (a high count is a good estimate);
                // a handful of quiet ones may have been lucky in their window.
                let enough = seen >= cfg.probe_target_rate
                    && (i >= cfg.probe_min_per_conn || seen >= 4.0 * cfg.probe_target_rate);
                if enough {
                    break;
                }
                seen += r;
                picked.push((r, a));
            }
        }
        picked.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)));
        picked.truncate(PROBE_MAX_ASSETS);
        let mut chosen: Vec<AssetId> = picked.into_iter().map(|(_, a)| a).collect();
        chosen.sort_unstable();
        self.core.flow_counts.fill(0);
        self.probe_counted_since = Some(now);
        chosen
    }

    /// Sends `op` for `assets` on the probe (the first frame `initial` after a connect).
    fn probe_send(&mut self, op: Operation, assets: &[AssetId], initial: bool, now: Instant) {
        let tokens: Vec<&str> = assets
            .iter()
            .filter_map(|a| self.core.registry.token(*a))
            .collect();
        let mut frames: Vec<String> = Vec::new();
        for (i, chunk) in subscribe::chunks(&tokens).enumerate() {
            frames.push(if initial && i == 0 {
                subscribe::initial(chunk.iter().copied(), false)
            } else {
                subscribe::operation(op, chunk.iter().copied())
            });
        }
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        for f in &frames {
            if let Err(e) = probe.conn.send_text(self.poll.registry(), f) {
                self.probe_lost(&e.to_string(), now);
                return;
            }
        }
    }

    /// `ids` expired: the probe stops following them at once (not at its next choice).
    pub(super) fn probe_forget(&mut self, ids: &[AssetId], now: Instant) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        let gone: Vec<AssetId> = ids
            .iter()
            .filter(|a| probe.assets.binary_search(a).is_ok())
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        probe.assets.retain(|a| gone.binary_search(a).is_err());
        if probe.open {
            self.probe_send(Operation::Unsubscribe, &gone, false, now);
        }
    }

    /// The probe failed: no book depends on it; it reopens after [`PROBE_RETRY`].
    fn probe_lost(&mut self, why: &str, now: Instant) {
        if let Some(probe) = self.probe.as_mut() {
            probe.conn.disconnect(self.poll.registry());
            probe.open = false;
            probe.retry_at = Some(now + PROBE_RETRY);
            log::warn!("Probe connection lost (reopens in 5 s): {why}");
        }
    }
}

/// An asset's flow rate (messages a second) after a counting window of `secs` seconds in
/// which it got `count` flow messages: the mean of the previous rate and the window's. A
/// silent window halves the rate instead of forgetting it.
fn decayed_rate(previous: f64, count: u32, secs: f64) -> f64 {
    let r = (previous + f64::from(count) / secs) / 2.0;
    if r < 1e-3 { 0.0 } else { r }
}

#[cfg(test)]
mod tests {
    use super::decayed_rate;

    #[test]
    fn a_silent_window_halves_the_rate() {
        let r = decayed_rate(0.0, 100, 10.0);
        assert!((r - 5.0).abs() < 1e-9);
        let r = decayed_rate(r, 0, 5.0);
        assert!(
            (r - 2.5).abs() < 1e-9,
            "a frozen owner's asset is still watched"
        );
        assert!(
            (decayed_rate(r, 50, 10.0) - 3.75).abs() < 1e-9,
            "the mean of 2.5 and 5"
        );
        assert_eq!(decayed_rate(1e-3, 0, 1.0), 0.0, "tiny rates end");
    }
}
