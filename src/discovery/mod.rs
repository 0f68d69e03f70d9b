//! THREAD: market discovery (seed component 8, the lifecycle controller's Gamma side).
//!
//! A blocking thread that scans Gamma every `interval`, diffs the scan against what it already
//! follows, and sends additions and closures to the event loop as [`Command`]s (a crossbeam
//! channel plus the loop's `mio::Waker`). Gamma is the source of truth; the event loop also
//! reacts at once to `new_market` / `market_resolved` when the custom feature is on.
//! Expiry by end date and cleanup happen on the event loop, which owns the registry.

pub mod client;
pub mod diff;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::AllowList;
use crate::event_loop::Command;

pub use client::{DiscoveryError, GammaClient, RetryPolicy};

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Gamma base URL.
    pub gamma_url: String,
    /// Scan interval.
    pub interval: Duration,
    /// Allow-list (empty: every market).
    pub allow: AllowList,
    /// Timeout of each HTTP call.
    pub timeout: Duration,
    /// Retries of each call.
    pub retry: RetryPolicy,
}

/// Counters published by the discovery thread (single writer).
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// The thread is running.
    pub running: AtomicBool,
    /// The first scan finished (successfully).
    pub first_scan_done: AtomicBool,
    /// Completed scans.
    pub scans: AtomicU64,
    /// Failed scans.
    pub scan_errors: AtomicU64,
    /// Markets followed now.
    pub known_markets: AtomicU64,
    /// Markets added since start.
    pub discovered: AtomicU64,
    /// Markets closed since start.
    pub closed: AtomicU64,
    /// Duration of the last scan, ms.
    pub last_scan_ms: AtomicU64,
    /// Calls retried.
    pub retries: AtomicU64,
}

impl DiscoveryStats {
    /// JSON view for `/stats`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "is_running": self.running.load(Ordering::Relaxed),
            "first_scan_done": self.first_scan_done.load(Ordering::Relaxed),
            "known_market_count": self.known_markets.load(Ordering::Relaxed),
            "discovered": self.discovered.load(Ordering::Relaxed),
            "closed": self.closed.load(Ordering::Relaxed),
            "scans": self.scans.load(Ordering::Relaxed),
            "scan_errors": self.scan_errors.load(Ordering::Relaxed),
            "last_scan_ms": self.last_scan_ms.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
        })
    }
}

/// A running discovery thread.
#[derive(Debug)]
pub struct Discovery {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<DiscoveryStats>,
}

impl Discovery {
    /// Starts the thread. `notify` wakes the event loop after each command batch.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(
        config: DiscoveryConfig,
        commands: Sender<Command>,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Discovery> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DiscoveryStats::default());
        let thread = {
            let stop = Arc::clone(&stop);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("discovery".into())
                .spawn(move || run(&config, &commands, &*notify, &stop, &stats))?
        };
        Ok(Discovery {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// Stops and joins the thread (it notices within ~50 ms, or at its next HTTP timeout).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    config: &DiscoveryConfig,
    commands: &Sender<Command>,
    notify: &(dyn Fn() + Send + Sync),
    stop: &AtomicBool,
    stats: &DiscoveryStats,
) {
    stats.running.store(true, Ordering::Release);
    let mut client = GammaClient::new(&config.gamma_url, config.timeout, config.retry.clone());
    let mut known = diff::Known::default();
    let stopped = || stop.load(Ordering::Acquire);
    let mut manual_done = false;
    while !stopped() {
        let started = Instant::now();
        match client.scan(&stopped) {
            Ok(scan) => {
                let changes = diff::diff(&mut known, &scan.markets, &config.allow);
                let elapsed = started.elapsed();
                log::info!(
                    "Discovery scan: markets={} pages={} added={} closed={} unusable={} ms={}",
                    scan.markets.len(),
                    scan.pages,
                    changes.added_markets,
                    changes.closed_markets,
                    scan.unusable,
                    elapsed.as_millis()
                );
                stats.scans.fetch_add(1, Ordering::Relaxed);
                stats
                    .discovered
                    .fetch_add(changes.added_markets as u64, Ordering::Relaxed);
                stats
                    .closed
                    .fetch_add(changes.closed_markets as u64, Ordering::Relaxed);
                stats
                    .known_markets
                    .store(known.len() as u64, Ordering::Relaxed);
                stats
                    .last_scan_ms
                    .store(elapsed.as_millis() as u64, Ordering::Relaxed);
                let mut added = changes.added;
                if !manual_done {
                    manual_done = true;
                    added.extend(manual_assets(config, &scan.markets));
                }
                let mut sent = false;
                if !added.is_empty() {
                    sent |= commands.send(Command::AddAssets(added)).is_ok();
                }
                if !changes.closed_tokens.is_empty() {
                    sent |= commands
                        .send(Command::ExpireTokens(changes.closed_tokens))
                        .is_ok();
                }
                if sent {
                    notify();
                }
                stats.first_scan_done.store(true, Ordering::Release);
            }
            Err(DiscoveryError::Stopped) => break,
            Err(e) => {
                stats.scan_errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("Discovery scan failed: {e}");
            }
        }
        stats.retries.store(client.retries, Ordering::Relaxed);
        let next = started + config.interval;
        while !stopped() && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stats.running.store(false, Ordering::Release);
}

/// Allow-listed tokens Gamma did not list: followed anyway, without metadata (seed
/// `add_market_manually`).
fn manual_assets(
    config: &DiscoveryConfig,
    scan: &[crate::venue::gamma::GammaMarket],
) -> Vec<crate::registry::AssetInfo> {
    config
        .allow
        .assets
        .iter()
        .filter(|a| !scan.iter().any(|m| m.tokens.iter().any(|(t, _)| t == *a)))
        .map(|a| {
            log::warn!(
                "Allow-listed asset not found in Gamma, following it without metadata: asset={a}"
            );
            crate::registry::AssetInfo {
                token: a.clone(),
                condition: String::new(),
                outcome: String::new(),
                question: String::new(),
                end_ms: None,
                tick_size: None,
                min_order_size: crate::market::Size::from_raw(5 * crate::market::price::SCALE),
                neg_risk: false,
                meta_known: false,
            }
        })
        .collect()
}
