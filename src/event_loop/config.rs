//! The event loop's settings, the state it publishes to other threads without a round trip,
//! and the names it counts things by (resync causes, lifecycle events). Plain data: built by
//! the engine on the main thread, then owned or read-shared (atomics) by the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Duration;

use crate::connection::{ConnectionConfig, ReconnectConfig};
use crate::recycler::RecyclerConfig;

pub use crate::watchdog::ResyncCause;

/// What the loop publishes for other threads without a round trip: counters for `/health`
/// and `/ready`, and the latest snapshot and market list.
#[derive(Debug, Default)]
pub struct LoopShared {
    /// The loop is running.
    pub running: AtomicBool,
    /// Connected connections.
    pub active_connections: AtomicUsize,
    /// Connections in the pool.
    pub connections: AtomicUsize,
    /// Subscribed assets.
    pub subscribed: AtomicUsize,
    /// Assets awaiting a snapshot.
    pub awaiting_snapshot: AtomicUsize,
    /// Last iteration, ns on the engine clock.
    pub heartbeat_ns: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
    /// Snapshots the loop has built (published ones and fresh ones asked for by
    /// `Command::Snapshot`): readers of the published snapshot must not move it.
    pub snapshots_built: AtomicU64,
    /// The latest snapshot and market list (`published.rs`).
    pub published: super::published::Published,
}

/// Event-loop settings (a part of `EngineConfig`).
#[derive(Clone)]
pub struct LoopConfig {
    /// Per-connection settings.
    pub connection: ConnectionConfig,
    /// Reconnect backoff and rate cap.
    pub reconnect: ReconnectConfig,
    /// Reconnect an open connection with assets but no data message for this long.
    pub data_silence: Duration,
    /// Resync when no snapshot arrives this long after subscribing.
    pub snapshot_timeout: Duration,
    /// Resync an asset with no data this long while its connection delivers.
    pub asset_silence: Duration,
    /// Ask for the custom-feature messages.
    pub custom_features: bool,
    /// Markets to follow (empty: all); `new_market` messages outside it are ignored.
    pub allow: crate::config::AllowList,
    /// Poll timeout when idle.
    pub idle_poll: Duration,
    /// How often subscribed assets past their end time are expired.
    pub expiry_interval: Duration,
    /// How long an expired asset (and its book) is kept before it is removed.
    pub cleanup_grace: Duration,
    /// Called on the event loop when markets appear or expire (cold path).
    pub lifecycle_hook: Option<LifecycleHook>,
    /// Connection recycling policy.
    pub recycler: RecyclerConfig,
    /// The book workers' statistics, read on the publish tick for the recent-window latency
    /// ([`LatencyWindow`](crate::worker::LatencyWindow)); empty = no recent latency.
    pub latency_sources: Vec<std::sync::Arc<crate::worker::WorkerStats>>,
    /// How silent freezes are detected (probe, rate-aware silence).
    pub freeze: crate::watchdog::FreezeConfig,
}

/// A market appeared or expired (the seeds' `on_new_market` / `on_market_expired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// New assets were registered (from Gamma, `--asset`, or a `new_market` message).
    NewMarket {
        /// Condition id.
        condition: String,
        /// Its token ids that are new.
        tokens: Vec<String>,
    },
    /// Assets expired (end time passed, closed on Gamma, or `market_resolved`).
    MarketExpired {
        /// Condition id.
        condition: String,
        /// Its token ids that expired.
        tokens: Vec<String>,
    },
}

/// Receives [`LifecycleEvent`]s on the event-loop thread; must return quickly.
pub type LifecycleHook = Arc<dyn Fn(&LifecycleEvent) + Send + Sync>;

/// Lifecycle counters kept by the event loop.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LifecycleCounts {
    /// Assets expired since start.
    pub expired: u64,
    /// Expired assets removed after the grace period.
    pub removed: u64,
    /// `new_market` messages seen.
    pub new_market_notices: u64,
    /// `market_resolved` messages seen.
    pub resolved_notices: u64,
    /// Expiry checks run.
    pub expiry_checks: u64,
}

impl std::fmt::Debug for LoopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopConfig")
            .field("connection", &self.connection)
            .field("snapshot_timeout", &self.snapshot_timeout)
            .field("expiry_interval", &self.expiry_interval)
            .field("cleanup_grace", &self.cleanup_grace)
            .field("lifecycle_hook", &self.lifecycle_hook.is_some())
            .finish_non_exhaustive()
    }
}
