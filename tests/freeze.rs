//! Silent freezes against the simulated exchange (issue 20): a connection whose data stops
//! while it keeps answering PING is flagged within seconds (its books `stale`, not trusted),
//! healed make-before-break and equal to the truth afterwards; quiet connections (a message
//! every ~30 s) are never flagged or recycled.
//!
//! `POLYPY_FREEZES=N` repeats the freeze N times (default 3) and prints the figures of
//! `docs/loadtest.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use polypy::app::MetricsData;
use polypy::engine::{Engine, EngineHandle};
use polypy::sim::{ConnTarget, Sim, SimConfig};

#[path = "support/truth.rs"]
mod truth;
use truth::{assert_books_equal_truth, wait_for};

#[path = "support/engine.rs"]
mod engine_support;
use engine_support::engine_config as config;

/// (suspicions so far by evidence: probe + rate, recycles completed, data-silence reconnects).
fn counts(engine: &EngineHandle) -> (u64, u64, u64, u64) {
    let s = engine.stats(Duration::from_secs(5)).expect("stats");
    let i = &s["integrity"];
    let n = |k: &str| i["freeze_suspected"][k].as_u64().unwrap_or(0);
    (
        n("probe"),
        n("rate"),
        s["recycler"]["recycles_completed"].as_u64().unwrap_or(0),
        i["data_silence_reconnects"].as_u64().unwrap_or(0),
    )
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[test]
fn a_frozen_connection_is_flagged_within_5_s_and_healed_make_before_break() {
    // 300 markets on 3 connections, 300 msgs/s in all: ~100 msgs/s per connection.
    let sim = Sim::start(SimConfig {
        markets: 300,
        rate_per_sec: 300,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let engine = Engine::start(config(&sim)).expect("engine");
    let total = 600;
    wait_for("600 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == total).then_some(())
    });
    wait_for("the freeze probe open", Duration::from_secs(20), || {
        let s = engine.stats(Duration::from_secs(5)).expect("stats");
        (s["integrity"]["probe_open"] == true && s["integrity"]["probe_assets"].as_u64() >= Some(6))
            .then_some(())
    });
    let freezes: usize = std::env::var("POLYPY_FREEZES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (mut to_flag, mut to_heal) = (Vec::new(), Vec::new());
    for round in 0..freezes {
        let (p0, r0, done0, _) = counts(&engine);
        // Every pool connection is watched by the probe (its evidence comes from them).
        let s = engine.stats(Duration::from_secs(5)).expect("stats");
        let watched: Vec<u64> = s["pool"]["stats"]
            .as_array()
            .expect("pool stats")
            .iter()
            .map(|c| c["probe_watched"].as_u64().unwrap_or(0))
            .collect();
        // A pool connection (the most assets; not the probe) is frozen: PINGs answered, no data.
        let victim = sim
            .sent_counters()
            .expect("counters")
            .iter()
            .filter(|c| c.open)
            .max_by_key(|c| c.subscribed)
            .map(|c| c.conn)
            .expect("an open connection");
        sim.faults()
            .stall_connection(ConnTarget::Conn(victim), true)
            .expect("stall");
        let frozen_at = Instant::now();
        let flagged = wait_for("the freeze flagged", Duration::from_secs(30), || {
            let (p, r, _, _) = counts(&engine);
            (p + r > p0 + r0).then(|| frozen_at.elapsed())
        });
        // Its books say so: untrusted (stale) until the replacement's snapshots.
        let healed = wait_for("healed make-before-break", Duration::from_secs(30), || {
            let (_, _, done, _) = counts(&engine);
            (done > done0 && engine.trusted_books() == total).then(|| frozen_at.elapsed())
        });
        sim.faults()
            .stall_connection(ConnTarget::Conn(victim), false)
            .expect("unstall");
        eprintln!(
            "freeze {round}: flagged after {flagged:?}, healed after {healed:?}; \
             probe watchers per connection before {watched:?}"
        );
        to_flag.push(flagged);
        to_heal.push(healed);
    }
    to_flag.sort();
    to_heal.sort();
    eprintln!(
        "{freezes} freezes: freeze → flagged p50 {:?} p99 {:?}; freeze → healed p50 {:?} p99 {:?}",
        percentile(&to_flag, 0.5),
        percentile(&to_flag, 0.99),
        percentile(&to_heal, 0.5),
        percentile(&to_heal, 0.99)
    );
    let worst = to_flag.last().copied().unwrap_or_default();
    assert!(
        worst <= Duration::from_secs(5),
        "a freeze took {worst:?} to flag"
    );
    // The books said so while it was true: untrusted with reason `stale`.
    let s = engine.stats(Duration::from_secs(5)).expect("stats");
    let stale: u64 = s["workers"]["worker_stats"]
        .as_array()
        .expect("worker_stats")
        .iter()
        .map(|w| w["untrusted"]["stale"].as_u64().unwrap_or(0))
        .sum();
    assert!(stale >= 100 * freezes as u64, "books marked stale: {stale}");
    let (probe, _, _, silence_reconnects) = counts(&engine);
    assert!(probe >= freezes as u64, "probe evidence counted: {probe}");
    assert_eq!(silence_reconnects, 0, "healed by recycling, not by a drop");
    let metrics = MetricsData::gather(&engine, Duration::from_secs(5))
        .expect("metrics")
        .render()
        .expect("render");
    assert!(
        metrics.contains("polypy_freeze_suspected_total{evidence=\"probe\"}"),
        "{metrics}"
    );
    sim.pause().expect("pause");
    assert_books_equal_truth(&engine, &sim, Duration::from_secs(30));
    engine.stop();
    sim.stop();
}

#[test]
fn quiet_connections_are_not_frozen() {
    // 300 markets on 3 connections, 6 msgs/min in all: a message per connection every ~30 s.
    let sim = Sim::start(SimConfig {
        markets: 300,
        rate_per_min: 6,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let engine = Engine::start(config(&sim)).expect("engine");
    let total = 600;
    wait_for("600 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == total).then_some(())
    });
    let secs = std::env::var("POLYPY_QUIET_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut least = total;
    while Instant::now() < end {
        least = least.min(engine.trusted_books());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (probe, rate, _, silence) = counts(&engine);
    let s = engine.stats(Duration::from_secs(5)).expect("stats");
    let recycled = s["recycler"]["recycles_initiated"].as_u64().unwrap_or(0);
    eprintln!(
        "quiet {secs} s: suspicions probe={probe} rate={rate}, recycles {recycled}, \
         data-silence reconnects {silence}, fewest trusted {least}"
    );
    assert_eq!(
        (probe, rate),
        (0, 0),
        "a quiet connection was suspected frozen"
    );
    assert_eq!(recycled, 0, "a quiet connection was recycled");
    assert_eq!(silence, 0, "a quiet connection was dropped");
    assert_eq!(least, total, "a book was flagged while nothing was wrong");
    engine.stop();
    sim.stop();
}
