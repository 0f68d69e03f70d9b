//! Comparing the engine's books with the simulated exchange's truth (shared by tests).

#![allow(dead_code, reason = "each test uses part of it")]

use std::time::{Duration, Instant};

use polypy::engine::EngineHandle;
use polypy::sim::SimHandle;
use polypy::worker::BookView;

type Side = Vec<(String, String)>;

fn levels(v: &BookView) -> (Side, Side) {
    let t = |l: &polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
    (
        v.bids.iter().map(t).collect(),
        v.asks.iter().map(t).collect(),
    )
}

/// Assets whose engine book differs from the truth (or is untrusted), with the reason.
pub(crate) fn differences(engine: &EngineHandle, sim: &SimHandle) -> Vec<String> {
    let mut bad = Vec::new();
    for truth in sim.truth_all().expect("truth") {
        let view = match engine.book(&truth.asset_id, 1000, Duration::from_secs(5)) {
            Ok(Some(v)) => v,
            Ok(None) => {
                bad.push(format!("{}: no book", truth.asset_id));
                continue;
            }
            Err(e) => {
                bad.push(format!("{}: {e}", truth.asset_id));
                continue;
            }
        };
        let want: (Side, Side) = (
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
        if !view.trusted {
            bad.push(format!("{}: untrusted ({:?})", truth.asset_id, view.reason));
        } else if levels(&view) != want {
            bad.push(format!("{}: levels differ", truth.asset_id));
        } else if view.hash != truth.hash && view.timestamp.to_string() == truth.timestamp {
            bad.push(format!(
                "{}: hash {} != {}",
                truth.asset_id, view.hash, truth.hash
            ));
        }
    }
    bad
}

/// Polls `f` until it returns `Some` or `deadline` passes.
pub(crate) fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every book equals the truth; panics with the differences otherwise.
pub(crate) fn assert_books_equal_truth(engine: &EngineHandle, sim: &SimHandle, deadline: Duration) {
    let end = Instant::now() + deadline;
    loop {
        let bad = differences(engine, sim);
        if bad.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} books differ from the truth, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
