//! The in-process pipeline: frame bytes → `venue::Decoder` → `handoff::Router` → rtrb rings →
//! pinned book workers → `OrderBook::apply` (checks included), and the cost of hash checking.
//!
//! Data: 500 binary markets (1,000 assets), books of 20 + 20 levels on a 0.01 grid, and
//! `price_change` frames of 2 entries (a BUY on one token and the mirrored SELL on the other,
//! as the venue sends them) near the touch, 30 % removals. Every entry carries the venue's
//! real hash and best bid/ask, computed on reference books, so the workers' checks pass and
//! the bench fails loudly if any book ends untrusted.
//!
//! Groups:
//! - `check_mode`: one thread applies pre-decoded records to 1,000 books with each
//!   `CheckMode` (`Off`, `Sampled(64/16/4)`, `Settled`, `EveryEntry`): the hash-check cost
//!   behind `worker::DEFAULT_CHECK_MODE` and `config::EngineConfig::check`.
//! - `pipeline`: this thread is the event loop (decode, route, flush every 16 frames, pinned to
//!   core 0), 1 or 2 workers pinned by `spread_placements`. Time runs from the first delta
//!   frame to the moment the workers have applied the last one; worker start-up and the
//!   initial snapshots are outside the timing. A regression here means fewer level updates/s
//!   per engine core.
//!
//! `cargo bench --bench pipeline`; `cargo test --benches` runs each once on a small stream.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use polypy::handoff::Router;
use polypy::market::{AssetId, AssetInterner, Bbo, Event, FieldUpdate, Price, Record, Side, Size};
use polypy::orderbook::{BookMeta, CheckContext, CheckMode, OrderBook};
use polypy::pinning::{CorePlacement, core_count, pin_current_thread, spread_placements};
use polypy::venue::{DecodeOutput, Decoder};
use polypy::worker::{
    HistogramSnapshot, IdleStrategy, PoolConfig, ResyncSink, WorkerConfig, WorkerHandle,
    noop_factory, now_ns, spawn_workers,
};

const MARKETS: usize = 500;
const LEVELS: u32 = 20;
const FLUSH_EVERY: usize = 16;

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The machine's cores, read once before this thread pins itself.
///
/// `core_count()` is `available_parallelism`, which on Linux counts the calling thread's
/// affinity mask: once `bench_pipeline` pins this thread to core 0 it returns 1, so
/// `spread_placements` would leave every worker unpinned, inheriting core 0, and the whole
/// pipeline would share one core with the event loop.
fn machine_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(core_count)
}

struct Fixture {
    metas: Vec<BookMeta>,
    interner: AssetInterner,
    book_frames: Vec<String>,
    delta_frames: Vec<String>,
    snapshot_records: Vec<Record>,
    delta_records: Vec<Record>,
    updates: u64,
}

fn price_text(tick: u32) -> String {
    Price::from_raw(tick * 10_000)
        .map(Price::to_text)
        .unwrap_or_default()
}

fn size_text(s: Size) -> String {
    s.to_text()
}

fn best_text(book: &OrderBook, side: Side) -> String {
    let l = match side {
        Side::Bid => book.best_bid(),
        Side::Ask => book.best_ask(),
    };
    l.map(|l| l.price.to_text()).unwrap_or_default()
}

fn rec(asset: AssetId, ts: u64, event: Event) -> Record {
    Record {
        asset,
        exchange_ts: ts,
        received_ns: 0,
        event,
    }
}

fn build(frames: usize, seed: u64) -> Fixture {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut interner = AssetInterner::new();
    let mut metas = Vec::new();
    let mut refs: Vec<OrderBook> = Vec::new();
    let mut ctx = CheckContext::new(CheckMode::Off);
    let mut book_frames = Vec::new();
    let ts0: u64 = 1_750_000_000_000;
    let token = |rng: &mut fastrand::Rng| -> String {
        let mut t = String::from(char::from(b'1' + rng.u8(0..9)));
        t.extend((0..76).map(|_| char::from(b'0' + rng.u8(0..10))));
        t
    };
    let rand_size =
        |rng: &mut fastrand::Rng| Size::from_raw(u64::from(rng.u32(100..100_000)) * 10_000);

    for _ in 0..MARKETS {
        let market = format!("0x{:032x}{:032x}", rng.u128(..), rng.u128(..));
        let mid = rng.u32(30..=70);
        // Token A around `mid`; token B is its mirror (B's bids are 1 - A's asks).
        let a_bids: Vec<(u32, Size)> = (1..=LEVELS)
            .map(|k| (mid - k, rand_size(&mut rng)))
            .collect();
        let a_asks: Vec<(u32, Size)> = (1..=LEVELS)
            .map(|k| (mid + k, rand_size(&mut rng)))
            .collect();
        let b_bids: Vec<(u32, Size)> = a_asks.iter().map(|&(t, s)| (100 - t, s)).collect();
        let b_asks: Vec<(u32, Size)> = a_bids.iter().map(|&(t, s)| (100 - t, s)).collect();
        for (bids, asks) in [(a_bids, a_asks), (b_bids, b_asks)] {
            let tok = token(&mut rng);
            let asset = interner.intern(&tok);
            assert_eq!(asset.index(), metas.len());
            let meta = BookMeta::new(&tok, &market);
            let mut book = OrderBook::new(meta.clone());
            // Wire order: bids ascending, asks descending (worst first).
            let mut bids_w = bids.clone();
            bids_w.sort_by_key(|l| l.0);
            let mut asks_w = asks.clone();
            asks_w.sort_by_key(|l| std::cmp::Reverse(l.0));
            let tick = Price::from_raw(10_000).ok();
            let mut recs = vec![rec(
                asset,
                ts0,
                Event::BookBegin {
                    bids: LEVELS as u16,
                    asks: LEVELS as u16,
                    tick_size: tick,
                    last_trade: FieldUpdate::Clear,
                },
            )];
            for (side, levels) in [(Side::Bid, &bids_w), (Side::Ask, &asks_w)] {
                for &(t, size) in levels {
                    let price = Price::from_raw(t * 10_000).unwrap_or_default();
                    recs.push(rec(asset, ts0, Event::Level { side, price, size }));
                }
            }
            recs.push(rec(asset, ts0, Event::BookEnd { hash: None }));
            for r in &recs {
                book.apply(r, &mut ctx);
            }
            let hash = ctx.hasher.hex(&book, ts0);
            let lv = |ls: &[(u32, Size)]| {
                ls.iter()
                    .map(|&(t, s)| {
                        format!(
                            r#"{{"price":"{}","size":"{}"}}"#,
                            price_text(t),
                            size_text(s)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            book_frames.push(format!(
                r#"{{"market":"{market}","asset_id":"{tok}","timestamp":"{ts0}","hash":"{hash}","bids":[{}],"asks":[{}],"tick_size":"0.01","last_trade_price":"","event_type":"book"}}"#,
                lv(&bids_w),
                lv(&asks_w)
            ));
            metas.push(meta);
            refs.push(book);
        }
    }

    let mut delta_frames = Vec::with_capacity(frames);
    let mut updates = 0;
    for f in 0..frames {
        let ts = ts0 + 1 + f as u64;
        let m = rng.usize(..MARKETS);
        let (a, b) = (2 * m, 2 * m + 1);
        // A level near the touch of token A, never crossing, keeping at least 5 levels.
        let (side, tick) = loop {
            let side = if rng.bool() { Side::Bid } else { Side::Ask };
            let book = &refs[a];
            let k = rng.u32(1..=8);
            let tick = match side {
                Side::Bid => book
                    .best_ask()
                    .map_or(50, |l| l.price.raw() / 10_000)
                    .checked_sub(k),
                Side::Ask => Some(book.best_bid().map_or(50, |l| l.price.raw() / 10_000) + k),
            };
            if let Some(t) = tick.filter(|t| (1..=99).contains(t)) {
                break (side, t);
            }
        };
        let price = Price::from_raw(tick * 10_000).unwrap_or_default();
        let (len, existing) = match side {
            Side::Bid => (refs[a].bids().len(), refs[a].bids().size_at(price)),
            Side::Ask => (refs[a].asks().len(), refs[a].asks().size_at(price)),
        };
        let size = if !existing.is_zero() && len > 5 && rng.f32() < 0.3 {
            Size::ZERO
        } else {
            rand_size(&mut rng)
        };
        let mut entries = Vec::with_capacity(2);
        for (asset, side, tick) in [(a, side, tick), (b, side.opposite(), 100 - tick)] {
            let price = Price::from_raw(tick * 10_000).unwrap_or_default();
            let r = rec(
                AssetId(asset as u32),
                ts,
                Event::Change {
                    side,
                    price,
                    size,
                    hash: None,
                    bbo: Bbo::default(),
                },
            );
            let book = &mut refs[asset];
            book.apply(&r, &mut ctx);
            let hash = ctx.hasher.hex(book, ts);
            entries.push(format!(
                r#"{{"asset_id":"{}","price":"{}","size":"{}","side":"{}","hash":"{hash}","best_bid":"{}","best_ask":"{}"}}"#,
                metas[asset].asset_id,
                price.to_text(),
                size_text(size),
                side.as_str(),
                best_text(book, Side::Bid),
                best_text(book, Side::Ask),
            ));
            updates += 1;
        }
        delta_frames.push(format!(
            r#"{{"market":"{}","price_changes":[{}],"timestamp":"{ts}","event_type":"price_change"}}"#,
            metas[a].market,
            entries.join(",")
        ));
    }

    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    for f in &book_frames {
        decoder.decode(f.as_bytes(), 0, &mut interner, &mut out);
    }
    let snapshot_records = std::mem::take(&mut out.records);
    for f in &delta_frames {
        decoder.decode(f.as_bytes(), 0, &mut interner, &mut out);
    }
    assert!(out.failures.is_empty(), "{:?}", out.failures.first());
    let delta_records = std::mem::take(&mut out.records);
    assert_eq!(delta_records.len() as u64, updates);
    Fixture {
        metas,
        interner,
        book_frames,
        delta_frames,
        snapshot_records,
        delta_records,
        updates,
    }
}

fn sampled(n: u32) -> CheckMode {
    CheckMode::Sampled(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// Applies the delta stream to fresh books with `mode`; returns the time of the deltas.
fn apply_stream(fx: &Fixture, mode: CheckMode) -> Duration {
    let mut ctx = CheckContext::new(mode);
    let mut books: Vec<OrderBook> = fx.metas.iter().cloned().map(OrderBook::new).collect();
    for r in &fx.snapshot_records {
        books[r.asset.index()].apply(r, &mut ctx);
    }
    let start = Instant::now();
    for r in &fx.delta_records {
        black_box(books[r.asset.index()].apply(r, &mut ctx));
    }
    for b in &mut books {
        black_box(b.settle(&mut ctx));
    }
    let took = start.elapsed();
    let untrusted = books.iter().filter(|b| !b.is_trusted()).count();
    assert_eq!(
        untrusted, 0,
        "{mode:?}: books failed their checks: the fixture is wrong"
    );
    took
}

fn bench_check_modes(c: &mut Criterion, fx: &Fixture) {
    let mut g = c.benchmark_group("check_mode");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(fx.updates));
    for (name, mode) in [
        ("off", CheckMode::Off),
        ("sampled_64", sampled(64)),
        ("sampled_16", sampled(16)),
        ("sampled_4", sampled(4)),
        ("settled", CheckMode::Settled),
        ("every_entry", CheckMode::EveryEntry),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| apply_stream(fx, mode)).sum());
        });
    }
    g.finish();
}

#[derive(Debug, Default, Clone)]
struct Summary {
    updates_applied: u64,
    hash_checked: u64,
    untrusted_books: u64,
    pacing_waits: u64,
    latency: HistogramSnapshot,
    processing: HistogramSnapshot,
}

struct Pipeline {
    router: Router,
    handles: Vec<WorkerHandle>,
    decoder: Decoder,
    out: DecodeOutput,
    resync: Vec<AssetId>,
    pushed: u64,
    pacing_waits: u64,
}

impl Pipeline {
    /// Flushes, first waiting (as the network would) until every batch fits its ring: the
    /// bench measures throughput without drops, not the drop policy.
    fn flush(&mut self) {
        loop {
            let fits = (0..self.router.workers())
                .all(|w| self.router.free_slots(w) >= self.router.pending(w));
            if fits {
                break;
            }
            self.pacing_waits += 1;
            std::thread::yield_now();
        }
        let report = self.router.flush(&mut self.resync);
        assert_eq!(report.dropped, 0);
        self.pushed += report.pushed as u64;
    }

    /// Decodes and routes one frame; `stamp == false` leaves `received_ns` at 0 so the frame
    /// stays out of the wire → applied histogram (the initial snapshots).
    fn feed(&mut self, frame: &str, interner: &mut AssetInterner, stamp: bool) {
        self.out.clear();
        let received = if stamp { now_ns() } else { 0 };
        self.decoder
            .decode(frame.as_bytes(), received, interner, &mut self.out);
        for r in &self.out.records {
            // Every asset is registered; an error would be a fixture bug.
            let _ = self.router.route(*r);
        }
    }

    fn wait_applied(&self) {
        let target = self.pushed;
        while self
            .handles
            .iter()
            .map(|h| h.stats().messages_processed())
            .sum::<u64>()
            < target
        {
            std::thread::yield_now();
        }
    }
}

/// Spawns the workers and loads the initial snapshots (untimed).
fn start_pipeline(
    fx: &mut Fixture,
    workers: usize,
    mode: CheckMode,
    idle: IdleStrategy,
) -> Pipeline {
    let shutdown = Arc::new(AtomicBool::new(false));
    let cfg = PoolConfig {
        workers,
        ring_capacity: 16_384,
        worker: WorkerConfig {
            check_mode: mode,
            idle,
            ..WorkerConfig::default()
        },
        placements: spread_placements(workers, machine_cores()),
        batch_capacity: 1024,
    };
    let (router, handles) =
        match spawn_workers(&cfg, &noop_factory(), &ResyncSink::disabled(), &shutdown) {
            Ok(x) => x,
            Err(e) => panic!("spawn workers: {e}"),
        };
    let mut p = Pipeline {
        router,
        handles,
        decoder: Decoder::new(),
        out: DecodeOutput::default(),
        resync: Vec::new(),
        pushed: 0,
        pacing_waits: 0,
    };
    for (i, meta) in fx.metas.iter().enumerate() {
        p.router.add_book(AssetId(i as u32), meta.clone());
    }
    for i in 0..fx.book_frames.len() {
        let frame = std::mem::take(&mut fx.book_frames[i]);
        p.feed(&frame, &mut fx.interner, false);
        fx.book_frames[i] = frame;
        p.flush();
    }
    p.wait_applied();
    p.pacing_waits = 0;
    p
}

fn run_pipeline(
    fx: &mut Fixture,
    workers: usize,
    mode: CheckMode,
    idle: IdleStrategy,
) -> (Duration, Summary) {
    let mut p = start_pipeline(fx, workers, mode, idle);
    let start = Instant::now();
    for (i, frame) in fx.delta_frames.iter().enumerate() {
        p.feed(frame, &mut fx.interner, true);
        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
            p.flush();
        }
    }
    p.flush();
    p.wait_applied();
    let took = start.elapsed();
    let s = finish_pipeline(p);
    assert_eq!(s.updates_applied, fx.updates, "every update applied");
    (took, s)
}

/// Collects the summary, drops the router and joins the workers.
fn finish_pipeline(p: Pipeline) -> Summary {
    let mut s = Summary {
        pacing_waits: p.pacing_waits,
        ..Summary::default()
    };
    for h in &p.handles {
        let st = h.stats().snapshot();
        s.updates_applied += st.updates_applied;
        s.hash_checked += st.hash_matched + st.hash_mismatched + st.hash_matched_inferred_trade;
        s.untrusted_books += st.orderbook_count - st.trusted_books;
        if h.id() == 0 {
            s.latency = st.latency;
            s.processing = st.processing;
        }
    }
    assert_eq!(s.untrusted_books, 0, "every book passed its checks");
    let Pipeline {
        router, handles, ..
    } = p;
    drop(router);
    for h in handles {
        if h.join().is_err() {
            panic!("a worker panicked");
        }
    }
    s
}

/// Wire → applied latency at a steady rate below capacity: one frame (2 updates) every
/// `1 / frames_per_s`, flushed at once, as an event loop would at the end of each poll.
fn paced_latency(fx: &mut Fixture, workers: usize, frames_per_s: u64, frames: usize) {
    let mut p = start_pipeline(
        fx,
        workers,
        WorkerConfig::default().check_mode,
        IdleStrategy::default(),
    );
    let gap = Duration::from_nanos(1_000_000_000 / frames_per_s.max(1));
    let start = Instant::now();
    for (i, frame) in fx.delta_frames.iter().take(frames).enumerate() {
        let due = start + gap * i as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        p.feed(frame, &mut fx.interner, true);
        p.flush();
    }
    p.wait_applied();
    let s = finish_pipeline(p);
    let l = s.latency;
    eprintln!(
        "paced/workers_{workers}/{frames_per_s}_frames_per_s: worker0 samples={} wire->applied p50={}ns p90={}ns p99={}ns p999={}ns max={}ns",
        l.count, l.p50_ns, l.p90_ns, l.p99_ns, l.p999_ns, l.max_ns
    );
}

fn bench_pipeline(c: &mut Criterion, fx: &mut Fixture) {
    if machine_cores() > 1 {
        // The event loop's core; `spread_placements` puts worker 0 on core 1.
        let _ = pin_current_thread(CorePlacement::Core(0));
    }
    eprintln!(
        "pipeline: {} cores, event loop on core 0, workers at {:?} (1 worker) / {:?} (2 workers)",
        machine_cores(),
        spread_placements(1, machine_cores()),
        spread_placements(2, machine_cores()),
    );
    let mut g = c.benchmark_group("pipeline");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(fx.updates));
    let default_mode = WorkerConfig::default().check_mode;
    let configs = [
        ("workers_1", 1, default_mode, IdleStrategy::default()),
        ("workers_2", 2, default_mode, IdleStrategy::default()),
        (
            "workers_2_check_off",
            2,
            CheckMode::Off,
            IdleStrategy::default(),
        ),
        (
            "workers_2_check_sampled_4",
            2,
            sampled(4),
            IdleStrategy::default(),
        ),
        (
            "workers_2_check_settled",
            2,
            CheckMode::Settled,
            IdleStrategy::default(),
        ),
        (
            "workers_2_check_every_entry",
            2,
            CheckMode::EveryEntry,
            IdleStrategy::default(),
        ),
    ];
    for (name, workers, mode, idle) in configs {
        let mut last = Summary::default();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (took, s) = run_pipeline(fx, workers, mode, idle);
                    total += took;
                    last = s;
                }
                total
            });
        });
        let l = &last.latency;
        let pr = &last.processing;
        eprintln!(
            "pipeline/{name}: updates={} hash_checked={} pacing_waits={} worker0 wire->applied p50={}us p99={}us p999={}us max={}us; chunk p50={}us p99={}us",
            last.updates_applied,
            last.hash_checked,
            last.pacing_waits,
            l.p50_ns / 1000,
            l.p99_ns / 1000,
            l.p999_ns / 1000,
            l.max_ns / 1000,
            pr.p50_ns / 1000,
            pr.p99_ns / 1000,
        );
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    // Before anything pins this thread (see `machine_cores`).
    let _ = machine_cores();
    let frames = if full_run() { 100_000 } else { 2_000 };
    let mut fx = build(frames, 0x5eed);
    bench_check_modes(c, &fx);
    bench_pipeline(c, &mut fx);
    let frames = fx.delta_frames.len();
    for (workers, rate) in [(1, 100_000), (1, 2_000), (2, 100_000)] {
        let n = frames.min(usize::try_from(rate / 2).unwrap_or(frames));
        paced_latency(&mut fx, workers, rate, n);
    }
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
