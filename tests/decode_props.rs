//! Property tests of the wire decoder (style.md §3.2 item 10).
//!
//! - `Decoder::decode` never panics: on arbitrary bytes, on mutations of real venue frames
//!   (byte flips, truncation, insertion, deletion, duplication, token splices), on flat JSON
//!   token soup and on structured JSON-ish values built from the venue's own keys.
//! - Applying whatever was decoded to `OrderBook`s never panics and leaves every ladder
//!   sorted with non-zero sizes; the decoder's counters agree with its output.
//! - Round trips: a book of random levels rendered as a venue `book` frame, decoded and
//!   applied, equals the original levels (and its own hash verifies); random deltas rendered
//!   as `price_change` frames track a model book.
//!
//! Real frames come from the captured fixtures in `tests/data/polymarket/` (the tests fail
//! when that folder is missing), plus compact copies embedded below. The fuzz target `tools/fuzz/fuzz_targets/decode.rs`
//! drives the same harness idea with coverage guidance.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use polypy::market::price::write_fixed;
use polypy::market::{AssetId, AssetInterner, BookHash, Price, Size};
use polypy::orderbook::{
    BookMeta, CheckContext, CheckMode, Effect, HashVerdict, Level, OrderBook, UntrustReason,
};
use polypy::venue::{DecodeOutput, Decoder, FrameKind, FrameStats};
use proptest::prelude::*;
use proptest::sample::{Index, select};

// ---------------------------------------------------------------------------------------
// Real frames

/// Compact real frames (docs/venue-protocol.md §3, copied from the captures it cites), one per shape.
const EMBEDDED: &[&str] = &[
    // Live initial dump (array of books), 2026-10-02.
    r#"[{"market":"0x8a9f8be5bef9bc8d36c7895707a4f2561d49de9f5467b6675ba206196e8bd2e2","asset_id":"98756637703320879198441871470345384821367334051929992047845197222571333888980","timestamp":"1790908667676","hash":"9e4f2ff8ba2be56177e8bdc8623dfaba4d18f5c8","bids":[{"price":"0.01","size":"112689"},{"price":"0.02","size":"133687"},{"price":"0.03","size":"41666.32"}],"asks":[{"price":"0.99","size":"37677.02"},{"price":"0.98","size":"25298"},{"price":"0.97","size":"8960.67"}],"tick_size":"0.01","event_type":"book","last_trade_price":"0.140"},{"market":"0x8a9f8be5bef9bc8d36c7895707a4f2561d49de9f5467b6675ba206196e8bd2e2","asset_id":"1111","timestamp":"1790908667676","hash":"0000000000000000000000000000000000000000","bids":[],"asks":[],"tick_size":"0.01","event_type":"book","last_trade_price":""}]"#,
    // Current price_change, two legs of one order (crossing burst).
    r#"{"market":"0x285746de0e4f751fd4dc8f9dc2cecd0101ba9ad0096a43145ed9643b09514f01","price_changes":[{"asset_id":"76670567130917723816490572615540605537878462672464291990940067659127658071111","price":"0.301","size":"1000","side":"BUY","hash":"b7623b6417b3ae46dbe5d608a65474c9cec84ef9","best_bid":"0.301","best_ask":"0.397"},{"asset_id":"54179564009642723353355316176091991063553046330768303687769988635499280029688","price":"0.699","size":"1000","side":"SELL","hash":"c0978ce48e525b35579b9fb4556a08538ebf265a","best_bid":"0.603","best_ask":"0.699"}],"timestamp":"1790658674035","event_type":"price_change"}"#,
    // Post-trade book without tick_size / last_trade_price, key order of the burst.
    r#"{"market":"0x285746de0e4f751fd4dc8f9dc2cecd0101ba9ad0096a43145ed9643b09514f01","asset_id":"76670567130917723816490572615540605537878462672464291990940067659127658071111","bids":[{"price":"0.29","size":"100"},{"price":"0.3","size":"45.83"}],"asks":[{"price":"0.4","size":"10"},{"price":"0.397","size":"12.5"}],"hash":"78b396c8a7f4989f638fe6cf9b2e8ced15680ba7","timestamp":"1790658827000","event_type":"book"}"#,
    // Legacy #2 price_change.
    r#"{"asset_id":"71321045679252212594626385532706912750332728571942532289631379312455583992563","changes":[{"price":"0.4","side":"SELL","size":"3300"}],"event_type":"price_change","market":"0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1","timestamp":"1729084877448","hash":"3cd4d61e042c81560c9037ece0c61f3b1a8fbbdd"}"#,
    // Legacy #1 price_change.
    r#"{"asset_id":"48331043336612883890938759509493159234755048973500640148014422747788308965732","event_type":"price_change","hash":"bf32b3746fff40c76c98021b7f3f07261169dd26","market":"0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917","price":"0.514","side":"SELL","size":"21574.08","timestamp":"1723967931411"}"#,
    r#"{"asset_id":"115474063863764126958837769719736461272619491980773624567012766320777398670353","event_type":"tick_size_change","market":"0xbacdf04bf7f22a670dc4fb408878ec56b76f9934599829455b9371693ba84b8b","new_tick_size":"0.001","old_tick_size":"0.01","timestamp":"1739068041853"}"#,
    r#"{"asset_id":"21742633143463906290569050155826241533067272736897614950488156847949938836455","event_type":"last_trade_price","fee_rate_bps":"0","market":"0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917","price":"0.491","side":"SELL","size":"85.36","timestamp":"1724564136087"}"#,
    r#"{"event_type":"best_bid_ask","market":"0x0005c0d312de0be897668695bae9f32b624b4a1ae8b140c49f08447fcc74f442","asset_id":"85354956062430465315924116860125388538595433819574542752031640332592237464430","best_bid":"0.73","best_ask":"","spread":"0.04","timestamp":"1766789469958"}"#,
    r#"{"id":"5196322","question":"Bitcoin Up or Down","market":"0x9691dbea9f392aea399936926ff9d3013de1550381454b9579124df96168f54a","slug":"btc-updown-5m-1790994600","description":"This market will resolve to \"Up\" if the ","assets_ids":["29481957761527484935929705986029508274880234386196526574483297319946400380223","110300735535035853449236273459359802664768005831731803586170232203839099968893"],"outcomes":["Up","Down"],"event_message":{"id":"1117051","ticker":"btc-updown-5m-1790994600"},"timestamp":"1790908720778","event_type":"new_market","tags":[],"active":false,"order_price_min_tick_size":"0.01","fees_enabled":true,"fee_schedule":{"exponent":"1","rate":"0.07","taker_only":true,"rebate_rate":"0.2"}}"#,
    r#"{"event_type":"market_resolved","id":"1031769","market":"0x311d0c4b6671ab54af4970c06fcf58662516f5168997bdda209ec3db5aa6b0c1","assets_ids":["76043073756653678226373981964075571318267289248134717369284518995922789326425","31690934263385727664202099278545688007799199447969475608906331829650099442770"],"winning_asset_id":"76043073756653678226373981964075571318267289248134717369284518995922789326425","winning_outcome":"Yes","timestamp":"1766790415550","tags":["stocks"]}"#,
    "PONG",
    "NO NEW ASSETS",
];

/// Removes whitespace outside JSON strings (the venue sends compact JSON; the captures were
/// pretty-printed by the tools that saved them).
fn compact(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !b.is_ascii_whitespace() {
            out.push(b);
            in_string = b == b'"';
        }
    }
    out
}

/// Every real market-channel frame available: embedded copies plus the captured fixtures in `tests/data/polymarket/`
/// (as captured and compacted).
fn real_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut frames: Vec<Vec<u8>> = EMBEDDED.iter().map(|s| s.as_bytes().to_vec()).collect();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fixture folder {}: {e}", dir.display()));
        let mut paths: Vec<_> = entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("fixture folder entry: {e}"))
                    .path()
            })
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // Market-channel captures only (not Gamma / REST documents).
                name.ends_with(".json")
                    && (name.contains("__ws_") || name.contains("py_ws_messages"))
            })
            .collect();
        paths.sort();
        assert!(
            paths.len() >= 15,
            "expected the market-channel captures in {}, found {}",
            dir.display(),
            paths.len()
        );
        for p in paths {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            frames.push(compact(&bytes));
            frames.push(bytes);
        }
        frames
    })
}

// ---------------------------------------------------------------------------------------
// Harness: decode, then apply to books, checking invariants along the way

/// Decodes frames and applies their records to one book per asset, as a book worker would.
struct Harness {
    decoder: Decoder,
    interner: AssetInterner,
    out: DecodeOutput,
    books: HashMap<AssetId, OrderBook>,
    ctx: CheckContext,
}

impl Harness {
    fn new(mode: CheckMode) -> Harness {
        Harness {
            decoder: Decoder::new(),
            interner: AssetInterner::new(),
            out: DecodeOutput::default(),
            books: HashMap::new(),
            ctx: CheckContext::new(mode),
        }
    }

    /// Decodes one frame and applies everything it produced; panics (fails the property)
    /// on any broken invariant.
    fn feed(&mut self, frame: &[u8]) -> (FrameKind, FrameStats) {
        self.out.clear();
        let (kind, stats) = self
            .decoder
            .decode(frame, 0, &mut self.interner, &mut self.out);
        for rec in &self.out.records {
            let name = self
                .interner
                .name(rec.asset)
                .unwrap_or("unknown")
                .to_string();
            let book = self
                .books
                .entry(rec.asset)
                .or_insert_with(|| OrderBook::new(BookMeta::new(&name, "0x00")));
            book.apply(rec, &mut self.ctx);
            assert_ladders_sorted(book);
        }
        for failure in &self.out.failures {
            for asset in &failure.assets {
                if let Some(book) = self.books.get_mut(asset) {
                    book.mark_untrusted(UntrustReason::DataLoss);
                }
            }
        }
        (kind, stats)
    }

    /// Settles every book and exercises the read side (hash text, hex, heap).
    fn finish(&mut self) {
        for book in self.books.values_mut() {
            book.settle(&mut self.ctx);
            assert_ladders_sorted(book);
            let ts = book.last_timestamp();
            let hex = self.ctx.hasher.hex(book, ts);
            assert_eq!(hex.len(), 40);
            assert_eq!(
                BookHash::parse_hex(hex.as_bytes()),
                Some(self.ctx.hasher.prefix(book, ts))
            );
            let _ = book.heap_bytes();
        }
    }
}

/// Bids strictly ascending, asks strictly descending, no zero sizes.
fn assert_ladders_sorted(book: &OrderBook) {
    let bids = book.bids().wire_order();
    let asks = book.asks().wire_order();
    assert!(
        bids.windows(2).all(|w| w[0].price < w[1].price),
        "bids: {bids:?}"
    );
    assert!(
        asks.windows(2).all(|w| w[0].price > w[1].price),
        "asks: {asks:?}"
    );
    assert!(bids.iter().chain(asks).all(|l| !l.size.is_zero()));
    assert_eq!(book.best_bid(), bids.last().copied());
    assert_eq!(book.best_ask(), asks.last().copied());
}

/// Decodes `frame` with checking both off and per entry.
fn decode_and_apply(frame: &[u8]) {
    for mode in [CheckMode::Off, CheckMode::EveryEntry] {
        let mut h = Harness::new(mode);
        h.feed(frame);
        h.finish();
    }
}

// ---------------------------------------------------------------------------------------
// Generators

/// One way to damage a frame.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: Index, mask: u8 },
    Set { at: Index, byte: u8 },
    Truncate { at: Index },
    Insert { at: Index, bytes: Vec<u8> },
    Splice { at: Index, token: &'static str },
    Delete { at: Index, len: usize },
    Duplicate { at: Index, len: usize },
}

impl Mutation {
    fn apply(&self, f: &mut Vec<u8>) {
        let pos = |at: &Index, f: &Vec<u8>| at.index(f.len() + 1);
        match self {
            Mutation::Flip { at, mask } if !f.is_empty() => {
                let i = at.index(f.len());
                f[i] ^= mask;
            }
            Mutation::Set { at, byte } if !f.is_empty() => {
                let i = at.index(f.len());
                f[i] = *byte;
            }
            Mutation::Truncate { at } => f.truncate(pos(at, f)),
            Mutation::Insert { at, bytes } => {
                let i = pos(at, f);
                f.splice(i..i, bytes.iter().copied());
            }
            Mutation::Splice { at, token } => {
                let i = pos(at, f);
                f.splice(i..i, token.bytes());
            }
            Mutation::Delete { at, len } => {
                let i = pos(at, f);
                let end = (i + len).min(f.len());
                f.drain(i..end);
            }
            Mutation::Duplicate { at, len } => {
                let i = pos(at, f);
                let end = (i + len).min(f.len());
                let copy = f[i..end].to_vec();
                f.splice(end..end, copy);
            }
            _ => {}
        }
    }
}

/// JSON tokens and venue vocabulary, for token soup and splices.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    " ",
    "\n",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e5",
    "\"\"",
    "\"event_type\"",
    "\"book\"",
    "\"price_change\"",
    "\"tick_size_change\"",
    "\"last_trade_price\"",
    "\"best_bid_ask\"",
    "\"new_market\"",
    "\"market_resolved\"",
    "\"asset_id\"",
    "\"market\"",
    "\"timestamp\"",
    "\"hash\"",
    "\"bids\"",
    "\"asks\"",
    "\"price\"",
    "\"size\"",
    "\"side\"",
    "\"BUY\"",
    "\"SELL\"",
    "\"price_changes\"",
    "\"changes\"",
    "\"best_bid\"",
    "\"best_ask\"",
    "\"tick_size\"",
    "\"old_tick_size\"",
    "\"new_tick_size\"",
    "\"assets_ids\"",
    "\"outcomes\"",
    "\"winning_asset_id\"",
    "\"order_price_min_tick_size\"",
    "\"id\"",
    "\"question\"",
    "\"0.5\"",
    "\"0.001\"",
    "\"1\"",
    "\"1.000001\"",
    "\".\"",
    "\"5.\"",
    "\".48\"",
    "\"0.1234567\"",
    "\"-0.5\"",
    "\"1e3\"",
    "\"99999999999999999999999\"",
    "\"18446744073709.551615\"",
    "\"18446744073709.551616\"",
    "\"0\"",
    "\"1790658674035\"",
    "\"99999999999999999999\"",
    "\"5511583ad6f3eb4678e0a374e0cc2bd3b1975d07\"",
    "\"0000000000000000000000000000000000000000\"",
    "\"76670567130917723816490572615540605537878462672464291990940067659127658071111\"",
    "\"54179564009642723353355316176091991063553046330768303687769988635499280029688\"",
    "\"1111\"",
    "\"\\u0000\"",
    "\"\\\"\"",
    "\u{e9}",
    "\u{ff}",
    "PONG",
    "NO NEW ASSETS",
];

/// Values a venue field might carry (valid and invalid).
const SCALARS: &[&str] = &[
    "\"0.5\"",
    "\"0.001\"",
    "\"0.01\"",
    "\"1\"",
    "\"0\"",
    "\"\"",
    "\"150.0\"",
    "\"41666.32\"",
    "\"219.217767\"",
    "\"1.5\"",
    "\"-1\"",
    "\"abc\"",
    "\"0.1234567\"",
    "\"18446744073709.551615\"",
    "\"BUY\"",
    "\"SELL\"",
    "\"buy\"",
    "\"1790658674035\"",
    "\"0xabc123...\"",
    "\"5511583ad6f3eb4678e0a374e0cc2bd3b1975d07\"",
    "\"76670567130917723816490572615540605537878462672464291990940067659127658071111\"",
    "\"54179564009642723353355316176091991063553046330768303687769988635499280029688\"",
    "\"1111\"",
    "null",
    "true",
    "0.5",
    "1790658674035",
    "-0",
    "\"book\"",
    "\"price_change\"",
];

const KEYS: &[&str] = &[
    "event_type",
    "asset_id",
    "market",
    "timestamp",
    "hash",
    "bids",
    "asks",
    "price",
    "size",
    "side",
    "price_changes",
    "changes",
    "best_bid",
    "best_ask",
    "tick_size",
    "last_trade_price",
    "old_tick_size",
    "new_tick_size",
    "assets_ids",
    "outcomes",
    "winning_asset_id",
    "order_price_min_tick_size",
    "id",
    "question",
    "other",
];

const EVENT_TYPES: &[&str] = &[
    "book",
    "price_change",
    "tick_size_change",
    "last_trade_price",
    "best_bid_ask",
    "new_market",
    "market_resolved",
    "unknown",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<Index>(), select(TOKENS)).prop_map(|(at, token)| Mutation::Splice { at, token }),
        (any::<Index>(), 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<Index>(), 1..256usize).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

/// A JSON-ish value over the venue's keys and values: mostly valid structure with invalid
/// or surprising contents, so the decoder's field handling (not just its scanner) is hit.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(SCALARS).prop_map(str::to_string),
        "[0-9.]{0,10}".prop_map(|s| format!("\"{s}\"")),
        "[0-9a-f]{38,42}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(4, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((select(KEYS), inner), 0..10).prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A message object with a known `event_type` and random venue fields.
fn venue_message() -> impl Strategy<Value = String> {
    (
        select(EVENT_TYPES),
        prop::collection::vec((select(KEYS), json_value()), 0..12),
    )
        .prop_map(|(ev, kv)| {
            let mut fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            fields.push(format!("\"event_type\":\"{ev}\""));
            format!("{{{}}}", fields.join(","))
        })
}

// ---------------------------------------------------------------------------------------
// Rendering venue frames from a model

/// Model of one side: raw price → raw size.
type Side = BTreeMap<u32, u64>;

const ASSET: &str = "76670567130917723816490572615540605537878462672464291990940067659127658071111";
const MARKET: &str = "0x285746de0e4f751fd4dc8f9dc2cecd0101ba9ad0096a43145ed9643b09514f01";

/// How numbers are written: canonical ("0.5") or padded to six decimals ("0.500000").
fn number(out: &mut String, raw: u64, padded: bool) {
    let mut v = Vec::new();
    if padded {
        write_fixed(&mut v, raw, 6);
    } else {
        polypy::market::price::write_canonical(&mut v, raw);
    }
    out.push_str(&String::from_utf8_lossy(&v));
}

#[derive(Debug, Clone)]
struct BookFrame {
    bids: Side,
    asks: Side,
    timestamp: u64,
    /// Shuffle seed for level order; `None` keeps the venue's order.
    shuffle: Option<u64>,
    padded: bool,
    pretty: bool,
}

impl BookFrame {
    fn render(&self, hash: &str) -> String {
        let levels = |side: &Side, descending: bool| {
            let mut v: Vec<(u32, u64)> = side.iter().map(|(p, s)| (*p, *s)).collect();
            if descending {
                v.reverse();
            }
            if let Some(seed) = self.shuffle {
                fastrand::Rng::with_seed(seed).shuffle(&mut v);
            }
            let mut s = String::from("[");
            for (i, (p, sz)) in v.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"price\":\"");
                number(&mut s, u64::from(*p), self.padded);
                s.push_str("\",\"size\":\"");
                number(&mut s, *sz, self.padded);
                s.push_str("\"}");
            }
            s.push(']');
            s
        };
        let bids = levels(&self.bids, false);
        let asks = levels(&self.asks, true);
        let sep = if self.pretty { ", " } else { "," };
        format!(
            "{{\"market\":\"{MARKET}\"{sep}\"asset_id\":\"{ASSET}\"{sep}\"timestamp\":\"{}\"{sep}\"hash\":\"{hash}\"{sep}\"bids\":{bids}{sep}\"asks\":{asks}{sep}\"tick_size\":\"0.001\"{sep}\"event_type\":\"book\"{sep}\"last_trade_price\":\"0.5\"}}",
            self.timestamp
        )
    }
}

fn side_levels(max: usize, prices: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = Side> {
    prop::collection::btree_map(
        prices,
        prop_oneof![1..=1_000_000_000u64, 1..=u64::MAX],
        0..max,
    )
}

fn book_frame() -> impl Strategy<Value = BookFrame> {
    (
        side_levels(80, 0..=1_000_000),
        side_levels(80, 0..=1_000_000),
        1_000_000_000_000u64..2_000_000_000_000,
        prop::option::of(any::<u64>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(bids, asks, timestamp, shuffle, padded, pretty)| BookFrame {
                bids,
                asks,
                timestamp,
                shuffle,
                padded,
                pretty,
            },
        )
}

fn expected_levels(side: &Side, descending: bool) -> Vec<Level> {
    let mut v: Vec<Level> = side
        .iter()
        .map(|(p, s)| Level {
            price: Price::from_raw(*p).unwrap_or_else(|e| panic!("price {p}: {e}")),
            size: Size::from_raw(*s),
        })
        .collect();
    if descending {
        v.reverse();
    }
    v
}

/// One `price_change` entry of the model: (is_bid, raw price, raw size).
type Delta = (bool, u32, u64);

fn price_change_frame(deltas: &[Delta], timestamp: u64) -> String {
    let entries: Vec<String> = deltas
        .iter()
        .map(|(bid, p, s)| {
            let (mut price, mut size) = (String::new(), String::new());
            number(&mut price, u64::from(*p), false);
            number(&mut size, *s, false);
            let side = if *bid { "BUY" } else { "SELL" };
            format!(
                "{{\"asset_id\":\"{ASSET}\",\"price\":\"{price}\",\"size\":\"{size}\",\"side\":\"{side}\"}}"
            )
        })
        .collect();
    format!(
        "{{\"market\":\"{MARKET}\",\"price_changes\":[{}],\"timestamp\":\"{timestamp}\",\"event_type\":\"price_change\"}}",
        entries.join(",")
    )
}

fn delta() -> impl Strategy<Value = Delta> {
    // Bids below 0.5 and asks above it, so no settled group is ever crossed; the price grid
    // is coarse so deltas hit existing levels often. Size 0 (remove) about a third of the time.
    (
        any::<bool>(),
        1..500u32,
        prop_oneof![Just(0u64), Just(0), 1..=1_000_000_000u64],
    )
        .prop_map(|(bid, tick, size)| {
            let price = if bid {
                tick * 1_000
            } else {
                1_000_000 - tick * 1_000
            };
            (bid, price, size)
        })
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    // 512 cases by default; `PROPTEST_CASES=100000` for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_decode_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        decode_and_apply(&bytes);
    }

    #[test]
    fn prop_decode_never_panics_on_mutated_real_frames(
        pick in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let frames = real_frames();
        let mut frame = frames[pick.index(frames.len())].clone();
        for m in &mutations {
            m.apply(&mut frame);
        }
        decode_and_apply(&frame);
    }

    #[test]
    fn prop_decode_never_panics_on_token_soup(
        tokens in prop::collection::vec(select(TOKENS), 0..300),
    ) {
        decode_and_apply(tokens.concat().as_bytes());
    }

    #[test]
    fn prop_decode_never_panics_on_venue_shaped_json(
        messages in prop::collection::vec(venue_message(), 1..4),
        as_array in any::<bool>(),
    ) {
        let frame = if as_array {
            format!("[{}]", messages.join(","))
        } else {
            messages.join("")
        };
        decode_and_apply(frame.as_bytes());
    }

    #[test]
    fn prop_stats_agree_with_output(
        pick in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        let frames = real_frames();
        let mut frame = frames[pick.index(frames.len())].clone();
        for m in &mutations {
            m.apply(&mut frame);
        }
        let mut h = Harness::new(CheckMode::Off);
        let (_, stats) = h.feed(&frame);
        prop_assert_eq!(stats.records as usize, h.out.records.len());
        prop_assert!(h.out.failures.len() <= stats.failed as usize);
    }

    #[test]
    fn prop_book_frame_round_trips(frame in book_frame()) {
        // Decode once without a hash to learn the book's own hash, then send it as the
        // venue would and check both the levels and the hash verdict.
        let mut h = Harness::new(CheckMode::Settled);
        h.books.insert(
            h.interner.intern(ASSET),
            OrderBook::new(BookMeta::new(ASSET, MARKET)),
        );
        let (_, stats) = h.feed(frame.render("").as_bytes());
        prop_assert_eq!(stats.failed, 0, "{:?}", h.out.failures);
        let id = h.interner.intern(ASSET);
        let hex = {
            let book = &h.books[&id];
            h.ctx.hasher.hex(book, frame.timestamp)
        };
        let (_, stats) = h.feed(frame.render(&hex).as_bytes());
        prop_assert_eq!(stats.failed, 0);
        prop_assert_eq!(
            h.out.records.len(),
            frame.bids.len() + frame.asks.len() + 2
        );
        let book = &h.books[&id];
        prop_assert!(book.is_trusted());
        prop_assert_eq!(book.bids().wire_order(), &expected_levels(&frame.bids, false)[..]);
        prop_assert_eq!(book.asks().wire_order(), &expected_levels(&frame.asks, true)[..]);
        prop_assert_eq!(book.tick_size(), Some(Price::from_raw(1_000).unwrap()));
        prop_assert_eq!(book.last_trade().map(|q| q.to_text()), Some("0.5".to_string()));
        // The snapshot's own hash verified (the last record applied was its BookEnd).
        let mut again = OrderBook::new(BookMeta::new(ASSET, MARKET));
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let mut last = None;
        for rec in &h.out.records {
            last = Some(again.apply(rec, &mut ctx).effect);
        }
        prop_assert_eq!(last, Some(Effect::SnapshotApplied { hash: HashVerdict::Matched }));
    }

    #[test]
    fn prop_price_change_frames_track_model(
        bids in side_levels(30, 1_000..=499_000),
        asks in side_levels(30, 501_000..=999_000),
        frames in prop::collection::vec(prop::collection::vec(delta(), 1..4), 1..40),
    ) {
        let snapshot = BookFrame {
            bids: bids.clone(),
            asks: asks.clone(),
            timestamp: 1_790_658_674_035,
            shuffle: None,
            padded: false,
            pretty: false,
        };
        let (mut model_bids, mut model_asks) = (bids, asks);
        let mut h = Harness::new(CheckMode::Off);
        h.feed(snapshot.render("").as_bytes());
        let id = h.interner.intern(ASSET);
        for (k, deltas) in frames.iter().enumerate() {
            let (_, stats) = h.feed(price_change_frame(deltas, snapshot.timestamp + 1 + k as u64).as_bytes());
            prop_assert_eq!(stats.failed, 0, "{:?}", h.out.failures);
            prop_assert_eq!(stats.records as usize, deltas.len());
            for &(bid, p, s) in deltas {
                let side = if bid { &mut model_bids } else { &mut model_asks };
                if s == 0 {
                    side.remove(&p);
                } else {
                    side.insert(p, s);
                }
            }
            let book = &h.books[&id];
            prop_assert!(book.is_trusted(), "{:?}", book.trust());
            prop_assert_eq!(book.bids().wire_order(), &expected_levels(&model_bids, false)[..]);
            prop_assert_eq!(book.asks().wire_order(), &expected_levels(&model_asks, true)[..]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Non-vacuity checks for the generators above

#[test]
fn real_frames_decode_cleanly() {
    // The mutation property is only meaningful if the unmutated frames decode.
    let frames = real_frames();
    assert!(frames.len() >= EMBEDDED.len());
    let mut records = 0;
    for frame in frames {
        let mut h = Harness::new(CheckMode::EveryEntry);
        let (_, stats) = h.feed(frame);
        h.finish();
        records += h.out.records.len();
        // The nautilus fixtures include synthetic hashes ("0xhash001") but no broken JSON.
        assert_eq!(
            stats.failed,
            0,
            "{}: {:?}",
            String::from_utf8_lossy(frame),
            h.out.failures
        );
    }
    assert!(records > 100, "only {records} records from the real frames");
}

#[test]
fn compact_removes_whitespace_outside_strings_only() {
    assert_eq!(
        compact(b"{ \"a b\" : [1, \"x\\\" y\"] }\n"),
        b"{\"a b\":[1,\"x\\\" y\"]}".to_vec()
    );
}

// ---------------------------------------------------------------------------------------
// Foundation issues found by the properties above (fixed; kept as regressions)

/// A frame that is broken JSON "emits nothing" (decode.rs module doc): records are
/// truncated and `stats.records` is reset, but `stats.messages` (and `unknown`,
/// `unresolved`) keep counting the messages scanned before the break, so one discarded
/// frame is counted both as a decoded message and as a failure.
#[test]
fn broken_array_frame_counts_no_decoded_messages() {
    let frame = format!("[{},{{\"event_type\":\"book\"", EMBEDDED[1]);
    let mut h = Harness::new(CheckMode::Off);
    let (_, stats) = h.feed(frame.as_bytes());
    assert_eq!(h.out.records.len(), 0);
    assert_eq!(stats.records, 0);
    assert_eq!(stats.failed, 1);
    assert_eq!(stats.messages, 0, "{stats:?}");
}
