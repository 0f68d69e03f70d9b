//! The engine configuration integration tests start from (shared by tests).

#![allow(dead_code, reason = "each test uses part of it")]

use polypy::config::{EngineConfig, IdleMode};
use polypy::sim::SimHandle;

/// Defaults against `sim`: unpinned workers that park (tests share two cores with the sim).
pub(crate) fn engine_config(sim: &SimHandle) -> EngineConfig {
    EngineConfig {
        ws_url: sim.ws_url(),
        gamma_url: sim.http_url(),
        pin_workers: false,
        idle: IdleMode::Park,
        ..EngineConfig::default()
    }
}
