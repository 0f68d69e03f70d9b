//! The progress line the application logs every few seconds: markets known, assets
//! subscribed/trusted, connections, msgs/s, wire → book p99 (since start and over the last 15 s),
//! resyncs.
//!
//! THREAD: the main thread.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::engine::EngineHandle;

/// Rates between two progress lines.
#[derive(Debug)]
pub struct Progress {
    last: Option<(Instant, u64)>,
}

impl Progress {
    /// No line logged yet.
    pub fn new() -> Progress {
        Progress { last: None }
    }

    /// Logs one progress line.
    pub fn log(&mut self, engine: &EngineHandle) {
        let now = Instant::now();
        let frames = engine.shared().frames.load(Ordering::Relaxed);
        let rate = match self.last {
            Some((at, n)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                frames.saturating_sub(n) as f64 / secs
            }
            None => 0.0,
        };
        self.last = Some((now, frames));
        match engine.replay_progress() {
            Some(r) => log::info!(
                "Progress: {} frames/s={rate:.0} replay_position={} replay_frames={} replay_recorded_s={:.1} replay_passes={} replay_done={}",
                summary(engine),
                r["position"].as_str().unwrap_or("-"),
                r["frames"],
                r["recorded_seconds_replayed"].as_f64().unwrap_or(0.0),
                r["passes"],
                r["done"]
            ),
            None => log::info!("Progress: {} msgs/s={rate:.0}", summary(engine)),
        }
    }

    /// The last line's figures, for the final statistics line.
    pub fn final_line(&self, engine: &EngineHandle) -> String {
        let frames = engine.shared().frames.load(Ordering::Relaxed);
        format!(
            "{} frames={frames} uptime_s={}",
            summary(engine),
            engine.uptime().as_secs()
        )
    }
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

fn summary(engine: &EngineHandle) -> String {
    let s = engine.shared();
    let known = engine
        .discovery_stats()
        .map(|d| d.known_markets.load(Ordering::Relaxed));
    let lat = engine.latency();
    let workers = engine.worker_stats();
    let records: u64 = workers.iter().map(|w| w.records_applied).sum();
    let mismatches: u64 = workers.iter().map(|w| w.hash_mismatched).sum();
    // The last 15 s (`worker/window.rs`), from the loop's published snapshot.
    let recent = engine
        .published_snapshot(Duration::from_secs(5))
        .map_or("-".to_string(), |s| {
            format!("{:.1}", s.latency_recent.latency.p99_ns as f64 / 1e3)
        });
    format!(
        "markets={} assets_subscribed={} trusted={} awaiting_snapshot={} connections={}/{} records_applied={records} hash_mismatches={mismatches} wire_to_book_p99_us={:.1} wire_to_book_p99_15s_us={recent}",
        known.map_or("-".to_string(), |k| k.to_string()),
        s.subscribed.load(Ordering::Relaxed),
        engine.trusted_books(),
        s.awaiting_snapshot.load(Ordering::Relaxed),
        s.active_connections.load(Ordering::Relaxed),
        s.connections.load(Ordering::Relaxed),
        Duration::from_nanos(lat.p99_ns).as_secs_f64() * 1e6,
    )
}
