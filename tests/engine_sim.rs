//! The engine against the simulated exchange, end to end over loopback: discovery from the
//! sim's Gamma, ≥ 10 connections, flow with faults (drops, a silent connection stall, an
//! asset stall, malformed frames, tiny writes), then the sim pauses and every book must equal
//! the sim's truth, trusted, with the counters adding up.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use polypy::config::{EngineConfig, IdleMode};
use polypy::engine::Engine;
use polypy::sim::{ConnTarget, Sim, SimConfig, SimHandle};
use polypy::worker::noop_factory;

#[path = "support/truth.rs"]
mod truth;
use truth::{differences, wait_for};

const DEADLINE: Duration = Duration::from_secs(5);

fn engine_config(sim: &SimHandle) -> EngineConfig {
    let mut c = EngineConfig {
        ws_url: sim.ws_url(),
        gamma_url: sim.http_url(),
        workers: 2,
        pin_workers: false,
        // Two cores run the sim and the engine: never spin.
        idle: IdleMode::Park,
        data_silence: Duration::from_secs(2),
        snapshot_timeout: Duration::from_secs(3),
        asset_silence: Duration::from_secs(3),
        ..EngineConfig::default()
    };
    c.pool.target_per_connection = 200;
    c
}

fn stat(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

#[test]
fn books_equal_truth_after_faults_at_5k_msgs_per_second() {
    let sim = Sim::start(SimConfig {
        markets: 1_000,
        rate_per_sec: 5_000,
        seed: 42,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let engine =
        Engine::start_with_handlers(engine_config(&sim), noop_factory(), true).expect("engine");

    // Start-up: 2,000 assets on 10 connections, every book trusted.
    wait_for("2,000 trusted books", Duration::from_secs(60), || {
        (engine.trusted_books() == 2_000).then_some(())
    });
    let open: Vec<u32> = sim
        .sent_counters()
        .expect("counters")
        .iter()
        .filter(|c| c.open)
        .map(|c| c.conn)
        .collect();
    assert!(open.len() >= 10, "connections: {}", open.len());

    // Ten seconds of flow with faults.
    let faults = sim.faults();
    faults
        .split_writes(ConnTarget::All, Some(64))
        .expect("split");
    let stalled_conn = open[1];
    faults
        .stall_connection(ConnTarget::Conn(stalled_conn), true)
        .expect("stall");
    let stalled_asset = sim.assets().expect("assets")[7].clone();
    faults
        .stall_asset(&stalled_asset, true)
        .expect("stall asset");
    let before = sim.stats().expect("sim stats");
    let start = Instant::now();
    let mut next_drop = start + Duration::from_secs(2);
    let mut malformed = 0usize;
    let mut drops = 0usize;
    while start.elapsed() < Duration::from_secs(10) {
        // ~1 % of messages: one malformed message per connection every 200 ms.
        malformed += faults.malformed_frame(ConnTarget::All).expect("malformed");
        if Instant::now() >= next_drop {
            let live: Vec<u32> = sim
                .sent_counters()
                .expect("counters")
                .iter()
                .filter(|c| c.open && c.conn != stalled_conn)
                .map(|c| c.conn)
                .collect();
            drops += faults
                .drop_connection(ConnTarget::Conn(live[drops % live.len()]))
                .expect("drop");
            next_drop += Duration::from_secs(2);
        }
        if start.elapsed() > Duration::from_secs(6) {
            faults
                .stall_asset(&stalled_asset, false)
                .expect("unstall asset");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = sim.stats().expect("sim stats");
    faults.clear().expect("clear");
    let sent = after.generated_messages - before.generated_messages;
    assert!(sent >= 45_000, "flow too slow: {sent} messages in 10 s");
    assert!(
        malformed >= 100 && drops >= 4,
        "malformed={malformed} drops={drops}"
    );

    // Quiesce: pause the flow, then every book must equal the truth and be trusted.
    sim.pause().expect("pause");
    let mut last = Vec::new();
    wait_for("books equal to the truth", Duration::from_secs(60), || {
        last = differences(&engine, &sim);
        last.is_empty().then_some(())
    });
    assert!(last.is_empty(), "{last:?}");

    // The faults were seen, counted and healed.
    let stats = engine.stats(DEADLINE).expect("stats");
    eprintln!(
        "integrity: {}\nrouter: {}",
        stats["integrity"], stats["router"]
    );
    let integrity = &stats["integrity"];
    assert!(stat(integrity, &["decode_failures"]) > 0, "{integrity}");
    // ... and charged to the connections they arrived on.
    let per_conn: u64 = stats["pool"]["stats"]
        .as_array()
        .expect("pool.stats")
        .iter()
        .map(|c| c["parse_errors"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        per_conn > 0,
        "no connection counted a parse error: {}",
        stats["pool"]
    );
    assert!(
        stat(integrity, &["resyncs", "decode_failure"]) > 0,
        "{integrity}"
    );
    assert!(
        stat(integrity, &["resyncs", "reconnect"]) > 0,
        "{integrity}"
    );
    assert!(
        stat(integrity, &["data_silence_reconnects"]) >= 1,
        "{integrity}"
    );
    assert!(
        stat(integrity, &["resyncs", "asset_silent"])
            + stat(integrity, &["resyncs", "no_snapshot"])
            >= 1,
        "the stalled asset was not resynced: {integrity}"
    );
    assert_eq!(stat(integrity, &["hash_mismatched"]), 0, "{integrity}");

    // Counters add up: every record routed reached a worker; every dropped record was
    // resynced.
    let router = engine.router_stats();
    let processed: u64 = engine
        .worker_stats()
        .iter()
        .map(|w| w.messages_processed)
        .sum();
    assert_eq!(
        processed,
        router.messages_routed + router.data_loss_markers + router.control_items,
        "{router:?}"
    );
    if router.messages_dropped > 0 {
        assert!(router.resync_assets > 0, "{router:?}");
    }
    engine.stop();
    sim.stop();
}
