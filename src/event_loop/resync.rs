//! Watchdogs and resyncs on the event-loop thread: find connections and assets that stopped
//! delivering, and resubscribe wanted assets on their owner connections (unsubscribe +
//! subscribe → a fresh snapshot), rate-limited per asset.

use std::collections::BTreeMap;
use std::time::Instant;

use super::config::ResyncCause;
use super::run::EventLoop;
use crate::connection::Status;
use crate::market::AssetId;
use crate::registry::ConnId;
use crate::venue::subscribe::Operation;

impl EventLoop {
    pub(super) fn watchdogs(&mut self, now: Instant) {
        // Connection-level data silence: PONGs flow, data does not ("silent freeze").
        let silence = self.config.data_silence;
        if !silence.is_zero() {
            let frozen: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, s)| s.conn.status() == Status::Connected && !s.assets.is_empty())
                .filter(|(_, s)| {
                    let st = s.conn.stats();
                    st.last_message_at
                        .or(st.connected_since)
                        .is_some_and(|t| now.duration_since(t) >= silence)
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
        }
        let timeout = self.config.snapshot_timeout;
        let late: Vec<AssetId> = self
            .core
            .awaiting
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in late {
            self.core.want(a, ResyncCause::NoSnapshot);
        }
        // Asset-level silence: the connection delivers, the asset does not.
        let silence_ns = self.config.asset_silence.as_nanos() as u64;
        let now_ns = crate::worker::now_ns();
        if silence_ns > 0 {
            for slot in self.conns.values() {
                if slot.conn.status() != Status::Connected {
                    continue;
                }
                for a in &slot.assets {
                    let last = self
                        .core
                        .last_record_ns
                        .get(a.index())
                        .copied()
                        .unwrap_or(0);
                    if last != 0
                        && now_ns.saturating_sub(last) > silence_ns
                        && !self.core.awaiting.contains_key(a)
                    {
                        self.core
                            .wanted
                            .entry(*a)
                            .or_insert(ResyncCause::AssetSilent);
                    }
                }
            }
        }
    }

    /// Resubscribes wanted assets on their owner connections, rate-limited per asset.
    pub(super) fn send_resyncs(&mut self, now: Instant) {
        if self.core.wanted.is_empty() {
            return;
        }
        let min_gap = self.config.snapshot_timeout / 2;
        let mut by_conn: BTreeMap<ConnId, Vec<AssetId>> = BTreeMap::new();
        let wanted: Vec<(AssetId, ResyncCause)> =
            self.core.wanted.iter().map(|(a, c)| (*a, *c)).collect();
        for (a, cause) in wanted {
            let Some(conn) = self.core.registry.owner(a) else {
                self.core.wanted.remove(&a);
                continue;
            };
            let live = self
                .conns
                .get(&conn)
                .is_some_and(|s| s.conn.status() == Status::Connected);
            if !live {
                continue; // the reconnect resubscribes it
            }
            if self
                .core
                .last_resync
                .get(&a)
                .is_some_and(|t| now.duration_since(*t) < min_gap)
            {
                continue;
            }
            self.core.wanted.remove(&a);
            self.core.last_resync.insert(a, now);
            self.core.awaiting.insert(a, now);
            *self.core.resync_counts.entry(cause.as_str()).or_default() += 1;
            self.core.last_record_ns[a.index()] = 0;
            by_conn.entry(conn).or_default().push(a);
        }
        for (conn, assets) in by_conn {
            let mut frames = self.op_frames(Operation::Unsubscribe, &assets);
            frames.extend(self.op_frames(Operation::Subscribe, &assets));
            self.send_frames(conn, &frames, now);
        }
    }
}
