//! Owned snapshots of the event loop's state for `/stats` and `/markets`, built on request.
//! Field names follow the seeds' `get_stats()` structure.

use std::collections::BTreeMap;

use serde::Serialize;

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
