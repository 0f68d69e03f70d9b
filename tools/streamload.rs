//! `polypy-streamload`: load test of the book stream, in one process (docs/loadtest.md).
//!
//! Starts the simulated exchange and the engine (with its stream on a free loopback port) in
//! this process, waits until every book is trusted, connects `--clients` stream clients (one
//! mio thread reads them all), each subscribed to `all` or to `--assets-per-client` random
//! books, then measures over `--secs`:
//! - wire → client latency: `now_ns()` on the client thread minus the message's `recv_ns`
//!   (the engine's receive stamp; same process, same clock) for every `delta` and `trade`;
//! - client messages/s and MB/s (all clients together);
//! - the engine's own wire → book latency over the same window (its histogram's cumulative
//!   counts at the window's ends), router drops and the stream's counters.
//!
//! `--clients 0` is the no-client baseline.

use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use polypy::config::{EngineConfig, IdleMode};
use polypy::engine::{Engine, EngineHandle};
use polypy::sim::{Sim, SimConfig};
use polypy::stream::StreamConfig;
use polypy::worker::{CumulativeHistogram, Histogram, noop_factory, now_ns};
use tungstenite::{Message, WebSocket};

/// Load test of the book stream: sim + engine + N stream clients in one process.
#[derive(Debug, Parser)]
#[command(name = "polypy-streamload", version)]
struct Args {
    /// Simulated markets (two books each).
    #[arg(long, default_value_t = 1000)]
    markets: usize,
    /// Simulated messages per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Stream clients (0 = baseline without clients).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Books per client, chosen at random (0 = `all`).
    #[arg(long, default_value_t = 0)]
    assets_per_client: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Seconds between all-trusted + clients subscribed and the window.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Book workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Idle strategy of workers: park, adaptive or spin.
    #[arg(long, default_value = "park")]
    idle: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No stream and no feed at all (with --clients 0): the engine as before the stream.
    #[arg(long)]
    no_stream: bool,
}

/// Latency bounds for the engine's cumulative histogram (ns): 1 µs … 100 ms.
fn bounds() -> Vec<u64> {
    let mut b = Vec::new();
    let mut v = 1_000f64;
    while v < 100e6 {
        b.push(v as u64);
        v *= 1.1;
    }
    b
}

/// Quantile of the difference of two cumulative histograms (linear inside a bucket).
fn window_quantile(a: &CumulativeHistogram, b: &CumulativeHistogram, q: f64) -> f64 {
    let n = b.count.saturating_sub(a.count);
    if n == 0 {
        return 0.0;
    }
    let target = q * n as f64;
    let mut prev_c = 0u64;
    let mut prev_b = 0u64;
    for (i, &bound) in b.bounds_ns.iter().enumerate() {
        let c = b.cumulative[i].saturating_sub(a.cumulative.get(i).copied().unwrap_or(0));
        if c as f64 >= target {
            let inside = (c - prev_c) as f64;
            let frac = if inside > 0.0 {
                (target - prev_c as f64) / inside
            } else {
                1.0
            };
            return prev_b as f64 + frac * (bound - prev_b) as f64;
        }
        prev_c = c;
        prev_b = bound;
    }
    prev_b as f64
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    msgs: AtomicU64,
    bytes: AtomicU64,
    closed: AtomicU64,
    latency: Histogram,
}

fn recv_ns_of(t: &str) -> Option<u64> {
    if !(t.starts_with("{\"type\":\"delta\"") || t.starts_with("{\"type\":\"trade\"")) {
        return None;
    }
    let i = t.find("\"recv_ns\":")? + 10;
    let digits = &t[i..];
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok().filter(|&v| v > 0)
}

fn connect(port: u16, request: &str) -> anyhow::Result<WebSocket<std::net::TcpStream>> {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/ws"), tcp)?;
    ws.send(Message::text(request))?;
    ws.get_mut().set_nonblocking(true)?;
    Ok(ws)
}

fn reader(mut clients: Vec<WebSocket<std::net::TcpStream>>, sh: Arc<Shared>) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    for (k, ws) in clients.iter().enumerate() {
        let fd = ws.get_ref().as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(k), Interest::READABLE)?;
    }
    let mut open = vec![true; clients.len()];
    let mut events = Events::with_capacity(1024);
    while !sh.stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let k = ev.token().0;
            let Some(ws) = clients.get_mut(k) else {
                continue;
            };
            loop {
                match ws.read() {
                    Ok(Message::Text(t)) => {
                        if sh.measuring.load(Ordering::Relaxed) {
                            sh.msgs.fetch_add(1, Ordering::Relaxed);
                            sh.bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
                            if let Some(r) = recv_ns_of(t.as_str()) {
                                sh.latency.record(now_ns().saturating_sub(r));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        break;
                    }
                    Err(_) => {
                        if std::mem::replace(&mut open[k], false) {
                            sh.closed.fetch_add(1, Ordering::Relaxed);
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

fn stat(engine: &EngineHandle) -> serde_json::Value {
    engine
        .stats(Duration::from_secs(5))
        .unwrap_or(serde_json::Value::Null)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = Sim::start(SimConfig {
        markets: args.markets,
        rate_per_sec: args.rate,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .context("starting the sim")?;
    let mut config = EngineConfig {
        ws_url: sim.ws_url(),
        gamma_url: sim.http_url(),
        workers: args.workers,
        pin_workers: false,
        idle: match args.idle.as_str() {
            "spin" => IdleMode::Spin,
            "adaptive" => IdleMode::Adaptive,
            _ => IdleMode::Park,
        },
        stream: Some(StreamConfig {
            host: "127.0.0.1".into(),
            port: 0,
            max_clients: args.clients.max(1) + 10,
            ..StreamConfig::default()
        }),
        ..EngineConfig::default()
    };
    config.pool.target_per_connection = 200;
    anyhow::ensure!(
        !args.no_stream || args.clients == 0,
        "--no-stream needs --clients 0"
    );
    if args.no_stream {
        config.stream = None;
    }
    let engine = Engine::start_with_handlers(config, noop_factory(), true)?;
    let books = (args.markets * 2) as u64;
    let t0 = Instant::now();
    while engine.trusted_books() < books {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "books never all trusted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = engine.stream_port().unwrap_or(0);
    let assets = sim.assets()?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let req = if args.assets_per_client == 0 {
            r#"{"op":"subscribe","channel":"book","all":true}"#.to_string()
        } else {
            let pick: Vec<String> = (0..args.assets_per_client)
                .map(|_| format!("\"{}\"", assets[rng.usize(..assets.len())]))
                .collect();
            format!(
                r#"{{"op":"subscribe","channel":"book","assets":[{}]}}"#,
                pick.join(",")
            )
        };
        clients.push(connect(port, &req)?);
    }
    let sh = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        msgs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        latency: Histogram::new(),
    });
    let s2 = Arc::clone(&sh);
    let reader = std::thread::Builder::new()
        .name("load-clients".into())
        .spawn(move || reader(clients, s2))?;
    std::thread::sleep(Duration::from_secs(args.warmup_secs));

    let b = bounds();
    let lat0 = engine.latency_cumulative(&b);
    let st0 = stat(&engine);
    let stream0 = engine.stream_stats().unwrap_or_default();
    let cpu0 = cpu_ticks();
    let w0 = Instant::now();
    sh.measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(args.secs));
    sh.measuring.store(false, Ordering::Relaxed);
    let secs = w0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks();
    let lat1 = engine.latency_cumulative(&b);
    let st1 = stat(&engine);
    let stream1 = engine.stream_stats().unwrap_or_default();
    sh.stop.store(true, Ordering::Relaxed);
    let _ = reader.join();

    let n = |v: &serde_json::Value, p: &[&str]| -> u64 {
        let mut c = v;
        for k in p {
            c = &c[*k];
        }
        c.as_u64().unwrap_or(0)
    };
    let client = sh.latency.snapshot();
    let us = |ns: f64| ns / 1e3;
    let report = serde_json::json!({
        "markets": args.markets,
        "rate": args.rate,
        "clients": args.clients,
        "stream_enabled": !args.no_stream,
        "assets_per_client": if args.assets_per_client == 0 { "all".to_string() } else { args.assets_per_client.to_string() },
        "secs": secs,
        "engine_msgs_per_s": (n(&st1, &["integrity", "messages"]) - n(&st0, &["integrity", "messages"])) as f64 / secs,
        "engine_wire_to_book_us": {
            "p50": us(window_quantile(&lat0, &lat1, 0.50)),
            "p99": us(window_quantile(&lat0, &lat1, 0.99)),
            "p999": us(window_quantile(&lat0, &lat1, 0.999)),
        },
        "router_dropped": n(&st1, &["router", "messages_dropped"]) - n(&st0, &["router", "messages_dropped"]),
        "resyncs_ring_full": n(&st1, &["integrity", "resyncs", "ring_full"]),
        "client_msgs_per_s": sh.msgs.load(Ordering::Relaxed) as f64 / secs,
        "client_mb_per_s": sh.bytes.load(Ordering::Relaxed) as f64 / secs / 1e6,
        "wire_to_client_us": {
            "samples": client.count,
            "p50": us(client.p50_ns as f64),
            "p99": us(client.p99_ns as f64),
            "p999": us(client.p999_ns as f64),
            "max": us(client.max_ns as f64),
        },
        "stream": {
            "messages_sent": stream1.messages_sent - stream0.messages_sent,
            "conflations": stream1.conflations - stream0.conflations,
            "slow_closes": stream1.slow_closes,
            "feed_gaps": stream1.feed_gaps,
            "seq_errors": stream1.seq_errors,
            "clients_closed": sh.closed.load(Ordering::Relaxed),
        },
        "feed": engine.feed_stats(),
        "machine_busy_pct": cpu_pct(cpu0, cpu1, secs),
        "process_cpu_pct": proc_pct(cpu0, cpu1, secs),
    });
    engine.stop();
    sim.stop();
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// (machine busy ticks, machine total ticks, this process's ticks) from /proc.
fn cpu_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = cpu.iter().sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = me.rsplit(')').next().unwrap_or("");
    // After the name: state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime, stime (tpgid can be -1: parse as signed).
    let f: Vec<i64> = after
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let mine = (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)).max(0) as u64;
    (total - idle, total, mine)
}

fn cpu_pct(a: (u64, u64, u64), b: (u64, u64, u64), _secs: f64) -> f64 {
    let total = (b.1 - a.1) as f64;
    if total == 0.0 {
        return 0.0;
    }
    // 100 % = one core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (b.0 - a.0) as f64 / total * 100.0 * cores
}

fn proc_pct(a: (u64, u64, u64), b: (u64, u64, u64), secs: f64) -> f64 {
    // Clock ticks are 100 Hz on Linux.
    (b.2 - a.2) as f64 / 100.0 / secs * 100.0
}
