//! The real `polypy` binary against the simulated exchange over loopback: every HTTP
//! endpoint's shape and status codes, `/ready` 503 → 200, `/orderbook` equal to the sim's
//! truth, `/health` 503 while a worker is stalled and after it dies, SIGTERM under load → exit 0 within 5 s, and
//! start-up failures → non-zero exit with a one-line reason.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use polypy::sim::{Sim, SimConfig, SimHandle};

const BIN: &str = env!("CARGO_BIN_EXE_polypy");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running binary; killed on drop. Its stderr lines arrive on `lines`.
struct Engine {
    child: Child,
    port: u16,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Engine {
    fn spawn(args: &[&str]) -> Engine {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--http-host", "127.0.0.1", "--http-port", &port.to_string()])
            .args(["--stream-port", "0"])
            .args(["--idle", "park", "--no-pin", "--workers", "2"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn polypy");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Engine {
            child,
            port,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`.
    fn wait_line(&mut self, needle: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; log:\n{}", self.log.join("\n")),
            }
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        request(self.port, "GET", path)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to exit; returns its code and how long it took.
    fn wait_exit(&mut self, deadline: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < deadline,
                "still running after {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request; (status, body).
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    // HTTP/1.0: the answer is never chunked.
    let req = format!("{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| {
        let head: String = body.chars().take(300).collect();
        panic!("not JSON ({e}): {head}")
    })
}

fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sim(markets: usize, rate: u64) -> SimHandle {
    Sim::start(SimConfig {
        markets,
        rate_per_sec: rate,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim")
}

/// Checks that `text` is Prometheus/OpenMetrics text: `# HELP`/`# TYPE` comments, samples
/// `name{labels} value`, a histogram with buckets up to `+Inf`, and `# EOF`.
fn check_prometheus(text: &str) {
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF",
                "bad comment: {line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        assert!(name.starts_with("polypy_"), "unprefixed: {line}");
        let bare = name.split('{').next().unwrap_or_default();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value: {line}"
        );
        samples += 1;
    }
    assert!(samples > 30, "{samples} samples");
    assert!(text.trim_end().ends_with("# EOF"));
    assert!(
        text.contains("polypy_wire_to_book_seconds_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    assert!(text.contains("# TYPE polypy_wire_to_book_seconds histogram"));
}

#[test]
fn endpoints_readiness_truth_and_worker_failure() {
    let sim = sim(100, 2_000);
    // Gamma fails at first: the first discovery cannot finish, so /ready must say 503.
    sim.faults().set_gamma_error(Some(500));
    let mut e = Engine::spawn(&[
        "--ws-url",
        &sim.ws_url(),
        "--gamma-url",
        &sim.http_url(),
        "--discovery-interval",
        "1",
        "--debug-faults",
    ]);
    e.wait_line("HTTP listening", Duration::from_secs(30));
    let (status, body) = e.get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("discovery"), "{body}");
    sim.faults().set_gamma_error(None);
    wait_until("/ready 200", Duration::from_secs(60), || {
        e.get("/ready").0 == 200
    });

    // /health: the seeds' shape.
    let (status, body) = e.get("/health");
    assert_eq!(status, 200, "{body}");
    let h = json(&body);
    assert_eq!(h["healthy"], true);
    assert!(
        h["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{h}"
    );
    for c in [
        "registry",
        "pool",
        "router",
        "workers",
        "lifecycle",
        "recycler",
    ] {
        assert!(h["components"][c].is_boolean(), "{c}: {h}");
    }

    // /stats: the seeds' structure plus integrity, from the snapshot the loop publishes
    // every 500 ms (so it may lag readiness by that much).
    let mut body = String::new();
    wait_until(
        "/stats shows the 200 subscribed assets",
        Duration::from_secs(5),
        || {
            let (status, b) = e.get("/stats");
            assert_eq!(status, 200);
            body = b;
            json(&body)["registry"]["subscribed"] == 200
        },
    );
    let s = json(&body);
    assert!(s["snapshot_age_seconds"].as_f64() < Some(2.0), "{s}");
    assert_eq!(s["running"], true);
    for k in ["total_markets", "pending", "subscribed", "expired"] {
        assert!(s["registry"][k].is_u64(), "registry.{k}: {s}");
    }
    assert_eq!(s["registry"]["subscribed"], 200);
    for k in ["connection_count", "active_connections", "total_capacity"] {
        assert!(s["pool"][k].is_u64(), "pool.{k}");
    }
    let conn = &s["pool"]["stats"][0];
    for k in [
        "connection_id",
        "status",
        "messages_received",
        "parse_errors",
        "reconnects",
    ] {
        assert!(!conn[k].is_null(), "pool.stats[0].{k}: {conn}");
    }
    for k in [
        "messages_routed",
        "messages_dropped",
        "batches_sent",
        "queue_full_events",
        "routing_errors",
        "p50_latency_ms",
        "p99_latency_ms",
    ] {
        assert!(!s["router"][k].is_null(), "router.{k}");
    }
    assert!(s["router"]["queue_depths"].is_object());
    assert_eq!(s["workers"]["alive_count"], 2);
    assert_eq!(s["workers"]["is_healthy"], true);
    assert_eq!(
        s["workers"]["worker_stats"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(s["lifecycle"].is_object() && s["recycler"].is_object());
    for k in [
        "hash_matched",
        "hash_mismatched",
        "resyncs",
        "decode_failures",
    ] {
        assert!(!s["integrity"][k].is_null(), "integrity.{k}");
    }
    assert_eq!(s["http"]["up"], true);

    // The recent window (last 15 s) beside the since-start figures, in /stats and /metrics.
    wait_until(
        "/stats shows recent wire → book latency",
        Duration::from_secs(10),
        || {
            let s = json(&e.get("/stats").1);
            s["router"]["recent_latency_samples"].as_u64() > Some(0)
                && s["router"]["recent_window_seconds"].as_f64() > Some(0.0)
                && s["router"]["recent_p99_latency_ms"].as_f64() > Some(0.0)
        },
    );

    // /metrics parses as Prometheus text.
    let (status, body) = e.get("/metrics");
    assert_eq!(status, 200);
    check_prometheus(&body);
    assert!(
        body.contains("# TYPE polypy_wire_to_book_recent_p99_seconds gauge"),
        "{body}"
    );

    // /markets: published by the loop when the registry changed (at most once a second).
    let mut body = String::new();
    wait_until(
        "/markets lists the 100 markets",
        Duration::from_secs(5),
        || {
            let (status, b) = e.get("/markets");
            assert_eq!(status, 200);
            body = b;
            json(&body).as_array().is_some_and(|a| a.len() == 100)
        },
    );
    let m = json(&body);
    let markets = m.as_array().expect("array");
    assert_eq!(markets.len(), 100);
    let first = &markets[0];
    for k in [
        "condition_id",
        "question",
        "outcomes",
        "tokens",
        "end_date",
        "status",
    ] {
        assert!(first.get(k).is_some(), "markets[0].{k}: {first}");
    }
    assert!(
        first["tokens"][0]["token_id"].is_string() && first["tokens"][0]["outcome"].is_string()
    );

    // Bad requests.
    assert_eq!(e.get("/orderbook/123456789").0, 404);
    let asset = sim.assets().expect("assets")[3].clone();
    assert_eq!(e.get(&format!("/orderbook/{asset}?depth=0")).0, 400);
    assert_eq!(e.get(&format!("/orderbook/{asset}?depth=abc")).0, 400);
    assert_eq!(e.get(&format!("/orderbook/{asset}?depth=1001")).0, 400);
    assert_eq!(e.get("/nope").0, 404);
    assert_eq!(request(e.port, "POST", "/health").0, 405);

    // /orderbook equals the truth once the flow pauses.
    sim.pause().expect("pause");
    for asset in sim.assets().expect("assets").iter().step_by(17) {
        let truth = sim.truth(asset).expect("truth").expect("known");
        let want_bids: Vec<(String, String)> = truth
            .bids
            .iter()
            .map(|l| (l.price.clone(), l.size.clone()))
            .collect();
        let want_asks: Vec<(String, String)> = truth
            .asks
            .iter()
            .map(|l| (l.price.clone(), l.size.clone()))
            .collect();
        let mut last = serde_json::Value::Null;
        wait_until(
            &format!("/orderbook/{asset} equal to the truth"),
            Duration::from_secs(20),
            || {
                let (status, body) = e.get(&format!("/orderbook/{asset}?depth=1000"));
                if status != 200 {
                    return false;
                }
                last = json(&body);
                let side = |k: &str| -> Vec<(String, String)> {
                    last[k]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|l| {
                                    (
                                        l["price"].as_str().unwrap_or_default().to_string(),
                                        l["size"].as_str().unwrap_or_default().to_string(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                last["trusted"] == true && side("bids") == want_bids && side("asks") == want_asks
            },
        );
        for k in [
            "asset_id",
            "market",
            "trusted",
            "timestamp",
            "hash",
            "tick_size",
            "bids",
            "asks",
            "best_bid",
            "best_ask",
            "spread",
            "midpoint",
            "last_trade_price",
            "update_count",
        ] {
            assert!(last.get(k).is_some(), "orderbook.{k}: {last}");
        }
        assert_eq!(last["market"], truth.market.as_str());
        if last["timestamp"] == truth.timestamp.as_str() {
            assert_eq!(last["hash"], truth.hash.as_str());
        }
    }
    sim.resume().expect("resume");

    // A worker stops making progress (its handler blocks): /health turns 503 …
    e.signal("USR2");
    wait_until(
        "/health 503 (stalled worker)",
        Duration::from_secs(20),
        || e.get("/health").0 == 503,
    );
    let h = json(&e.get("/health").1);
    assert_eq!(h["components"]["workers"], false, "{h}");
    // … and 200 again once it runs.
    e.signal("USR2");
    wait_until(
        "/health 200 (worker released)",
        Duration::from_secs(20),
        || e.get("/health").0 == 200,
    );

    // A worker dies (panics): /health turns 503, the process stays up (every profile).
    e.signal("USR1");
    wait_until("/health 503", Duration::from_secs(20), || {
        e.get("/health").0 == 503
    });
    let h = json(&e.get("/health").1);
    assert_eq!(h["components"]["workers"], false, "{h}");

    e.signal("TERM");
    let (code, took) = e.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "log:\n{}", e.log.join("\n"));
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    sim.stop();
}

#[test]
fn simulate_shows_progress_and_sigterm_under_load_exits_zero_within_5s() {
    let mut e = Engine::spawn(&["--simulate", "--sim-markets", "500", "--sim-rate", "20000"]);
    e.wait_line("Progress:", Duration::from_secs(60));
    wait_until("/health 200", Duration::from_secs(30), || {
        e.get("/health").0 == 200
    });
    // Full load: wait until books are being updated at the sim's rate.
    let line = e.wait_line("Progress:", Duration::from_secs(30));
    assert!(line.contains("trusted="), "{line}");
    e.signal("TERM");
    let (code, took) = e.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "log:\n{}", e.log.join("\n"));
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    // The final statistics line.
    e.wait_line("Final:", Duration::from_secs(5));
}

#[test]
fn startup_failures_exit_nonzero_with_a_reason() {
    for (args, reason) in [
        (
            vec![
                "--ws-url",
                "http://example.com/ws",
                "--no-http",
                "--no-stream",
            ],
            "--ws-url",
        ),
        (
            vec![
                "--simulate",
                "--sim-markets",
                "5",
                "--no-http",
                "--no-stream",
                "--record",
                "/nonexistent-dir/x/rec.jsonl",
            ],
            "recording",
        ),
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("polypy: ") && last.contains(reason),
            "{args:?}: last line {last:?}"
        );
    }
}
