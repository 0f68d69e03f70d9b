//! `polypy-replay`: feed a recording (or a captured fixture) through the decoder and books.
//!
//! Reads recordings in the format of `docs/recording-format.md` (frame lines and market
//! lines, plain or zstd; several files = one recording, e.g. rotated files in order) or a
//! fixture file (a JSON array of messages, each replayed as its own frame, or a single
//! message), decodes every frame exactly as the engine does, applies the records to one book
//! per asset, verifies the venue's hashes and best bid/ask, and prints what it saw and how
//! fast. `--dump-books FILE` writes the final books as one JSON object keyed by asset id.
//!
//! Metadata: a book takes `min_order_size` / `neg_risk` from the recording's market lines;
//! without them (a bare feed, a fixture) the book infers both from its first hash
//! (`BookMeta::candidates`), and the report says per market what was inferred.
//!
//! Ownership: like the engine's owner check, an asset's records count only from the
//! connection that sent its latest snapshot (a recording of a recycle holds both connections'
//! frames); the others are counted as `foreign` and skipped.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use polypy::market::{AssetId, AssetInterner, Event};
use polypy::orderbook::{
    BookDump, BookMeta, CheckContext, CheckMode, Effect, HashVerdict, OrderBook, Verdict,
};
use polypy::recording::{Entry, MarketMeta, read_entries};
use polypy::venue::{DecodeOutput, Decoder, FrameKind};

/// Replay recorded market-channel frames through polypy's decoder and order books.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Recordings (JSON lines, plain or zstd; several files are replayed in order as one
    /// recording) or a fixture (JSON array of messages, or one message).
    #[arg(required = true)]
    input: Vec<PathBuf>,
    /// Hash checking: `every` (after every entry and every settled group), `settled`
    /// (every settled same-timestamp group), `sampled:N` (one settled group in N), `off`.
    #[arg(long, default_value = "every", value_parser = parse_mode)]
    check: CheckMode,
    /// Write the final books to FILE as one JSON object keyed by asset id
    /// (levels best first, prices and sizes as the venue's canonical decimal text).
    #[arg(long, value_name = "FILE")]
    dump_books: Option<PathBuf>,
    /// Assume `neg_risk: true` for books the recording has no metadata for (before their
    /// first hash says otherwise).
    #[arg(long)]
    neg_risk: bool,
}

fn parse_mode(s: &str) -> Result<CheckMode, String> {
    match s {
        "every" => Ok(CheckMode::EveryEntry),
        "settled" => Ok(CheckMode::Settled),
        "off" => Ok(CheckMode::Off),
        _ => s
            .strip_prefix("sampled:")
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(NonZeroU32::new)
            .map(CheckMode::Sampled)
            .ok_or_else(|| format!("expected every, settled, sampled:N or off, got {s:?}")),
    }
}

#[derive(Default)]
struct Tally {
    frames: u64,
    pongs: u64,
    messages: u64,
    unknown: u64,
    failed: u64,
    records: u64,
    level_updates: u64,
    skipped_untrusted: u64,
    snapshots: u64,
    snapshot_hash_ok: u64,
    snapshot_hash_bad: u64,
    entry_hash_ok: u64,
    entry_hash_bad: u64,
    groups: u64,
    group_hash_ok: u64,
    group_hash_inferred: u64,
    group_hash_bad: u64,
    group_unchecked: u64,
    bbo_bad: u64,
    crossed: u64,
    incomplete_snapshots: u64,
    foreign: u64,
    market_lines: u64,
    gaps: u64,
}

impl Tally {
    fn verdict(&mut self, v: Verdict) {
        self.groups += 1;
        match v.hash {
            HashVerdict::Matched => self.group_hash_ok += 1,
            HashVerdict::MatchedInferredTrade | HashVerdict::MatchedInferredMeta => {
                self.group_hash_inferred += 1
            }
            HashVerdict::Mismatch => self.group_hash_bad += 1,
            HashVerdict::NotChecked | HashVerdict::Skipped => self.group_unchecked += 1,
        }
        self.bbo_bad += u64::from(!v.bbo_ok);
        self.crossed += u64::from(v.crossed);
    }
}

/// One thing to replay.
enum Item {
    /// A frame from connection `conn`.
    Frame(u32, String),
    /// A market line.
    Market(MarketMeta),
    /// A gap line: frames of this connection (all when `None`) may be missing.
    Gap(Option<u32>),
}

/// Loads what to replay from one input file.
fn load(path: &std::path::Path, items: &mut Vec<Item>) -> Result<()> {
    let mut input =
        polypy::recording::open(path).with_context(|| format!("opening {}", path.display()))?;
    let head = input.fill_buf()?;
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    let is_recording = first == Some(b'{') && {
        let line = head
            .split(|b| *b == b'\n')
            .find(|l| !l.trim_ascii().is_empty());
        line.and_then(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .is_some_and(|v| {
                v.get("recv_ns").is_some() && (v.get("frame").is_some() || v.get("meta").is_some())
            })
    };
    if is_recording {
        for entry in read_entries(input) {
            match entry.with_context(|| format!("reading recording {}", path.display()))? {
                Entry::Frame(f) => items.push(Item::Frame(f.conn, f.frame)),
                Entry::Market(_, m) => items.push(Item::Market(m)),
                Entry::Gap { conn, .. } => items.push(Item::Gap(conn)),
            }
        }
        return Ok(());
    }
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    match first {
        Some(b'[') => {
            let msgs: Vec<serde_json::Value> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON array of messages", path.display()))?;
            items.extend(msgs.iter().map(|m| Item::Frame(0, m.to_string())));
        }
        Some(b'{') => items.push(Item::Frame(0, text)),
        _ => bail!(
            "{} is neither a recording (JSON lines with recv_ns and frame or meta) nor a JSON fixture",
            path.display()
        ),
    }
    Ok(())
}

/// Where a book's `min_order_size` / `neg_risk` came from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum MetaSource {
    /// A market line with known values.
    Recorded,
    /// The first hash that disagreed with the defaults (or matched them).
    Inferred,
    /// Never confirmed: no hash was checked (or none matched).
    Unconfirmed,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut items = Vec::new();
    for path in &args.input {
        load(path, &mut items)?;
    }
    let bytes: usize = items
        .iter()
        .map(|i| match i {
            Item::Frame(_, f) => f.len(),
            Item::Market(_) | Item::Gap(_) => 0,
        })
        .sum();

    let mut ids = AssetInterner::new();
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    let mut ctx = CheckContext::new(args.check);
    let mut books: Vec<OrderBook> = Vec::new();
    let mut owners: Vec<Option<u32>> = Vec::new();
    let mut recorded: HashMap<String, MarketMeta> = HashMap::new();
    let mut t = Tally::default();

    let started = Instant::now();
    for item in &items {
        let (conn, frame) = match item {
            Item::Frame(conn, frame) => (*conn, frame),
            Item::Market(m) => {
                t.market_lines += 1;
                if let (Some(id), Some(meta)) = (ids.get(&m.asset_id), m.book_meta()) {
                    if let Some(book) = books.get_mut(id.index()) {
                        book.set_meta(meta);
                    }
                }
                recorded.insert(m.asset_id.clone(), m.clone());
                continue;
            }
            Item::Gap(conn) => {
                // As the engine did when it lost the connection: untrusted until a snapshot.
                t.gaps += 1;
                for (book, owner) in books.iter_mut().zip(&owners) {
                    if conn.is_none() || *owner == *conn {
                        book.mark_untrusted(polypy::orderbook::UntrustReason::DataLoss);
                    }
                }
                continue;
            }
        };
        out.clear();
        let (kind, stats) = decoder.decode(frame.as_bytes(), 0, &mut ids, &mut out);
        t.frames += 1;
        t.pongs += u64::from(kind == FrameKind::Pong);
        t.messages += u64::from(stats.messages);
        t.unknown += u64::from(stats.unknown);
        t.failed += u64::from(stats.failed);
        t.records += out.records.len() as u64;
        if ids.len() > books.len() {
            // New assets: metadata from the recording, else the market from the frame.
            let markets = polypy::replay::frame_markets(frame);
            while books.len() < ids.len() {
                let name = ids.name(AssetId(books.len() as u32)).unwrap_or_default();
                let meta = match recorded.get(name).and_then(MarketMeta::book_meta) {
                    Some(meta) => meta,
                    None => {
                        let market = markets.get(name).map_or("", String::as_str);
                        let mut meta = BookMeta::new(name, market);
                        meta.neg_risk = args.neg_risk;
                        meta
                    }
                };
                books.push(OrderBook::new(meta));
                owners.push(None);
            }
        }
        for failure in &out.failures {
            for asset in &failure.assets {
                books[asset.index()].mark_untrusted(polypy::orderbook::UntrustReason::DataLoss);
            }
        }
        for rec in &out.records {
            let owner = &mut owners[rec.asset.index()];
            if matches!(rec.event, Event::BookBegin { .. }) {
                *owner = Some(conn);
            } else if owner.is_some_and(|c| c != conn) {
                t.foreign += 1;
                continue;
            }
            let step = books[rec.asset.index()].apply(rec, &mut ctx);
            if let Some(v) = step.settled {
                t.verdict(v);
            }
            match step.entry_hash {
                Some(true) => t.entry_hash_ok += 1,
                Some(false) => t.entry_hash_bad += 1,
                None => {}
            }
            match step.effect {
                Effect::Applied if matches!(rec.event, Event::Change { .. }) => {
                    t.level_updates += 1
                }
                Effect::BecameUntrusted(_) if matches!(rec.event, Event::Change { .. }) => {
                    t.level_updates += 1
                }
                Effect::SkippedNotTrusted => t.skipped_untrusted += 1,
                Effect::SnapshotApplied { hash } => {
                    t.snapshots += 1;
                    match hash {
                        HashVerdict::Mismatch => t.snapshot_hash_bad += 1,
                        HashVerdict::NotChecked => {}
                        _ => t.snapshot_hash_ok += 1,
                    }
                }
                Effect::BecameUntrusted(polypy::orderbook::UntrustReason::IncompleteSnapshot) => {
                    t.incomplete_snapshots += 1
                }
                _ => {}
            }
        }
    }
    for book in &mut books {
        if let Some(v) = book.settle(&mut ctx) {
            t.verdict(v);
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);

    let trusted = books.iter().filter(|b| b.is_trusted()).count();
    let unexplained = t.group_hash_bad + t.snapshot_hash_bad;
    for input in &args.input {
        println!("input            {}", input.display());
    }
    println!(
        "frames           {} ({} PONG), {} bytes",
        t.frames, t.pongs, bytes
    );
    println!(
        "messages         {} ({} unknown skipped, {} failed)",
        t.messages, t.unknown, t.failed
    );
    println!("records          {}", t.records);
    if t.market_lines > 0 || t.foreign > 0 || t.gaps > 0 {
        println!(
            "recording        {} market lines, {} gaps (books untrusted until their next snapshot); {} records from a connection that did not own the asset (skipped)",
            t.market_lines, t.gaps, t.foreign
        );
    }
    println!(
        "level updates    {} applied, {} skipped (book not trusted)",
        t.level_updates, t.skipped_untrusted
    );
    println!(
        "snapshots        {} ({} incomplete)",
        t.snapshots, t.incomplete_snapshots
    );
    println!("books            {} ({} trusted)", books.len(), trusted);
    println!("hash checks      mode {:?}", args.check);
    println!(
        "  snapshots      {} passed, {} failed",
        t.snapshot_hash_ok, t.snapshot_hash_bad
    );
    if t.entry_hash_ok + t.entry_hash_bad > 0 {
        println!(
            "  per entry      {} passed, {} differed mid-group (explained if their group settled clean)",
            t.entry_hash_ok, t.entry_hash_bad
        );
    }
    println!(
        "  settled groups {} passed ({} needing the trade price not yet received), {} failed, {} not checked",
        t.group_hash_ok + t.group_hash_inferred,
        t.group_hash_inferred,
        t.group_hash_bad,
        t.group_unchecked
    );
    println!(
        "  best bid/ask   {} mismatched; {} groups settled crossed",
        t.bbo_bad, t.crossed
    );
    print_metadata(&books, &recorded);
    println!("unexplained hash failures {unexplained}");
    println!(
        "throughput       {:.3} s: {:.0} frames/s, {:.0} messages/s, {:.0} level updates/s, {:.1} MB/s",
        elapsed,
        t.frames as f64 / elapsed,
        t.messages as f64 / elapsed,
        t.level_updates as f64 / elapsed,
        bytes as f64 / elapsed / 1e6
    );

    if let Some(path) = &args.dump_books {
        let mut dump = BTreeMap::new();
        for book in &books {
            dump.insert(
                book.meta().asset_id.to_string(),
                BookDump::of(book, &mut ctx.hasher),
            );
        }
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), &dump)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("books written to {}", path.display());
    }
    Ok(())
}

/// Per market: where `min_order_size` / `neg_risk` came from; one line per inferred market.
fn print_metadata(books: &[OrderBook], recorded: &HashMap<String, MarketMeta>) {
    // market → (min order size, neg risk, best source, its tokens disagree)
    let mut markets: BTreeMap<&str, (String, bool, MetaSource, bool)> = BTreeMap::new();
    for book in books {
        let m = book.meta();
        let source = if recorded.get(&*m.asset_id).is_some_and(|r| r.known) {
            MetaSource::Recorded
        } else if m.known {
            MetaSource::Inferred
        } else {
            MetaSource::Unconfirmed
        };
        let values = (m.min_order_size.to_text(), m.neg_risk);
        let e = markets.entry(&m.market).or_insert((
            values.0.clone(),
            values.1,
            MetaSource::Unconfirmed,
            false,
        ));
        if source != MetaSource::Unconfirmed {
            if e.2 == MetaSource::Unconfirmed {
                (e.0, e.1) = values;
            } else {
                e.3 |= (&e.0, e.1) != (&values.0, values.1);
            }
            e.2 = e.2.min(source);
        }
    }
    let count = |s: MetaSource| markets.values().filter(|v| v.2 == s).count();
    println!(
        "metadata         {} markets: {} from the recording, {} inferred from a hash, {} unconfirmed (no hash checked or none matched)",
        markets.len(),
        count(MetaSource::Recorded),
        count(MetaSource::Inferred),
        count(MetaSource::Unconfirmed)
    );
    for (market, (min, neg_risk, source, disagree)) in &markets {
        if *source == MetaSource::Inferred {
            let note = if *disagree {
                " (its tokens disagree)"
            } else {
                ""
            };
            println!("  inferred       {market} min order size {min} neg risk {neg_risk}{note}");
        }
    }
}
