//! The engine: builds rings and wakers, starts every thread in dependency order, stops them
//! in reverse. The only file that knows all threads (seed component 10's core; `main.rs` adds
//! signals and HTTP).
//!
//! Start order (seeds): registry (inside the event loop) → book workers → router (their
//! rings) → event loop with the pool → discovery. Stop order: discovery → event loop (which
//! closes every connection and drops the ring producers) → workers (they drain their rings,
//! see the producers abandoned, and return).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use mio::{Poll, Waker};

use crate::config::{EngineConfig, IdleMode};
use crate::connection::{ConnectionConfig, Endpoint};
use crate::discovery::{Discovery, DiscoveryConfig, RetryPolicy};
use crate::event_loop::{
    Command, EventLoop, LoopConfig, LoopShared, LoopSnapshot, MarketView, Stamped, WAKER,
};
use crate::handoff::RouterStats;
use crate::http::{BookAnswer, Components, Health};
use crate::registry::AssetInfo;
use crate::worker::{
    BookView, HandlerFactory, IdleStrategy, ResyncSink, WorkerConfig, WorkerHandle,
    WorkerStatsSnapshot, noop_factory, spawn_workers,
};

mod stats;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid; fix the flag named.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The market channel URL cannot be used (unparsable or its host does not resolve).
    #[error("market channel {url}: {source}")]
    Endpoint {
        /// The URL.
        url: String,
        /// Why.
        source: crate::connection::ConnectionError,
    },
    /// The stream server could not bind.
    #[error(transparent)]
    Stream(#[from] crate::stream::StreamError),
    /// The NATS publisher could not start.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// The OS refused a resource (thread, poll, file).
    #[error("{what}: {source}")]
    Os {
        /// What was being created.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    move |source| EngineError::Os { what, source }
}

/// What an embedding application plugs into the engine.
#[derive(Clone)]
pub struct EngineHooks {
    /// Makes each book worker's [`Handler`](crate::worker::Handler).
    pub handlers: HandlerFactory,
    /// Called on the event loop when markets appear or expire.
    pub lifecycle: Option<crate::event_loop::LifecycleHook>,
    /// Run Gamma discovery (false: the caller adds assets itself).
    pub discover: bool,
}

impl Default for EngineHooks {
    fn default() -> EngineHooks {
        EngineHooks {
            handlers: noop_factory(),
            lifecycle: None,
            discover: true,
        }
    }
}

impl std::fmt::Debug for EngineHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHooks")
            .field("lifecycle", &self.lifecycle.is_some())
            .field("discover", &self.discover)
            .finish_non_exhaustive()
    }
}

/// Entry point for embedding: `Engine::start(config)`.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts the engine with no handler callbacks.
    ///
    /// # Errors
    /// [`EngineError`] naming the step that failed; everything started before it is stopped.
    pub fn start(config: EngineConfig) -> Result<EngineHandle, EngineError> {
        Engine::start_with_handlers(config, noop_factory(), true)
    }

    /// Starts the engine; `factory(i)` builds worker `i`'s handler. With `discover` false the
    /// caller feeds assets itself ([`EngineHandle::add_assets`]).
    ///
    /// # Errors
    /// [`EngineError`] naming the step that failed; everything started before it is stopped.
    pub fn start_with_handlers(
        config: EngineConfig,
        factory: HandlerFactory,
        discover: bool,
    ) -> Result<EngineHandle, EngineError> {
        Engine::start_with(
            config,
            EngineHooks {
                handlers: factory,
                lifecycle: None,
                discover,
            },
        )
    }

    /// Starts the engine with every hook: per-worker book handlers, the lifecycle callback
    /// (`on_new_market` / `on_market_expired`), and whether discovery runs.
    ///
    /// # Errors
    /// [`EngineError`] naming the step that failed; everything started before it is stopped.
    pub fn start_with(
        mut config: EngineConfig,
        hooks: EngineHooks,
    ) -> Result<EngineHandle, EngineError> {
        let mut factory = hooks.handlers.clone();
        // A replay opens no socket and discovers nothing: markets come from the recording.
        let discover = hooks.discover && config.replay.is_none();
        if config.replay.is_some() {
            config.ws_url = "ws://127.0.0.1:9/ws/market".into();
        }
        config.validate()?;
        let started = Instant::now();
        log::info!(
            "Starting engine: workers={} ws={}",
            config.workers,
            config.ws_url
        );
        let mut endpoint =
            Endpoint::parse(&config.ws_url).map_err(|source| EngineError::Endpoint {
                url: config.ws_url.clone(),
                source,
            })?;
        endpoint.resolve().map_err(|source| EngineError::Endpoint {
            url: config.ws_url.clone(),
            source,
        })?;
        let endpoint = Arc::new(endpoint);

        // 1. Registry lives in the event loop; its poll and waker come first so workers can
        //    wake it.
        let poll = Poll::new().map_err(os("creating the event loop poll"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(os("creating the waker"))?);
        let (resync_tx, resync_rx) = bounded(65_536);
        let shutdown = Arc::new(AtomicBool::new(false));

        // The recording opens before any thread starts: a path that cannot be written fails
        // the start with nothing to stop (and its reason is the last thing said).
        let recorder = match &config.record {
            Some(path) => Some(
                crate::recording::recorder::start(crate::recording::recorder::RecorderConfig {
                    rotate: config.record_rotate,
                    ..crate::recording::recorder::RecorderConfig::new(path)
                })
                .map_err(os("opening the recording file"))?,
            ),
            None => None,
        };

        // 2. Workers and 3. router (the rings' write ends).
        let placements = if config.pin_workers {
            crate::pinning::spread_placements(config.workers, crate::pinning::core_count())
        } else {
            Vec::new()
        };
        let pool_cfg = crate::worker::PoolConfig {
            workers: config.workers,
            ring_capacity: config.ring_capacity,
            worker: WorkerConfig {
                check_mode: config.check,
                idle: idle_strategy(config.idle),
                ..WorkerConfig::default()
            },
            placements,
            ..crate::worker::PoolConfig::default()
        };
        // The stream server is bound before the workers start: their feed publishers wake it.
        let mut stream_parts = None;
        let mut nats = config
            .nats
            .clone()
            .map(crate::nats::NatsHandle::start)
            .transpose()?;
        // NATS without the WebSocket stream: the stream thread still mirrors the feed.
        let stream_config = config.stream.clone().or_else(|| {
            nats.as_ref().map(|_| crate::stream::StreamConfig {
                listen: false,
                ..crate::stream::StreamConfig::default()
            })
        });
        if let Some(sc) = &stream_config {
            let mut server = crate::stream::StreamServer::bind(sc.clone())?;
            if let Some(sink) = nats.as_mut().and_then(crate::nats::NatsHandle::take_sink) {
                server = server.with_nats(sink);
            }
            let (feed, wrapped, consumers) =
                crate::feed::Feed::new(config.workers, sc.feed_capacity, factory, server.wake());
            factory = wrapped;
            stream_parts = Some((server, feed, consumers));
        }
        let sink = ResyncSink::new(resync_tx).with_waker(Arc::clone(&waker));
        let (router, workers) = spawn_workers(&pool_cfg, &factory, &sink, &shutdown)
            .map_err(os("starting book workers"))?;
        log::info!("Book workers started: count={}", workers.len());
        let router_stats = router.stats();
        let (stream, feed) = match stream_parts {
            Some((server, feed, consumers)) => (
                Some(
                    server
                        .spawn(consumers)
                        .map_err(os("starting the stream server"))?,
                ),
                Some(feed),
            ),
            None => (None, None),
        };

        // 4. Event loop with the pool.
        let (cmd_tx, cmd_rx) = bounded(4096);
        let shared = Arc::new(LoopShared::default());
        let mut connection = ConnectionConfig {
            ping_interval: config.ping_interval,
            silence_timeout: config.silence_timeout,
            ..ConnectionConfig::default()
        };
        if endpoint.scheme() == crate::connection::Scheme::Wss {
            connection.tls =
                Some(
                    crate::connection::webpki_client_config().map_err(|e| EngineError::Os {
                        what: "building the TLS configuration",
                        source: std::io::Error::other(e),
                    })?,
                );
        }
        let loop_config = LoopConfig {
            connection,
            reconnect: crate::connection::ReconnectConfig::default(),
            data_silence: config.data_silence,
            snapshot_timeout: config.snapshot_timeout,
            asset_silence: config.asset_silence,
            custom_features: config.custom_features,
            // Commands, resync requests and the replay feeder wake the poll, so an idle loop
            // needs no short timeout: 10 ms (1 ms in a replay, whose frames wait for ring
            // room between iterations), instead of a thousand wake-ups a second.
            idle_poll: match config.idle {
                IdleMode::Spin => Duration::ZERO,
                _ if config.replay.is_some() => Duration::from_millis(1),
                _ => Duration::from_millis(10),
            },
            expiry_interval: config.expiry_interval,
            cleanup_grace: config.cleanup_grace,
            lifecycle_hook: hooks.lifecycle.clone(),
            recycler: config.recycler.clone(),
            allow: config.allow.clone(),
            latency_sources: workers.iter().map(|w| Arc::clone(w.stats())).collect(),
            freeze: crate::watchdog::FreezeConfig {
                // A replay has no venue to probe.
                probe: config.freeze_probe && config.replay.is_none(),
                ..crate::watchdog::FreezeConfig::default()
            },
        };
        let ev = EventLoop::new(
            poll,
            endpoint,
            loop_config,
            crate::pool::PoolPlanner::new(config.pool.clone()),
            router,
            cmd_rx,
            resync_rx,
            Arc::clone(&shared),
            recorder.as_ref().map(|(tx, _)| tx.clone()),
        )
        .map_err(os("building the event loop"))?;
        let (ev, replay_rx) = match &config.replay {
            Some(_) => {
                let (tx, rx) = bounded(16);
                let progress = Arc::new(crate::replay::ReplayProgress::default());
                let feed = crate::event_loop::ReplayFeed::new(rx, Arc::clone(&progress));
                (ev.with_replay(feed), Some((tx, progress)))
            }
            None => (ev, None),
        };
        let loop_thread = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || ev.run())
            .map_err(os("starting the event loop"))?;
        log::info!("Event loop started");
        let replay = match (&config.replay, replay_rx) {
            (Some(cfg), Some((tx, progress))) => {
                let stop = Arc::new(AtomicBool::new(false));
                let thread = crate::replay::spawn(
                    cfg.clone(),
                    tx,
                    Arc::clone(&waker),
                    Arc::clone(&progress),
                    Arc::clone(&stop),
                )
                .map_err(os("starting the replay"))?;
                log::info!(
                    "Replaying: files={:?} speed={:?} loop={}",
                    cfg.files,
                    cfg.speed,
                    cfg.looped
                );
                Some(Replay {
                    cfg: cfg.clone(),
                    progress,
                    stop,
                    thread: Some(thread),
                })
            }
            _ => None,
        };

        let mut handle = EngineHandle {
            commands: cmd_tx,
            waker,
            loop_thread: Some(loop_thread),
            workers,
            router_stats,
            shared,
            discovery: None,
            shutdown,
            started,
            recorder,
            stream,
            feed,
            replay,
            nats,
            shard: config.allow.shard,
        };

        // 5. Discovery.
        if discover {
            let notify_waker = Arc::clone(&handle.waker);
            let d = Discovery::spawn(
                DiscoveryConfig {
                    gamma_url: config.gamma_url.clone(),
                    interval: config.discovery_interval,
                    allow: config.allow.clone(),
                    timeout: Duration::from_secs(10),
                    retry: RetryPolicy::default(),
                },
                handle.commands.clone(),
                Arc::new(move || {
                    let _ = notify_waker.wake();
                }),
            );
            match d {
                Ok(d) => handle.discovery = Some(d),
                Err(e) => {
                    handle.stop();
                    return Err(EngineError::Os {
                        what: "starting discovery",
                        source: e,
                    });
                }
            }
            log::info!(
                "Discovery started: gamma={} interval_s={}",
                config.gamma_url,
                config.discovery_interval.as_secs()
            );
        }
        Ok(handle)
    }
}

fn idle_strategy(mode: IdleMode) -> IdleStrategy {
    match mode {
        IdleMode::Spin => IdleStrategy::Spin,
        IdleMode::Adaptive => IdleStrategy::default(),
        IdleMode::Park => IdleStrategy::Park(Duration::from_millis(1)),
        IdleMode::Backoff => IdleStrategy::backoff(),
    }
}

type Recorder = (crate::recording::recorder::RecorderTx, JoinHandle<()>);

/// A running engine.
#[derive(Debug)]
pub struct EngineHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    loop_thread: Option<JoinHandle<()>>,
    workers: Vec<WorkerHandle>,
    router_stats: Arc<RouterStats>,
    shared: Arc<LoopShared>,
    discovery: Option<Discovery>,
    shutdown: Arc<AtomicBool>,
    started: Instant,
    recorder: Option<Recorder>,
    stream: Option<crate::stream::StreamHandle>,
    feed: Option<crate::feed::Feed>,
    replay: Option<Replay>,
    nats: Option<crate::nats::NatsHandle>,
    shard: Option<crate::shard::Shard>,
}

/// `--replay`: the feeder thread and its progress.
#[derive(Debug)]
struct Replay {
    cfg: crate::replay::ReplayConfig,
    progress: Arc<crate::replay::ReplayProgress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    fn send(&self, cmd: Command) -> bool {
        let ok = self.commands.try_send(cmd).is_ok();
        let _ = self.waker.wake();
        ok
    }

    /// Follows these assets (embedding without discovery, tests, `--asset` without Gamma).
    pub fn add_assets(&self, assets: Vec<AssetInfo>) -> bool {
        self.send(Command::AddAssets(assets))
    }

    /// Resubscribes tokens for fresh snapshots.
    pub fn resync(&self, tokens: Vec<String>) -> bool {
        self.send(Command::Resync(tokens))
    }

    /// Stops following tokens (unsubscribes them).
    pub fn expire(&self, tokens: Vec<String>) -> bool {
        self.send(Command::ExpireTokens(tokens))
    }

    /// Replaces a connection make-before-break (seed `force_recycle`); `conn` is the number
    /// in `/stats` `pool.stats[].connection_id` (`conn-N`).
    pub fn force_recycle(&self, conn: u32) -> bool {
        self.send(Command::ForceRecycle(conn))
    }

    /// Fault injection for tests and drills: the next frame the engine sends on connection
    /// `conn` fails as if the socket's write side broke (its read side keeps working). The
    /// engine must handle it like any lost connection. Returns false if the loop is gone.
    pub fn inject_send_failure(&self, conn: u32) -> bool {
        self.send(Command::InjectSendFailure(conn))
    }

    /// The event loop's statistics as of now: the loop builds and publishes a snapshot and
    /// answers with it (`None` when it did not answer within `deadline`). For callers that
    /// need the state after their own actions; readers that poll use
    /// [`published_snapshot`](Self::published_snapshot), which never asks the loop.
    pub fn loop_snapshot(&self, deadline: Duration) -> Option<Arc<Stamped<LoopSnapshot>>> {
        let (tx, rx) = bounded(1);
        self.send(Command::Snapshot(tx));
        rx.recv_timeout(deadline).ok()
    }

    /// The snapshot the loop last published (every
    /// [`SNAPSHOT_INTERVAL`](crate::event_loop::published::SNAPSHOT_INTERVAL)), if it is at
    /// most `max_age` older than due; `None` means the loop is stuck or gone. Never asks the
    /// loop, so readers cannot slow it down however often they read.
    pub fn published_snapshot(&self, max_age: Duration) -> Option<Arc<Stamped<LoopSnapshot>>> {
        let s = self.shared.published.snapshot()?;
        (s.at.elapsed() <= max_age + crate::event_loop::published::SNAPSHOT_INTERVAL).then_some(s)
    }

    /// The followed markets, as the loop last published them (rebuilt when the registry
    /// changes). `None` before the loop's first publication.
    pub fn markets(&self) -> Option<Arc<Stamped<Vec<MarketView>>>> {
        self.shared.published.markets()
    }

    /// Each worker's statistics.
    pub fn worker_stats(&self) -> Vec<WorkerStatsSnapshot> {
        self.workers.iter().map(|w| w.stats().snapshot()).collect()
    }

    /// Router counters.
    pub fn router_stats(&self) -> crate::handoff::RouterStatsSnapshot {
        self.router_stats.snapshot()
    }

    /// Event-loop gauges.
    pub fn shared(&self) -> &LoopShared {
        &self.shared
    }

    /// Discovery counters, when discovery runs.
    pub fn discovery_stats(&self) -> Option<&crate::discovery::DiscoveryStats> {
        self.discovery.as_ref().map(|d| &*d.stats)
    }

    /// A book by token id, answered by its worker within `deadline`. `Ok(None)`: unknown.
    ///
    /// # Errors
    /// A message when the owner did not answer in time.
    pub fn book(
        &self,
        token: &str,
        depth: usize,
        deadline: Duration,
    ) -> Result<Option<BookView>, String> {
        let (tx, rx) = bounded(1);
        self.send(Command::Locate(token.to_string(), tx));
        let located = rx
            .recv_timeout(deadline)
            .map_err(|_| "event loop did not answer in time".to_string())?;
        let Some((asset, worker)) = located else {
            return Ok(None);
        };
        let w = self.workers.get(worker).ok_or("no such worker")?;
        w.query(asset, depth, deadline).map_err(|e| e.to_string())
    }

    /// Wire → applied latency over every worker.
    pub fn latency(&self) -> crate::worker::HistogramSnapshot {
        let parts: Vec<&crate::worker::Histogram> = self
            .workers
            .iter()
            .map(|w| w.stats().latency_histogram())
            .collect();
        crate::worker::Histogram::merged(&parts)
    }

    /// Wire → applied latency over every worker, as cumulative counts at `bounds_ns`.
    pub fn latency_cumulative(&self, bounds_ns: &[u64]) -> crate::worker::CumulativeHistogram {
        let mut all = crate::worker::CumulativeHistogram::default();
        for w in &self.workers {
            all.merge(&w.stats().latency_histogram().cumulative(bounds_ns));
        }
        all
    }

    /// Trusted books over every worker.
    pub fn trusted_books(&self) -> u64 {
        self.worker_stats().iter().map(|w| w.trusted_books).sum()
    }

    /// True once discovery finished its first scan (or when discovery is off).
    pub fn first_discovery_done(&self) -> bool {
        self.discovery_stats()
            .is_none_or(|d| d.first_scan_done.load(Ordering::Acquire))
    }

    /// `/stats` in the seeds' structure (`running`, `registry`, `pool`, `router`, `workers`,
    /// `lifecycle`, `recycler`) plus `integrity`. `None` when the event loop did not answer
    /// within `deadline`.
    pub fn stats(&self, deadline: Duration) -> Option<serde_json::Value> {
        Some(self.stats_of(&*self.loop_snapshot(deadline)?))
    }

    /// [`stats`](Self::stats) from the published snapshot (see
    /// [`published_snapshot`](Self::published_snapshot)): what `/stats` serves.
    pub fn published_stats(&self, max_age: Duration) -> Option<serde_json::Value> {
        Some(self.stats_of(&*self.published_snapshot(max_age)?))
    }

    /// The stream server's bound port, when it runs with a listener.
    pub fn stream_port(&self) -> Option<u16> {
        self.stream
            .as_ref()
            .filter(|s| s.is_listening())
            .map(crate::stream::StreamHandle::port)
    }

    /// The NATS publisher's counters, when `--nats-url` is given.
    pub fn nats_stats(&self) -> Option<crate::nats::NatsStatsSnapshot> {
        self.nats.as_ref().map(|n| n.stats().snapshot())
    }

    /// `--shard I/N`, when given.
    pub fn shard(&self) -> Option<crate::shard::Shard> {
        self.shard
    }

    /// The stream server's counters, when it runs.
    pub fn stream_stats(&self) -> Option<crate::stream::StreamStatsSnapshot> {
        self.stream.as_ref().map(|s| s.stats().snapshot())
    }

    /// The feed's counters (summed over workers), when the stream runs.
    pub fn feed_stats(&self) -> Option<crate::feed::FeedStatsSnapshot> {
        self.feed.as_ref().map(crate::feed::Feed::stats)
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every worker alive and progressing.
    pub fn workers_healthy(&self) -> bool {
        !self.workers.is_empty() && self.workers.iter().all(WorkerHandle::is_alive)
    }

    /// Health in the seeds' shape.
    pub fn health(&self) -> Health {
        let running = self.shared.running.load(Ordering::Acquire);
        let beat = crate::worker::now_ns()
            .saturating_sub(self.shared.heartbeat_ns.load(Ordering::Relaxed));
        let loop_alive = running && beat < 2_000_000_000;
        let components = Components {
            registry: running,
            pool: self.shared.active_connections.load(Ordering::Relaxed) > 0,
            router: loop_alive,
            workers: self.workers_healthy(),
            lifecycle: self
                .discovery_stats()
                .is_none_or(|d| d.running.load(Ordering::Relaxed)),
            recycler: running,
            // Informational: NATS down is degraded service, not an unhealthy engine.
            nats: self.nats_stats().map(|n| n.connected),
        };
        // As the seeds: healthy when running and every worker is healthy; a pool without
        // connections is reported but does not fail health (start-up grace).
        let healthy = loop_alive && components.workers;
        Health {
            healthy,
            timestamp: jiff::Timestamp::now().to_string(),
            components,
            replay: self.replay_progress(),
        }
    }

    /// `--replay`: what is replayed and how far it is (`None` when live).
    pub fn replay_progress(&self) -> Option<serde_json::Value> {
        self.replay.as_ref().map(|r| r.progress.to_json(&r.cfg))
    }

    /// `--replay`: every pass of the recording has been processed by the event loop.
    pub fn replay_done(&self) -> bool {
        self.replay
            .as_ref()
            .is_some_and(|r| r.progress.done.load(Ordering::Acquire))
    }

    /// `--replay`: frames the event loop has taken from the recording.
    pub fn replay_frames(&self) -> Option<u64> {
        self.replay
            .as_ref()
            .map(|r| r.progress.frames.load(Ordering::Relaxed))
    }

    /// The recorder's counters, when recording (`--record`).
    pub fn recorder_stats(&self) -> Option<&Arc<crate::recording::recorder::RecorderStats>> {
        self.recorder.as_ref().map(|(tx, _)| tx.stats())
    }

    /// Stops every thread in reverse start order and returns within the workers' drain time.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(r) = &mut self.replay {
            r.stop.store(true, Ordering::Relaxed);
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
        }
        if let Some(d) = self.discovery.take() {
            d.stop();
            log::info!("Discovery stopped");
        }
        if let Some(t) = self.loop_thread.take() {
            let _ = self.commands.send(Command::Stop);
            let _ = self.waker.wake();
            let _ = t.join();
            log::info!("Event loop stopped");
        }
        self.shutdown.store(true, Ordering::Release);
        let had_workers = !self.workers.is_empty();
        for w in self.workers.drain(..) {
            w.unpark();
            let id = w.id();
            if w.join().is_err() {
                log::error!("Book worker had panicked: worker={id}");
            }
        }
        if had_workers {
            log::info!("Book workers stopped");
        }
        if let Some(mut s) = self.stream.take() {
            s.stop();
        }
        if let Some(mut n) = self.nats.take() {
            n.stop();
        }
        if let Some((tx, t)) = self.recorder.take() {
            drop(tx);
            let _ = t.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Converts a worker's book view into the HTTP answer.
pub fn book_answer(v: &BookView) -> BookAnswer {
    let raw = |l: &crate::orderbook::Level| (l.price.raw(), l.size.raw());
    BookAnswer {
        asset_id: v.asset_id.clone(),
        market: v.market.clone(),
        trusted: v.trusted,
        reason: v.reason.map(crate::orderbook::UntrustReason::as_str),
        timestamp: (v.timestamp != 0).then_some(v.timestamp),
        hash: (v.timestamp != 0).then(|| v.hash.clone()),
        tick_size: v.tick_size.map(|t| t.raw()),
        bids: v.bids.iter().map(raw).collect(),
        asks: v.asks.iter().map(raw).collect(),
        last_trade_price: v.last_trade.map(|q| q.to_text()),
        update_count: v.update_count,
    }
}
