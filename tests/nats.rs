//! The feed on NATS JetStream (docs/scaling.md) against a real `nats-server` (the Debian
//! package, JetStream on, started here on a free loopback port; the test fails when it is
//! missing — `.ci/run` installs it): two engines `--shard 0/2` and `--shard 1/2` against one
//! simulated exchange cover every market once, and a consumer started after them rebuilds
//! every book equal to the sim's truth; NATS stopped mid-run and started again: the engines
//! keep their books, count the drops and reconnect, the consumer sees the gap and recovers.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polypy::engine::{Engine, EngineHandle};
use polypy::nats::NatsConfig;
use polypy::nats::consumer::{ConsumerConfig, NatsConsumer};
use polypy::shard::Shard;
use polypy::sim::{Sim, SimConfig, SimHandle};
use polypy::worker::noop_factory;

#[path = "support/engine.rs"]
mod engine;
#[path = "support/truth.rs"]
mod truth;
use truth::wait_for;

type Levels = (Vec<(String, String)>, Vec<(String, String)>);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A `nats-server -js` child on loopback; killed on drop.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    fn start(port: u16, dir: &Path) -> NatsServer {
        let mut s = NatsServer {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "nats-server is not installed: `apt-get install -y nats-server` (.ci/run does it)",
            );
        self.child = Some(child);
        let port = self.port;
        wait_for("nats-server listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Setup {
    sim: SimHandle,
    engines: Vec<EngineHandle>,
    nats: NatsServer,
    _dir: TempDir,
    books: usize,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PREFIX: &str = "t";

/// One sim, one NATS server, engines `0/2` and `1/2` publishing to it (no WebSocket
/// listener: `--no-stream` with `--nats-url`), every book trusted.
fn setup(markets: usize, rate: u64) -> Setup {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = std::env::temp_dir().join(format!(
        "polypy-nats-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let nats = NatsServer::start(free_port(), &dir);
    let sim = Sim::start(SimConfig {
        markets,
        rate_per_sec: rate,
        seed: 11,
        expiring_share: 0.0,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let engines: Vec<EngineHandle> = (0..2)
        .map(|index| {
            let mut c = engine::engine_config(&sim);
            c.workers = 1;
            c.snapshot_timeout = Duration::from_secs(3);
            c.allow.shard = Some(Shard { index, count: 2 });
            c.stream = None;
            c.nats = Some(NatsConfig {
                url: nats.url(),
                prefix: PREFIX.into(),
                snapshot_every: Duration::from_millis(200),
                ..NatsConfig::default()
            });
            Engine::start_with_handlers(c, noop_factory(), true).expect("engine")
        })
        .collect();
    let books = markets * 2;
    wait_for("every book trusted", Duration::from_secs(30), || {
        let n: u64 = engines.iter().map(EngineHandle::trusted_books).sum();
        (n == books as u64).then_some(())
    });
    wait_for("both engines on NATS", Duration::from_secs(10), || {
        engines
            .iter()
            .all(|e| e.nats_stats().is_some_and(|n| n.connected && n.kv_ready))
            .then_some(())
    });
    Setup {
        sim,
        engines,
        nats,
        _dir: TempDir(dir),
        books,
    }
}

fn truth_levels(sim: &SimHandle) -> BTreeMap<String, Levels> {
    let l = |v: &[polypy::sim::TruthLevel]| -> Vec<(String, String)> {
        v.iter()
            .map(|l| (l.price.clone(), l.size.clone()))
            .collect()
    };
    sim.truth_all()
        .unwrap()
        .into_iter()
        .map(|t| (t.asset_id.clone(), (l(&t.bids), l(&t.asks))))
        .collect()
}

/// Assets whose consumer book is missing, out of sync or differs from the truth.
fn consumer_differences(c: &NatsConsumer, truth: &BTreeMap<String, Levels>) -> Vec<String> {
    let s = c.state();
    {
        let t = |l: polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
        let mut bad = Vec::new();
        for (asset, want) in truth {
            let Some(b) = s.books.books.get(asset) else {
                bad.push(format!("{asset}: no book"));
                continue;
            };
            if !s.in_sync(asset) {
                bad.push(format!("{asset}: out of sync"));
                continue;
            }
            let book = b.mirror.book();
            let got: Levels = (
                book.bids().best_first().map(t).collect(),
                book.asks().best_first().map(t).collect(),
            );
            if &got != want {
                bad.push(format!("{asset}: levels differ"));
            }
        }
        bad
    }
}

fn wait_consumer_equals_truth(sim: &SimHandle, c: &mut NatsConsumer, deadline: Duration) {
    let end = Instant::now() + deadline;
    loop {
        c.run_for(Duration::from_millis(100));
        let bad = consumer_differences(c, &truth_levels(sim));
        if bad.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "consumer books differ from the truth: {:?} (counts {:?})",
            &bad[..bad.len().min(5)],
            c.state().counts
        );
    }
}

fn consumer(s: &Setup) -> NatsConsumer {
    let mut c = NatsConsumer::start(ConsumerConfig::new(&s.nats.url(), PREFIX)).unwrap();
    let n = s.books;
    wait_for(
        "the consumer has every book",
        Duration::from_secs(20),
        || {
            c.run_for(Duration::from_millis(50));
            let st = c.state();
            (st.books.books.len() == n && st.out_of_sync().is_empty()).then_some(())
        },
    );
    c
}

#[test]
fn two_shards_cover_the_venue_once_and_a_late_consumer_rebuilds_every_book() {
    let s = setup(12, 300);
    // The shards cover every market exactly once, all tokens of a market together.
    let all: BTreeSet<String> = s
        .sim
        .markets()
        .unwrap()
        .iter()
        .map(|m| m.condition_id.clone())
        .collect();
    let lists = wait_for("markets published", Duration::from_secs(10), || {
        let lists: Vec<_> = s.engines.iter().filter_map(EngineHandle::markets).collect();
        let n: usize = lists.iter().map(|l| l.value.len()).sum();
        (lists.len() == 2 && n >= all.len()).then_some(lists)
    });
    let mut seen = BTreeSet::new();
    for (i, (e, markets)) in s.engines.iter().zip(&lists).enumerate() {
        for m in markets.value.iter() {
            assert!(
                seen.insert(m.condition_id.clone()),
                "{} twice",
                m.condition_id
            );
            assert_eq!(Shard::of(&m.condition_id, 2), i as u32);
            assert_eq!(m.tokens.len(), 2);
        }
        assert_eq!(
            e.shard(),
            Some(Shard {
                index: i as u32,
                count: 2
            })
        );
    }
    assert_eq!(seen, all);
    // A consumer started after the engines joins through the KV snapshots.
    let mut c = consumer(&s);
    s.sim.pause().unwrap();
    wait_consumer_equals_truth(&s.sim, &mut c, Duration::from_secs(20));
    let counts = c.state().counts;
    assert!(counts.kv_snapshots > 0, "{counts:?}");
    let checks = c.state().books.checks;
    assert_eq!(
        (checks.hash_mismatches, checks.malformed),
        (0, 0),
        "{checks:?}"
    );
    for e in &s.engines {
        let n = e.nats_stats().unwrap();
        assert!(n.published > 0 && n.kv_puts > 0, "{n:?}");
        let stats = e.stats(Duration::from_secs(5)).unwrap();
        assert_eq!(stats["nats"]["connected"], true);
        assert!(stats["shard"].is_string());
        assert_eq!(e.health().components.nats, Some(true));
    }
}

#[test]
fn nats_outage_is_counted_repaired_and_the_consumer_recovers() {
    let mut s = setup(8, 300);
    let mut c = consumer(&s);
    s.nats.stop();
    wait_for("engines see NATS down", Duration::from_secs(10), || {
        c.run_for(Duration::from_millis(20));
        s.engines
            .iter()
            .all(|e| e.nats_stats().is_some_and(|n| !n.connected))
            .then_some(())
    });
    // Degraded, not unhealthy; the books are kept while NATS is away.
    for e in &s.engines {
        let h = e.health();
        assert_eq!(h.components.nats, Some(false));
        assert!(h.healthy);
    }
    let dropped_before: u64 = s
        .engines
        .iter()
        .map(|e| e.nats_stats().unwrap().dropped)
        .sum();
    let sent = s.sim.messages_sent().unwrap();
    wait_for(
        "the sim sends during the outage",
        Duration::from_secs(10),
        || (s.sim.messages_sent().unwrap() > sent + 300).then_some(()),
    );
    let dropped: u64 = s
        .engines
        .iter()
        .map(|e| e.nats_stats().unwrap().dropped)
        .sum();
    assert!(dropped > dropped_before, "drops counted while NATS is down");
    let trusted: u64 = s.engines.iter().map(EngineHandle::trusted_books).sum();
    assert_eq!(trusted, s.books as u64, "books kept while NATS is down");
    s.nats.restart();
    wait_for("engines reconnect", Duration::from_secs(20), || {
        c.run_for(Duration::from_millis(20));
        s.engines
            .iter()
            .all(|e| {
                e.nats_stats()
                    .is_some_and(|n| n.connected && n.reconnects >= 1)
            })
            .then_some(())
    });
    wait_for("the consumer sees the gap", Duration::from_secs(20), || {
        c.run_for(Duration::from_millis(50));
        (c.state().counts.gaps > 0).then_some(())
    });
    s.sim.pause().unwrap();
    wait_consumer_equals_truth(&s.sim, &mut c, Duration::from_secs(20));
    for e in &s.engines {
        assert_eq!(e.health().components.nats, Some(true));
    }
}
