//! Zero-loss connection recycling against the simulated exchange: every connection is
//! replaced make-before-break under load and no book loses trust; pollution from expired
//! markets triggers recycling by itself.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use polypy::engine::{Engine, EngineHandle, EngineHooks};
use polypy::market::AssetId;
use polypy::orderbook::UntrustReason;
use polypy::sim::{Sim, SimConfig};
use polypy::worker::{Handler, HandlerFactory};

#[path = "support/truth.rs"]
mod truth;
use truth::{assert_books_equal_truth, wait_for};

/// Counts books losing trust for any reason but a tick-size change (which the venue's flow
/// causes on its own and which resyncs by design).
struct TrustWatch(Arc<AtomicU64>);

impl Handler for TrustWatch {
    fn on_trust_change(&mut self, _: AssetId, trusted: bool, reason: Option<UntrustReason>) {
        if !trusted && reason != Some(UntrustReason::TickSizeChange) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn watch(counter: &Arc<AtomicU64>) -> HandlerFactory {
    let c = Arc::clone(counter);
    Arc::new(move |_| Box::new(TrustWatch(Arc::clone(&c))))
}

#[path = "support/engine.rs"]
mod engine_support;
use engine_support::engine_config as config;

fn recycler(engine: &EngineHandle) -> serde_json::Value {
    engine.stats(Duration::from_secs(5)).expect("stats")["recycler"].clone()
}

fn conn_ids(engine: &EngineHandle) -> Vec<u32> {
    let s = engine
        .loop_snapshot(Duration::from_secs(5))
        .expect("snapshot");
    s.pool
        .stats
        .iter()
        .filter_map(|c| c.connection_id.strip_prefix("conn-")?.parse().ok())
        .collect()
}

#[test]
fn every_connection_recycled_under_load_without_a_gap() {
    let sim = Sim::start(SimConfig {
        markets: 500,
        rate_per_sec: 10_000,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let untrusted = Arc::new(AtomicU64::new(0));
    let engine = Engine::start_with(
        config(&sim),
        EngineHooks {
            handlers: watch(&untrusted),
            ..EngineHooks::default()
        },
    )
    .expect("engine");
    wait_for("1,000 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == 1_000).then_some(())
    });
    let before = untrusted.load(Ordering::Relaxed);
    let originals = conn_ids(&engine);
    assert_eq!(originals.len(), 5, "{originals:?}");
    let start = Instant::now();
    for c in &originals {
        assert!(engine.force_recycle(*c));
    }
    let r = wait_for("every connection recycled", Duration::from_secs(60), || {
        let r = recycler(&engine);
        (r["recycles_completed"].as_u64() == Some(originals.len() as u64)
            && r["active_recycles"].as_array().is_some_and(Vec::is_empty))
        .then_some(r)
    });
    let took = start.elapsed();
    assert_eq!(r["recycles_failed"], 0, "{r}");
    assert_eq!(r["recycles_timed_out"], 0, "{r}");
    assert_eq!(r["data_gaps"], 0, "{r}");
    assert_eq!(r["markets_migrated"], 1_000, "{r}");
    assert_eq!(r["by_reason"]["forced"], 5, "{r}");
    let now = conn_ids(&engine);
    assert!(
        now.iter().all(|c| !originals.contains(c)),
        "old connections remain: {now:?} (was {originals:?})"
    );
    assert_eq!(
        untrusted.load(Ordering::Relaxed),
        before,
        "a book lost trust during the recycles"
    );

    sim.pause().expect("pause");
    assert_books_equal_truth(&engine, &sim, Duration::from_secs(30));
    eprintln!("recycled 5 connections under 10k msgs/s in {took:?}: {r}");
    engine.stop();
    sim.stop();
}

#[test]
fn pollution_from_expired_markets_triggers_recycling() {
    // Half of the markets end within 3 s; expired assets stay on their connection (pollution)
    // until it is recycled.
    let sim = Sim::start(SimConfig {
        markets: 100,
        rate_per_sec: 1_000,
        expiring_share: 0.5,
        expiry_within: Duration::from_secs(3),
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let mut cfg = config(&sim);
    cfg.expiry_interval = Duration::from_millis(500);
    cfg.recycler.pollution_min_age = Duration::ZERO;
    cfg.recycler.check_interval = Duration::from_millis(500);
    let engine = Engine::start(cfg).expect("engine");
    let r = wait_for("a pollution recycle", Duration::from_secs(30), || {
        let r = recycler(&engine);
        (r["by_reason"]["pollution"].as_u64() >= Some(1)
            && r["recycles_completed"].as_u64() >= Some(1))
        .then_some(r)
    });
    assert_eq!(r["data_gaps"], 0, "{r}");
    let s = engine
        .loop_snapshot(Duration::from_secs(5))
        .expect("snapshot");
    for c in &s.pool.stats {
        assert!(c.pollution_ratio < 0.30, "still polluted: {c:?}");
    }
    engine.stop();
    sim.stop();
}

#[test]
fn silent_connection_is_recycled_before_the_watchdog_drops_it() {
    let sim = Sim::start(SimConfig {
        markets: 200,
        rate_per_sec: 2_000,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let mut cfg = config(&sim);
    // Suspected frozen (probe evidence within seconds, else rate-aware silence at 10 s) →
    // unhealthy recycle at once; the hard reconnect would come at 20 s.
    cfg.data_silence = Duration::from_secs(20);
    cfg.recycler.check_interval = Duration::from_millis(250);
    let untrusted = Arc::new(AtomicU64::new(0));
    let engine = Engine::start_with(
        cfg,
        EngineHooks {
            handlers: watch(&untrusted),
            ..EngineHooks::default()
        },
    )
    .expect("engine");
    wait_for("400 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == 400).then_some(())
    });
    let before = untrusted.load(Ordering::Relaxed);
    let victim = sim
        .sent_counters()
        .expect("counters")
        .iter()
        .filter(|c| c.open)
        .max_by_key(|c| c.subscribed) // a pool connection, not the freeze probe
        .map(|c| c.conn)
        .expect("an open sim connection");
    sim.faults()
        .stall_connection(polypy::sim::ConnTarget::Conn(victim), true)
        .expect("stall");
    let r = wait_for("an unhealthy recycle", Duration::from_secs(20), || {
        let r = recycler(&engine);
        (r["by_reason"]["unhealthy"].as_u64() >= Some(1)
            && r["recycles_completed"].as_u64() >= Some(1)
            && r["active_recycles"].as_array().is_some_and(Vec::is_empty))
        .then_some(r)
    });
    assert_eq!(r["data_gaps"], 0, "{r}");
    assert_eq!(r["recycles_failed"], 0, "{r}");
    let integrity = &engine.stats(Duration::from_secs(5)).expect("stats")["integrity"];
    assert_eq!(
        integrity["data_silence_reconnects"], 0,
        "the watchdog dropped the silent connection before the recycler replaced it: {integrity}"
    );
    // Its books said so while it was true (`stale`, issue 20), and only its books: at most
    // the 200 assets of one connection lost trust, and the replacement restored them.
    let lost = untrusted.load(Ordering::Relaxed) - before;
    assert!(
        (1..=200).contains(&lost),
        "{lost} books lost trust while one silent connection was replaced"
    );
    assert!(
        integrity["freeze_suspected"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{integrity}"
    );
    wait_for("every book trusted again", Duration::from_secs(10), || {
        (engine.trusted_books() == 400).then_some(())
    });
    sim.pause().expect("pause");
    assert_books_equal_truth(&engine, &sim, Duration::from_secs(30));
    engine.stop();
    sim.stop();
}
