//! The book stream (docs/stream-api.md) against the simulated exchange over loopback: a client
//! on `all` rebuilds every book through faults and ends equal to the sim's truth and the
//! engine's books with seq continuity held; a client that never reads is conflated then
//! closed (1008) while the others and the engine carry on; bad input gets errors or closes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use polypy::config::{EngineConfig, IdleMode};
use polypy::engine::{Engine, EngineHandle};
use polypy::sim::{ConnTarget, Sim, SimConfig, SimHandle};
use polypy::stream::StreamConfig;
use polypy::stream::books::ClientBooks;
use polypy::worker::noop_factory;
use serde_json::Value;
use tungstenite::{Message, WebSocket};

#[path = "support/truth.rs"]
mod truth;
use truth::{differences, wait_for};

fn engine_config(sim: &SimHandle, stream: StreamConfig) -> EngineConfig {
    let mut c = EngineConfig {
        ws_url: sim.ws_url(),
        gamma_url: sim.http_url(),
        workers: 2,
        pin_workers: false,
        idle: IdleMode::Park,
        data_silence: Duration::from_secs(2),
        snapshot_timeout: Duration::from_secs(3),
        asset_silence: Duration::from_secs(3),
        stream: Some(StreamConfig {
            host: "127.0.0.1".into(),
            port: 0,
            ..stream
        }),
        ..EngineConfig::default()
    };
    c.pool.target_per_connection = 50;
    c
}

fn start(markets: usize, rate: u64, stream: StreamConfig) -> (SimHandle, EngineHandle) {
    let sim = Sim::start(SimConfig {
        markets,
        rate_per_sec: rate,
        seed: 7,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let engine = Engine::start_with_handlers(engine_config(&sim, stream), noop_factory(), true)
        .expect("engine");
    let n = (markets * 2) as u64;
    wait_for("every book trusted", Duration::from_secs(60), || {
        (engine.trusted_books() == n).then_some(())
    });
    (sim, engine)
}

struct Client {
    ws: WebSocket<TcpStream>,
    books: ClientBooks,
    others: Vec<Value>,
}

impl Client {
    fn connect(engine: &EngineHandle) -> Client {
        let port = engine.stream_port().expect("stream port");
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (ws, _) =
            tungstenite::client(format!("ws://127.0.0.1:{port}/ws"), tcp).expect("handshake");
        Client {
            ws,
            books: ClientBooks::new(),
            others: Vec::new(),
        }
    }

    fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// Reads until `until`; `None` when the server closed (with its close frame, if any).
    fn pump(&mut self, until: Instant) -> Result<(), Option<(u16, String)>> {
        while Instant::now() < until {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server JSON");
                    if self.books.apply(&v) == polypy::stream::books::Applied::Other {
                        self.others.push(v);
                    }
                }
                Ok(Message::Close(f)) => {
                    return Err(f.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Err(None),
            }
        }
        Ok(())
    }

    fn wait_other(&mut self, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.others.iter().find(|v| f(v)) {
                return v.clone();
            }
            assert!(Instant::now() < end, "no {what}; got {:?}", self.others);
            let _ = self.pump(Instant::now() + Duration::from_millis(50));
        }
    }
}

type Levels = Vec<(String, String)>;

fn client_levels(c: &Client, asset: &str) -> Option<(Levels, Levels)> {
    let b = c.books.books.get(asset)?;
    let t = |l: polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
    Some((
        b.mirror.book().bids().best_first().map(t).collect(),
        b.mirror.book().asks().best_first().map(t).collect(),
    ))
}

/// Assets whose client book differs from the sim's truth or from the engine's book.
fn client_differences(c: &Client, sim: &SimHandle, engine: &EngineHandle) -> Vec<String> {
    let mut bad = Vec::new();
    for truth in sim.truth_all().expect("truth") {
        let want: (Levels, Levels) = (
            truth
                .bids
                .iter()
                .map(|l| (l.price.clone(), l.size.clone()))
                .collect(),
            truth
                .asks
                .iter()
                .map(|l| (l.price.clone(), l.size.clone()))
                .collect(),
        );
        let Some(got) = client_levels(c, &truth.asset_id) else {
            bad.push(format!("{}: no client book", truth.asset_id));
            continue;
        };
        if !c.books.books[&truth.asset_id].trusted {
            bad.push(format!("{}: client book untrusted", truth.asset_id));
        } else if got != want {
            bad.push(format!(
                "{}: client levels differ from the truth",
                truth.asset_id
            ));
        }
        if let Ok(Some(v)) = engine.book(&truth.asset_id, 1000, Duration::from_secs(5)) {
            let t = |l: &polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
            let eng: (Levels, Levels) = (
                v.bids.iter().map(t).collect(),
                v.asks.iter().map(t).collect(),
            );
            if eng != got {
                bad.push(format!(
                    "{}: client levels differ from the engine's",
                    truth.asset_id
                ));
            }
        }
    }
    bad
}

#[test]
fn a_client_on_all_rebuilds_every_book_through_faults() {
    // A small feed ring: bursts overflow it, so repair snapshots are exercised too.
    let (sim, engine) = start(
        100,
        3_000,
        StreamConfig {
            feed_capacity: 1024,
            delta_hash_every: Duration::ZERO,
            ..StreamConfig::default()
        },
    );
    let mut c = Client::connect(&engine);
    c.send(r#"{"op":"subscribe","channel":"book","all":true}"#);
    let sub = c.wait_other("subscribed", |v| v["type"] == "subscribed");
    assert_eq!(sub["assets"], 200, "{sub}");
    // A second client by market, conflated, to check it gets snapshots too.
    let mut c2 = Client::connect(&engine);
    let market = sim.truth_all().expect("truth")[0].market.clone();
    c2.send(&format!(
        r#"{{"op":"subscribe","channel":"book","markets":["{market}"],"interval_ms":100}}"#
    ));

    let faults = sim.faults();
    let start = Instant::now();
    let mut drops = 0;
    while start.elapsed() < Duration::from_secs(5) {
        if start.elapsed() > Duration::from_secs(drops * 2 + 1) {
            drops += faults
                .drop_connection(ConnTarget::All)
                .expect("drop")
                .min(1) as u64;
        }
        faults.malformed_frame(ConnTarget::All).expect("malformed");
        c.pump(Instant::now() + Duration::from_millis(100))
            .expect("open");
        c2.pump(Instant::now() + Duration::from_millis(20))
            .expect("open");
    }
    faults.clear().expect("clear");
    sim.pause().expect("pause");
    wait_for(
        "engine books equal to the truth",
        Duration::from_secs(60),
        || differences(&engine, &sim).is_empty().then_some(()),
    );
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < end {
        c.pump(Instant::now() + Duration::from_millis(200))
            .expect("open");
        last = client_differences(&c, &sim, &engine);
        if last.is_empty() {
            break;
        }
    }
    assert!(last.is_empty(), "{:?}", &last[..last.len().min(10)]);
    let checks = c.books.checks;
    let stats = engine.stream_stats().expect("stream stats");
    let feed = engine.feed_stats().expect("feed stats");
    eprintln!("client: {checks:?}\nstream: {stats:?}\nfeed: {feed:?}");
    assert_eq!(checks.seq_gaps, 0, "{checks:?}");
    assert_eq!(checks.orphans, 0, "{checks:?}");
    assert_eq!(checks.hash_mismatches, 0, "{checks:?}");
    assert!(checks.hashes_checked > checks.snapshots, "{checks:?}");
    assert_eq!(stats.seq_errors, 0, "{stats:?}");
    assert!(drops >= 2);
    // Feed gaps, if any, were repaired by snapshots.
    assert_eq!(feed.gaps > 0, feed.repairs > 0, "{feed:?}");
    c2.pump(Instant::now() + Duration::from_millis(300))
        .expect("open");
    assert_eq!(
        c2.books.books.len(),
        2,
        "conflated client: {:?}",
        c2.books.checks
    );
    let c2c = c2.books.checks;
    assert!(
        c2c.deltas == 0 && c2c.snapshots > 2,
        "conflated client: {c2c:?}"
    );
    let json = engine
        .published_stats(Duration::from_secs(5))
        .expect("stats");
    assert_eq!(json["stream"]["clients"], 2, "{}", json["stream"]);
    engine.stop();
    sim.stop();
}

#[test]
fn a_client_that_never_reads_is_conflated_then_closed_and_nobody_else_notices() {
    let (sim, engine) = start(
        50,
        4_000,
        StreamConfig {
            max_queued_bytes: 64 * 1024,
            slow_close_after: Duration::from_secs(1),
            send_buffer_bytes: Some(16 * 1024),
            ..StreamConfig::default()
        },
    );
    // The slow client: a tiny receive buffer, subscribes to everything, never reads.
    let port = engine.stream_port().expect("port");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let tcp: TcpStream = sock.into();
    let (mut slow, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/ws"), tcp).unwrap();
    slow.send(Message::text(
        r#"{"op":"subscribe","channel":"book","all":true}"#,
    ))
    .unwrap();
    slow.send(Message::text(
        r#"{"op":"subscribe","channel":"trades","all":true}"#,
    ))
    .unwrap();
    let mut good = Client::connect(&engine);
    good.send(r#"{"op":"subscribe","channel":"book","all":true}"#);
    let end = Instant::now() + Duration::from_secs(20);
    let mut max_queued = 0;
    loop {
        good.pump(Instant::now() + Duration::from_millis(100))
            .expect("good client open");
        let s = engine.stream_stats().unwrap();
        max_queued = max_queued.max(s.queued_bytes);
        if s.slow_closes >= 1 {
            break;
        }
        assert!(Instant::now() < end, "slow client never closed: {s:?}");
    }
    let s = engine.stream_stats().unwrap();
    assert!(s.conflations >= 1, "{s:?}");
    // Memory bounded: at most each client's bound plus one message in flight.
    assert!(max_queued <= 3 * 64 * 1024, "queued {max_queued}");
    // The slow client now reads: what was buffered, then the end of the connection.
    slow.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut close = None;
    loop {
        match slow.read() {
            Ok(Message::Close(f)) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        assert!(Instant::now() < end, "slow connection still open");
    }
    assert!(close.is_none_or(|c| c == 1008), "{close:?}");
    // The good client and the engine were unaffected.
    sim.pause().expect("pause");
    wait_for(
        "engine books equal to the truth",
        Duration::from_secs(30),
        || differences(&engine, &sim).is_empty().then_some(()),
    );
    let end = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    while Instant::now() < end {
        good.pump(Instant::now() + Duration::from_millis(200))
            .expect("open");
        last = client_differences(&good, &sim, &engine);
        if last.is_empty() {
            break;
        }
    }
    assert!(last.is_empty(), "{:?}", &last[..last.len().min(10)]);
    assert_eq!(good.books.checks.seq_gaps, 0, "{:?}", good.books.checks);
    assert_eq!(engine.stream_stats().unwrap().clients, 1);
    engine.stop();
    sim.stop();
}

#[test]
fn bad_input_gets_errors_or_a_close_and_never_hurts_anyone() {
    let (sim, engine) = start(
        5,
        200,
        StreamConfig {
            max_clients: 3,
            max_all_subscribers: 1,
            ..StreamConfig::default()
        },
    );
    let mut c = Client::connect(&engine);
    let asset = sim.assets().expect("assets")[0].clone();
    for bad in [
        "not json",
        r#"{"op":"dance"}"#,
        r#"{"op":"subscribe","channel":"nope","all":true}"#,
        r#"{"op":"subscribe","assets":["nope-token"]}"#,
    ] {
        c.others.clear();
        c.send(bad);
        let e = c.wait_other("error", |v| v["type"] == "error");
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    }
    // 10,000 assets in one subscribe: a clear error.
    let many: Vec<String> = (0..10_000).map(|i| format!("\"{i}\"")).collect();
    c.others.clear();
    c.send(&format!(
        r#"{{"op":"subscribe","assets":[{}]}}"#,
        many.join(",")
    ));
    let e = c.wait_other("error", |v| v["type"] == "error");
    assert!(e["error"].as_str().unwrap().contains("too many"), "{e}");
    // The original system's path and protocol.
    let mut legacy = {
        let tcp = TcpStream::connect(("127.0.0.1", engine.stream_port().unwrap())).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let url = format!(
            "ws://127.0.0.1:{}/ws/orderbook",
            engine.stream_port().unwrap()
        );
        let (ws, _) = tungstenite::client(url, tcp).expect("legacy handshake");
        Client {
            ws,
            books: ClientBooks::new(),
            others: Vec::new(),
        }
    };
    legacy.send(&format!(r#"{{"subscribe":"{asset}","interval_ms":50}}"#));
    let first = legacy.wait_other("orderbook", |v| v["type"] == "orderbook");
    assert!(first["bids"][0]["price"].is_string(), "{first}");
    drop(legacy);
    // Ping, the legacy protocol, bbo.
    c.send(r#"{"op":"ping"}"#);
    c.wait_other("pong", |v| v["type"] == "pong");
    c.send(&format!(r#"{{"subscribe":"{asset}","interval_ms":100}}"#));
    let ob = c.wait_other("orderbook", |v| v["type"] == "orderbook");
    assert_eq!(ob["asset_id"], asset.as_str());
    assert!(ob["bids"].as_array().unwrap().len() <= 10);
    c.send(&format!(
        r#"{{"op":"subscribe","channel":"bbo","assets":["{asset}"]}}"#
    ));
    c.wait_other("bbo", |v| {
        v["type"] == "bbo" && v["asset"] == asset.as_str()
    });
    c.send(&format!(
        r#"{{"op":"subscribe","channel":"book","assets":["{asset}"],"depth":2}}"#
    ));
    let end = Instant::now() + Duration::from_secs(10);
    while !c.books.books.contains_key(&asset) {
        assert!(Instant::now() < end, "no snapshot");
        c.pump(Instant::now() + Duration::from_millis(50))
            .expect("open");
    }
    assert!(c.books.books[&asset].mirror.book().bids().len() <= 2 || c.books.checks.deltas > 0);

    // An oversized frame closes that connection (1009), nobody else's.
    let mut big = Client::connect(&engine);
    // The server may close before the whole frame is written (a broken pipe here).
    let _ = big.ws.send(Message::text("x".repeat(2 << 20)));
    let end = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        if let Err(e) = big.pump(Instant::now() + Duration::from_millis(100)) {
            break e;
        }
        assert!(Instant::now() < end, "oversized frame did not close");
    };
    assert!(
        closed.as_ref().is_none_or(|(code, _)| *code == 1009),
        "{closed:?}"
    );
    c.send(r#"{"op":"ping"}"#);
    c.others.clear();
    c.wait_other("pong after another client's close", |v| v["type"] == "pong");

    // The client limit: 3 allowed; the 4th is refused and counted.
    let _c2 = Client::connect(&engine);
    let mut _c3 = Client::connect(&engine);
    // At most one client on "all" here.
    c.send(r#"{"op":"subscribe","channel":"trades","all":true}"#);
    c.wait_other("subscribed to all", |v| {
        v["type"] == "subscribed" && v["all"] == true
    });
    _c3.send(r#"{"op":"subscribe","channel":"book","all":true}"#);
    let e = _c3.wait_other("error", |v| v["type"] == "error");
    assert!(
        e["error"].as_str().unwrap().contains("too many clients"),
        "{e}"
    );
    let wait = Instant::now() + Duration::from_secs(5);
    while engine.stream_stats().unwrap().clients < 3 {
        assert!(Instant::now() < wait);
        std::thread::sleep(Duration::from_millis(10));
    }
    let port = engine.stream_port().unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(tungstenite::client(format!("ws://127.0.0.1:{port}/ws"), tcp).is_err());
    let s = engine.stream_stats().unwrap();
    assert_eq!(s.refused, 1, "{s:?}");
    assert!(s.bad_requests >= 5 && s.protocol_closes >= 1, "{s:?}");
    // A wrong path is refused by the handshake.
    drop(_c2);
    let wait = Instant::now() + Duration::from_secs(5);
    while engine.stream_stats().unwrap().clients >= 3 {
        assert!(Instant::now() < wait);
        std::thread::sleep(Duration::from_millis(10));
    }
    // polypy-tail follows a market and its checks pass.
    let market = sim.truth_all().expect("truth")[0].market.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_polypy-tail"))
        .args([
            "--url",
            &format!("ws://127.0.0.1:{port}/ws"),
            "--market",
            &market,
        ])
        .args(["--duration", "1.5"])
        .output()
        .expect("polypy-tail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("final: books=2 trusted=2"), "{err}");
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = tungstenite::client(format!("ws://127.0.0.1:{port}/elsewhere"), tcp);
    assert!(r.is_err());
    wait_for(
        "a counted handshake failure",
        Duration::from_secs(5),
        || (engine.stream_stats().unwrap().handshake_failures >= 1).then_some(()),
    );
    engine.stop();
    sim.stop();
}
