//! `polypy-natsload`: load test of the NATS publisher, in one process (docs/loadtest.md).
//!
//! Needs a `nats-server` with JetStream: `--nats-url`, or it starts `nats-server -js` itself
//! on a free loopback port (the Debian package). Two modes:
//!
//! - engine (default): the simulated exchange and the engine (`--no-stream` + NATS) in this
//!   process, plus a NATS consumer (`polypy::nats::consumer`) on every book subject. Over
//!   `--secs` it reports the engine's msgs/s, feed events/s, NATS publications/s and drops,
//!   and wire → NATS consumer latency: the consumer's `now_ns()` minus each delta's
//!   `recv_ns` (the engine's receive stamp; same process, same clock).
//! - `--raw`: the publisher alone: messages of the stream's size offered to the sink as fast
//!   as `try_send` takes them, for the publish rate the path sustains and what it drops.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use polypy::config::{EngineConfig, IdleMode};
use polypy::engine::Engine;
use polypy::nats::consumer::{ConsumerConfig, NatsConsumer};
use polypy::nats::{NatsConfig, NatsHandle, Offer, Out, Subjects};
use polypy::sim::{Sim, SimConfig};
use polypy::worker::noop_factory;

/// Load test of the NATS publisher (sim + engine + NATS consumer, or the publisher alone).
#[derive(Debug, Parser)]
#[command(name = "polypy-natsload", version)]
struct Args {
    /// NATS server (default: start `nats-server -js` on a free loopback port).
    #[arg(long)]
    nats_url: Option<String>,
    /// Simulated markets (two books each).
    #[arg(long, default_value_t = 1000)]
    markets: usize,
    /// Simulated messages per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Book workers.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The publisher alone: offer this many messages per second (0 = as fast as possible).
    #[arg(long)]
    raw: Option<u64>,
    /// No consumer (publish side only).
    #[arg(long)]
    no_consumer: bool,
    /// A plain subscriber that only reads each delta's `recv_ns` (transport latency) instead
    /// of the book-rebuilding consumer.
    #[arg(long)]
    plain_consumer: bool,
}

/// A plain subscriber on `load.book.>` on its own thread: counts messages and keeps the
/// wire → here latency of each delta while `measuring`.
fn plain_consumer(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    measuring: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<(Vec<u64>, u64)>> {
    use futures_util::StreamExt as _;
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(std::thread::spawn(move || {
        rt.block_on(async move {
            let (mut lat, mut n) = (Vec::new(), 0u64);
            let Ok(client) = async_nats::ConnectOptions::new()
                .subscription_capacity(1 << 18)
                .connect(url.as_str())
                .await
            else {
                return (lat, n);
            };
            let Ok(mut sub) = client.subscribe("load.book.>").await else {
                return (lat, n);
            };
            let finder = memchr::memmem::Finder::new(b"\"recv_ns\":");
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_millis(100), sub.next()).await
                else {
                    continue;
                };
                let now = polypy::worker::now_ns();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                n += 1;
                let p = &m.payload[..];
                if !p.starts_with(b"{\"type\":\"delta\"") {
                    continue;
                }
                if let Some(i) = finder.find(p) {
                    let digits = p[i + 10..].iter().take_while(|b| b.is_ascii_digit());
                    let r = digits.fold(0u64, |a, &b| a * 10 + u64::from(b - b'0'));
                    if r > 0 {
                        lat.push(now.saturating_sub(r));
                    }
                }
            }
            (lat, n)
        })
    }))
}

struct Server(Option<Child>, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start_server() -> anyhow::Result<(String, Server)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("polypy-natsload-{port}"));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server (apt-get install nats-server)")?;
    let server = Server(Some(child), dir);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((format!("nats://127.0.0.1:{port}"), server))
}

fn quantile(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64 / 1e3
}

fn raw(url: &str, rate: u64, secs: u64) -> anyhow::Result<serde_json::Value> {
    let mut handle = NatsHandle::start(NatsConfig {
        url: url.into(),
        ..NatsConfig::default()
    })?;
    let sink = handle.take_sink().context("sink")?;
    let stats = std::sync::Arc::clone(handle.stats());
    let t0 = Instant::now();
    while !stats.connected.load(std::sync::atomic::Ordering::Acquire) {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(10), "never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let subjects: Vec<Subjects> = (0..2000)
        .map(|i| {
            Subjects::new(
                "load",
                &format!("0x{i:064x}"),
                &format!("{}", 10u128.pow(30) + i),
            )
        })
        .collect();
    // A typical one-change delta (~240 bytes, as in docs/loadtest.md).
    let payload = bytes::Bytes::from(format!(
        "{{\"type\":\"delta\",\"asset\":\"{}\",\"seq\":123456,\"ts\":\"1790658827000\",\"recv_ns\":123456789,\"changes\":[[\"BUY\",\"0.45\",\"100\"]],\"hash\":\"78b396c8a7f4989f638fe6cf9b2e8ced15680ba7\",\"trusted\":true}}",
        "1".repeat(77)
    ));
    let generation = stats.generation.load(std::sync::atomic::Ordering::Acquire);
    let (mut offered, mut full) = (0u64, 0u64);
    let p0 = stats.published.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        if rate > 0 {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            if offered >= due {
                std::hint::spin_loop();
                continue;
            }
        }
        let s = &subjects[(offered % 2000) as usize];
        let out = Out::Publish {
            subject: s.book.clone(),
            payload: payload.clone(),
            generation,
            snapshot: false,
        };
        offered += 1;
        if sink.offer(out) == Offer::Full {
            full += 1;
        }
    }
    let secs_f = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let s = stats.snapshot();
    drop(sink);
    handle.stop();
    Ok(serde_json::json!({
        "mode": "raw",
        "target_rate": rate,
        "secs": secs_f,
        "offered_per_s": offered as f64 / secs_f,
        "published_per_s": (s.published - p0) as f64 / secs_f,
        "channel_full": full,
        "dropped_other": s.dropped,
        "payload_bytes": payload.len(),
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (url, _server) = match &args.nats_url {
        Some(u) => (u.clone(), None),
        None => {
            let (u, s) = start_server()?;
            (u, Some(s))
        }
    };
    if let Some(rate) = args.raw {
        println!(
            "{}",
            serde_json::to_string_pretty(&raw(&url, rate, args.secs)?)?
        );
        return Ok(());
    }
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
        idle: IdleMode::Park,
        stream: None,
        nats: Some(NatsConfig {
            url: url.clone(),
            prefix: "load".into(),
            ..NatsConfig::default()
        }),
        ..EngineConfig::default()
    };
    config.pool.target_per_connection = 200;
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let measuring = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let plain = args
        .plain_consumer
        .then(|| plain_consumer(url.clone(), stop.clone(), measuring.clone()))
        .transpose()?;
    let mut consumer = (!args.no_consumer && !args.plain_consumer)
        .then(|| {
            let mut c = ConsumerConfig::new(&url, "load");
            c.record_latency = true;
            NatsConsumer::start(c)
        })
        .transpose()?;
    let idle = |c: &mut Option<NatsConsumer>, d: Duration| match c {
        Some(c) => c.run_for(d),
        None => std::thread::sleep(d),
    };
    idle(&mut consumer, Duration::from_secs(2));
    let stat =
        |e: &polypy::engine::EngineHandle| e.stats(Duration::from_secs(5)).unwrap_or_default();
    let st0 = stat(&engine);
    let n0 = engine.nats_stats().unwrap_or_default();
    let f0 = engine.feed_stats().unwrap_or_default();
    if let Some(c) = &mut consumer {
        c.state_mut().latencies_ns.clear();
    }
    let c0 = consumer.as_ref().map_or(0, |c| c.state().counts.messages);
    let w0 = Instant::now();
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    idle(&mut consumer, Duration::from_secs(args.secs));
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let secs = w0.elapsed().as_secs_f64();
    let st1 = stat(&engine);
    let n1 = engine.nats_stats().unwrap_or_default();
    let f1 = engine.feed_stats().unwrap_or_default();
    let (lat, c1, gaps) = consumer.as_mut().map_or((Vec::new(), 0, 0), |c| {
        let s = c.state_mut();
        (
            std::mem::take(&mut s.latencies_ns),
            s.counts.messages,
            s.counts.gaps,
        )
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut lat, c1, c0) = match plain.map(std::thread::JoinHandle::join) {
        Some(Ok((l, n))) => (l, n, 0),
        _ => (lat, c1, c0),
    };
    let msgs = |v: &serde_json::Value| v["integrity"]["messages"].as_u64().unwrap_or(0);
    let drops = |v: &serde_json::Value| v["router"]["messages_dropped"].as_u64().unwrap_or(0);
    let report = serde_json::json!({
        "mode": "engine",
        "markets": args.markets,
        "rate": args.rate,
        "secs": secs,
        "engine_msgs_per_s": (msgs(&st1) - msgs(&st0)) as f64 / secs,
        "router_dropped": drops(&st1) - drops(&st0),
        "feed_events_per_s": (f1.events - f0.events) as f64 / secs,
        "feed_events_dropped": f1.events_dropped - f0.events_dropped,
        "nats_published_per_s": (n1.published - n0.published) as f64 / secs,
        "nats_dropped": n1.dropped - n0.dropped,
        "nats_dropped_full": n1.dropped_full - n0.dropped_full,
        "consumer": if args.plain_consumer { "plain" } else { "books" },
        "consumer_msgs_per_s": (c1 - c0) as f64 / secs,
        "consumer_gaps": gaps,
        "wire_to_consumer_us": {
            "samples": lat.len(),
            "p50": quantile(&mut lat, 0.50),
            "p99": quantile(&mut lat, 0.99),
            "p999": quantile(&mut lat, 0.999),
        },
    });
    drop(consumer);
    engine.stop();
    sim.stop();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
