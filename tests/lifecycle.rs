//! Market lifecycle against the simulated exchange: Gamma discovery over keyset pages with
//! error answers, markets that expire (EXPIRED → unsubscribed → removed), markets that appear
//! (subscribed within one discovery interval, or at once from `new_market`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use polypy::discovery::{GammaClient, RetryPolicy};
use polypy::engine::{Engine, EngineHandle, EngineHooks};
use polypy::event_loop::LifecycleEvent;
use polypy::sim::{Sim, SimConfig, SimHandle};

#[path = "support/truth.rs"]
mod truth;

fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns `Some` or `deadline` passes (then `None`).
fn wait_for_opt<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[path = "support/engine.rs"]
mod engine_support;
use engine_support::engine_config as config;

fn lifecycle(engine: &EngineHandle) -> serde_json::Value {
    engine.stats(Duration::from_secs(5)).expect("stats")["lifecycle"].clone()
}

fn subscribed_at_sim(sim: &SimHandle) -> usize {
    sim.sent_counters()
        .expect("counters")
        .iter()
        .filter(|c| c.open)
        .map(|c| c.subscribed)
        .sum()
}

#[test]
fn gamma_keyset_pages_of_100_with_3000_markets_survive_429_and_500() {
    let sim = Sim::start(SimConfig {
        markets: 3_000,
        rate_per_sec: 1,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let retry = RetryPolicy {
        attempts: 8,
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    let mut client = GammaClient::new(&sim.http_url(), Duration::from_secs(5), retry.clone());
    let scan = client.scan(&|| false).expect("scan");
    assert_eq!(scan.markets.len(), 3_000);
    // 30 full pages of 100, plus at most the empty page that ends the cursor chain.
    assert!((30..=31).contains(&scan.pages), "{} pages", scan.pages);
    assert!(!scan.used_offsets);

    for status in [429, 500] {
        sim.faults().set_gamma_error(Some(status));
        let faults = sim.faults().clone();
        let healer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            faults.set_gamma_error(None);
        });
        let mut client = GammaClient::new(&sim.http_url(), Duration::from_secs(5), retry.clone());
        let scan = client.scan(&|| false).expect("scan survives");
        healer.join().expect("healer");
        assert_eq!(scan.markets.len(), 3_000, "status {status}");
        assert!(client.retries > 0, "status {status}: no retry happened");
    }
    sim.stop();
}

#[test]
fn expired_markets_are_unsubscribed_then_removed_and_new_ones_subscribed() {
    // A fifth of the markets end within 4 s; a new market appears every second.
    let sim = Sim::start(SimConfig {
        markets: 50,
        rate_per_sec: 500,
        expiring_share: 0.2,
        expiry_within: Duration::from_secs(4),
        new_market_every: Some(Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .expect("sim");
    let expiring = sim
        .markets()
        .expect("markets")
        .iter()
        .filter(|m| m.end_date_ms <= now_ms() + 4_000)
        .count();
    assert!(expiring >= 5, "{expiring}");

    let (tx, events) = unbounded();
    let mut cfg = config(&sim);
    cfg.discovery_interval = Duration::from_secs(2);
    // The pool subscribes a few pending assets at most this long after they are added.
    cfg.pool.batch_interval = Duration::from_secs(1);
    cfg.expiry_interval = Duration::from_millis(500);
    cfg.cleanup_grace = Duration::from_secs(1);
    let engine = Engine::start_with(
        cfg,
        EngineHooks {
            lifecycle: Some(Arc::new(move |e: &LifecycleEvent| {
                let _ = tx.send(e.clone());
            })),
            ..EngineHooks::default()
        },
    )
    .expect("engine");
    wait_for("100 assets subscribed", Duration::from_secs(20), || {
        (subscribed_at_sim(&sim) >= 100).then_some(())
    });

    // Expiry: EXPIRED, unsubscribed at the venue, then removed after the grace period.
    let l = wait_for("expired markets removed", Duration::from_secs(30), || {
        let l = lifecycle(&engine);
        (l["removed"].as_u64() >= Some(2 * expiring as u64)).then_some(l)
    });
    assert!(l["expired"].as_u64() >= Some(2 * expiring as u64), "{l}");
    let expired_events: Vec<LifecycleEvent> = events
        .try_iter()
        .filter(|e| matches!(e, LifecycleEvent::MarketExpired { .. }))
        .collect();
    assert!(expired_events.len() >= expiring, "{expired_events:?}");
    // Unsubscribed at the venue: the sim's connections no longer carry them (the freeze
    // probe's subscriptions, a few of the busiest live assets, are counted apart).
    let mut seen = (0, serde_json::Value::Null);
    let agreed = wait_for_opt(Duration::from_secs(5), || {
        let active_at_sim = subscribed_at_sim(&sim) as u64;
        let stats = engine.stats(Duration::from_secs(5)).expect("stats");
        let probe = stats["integrity"]["probe_assets"].as_u64().unwrap_or(0);
        let engine_side = stats["registry"]["subscribed"].as_u64().unwrap_or(0) + probe;
        seen = (active_at_sim, stats["registry"].clone());
        (active_at_sim == engine_side).then_some(())
    });
    assert!(
        agreed.is_some(),
        "sim subscriptions {} vs engine subscribed + probe: {}",
        seen.0,
        seen.1
    );

    // New markets: subscribed within one discovery interval.
    let known = sim.markets().expect("markets").len();
    let newest = wait_for("a new market at the sim", Duration::from_secs(10), || {
        let m = sim.markets().expect("markets");
        (m.len() > known).then(|| m.last().cloned()).flatten()
    });
    let appeared = Instant::now();
    let token = newest.tokens[0].clone();
    let mut last = String::new();
    let trusted = wait_for_opt(Duration::from_secs(10), || {
        let book = engine.book(&token, 10, Duration::from_secs(2));
        last = format!("{book:?}");
        book.ok().flatten().filter(|b| b.trusted)
    });
    if trusted.is_none() {
        let s = engine.stats(Duration::from_secs(5)).expect("stats");
        panic!(
            "timed out waiting for the new market's book trusted: last answer {last}; \
             registry {}; integrity {}; pool {}",
            s["registry"], s["integrity"], s["pool"]
        );
    }
    // One discovery interval (2 s) + one pool batch (1 s) + the snapshot, with slack for a
    // loaded CI machine.
    let took = appeared.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "new market trusted after {took:?}"
    );
    engine.stop();
    sim.stop();
}

#[test]
fn new_market_messages_subscribe_at_once_with_custom_features() {
    let sim = Sim::start(SimConfig {
        markets: 10,
        rate_per_sec: 200,
        expiring_share: 0.0,
        new_market_every: Some(Duration::from_millis(500)),
        ..SimConfig::default()
    })
    .expect("sim");
    let news = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&news);
    let mut cfg = config(&sim);
    cfg.custom_features = true;
    // Gamma is only read at start: anything new must come from `new_market`.
    cfg.discovery_interval = Duration::from_secs(3600);
    let engine = Engine::start_with(
        cfg,
        EngineHooks {
            lifecycle: Some(Arc::new(move |e: &LifecycleEvent| {
                if matches!(e, LifecycleEvent::NewMarket { .. }) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            })),
            ..EngineHooks::default()
        },
    )
    .expect("engine");
    wait_for("initial markets", Duration::from_secs(20), || {
        (engine.trusted_books() >= 20).then_some(())
    });
    let start_news = news.load(Ordering::Relaxed);
    let known = sim.markets().expect("markets").len();
    let newest = wait_for("a new market at the sim", Duration::from_secs(10), || {
        let m = sim.markets().expect("markets");
        (m.len() > known).then(|| m.last().cloned()).flatten()
    });
    let token = newest.tokens[1].clone();
    wait_for(
        "the new market's book trusted",
        Duration::from_secs(5),
        || {
            engine
                .book(&token, 10, Duration::from_secs(2))
                .ok()
                .flatten()
                .filter(|b| b.trusted)
        },
    );
    assert!(news.load(Ordering::Relaxed) > start_news);
    let l = lifecycle(&engine);
    assert!(l["new_market_notices"].as_u64() > Some(0), "{l}");
    assert_eq!(l["scans"].as_u64(), Some(1), "only the first scan ran: {l}");
    engine.stop();
    sim.stop();
}

/// Issue 13, defect 2: a `new_market` notice carries neither `min_order_size` nor
/// `neg_risk`, and the venue's hash commits to both. Books of announced markets must verify
/// from their first snapshot on (the engine infers both from that hash) and equal the truth.
#[test]
fn announced_markets_verify_their_hashes_from_the_first_snapshot() {
    // `POLYPY_ANNOUNCED_BASE=200` reproduces the run (200 markets at start).
    let base = std::env::var("POLYPY_ANNOUNCED_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let sim = Sim::start(SimConfig {
        markets: base,
        rate_per_sec: 600,
        expiring_share: 0.0,
        new_market_every: Some(Duration::from_millis(250)),
        new_market_neg_risk_share: 0.5,
        ..SimConfig::default()
    })
    .expect("sim");
    let mut cfg = config(&sim);
    cfg.custom_features = true;
    // Gamma is only read at start: announced markets are known from their notice alone.
    cfg.discovery_interval = Duration::from_secs(3600);
    let engine = Engine::start(cfg).expect("engine");
    let known = wait_for("initial markets", Duration::from_secs(20), || {
        let n = sim.markets().expect("markets").len();
        (engine.trusted_books() >= 2 * n as u64).then_some(n)
    });
    wait_for("8 announced markets", Duration::from_secs(20), || {
        (sim.markets().expect("markets").len() >= known + 8).then_some(())
    });
    sim.pause().expect("pause");
    let markets = sim.markets().expect("markets");
    let announced = &markets[known..];
    let unusual = announced
        .iter()
        .filter(|m| m.neg_risk || m.min_order_size.raw() != 5_000_000)
        .count();
    let mut last = Vec::new();
    wait_for("books equal to the truth", Duration::from_secs(30), || {
        last = truth::differences(&engine, &sim);
        last.is_empty().then_some(())
    });
    let stats = engine.stats(Duration::from_secs(5)).expect("stats");
    let i = &stats["integrity"];
    eprintln!(
        "announced={} unusual={unusual} integrity={i}",
        announced.len()
    );
    assert!(unusual > 0, "the sim announced only default metadata");
    assert_eq!(i["snapshot_hash_mismatched"].as_u64(), Some(0), "{i}");
    assert_eq!(i["hash_mismatched"].as_u64(), Some(0), "{i}");
    assert!(
        i["meta_inferred"].as_u64() >= Some(2 * unusual as u64),
        "every token of an unusual announced market inferred its metadata: {i}"
    );
    engine.stop();
    sim.stop();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
