//! Watchdogs and resyncs, acting half (runs on the event-loop thread): applies the pure rules
//! of `watchdog.rs` ([`Resyncs`](crate::watchdog::Resyncs), `is_frozen`, `is_silent`) to the
//! loop's connections and assets, and carries out their decisions: disconnect frozen
//! connections, resubscribe wanted assets on their owner connections.

use std::time::Instant;

use super::config::ResyncCause;
use super::run::EventLoop;
use crate::connection::Status;
use crate::registry::ConnId;
use crate::venue::subscribe::Operation;
use crate::watchdog::{Owner, improbable_silence, is_frozen, is_silent};

impl EventLoop {
    /// Applies the watchdog rules (`watchdog.rs`) at `now`: frozen connections are lost
    /// (disconnected, books untrusted, reconnected); late and silent assets become wanted.
    pub(super) fn watchdogs(&mut self, now: Instant) {
        // Connection-level data silence: PONGs flow, data does not ("silent freeze").
        let silence = self.config.data_silence;
        let (gap_factor, min_gap) = (self.config.freeze.gap_factor, self.config.freeze.min_gap);
        let frozen: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.status() == Status::Connected && !s.assets.is_empty())
            .filter(|(_, s)| {
                // Rate-aware: a quiet connection gets longer than `data_silence`.
                let limit = improbable_silence(s.rate.mean_gap(), gap_factor, min_gap)
                    .map_or(silence, |l| l.max(silence));
                let st = s.conn.stats();
                !silence.is_zero() && is_frozen(now, st.last_message_at, st.connected_since, limit)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in frozen {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.disconnect(self.poll.registry());
            }
            self.core.stats.data_silence_reconnects += 1;
            self.on_lost(id, now, "no data while PONGs flow (silent freeze)");
        }
        self.core.resyncs.check_late(now);
        // Asset-level silence: the connection delivers, the asset does not.
        let silence_ns = self.config.asset_silence.as_nanos() as u64;
        if silence_ns == 0 {
            return;
        }
        let now_ns = crate::worker::now_ns();
        for slot in self.conns.values() {
            if slot.conn.status() != Status::Connected {
                continue;
            }
            for a in &slot.assets {
                let last = self.core.last_record_ns.get(a.index()).copied();
                if is_silent(now_ns, last.unwrap_or(0), silence_ns)
                    && !self.core.resyncs.is_awaiting(*a)
                {
                    self.core.resyncs.want(*a, ResyncCause::AssetSilent);
                }
            }
        }
    }

    /// Resubscribes wanted assets on their owner connections (unsubscribe + subscribe → a
    /// fresh snapshot), as the rules in [`Resyncs::due`](crate::watchdog::Resyncs::due) allow.
    pub(super) fn send_resyncs(&mut self, now: Instant) {
        let conns = &self.conns;
        let registry = &self.core.registry;
        let due = self.core.resyncs.due(now, |a| match registry.owner(a) {
            None => Owner::None,
            Some(c)
                if conns
                    .get(&c)
                    .is_some_and(|s| s.conn.status() == Status::Connected) =>
            {
                Owner::Live(c)
            }
            Some(_) => Owner::Down,
        });
        for (conn, assets) in due {
            for a in &assets {
                if let Some(t) = self.core.last_record_ns.get_mut(a.index()) {
                    *t = 0;
                }
            }
            let mut frames = self.op_frames(Operation::Unsubscribe, &assets);
            frames.extend(self.op_frames(Operation::Subscribe, &assets));
            self.send_frames(conn, &frames, now);
        }
    }
}
