//! Decode benches: one market-channel text frame → `Record`s, on the event-loop hot path.
//!
//! Frames are synthetic but shaped exactly like the venue's compact JSON (docs/venue-protocol.md §3.1,
//! §3.2, key order as in the live captures): 77-digit asset ids, `0x` + 64-hex condition ids,
//! 40-hex hashes, prices on the 0.001 grid in canonical text ("0.5", "0.52", "0.523"), sizes
//! with 0–6 decimals. Each bench cycles through [`VARIANTS`] distinct frames so the branch
//! predictor cannot memorise one message (as `docs/machine-reference.md` §1 did), and the
//! resolver is an [`AssetInterner`] pre-filled with every id plus [`FILLER_ASSETS`] others,
//! so the id lookup runs against an engine-sized table.
//!
//! One iteration decodes one frame; the figure criterion prints is the cost per frame.
//! Setup (frame generation, interning, a first decode that warms the scratch vectors and
//! checks the output) happens outside the timed closure.
//!
//! Run: `cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3`.
//! Results and targets: `benches/BENCHMARKS.md`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use polypy::market::{AssetInterner, Price, Size};
use polypy::venue::{DecodeOutput, Decoder, FrameKind};

/// Distinct frames per bench, cycled (a power of two: the index is masked).
const VARIANTS: usize = 64;
/// Extra ids interned before measuring, so the interner is the size of a real engine's.
const FILLER_ASSETS: usize = 4096;

/// Deterministic generator of venue-shaped text.
struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn digits(&mut self, out: &mut String, n: usize) {
        for _ in 0..n {
            out.push(char::from(b'0' + self.rng.u8(0..10)));
        }
    }

    /// A 77-digit token id, like the venue's.
    fn asset_id(&mut self) -> String {
        let mut s = String::with_capacity(77);
        s.push(char::from(b'1' + self.rng.u8(0..9)));
        self.digits(&mut s, 76);
        s
    }

    fn hex(&mut self, n: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        (0..n)
            .map(|_| char::from(HEX[self.rng.usize(0..16)]))
            .collect()
    }

    /// A condition id: `0x` + 64 hex digits.
    fn market(&mut self) -> String {
        format!("0x{}", self.hex(64))
    }

    /// A 13-digit Unix-ms timestamp in late 2026.
    fn timestamp(&mut self) -> String {
        self.rng
            .u64(1_790_000_000_000..1_800_000_000_000)
            .to_string()
    }

    /// Canonical text of a price on the 0.001 grid ("0.5", "0.52", "0.523").
    fn price_text(tick: u32) -> String {
        match Price::from_raw(tick * 1_000) {
            Ok(p) => p.to_text(),
            Err(e) => panic!("tick {tick} out of range: {e}"),
        }
    }

    /// A size with 0–6 decimals, as the venue writes it (no trailing fraction zeros).
    fn size_text(&mut self) -> String {
        let int = match self.rng.u8(0..4) {
            0 => self.rng.u64(1..100),
            1 => self.rng.u64(100..10_000),
            2 => self.rng.u64(10_000..1_000_000),
            _ => self.rng.u64(1..1_000),
        };
        let decimals = self.rng.usize(0..=6);
        let mut s = int.to_string();
        if decimals > 0 {
            s.push('.');
            self.digits(&mut s, decimals - 1);
            s.push(char::from(b'1' + self.rng.u8(0..9)));
        }
        s
    }

    /// `n` distinct ticks from `range`, sorted ascending.
    fn ticks(&mut self, range: std::ops::Range<u32>, n: usize) -> Vec<u32> {
        let mut all: Vec<u32> = range.collect();
        assert!(all.len() >= n, "not enough ticks for {n} levels");
        self.rng.shuffle(&mut all);
        all.truncate(n);
        all.sort_unstable();
        all
    }

    fn levels(&mut self, out: &mut String, ticks: impl Iterator<Item = u32>) {
        out.push('[');
        for (i, tick) in ticks.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let size = self.size_text();
            out.push_str(&format!(
                r#"{{"price":"{}","size":"{}"}}"#,
                Gen::price_text(tick),
                size
            ));
        }
        out.push(']');
    }

    /// A `book` frame with `n` levels a side: bids ascending and asks descending (the
    /// venue's order), keys in the order of the live initial dump.
    fn book(&mut self, asset: &str, n: usize) -> String {
        let mid = self.rng.u32(450..550);
        let bids = self.ticks(1..mid, n);
        let asks = self.ticks(mid + 1..1000, n);
        let mut s = String::with_capacity(64 + n * 80);
        let (market, ts, hash) = (self.market(), self.timestamp(), self.hex(40));
        s.push_str(&format!(
            r#"{{"market":"{market}","asset_id":"{asset}","timestamp":"{ts}","hash":"{hash}","bids":"#
        ));
        self.levels(&mut s, bids.iter().copied());
        s.push_str(r#","asks":"#);
        self.levels(&mut s, asks.iter().rev().copied());
        let ltp = Gen::price_text(self.rng.u32(1..1000));
        s.push_str(&format!(
            r#","tick_size":"0.001","event_type":"book","last_trade_price":"{ltp}"}}"#
        ));
        s
    }

    /// A current-schema `price_change` frame with one entry per asset in `assets`
    /// (cycled to `n` entries); sides alternate like the two legs of a binary market.
    fn price_change(&mut self, assets: &[String], n: usize) -> String {
        let (market, ts) = (self.market(), self.timestamp());
        let mut s = format!(r#"{{"market":"{market}","price_changes":["#);
        for k in 0..n {
            if k > 0 {
                s.push(',');
            }
            let tick = self.rng.u32(2..999);
            let (side, best_bid, best_ask) = if k % 2 == 0 {
                ("BUY", tick, tick + self.rng.u32(1..5).min(999 - tick))
            } else {
                ("SELL", tick - self.rng.u32(1..5).min(tick - 1), tick)
            };
            // About a third of the venue's deltas remove a level.
            let size = if self.rng.u8(0..3) == 0 {
                "0".to_string()
            } else {
                self.size_text()
            };
            s.push_str(&format!(
                r#"{{"asset_id":"{}","price":"{}","size":"{}","side":"{}","hash":"{}","best_bid":"{}","best_ask":"{}"}}"#,
                assets[k % assets.len()],
                Gen::price_text(tick),
                size,
                side,
                self.hex(40),
                Gen::price_text(best_bid),
                Gen::price_text(best_ask),
            ));
        }
        s.push_str(&format!(
            r#"],"timestamp":"{ts}","event_type":"price_change"}}"#
        ));
        s
    }
}

/// The frames of one bench plus an interner that already knows their ids.
struct Fixture {
    frames: Vec<String>,
    interner: AssetInterner,
    decoder: Decoder,
    out: DecodeOutput,
}

impl Fixture {
    fn new(frames: Vec<String>, assets: &[String], seed: u64, records_per_frame: usize) -> Fixture {
        assert_eq!(frames.len(), VARIANTS);
        let mut g = Gen::new(seed ^ 0xF111);
        let mut interner = AssetInterner::new();
        for a in assets {
            interner.intern(a);
        }
        for _ in 0..FILLER_ASSETS {
            interner.intern(&g.asset_id());
        }
        let mut f = Fixture {
            frames,
            interner,
            decoder: Decoder::new(),
            out: DecodeOutput::default(),
        };
        // Warm the scratch vectors and check that every frame decodes completely: a bench
        // that silently measured the error path would be worse than none.
        let known = f.interner.len();
        for frame in &f.frames {
            f.out.clear();
            let (kind, stats) = f
                .decoder
                .decode(frame.as_bytes(), 0, &mut f.interner, &mut f.out);
            assert_eq!(kind, FrameKind::Json);
            assert_eq!(stats.failed, 0, "{:?} in {frame}", f.out.failures);
            assert_eq!(stats.messages, 1);
            assert_eq!(f.out.records.len(), records_per_frame, "{frame}");
        }
        assert_eq!(f.interner.len(), known, "every id must be pre-interned");
        f
    }

    fn mean_len(&self) -> usize {
        self.frames.iter().map(String::len).sum::<usize>() / self.frames.len()
    }

    /// Decodes the frames in turn, one per iteration.
    fn bench(
        &mut self,
        c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
    ) {
        eprintln!(
            "decode/{name}: {} variants, mean {} bytes/frame",
            self.frames.len(),
            self.mean_len()
        );
        let Fixture {
            frames,
            interner,
            decoder,
            out,
        } = self;
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                let frame = &frames[i & (VARIANTS - 1)];
                i = i.wrapping_add(1);
                out.clear();
                black_box(decoder.decode(black_box(frame.as_bytes()), 0, &mut *interner, &mut *out))
            });
        });
    }
}

fn price_change_fixture(entries: usize, seed: u64) -> Fixture {
    let mut g = Gen::new(seed);
    let mut assets = Vec::new();
    let mut frames = Vec::with_capacity(VARIANTS);
    for _ in 0..VARIANTS {
        // A binary market's two tokens; wider messages name further assets.
        let own: Vec<String> = (0..entries.clamp(1, 2) + entries / 3)
            .map(|_| g.asset_id())
            .collect();
        frames.push(g.price_change(&own, entries));
        assets.extend(own);
    }
    Fixture::new(frames, &assets, seed, entries)
}

fn book_fixture(levels_per_side: usize, seed: u64) -> Fixture {
    let mut g = Gen::new(seed);
    let mut assets = Vec::new();
    let mut frames = Vec::with_capacity(VARIANTS);
    for _ in 0..VARIANTS {
        let asset = g.asset_id();
        frames.push(g.book(&asset, levels_per_side));
        assets.push(asset);
    }
    Fixture::new(frames, &assets, seed, 2 * levels_per_side + 2)
}

/// `price_change`: the bulk of the live stream (every order, cancel and fill).
///
/// A regression here is a direct loss of event-loop headroom: at ~400 ns per frame one core
/// decodes ~2.5 M frames/s; the budget in `docs/machine-reference.md` assumes about 150–250 ns.
fn bench_price_change(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    // 1 entry: the docs/machine-reference.md §1 "price_change×1" shape (380 B), for comparison.
    price_change_fixture(1, 1).bench(&mut group, "price_change_1");
    // 2 entries: the issue's target (≤ 400 ns), a binary market's two legs.
    price_change_fixture(2, 2).bench(&mut group, "price_change_2");
    // 5 entries: docs/machine-reference.md "price_change×5" (1,290 B).
    price_change_fixture(5, 5).bench(&mut group, "price_change_5");
    group.finish();
}

/// `book`: snapshots on subscribe, after every trade, and for every resync.
///
/// A regression here slows resubscription storms (thousands of books in one burst) and
/// every trade (each is followed by a full `book`); target ≤ 4 µs for 60 levels.
fn bench_book(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    // 30 + 30 = 60 levels: the issue's "60-level book" and the machine reference's "book 30+30".
    book_fixture(30, 30).bench(&mut group, "book_30x30");
    // 60 + 60, in case "60-level" is read per side.
    book_fixture(60, 60).bench(&mut group, "book_60x60");
    // 200 + 200 (~14 KB): the machine reference's large-frame case.
    book_fixture(200, 200).bench(&mut group, "book_200x200");
    group.finish();
}

/// `Price::parse` / `Size::parse`, the fixed-point conversion the decoder runs per field.
///
/// 4,096 distinct venue-shaped numbers (half prices, half sizes) stored back to back in one
/// buffer, as in docs/machine-reference.md §2; reports ns per conversion. A regression here multiplies
/// by every number in every frame (two per level, up to five per `price_change` entry).
fn bench_numbers(c: &mut Criterion) {
    const N: usize = 4096;
    let mut g = Gen::new(7);
    let mut buf = String::new();
    let mut fields = Vec::with_capacity(N);
    for k in 0..N {
        let text = if k % 2 == 0 {
            Gen::price_text(g.rng.u32(1..1000))
        } else {
            g.size_text()
        };
        fields.push((k % 2 == 0, buf.len(), buf.len() + text.len()));
        buf.push_str(&text);
    }
    let buf = buf.into_bytes();
    for &(is_price, start, end) in &fields {
        let t = &buf[start..end];
        let ok = if is_price {
            Price::parse(t).is_ok()
        } else {
            Size::parse(t).is_ok()
        };
        assert!(ok, "{}", String::from_utf8_lossy(t));
    }
    let mut group = c.benchmark_group("number");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("parse_mixed_4096", |b| {
        b.iter(|| {
            let buf = black_box(&buf[..]);
            let mut acc = 0u64;
            for &(is_price, start, end) in &fields {
                let t = &buf[start..end];
                acc = acc.wrapping_add(if is_price {
                    Price::parse(t).map_or(0, |p| u64::from(p.raw()))
                } else {
                    Size::parse(t).map_or(0, Size::raw)
                });
            }
            acc
        });
    });
    group.finish();
}

/// serde_json's borrowed typed path, every field a `&str` (what docs/machine-reference.md §1 measured as
/// "serde_json typed"), on the very frames of `price_change_1` and `book_30x30`.
///
/// Not an alternative implementation: a calibration. docs/machine-reference.md gives 410 ns and
/// 4,760 ns for these shapes on its machine, so the ratio of this bench to those figures
/// says how fast the machine running the benches is, separately from our own code.
mod serde_baseline {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(
        dead_code,
        reason = "fields are parsed, not read: the bench times parsing"
    )]
    pub(super) struct PriceChange<'a> {
        #[serde(borrow)]
        market: &'a str,
        #[serde(borrow)]
        price_changes: Vec<Entry<'a>>,
        #[serde(borrow)]
        timestamp: &'a str,
        #[serde(borrow)]
        event_type: &'a str,
    }

    #[derive(Deserialize)]
    #[allow(
        dead_code,
        reason = "fields are parsed, not read: the bench times parsing"
    )]
    struct Entry<'a> {
        #[serde(borrow)]
        asset_id: &'a str,
        #[serde(borrow)]
        price: &'a str,
        #[serde(borrow)]
        size: &'a str,
        #[serde(borrow)]
        side: &'a str,
        #[serde(borrow)]
        hash: &'a str,
        #[serde(borrow)]
        best_bid: &'a str,
        #[serde(borrow)]
        best_ask: &'a str,
    }

    #[derive(Deserialize)]
    #[allow(
        dead_code,
        reason = "fields are parsed, not read: the bench times parsing"
    )]
    pub(super) struct Book<'a> {
        #[serde(borrow)]
        market: &'a str,
        #[serde(borrow)]
        asset_id: &'a str,
        #[serde(borrow)]
        timestamp: &'a str,
        #[serde(borrow)]
        hash: &'a str,
        #[serde(borrow)]
        bids: Vec<Level<'a>>,
        #[serde(borrow)]
        asks: Vec<Level<'a>>,
        #[serde(borrow)]
        tick_size: &'a str,
        #[serde(borrow)]
        event_type: &'a str,
        #[serde(borrow)]
        last_trade_price: &'a str,
    }

    #[derive(Deserialize)]
    #[allow(
        dead_code,
        reason = "fields are parsed, not read: the bench times parsing"
    )]
    struct Level<'a> {
        #[serde(borrow)]
        price: &'a str,
        #[serde(borrow)]
        size: &'a str,
    }
}

/// Host calibration: serde_json typed on the same frames (see [`serde_baseline`]).
fn bench_serde_baseline(c: &mut Criterion) {
    fn run<'a, T: serde::Deserialize<'a>>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
        frames: &'a [String],
    ) {
        for f in frames {
            assert!(serde_json::from_str::<T>(f).is_ok(), "{f}");
        }
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = &frames[i & (VARIANTS - 1)];
                i = i.wrapping_add(1);
                serde_json::from_slice::<T>(black_box(frame.as_bytes())).is_ok()
            });
        });
    }
    // Same seeds as `price_change_1` and `book_30x30`: the same 64 frames.
    let pc = price_change_fixture(1, 1).frames;
    let book = book_fixture(30, 30).frames;
    let mut group = c.benchmark_group("baseline");
    group.throughput(Throughput::Elements(1));
    run::<serde_baseline::PriceChange<'_>>(&mut group, "serde_json_price_change_1", &pc);
    run::<serde_baseline::Book<'_>>(&mut group, "serde_json_book_30x30", &book);
    group.finish();
}

criterion_group!(
    benches,
    bench_price_change,
    bench_book,
    bench_numbers,
    bench_serde_baseline
);
criterion_main!(benches);
