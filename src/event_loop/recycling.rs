//! Seed component 9 (connection recycler), acting half on the event-loop thread: ask the pure
//! [`Recycler`](crate::recycler::Recycler) for candidates, open replacements, finish or roll
//! back recycles. Make-before-break: each asset moves at its replacement snapshot
//! (`Core::try_move` in `frame.rs`).

use std::sync::Arc;
use std::time::Instant;

use super::config::ResyncCause;
use super::run::{ConnSlot, EventLoop, token_of};
use crate::connection::{Connection, Status};
use crate::market::AssetId;
use crate::recycler::{Candidate, ConnHealth, Move, RecycleEvent, RecycleReason};
use crate::registry::{AssetStatus, ConnId};

impl EventLoop {
    /// Recycling (seed component 9): pick connections to replace, open their replacements,
    /// and finish recycles whose assets all moved (see `recycler`).
    pub(super) fn recycle(&mut self, now: Instant) {
        if self
            .core
            .recycler
            .next_deadline(now)
            .is_some_and(|d| d <= now)
        {
            // Unhealthy = suspected frozen (`freeze.rs`: probe evidence or rate-aware
            // silence; those request their recycle at once, this is the periodic view).
            // Asset-level stalls are healed by resubscribing the asset (`watchdogs`), not by
            // recycling: an asset the venue never serves would otherwise recycle its
            // connection forever.
            let health: Vec<ConnHealth> = self
                .conns
                .iter()
                .filter(|(id, _)| !self.core.recycler.is_replacement(**id))
                .map(|(id, slot)| {
                    let counts = self.core.registry.connection_stats(*id);
                    let open = slot.conn.status() == Status::Connected;
                    let silent = open && self.suspected.contains_key(id);
                    ConnHealth {
                        conn: *id,
                        age: now.duration_since(slot.created),
                        pollution_ratio: counts.pollution_ratio,
                        active_assets: counts.active,
                        silent,
                        open,
                    }
                })
                .collect();
            for cand in self.core.recycler.candidates(now, &health) {
                match cand {
                    Candidate::Close { conn } => {
                        log::info!("Closing connection with only expired assets: conn={conn}");
                        self.close_connection(conn);
                    }
                    Candidate::Recycle { conn, reason } => {
                        self.begin_recycle(vec![conn], reason, now)
                    }
                }
            }
            let target = self.planner.config().target_per_connection;
            if let Some(olds) = self.core.recycler.repack_candidates(&health, target) {
                self.begin_recycle(olds, RecycleReason::Repack, now);
            }
        }
        for ev in self.core.recycler.tick(now) {
            self.on_recycle_event(ev, now);
        }
    }

    /// Opens a replacement for `olds` subscribing all their active assets; ownership moves
    /// asset by asset as the replacement's snapshots arrive.
    pub(super) fn begin_recycle(&mut self, olds: Vec<ConnId>, reason: RecycleReason, now: Instant) {
        let mut plan: Vec<(ConnId, Vec<AssetId>)> = Vec::new();
        for old in &olds {
            let assets: Vec<AssetId> = self
                .core
                .registry
                .by_connection(*old)
                .filter(|a| {
                    self.core.registry.owner(*a) == Some(*old)
                        && self
                            .core
                            .registry
                            .get(*a)
                            .is_some_and(|e| e.status == AssetStatus::Subscribed)
                })
                .collect();
            plan.push((*old, assets));
        }
        let all: Vec<AssetId> = plan.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        let new = self.planner.reserve_connection(true);
        match self.core.recycler.begin(plan, new, reason, now) {
            Ok(_) => {}
            Err(e) => {
                log::warn!("Recycle not started: olds={olds:?} error={e}");
                self.planner.remove_connection(new);
                return;
            }
        }
        for old in &olds {
            self.planner.set_draining(*old, true);
            if let Some(slot) = self.conns.get_mut(old) {
                slot.conn.drain();
            }
        }
        log::info!(
            "Recycle started: olds={olds:?} new={new} assets={} reason={}",
            all.len(),
            reason.as_str()
        );
        self.planner.set_assigned(new, all.len());
        let mut connection = Connection::new(
            new,
            Arc::clone(&self.endpoint),
            self.config.connection.clone(),
        );
        if let Err(e) = connection.connect(self.poll.registry(), token_of(new), now) {
            log::warn!("Replacement connect failed to start: conn={new} error={e}");
        }
        self.conns.insert(new, ConnSlot::new(connection, all, now));
    }

    pub(super) fn on_recycle_event(&mut self, ev: RecycleEvent, now: Instant) {
        match ev {
            RecycleEvent::Completed {
                olds,
                new,
                migrated,
                duration,
                ..
            } => {
                log::info!(
                    "Recycle completed: olds={olds:?} new={new} migrated={migrated} ms={}",
                    duration.as_millis()
                );
                self.finish_recycle(&olds, new);
            }
            RecycleEvent::TimedOut {
                olds,
                new,
                migrated,
                stragglers,
                ..
            } => {
                log::warn!(
                    "Recycle timed out: olds={olds:?} new={new} migrated={migrated} stragglers={}",
                    stragglers.len()
                );
                for a in stragglers {
                    self.core.registry.mark_subscribed(a, new);
                    self.core.mark_lost(a);
                    self.core.want(a, ResyncCause::Recycle);
                }
                self.finish_recycle(&olds, new);
            }
            RecycleEvent::Failed {
                olds,
                new,
                reason,
                returned,
                ..
            } => {
                log::warn!(
                    "Recycle failed: olds={olds:?} new={new} reason={reason:?} returned={}",
                    returned.len()
                );
                self.close_connection(new);
                for Move { asset, from, .. } in returned {
                    self.core.registry.mark_subscribed(asset, from);
                    self.core.mark_lost(asset);
                    self.core.want(asset, ResyncCause::Recycle);
                }
                for old in olds {
                    self.planner.set_draining(old, false);
                }
            }
        }
        let _ = now;
    }

    /// Every asset is on `new`: close the old connections.
    pub(super) fn finish_recycle(&mut self, olds: &[ConnId], new: ConnId) {
        for old in olds {
            self.close_connection(*old);
        }
        self.planner.set_draining(new, false);
        let active = self.core.registry.connection_stats(new).active;
        self.planner.set_assigned(new, active);
    }

    /// Closes a connection for good; assets still listed on it (expired ones) are detached.
    pub(super) fn close_connection(&mut self, conn: ConnId) {
        self.forget_suspect(conn);
        if let Some(mut slot) = self.conns.remove(&conn) {
            slot.conn.close(self.poll.registry());
        }
        let left: Vec<AssetId> = self.core.registry.by_connection(conn).collect();
        for a in left {
            if self.core.registry.owner(a) == Some(conn) {
                // Still owned here (a failed replacement never owned anything; an old
                // connection only keeps expired assets): detach and resync on the next plan.
                self.core.registry.reassign_connection(a, None);
                self.core.mark_lost(a);
            } else {
                self.core.registry.reassign_connection(a, None);
            }
        }
        self.scheduler.remove(conn);
        self.planner.remove_connection(conn);
    }
}
