//! `polypy-sim`: the simulated Polymarket exchange as a standalone process.
//!
//! Serves the market WebSocket at `ws://127.0.0.1:WS_PORT/ws/market` and Gamma, CLOB REST
//! and the `/sim/...` control endpoints at `http://127.0.0.1:HTTP_PORT` until Ctrl-C.
//!
//! Extra modes:
//! - `--record FILE --record-messages N`: connect internal subscribers to every asset (≤ 500
//!   per connection, ≤ 100 ids per frame), record what the sim sends until N messages went
//!   out, then exit. Gives replay benches a realistic feed.
//! - `--measure-secs S`: one internal reader subscribes up to 500 assets; the sim blocks
//!   instead of dropping it, and the tool reports the messages/s that reader received.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use polypy::sim::{Overflow, Sim, SimConfig, SimHandle};
use tungstenite::{Message, WebSocket};

#[derive(Debug, Parser)]
#[command(
    name = "polypy-sim",
    about = "Simulated Polymarket exchange on loopback"
)]
struct Args {
    /// WebSocket port on 127.0.0.1 (0 = any free port).
    #[arg(long, env = "POLYPY_SIM_WS_PORT", default_value_t = 0)]
    ws_port: u16,
    /// HTTP port on 127.0.0.1 for Gamma, CLOB REST and /sim (0 = any free port).
    #[arg(long, env = "POLYPY_SIM_HTTP_PORT", default_value_t = 0)]
    http_port: u16,
    /// Markets at start (two tokens each).
    #[arg(long, env = "POLYPY_SIM_MARKETS", default_value_t = 100)]
    markets: usize,
    /// Flow messages per second over all markets (0 = as fast as possible).
    #[arg(long, env = "POLYPY_SIM_RATE", default_value_t = 2_000)]
    rate: u64,
    /// RNG seed.
    #[arg(long, env = "POLYPY_SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Share (0..=1) of markets expiring within --expiry-within-secs.
    #[arg(long, default_value_t = 0.02)]
    expiring_share: f64,
    /// Horizon of expiring markets, seconds.
    #[arg(long, default_value_t = 300)]
    expiry_within_secs: u64,
    /// A new market appears every N seconds (0 = never).
    #[arg(long, default_value_t = 30)]
    new_market_every_secs: u64,
    /// Share (0..=1) of new markets that are negative-risk (their `new_market` notice does
    /// not say so; the book hash does).
    #[arg(long, default_value_t = 0.0)]
    new_market_neg_risk_share: f64,
    /// Assets per connection beyond which a connection gets no data.
    #[arg(long, default_value_t = 500)]
    max_assets_per_conn: usize,
    /// Record every frame sent to FILE (JSON lines: recv_ns, conn, frame).
    #[arg(long)]
    record: Option<PathBuf>,
    /// With --record: subscribe internal clients to everything and exit after N messages.
    #[arg(long)]
    record_messages: Option<u64>,
    /// Measure throughput to one reader for S seconds and exit.
    #[arg(long)]
    measure_secs: Option<u64>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, env = "POLYPY_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    env_logger::Builder::new()
        .parse_filters(&args.log_level)
        .init();
    let internal = args.record_messages.is_some() || args.measure_secs.is_some();
    let cfg = SimConfig {
        markets: args.markets,
        rate_per_sec: args.rate,
        seed: args.seed,
        expiring_share: args.expiring_share,
        expiry_within: Duration::from_secs(args.expiry_within_secs.max(1)),
        new_market_every: (args.new_market_every_secs > 0)
            .then(|| Duration::from_secs(args.new_market_every_secs)),
        new_market_neg_risk_share: args.new_market_neg_risk_share,
        max_assets_per_conn: args.max_assets_per_conn,
        ws_port: args.ws_port,
        http_port: args.http_port,
        record: args.record.clone(),
        overflow: if internal {
            Overflow::Block
        } else {
            Overflow::Disconnect
        },
        ..SimConfig::default()
    };
    let sim = Sim::start(cfg).context("starting the simulator")?;
    println!("websocket: {}", sim.ws_url());
    println!("http:      {}", sim.http_url());
    if let Some(secs) = args.measure_secs {
        return measure(&sim, Duration::from_secs(secs));
    }
    if let Some(n) = args.record_messages {
        if args.record.is_none() {
            bail!("--record-messages needs --record FILE");
        }
        return record(sim, n);
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
    }
    sim.stop();
    Ok(())
}

/// An internal subscriber: connects, subscribes `assets` in frames of ≤ 100 ids, reads and
/// discards until `stop`, counting frames.
fn subscriber(
    url: String,
    assets: Vec<String>,
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .context("bad ws url")?
        .to_string();
    let stream = TcpStream::connect(&addr)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let (mut ws, _) =
        tungstenite::client(url.as_str(), stream).map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    for (i, chunk) in assets.chunks(100).enumerate() {
        let frame = if i == 0 {
            serde_json::json!({"assets_ids": chunk, "type": "market", "initial_dump": true})
        } else {
            serde_json::json!({"operation": "subscribe", "assets_ids": chunk})
        };
        ws.send(Message::Text(frame.to_string().into()))?;
    }
    read_until(&mut ws, &stop, &frames);
    Ok(())
}

fn read_until(ws: &mut WebSocket<TcpStream>, stop: &AtomicBool, frames: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(Message::Text(_)) => {
                frames.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn spawn_subscribers(
    sim: &SimHandle,
    per_conn: usize,
    max_conns: usize,
    stop: &Arc<AtomicBool>,
    frames: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<thread::JoinHandle<()>>> {
    let assets = sim.assets()?;
    let mut handles = Vec::new();
    for chunk in assets.chunks(per_conn).take(max_conns) {
        let (url, chunk, stop, frames) = (
            sim.ws_url(),
            chunk.to_vec(),
            Arc::clone(stop),
            Arc::clone(frames),
        );
        handles.push(thread::spawn(move || {
            if let Err(e) = subscriber(url, chunk, stop, frames) {
                log::error!("Internal subscriber failed: error={e}");
            }
        }));
    }
    Ok(handles)
}

fn record(sim: SimHandle, messages: u64) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let handles = spawn_subscribers(&sim, 500, usize::MAX, &stop, &frames)?;
    let started = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(100));
        let sent = sim.messages_sent()?;
        if sent >= messages {
            break;
        }
    }
    sim.pause()?;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let stats = sim.stats()?;
    let sent: u64 = stats.connections.iter().map(|c| c.messages).sum();
    sim.stop();
    println!(
        "recorded {sent} messages in {} frames over {} connections in {:.1} s",
        stats
            .connections
            .iter()
            .map(|c| c.frames + c.pongs)
            .sum::<u64>(),
        stats.connections.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn measure(sim: &SimHandle, secs: Duration) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let handles = spawn_subscribers(sim, 500, 1, &stop, &frames)?;
    let totals = |sim: &SimHandle| -> anyhow::Result<(u64, u64, u64)> {
        let c = sim.sent_counters()?;
        Ok((
            c.iter().map(|c| c.messages).sum(),
            c.iter().map(|c| c.frames).sum(),
            c.iter().map(|c| c.bytes).sum(),
        ))
    };
    thread::sleep(Duration::from_secs(1)); // warm-up: initial dump, queues filling
    let (m0, f0, b0) = totals(sim)?;
    let r0 = frames.load(Ordering::Relaxed);
    let t0 = Instant::now();
    thread::sleep(secs);
    let (m1, f1, b1) = totals(sim)?;
    let r1 = frames.load(Ordering::Relaxed);
    let dt = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let stats = sim.stats()?;
    for h in handles {
        let _ = h.join();
    }
    println!(
        "throughput to one reader: {:.0} messages/s, {:.0} frames/s sent, {:.0} frames/s read, {:.1} MB/s over {:.1} s (generated {}, slow drops {})",
        (m1 - m0) as f64 / dt,
        (f1 - f0) as f64 / dt,
        (r1 - r0) as f64 / dt,
        (b1 - b0) as f64 / dt / 1e6,
        dt,
        stats.generated_messages,
        stats.slow_consumer_drops
    );
    Ok(())
}
