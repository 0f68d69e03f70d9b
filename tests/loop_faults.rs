//! Event-loop failure paths against the simulated exchange: a failed send is a lost connection
//! (not an orphan whose books freeze while still trusted), and repeated drops of healthy
//! connections do not collapse availability, and HTTP readers cannot make the loop work.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use polypy::engine::{Engine, EngineHandle};
use polypy::sim::{ConnTarget, Sim, SimConfig, SimHandle};

#[path = "support/truth.rs"]
mod truth;
use truth::{assert_books_equal_truth, wait_for};

#[path = "support/engine.rs"]
mod engine_support;
use engine_support::engine_config as config;

fn sim(markets: usize, rate_per_sec: u64) -> SimHandle {
    Sim::start(SimConfig {
        markets,
        rate_per_sec,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim")
}

/// (connection number, reconnects) of every connection.
fn reconnects(engine: &EngineHandle) -> Vec<(u32, u64)> {
    let s = engine
        .loop_snapshot(Duration::from_secs(5))
        .expect("snapshot");
    s.pool
        .stats
        .iter()
        .filter_map(|c| {
            let n = c.connection_id.strip_prefix("conn-")?.parse().ok()?;
            Some((n, c.reconnects))
        })
        .collect()
}

#[test]
fn failed_send_is_a_lost_connection_not_an_orphan() {
    let sim = sim(50, 500);
    let engine = Engine::start(config(&sim)).expect("engine");
    wait_for("100 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == 100).then_some(())
    });
    let conns = reconnects(&engine);
    assert_eq!(conns.len(), 1, "{conns:?}");
    let (conn, before) = conns[0];

    // The next write on the connection fails (its read side still works); a resync is the
    // write that meets it.
    assert!(engine.inject_send_failure(conn));
    let token = sim.assets().expect("assets")[0].clone();
    assert!(engine.resync(vec![token]));

    wait_for(
        "the connection reconnected after its failed send",
        Duration::from_secs(20),
        || {
            reconnects(&engine)
                .iter()
                .any(|&(c, r)| c == conn && r > before)
                .then_some(())
        },
    );
    let s = engine
        .loop_snapshot(Duration::from_secs(5))
        .expect("snapshot");
    assert!(
        s.integrity.resyncs.get("reconnect").copied() >= Some(1),
        "books of the lost connection were not resynced: {:?}",
        s.integrity.resyncs
    );
    wait_for("100 trusted books again", Duration::from_secs(30), || {
        (engine.trusted_books() == 100).then_some(())
    });
    sim.pause().expect("pause");
    assert_books_equal_truth(&engine, &sim, Duration::from_secs(30));
    engine.stop();
    sim.stop();
}

#[test]
fn polling_stats_does_not_make_the_loop_work() {
    use polypy::app::{EngineApi, HttpStatus};
    use polypy::http::ApiSource;
    use std::sync::atomic::Ordering;

    let sim = sim(50, 500);
    let engine = Engine::start(config(&sim)).expect("engine");
    wait_for("100 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == 100).then_some(())
    });
    let api = EngineApi::new(engine, std::sync::Arc::new(HttpStatus::default()));
    let built = || {
        api.engine()
            .shared()
            .snapshots_built
            .load(Ordering::Relaxed)
    };
    let (before, start) = (built(), Instant::now());
    for _ in 0..500 {
        assert!(api.stats().is_ok());
        assert!(api.metrics().is_ok());
        assert!(api.markets().is_ok());
    }
    // The loop builds one snapshot per publishing interval, whatever the readers do (the old
    // code built one per request: 1,000 here).
    let intervals = start.elapsed().as_millis() / 500 + 2;
    let extra = built() - before;
    assert!(
        u128::from(extra) <= intervals,
        "{extra} snapshots built for 1,500 requests in {:?}",
        start.elapsed()
    );
    api.into_engine().stop();
    sim.stop();
}

/// Seconds of the storm: 30 by default (CI), `POLYPY_STORM_SECS=90` for the figure.
fn storm_secs() -> u64 {
    std::env::var("POLYPY_STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

#[test]
fn drops_every_five_seconds_keep_books_trusted() {
    let sim = sim(300, 2_000);
    let engine = Engine::start(config(&sim)).expect("engine");
    let total = 600;
    wait_for("600 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == total).then_some(())
    });

    // Every connection is dropped every 5 s; the trusted share is sampled every 50 ms, and
    // each drop's recovery is the time until every book is trusted again.
    let storm = Duration::from_secs(storm_secs());
    let step = Duration::from_millis(50);
    let start = Instant::now();
    let mut next_drop = start;
    let mut next_sample = start;
    let mut samples = Vec::new();
    let mut recoveries = Vec::new();
    let mut last_drop: Option<(Instant, bool)> = None; // (when, seen below total)
    let mut drops = 0u64;
    let mut dropped = 0;
    while start.elapsed() < storm {
        let now = Instant::now();
        if now >= next_drop {
            if let Some((at, _)) = last_drop.take() {
                recoveries.push(now - at); // not recovered before the next drop
            }
            dropped += sim.faults().drop_connection(ConnTarget::All).expect("drop");
            drops += 1;
            last_drop = Some((now, false));
            next_drop += Duration::from_secs(5);
        }
        if now >= next_sample {
            let trusted = engine.trusted_books();
            samples.push(trusted as f64 / total as f64);
            if let Some((at, below)) = last_drop {
                if trusted < total {
                    last_drop = Some((at, true));
                } else if below {
                    recoveries.push(now - at);
                    last_drop = None;
                }
            }
            next_sample += step;
        }
        let wake = next_drop.min(next_sample);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let min = samples.iter().copied().fold(1.0, f64::min);
    recoveries.sort();
    let worst = recoveries.last().copied().unwrap_or_default();
    let s = engine
        .loop_snapshot(Duration::from_secs(5))
        .expect("snapshot");
    let reconnects: u64 = s.pool.stats.iter().map(|c| c.reconnects).sum();
    eprintln!(
        "storm {storm:?}: {drops} drops ({dropped} connections), {reconnects} reconnects; \
         trusted share mean {:.1} % min {:.1} % over {} samples; recovery to all trusted: \
         median {:?}, worst {worst:?} over {} drops",
        mean * 100.0,
        min * 100.0,
        samples.len(),
        recoveries
            .get(recoveries.len() / 2)
            .copied()
            .unwrap_or_default(),
        recoveries.len()
    );
    assert!(drops >= storm.as_secs() / 5, "only {drops} drops");
    assert!(
        mean >= 0.90,
        "books trusted {:.1} % of the time (min {:.1} %)",
        mean * 100.0,
        min * 100.0
    );

    // Five seconds after the last drop every book is trusted again and equals the truth.
    wait_for(
        "every book trusted after the storm",
        Duration::from_secs(5),
        || (engine.trusted_books() == total).then_some(()),
    );
    sim.pause().expect("pause");
    assert_books_equal_truth(&engine, &sim, Duration::from_secs(30));
    engine.stop();
    sim.stop();
}
