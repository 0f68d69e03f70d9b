//! The simulated exchange against the real protocol: fixture shapes, every hash it sends
//! (checked with the foundation's books and hasher), books equal to its truth after a pause,
//! each fault, Gamma/CLOB REST behaviour, recordings.
//!
//! Loopback only. `SIM_TEST_FLOW_SECS` sets how long the 1,000-asset test reads (default 10).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a failed test"
)]

#[path = "support/sim_client.rs"]
mod sim_client;

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use polypy::market::{AssetId, Event, FieldUpdate, Price, QuotedPrice, Record, Side, Size};
use polypy::orderbook::{BookHasher, CheckContext, CheckMode, OrderBook};
use polypy::recording::read_frames;
use polypy::sim::{ConnStats, ConnTarget, MarketInfo, Sim, SimConfig, SimHandle, TruthBook};
use sim_client::{J, Mirror, Read, connect, connect_with, http, wait_for};
use tungstenite::protocol::WebSocketConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/polymarket");

fn fixture(name: &str) -> J {
    let path = PathBuf::from(FIXTURES).join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    J::parse(&text)
}

fn secs(s: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(s)
}

fn small(cfg: SimConfig) -> (SimHandle, Vec<MarketInfo>, Vec<String>) {
    let sim = Sim::start(cfg).expect("sim starts");
    let markets = sim.markets().unwrap();
    let assets = sim.assets().unwrap();
    (sim, markets, assets)
}

fn quick() -> SimConfig {
    SimConfig {
        markets: 10,
        rate_per_sec: 2_000,
        new_market_every: None,
        ..SimConfig::default()
    }
}

/// Connects, subscribes `assets`, waits for the initial dump; returns the client and its
/// connection's counters.
fn subscribed(sim: &SimHandle, assets: &[String]) -> (sim_client::Client, ConnStats) {
    let mut c = connect(&sim.ws_url()).expect("connect");
    c.subscribe(assets, false);
    match c.read(secs(5.0)) {
        Read::Frame(f) => assert!(f.starts_with('['), "initial dump is an array"),
        other => panic!("no initial dump: {other:?}"),
    }
    let stats = conn_stats(sim, &c);
    (c, stats)
}

fn conn_stats(sim: &SimHandle, c: &sim_client::Client) -> ConnStats {
    let local = c.local;
    wait_for("connection counters", Duration::from_secs(5), || {
        sim.sent_counters()
            .unwrap()
            .into_iter()
            .find(|s| s.peer == local)
    })
}

fn price(text: &str) -> Price {
    Price::parse(text.as_bytes()).unwrap()
}

/// Checks a `book` message's levels: string numbers, bids ascending, asks descending.
fn check_levels(book: &J) {
    for (side, ascending) in [("bids", true), ("asks", false)] {
        let levels = book.get(side).expect(side).arr();
        let prices: Vec<Price> = levels
            .iter()
            .map(|l| {
                assert_eq!(l.keys(), ["price", "size"]);
                price(l.get("price").and_then(J::str).expect("string price"))
            })
            .collect();
        for w in prices.windows(2) {
            assert!(
                if ascending { w[0] < w[1] } else { w[0] > w[1] },
                "{side} order"
            );
        }
    }
}

#[test]
fn messages_match_fixture_shapes_and_every_hash_verifies() {
    let (sim, markets, assets) = small(SimConfig {
        markets: 40,
        rate_per_sec: 4_000,
        seed: 7,
        trade_percent: 25,
        array_frame_share: 0.2,
        new_market_every: Some(Duration::from_millis(300)),
        expiring_share: 0.1,
        expiry_within: Duration::from_secs(1),
        ..SimConfig::default()
    });
    let live_book = fixture("marcasite__ws_market_rs__LIVE_INITIAL_FRAME_2026-10-02_trimmed.json");
    let live_keys = live_book.arr()[0].keys();
    let burst = fixture("nautilus_trader__test_data__ws_market_price_change_crossing_burst.json");
    let burst = burst.arr();
    let post_trade_keys = burst[burst.len() - 1].keys();
    let pc_keys = burst[1].keys();
    let entry_keys = burst[1].get("price_changes").unwrap().arr()[0].keys();
    let bba = fixture("nautilus_trader__test_data__ws_market_best_bid_ask_msg.json");
    let new_market = fixture("marcasite__ws_market_rs__live_new_market_2026-10-02_trimmed.json");
    let resolved = fixture("nautilus_trader__test_data__ws_market_resolved_msg.json");
    let tick = fixture("nautilus_trader__py_ws_messages__tick_size_change.json");
    let ltp = fixture("nautilus_trader__py_ws_messages__last_trade_price.json");

    let mut client = connect(&sim.ws_url()).unwrap();
    client.subscribe(&assets, true);
    let mut mirror = Mirror::new(&markets);
    mirror.own(&assets);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut first = true;
    let mut arrays = 0;
    let closed = client.read_for(secs(2.5), |frame| {
        mirror.apply(frame);
        let j = J::parse(frame);
        assert!(j.no_numbers(), "every number is a string: {frame}");
        if first {
            first = false;
            assert_eq!(
                j.arr().len(),
                assets.len(),
                "initial dump: one book per asset"
            );
        } else if j.arr().len() > 1 {
            arrays += 1;
        }
        let messages = match &j {
            J::Arr(a) => a.clone(),
            one => vec![one.clone()],
        };
        for m in &messages {
            let kind = m
                .get("event_type")
                .and_then(J::str)
                .expect("event_type")
                .to_string();
            match kind.as_str() {
                "book" if m.get("tick_size").is_some() => {
                    assert_eq!(m.keys(), live_keys);
                    check_levels(m);
                }
                "book" => {
                    assert_eq!(m.keys(), post_trade_keys);
                    check_levels(m);
                    *seen.entry("post_trade_book".into()).or_default() += 1;
                }
                "price_change" => {
                    assert_eq!(m.keys(), pc_keys);
                    for e in m.get("price_changes").unwrap().arr() {
                        assert_eq!(e.keys(), entry_keys);
                        assert_eq!(e.get("hash").and_then(J::str).map(str::len), Some(40));
                    }
                }
                "best_bid_ask" => assert_eq!(m.keys(), bba.keys()),
                "new_market" => assert_eq!(m.keys(), new_market.keys()),
                "market_resolved" => assert_eq!(m.keys(), resolved.keys()),
                "tick_size_change" => {
                    let (mut a, mut b) = (m.keys(), tick.keys());
                    a.sort_unstable();
                    b.sort_unstable();
                    assert_eq!(a, b);
                }
                "last_trade_price" => {
                    for k in ltp.keys() {
                        assert!(m.get(k).is_some(), "last_trade_price lacks {k}");
                    }
                }
                other => panic!("unexpected event_type {other}"),
            }
            *seen.entry(kind).or_default() += 1;
        }
    });
    assert_eq!(closed, None, "connection stayed open");
    for kind in [
        "book",
        "price_change",
        "last_trade_price",
        "post_trade_book",
        "best_bid_ask",
        "new_market",
        "market_resolved",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} seen: {seen:?}"
        );
    }
    assert!(arrays > 0, "no multi-message array frames");
    assert!(mirror.errors.is_empty(), "{:#?}", mirror.errors);
    assert_eq!(mirror.failures, 0);
    assert!(mirror.entries_matched > 1_000, "{}", mirror.entries_matched);
    assert!(
        mirror.entries_confirmed > 0,
        "no trade-group entries confirmed"
    );
    assert!(mirror.snapshots_matched >= assets.len() as u64);
    assert_eq!(sim.stats().unwrap().truth_errors, 0);
    sim.stop();
}

#[test]
fn tick_size_changes_come_with_a_fresh_book() {
    // Markets start near the 0.04/0.96 thresholds often enough that some cross within a second.
    let (sim, markets, assets) = small(SimConfig {
        markets: 60,
        rate_per_sec: 6_000,
        seed: 3,
        new_market_every: None,
        ..SimConfig::default()
    });
    let mut client = connect(&sim.ws_url()).unwrap();
    client.subscribe(&assets, false);
    let mut mirror = Mirror::new(&markets);
    mirror.own(&assets);
    let mut pending_tick: HashMap<String, String> = HashMap::new();
    let mut changes = 0;
    client.read_for(secs(3.0), |frame| {
        mirror.apply(frame);
        let j = J::parse(frame);
        let messages = match &j {
            J::Arr(a) => a.clone(),
            one => vec![one.clone()],
        };
        for m in messages {
            let asset = m
                .get("asset_id")
                .and_then(J::str)
                .unwrap_or_default()
                .to_string();
            match m.get("event_type").and_then(J::str) {
                Some("tick_size_change") => {
                    changes += 1;
                    let new = m.get("new_tick_size").and_then(J::str).unwrap().to_string();
                    pending_tick.insert(asset, new);
                }
                Some("book") => {
                    if let Some(new) = pending_tick.remove(&asset) {
                        assert_eq!(m.get("tick_size").and_then(J::str), Some(new.as_str()));
                    }
                }
                _ => assert!(
                    !pending_tick.contains_key(&asset),
                    "data before the fresh book"
                ),
            }
        }
    });
    assert!(changes > 0, "no tick_size_change in 3 s");
    assert!(mirror.errors.is_empty(), "{:#?}", mirror.errors);
    sim.stop();
}

#[test]
fn thousand_assets_over_three_connections_equal_truth() {
    let flow_secs: f64 = std::env::var("SIM_TEST_FLOW_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let (sim, markets, assets) = small(SimConfig {
        markets: 500,
        rate_per_sec: 6_000,
        seed: 42,
        new_market_every: None,
        ..SimConfig::default()
    });
    assert_eq!(assets.len(), 1_000);
    // Both tokens of a market on the same connection (chunk sizes are even).
    let chunks = [&assets[..334], &assets[334..668], &assets[668..]];
    let mut readers = Vec::new();
    for chunk in chunks {
        let mut client = connect(&sim.ws_url()).unwrap();
        client.subscribe(chunk, false);
        let mut mirror = Mirror::new(&markets);
        mirror.own(chunk);
        let (goal_tx, goal_rx) = crossbeam_channel::bounded::<u64>(1);
        let local = client.local;
        let end = secs(flow_secs + 30.0);
        let handle = thread::spawn(move || {
            let mut goal = None;
            loop {
                match client.read(Instant::now() + Duration::from_millis(100)) {
                    Read::Frame(f) => mirror.apply(&f),
                    Read::Pong | Read::Timeout => {}
                    Read::Closed(why) => panic!("connection closed: {why}"),
                }
                if let Ok(g) = goal_rx.try_recv() {
                    goal = Some(g);
                }
                if goal.is_some_and(|g| client.frames >= g) {
                    return (mirror, client.frames);
                }
                assert!(Instant::now() < end, "reader did not reach its frame goal");
            }
        });
        readers.push((local, goal_tx, handle, chunk.to_vec()));
    }
    // Let the flow run: the readers apply everything meanwhile.
    thread::sleep(Duration::from_secs_f64(flow_secs));
    sim.pause().expect("pause flushes every connection");
    let counters = sim.sent_counters().unwrap();
    let truth: HashMap<String, TruthBook> = sim
        .truth_all()
        .unwrap()
        .into_iter()
        .map(|t| (t.asset_id.clone(), t))
        .collect();
    let mut hasher = BookHasher::new();
    let mut messages = 0;
    for (local, goal_tx, handle, chunk) in readers {
        let c = counters
            .iter()
            .find(|c| c.peer == local)
            .expect("counters for the connection");
        assert!(c.open && !c.dropped_slow);
        messages += c.messages;
        goal_tx.send(c.frames).unwrap();
        let (mirror, frames) = handle.join().expect("reader");
        assert_eq!(frames, c.frames, "read exactly what was sent");
        assert!(mirror.errors.is_empty(), "{:#?}", mirror.errors);
        assert_eq!(mirror.failures, 0);
        assert_eq!(mirror.unconfirmed(), 0);
        for token in &chunk {
            let book = mirror.book(token).expect("book");
            assert!(book.is_trusted(), "{token}: {:?}", book.trust());
            let t = &truth[token];
            let ts: u64 = t.timestamp.parse().unwrap();
            assert_eq!(
                &TruthBook::of(book, ts, &mut hasher),
                t,
                "book differs from truth"
            );
        }
    }
    assert!(
        messages as f64 > 6_000.0 * flow_secs * 0.5,
        "too little flow: {messages}"
    );
    let stats = sim.stats().unwrap();
    assert_eq!(stats.truth_errors, 0);
    assert_eq!(stats.slow_consumer_drops, 0);
    sim.stop();
}

#[test]
fn drop_fault_cuts_the_connection() {
    let (sim, _, assets) = small(quick());
    let (mut c, stats) = subscribed(&sim, &assets[..4]);
    assert_eq!(
        sim.faults()
            .drop_connection(ConnTarget::Conn(stats.conn))
            .unwrap(),
        1
    );
    let closed = c.read_for(secs(5.0), |_| {});
    let why = closed.expect("connection cut");
    assert!(
        !why.contains("close frame"),
        "abrupt, not a close handshake: {why}"
    );
    sim.stop();
}

#[test]
fn stalled_connection_answers_pong_but_sends_no_data() {
    let (sim, _, assets) = small(SimConfig {
        rate_per_sec: 5_000,
        ..quick()
    });
    let (mut c, stats) = subscribed(&sim, &assets);
    assert_eq!(
        sim.faults()
            .stall_connection(ConnTarget::Conn(stats.conn), true)
            .unwrap(),
        1
    );
    // PONG goes through the same queue: once it arrives, nothing queued before is left.
    c.send("PING");
    loop {
        match c.read(secs(5.0)) {
            Read::Pong => break,
            Read::Frame(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let before = conn_stats(&sim, &c).frames;
    assert!(
        c.read_for(secs(0.8), |f| panic!(
            "data while stalled: {}",
            &f[..f.len().min(80)]
        ))
        .is_none()
    );
    c.send("PING");
    assert!(
        matches!(c.read(secs(3.0)), Read::Pong),
        "PONG still answered"
    );
    assert_eq!(conn_stats(&sim, &c).frames, before);
    sim.faults()
        .stall_connection(ConnTarget::Conn(stats.conn), false)
        .unwrap();
    assert!(matches!(c.read(secs(3.0)), Read::Frame(_)), "data resumes");
    sim.stop();
}

#[test]
fn stalled_asset_is_left_out_while_others_flow() {
    let (sim, _, assets) = small(SimConfig {
        rate_per_sec: 5_000,
        markets: 4,
        ..quick()
    });
    let (mut c, _) = subscribed(&sim, &assets);
    let victim = assets[0].clone();
    assert_eq!(sim.faults().stall_asset(&victim, true).unwrap(), 1);
    c.send("PING");
    while !matches!(c.read(secs(5.0)), Read::Pong) {}
    let mut others = 0;
    c.read_for(secs(1.0), |f| {
        assert!(!f.contains(&victim), "stalled asset sent");
        others += 1;
    });
    assert!(others > 0, "other assets kept flowing");
    sim.faults().stall_asset(&victim, false).unwrap();
    let mut back = false;
    c.read_for(secs(3.0), |f| back |= f.contains(&victim));
    assert!(back, "the asset flows again");
    sim.stop();
}

#[test]
fn malformed_frame_is_broken_json_naming_its_assets() {
    let (sim, markets, assets) = small(quick());
    let (mut c, stats) = subscribed(&sim, &assets);
    sim.faults()
        .malformed_frame(ConnTarget::Conn(stats.conn))
        .unwrap();
    let mut mirror = Mirror::new(&markets);
    mirror.own(&assets);
    let deadline = secs(5.0);
    let bad = loop {
        match c.read(deadline) {
            Read::Frame(f) if serde_json::from_str::<serde_json::Value>(&f).is_err() => break f,
            Read::Frame(_) => {}
            other => panic!("no malformed frame: {other:?}"),
        }
    };
    mirror.apply(&bad);
    assert_eq!(mirror.failures, 1);
    assert!(
        assets.iter().any(|a| bad.contains(a.as_str())),
        "names an asset"
    );
    assert!(
        matches!(c.read(secs(3.0)), Read::Frame(_)),
        "the connection goes on"
    );
    sim.stop();
}

#[test]
fn garbage_bytes_break_websocket_framing() {
    let (sim, _, assets) = small(quick());
    let (mut c, stats) = subscribed(&sim, &assets);
    sim.faults()
        .garbage_bytes(ConnTarget::Conn(stats.conn))
        .unwrap();
    let why = c.read_for(secs(5.0), |_| {}).expect("client fails");
    assert!(
        why.to_lowercase().contains("protocol") || why.contains("reserved"),
        "{why}"
    );
    sim.stop();
}

#[test]
fn oversized_frame_exceeds_client_limits_and_is_valid_json() {
    let (sim, _, assets) = small(quick());
    // A client without limits gets one valid array frame of at least 2 MiB.
    let mut big = connect_with(
        &sim.ws_url(),
        WebSocketConfig::default()
            .max_frame_size(None)
            .max_message_size(None),
    )
    .unwrap();
    big.subscribe(&assets, false);
    let id = conn_stats(&sim, &big).conn;
    sim.faults()
        .oversized_frame(ConnTarget::Conn(id), 2 << 20)
        .unwrap();
    let deadline = secs(10.0);
    let frame = loop {
        match big.read(deadline) {
            Read::Frame(f) if f.len() >= 2 << 20 => break f,
            Read::Frame(_) => {}
            other => panic!("no oversized frame: {other:?}"),
        }
    };
    let j = J::parse(&frame);
    assert!(j.arr().len() > 10 && j.arr().iter().all(|m| *m == j.arr()[0]));
    // A default client (16 MiB frames) cannot take a 17 MiB one.
    let (mut c, stats) = subscribed(&sim, &assets);
    sim.faults()
        .oversized_frame(ConnTarget::Conn(stats.conn), 17 << 20)
        .unwrap();
    let why = c
        .read_for(secs(20.0), |_| {})
        .expect("client refuses the frame");
    assert!(
        why.contains("too long") || why.contains("Space limit"),
        "{why}"
    );
    sim.stop();
}

#[test]
fn split_writes_deliver_intact_frames_in_tiny_pieces() {
    let (sim, markets, assets) = small(quick());
    // The mirror starts from the initial dump: the markets' metadata may already be stale
    // (a tick-size change since the sim started), and a post-trade `book` carries no tick.
    let mut mirror = Mirror::new(&markets);
    mirror.own(&assets);
    let mut c = connect(&sim.ws_url()).expect("connect");
    c.subscribe(&assets, false);
    match c.read(secs(5.0)) {
        Read::Frame(f) => mirror.apply(&f),
        other => panic!("no initial dump: {other:?}"),
    }
    let stats = conn_stats(&sim, &c);
    sim.faults()
        .split_writes(ConnTarget::Conn(stats.conn), Some(5))
        .unwrap();
    let before = conn_stats(&sim, &c);
    c.send(&serde_json::json!({"operation": "subscribe", "assets_ids": &assets}).to_string());
    c.read_for(secs(1.0), |f| mirror.apply(f));
    let after = conn_stats(&sim, &c);
    let (bytes, writes) = (
        after.bytes - before.bytes,
        after.write_calls - before.write_calls,
    );
    assert!(bytes > 10_000, "{bytes}");
    // Bytes queued before the fault took hold go out whole; the rest in ≤5-byte writes.
    assert!(writes >= bytes / 6, "writes={writes} bytes={bytes}");
    assert!(
        mirror.errors.is_empty() && mirror.failures == 0,
        "{:#?}",
        mirror.errors
    );
    assert!(
        mirror.snapshots_matched >= 2 * assets.len() as u64,
        "{}",
        mirror.snapshots_matched
    );
    sim.stop();
}

#[test]
fn slow_start_and_refused_connections() {
    let (sim, _, _) = small(quick());
    sim.faults().set_handshake_delay(Duration::from_millis(400));
    let t = Instant::now();
    connect(&sim.ws_url()).expect("connects after the delay");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    sim.faults().set_handshake_delay(Duration::ZERO);
    sim.faults()
        .refuse_connections_for(Duration::from_millis(500));
    match connect(&sim.ws_url()) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 429),
        other => panic!("expected 429, got {other:?}"),
    }
    wait_for("connections accepted again", Duration::from_secs(5), || {
        connect(&sim.ws_url()).ok()
    });
    // Only /ws/market upgrades.
    let wrong = sim.ws_url().replace("/ws/market", "/ws/");
    assert!(
        matches!(connect(&wrong), Err(tungstenite::Error::Http(r)) if r.status().as_u16() == 404)
    );
    sim.stop();
}

#[test]
fn subscription_limits_like_the_venue() {
    let (sim, _, assets) = small(SimConfig {
        markets: 60,
        max_assets_per_conn: 10,
        ..quick()
    });
    // More than 100 ids in one frame: the server closes the socket.
    let mut c = connect(&sim.ws_url()).unwrap();
    c.send(&serde_json::json!({"assets_ids": &assets[..101], "type": "market"}).to_string());
    assert!(c.read_for(secs(3.0), |_| {}).is_some(), "socket closed");
    // Beyond max assets per connection: silently no data; at the limit: data.
    let mut over = connect(&sim.ws_url()).unwrap();
    over.subscribe(&assets[..12], false);
    let mut ok = connect(&sim.ws_url()).unwrap();
    ok.subscribe(&assets[..10], false);
    assert!(matches!(ok.read(secs(3.0)), Read::Frame(_)));
    assert!(
        over.read_for(secs(1.0), |_| panic!("data beyond the limit"))
            .is_none()
    );
    sim.stop();
}

#[test]
fn slow_subscriber_is_dropped_not_waited_for() {
    let (sim, _, assets) = small(SimConfig {
        rate_per_sec: 20_000,
        queue_capacity: 64,
        ..quick()
    });
    let mut c = connect(&sim.ws_url()).unwrap();
    c.subscribe(&assets, false);
    let local = c.local;
    // Never read: the socket buffers fill, then the queue, then the sim drops the connection.
    let s = wait_for("slow drop", Duration::from_secs(20), || {
        sim.sent_counters()
            .unwrap()
            .into_iter()
            .find(|s| s.peer == local && s.dropped_slow)
    });
    assert!(!s.open);
    assert!(sim.stats().unwrap().slow_consumer_drops >= 1);
    sim.stop();
}

#[test]
fn http_faults_and_control_endpoints() {
    let (sim, _, assets) = small(quick());
    let base = sim.http_url();
    assert_eq!(
        http(
            "POST",
            &format!("{base}/sim/fault/gamma_error?status=429"),
            None
        )
        .0,
        200
    );
    assert_eq!(http("GET", &format!("{base}/markets"), None).0, 429);
    sim.faults().set_clob_error(Some(500));
    assert_eq!(
        http("GET", &format!("{base}/book?token_id={}", assets[0]), None).0,
        500
    );
    assert_eq!(http("POST", &format!("{base}/books"), Some("[]")).0, 500);
    assert_eq!(
        http("POST", &format!("{base}/sim/fault/clear"), None).0,
        200
    );
    assert_eq!(http("GET", &format!("{base}/markets"), None).0, 200);
    assert_eq!(
        http("GET", &format!("{base}/book?token_id={}", assets[0]), None).0,
        200
    );
    // Connection faults over HTTP.
    let (mut c, stats) = subscribed(&sim, &assets[..2]);
    let (status, body) = http(
        "POST",
        &format!("{base}/sim/fault/drop?conn={}", stats.conn),
        None,
    );
    assert_eq!((status, body.as_str()), (200, "{\"affected\":1}"));
    assert!(c.read_for(secs(5.0), |_| {}).is_some());
    sim.stop();
}

/// Rebuilds a REST summary into a foundation book to recompute its hash.
fn book_from_summary(j: &J, m: &MarketInfo, outcome: usize) -> (OrderBook, u64) {
    let mut book = OrderBook::new(m.book_meta(outcome));
    let ts: u64 = j
        .get("timestamp")
        .and_then(J::str)
        .unwrap()
        .parse()
        .unwrap();
    let mut ctx = CheckContext::new(CheckMode::Off);
    let levels = |side: &str| j.get(side).unwrap().arr().to_vec();
    let (bids, asks) = (levels("bids"), levels("asks"));
    let ltp = j.get("last_trade_price").and_then(J::str).unwrap();
    let rec = |event| Record {
        asset: AssetId(0),
        exchange_ts: ts,
        received_ns: 0,
        event,
    };
    book.apply(
        &rec(Event::BookBegin {
            bids: bids.len() as u16,
            asks: asks.len() as u16,
            tick_size: Some(price(j.get("tick_size").and_then(J::str).unwrap())),
            last_trade: if ltp.is_empty() {
                FieldUpdate::Clear
            } else {
                FieldUpdate::Set(QuotedPrice::parse(ltp.as_bytes()).unwrap())
            },
        }),
        &mut ctx,
    );
    for (side, list) in [(Side::Bid, &bids), (Side::Ask, &asks)] {
        for l in list {
            let p = price(l.get("price").and_then(J::str).unwrap());
            let s = Size::parse(l.get("size").and_then(J::str).unwrap().as_bytes()).unwrap();
            book.apply(
                &rec(Event::Level {
                    side,
                    price: p,
                    size: s,
                }),
                &mut ctx,
            );
        }
    }
    book.apply(&rec(Event::BookEnd { hash: None }), &mut ctx);
    (book, ts)
}

fn type_of(j: &J) -> &'static str {
    match j {
        J::Obj(_) => "object",
        J::Arr(_) => "array",
        J::Str(_) => "string",
        J::Num(_) => "number",
        J::Bool(_) => "bool",
        J::Null => "null",
    }
}

#[test]
fn gamma_pagination_lifecycle_and_clob_books() {
    let (sim, markets, assets) = small(SimConfig {
        markets: 250,
        seed: 9,
        rate_per_sec: 500,
        new_market_every: Some(Duration::from_millis(200)),
        expiring_share: 0.05,
        expiry_within: Duration::from_millis(1_500),
        ..SimConfig::default()
    });
    let base = sim.http_url();
    // Field shapes against the real market.
    let real = fixture("nautilus_trader__test_data__gamma_market.json");
    let (status, body) = http("GET", &format!("{base}/markets?limit=500"), None);
    assert_eq!(status, 200);
    let page = J::parse(&body);
    assert_eq!(page.arr().len(), 100, "limit capped at 100");
    let mut fractions = std::collections::HashSet::new();
    for m in page.arr() {
        for (k, v) in match m {
            J::Obj(kv) => kv.as_slice(),
            _ => &[],
        } {
            if let Some(rv) = real.get(k) {
                assert_eq!(type_of(v), type_of(rv), "type of {k}");
            }
        }
        let cid = m.get("conditionId").and_then(J::str).unwrap();
        assert!(cid.starts_with("0x") && cid.len() == 66);
        let tokens: Vec<String> =
            serde_json::from_str(m.get("clobTokenIds").and_then(J::str).unwrap()).unwrap();
        let outcomes: Vec<String> =
            serde_json::from_str(m.get("outcomes").and_then(J::str).unwrap()).unwrap();
        assert_eq!((tokens.len(), outcomes.len()), (2, 2));
        assert!(
            tokens
                .iter()
                .all(|t| (76..=78).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(
            m.get("closed"),
            Some(&J::Bool(false)),
            "closed defaults to false"
        );
        for d in ["endDate", "startDate"] {
            let text = m.get(d).and_then(J::str).unwrap();
            fractions.insert(text.split_once('.').map_or(0, |(_, f)| f.len()));
        }
    }
    assert!(
        fractions.len() >= 2,
        "endDate/startDate fractions vary: {fractions:?}"
    );
    let (status, body) = http("GET", &format!("{base}/markets?offset=2001"), None);
    assert_eq!(status, 422);
    assert_eq!(
        body,
        r#"{"type":"validation error","error":"offset too large, use /markets/keyset for deeper pagination"}"#
    );
    assert_eq!(
        http("GET", &format!("{base}/markets/keyset?offset=5"), None).0,
        422
    );

    // Lifecycle: markets close, new ones appear; Gamma reflects both.
    let closed = wait_for("a market to close", Duration::from_secs(10), || {
        let (_, body) = http("GET", &format!("{base}/markets?closed=true"), None);
        let j = J::parse(&body);
        j.arr().first().cloned()
    });
    assert_eq!(closed.get("closed"), Some(&J::Bool(true)));
    assert_eq!(closed.get("acceptingOrders"), Some(&J::Bool(false)));
    assert!(
        closed
            .get("closedTime")
            .and_then(J::str)
            .unwrap()
            .ends_with("+00")
    );
    wait_for("new markets", Duration::from_secs(10), || {
        (sim.markets().unwrap().len() > 252).then_some(())
    });
    let open = sim
        .markets()
        .unwrap()
        .into_iter()
        .filter(|m| !m.closed)
        .count();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/markets/keyset?limit=100&after_cursor={c}"),
            None => format!("{base}/markets/keyset?limit=100"),
        };
        let (status, body) = http("GET", &url, None);
        assert_eq!(status, 200, "{body}");
        let j = J::parse(&body);
        let page = j.get("markets").unwrap().arr();
        ids.extend(page.iter().map(|m| {
            m.get("id")
                .and_then(J::str)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }));
        match j.get("next_cursor").and_then(J::str) {
            Some(c) => {
                assert_eq!(page.len(), 100);
                cursor = Some(c.to_string());
            }
            None => break,
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids ascending, no repeats"
    );
    assert!(
        ids.len() + 3 >= open && ids.len() <= open + 3,
        "keyset saw {} of {open} open markets",
        ids.len()
    );

    // CLOB REST books: real key order, verifiable hash, limits.
    let rest_fixture = fixture("nautilus_trader__test_data__clob_book_response_empty_ask.json");
    let rest_keys = rest_fixture.keys();
    let m = markets
        .iter()
        .find(|m| {
            !sim.markets()
                .unwrap()
                .iter()
                .any(|x| x.gamma_id == m.gamma_id && x.closed)
        })
        .unwrap();
    let (status, body) = http(
        "GET",
        &format!("{base}/book?token_id={}", m.tokens[1]),
        None,
    );
    assert_eq!(status, 200);
    let j = J::parse(&body);
    assert_eq!(j.keys(), rest_keys);
    check_levels(&j);
    let (book, ts) = book_from_summary(&j, m, 1);
    assert_eq!(
        BookHasher::new().hex(&book, ts),
        j.get("hash").and_then(J::str).unwrap()
    );
    assert_eq!(
        http("GET", &format!("{base}/book?token_id=123"), None).0,
        404
    );
    assert_eq!(
        http("GET", &format!("{base}/book?token_id=abc"), None).0,
        400
    );
    let many: Vec<serde_json::Value> = (0..501)
        .map(|i| serde_json::json!({"token_id": assets[i % assets.len()]}))
        .collect();
    let (status, body) = http(
        "POST",
        &format!("{base}/books"),
        Some(&serde_json::Value::from(many).to_string()),
    );
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"Payload exceeds the limit"}"#)
    );
    let ask = serde_json::json!([{"token_id": m.tokens[0]}, {"token_id": "123"}, {"token_id": m.tokens[1]}]);
    let (status, body) = http("POST", &format!("{base}/books"), Some(&ask.to_string()));
    assert_eq!(status, 200);
    let got: Vec<String> = J::parse(&body)
        .arr()
        .iter()
        .map(|b| b.get("asset_id").and_then(J::str).unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        vec![m.tokens[0].clone(), m.tokens[1].clone()],
        "books without a book are omitted"
    );
    sim.stop();
}

#[test]
fn same_seed_same_universe() {
    // One flow message per second: the first lands long after both starting books are read.
    let a = Sim::start(SimConfig {
        markets: 30,
        seed: 5,
        rate_per_sec: 1,
        ..quick()
    })
    .unwrap();
    let b = Sim::start(SimConfig {
        markets: 30,
        seed: 5,
        rate_per_sec: 1,
        ..quick()
    })
    .unwrap();
    let c = Sim::start(SimConfig {
        markets: 30,
        seed: 6,
        ..quick()
    })
    .unwrap();
    let key = |s: &SimHandle| -> Vec<(String, Vec<String>, String)> {
        s.markets()
            .unwrap()
            .into_iter()
            .map(|m| (m.condition_id, m.tokens, m.tick_size.to_text()))
            .collect()
    };
    assert_eq!(key(&a), key(&b));
    assert_ne!(key(&a), key(&c));
    let (ta, tb) = (
        a.truth(&a.assets().unwrap()[0]).unwrap().unwrap(),
        b.truth(&b.assets().unwrap()[0]).unwrap().unwrap(),
    );
    assert_eq!(
        (ta.bids, ta.asks),
        (tb.bids, tb.asks),
        "same starting books"
    );
    for s in [a, b, c] {
        s.stop();
    }
}

#[test]
fn recording_http_pause_and_truth_endpoint() {
    let path = std::env::temp_dir().join(format!("polypy-sim-test-{}.jsonl", std::process::id()));
    let (sim, markets, assets) = small(SimConfig {
        record: Some(path.clone()),
        ..quick()
    });
    let base = sim.http_url();
    let mine = &assets[..6];
    let mut c = connect(&sim.ws_url()).unwrap();
    c.subscribe(mine, false);
    let mut mirror = Mirror::new(&markets);
    mirror.own(mine);
    let mut received = Vec::new();
    c.read_for(secs(1.0), |f| {
        mirror.apply(f);
        received.push(f.to_string());
    });
    let (status, _) = http("POST", &format!("{base}/sim/pause"), None);
    assert_eq!(status, 200);
    let sent = conn_stats(&sim, &c);
    while c.frames < sent.frames {
        match c.read(secs(5.0)) {
            Read::Frame(f) => {
                mirror.apply(&f);
                received.push(f);
            }
            other => panic!("{other:?}"),
        }
    }
    let mut hasher = BookHasher::new();
    for token in mine {
        let (status, body) = http("GET", &format!("{base}/sim/truth/{token}"), None);
        assert_eq!(status, 200);
        let t: TruthBook = serde_json::from_str(&body).unwrap();
        assert_eq!(Some(&t), sim.truth(token).unwrap().as_ref());
        let ts = t.timestamp.parse().unwrap();
        assert_eq!(
            TruthBook::of(mirror.book(token).unwrap(), ts, &mut hasher),
            t
        );
    }
    assert_eq!(http("GET", &format!("{base}/sim/truth/123"), None).0, 404);
    assert_eq!(http("POST", &format!("{base}/sim/resume"), None).0, 200);
    assert!(matches!(c.read(secs(3.0)), Read::Frame(_)), "flow resumes");
    let conn = sent.conn;
    sim.stop();
    let file = fs::File::open(&path).unwrap();
    let recorded: Vec<String> = read_frames(std::io::BufReader::new(file))
        .map(Result::unwrap)
        .filter(|f| f.conn == conn)
        .map(|f| f.frame)
        .collect();
    assert!(recorded.len() > received.len());
    assert_eq!(
        &recorded[..received.len()],
        &received[..],
        "the recording holds what was sent"
    );
    let _ = fs::remove_file(&path);
}
