//! Engine configuration: parsed once (CLI flags with `POLYPY_…` environment twins, in
//! `main.rs`), validated once, passed by value. Each thread gets only its own part.
//!
//! Defaults point at the real Polymarket endpoints and follow the venue's observed limits
//! (docs/venue-protocol.md §2.5): 200 assets per connection (hard maximum 500), subscribe frames of at
//! most 100 ids, `PING` every 10 s, a 30 s inbound-silence watchdog, reconnect backoff 1 s → 30 s.

use std::time::Duration;

use crate::orderbook::CheckMode;
use crate::pool::PoolConfig;

/// The real market channel.
pub const DEFAULT_WS_URL: &str = "wss://ws-subscriptions-clob.polymarket.com/ws/market";
/// The real Gamma API.
pub const DEFAULT_GAMMA_URL: &str = "https://gamma-api.polymarket.com";

/// How a hot thread waits when it has nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleMode {
    /// Busy-spin: lowest latency, burns a core. Only with a core to spare.
    Spin,
    /// Rate-aware: spin only while the next batch is due within ~15 µs, else park at once
    /// (up to 5 ms; woken by new work): low CPU per message at every rate (the default).
    Adaptive,
    /// Park immediately (up to 1 ms): a wake-up costs 12–50 µs on this VM kind.
    Park,
    /// The previous default: spin 20 µs, then `yield_now` for 200 µs, then park up to 1 ms
    /// (burns most of a core at a few thousand messages a second; kept for comparison).
    Backoff,
}

/// Which markets to follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Token ids (`--asset`).
    pub assets: Vec<String>,
    /// Condition ids (`--market`).
    pub markets: Vec<String>,
    /// `--shard I/N`: only markets of this shard (`crate::shard`), within the lists above.
    pub shard: Option<crate::shard::Shard>,
}

impl AllowList {
    /// True when nothing is listed (follow every market).
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty() && self.markets.is_empty() && self.shard.is_none()
    }

    /// True when the market's shard (if any) is this instance's.
    pub fn in_shard(&self, condition: &str) -> bool {
        self.shard.is_none_or(|s| s.owns(condition))
    }
}

/// Everything the engine needs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Market channel URL (`ws://` or `wss://`).
    pub ws_url: String,
    /// Gamma base URL.
    pub gamma_url: String,
    /// Book worker threads.
    pub workers: usize,
    /// Pin workers to cores (worker i → core (i + 1) mod cores, the event loop stays free).
    pub pin_workers: bool,
    /// Idle strategy of the event loop and the workers.
    pub idle: IdleMode,
    /// Pool policy.
    pub pool: PoolConfig,
    /// Hash checking.
    pub check: CheckMode,
    /// Keep-alive `PING` interval.
    pub ping_interval: Duration,
    /// Reconnect when nothing arrives for this long.
    pub silence_timeout: Duration,
    /// Reconnect an open connection that has subscribed assets but received no data message
    /// (only `PONG`s) for this long: the venue's "silent freeze" (docs/venue-protocol.md §8 #1).
    pub data_silence: Duration,
    /// Run the freeze probe (see `watchdog::FreezeConfig::probe`).
    pub freeze_probe: bool,
    /// Resync an asset that got no snapshot this long after subscribing.
    pub snapshot_timeout: Duration,
    /// Resync an asset that got no data this long while its connection delivered
    /// (per-asset silent stalls; zero disables).
    pub asset_silence: Duration,
    /// Ask for `best_bid_ask`, `new_market`, `market_resolved`.
    pub custom_features: bool,
    /// Gamma scan interval.
    pub discovery_interval: Duration,
    /// How often subscribed assets past their end time are expired and unsubscribed.
    pub expiry_interval: Duration,
    /// How long expired assets (and their books) are kept before removal.
    pub cleanup_grace: Duration,
    /// Connection recycling (pollution, age, forced, repack).
    pub recycler: crate::recycler::RecyclerConfig,
    /// Markets to follow (empty: all).
    pub allow: AllowList,
    /// Record every received frame to this file.
    pub record: Option<std::path::PathBuf>,
    /// Serve the engine from this recording instead of the venue (`--replay`).
    pub replay: Option<crate::replay::ReplayConfig>,
    /// Start a new recording file after this long or this many bytes.
    pub record_rotate: Option<crate::recording::recorder::Rotate>,
    /// Capacity of each worker ring, in records.
    pub ring_capacity: usize,
    /// The stream server (`src/stream/`, docs/stream-api.md); `None`: no feed, no stream.
    pub stream: Option<crate::stream::StreamConfig>,
    /// Publish the feed to NATS JetStream (`src/nats/`, docs/scaling.md); with `stream`
    /// `None` the stream thread runs without a listener.
    pub nats: Option<crate::nats::NatsConfig>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            ws_url: DEFAULT_WS_URL.into(),
            gamma_url: DEFAULT_GAMMA_URL.into(),
            workers: crate::pinning::default_workers(),
            pin_workers: true,
            idle: IdleMode::Adaptive,
            pool: PoolConfig::default(),
            // Every settled group while the worker keeps up; under backlog one in 16, from
            // the measurement in benches/BENCHMARKS.md (check-mode table): a hash costs ~8 µs
            // here (software SHA1 + summary text), so Sampled(4) caps a worker at ~0.5 M
            // updates/s; Sampled(16) adds ~0.5 µs per update and still hashes each book
            // about once per 16 of its own updates. Best bid/ask and crossing are checked at
            // every settled group.
            check: crate::worker::DEFAULT_CHECK_MODE,
            ping_interval: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
            data_silence: Duration::from_secs(120),
            freeze_probe: true,
            snapshot_timeout: Duration::from_secs(10),
            asset_silence: Duration::from_secs(600),
            custom_features: false,
            discovery_interval: Duration::from_secs(60),
            expiry_interval: Duration::from_secs(30),
            cleanup_grace: Duration::from_secs(3600),
            recycler: crate::recycler::RecyclerConfig::default(),
            allow: AllowList::default(),
            record: None,
            record_rotate: None,
            replay: None,
            ring_capacity: 1 << 16,
            stream: None,
            nats: None,
        }
    }
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A URL has the wrong scheme or shape; fix the flag named.
    #[error("invalid {flag}: {url:?}: {why}")]
    Url {
        /// The flag.
        flag: &'static str,
        /// The value.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A number is out of its range; fix the flag named.
    #[error("invalid {flag}: {why}")]
    Range {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl EngineConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// The first problem found, naming the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = |flag: &'static str, url: &str, schemes: &[&str]| {
            let ok = schemes.iter().any(|s| {
                url.strip_prefix(s)
                    .and_then(|r| r.strip_prefix("://"))
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            });
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Url {
                    flag,
                    url: url.to_string(),
                    why: "expected scheme://host[:port][/path]",
                })
            }
        };
        url("--ws-url", &self.ws_url, &["ws", "wss"])?;
        url("--gamma-url", &self.gamma_url, &["http", "https"])?;
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::Range {
                flag: "--workers",
                why: format!("{} is not within 1..=256", self.workers),
            });
        }
        let per = self.pool.target_per_connection;
        if per == 0 || per > self.pool.hard_max_per_connection {
            return Err(ConfigError::Range {
                flag: "--assets-per-connection",
                why: format!(
                    "{per} is not within 1..={}",
                    self.pool.hard_max_per_connection
                ),
            });
        }
        if !self.ring_capacity.is_power_of_two() || self.ring_capacity < 1024 {
            return Err(ConfigError::Range {
                flag: "ring capacity",
                why: format!("{} must be a power of two ≥ 1024", self.ring_capacity),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_flag() {
        EngineConfig::default().validate().unwrap();
        let bad = EngineConfig {
            ws_url: "http://x".into(),
            ..EngineConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("--ws-url"));
        let bad = EngineConfig {
            workers: 0,
            ..EngineConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--workers")
        );
        let mut bad = EngineConfig::default();
        bad.pool.target_per_connection = 501;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--assets-per-connection")
        );
    }
}
