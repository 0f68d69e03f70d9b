//! The `polypy-replay` binary on the crossing-burst fixture and on a recording.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::process::Command;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket")
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_polypy-replay"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn replay_reproduces_the_burst_final_book() {
    let input =
        fixtures().join("nautilus_trader__test_data__ws_market_price_change_crossing_burst.json");
    let dir = std::env::temp_dir().join(format!("polypy-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("books.json");
    let stdout = run(&[input.as_os_str(), "--dump-books".as_ref(), dump.as_os_str()]);
    assert!(stdout.contains("unexplained hash failures 0"), "{stdout}");
    assert!(
        stdout.contains("per entry      47 passed, 2 differed"),
        "{stdout}"
    );

    let msgs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
    let last = msgs.last().unwrap();
    let books: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let book = &books[last["asset_id"].as_str().unwrap()];
    assert_eq!(book["hash"], last["hash"]);
    assert_eq!(book["timestamp"], last["timestamp"]);
    assert_eq!(book["market"], last["market"]);
    assert_eq!(book["tick_size"], "0.001");
    // The dump is best first; the venue's message is worst first.
    let mut bids = last["bids"].as_array().unwrap().clone();
    bids.reverse();
    let mut asks = last["asks"].as_array().unwrap().clone();
    asks.reverse();
    assert_eq!(book["bids"], serde_json::Value::Array(bids));
    assert_eq!(book["asks"], serde_json::Value::Array(asks));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_reads_recordings_and_counts_failures() {
    let dir = std::env::temp_dir().join(format!("polypy-replay-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rec.jsonl");
    let mut w = polypy::recording::RecordingWriter::new(std::fs::File::create(&path).unwrap());
    let book = std::fs::read_to_string(
        fixtures().join("nautilus_trader__test_data__ws_book_snapshot_captured.json"),
    )
    .unwrap();
    w.write_frame(1, 0, &book).unwrap();
    w.write_frame(2, 0, "PONG").unwrap();
    w.write_frame(
        3,
        0,
        "{\"event_type\":\"price_change\",\"market\":\"0x1\",\"price_changes\":[",
    )
    .unwrap();
    w.flush().unwrap();
    drop(w);
    let stdout = run(&[path.as_os_str(), "--check".as_ref(), "settled".as_ref()]);
    assert!(stdout.contains("frames           3 (1 PONG)"), "{stdout}");
    assert!(stdout.contains("(0 unknown skipped, 1 failed)"), "{stdout}");
    assert!(
        stdout.contains("snapshots      1 passed, 0 failed"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[path = "support/polypy_bin.rs"]
mod polypy_bin;
#[path = "support/sim_client.rs"]
mod sim_client;

/// A bare feed the sim writes (markets with min order size 5 and 15, a fifth neg-risk,
/// trades, tick-size changes, new markets whose notice hides `neg_risk`), with unknown events
/// spliced in: `polypy-replay` with the default checks infers every market's metadata from
/// its first hash and rebuilds every book equal to the sim's truth.
#[test]
fn bare_sim_feed_replays_every_book_equal_to_the_truth() {
    use polypy::recording::{RecordingWriter, read_frames};
    use polypy::sim::{Overflow, Sim, SimConfig};
    use std::time::{Duration, Instant};

    let dir = std::env::temp_dir().join(format!("polypy-replay-bare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("sim.jsonl");
    let sim = Sim::start(SimConfig {
        markets: 60,
        rate_per_sec: 4_000,
        seed: 17,
        neg_risk_share: 0.2,
        new_market_every: Some(Duration::from_millis(300)),
        new_market_neg_risk_share: 0.5,
        overflow: Overflow::Block,
        record: Some(raw.clone()),
        ..SimConfig::default()
    })
    .unwrap();
    let markets = sim.markets().unwrap();
    let mins: std::collections::BTreeSet<String> =
        markets.iter().map(|m| m.min_order_size.to_text()).collect();
    assert!(
        mins.contains("5") && mins.contains("15"),
        "min order sizes {mins:?}"
    );
    let neg = markets.iter().filter(|m| m.neg_risk).count();
    assert!(
        neg * 6 >= markets.len(),
        "{neg} of {} neg-risk",
        markets.len()
    );

    let mut client = sim_client::connect(&sim.ws_url()).unwrap();
    client.subscribe(&sim.assets().unwrap(), true);
    let end = Instant::now() + Duration::from_secs(60);
    // Read until enough flow went out (and the clock moved past a few new markets).
    loop {
        let sent = sim.messages_sent().unwrap();
        if sent >= 30_000 {
            break;
        }
        assert!(Instant::now() < end, "the sim sent only {sent} messages");
        // Follow new markets as the engine does: subscribe the tokens of `new_market`.
        let mut new_tokens = Vec::new();
        client.read_for(Instant::now() + Duration::from_millis(50), |frame| {
            if frame.contains("\"new_market\"") {
                new_tokens.extend(new_market_tokens(frame));
            }
        });
        if !new_tokens.is_empty() {
            client.send(
                &serde_json::json!({"operation": "subscribe", "assets_ids": new_tokens})
                    .to_string(),
            );
        }
    }
    // Pause while reading in another thread (the sim waits until every queue is flushed).
    let reader = std::thread::spawn(move || {
        client.read_for(Instant::now() + Duration::from_secs(2), |_| {});
    });
    sim.pause().unwrap();
    let truth = sim.truth_all().unwrap();
    reader.join().unwrap();
    sim.stop();

    // Splice unknown events into the recording, as a future venue version would send them.
    let frames: Vec<_> = read_frames(std::io::BufReader::new(std::fs::File::open(&raw).unwrap()))
        .map(Result::unwrap)
        .collect();
    let text: String = frames.iter().map(|f| f.frame.as_str()).collect();
    for needle in [
        "\"tick_size_change\"",
        "\"last_trade_price\"",
        "\"new_market\"",
    ] {
        assert!(text.contains(needle), "the feed has no {needle}");
    }
    let path = dir.join("bare.jsonl");
    let mut w = RecordingWriter::new(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ));
    for (i, f) in frames.iter().enumerate() {
        if i % 97 == 5 {
            let unknown = format!(
                "{{\"event_type\":\"future_event_{i}\",\"market\":\"0x1\",\"timestamp\":\"1\"}}"
            );
            w.write_frame(f.recv_ns, f.conn, &unknown).unwrap();
        }
        w.write_frame(f.recv_ns, f.conn, &f.frame).unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let dump = dir.join("books.json");
    let stdout = run(&[path.as_os_str(), "--dump-books".as_ref(), dump.as_os_str()]);
    assert!(stdout.contains("unexplained hash failures 0"), "{stdout}");
    assert!(stdout.contains("0 skipped (book not trusted)"), "{stdout}");
    assert!(!stdout.contains(" 0 unknown skipped"), "{stdout}");
    assert!(stdout.contains("min order size 15"), "{stdout}");
    assert!(stdout.contains("neg risk true"), "{stdout}");
    let books: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let mut bad = Vec::new();
    for t in &truth {
        let b = &books[t.asset_id.as_str()];
        let levels = |v: &serde_json::Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|l| (l["price"].to_string(), l["size"].to_string()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let want = |ls: &[polypy::sim::TruthLevel]| {
            ls.iter()
                .map(|l| (format!("{:?}", l.price), format!("{:?}", l.size)))
                .collect::<Vec<_>>()
        };
        if b.is_null() {
            bad.push(format!("{}: no book", t.asset_id));
        } else if levels(&b["bids"]) != want(&t.bids) || levels(&b["asks"]) != want(&t.asks) {
            bad.push(format!("{}: levels differ", t.asset_id));
        } else if b["timestamp"] != t.timestamp.as_str() || b["hash"] != t.hash.as_str() {
            bad.push(format!(
                "{}: {} {} != truth {} {}",
                t.asset_id, b["timestamp"], b["hash"], t.timestamp, t.hash
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} books differ: {:?}\n{stdout}",
        bad.len(),
        truth.len(),
        &bad[..bad.len().min(5)]
    );

    // The whole engine served from the same bare feed ends with the same books over HTTP.
    let want: std::collections::BTreeMap<String, polypy_bin::Book> = truth
        .iter()
        .map(|t| {
            let side = |ls: &[polypy::sim::TruthLevel]| {
                ls.iter()
                    .map(|l| (l.price.clone(), l.size.clone()))
                    .collect()
            };
            let book = (
                side(&t.bids),
                side(&t.asks),
                t.hash.clone(),
                t.timestamp.clone(),
            );
            (t.asset_id.clone(), book)
        })
        .collect();
    let assets: Vec<String> = want.keys().cloned().collect();
    let engine = polypy_bin::Bin::spawn(&[
        "--replay".as_ref(),
        path.as_os_str(),
        "--replay-speed".as_ref(),
        "max".as_ref(),
    ]);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let done = engine
            .get("/health")
            .is_some_and(|h| h["replay"]["done"] == true);
        if done && engine.books(&assets).is_some_and(|b| b == want) {
            break;
        }
        assert!(
            Instant::now() < end,
            "polypy --replay of the bare feed: books differ; /stats {:?}",
            engine.get("/stats").map(|s| s["integrity"].clone())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = engine.get("/stats").unwrap();
    assert_eq!(
        stats["integrity"]["hash_mismatched"], 0,
        "{}",
        stats["integrity"]
    );
    assert!(
        stats["integrity"]["meta_inferred"].as_u64() > Some(0),
        "{}",
        stats["integrity"]
    );
    engine.stop();
    std::fs::remove_dir_all(&dir).ok();
}

/// The tokens of every `new_market` message in a frame.
fn new_market_tokens(frame: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(frame).unwrap_or_default();
    let msgs = match v {
        serde_json::Value::Array(a) => a,
        v => vec![v],
    };
    msgs.iter()
        .filter(|m| m["event_type"] == "new_market")
        .flat_map(|m| m["assets_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}
