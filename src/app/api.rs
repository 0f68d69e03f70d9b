//! The HTTP API's view of a running engine: [`EngineApi`] implements
//! [`ApiSource`](crate::http::ApiSource) over an [`EngineHandle`].
//!
//! THREAD: the HTTP thread calls it. `/health`, `/ready`, `/stats`, `/metrics` and `/markets`
//! read atomics and what the event loop published (`event_loop/published.rs`): however often
//! clients poll them, the loop does no extra work. `/orderbook/{id}` asks the loop to locate
//! the token (a hash lookup) and the owning worker for the book, each through a channel with a
//! deadline, so a busy engine makes such a request slow (bounded), never stuck.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::engine::{EngineHandle, book_answer};
use crate::http::{ApiSource, BookAnswer, Health};

/// How long a request waits for the event loop or a worker.
const DEADLINE: Duration = Duration::from_secs(2);

/// Share of subscribed assets that must be trusted for `/ready`.
pub const READY_TRUSTED_SHARE: f64 = 0.95;

/// HTTP server status, shown in `/stats` (`http.up`, `http.error`).
#[derive(Debug, Default)]
pub struct HttpStatus {
    /// Listening.
    pub up: AtomicBool,
    /// Why it is not, when it failed to start.
    pub error: std::sync::OnceLock<String>,
}

/// The engine as the HTTP API sees it.
#[derive(Debug)]
pub struct EngineApi {
    engine: EngineHandle,
    http: Arc<HttpStatus>,
}

impl EngineApi {
    /// Wraps a running engine.
    pub fn new(engine: EngineHandle, http: Arc<HttpStatus>) -> EngineApi {
        EngineApi { engine, http }
    }

    /// The engine.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Gives the engine back (to stop it).
    pub fn into_engine(self) -> EngineHandle {
        self.engine
    }

    /// `Ok` when ready: the first discovery finished and ≥ 95 % of subscribed assets are
    /// trusted.
    pub fn readiness(&self) -> Result<(), String> {
        let e = &self.engine;
        if !e.first_discovery_done() {
            return Err("first market discovery has not finished".into());
        }
        let subscribed = e.shared().subscribed.load(Ordering::Relaxed) as u64;
        if subscribed == 0 {
            return Err("no assets subscribed yet".into());
        }
        let trusted = e.trusted_books().min(subscribed);
        if (trusted as f64) < READY_TRUSTED_SHARE * subscribed as f64 {
            return Err(format!(
                "{trusted} of {subscribed} subscribed books trusted (need {:.0}%)",
                READY_TRUSTED_SHARE * 100.0
            ));
        }
        Ok(())
    }
}

impl ApiSource for EngineApi {
    fn health(&self) -> Health {
        self.engine.health()
    }

    fn ready(&self) -> Result<(), String> {
        self.readiness()
    }

    fn stats(&self) -> Result<serde_json::Value, String> {
        let mut v = self
            .engine
            .published_stats(DEADLINE)
            .ok_or("the event loop has published no statistics for too long")?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "http".into(),
                serde_json::json!({
                    "up": self.http.up.load(Ordering::Relaxed),
                    "error": self.http.error.get(),
                }),
            );
            if let Some(r) = self.engine.replay_progress() {
                o.insert("replay".into(), r);
            }
            if let Some(r) = self.engine.recorder_stats() {
                let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                o.insert(
                    "recording".into(),
                    serde_json::json!({
                        "frames": n(&r.frames),
                        "market_lines": n(&r.market_lines),
                        "dropped": n(&r.dropped),
                        "bytes": n(&r.bytes),
                        "files": n(&r.files),
                        "errors": n(&r.errors),
                    }),
                );
            }
        }
        Ok(v)
    }

    fn metrics(&self) -> Result<String, String> {
        let data = super::metrics::MetricsData::gather(&self.engine, DEADLINE)
            .ok_or("the event loop has published no statistics for too long")?;
        data.render().map_err(|e| format!("encoding metrics: {e}"))
    }

    fn markets(&self) -> Result<serde_json::Value, String> {
        let m = self
            .engine
            .markets()
            .ok_or("the event loop has not published its markets yet")?;
        let mut v = serde_json::to_value(&m.value).map_err(|e| e.to_string())?;
        // `--shard I/N`: every market says which shard it is followed in.
        if let (Some(shard), Some(list)) = (self.engine.shard(), v.as_array_mut()) {
            for m in list.iter_mut().filter_map(serde_json::Value::as_object_mut) {
                m.insert("shard".into(), shard.to_string().into());
            }
        }
        Ok(v)
    }

    fn book(&self, asset_id: &str, depth: usize) -> Result<Option<BookAnswer>, String> {
        Ok(self
            .engine
            .book(asset_id, depth, DEADLINE)?
            .map(|v| book_answer(&v)))
    }
}
