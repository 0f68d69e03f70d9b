//! THREAD: the event loop. Owns every WebSocket connection, the asset registry, the pool's
//! plan, the reconnect scheduler and the router's producers (the rings' write ends).
//!
//! One iteration: poll → for each ready connection, read every frame until WouldBlock and
//! decode it once into records → check each record's owner → append it to its worker's batch
//! → push every batch (one ring write per worker) → run timers (keep-alive, silence
//! watchdog, reconnects, snapshot watchdog, resyncs, subscription planning) → answer commands.
//!
//! Nothing here blocks, sleeps, logs per message or allocates per message once warm (the
//! decoder and router reuse their buffers). Logs are for transitions only.
//!
//! Correctness rules enforced here (`docs/ARCHITECTURE.md`, "Invariants"):
//! - A record is applied only when it arrives on its asset's owner connection; entries for
//!   other assets are dropped and counted (`foreign_entries`).
//! - Anything that may have lost data (a reconnect, a full ring, a frame that failed to
//!   decode and named the asset) sends a `DataLoss` marker ahead of the asset's next records,
//!   so its book is untrusted, and schedules a resync (unsubscribe + subscribe for a fresh
//!   snapshot).
//! - Every subscribed asset must see a snapshot within `snapshot_timeout`, else it is resynced.

pub mod commands;
mod run;
pub mod snapshot;

pub use commands::Command;
pub use run::{
    EventLoop, LifecycleCounts, LifecycleEvent, LifecycleHook, LoopConfig, LoopShared, ResyncCause,
    WAKER,
};
pub use snapshot::{LoopSnapshot, MarketView};
