//! A simulated Polymarket exchange on loopback: market WebSocket, Gamma, CLOB REST, ground
//! truth and faults, for tests, benches, `polypy-sim` and `polypy --simulate`.
//!
//! It speaks the real wire protocol (`docs/venue-protocol.md`, the captured
//! fixtures): key orders, string numbers, bids ascending / asks descending, array frames,
//! the trade hash quirk, tick-size changes, subscription limits. Its true books are the
//! foundation's [`crate::orderbook::OrderBook`]s and every hash it sends is
//! [`crate::orderbook::BookHasher`] output, so a client that applies everything it read has
//! books equal to [`SimHandle::truth`].
//!
//! ```no_run
//! use polypy::sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig { markets: 50, rate_per_sec: 5_000, ..SimConfig::default() })?;
//! let assets = sim.assets()?;                 // token ids to subscribe at sim.ws_url()
//! // … connect, subscribe, read …
//! sim.pause()?;                               // returns once every frame is on the wire
//! let truth = sim.truth(&assets[0])?;         // compare with the client's book
//! sim.stop();
//! # Ok::<(), polypy::sim::SimError>(())
//! ```
//!
//! Threads (all joined by [`SimHandle::stop`] and on drop):
//!
//! | thread | module | owns |
//! |---|---|---|
//! | `sim-core` | `core.rs`, `exchange.rs` | markets, true books, subscriptions, connection table; generates the flow |
//! | `sim-ws-accept` | `ws.rs` | the WebSocket listener; joins reader threads |
//! | `sim-ws-r` (one per connection) | `ws.rs` | handshake, client frames, PING |
//! | `sim-ws-w{id}` (one per connection) | `writer.rs` | the socket's write side, faults in order with data |
//! | `sim-http-N` | `http.rs`, `gamma.rs` | Gamma, CLOB REST, `/sim/...` control |
//! | `sim-recorder` (with `record`) | `record.rs` | the recording file |
//!
//! Determinism: one seed gives the same markets, token ids, tick sizes, starting books and the
//! same sequence of flow decisions; timestamps and dates follow the clock, and which message
//! lands in which millisecond depends on timing.

mod calendar;
mod conn;
mod core;
mod exchange;
mod faults;
mod flow;
mod gamma;
mod http;
mod record;
mod truth;
mod universe;
mod wire;
mod writer;
mod ws;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;

pub use conn::ConnTarget;
pub use conn::{ConnStats, Injection};
pub use faults::Faults;
pub use truth::{TruthBook, TruthLevel};

use crate::market::{Price, Size};
use crate::orderbook::BookMeta;
use calendar::Clock;
use core::{Command, Core, CoreClient};
use faults::FaultState;

/// What the generator does when a connection's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop that connection (a slow subscriber) and count it; the generator never blocks.
    #[default]
    Disconnect,
    /// Wait for room (throughput measurements, recordings).
    Block,
}

/// Simulator settings. Every field has a default ([`SimConfig::default`]).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Markets at start (two tokens each). Default 100.
    pub markets: usize,
    /// Flow messages per second over all markets; 0 = as fast as possible. Default 2,000.
    pub rate_per_sec: u64,
    /// Flow messages per minute over all markets, for quiet universes below 1 msg/s; when
    /// non-zero it replaces `rate_per_sec`. Default 0.
    pub rate_per_min: u64,
    /// RNG seed: same seed, same universe and flow decisions. Default 1.
    pub seed: u64,
    /// Share (0..=1) of markets in negative-risk events of several markets. Default 0.15.
    pub neg_risk_share: f64,
    /// Share (0..=1) of markets that expire within `expiry_within` and then resolve.
    /// Default 0.02.
    pub expiring_share: f64,
    /// Horizon of expiring markets. Default 5 min.
    pub expiry_within: Duration,
    /// A new market appears this often (`None` = never). Default 30 s.
    pub new_market_every: Option<Duration>,
    /// Share (0..=1) of new markets that are negative-risk (the `new_market` notice does not
    /// say; the book hash does). Default 0.
    pub new_market_neg_risk_share: f64,
    /// Percent of flow steps that are trades. Default 8.
    pub trade_percent: u32,
    /// Assets one connection may subscribe; beyond it the connection silently gets no data
    /// (docs/venue-protocol.md §2.5). Default 500.
    pub max_assets_per_conn: usize,
    /// Ids one subscribe frame may carry; more and the server closes the socket. Default 100.
    pub max_ids_per_frame: usize,
    /// Delay before that close (the venue's is ~100–200 ms). Default 150 ms.
    pub oversized_subscribe_close_delay: Duration,
    /// Outbound queue length per connection, in messages. Default 65,536.
    pub queue_capacity: usize,
    /// Full-queue policy. Default [`Overflow::Disconnect`].
    pub overflow: Overflow,
    /// Share (0..=1) of writes that batch several queued messages into one array frame.
    /// Default 0.05.
    pub array_frame_share: f64,
    /// WebSocket port on 127.0.0.1 (0 = any). Default 0.
    pub ws_port: u16,
    /// HTTP port on 127.0.0.1 (0 = any). Default 0.
    pub http_port: u16,
    /// HTTP worker threads. Default 2.
    pub http_workers: usize,
    /// Record every frame sent to this file (the foundation's recording format).
    pub record: Option<PathBuf>,
    /// Unix ms the clock starts at (`None` = wall clock). Default `None`.
    pub epoch_ms: Option<u64>,
    /// How long `pause()` waits for the queues to flush. Default 10 s.
    pub flush_timeout: Duration,
    /// How long in-process queries wait for the core. Default 10 s.
    pub request_timeout: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            markets: 100,
            rate_per_sec: 2_000,
            rate_per_min: 0,
            seed: 1,
            neg_risk_share: 0.15,
            expiring_share: 0.02,
            expiry_within: Duration::from_secs(300),
            new_market_every: Some(Duration::from_secs(30)),
            new_market_neg_risk_share: 0.0,
            trade_percent: 8,
            max_assets_per_conn: 500,
            max_ids_per_frame: 100,
            oversized_subscribe_close_delay: Duration::from_millis(150),
            queue_capacity: 65_536,
            overflow: Overflow::Disconnect,
            array_frame_share: 0.05,
            ws_port: 0,
            http_port: 0,
            http_workers: 2,
            record: None,
            epoch_ms: None,
            flush_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), SimError> {
        let share = |v: f64, name: &'static str| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(SimError::Config(format!(
                    "{name} must be within 0..=1, got {v}"
                )))
            }
        };
        share(self.neg_risk_share, "neg_risk_share")?;
        share(self.new_market_neg_risk_share, "new_market_neg_risk_share")?;
        share(self.expiring_share, "expiring_share")?;
        share(self.array_frame_share, "array_frame_share")?;
        if self.queue_capacity == 0 || self.http_workers == 0 {
            return Err(SimError::Config(
                "queue_capacity and http_workers must be positive".into(),
            ));
        }
        if self.expiry_within.is_zero() {
            return Err(SimError::Config("expiry_within must be positive".into()));
        }
        Ok(())
    }
}

/// Simulator errors.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting is out of range; fix the config.
    #[error("invalid sim config: {0}")]
    Config(String),
    /// A port could not be bound; pick another or use 0.
    #[error("binding {what}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The recording file could not be created; check the path.
    #[error("creating recording {path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A thread could not be started; the machine is out of resources.
    #[error("spawning {what}: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The sim has stopped (or its core thread died); start a new one.
    #[error("the simulator is stopped")]
    Stopped,
    /// The core did not answer, or a connection did not flush, in time.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
    },
}

/// One market as the sim knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketInfo {
    /// Gamma id.
    pub gamma_id: u64,
    /// Condition id (`0x…`).
    pub condition_id: String,
    /// Question.
    pub question: String,
    /// Outcome names, aligned with `tokens`.
    pub outcomes: Vec<String>,
    /// Token ids.
    pub tokens: Vec<String>,
    /// Current tick size.
    pub tick_size: Price,
    /// Minimum order size.
    pub min_order_size: Size,
    /// Negative-risk market.
    pub neg_risk: bool,
    /// Closed (resolved).
    pub closed: bool,
    /// End date, Unix ms.
    pub end_date_ms: u64,
}

impl MarketInfo {
    /// The book metadata of token `outcome` (0 or 1), as the hash needs it.
    pub fn book_meta(&self, outcome: usize) -> BookMeta {
        BookMeta {
            asset_id: self.tokens.get(outcome).map_or("", String::as_str).into(),
            market: self.condition_id.as_str().into(),
            min_order_size: self.min_order_size,
            neg_risk: self.neg_risk,
            known: true,
        }
    }
}

/// Counters of the whole sim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimStats {
    /// Flow messages generated (sent or not).
    pub generated_messages: u64,
    /// Connections dropped because their queue overflowed.
    pub slow_consumer_drops: u64,
    /// Updates the truth book refused (always 0 unless the sim has a bug).
    pub truth_errors: u64,
    /// Markets trading.
    pub markets_active: usize,
    /// Markets closed.
    pub markets_closed: usize,
    /// Tokens ever created.
    pub assets: usize,
    /// Flow paused.
    pub paused: bool,
    /// Frames written to the recording.
    pub recorded_frames: u64,
    /// Every connection ever accepted.
    pub connections: Vec<ConnStats>,
}

/// Starts simulators.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Builds the universe, binds 127.0.0.1 ports and starts every thread.
    ///
    /// # Errors
    /// An invalid config, a port in use, an unwritable recording path, a failed spawn.
    pub fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        cfg.validate()?;
        let clock = Clock::new(cfg.epoch_ms);
        let listener =
            TcpListener::bind(("127.0.0.1", cfg.ws_port)).map_err(|source| SimError::Bind {
                what: "websocket port",
                source,
            })?;
        let ws_addr = listener.local_addr().map_err(|source| SimError::Bind {
            what: "websocket port",
            source,
        })?;
        let server =
            tiny_http::Server::http(("127.0.0.1", cfg.http_port)).map_err(|e| SimError::Bind {
                what: "http port",
                source: std::io::Error::other(e.to_string()),
            })?;
        let http_addr = server.server_addr().to_ip().ok_or_else(|| SimError::Bind {
            what: "http port",
            source: std::io::Error::other("not an IP listener"),
        })?;
        let server = http::SharedServer(Arc::new(server));
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(4_096);
        let core = CoreClient::new(cmd_tx, cfg.request_timeout);
        let fault_state = Arc::new(FaultState::new(clock));
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let recorded = Arc::new(AtomicU64::new(0));
        let mut handle = SimHandle {
            ws_addr,
            http_addr,
            core: core.clone(),
            faults: Faults::new(Arc::clone(&fault_state), core.clone()),
            stop: Arc::clone(&stop),
            stop_tx: Some(stop_tx),
            server: server.clone(),
            recorded: Arc::clone(&recorded),
            flush_timeout: cfg.flush_timeout,
            core_thread: None,
            accept_thread: None,
            http_threads: Vec::new(),
            recorder_thread: None,
        };
        let recorder = match &cfg.record {
            None => None,
            Some(path) => {
                let file = File::create(path).map_err(|source| SimError::Record {
                    path: path.clone(),
                    source,
                })?;
                let (tx, rx) = crossbeam_channel::bounded(1 << 16);
                let rec = record::Recorder::new(file, path.clone(), rx, Arc::clone(&recorded));
                handle.recorder_thread = Some(spawn("sim-recorder", move || rec.run())?);
                Some(tx)
            }
        };
        let engine = Core::new(cfg.clone(), clock, cmd_rx);
        handle.core_thread = Some(spawn("sim-core", move || engine.run())?);
        let ctx = Arc::new(ws::WsContext {
            core: core.clone(),
            faults: Arc::clone(&fault_state),
            stop: Arc::clone(&stop),
            stop_rx,
            recorder,
            clock,
            queue_capacity: cfg.queue_capacity,
            max_ids_per_frame: cfg.max_ids_per_frame,
            close_delay: cfg.oversized_subscribe_close_delay,
            array_share: cfg.array_frame_share,
            seed: cfg.seed,
            next_id: AtomicU32::new(1),
        });
        handle.accept_thread = Some(spawn("sim-ws-accept", move || {
            ws::accept_loop(listener, ctx)
        })?);
        for i in 0..cfg.http_workers {
            let worker = http::HttpWorker {
                server: server.clone(),
                core: core.clone(),
                fault_state: Arc::clone(&fault_state),
                faults: handle.faults.clone(),
                stop: Arc::clone(&stop),
                flush_timeout: cfg.flush_timeout,
            };
            let name: &'static str = if i == 0 { "sim-http-0" } else { "sim-http-n" };
            handle.http_threads.push(spawn(name, move || worker.run())?);
        }
        log::info!(
            "Sim started: ws={} http={} markets={}",
            handle.ws_url(),
            handle.http_url(),
            cfg.markets
        );
        Ok(handle)
    }
}

fn spawn(
    name: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, SimError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| SimError::Spawn { what: name, source })
}

/// A running simulator. Dropping it stops it (like [`SimHandle::stop`]).
#[derive(Debug)]
pub struct SimHandle {
    ws_addr: SocketAddr,
    http_addr: SocketAddr,
    core: CoreClient,
    faults: Faults,
    stop: Arc<AtomicBool>,
    stop_tx: Option<Sender<()>>,
    server: http::SharedServer,
    recorded: Arc<AtomicU64>,
    flush_timeout: Duration,
    core_thread: Option<JoinHandle<()>>,
    accept_thread: Option<JoinHandle<()>>,
    http_threads: Vec<JoinHandle<()>>,
    recorder_thread: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `ws://127.0.0.1:PORT/ws/market`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.ws_addr, ws::WS_PATH)
    }

    /// The WebSocket listener's address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// `http://127.0.0.1:PORT` (Gamma, CLOB REST and `/sim/...`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Every market, closed ones included, in creation order.
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn markets(&self) -> Result<Vec<MarketInfo>, SimError> {
        self.core.request(|reply| Command::Markets { reply })
    }

    /// Token ids of the open markets, both tokens of a market next to each other.
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn assets(&self) -> Result<Vec<String>, SimError> {
        Ok(self
            .markets()?
            .into_iter()
            .filter(|m| !m.closed)
            .flat_map(|m| m.tokens)
            .collect())
    }

    /// The true book of one asset now (`None` for an unknown token).
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn truth(&self, asset_id: &str) -> Result<Option<TruthBook>, SimError> {
        let mut books = self.core.request(|reply| Command::Truth {
            asset: Some(asset_id.to_string()),
            reply,
        })?;
        Ok(books.pop())
    }

    /// Every true book now.
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn truth_all(&self) -> Result<Vec<TruthBook>, SimError> {
        self.core
            .request(|reply| Command::Truth { asset: None, reply })
    }

    /// Stops the flow (and market lifecycle) and returns once every connection has written
    /// everything generated before the pause: a client that reads all it is sent then holds
    /// books equal to the truth. Subscriptions still get their snapshots while paused.
    ///
    /// # Errors
    /// [`SimError::Stopped`]; [`SimError::Timeout`] when a connection did not flush within
    /// `flush_timeout` (its client stopped reading).
    pub fn pause(&self) -> Result<(), SimError> {
        self.core.pause(self.flush_timeout)
    }

    /// Restarts the flow.
    ///
    /// # Errors
    /// [`SimError::Stopped`].
    pub fn resume(&self) -> Result<(), SimError> {
        self.core.send(Command::Resume)
    }

    /// The fault switchboard.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// What was sent on each connection so far.
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn sent_counters(&self) -> Result<Vec<ConnStats>, SimError> {
        Ok(self.stats()?.connections)
    }

    /// Messages sent so far over every connection.
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn messages_sent(&self) -> Result<u64, SimError> {
        Ok(self.sent_counters()?.iter().map(|c| c.messages).sum())
    }

    /// All counters.
    ///
    /// # Errors
    /// [`SimError::Stopped`] / [`SimError::Timeout`].
    pub fn stats(&self) -> Result<SimStats, SimError> {
        let mut s = self.core.request(|reply| Command::Stats { reply })?;
        s.recorded_frames = self.recorded_frames();
        Ok(s)
    }

    /// Frames written to the recording so far.
    pub fn recorded_frames(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Stops every thread and joins it; the recording is flushed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_tx = None;
        let _ = self.core.send(Command::Stop);
        if let Some(h) = self.core_thread.take() {
            let _ = h.join();
        }
        // Wake the acceptor out of accept(); it then cuts and joins every connection.
        let _ = TcpStream::connect_timeout(&self.ws_addr, Duration::from_secs(1));
        if let Some(h) = self.accept_thread.take() {
            let _ = h.join();
        }
        for _ in &self.http_threads {
            self.server.0.unblock();
        }
        for h in self.http_threads.drain(..) {
            let _ = h.join();
        }
        if let Some(h) = self.recorder_thread.take() {
            let _ = h.join();
        }
        log::info!("Sim stopped: ws={}", self.ws_addr);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
