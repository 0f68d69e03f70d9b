//! The application (seed component 10, the orchestrator): turns the command line into a
//! running engine, serves HTTP, logs progress, and stops everything on SIGINT/SIGTERM.
//!
//! THREAD: the main thread. It starts, in dependency order, the simulated exchange (with
//! `--simulate`), the engine (registry → book workers → router → event loop and pool →
//! discovery), then HTTP last; it then waits for a signal while logging one progress line
//! every few seconds; on a signal it stops HTTP first and the engine in reverse order,
//! prints the final statistics line, and returns. A stop that takes longer than
//! [`HARD_STOP`] ends the process with exit code 2.
//!
//! | file | what |
//! |---|---|
//! | `api.rs` | [`EngineApi`]: the engine as the HTTP API sees it |
//! | `metrics.rs` | `/metrics` rendering (prometheus-client) |
//! | `progress.rs` | the periodic progress line |

mod api;
mod metrics;
mod progress;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{RecvTimeoutError, bounded};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

pub use api::{EngineApi, HttpStatus, READY_TRUSTED_SHARE};
pub use metrics::MetricsData;
pub use progress::Progress;

use crate::cli::Cli;
use crate::engine::Engine;
use crate::http::HttpServer;
use crate::sim::{Sim, SimConfig, SimHandle};
use crate::worker::{Handler, HandlerFactory, noop_factory};

/// Longest a stop may take before the process exits anyway.
pub const HARD_STOP: Duration = Duration::from_secs(30);

/// Interval of the progress line.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the application until SIGINT/SIGTERM. `Ok` on a clean stop.
///
/// # Errors
/// A start-up step failed; everything already started has been stopped.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = cli.engine_config();
    let sim = if cli.simulate {
        let sim = start_sim(&cli)?;
        config.ws_url = sim.ws_url();
        config.gamma_url = sim.http_url();
        Some(sim)
    } else {
        None
    };

    // Signals first, so a signal during start-up is not lost.
    let (sig_tx, sig_rx) = bounded::<i32>(16);
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2])
        .context("installing signal handlers")?;
    let signals_handle = signals.handle();
    let signal_thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if sig_tx.send(s).is_err() {
                    break;
                }
            }
        })
        .context("starting the signal thread")?;

    let faults = Arc::new(WorkerFaults::default());
    let factory = if cli.debug_faults {
        log::warn!(
            "Debug faults enabled: SIGUSR1 makes book worker 0 panic, \
             SIGUSR2 stalls it (again: releases it)"
        );
        fault_factory(Arc::clone(&faults))
    } else {
        noop_factory()
    };
    let engine = match Engine::start_with_handlers(config.clone(), factory, true) {
        Ok(e) => e,
        Err(e) => {
            signals_handle.close();
            let _ = signal_thread.join();
            if let Some(sim) = sim {
                sim.stop();
            }
            return Err(anyhow::Error::new(e).context("starting the engine"));
        }
    };

    // HTTP last: a failure is logged and shown in /stats; the engine keeps running.
    let http_status = Arc::new(HttpStatus::default());
    let api = Arc::new(EngineApi::new(engine, Arc::clone(&http_status)));
    let http = if cli.no_http {
        log::info!("HTTP disabled (--no-http)");
        None
    } else {
        let addr = format!("{}:{}", cli.http_host, cli.http_port);
        match HttpServer::start(&addr, Arc::clone(&api)) {
            Ok(server) => {
                http_status.up.store(true, Ordering::Relaxed);
                log::info!("HTTP listening: addr=http://{}", server.addr());
                Some(server)
            }
            Err(e) => {
                log::error!("HTTP server not started, engine keeps running: {e}");
                let _ = http_status.error.set(e.to_string());
                None
            }
        }
    };
    match &config.replay {
        Some(r) => log::info!("Started: replaying {:?}; stop with Ctrl-C", r.files),
        None => log::info!(
            "Started: markets from {}{}; stop with Ctrl-C",
            config.gamma_url,
            if sim.is_some() {
                " (simulated exchange)"
            } else {
                ""
            }
        ),
    }

    // Wait for a stop signal, logging progress.
    let mut progress = progress::Progress::new();
    let mut next = Instant::now() + Duration::from_secs(1);
    let signal = loop {
        match sig_rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(SIGUSR1) if cli.debug_faults => {
                log::warn!("SIGUSR1: book worker 0 will panic at its next record");
                faults.panic.store(0, Ordering::Release);
            }
            Ok(SIGUSR2) if cli.debug_faults => {
                let stalled = faults.stall.load(Ordering::Acquire) == 0;
                if stalled {
                    log::warn!("SIGUSR2: book worker 0 released");
                    faults.stall.store(usize::MAX, Ordering::Release);
                } else {
                    log::warn!("SIGUSR2: book worker 0 will stall at its next record");
                    faults.stall.store(0, Ordering::Release);
                }
            }
            Ok(s @ (SIGUSR1 | SIGUSR2)) => {
                log::info!("Signal {s} ignored (start with --debug-faults to use it)");
            }
            Ok(s) => break s,
            Err(RecvTimeoutError::Timeout) => {
                progress.log(api.engine());
                next = Instant::now() + PROGRESS_EVERY;
            }
            Err(RecvTimeoutError::Disconnected) => break SIGTERM,
        }
    };
    let name = if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    log::info!("{name} received: stopping (HTTP, discovery, event loop, workers)");
    let stop_started = Instant::now();
    let watchdog = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(|| {
            std::thread::sleep(HARD_STOP);
            log::error!("Stop took longer than {}s: exiting", HARD_STOP.as_secs());
            std::process::exit(2);
        });
    if let Err(e) = watchdog {
        log::warn!("No stop watchdog ({e}); stopping without a hard bound");
    }

    if let Some(server) = http {
        server.stop();
        log::info!("HTTP stopped");
    }
    let final_line = progress.final_line(api.engine());
    let engine = match Arc::try_unwrap(api) {
        Ok(api) => api.into_engine(),
        Err(_) => anyhow::bail!("internal: the HTTP server still holds the engine"),
    };
    // A stalled debug fault would hold its worker forever.
    faults.stall.store(usize::MAX, Ordering::Release);
    engine.stop();
    if let Some(sim) = sim {
        sim.stop();
        log::info!("Simulated exchange stopped");
    }
    signals_handle.close();
    let _ = signal_thread.join();
    log::info!(
        "Stopped in {} ms. Final: {final_line}",
        stop_started.elapsed().as_millis()
    );
    Ok(())
}

fn start_sim(cli: &Cli) -> anyhow::Result<SimHandle> {
    let cfg = SimConfig {
        markets: cli.sim_markets,
        rate_per_sec: u64::from(cli.sim_rate),
        ..SimConfig::default()
    };
    log::info!(
        "Starting simulated exchange: markets={} assets={} rate={}/s",
        cfg.markets,
        cfg.markets * 2,
        cfg.rate_per_sec
    );
    let sim = Sim::start(cfg).context("starting the simulated exchange")?;
    log::info!(
        "Simulated exchange up: ws={} http={}",
        sim.ws_url(),
        sim.http_url()
    );
    Ok(sim)
}

/// Which book worker a `--debug-faults` hook acts on (`usize::MAX`: none).
#[derive(Debug)]
struct WorkerFaults {
    /// This worker panics at its next record (SIGUSR1).
    panic: AtomicUsize,
    /// This worker blocks in its handler until released (SIGUSR2), as a handler that never
    /// returns would: its heartbeat ages and `/health` turns 503.
    stall: AtomicUsize,
}

impl Default for WorkerFaults {
    fn default() -> WorkerFaults {
        WorkerFaults {
            panic: AtomicUsize::new(usize::MAX),
            stall: AtomicUsize::new(usize::MAX),
        }
    }
}

/// Handlers that panic or stall in a chosen worker at its next record (the `--debug-faults`
/// hooks the health tests use to make a worker fail).
fn fault_factory(faults: Arc<WorkerFaults>) -> HandlerFactory {
    Arc::new(move |worker| {
        Box::new(FaultHandler {
            worker,
            faults: Arc::clone(&faults),
        })
    })
}

struct FaultHandler {
    worker: usize,
    faults: Arc<WorkerFaults>,
}

impl FaultHandler {
    fn check(&self) {
        if self.faults.panic.load(Ordering::Relaxed) == self.worker {
            panic!("debug fault: book worker {} told to fail", self.worker);
        }
        // A test hook that blocks on purpose; polled so that release and shutdown end it.
        while self.faults.stall.load(Ordering::Acquire) == self.worker {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
impl Handler for FaultHandler {
    fn on_snapshot(&mut self, _: crate::market::AssetId, _: &crate::orderbook::OrderBook) {
        self.check();
    }
    fn on_change(
        &mut self,
        _: crate::market::AssetId,
        _: &crate::market::Record,
        _: &crate::orderbook::OrderBook,
    ) {
        self.check();
    }
}
