//! `polypy-loadtest`: measures the engine from the outside, the way an operator would.
//!
//! 1. Spawns `polypy-sim` (next to this binary) as the exchange and reads its URLs from its
//!    standard output.
//! 2. Spawns the engine `polypy` (next to this binary) against it, HTTP on a free loopback
//!    port; arguments after `--` go to the engine unchanged.
//! 3. Polls `GET /stats` until every asset is subscribed and trusted (time from engine
//!    spawn), reads the engine's RSS from `/proc/<pid>/status`.
//! 4. After a warm-up, lets flow run for `--secs` and computes wire → book latency from the
//!    delta of two `/metrics` scrapes (`polypy_wire_to_book_seconds_bucket`), messages/s
//!    from `integrity.messages`, and resync / drop / reconnect counts.
//! 5. Times sequential `GET /health` and `GET /stats` over one keep-alive connection.
//! 6. Stops the engine with SIGTERM (exit code, time to exit), then the sim. Both children
//!    are also stopped on any error (guards with `Drop`).
//!
//! Prints a concise report, or JSON with `--json`. Optional `--max-…` targets turn into
//! met/missed checks; the exit code is 1 when one is missed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[path = "loadtest/guard.rs"]
mod guard;
#[path = "loadtest/histogram.rs"]
mod histogram;
#[path = "loadtest/procfs.rs"]
mod procfs;
#[path = "loadtest/report.rs"]
mod report;
#[path = "loadtest/sweep.rs"]
mod sweep;

use guard::Guard;
use histogram::{delta_buckets, parse_buckets, quantile, share_le};
use procfs::{clk_tck, cpu_secs, machine_busy_secs, rss_mb};
use report::print_text;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "polypy-loadtest",
    about = "Load-tests the polypy engine against polypy-sim from the outside (HTTP, /proc)"
)]
struct Args {
    /// Markets in the simulated exchange (two assets each).
    #[arg(long, default_value_t = 1000)]
    markets: usize,
    /// Flow messages per second over all markets.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Engine `--assets-per-connection`.
    #[arg(long, default_value_t = 200)]
    assets_per_connection: usize,
    /// Seconds of flow measured after all books are trusted and the warm-up.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Seconds of flow after all trusted before the measurement window starts.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Sequential GET /health requests (GET /stats: a tenth of these).
    #[arg(long, default_value_t = 2000)]
    http_requests: usize,
    /// A client polling GET /stats this many times per second during the measured window
    /// (0 = none): shows whether HTTP readers slow the engine's hot path.
    #[arg(long, default_value_t = 0)]
    stats_rps: u32,
    /// Give up waiting for all assets subscribed and trusted after this many seconds.
    #[arg(long, default_value_t = 120)]
    trust_timeout_secs: u64,
    /// Where the children's logs go (default: a fresh directory under the temp dir).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Directory holding `polypy` and `polypy-sim` (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Log level of the simulated exchange.
    #[arg(long, default_value = "info")]
    sim_log_level: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Target: seconds from engine start to all trusted.
    #[arg(long)]
    max_trust_secs: Option<f64>,
    /// Target: engine RSS in MB (VmRSS at all-trusted and at the end).
    #[arg(long)]
    max_rss_mb: Option<f64>,
    /// Target: GET /health p99, ms.
    #[arg(long)]
    max_health_p99_ms: Option<f64>,
    /// Target: GET /stats p99, ms.
    #[arg(long)]
    max_stats_p99_ms: Option<f64>,
    /// Target: wire → book p50 in the window, µs.
    #[arg(long)]
    max_p50_us: Option<f64>,
    /// Target: wire → book p99 in the window, µs.
    #[arg(long)]
    max_p99_us: Option<f64>,
    /// Run once per rate of this list (msgs/s, comma-separated) instead of `--rate`, each
    /// with a fresh sim and engine, and print a table of engine CPU-µs per message and wire →
    /// book latency per rate.
    #[arg(long, value_delimiter = ',', value_name = "RATE,...")]
    rates: Vec<u64>,
    /// With `--rates` (or alone, at `--rate`): run every rate once per idle mode (adaptive,
    /// park, backoff, spin), side by side.
    #[arg(long)]
    compare_idle: bool,
    /// Extra engine arguments (after `--`).
    #[arg(last = true)]
    engine_args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (report, failed, text): (Value, bool, fn(&Value)) =
        if !args.rates.is_empty() || args.compare_idle {
            let rates = if args.rates.is_empty() {
                vec![args.rate]
            } else {
                args.rates.clone()
            };
            let (report, failed) = sweep::sweep(&args, &rates)?;
            (report, failed, sweep::print_table)
        } else {
            let (report, failed) = run(&args)?;
            (report, failed, print_text)
        };
    if let Some(p) = &args.json_out {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        text(&report);
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn bin_dir(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.bin_dir {
        return Ok(d.clone());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this binary has no parent directory")
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Starts the sim and returns it with its WebSocket and HTTP URLs.
fn start_sim(args: &Args, dir: &Path, logs: &Path) -> anyhow::Result<(Guard, String, String)> {
    let bin = dir.join("polypy-sim");
    let log = File::create(logs.join("sim.log"))?;
    let mut child = Command::new(&bin)
        .args(["--markets", &args.markets.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--expiring-share", "0"])
        .args(["--new-market-every-secs", "0"])
        .args(["--max-assets-per-conn", "500"])
        .args(["--log-level", &args.sim_log_level])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("sim stdout")?;
    let mut guard = Guard::new("polypy-sim", child);
    // The sim prints `websocket: ws://…` and `http:      http://…`; keep draining after.
    let (tx, rx) = mpsc::channel::<(String, String)>();
    thread::Builder::new()
        .name("sim-stdout".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((k, v)) = line.split_once(':') {
                    let _ = tx.send((k.trim().to_string(), v.trim().to_string()));
                }
            }
        })?;
    let (mut ws, mut http) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while ws.is_none() || http.is_none() {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((k, v)) if k == "websocket" => ws = Some(v),
            Ok((k, v)) if k == "http" => http = Some(v),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(s) = guard.exited() {
                    bail!(
                        "polypy-sim exited ({s}) before printing its URLs; log:\n{}",
                        tail(&logs.join("sim.log"), 20)
                    );
                }
                if Instant::now() > deadline {
                    bail!("polypy-sim printed no URLs within 120 s");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!(
                    "polypy-sim closed its output before printing its URLs; log:\n{}",
                    tail(&logs.join("sim.log"), 20)
                )
            }
        }
    }
    let (Some(ws), Some(http)) = (ws, http) else {
        bail!("unreachable: URLs missing");
    };
    Ok((guard, ws, http))
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .max_idle_connections_per_host(4)
        .build()
        .into()
}

/// An agent that keeps no idle connection: a new TCP connection per request.
fn http_fresh_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
        .into()
}

/// `(status, body)` of a GET.
fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, String)> {
    let mut r = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .with_context(|| format!("reading {url}"))?;
    Ok((status, body))
}

fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<Value> {
    let (status, body) = get(agent, url)?;
    if status != 200 {
        bail!("GET {url}: status {status}: {}", truncate(&body, 200));
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Last `n` lines of a file (at most its last 64 KiB).
fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

#[derive(Debug, Default)]
struct Timings {
    ms: Vec<f64>,
    non_200: usize,
    bytes: usize,
}

impl Timings {
    fn pct(&self, q: f64) -> f64 {
        if self.ms.is_empty() {
            return f64::NAN;
        }
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    fn to_json(&self) -> Value {
        json!({
            "requests": self.ms.len(),
            "non_200": self.non_200,
            "avg_body_bytes": self.bytes.checked_div(self.ms.len()).unwrap_or(0),
            "p50_ms": self.pct(0.50),
            "p99_ms": self.pct(0.99),
            "max_ms": self.pct(1.0),
        })
    }
}

fn time_gets(agent: &ureq::Agent, url: &str, n: usize) -> anyhow::Result<Timings> {
    let mut t = Timings {
        ms: Vec::with_capacity(n),
        ..Timings::default()
    };
    for _ in 0..n {
        let start = Instant::now();
        let (status, body) = get(agent, url)?;
        t.ms.push(start.elapsed().as_secs_f64() * 1e3);
        t.bytes += body.len();
        if status != 200 {
            t.non_200 += 1;
        }
    }
    Ok(t)
}

/// Sum of `reconnects` over `pool.stats[]`.
fn reconnects(stats: &Value) -> u64 {
    stats
        .pointer("/pool/stats")
        .and_then(Value::as_array)
        .map_or(0, |a| {
            a.iter()
                .map(|c| c.get("reconnects").and_then(Value::as_u64).unwrap_or(0))
                .sum()
        })
}

/// Counters whose change over the window matters (resyncs, drops, reconnects).
fn counters(stats: &Value) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    if let Some(r) = stats
        .pointer("/integrity/resyncs")
        .and_then(Value::as_object)
    {
        for (k, v) in r {
            m.insert(format!("resyncs.{k}"), v.as_u64().unwrap_or(0));
        }
    }
    for (name, path) in [
        ("router.messages_dropped", "/router/messages_dropped"),
        ("router.queue_full_events", "/router/queue_full_events"),
        ("router.routing_errors", "/router/routing_errors"),
        ("router.resync_assets", "/router/resync_assets"),
        ("router.data_loss_markers", "/router/data_loss_markers"),
        ("integrity.decode_failures", "/integrity/decode_failures"),
        ("integrity.hash_mismatched", "/integrity/hash_mismatched"),
        (
            "integrity.snapshot_hash_mismatched",
            "/integrity/snapshot_hash_mismatched",
        ),
        ("integrity.bbo_mismatches", "/integrity/bbo_mismatches"),
        ("integrity.crossed", "/integrity/crossed"),
        (
            "integrity.data_silence_reconnects",
            "/integrity/data_silence_reconnects",
        ),
        (
            "integrity.unattributed_failures",
            "/integrity/unattributed_failures",
        ),
    ] {
        m.insert(name.to_string(), u(stats, path));
    }
    m.insert("pool.reconnects".into(), reconnects(stats));
    m
}

fn counter_deltas(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Value {
    let mut out = serde_json::Map::new();
    for (k, vb) in b {
        let va = a.get(k).copied().unwrap_or(0);
        out.insert(
            k.clone(),
            json!({"total": vb, "in_window": vb.saturating_sub(va)}),
        );
    }
    Value::Object(out)
}

/// The fields an operator looks at when the engine does not get to all trusted.
fn stuck_fields(s: &Value) -> Value {
    let statuses = s
        .pointer("/pool/stats")
        .and_then(Value::as_array)
        .map(|a| {
            let mut m: BTreeMap<String, u64> = BTreeMap::new();
            for c in a {
                let st = c.get("status").and_then(Value::as_str).unwrap_or("?");
                *m.entry(st.to_string()).or_default() += 1;
            }
            m
        })
        .unwrap_or_default();
    json!({
        "registry": s.get("registry"),
        "pool.connection_count": s.pointer("/pool/connection_count"),
        "pool.active_connections": s.pointer("/pool/active_connections"),
        "pool.statuses": statuses,
        "integrity.trusted_books": s.pointer("/integrity/trusted_books"),
        "integrity.books": s.pointer("/integrity/books"),
        "integrity.awaiting_snapshot": s.pointer("/integrity/awaiting_snapshot"),
        "integrity.resyncs": s.pointer("/integrity/resyncs"),
        "router.messages_dropped": s.pointer("/router/messages_dropped"),
        "lifecycle": s.get("lifecycle"),
    })
}

#[allow(clippy::too_many_lines)]
fn run(args: &Args) -> anyhow::Result<(Value, bool)> {
    let dir = bin_dir(args)?;
    let logs = match &args.log_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("polypy-loadtest-{}", std::process::id())),
    };
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let engine_log = logs.join("engine.log");
    let tck = clk_tck();
    let assets = args.markets * 2;

    // 1. The exchange.
    let sim_t = Instant::now();
    let (mut sim, ws_url, sim_http) = start_sim(args, &dir, &logs)?;
    let sim_start_s = sim_t.elapsed().as_secs_f64();

    // 2. The engine.
    let port = free_port()?;
    let bin = dir.join("polypy");
    let log = File::create(&engine_log)?;
    let mut engine_cmd = Command::new(&bin);
    engine_cmd
        .args(["--ws-url", &ws_url])
        .args(["--gamma-url", &sim_http])
        .args(["--http-host", "127.0.0.1"])
        .args(["--http-port", &port.to_string()])
        .args([
            "--assets-per-connection",
            &args.assets_per_connection.to_string(),
        ])
        .args(["--log-level", "warn"])
        .args(
            if args
                .engine_args
                .iter()
                .any(|a| a.starts_with("--stream-port"))
            {
                &[][..]
            } else {
                &["--no-stream"][..]
            },
        )
        .args(&args.engine_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let engine_start = Instant::now();
    let mut engine = Guard::new(
        "polypy",
        engine_cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let pid = engine.pid();
    let base = format!("http://127.0.0.1:{port}");
    let agent = http_agent();
    let engine_died = |engine: &mut Guard| -> anyhow::Result<()> {
        if let Some(s) = engine.exited() {
            bail!(
                "the engine exited ({s}); last log lines ({}):\n{}",
                engine_log.display(),
                tail(&engine_log, 30)
            );
        }
        Ok(())
    };

    // 3. Wait for all subscribed and trusted.
    let mut first_answer_s = None;
    let mut all_subscribed_s = None;
    let mut all_trusted_s = None;
    let mut last = Value::Null;
    let mut timeline = Vec::new();
    let mut next_sample = 0.0;
    let trust_deadline = engine_start + Duration::from_secs(args.trust_timeout_secs);
    while Instant::now() < trust_deadline {
        engine_died(&mut engine)?;
        if let Ok(s) = get_json(&agent, &format!("{base}/stats")) {
            let t = engine_start.elapsed().as_secs_f64();
            first_answer_s.get_or_insert(t);
            let subscribed = u(&s, "/registry/subscribed") as usize;
            let trusted = u(&s, "/integrity/trusted_books") as usize;
            if t >= next_sample {
                next_sample = t.floor() + 1.0;
                timeline.push(json!({
                    "t_s": (t * 100.0).round() / 100.0,
                    "known_assets": u(&s, "/registry/total_markets"),
                    "subscribed": subscribed,
                    "connections": u(&s, "/pool/connection_count"),
                    "connected": u(&s, "/pool/active_connections"),
                    "trusted": trusted,
                }));
            }
            if subscribed >= assets && all_subscribed_s.is_none() {
                all_subscribed_s = Some(t);
            }
            last = s;
            if subscribed >= assets && trusted >= assets {
                all_trusted_s = Some(t);
                break;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    let at_trusted = last.clone();
    let stuck = all_trusted_s.is_none().then(|| stuck_fields(&last));
    let rss_trusted = rss_mb(pid);
    let connections = u(&at_trusted, "/pool/connection_count");
    let active_connections = u(&at_trusted, "/pool/active_connections");

    // 4./5. Warm-up, then the measured window.
    thread::sleep(Duration::from_secs(args.warmup_secs));
    engine_died(&mut engine)?;
    let m0 = get(&agent, &format!("{base}/metrics"))?.1;
    let s0 = get_json(&agent, &format!("{base}/stats"))?;
    let w0 = Instant::now();
    let (cpu_e0, cpu_s0) = (cpu_secs(pid, tck), cpu_secs(sim.pid(), tck));
    let (cpu_m0, cpu_l0) = (machine_busy_secs(tck), cpu_secs(std::process::id(), tck));
    let hammer = (args.stats_rps > 0).then(|| {
        let (url, rps, until) = (
            format!("{base}/stats"),
            args.stats_rps,
            w0 + Duration::from_secs(args.secs),
        );
        thread::spawn(move || {
            let agent = http_agent();
            let period = Duration::from_secs(1) / rps;
            let (mut next, mut ok, mut failed) = (Instant::now(), 0u64, 0u64);
            while next < until {
                match get(&agent, &url) {
                    Ok((200, _)) => ok += 1,
                    _ => failed += 1,
                }
                next += period;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            (ok, failed)
        })
    });
    thread::sleep(Duration::from_secs(args.secs));
    let hammer = hammer.and_then(|h| h.join().ok());
    engine_died(&mut engine)?;
    let m1 = get(&agent, &format!("{base}/metrics"))?.1;
    let s1 = get_json(&agent, &format!("{base}/stats"))?;
    let window = w0.elapsed().as_secs_f64();
    let (cpu_e1, cpu_s1) = (cpu_secs(pid, tck), cpu_secs(sim.pid(), tck));
    let (cpu_m1, cpu_l1) = (machine_busy_secs(tck), cpu_secs(std::process::id(), tck));
    let cpu_share = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / window * 100.0,
        _ => f64::NAN,
    };
    let b0 = parse_buckets(&m0)?;
    let b1 = parse_buckets(&m1)?;
    let delta = delta_buckets(&b0, &b1)?;
    let us = |x: Option<f64>| x.map_or(f64::NAN, |s| s * 1e6);
    let samples = delta.last().map_or(0.0, |b| b.1);
    let lat_window = json!({
        "source": "/metrics polypy_wire_to_book_seconds_bucket delta over the window",
        "bucket_bounds_us": delta.iter().filter(|b| b.0.is_finite()).map(|b| b.0 * 1e6).collect::<Vec<_>>(),
        "samples": samples,
        "p50_us": us(quantile(&delta, 0.50)),
        "p99_us": us(quantile(&delta, 0.99)),
        "p999_us": us(quantile(&delta, 0.999)),
        "share_le_10us": share_le(&delta, 10e-6),
        "share_le_50us": share_le(&delta, 50e-6),
        "share_le_100us": share_le(&delta, 100e-6),
    });
    let lat_cumulative = json!({
        "source": "/stats router.*_latency_ms (fine buckets, cumulative since engine start)",
        "samples": u(&s1, "/router/latency_samples"),
        "p50_us": f(&s1, "/router/p50_latency_ms") * 1e3,
        "p99_us": f(&s1, "/router/p99_latency_ms") * 1e3,
        "p999_us": f(&s1, "/router/p999_latency_ms") * 1e3,
        "max_us": f(&s1, "/router/max_latency_ms") * 1e3,
    });
    let msgs = u(&s1, "/integrity/messages").saturating_sub(u(&s0, "/integrity/messages"));
    let frames = u(&s1, "/integrity/frames").saturating_sub(u(&s0, "/integrity/frames"));
    let routed =
        u(&s1, "/router/messages_routed").saturating_sub(u(&s0, "/router/messages_routed"));
    let flow = json!({
        "window_s": window,
        "messages_per_s": msgs as f64 / window,
        "frames_per_s": frames as f64 / window,
        "routed_per_s": routed as f64 / window,
        "sim_rate_per_s": args.rate,
        "engine_cpu_pct": cpu_share(cpu_e0, cpu_e1),
        "sim_cpu_pct": cpu_share(cpu_s0, cpu_s1),
        "loadtest_cpu_pct": cpu_share(cpu_l0, cpu_l1),
        "machine_busy_cpu_pct": cpu_share(cpu_m0, cpu_m1),
        "other_processes_cpu_pct": cpu_share(cpu_m0, cpu_m1)
            - cpu_share(cpu_e0, cpu_e1)
            - cpu_share(cpu_s0, cpu_s1)
            - cpu_share(cpu_l0, cpu_l1),
        "cores": thread::available_parallelism().map_or(0, usize::from),
        "trusted_books_end": u(&s1, "/integrity/trusted_books"),
        "awaiting_snapshot_end": u(&s1, "/integrity/awaiting_snapshot"),
        "counters": counter_deltas(&counters(&s0), &counters(&s1)),
    });

    // 6. HTTP latency over one keep-alive connection (flow still running).
    let health = time_gets(&agent, &format!("{base}/health"), args.http_requests)?;
    let stats = time_gets(
        &agent,
        &format!("{base}/stats"),
        (args.http_requests / 10).max(1),
    )?;
    // The same on a fresh connection per request (tells Nagle / delayed-ACK stalls on a
    // reused connection apart from the engine's own work).
    let fresh = http_fresh_agent();
    let stats_fresh = time_gets(
        &fresh,
        &format!("{base}/stats"),
        (args.http_requests / 10).max(1),
    )?;
    let rss_end = rss_mb(pid);

    // 7. Stop: engine first (SIGTERM), then the sim.
    let (status, took, killed) = engine.stop(Duration::from_secs(10));
    let engine_exit = json!({
        "code": status.and_then(|s| s.code()),
        "status": status.map(|s| s.to_string()),
        "secs_after_sigterm": took.as_secs_f64(),
        "sigkilled": killed,
    });
    let (sim_status, _, _) = sim.stop(Duration::from_secs(5));

    let log_warnings = count_lines(&engine_log, " WARN ");
    let log_errors = count_lines(&engine_log, " ERROR ");
    let rss = |r: Option<(f64, f64)>| {
        r.map_or(
            json!(null),
            |(rss, hwm)| json!({"vm_rss_mb": rss, "vm_hwm_mb": hwm}),
        )
    };

    // Checks.
    let mut checks = Vec::new();
    let mut failed = false;
    let mut check = |name: &str, target: Option<f64>, value: f64, met: bool| {
        if let Some(t) = target {
            failed |= !met;
            checks.push(json!({"check": name, "target": t, "value": value, "met": met}));
        }
    };
    let trust_s = all_trusted_s.unwrap_or(f64::INFINITY);
    check(
        "time to all trusted ≤ s",
        args.max_trust_secs,
        trust_s,
        args.max_trust_secs.is_some_and(|t| trust_s <= t),
    );
    let rss_max = [rss_trusted, rss_end]
        .iter()
        .flatten()
        .map(|r| r.0)
        .fold(f64::NAN, f64::max);
    check(
        "engine VmRSS ≤ MB",
        args.max_rss_mb,
        rss_max,
        args.max_rss_mb.is_some_and(|t| rss_max <= t),
    );
    check(
        "/health p99 ≤ ms",
        args.max_health_p99_ms,
        health.pct(0.99),
        args.max_health_p99_ms
            .is_some_and(|t| health.pct(0.99) <= t && health.non_200 == 0),
    );
    check(
        "/stats p99 ≤ ms",
        args.max_stats_p99_ms,
        stats.pct(0.99),
        args.max_stats_p99_ms
            .is_some_and(|t| stats.pct(0.99) <= t && stats.non_200 == 0),
    );
    // p_q ≤ x exactly when the share of samples ≤ x is at least q (exact at bucket bounds).
    for (name, target, q) in [
        ("wire→book p50 ≤ µs (window)", args.max_p50_us, 0.50),
        ("wire→book p99 ≤ µs (window)", args.max_p99_us, 0.99),
    ] {
        let value = us(quantile(&delta, q));
        let met = target.is_some_and(|t| share_le(&delta, t * 1e-6).is_some_and(|s| s >= q));
        check(name, target, value, met);
    }
    check(
        "engine exits 0 within 5 s of SIGTERM",
        Some(5.0),
        took.as_secs_f64(),
        status.and_then(|s| s.code()) == Some(0) && took <= Duration::from_secs(5),
    );

    let report = json!({
        "config": {
            "markets": args.markets,
            "assets": assets,
            "rate": args.rate,
            "assets_per_connection": args.assets_per_connection,
            "secs": args.secs,
            "warmup_secs": args.warmup_secs,
            "http_requests": args.http_requests,
            "stats_rps": args.stats_rps,
            "engine_args": args.engine_args,
            "logs": logs.display().to_string(),
        },
        "startup": {
            "sim_ready_s": sim_start_s,
            "first_stats_s": first_answer_s,
            "all_subscribed_s": all_subscribed_s,
            "all_trusted_s": all_trusted_s,
            "connections": connections,
            "active_connections": active_connections,
            "stuck": stuck,
            "timeline": timeline,
        },
        "rss": {"at_all_trusted": rss(rss_trusted), "at_end": rss(rss_end)},
        "latency_window": lat_window,
        "latency_cumulative": lat_cumulative,
        "flow": flow,
        "http": {
            "health": health.to_json(),
            "stats": stats.to_json(),
            "stats_fresh_connection": stats_fresh.to_json(),
            "stats_hammer": hammer.map(|(ok, failed)| json!({"ok": ok, "failed": failed})),
        },
        "shutdown": {
            "engine": engine_exit,
            "sim_status": sim_status.map(|s| s.to_string()),
            "engine_log_warn_lines": log_warnings,
            "engine_log_error_lines": log_errors,
            "engine_log_tail": if log_warnings + log_errors > 0 { Some(tail(&engine_log, 8)) } else { None },
        },
        "checks": checks,
    });
    Ok((report, failed))
}
