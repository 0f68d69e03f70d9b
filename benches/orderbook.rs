//! Order book benches: applying level updates, reading the touch, hashing, heap per book.
//!
//! These run on the book workers' hot path: every `price_change` entry is one
//! [`OrderBook::apply`], every settled group may be one [`BookHasher::prefix`].
//!
//! Update streams follow `docs/machine-reference.md` §4: 1 M records pre-generated on the
//! 0.001 tick grid, 30% removals (size 0), applied after a 20 + 20 level snapshot and 100 k
//! untimed warm-up updates. Two price distributions:
//! - **near**: offset from the mid drawn as `below(below(200) + 1)` ticks, skewed to the
//!   touch (the live stream's shape);
//! - **unif**: ticks uniform over each side's half of the grid (a worst case for a sorted
//!   vector: ~350 levels a side).
//!
//! Unlike perf-reference, bids stay below 0.500 and asks above it: our book checks crossing
//! whenever a same-timestamp group settles and stops applying deltas to a crossed book,
//! which would turn the bench into a measurement of the skip path. Every record has its own
//! timestamp, so every `apply` also settles the previous record's group (best bid/ask and
//! crossing checks), as it does live for a book that gets one entry per message.
//!
//! Run: `cargo bench --bench orderbook -- --warm-up-time 1 --measurement-time 3`.
//! Results and targets: `benches/BENCHMARKS.md`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use polypy::market::{AssetId, Bbo, Event, FieldUpdate, Price, QuotedPrice, Record, Side, Size};
use polypy::orderbook::{BookHasher, BookMeta, CheckContext, CheckMode, Effect, OrderBook};
use sha1::Digest;

const ASSET: &str = "76670567130917723816490572615540605537878462672464291990940067659127658071111";
const MARKET: &str = "0x285746de0e4f751fd4dc8f9dc2cecd0101ba9ad0096a43145ed9643b09514f01";
const MID_TICK: u32 = 500;
const UPDATES: usize = 1_000_000;
const WARM_UP_UPDATES: usize = 100_000;
const TS0: u64 = 1_790_658_674_035;

fn price(tick: u32) -> Price {
    match Price::from_raw(tick * 1_000) {
        Ok(p) => p,
        Err(e) => panic!("tick {tick}: {e}"),
    }
}

fn record(ts: u64, event: Event) -> Record {
    Record {
        asset: AssetId(0),
        exchange_ts: ts,
        received_ns: 0,
        event,
    }
}

/// Where updates land.
#[derive(Clone, Copy, Debug)]
enum Dist {
    /// `below(below(max) + 1)` ticks away from the mid, per side.
    Near { max_offset: u32 },
    /// Uniform over the side's half of the grid.
    Uniform,
}

/// A size with 0–2 decimals, or zero (remove) with probability 0.3.
fn random_size(rng: &mut fastrand::Rng) -> Size {
    if rng.u8(0..10) < 3 {
        Size::ZERO
    } else {
        Size::from_raw(rng.u64(1..10_000_000) * 10_000)
    }
}

/// `n` level updates with distinct, increasing timestamps starting after `ts0`.
fn updates(seed: u64, n: usize, dist: Dist, ts0: u64) -> Vec<Record> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let side = if rng.bool() { Side::Bid } else { Side::Ask };
            let offset = match dist {
                Dist::Near { max_offset } => {
                    let inner = rng.u32(0..max_offset);
                    rng.u32(0..inner + 1)
                }
                Dist::Uniform => rng.u32(0..MID_TICK - 1),
            };
            let tick = match side {
                Side::Bid => MID_TICK - 1 - offset,
                Side::Ask => MID_TICK + 1 + offset,
            };
            record(
                ts0 + 1 + i as u64,
                Event::Change {
                    side,
                    price: price(tick),
                    size: random_size(&mut rng),
                    hash: None,
                    bbo: Bbo::default(),
                },
            )
        })
        .collect()
}

/// A snapshot with `n` levels a side around the mid (bids 0.499 down, asks 0.501 up), with
/// sizes of 0–6 decimals, in the venue's wire order.
fn snapshot(seed: u64, n: u32) -> Vec<Record> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut size = || {
        let decimals = rng.u32(0..=6);
        let unit = 10u64.pow(6 - decimals);
        Size::from_raw(rng.u64(1..100_000_000) / unit * unit + unit)
    };
    let mut recs = vec![record(
        TS0,
        Event::BookBegin {
            bids: n as u16,
            asks: n as u16,
            tick_size: Some(price(1)),
            last_trade: FieldUpdate::Set(QuotedPrice::canonical(price(MID_TICK))),
        },
    )];
    for off in (0..n).rev() {
        let level = Event::Level {
            side: Side::Bid,
            price: price(MID_TICK - 1 - off),
            size: size(),
        };
        recs.push(record(TS0, level));
    }
    for off in (0..n).rev() {
        let level = Event::Level {
            side: Side::Ask,
            price: price(MID_TICK + 1 + off),
            size: size(),
        };
        recs.push(record(TS0, level));
    }
    recs.push(record(TS0, Event::BookEnd { hash: None }));
    recs
}

/// A trusted book built from `snapshot`.
fn book_from(snapshot: &[Record]) -> OrderBook {
    let mut book = OrderBook::new(BookMeta::new(ASSET, MARKET));
    let mut ctx = CheckContext::new(CheckMode::Off);
    for r in snapshot {
        book.apply(r, &mut ctx);
    }
    assert!(book.is_trusted(), "snapshot must leave the book trusted");
    book
}

/// Applies `records`, returning how many were not plainly applied (0 in a valid bench).
#[inline]
fn apply_all(book: &mut OrderBook, ctx: &mut CheckContext, records: &[Record]) -> usize {
    let mut not_applied = 0;
    for r in records {
        let step = book.apply(r, ctx);
        not_applied += usize::from(step.effect != Effect::Applied);
    }
    not_applied
}

/// Checks once, untimed, that a stream really exercises the apply path, and reports the
/// steady-state book size.
fn verify_stream(name: &str, snap: &[Record], warm: &[Record], stream: &[Record], mode: CheckMode) {
    let mut book = book_from(snap);
    let mut ctx = CheckContext::new(mode);
    assert_eq!(
        apply_all(&mut book, &mut ctx, warm),
        0,
        "{name}: warm-up skipped records"
    );
    assert_eq!(
        apply_all(&mut book, &mut ctx, stream),
        0,
        "{name}: records not applied"
    );
    assert!(
        book.is_trusted(),
        "{name}: book became untrusted: {:?}",
        book.trust()
    );
    eprintln!(
        "orderbook/{name}: steady state {} bids / {} asks, heap {} B",
        book.bids().len(),
        book.asks().len(),
        book.heap_bytes()
    );
}

/// Raw apply, checks off: one `price_change` entry into a sorted-vector ladder.
///
/// Target ≤ 30 ns per update. A regression here scales with the whole market's update rate
/// on every book worker: at 30 ns a worker absorbs ~33 M updates/s.
fn bench_apply(c: &mut Criterion) {
    let snap = snapshot(1, 20);
    let mut group = c.benchmark_group("apply");
    // Each iteration applies 1 M updates (~10–50 ms): few, flat samples suffice.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(UPDATES as u64));
    for (name, dist, seed) in [
        ("near_1m", Dist::Near { max_offset: 200 }, 2),
        ("unif_1m", Dist::Uniform, 3),
    ] {
        let warm = updates(seed, WARM_UP_UPDATES, dist, TS0);
        let stream = updates(seed + 100, UPDATES, dist, TS0 + WARM_UP_UPDATES as u64);
        verify_stream(name, &snap, &warm, &stream, CheckMode::Off);
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut book = book_from(&snap);
                    let mut ctx = CheckContext::new(CheckMode::Off);
                    apply_all(&mut book, &mut ctx, &warm);
                    (book, ctx)
                },
                |(book, ctx)| apply_all(book, ctx, black_box(&stream)),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// Apply with `CheckMode::Settled`: every update settles a group whose venue hash and best
/// bid/ask are verified, on a typical ~20-level-a-side book.
///
/// This is the cost of full verification per entry (one hash per settled group). A
/// regression means verification must be sampled (`CheckMode::Sampled`) sooner.
fn bench_apply_settled(c: &mut Criterion) {
    const N: usize = 10_000;
    let dist = Dist::Near { max_offset: 28 };
    let snap = snapshot(4, 20);
    let warm = updates(5, 10_000, dist, TS0);
    let mut stream = updates(6, N, dist, TS0 + 10_000);
    // Stamp each record with the hash and touch of the book right after it.
    let mut reference = book_from(&snap);
    let mut off = CheckContext::new(CheckMode::Off);
    apply_all(&mut reference, &mut off, &warm);
    let mut hasher = BookHasher::new();
    for r in &mut stream {
        reference.apply(r, &mut off);
        let prefix = hasher.prefix(&reference, r.exchange_ts);
        let touch = |p: Option<polypy::orderbook::Level>| match p {
            Some(l) => FieldUpdate::Set(l.price),
            None => FieldUpdate::Clear,
        };
        if let Event::Change { hash, bbo, .. } = &mut r.event {
            *hash = Some(prefix);
            *bbo = Bbo {
                bid: touch(reference.best_bid()),
                ask: touch(reference.best_ask()),
            };
        }
    }
    verify_stream(
        "settled_near_10k",
        &snap,
        &warm,
        &stream,
        CheckMode::Settled,
    );

    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("settled_hash_near_10k", |b| {
        b.iter_batched_ref(
            || {
                let mut book = book_from(&snap);
                let mut ctx = CheckContext::new(CheckMode::Settled);
                apply_all(&mut book, &mut ctx, &warm);
                (book, ctx)
            },
            |(book, ctx)| apply_all(book, ctx, black_box(&stream)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Best bid + best ask of a 20 + 20 book: read by every consumer of the book (BBO output,
/// crossing checks, settle). Target ≤ 5 ns; a regression means the touch is no longer O(1).
fn bench_best(c: &mut Criterion) {
    let book = book_from(&snapshot(7, 20));
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(1));
    group.bench_function("best_bid_ask", |b| {
        b.iter(|| {
            let book = black_box(&book);
            (book.best_bid(), book.best_ask())
        });
    });
    group.finish();
}

/// The venue-compatible hash of a 30 + 30 book (summary text + SHA1), the verification
/// cost of one settled group or snapshot. Target ≤ 3 µs. `summary_30x30` and
/// `sha1_only_30x30` split it, so a regression can be attributed to formatting or to SHA1.
fn bench_hash(c: &mut Criterion) {
    let book = book_from(&snapshot(8, 30));
    let mut hasher = BookHasher::new();
    let text_len = hasher.summary_text(&book, TS0).len();
    eprintln!("hash/prefix_30x30: summary text {text_len} bytes");
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Elements(1));
    group.bench_function("prefix_30x30", |b| {
        b.iter(|| hasher.prefix(black_box(&book), black_box(TS0)));
    });
    group.bench_function("summary_30x30", |b| {
        b.iter(|| hasher.summary_text(black_box(&book), black_box(TS0)).len());
    });
    // SHA1 alone over the same text: the part no formatting change can win back.
    let text = hasher.summary_text(&book, TS0).as_bytes().to_vec();
    group.bench_function("sha1_only_30x30", |b| {
        b.iter(|| sha1::Sha1::digest(black_box(&text[..])));
    });
    group.finish();
}

/// Heap per book (target ≤ 2 KB for a typical 20 + 20 book): printed, not timed.
///
/// Memory per book bounds how many books a worker keeps in L2/L3; a regression here is a
/// regression in cache misses across thousands of books.
fn report_heap(_c: &mut Criterion) {
    let snap = snapshot(9, 20);
    let book = book_from(&snap);
    let fresh = book.heap_bytes();
    let report = |name: &str, dist: Dist| {
        let mut book = book_from(&snap);
        let mut ctx = CheckContext::new(CheckMode::Off);
        let n = apply_all(&mut book, &mut ctx, &updates(10, 10_000, dist, TS0));
        assert_eq!(n, 0);
        eprintln!(
            "heap/{name}: {} bids / {} asks, {} B",
            book.bids().len(),
            book.asks().len(),
            book.heap_bytes()
        );
    };
    eprintln!(
        "heap/snapshot_20x20: {} bids / {} asks, {fresh} B{}",
        book.bids().len(),
        book.asks().len(),
        if fresh <= 2048 {
            ""
        } else {
            " (over the 2 KB target)"
        }
    );
    report("after_10k_near28", Dist::Near { max_offset: 28 });
    report("after_10k_near200", Dist::Near { max_offset: 200 });
}

/// docs/machine-reference.md §4 structure (c), rebuilt: a bare sorted `Vec<(u32, u64)>` per side, fed
/// the same `near` stream as `apply/near_1m` as compact `(side, price, size)` tuples.
///
/// A calibration, not a competitor: docs/machine-reference.md measured 26.6 ns/update for it on its
/// machine, so this bench says how fast the machine running the benches is, and the gap to
/// `apply/near_1m` is what `OrderBook` adds (the 64-byte `Record`, group settling, trust).
fn bench_apply_baseline(c: &mut Criterion) {
    type Levels = Vec<(u32, u64)>;
    #[inline]
    fn set(side: &mut Levels, ask: bool, px: u32, size: u64) {
        // Bids ascending and asks descending: the best level is always last.
        let found = side.binary_search_by(|l| if ask { px.cmp(&l.0) } else { l.0.cmp(&px) });
        match (found, size) {
            (Ok(i), 0) => {
                side.remove(i);
            }
            (Ok(i), _) => side[i].1 = size,
            (Err(_), 0) => {}
            (Err(i), _) => side.insert(i, (px, size)),
        }
    }
    fn compact(records: &[Record]) -> Vec<(bool, u32, u64)> {
        records
            .iter()
            .filter_map(|r| match r.event {
                Event::Change {
                    side, price, size, ..
                } => Some((side == Side::Ask, price.raw(), size.raw())),
                _ => None,
            })
            .collect()
    }
    let dist = Dist::Near { max_offset: 200 };
    // Same seeds as `apply/near_1m`.
    let warm = compact(&updates(2, WARM_UP_UPDATES, dist, TS0));
    let stream = compact(&updates(102, UPDATES, dist, TS0 + WARM_UP_UPDATES as u64));
    let apply = |book: &mut (Levels, Levels), ups: &[(bool, u32, u64)]| {
        for &(ask, px, size) in ups {
            if ask {
                set(&mut book.1, true, px, size);
            } else {
                set(&mut book.0, false, px, size);
            }
        }
        book.0.len() + book.1.len()
    };
    let mut group = c.benchmark_group("baseline");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.bench_function("sorted_vec_near_1m", |b| {
        b.iter_batched_ref(
            || {
                let mut book = (
                    (MID_TICK - 20..MID_TICK).map(|t| (t * 1_000, 1)).collect(),
                    (MID_TICK + 1..=MID_TICK + 20)
                        .rev()
                        .map(|t| (t * 1_000, 1))
                        .collect(),
                );
                apply(&mut book, &warm);
                book
            },
            |book| apply(book, black_box(&stream)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    report_heap,
    bench_best,
    bench_hash,
    bench_apply,
    bench_apply_baseline,
    bench_apply_settled
);
criterion_main!(benches);
