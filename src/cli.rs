//! Command-line flags (clap), each with a `POLYPY_…` environment twin. The names are a
//! contract: monitoring scripts and tests rely on them. `Cli::engine_config` turns them into
//! an [`EngineConfig`].

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::config::{AllowList, EngineConfig, IdleMode};
use crate::orderbook::CheckMode;

/// Hash checking modes for `--hash-check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HashCheckArg {
    /// After every entry and every settled group (most expensive).
    Every,
    /// At every settled same-timestamp group.
    Settled,
    /// At one settled group in `--hash-sample` per worker.
    Sampled,
    /// At every settled group while the worker keeps up, at one in `--hash-sample` while
    /// it has a backlog (the default).
    Adaptive,
    /// Never (best bid/ask and crossing are still checked).
    Off,
}

/// Idle strategies for `--idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IdleArg {
    /// Busy-spin (lowest latency; burns a core per hot thread).
    Spin,
    /// Rate-aware: spin only while the next batch is due within ~15 µs, else park ≤ 5 ms.
    Adaptive,
    /// Park at once (12–50 µs wake-up on small VMs).
    Park,
    /// The previous default: spin 20 µs, yield 200 µs, then park ≤ 1 ms (for comparison).
    Backoff,
}

/// polypy: live, verified L2 order books for every active Polymarket outcome token.
///
/// Discovers markets from the Gamma API, subscribes their tokens on the CLOB market channel,
/// keeps one verified book per token, and serves health, statistics, metrics and books over
/// HTTP. `--simulate` runs everything against a built-in simulated exchange (no network).
#[derive(Parser, Debug, Clone)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Market channel WebSocket URL.
    #[arg(long, env = "POLYPY_WS_URL", default_value = crate::config::DEFAULT_WS_URL)]
    pub ws_url: String,
    /// Gamma API base URL (market discovery).
    #[arg(long, env = "POLYPY_GAMMA_URL", default_value = crate::config::DEFAULT_GAMMA_URL)]
    pub gamma_url: String,
    /// Book worker threads (each owns a shard of the books; pinned to a core when possible).
    /// Default: one per core except the event loop's (cores − 1, at least 1).
    #[arg(long, env = "POLYPY_WORKERS", default_value_t = crate::pinning::default_workers())]
    pub workers: usize,
    /// Assets per WebSocket connection (the venue stops sending beyond ~500).
    #[arg(long, env = "POLYPY_ASSETS_PER_CONNECTION", default_value_t = 200)]
    pub assets_per_connection: usize,
    /// Address the HTTP API binds to.
    #[arg(long, env = "POLYPY_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: String,
    /// Port of the HTTP API (0 picks a free port).
    #[arg(long, env = "POLYPY_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// Do not start the HTTP API.
    #[arg(long, env = "POLYPY_NO_HTTP")]
    pub no_http: bool,
    /// Port of the book stream, `ws://HOST:PORT/ws` on the HTTP API's host (0 picks a free
    /// port; docs/stream-api.md).
    #[arg(long, env = "POLYPY_STREAM_PORT", default_value_t = crate::stream::DEFAULT_STREAM_PORT)]
    pub stream_port: u16,
    /// Do not start the book stream (nor its feed).
    #[arg(long, env = "POLYPY_NO_STREAM")]
    pub no_stream: bool,
    /// Most stream clients at once; more are refused (counted in /stats `stream.refused`).
    #[arg(long, env = "POLYPY_STREAM_MAX_CLIENTS", default_value_t = 1000)]
    pub stream_max_clients: usize,
    /// Publish the feed to NATS JetStream at this URL (`nats://HOST:PORT`; docs/scaling.md).
    /// Works with --no-stream too (the feed is then mirrored for NATS only).
    #[arg(long, env = "POLYPY_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
    /// Subject prefix on NATS (`<prefix>.book.…`; KV bucket `<prefix>_books`).
    #[arg(long, env = "POLYPY_NATS_PREFIX", default_value = crate::nats::DEFAULT_PREFIX)]
    pub nats_prefix: String,
    /// Least milliseconds between two KV snapshot refreshes of one changed book.
    #[arg(long, env = "POLYPY_NATS_SNAPSHOT_MS", default_value_t = 1000)]
    pub nats_snapshot_ms: u64,
    /// Follow only the markets of shard I of N (`I/N`, e.g. `0/2`; a stable hash of the
    /// condition id, see docs/scaling.md).
    #[arg(long, env = "POLYPY_SHARD", value_name = "I/N")]
    pub shard: Option<crate::shard::Shard>,
    /// Seconds between Gamma discovery scans.
    #[arg(long, env = "POLYPY_DISCOVERY_INTERVAL", default_value_t = 60)]
    pub discovery_interval: u64,
    /// Follow only this token id (repeatable); disables full discovery.
    #[arg(
        long = "asset",
        env = "POLYPY_ASSET",
        value_name = "TOKEN_ID",
        value_delimiter = ','
    )]
    pub assets: Vec<String>,
    /// Follow only this market's tokens, by condition id (repeatable).
    #[arg(
        long = "market",
        env = "POLYPY_MARKET",
        value_name = "CONDITION_ID",
        value_delimiter = ','
    )]
    pub markets: Vec<String>,
    /// Record every received frame, and the market metadata, to FILE (JSON lines; zstd when
    /// FILE ends in `.zst`; see docs/recording-format.md).
    #[arg(
        long,
        env = "POLYPY_RECORD",
        value_name = "FILE",
        conflicts_with = "replay"
    )]
    pub record: Option<PathBuf>,
    /// With --record: start a new file after a duration (`1h`, `30m`) or a size (`512MB`);
    /// files are numbered `rec.1.jsonl`, `rec.2.jsonl`, … and each starts with the metadata.
    #[arg(
        long,
        env = "POLYPY_RECORD_ROTATE",
        value_name = "AGE|SIZE",
        requires = "record"
    )]
    pub record_rotate: Option<crate::recording::recorder::Rotate>,
    /// Log level: error, warn, info, debug, trace (RUST_LOG, when set, takes precedence).
    #[arg(long, env = "POLYPY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Book hash verification.
    #[arg(long, env = "POLYPY_HASH_CHECK", value_enum, default_value_t = HashCheckArg::Adaptive)]
    pub hash_check: HashCheckArg,
    /// With `--hash-check sampled`: verify one settled group in N; with `adaptive`, one in N
    /// while a worker has a backlog.
    #[arg(long, env = "POLYPY_HASH_SAMPLE", default_value_t = 16)]
    pub hash_sample: u32,
    /// How hot threads wait when idle.
    #[arg(long, env = "POLYPY_IDLE", value_enum, default_value_t = IdleArg::Adaptive)]
    pub idle: IdleArg,
    /// Do not pin book workers to cores.
    #[arg(long, env = "POLYPY_NO_PIN")]
    pub no_pin: bool,
    /// Ask the venue for `best_bid_ask`, `new_market` and `market_resolved` messages; new
    /// markets are then subscribed at once instead of at the next discovery scan.
    #[arg(long, env = "POLYPY_CUSTOM_FEATURES")]
    pub custom_features: bool,
    /// Seconds without any data message (only PONGs) on a connection with assets before it
    /// is reconnected: the venue's "silent freeze".
    #[arg(
        long,
        env = "POLYPY_DATA_SILENCE",
        default_value_t = 120,
        value_name = "SECS"
    )]
    pub data_silence: u64,
    /// Do not run the freeze probe (one extra connection following the busiest few assets of
    /// every connection, so that a connection that stops delivering while the venue still
    /// sends is caught within seconds). Without it, freezes are caught by rate-aware silence
    /// only (tens of seconds).
    #[arg(long, env = "POLYPY_NO_FREEZE_PROBE")]
    pub no_freeze_probe: bool,
    /// Seconds a subscribed asset may wait for its first snapshot before it is resynced.
    #[arg(
        long,
        env = "POLYPY_SNAPSHOT_TIMEOUT",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub snapshot_timeout: u64,
    /// Seconds an asset may stay silent while its connection delivers before it is resynced
    /// (0 disables).
    #[arg(
        long,
        env = "POLYPY_ASSET_SILENCE",
        default_value_t = 600,
        value_name = "SECS"
    )]
    pub asset_silence: u64,
    /// Seconds between expiry checks (assets past their end time are unsubscribed).
    #[arg(
        long,
        env = "POLYPY_EXPIRY_INTERVAL",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub expiry_interval: u64,
    /// Seconds an expired asset and its book are kept before removal.
    #[arg(
        long,
        env = "POLYPY_CLEANUP_GRACE",
        default_value_t = 3600,
        value_name = "SECS"
    )]
    pub cleanup_grace: u64,
    /// Run against the built-in simulated exchange on loopback (no network needed).
    #[arg(long, env = "POLYPY_SIMULATE", conflicts_with = "replay")]
    pub simulate: bool,
    /// Serve the engine (workers, checks, HTTP) from a recording instead of the venue; no
    /// network, no discovery. Repeat for rotated files, in order.
    #[arg(long, env = "POLYPY_REPLAY", value_name = "FILE")]
    pub replay: Vec<PathBuf>,
    /// With --replay: `1` = the recorded pace, `N` = N times faster, `max` = as fast as the
    /// books take it.
    #[arg(
        long,
        env = "POLYPY_REPLAY_SPEED",
        default_value = "1",
        requires = "replay"
    )]
    pub replay_speed: crate::replay::ReplaySpeed,
    /// With --replay: start over at the end (and keep serving).
    #[arg(long, env = "POLYPY_REPLAY_LOOP", requires = "replay")]
    pub replay_loop: bool,
    /// With `--simulate`: number of markets.
    #[arg(long, env = "POLYPY_SIM_MARKETS", default_value_t = 500)]
    pub sim_markets: usize,
    /// With `--simulate`: messages per second, in total.
    #[arg(long, env = "POLYPY_SIM_RATE", default_value_t = 2000)]
    pub sim_rate: u32,
    /// Test hook: SIGUSR1 makes book worker 0 panic; SIGUSR2 stalls it in its handler (a second
    /// SIGUSR2 releases it). For health tests; not for production.
    #[arg(long, env = "POLYPY_DEBUG_FAULTS", hide = true)]
    pub debug_faults: bool,
}

impl Cli {
    /// The engine configuration these flags describe (not yet validated).
    pub fn engine_config(&self) -> EngineConfig {
        let mut c = EngineConfig {
            ws_url: self.ws_url.clone(),
            gamma_url: self.gamma_url.clone(),
            workers: self.workers,
            pin_workers: !self.no_pin,
            idle: match self.idle {
                IdleArg::Spin => IdleMode::Spin,
                IdleArg::Adaptive => IdleMode::Adaptive,
                IdleArg::Park => IdleMode::Park,
                IdleArg::Backoff => IdleMode::Backoff,
            },
            check: match self.hash_check {
                HashCheckArg::Every => CheckMode::EveryEntry,
                HashCheckArg::Settled => CheckMode::Settled,
                HashCheckArg::Off => CheckMode::Off,
                HashCheckArg::Adaptive => CheckMode::Adaptive(
                    NonZeroU32::new(self.hash_sample).unwrap_or(NonZeroU32::MIN),
                ),
                HashCheckArg::Sampled => {
                    CheckMode::Sampled(NonZeroU32::new(self.hash_sample).unwrap_or(NonZeroU32::MIN))
                }
            },
            discovery_interval: Duration::from_secs(self.discovery_interval.max(1)),
            allow: AllowList {
                assets: self.assets.clone(),
                markets: self.markets.clone(),
                shard: self.shard,
            },
            record: self.record.clone(),
            record_rotate: self.record_rotate,
            replay: (!self.replay.is_empty()).then(|| crate::replay::ReplayConfig {
                files: self.replay.clone(),
                speed: self.replay_speed,
                looped: self.replay_loop,
            }),
            custom_features: self.custom_features,
            data_silence: Duration::from_secs(self.data_silence),
            freeze_probe: !self.no_freeze_probe,
            snapshot_timeout: Duration::from_secs(self.snapshot_timeout.max(1)),
            asset_silence: Duration::from_secs(self.asset_silence),
            expiry_interval: Duration::from_secs(self.expiry_interval.max(1)),
            cleanup_grace: Duration::from_secs(self.cleanup_grace),
            ..EngineConfig::default()
        };
        c.pool.target_per_connection = self.assets_per_connection;
        c.stream = (!self.no_stream).then(|| crate::stream::StreamConfig {
            host: self.http_host.clone(),
            port: self.stream_port,
            max_clients: self.stream_max_clients,
            ..crate::stream::StreamConfig::default()
        });
        c.nats = self.nats_url.as_ref().map(|url| crate::nats::NatsConfig {
            url: url.clone(),
            prefix: self.nats_prefix.clone(),
            snapshot_every: Duration::from_millis(self.nats_snapshot_ms.max(1)),
            ..crate::nats::NatsConfig::default()
        });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_config() {
        let cli = Cli::try_parse_from([
            "polypy",
            "--workers",
            "3",
            "--asset",
            "1",
            "--asset",
            "2",
            "--market",
            "0xa",
            "--hash-check",
            "settled",
            "--assets-per-connection",
            "100",
            "--no-http",
            "--shard",
            "1/2",
            "--nats-url",
            "nats://127.0.0.1:4222",
            "--no-stream",
        ])
        .unwrap();
        let c = cli.engine_config();
        assert_eq!(c.workers, 3);
        assert_eq!(c.allow.assets, vec!["1", "2"]);
        assert_eq!(c.allow.markets, vec!["0xa"]);
        assert_eq!(c.check, CheckMode::Settled);
        assert_eq!(c.pool.target_per_connection, 100);
        assert!(cli.no_http);
        assert_eq!(c.allow.shard.map(|s| s.to_string()).as_deref(), Some("1/2"));
        assert_eq!(
            c.nats.as_ref().map(|n| n.bucket()).as_deref(),
            Some("polypy_books")
        );
        assert!(c.stream.is_none());
        c.validate().unwrap();
    }
}
