//! Owned snapshots of the event loop's state for `/stats` and `/markets`, built on request.
//! Field names follow the seeds' `get_stats()` structure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::EventLoop;
use crate::registry::AssetStatus;
use std::time::Instant;

/// Registry counts (seed `registry`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistryView {
    /// Assets known (the seeds count assets as markets).
    pub total_markets: usize,
    /// Distinct condition ids.
    pub conditions: usize,
    /// Awaiting subscription.
    pub pending: usize,
    /// Subscribed.
    pub subscribed: usize,
    /// Expired, awaiting cleanup.
    pub expired: usize,
}

/// One connection (seed `pool.stats[]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionView {
    /// `conn-<n>`.
    pub connection_id: String,
    /// disconnected / connecting / connected / draining / closed.
    pub status: String,
    /// Assets subscribed on it.
    pub subscribed_markets: usize,
    /// Frames received.
    pub messages_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Frames or messages that failed to decode.
    pub parse_errors: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Seconds since the current session connected.
    pub uptime: f64,
    /// Seconds since the connection was created.
    pub age_seconds: f64,
    /// Seconds since the last frame (any, PONG included).
    pub last_message_age: Option<f64>,
    /// Assets assigned (subscribed + expired).
    pub total: usize,
    /// Subscribed assets.
    pub active: usize,
    /// Expired assets still on it.
    pub expired: usize,
    /// expired / total.
    pub pollution_ratio: f64,
    /// Its assets the freeze probe follows (its watchers: evidence of a freeze comes from
    /// them).
    pub probe_watched: usize,
}

/// Pool (seed `pool`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolView {
    /// Connections.
    pub connection_count: usize,
    /// Connected ones.
    pub active_connections: usize,
    /// Assets the pool can hold at its target.
    pub total_capacity: usize,
    /// Per connection.
    pub stats: Vec<ConnectionView>,
}

/// Router (seed `router`), plus ring depths.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouterView {
    /// Records pushed to workers.
    pub messages_routed: u64,
    /// Records dropped (ring full); their books were marked untrusted and resynced.
    pub messages_dropped: u64,
    /// Batch pushes.
    pub batches_sent: u64,
    /// Times a ring was full.
    pub queue_full_events: u64,
    /// Records for assets not owned by the receiving connection, or unknown, dropped.
    pub routing_errors: u64,
    /// Items waiting in each worker's ring.
    pub queue_depths: BTreeMap<String, usize>,
}

/// Integrity counters kept by the event loop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IntegrityView {
    /// Frames received.
    pub frames: u64,
    /// Messages decoded.
    pub messages: u64,
    /// Messages of unknown types, skipped.
    pub unknown_messages: u64,
    /// Frames or messages that failed to decode.
    pub decode_failures: u64,
    /// Entries for assets on another connection (or none), dropped as the design requires.
    pub foreign_entries: u64,
    /// Entries for tokens we do not follow, dropped.
    pub unknown_assets: u64,
    /// Connections reconnected because data stopped while the socket stayed alive.
    pub data_silence_reconnects: u64,
    /// Broken frames that named no asset or market: their connection's assets were resynced.
    pub unattributed_failures: u64,
    /// Resyncs requested, by cause.
    pub resyncs: BTreeMap<String, u64>,
    /// Assets currently waiting for a snapshot.
    pub awaiting_snapshot: usize,
    /// Connections suspected frozen, by evidence (`probe`: the probe saw data they did not
    /// deliver; `rate`: silent far beyond their own recent rate). Their books were marked
    /// `stale` and the connection recycled make-before-break.
    pub freeze_suspected: BTreeMap<String, u64>,
    /// Connections suspected frozen right now (until their recycle completes or they drop).
    pub frozen_now: usize,
    /// The probe connection: assets it follows, whether it is open, frames it received.
    pub probe_assets: usize,
    /// The probe connection is open.
    pub probe_open: bool,
    /// Frames the probe connection received (decoded for evidence, never applied).
    pub probe_frames: u64,
    /// Assets wanted for a resync that has not been sent yet (rate limit, owner down).
    pub resyncs_wanted: usize,
}

/// Everything the event loop reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoopSnapshot {
    /// Registry.
    pub registry: RegistryView,
    /// Pool.
    pub pool: PoolView,
    /// Router.
    pub router: RouterView,
    /// Integrity.
    pub integrity: IntegrityView,
    /// Recycler (seed `recycler`).
    pub recycler: serde_json::Value,
    /// Expiry and cleanup counters.
    pub lifecycle: super::LifecycleCounts,
    /// Wire → book latency over the last 15 s (`worker/window.rs`), as of the last publish.
    pub latency_recent: crate::worker::RecentLatency,
}

/// One token of a market.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    /// Token id.
    pub token_id: String,
    /// Outcome.
    pub outcome: String,
}

/// One followed market (`/markets`).
#[derive(Debug, Clone, Serialize)]
pub struct MarketView {
    /// Condition id.
    pub condition_id: String,
    /// Question.
    pub question: String,
    /// Outcomes.
    pub outcomes: Vec<String>,
    /// Tokens.
    pub tokens: Vec<TokenView>,
    /// End date, ISO-8601 UTC.
    pub end_date: Option<String>,
    /// pending / subscribed / expired (of its first token).
    pub status: String,
}

impl EventLoop {
    pub(super) fn snapshot(&self, now: Instant) -> LoopSnapshot {
        self.shared
            .snapshots_built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = &self.core.registry;
        let mut stats = Vec::with_capacity(self.conns.len());
        // Watchers per owner, in one pass over the probe's assets.
        let mut watched: BTreeMap<crate::registry::ConnId, usize> = BTreeMap::new();
        for a in self.probe.as_ref().map_or(&[][..], |p| &p.assets[..]) {
            if let Some(owner) = r.owner(*a) {
                *watched.entry(owner).or_default() += 1;
            }
        }
        for (id, slot) in &self.conns {
            let s = slot.conn.stats();
            let counts = r.connection_stats(*id);
            stats.push(ConnectionView {
                connection_id: format!("conn-{id}"),
                status: slot.conn.status().as_str().to_string(),
                subscribed_markets: counts.active,
                messages_received: s.messages,
                bytes_received: s.bytes,
                parse_errors: s.parse_errors,
                reconnects: s.reconnects,
                uptime: s
                    .connected_since
                    .map(|t| now.duration_since(t).as_secs_f64())
                    .unwrap_or(0.0),
                age_seconds: now.duration_since(slot.created).as_secs_f64(),
                last_message_age: s
                    .last_message_at
                    .map(|t| now.duration_since(t).as_secs_f64()),
                total: counts.total,
                active: counts.active,
                expired: counts.expired,
                pollution_ratio: counts.pollution_ratio,
                probe_watched: watched.get(id).copied().unwrap_or(0),
            });
        }
        let rs = self.core.router_stats.snapshot();
        let mut integrity = self.core.stats.clone();
        integrity.resyncs = self
            .core
            .resyncs
            .counts()
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        integrity.awaiting_snapshot = self.core.resyncs.awaiting_len();
        integrity.frozen_now = self.suspected.len();
        integrity.probe_frames = self.core.probe_frames;
        integrity.probe_assets = self.probe.as_ref().map_or(0, |p| p.assets.len());
        integrity.probe_open = self.probe.as_ref().is_some_and(|p| p.open);
        integrity.resyncs_wanted = self.core.resyncs.wanted_len();
        LoopSnapshot {
            registry: RegistryView {
                total_markets: r.len(),
                conditions: r.conditions().count(),
                pending: r.pending_count(),
                subscribed: r.count(AssetStatus::Subscribed),
                expired: r.count(AssetStatus::Expired),
            },
            pool: PoolView {
                connection_count: self.conns.len(),
                active_connections: stats.iter().filter(|c| c.status == "connected").count(),
                total_capacity: self.planner.total_capacity(),
                stats,
            },
            router: RouterView {
                messages_routed: rs.messages_routed,
                messages_dropped: rs.messages_dropped,
                batches_sent: rs.batches_sent,
                queue_full_events: rs.queue_full_events,
                routing_errors: rs.routing_errors
                    + integrity.foreign_entries
                    + integrity.unknown_assets,
                queue_depths: rs
                    .queue_depths
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (format!("worker_{i}"), *d as usize))
                    .collect(),
            },
            integrity,
            recycler: {
                let mut v = serde_json::to_value(self.core.recycler.stats()).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("is_running".into(), true.into());
                }
                v
            },
            lifecycle: self.core.lifecycle,
            latency_recent: self.latency_window.recent(),
        }
    }

    pub(super) fn markets(&self) -> Vec<MarketView> {
        let r = &self.core.registry;
        let mut out = Vec::new();
        for cond in r.conditions() {
            let ids = r.by_condition(cond);
            let entries: Vec<_> = ids.iter().filter_map(|a| r.get(*a)).collect();
            let Some(first) = entries.first() else {
                continue;
            };
            if first.status != AssetStatus::Subscribed {
                continue;
            }
            out.push(MarketView {
                condition_id: cond.to_string(),
                question: first.info.question.clone(),
                outcomes: entries.iter().map(|e| e.info.outcome.clone()).collect(),
                tokens: entries
                    .iter()
                    .map(|e| TokenView {
                        token_id: e.info.token.clone(),
                        outcome: e.info.outcome.clone(),
                    })
                    .collect(),
                end_date: first.info.end_ms.and_then(|ms| {
                    jiff::Timestamp::from_millisecond(ms as i64)
                        .ok()
                        .map(|t| t.to_string())
                }),
                status: "subscribed".into(),
            });
        }
        out.sort_by(|a, b| a.condition_id.cmp(&b.condition_id));
        out
    }
}
