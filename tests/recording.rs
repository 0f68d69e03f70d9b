//! Recordings of the engine: `--record FILE.zst` against the sim writes market lines and
//! frames; `polypy-replay` of that recording ends with the engine's books (levels, hash,
//! timestamp), the metadata taken from the recording, no hash failure.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use polypy::config::{EngineConfig, IdleMode};
use polypy::engine::{Engine, EngineHandle};
use polypy::recording::{Entry, read_entries};
use polypy::sim::{Sim, SimConfig, SimHandle};
use polypy::worker::noop_factory;

#[path = "support/truth.rs"]
mod truth;
use truth::{assert_books_equal_truth, wait_for};

/// (bids, asks, hash, timestamp) as text, bids/asks best first.
type Book = (Vec<(String, String)>, Vec<(String, String)>, String, String);

fn engine_config(sim: &SimHandle, record: &Path) -> EngineConfig {
    EngineConfig {
        ws_url: sim.ws_url(),
        gamma_url: sim.http_url(),
        workers: 2,
        pin_workers: false,
        idle: IdleMode::Park,
        record: Some(record.to_path_buf()),
        ..EngineConfig::default()
    }
}

pub(crate) fn engine_books(engine: &EngineHandle, assets: &[String]) -> BTreeMap<String, Book> {
    let t = |l: &polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
    assets
        .iter()
        .map(|a| {
            let v = engine
                .book(a, 10_000, Duration::from_secs(5))
                .unwrap()
                .unwrap();
            assert!(v.trusted, "{a} untrusted");
            let book = (
                v.bids.iter().map(t).collect(),
                v.asks.iter().map(t).collect(),
                v.hash.clone(),
                v.timestamp.to_string(),
            );
            (a.clone(), book)
        })
        .collect()
}

fn dumped_books(path: &Path) -> BTreeMap<String, Book> {
    let v: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let side = |s: &serde_json::Value| {
        s.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["price"].as_str().unwrap().to_string(),
                    l["size"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    v.into_iter()
        .map(|(k, b)| {
            let book = (
                side(&b["bids"]),
                side(&b["asks"]),
                b["hash"].as_str().unwrap().to_string(),
                b["timestamp"].as_str().unwrap().to_string(),
            );
            (k, book)
        })
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("polypy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn engine_recording_carries_metadata_and_replays_to_the_engine_books() {
    let dir = temp_dir("engine-rec");
    let rec = dir.join("rec.jsonl.zst");
    let sim = Sim::start(SimConfig {
        markets: 60,
        rate_per_sec: 2_000,
        seed: 17,
        neg_risk_share: 0.2,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .unwrap();
    let markets = sim.markets().unwrap();
    assert!(markets.iter().any(|m| m.neg_risk));
    assert!(markets.iter().any(|m| m.min_order_size.to_text() == "15"));
    let engine =
        Engine::start_with_handlers(engine_config(&sim, &rec), noop_factory(), true).unwrap();
    let assets = sim.assets().unwrap();
    wait_for("every book trusted", Duration::from_secs(60), || {
        (engine.trusted_books() == assets.len() as u64).then_some(())
    });
    // Some flow, then the sim pauses and the engine catches up with the truth.
    wait_for("flow", Duration::from_secs(60), || {
        let sent: u64 = sim
            .sent_counters()
            .unwrap()
            .iter()
            .map(|c| c.messages)
            .sum();
        (sent > 8_000).then_some(())
    });
    sim.pause().unwrap();
    assert_books_equal_truth(&engine, &sim, Duration::from_secs(30));
    let want = engine_books(&engine, &assets);
    let stats = engine.recorder_stats().unwrap();
    assert_eq!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    engine.stop();
    sim.stop();

    // The recording starts with market lines with the sim's metadata.
    let entries: Vec<Entry> = read_entries(polypy::recording::open(&rec).unwrap())
        .map(Result::unwrap)
        .collect();
    let metas: BTreeMap<String, polypy::recording::MarketMeta> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Market(_, m) => Some((m.asset_id.clone(), m.clone())),
            Entry::Frame(_) => None,
        })
        .collect();
    for m in &markets {
        for (i, token) in m.tokens.iter().enumerate() {
            let line = &metas[token];
            assert_eq!(line.market, m.condition_id);
            assert_eq!(line.outcome, m.outcomes[i]);
            assert_eq!(line.question, m.question);
            assert_eq!(line.min_order_size, m.min_order_size.to_text());
            assert_eq!(line.neg_risk, m.neg_risk);
            assert!(line.known);
        }
    }
    let first_frame = entries
        .iter()
        .position(|e| matches!(e, Entry::Frame(_)))
        .unwrap();
    assert!(
        entries[..first_frame].len() >= assets.len(),
        "metadata comes first"
    );

    // polypy-replay agrees with the engine, metadata from the recording.
    let dump = dir.join("books.json");
    let out = Command::new(env!("CARGO_BIN_EXE_polypy-replay"))
        .args([rec.as_os_str(), "--dump-books".as_ref(), dump.as_os_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("unexplained hash failures 0"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} markets: {} from the recording, 0 inferred",
            markets.len(),
            markets.len()
        )),
        "{stdout}"
    );
    let got = dumped_books(&dump);
    for (asset, book) in &want {
        assert_eq!(got.get(asset), Some(book), "{asset}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
