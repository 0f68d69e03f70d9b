//! THREAD: the event loop. Owns every WebSocket connection, the asset registry, the pool's
//! plan, the reconnect scheduler and the router's producers (the rings' write ends).
//!
//! One iteration: poll → for each ready connection, read every frame until WouldBlock and
//! decode it once into records → check each record's owner → append it to its worker's batch
//! → push every batch (one ring write per worker) → run timers (keep-alive, silence
//! watchdog, reconnects, subscription planning, freeze detection with the probe connection,
//! recycling, snapshot watchdog, resyncs, publishing) → answer commands.
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

//!
//! | file | owns / does | seed component |
//! |---|---|---|
//! | `run.rs` | [`EventLoop`]: poll, connection lifetimes (connected, lost, reconnect), the one send path, timers | 4 (connections, with `connection/`) |
//! | `frame.rs` | `Core`: the per-frame hot path (decode, owner check, route), decode failures | 1, 3, 6 (with `venue/`, `registry.rs`, `handoff/`) |
//! | `subscriptions.rs` | registering assets, carrying out the pool plan | 5 (with `pool.rs`) |
//! | `lifecycle.rs` | expiry, cleanup, `new_market` / `market_resolved` | 8 (with `discovery/`) |
//! | `recycling.rs` | recycles: candidates, replacements, finish / roll back | 9 (with `recycler.rs`) |
//! | `freeze.rs` | silent freezes, acting half: the probe connection, rate-aware silence, suspects marked `stale` and recycled | — (with `watchdog.rs`, `recycler.rs`) |
//! | `resync.rs` | watchdogs and resyncs, acting half: applies the rules of `watchdog.rs` (`Resyncs`), disconnects frozen connections, resubscribes wanted assets | — (with `watchdog.rs`) |
//! | `config.rs` | [`LoopConfig`], [`LoopShared`], lifecycle types ([`ResyncCause`] re-exported from `watchdog.rs`) | — |
//! | `snapshot.rs` | owned views for `/stats` and `/markets`, and building them | — |
//! | `published.rs` | the lock-free slots they are published in, and when (also feeds the recent-latency window, `worker/window.rs`) | — |
//! | `commands.rs` | [`Command`]s other threads send | — |
//! | `replay.rs` | `--replay`: frames from a recording (`crate::replay`'s feeder) instead of sockets, taken only while the rings have room | — |

pub mod commands;
mod config;
mod frame;
mod freeze;
mod lifecycle;
pub mod published;
mod recycling;
mod replay;
mod resync;
mod run;
pub mod snapshot;
mod subscriptions;

pub use commands::Command;
pub use config::{
    LifecycleCounts, LifecycleEvent, LifecycleHook, LoopConfig, LoopShared, ResyncCause,
};
pub use published::{Published, Stamped};
pub use replay::ReplayFeed;
pub use run::{EventLoop, WAKER};
pub use snapshot::{LoopSnapshot, MarketView};
