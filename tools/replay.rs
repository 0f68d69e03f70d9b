//! `polypy-replay`: feed a recording (or a captured fixture) through the decoder and books.
//!
//! Reads a recording in the format of `docs/recording-format.md` (one JSON line per frame)
//! or a fixture file (a JSON array of messages, each replayed as its own frame, or a single
//! message), decodes every frame exactly as the engine does, applies the records to one book
//! per asset, verifies the venue's hashes and best bid/ask, and prints what it saw and how
//! fast. `--dump-books FILE` writes the final books as one JSON object keyed by asset id.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use polypy::market::{AssetId, AssetInterner, Event};
use polypy::orderbook::{
    BookDump, BookMeta, CheckContext, CheckMode, Effect, HashVerdict, OrderBook, Verdict,
};
use polypy::recording::read_frames;
use polypy::venue::{DecodeOutput, Decoder, FrameKind};

/// Replay recorded market-channel frames through polypy's decoder and order books.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// A recording (JSON lines: {"recv_ns","conn","frame"}) or a fixture (JSON array of
    /// messages, or one message).
    input: PathBuf,
    /// Hash checking: `every` (after every entry and every settled group), `settled`
    /// (every settled same-timestamp group), `sampled:N` (one settled group in N), `off`.
    #[arg(long, default_value = "every", value_parser = parse_mode)]
    check: CheckMode,
    /// Write the final books to FILE as one JSON object keyed by asset id
    /// (levels best first, prices and sizes as the venue's canonical decimal text).
    #[arg(long, value_name = "FILE")]
    dump_books: Option<PathBuf>,
    /// Assume `neg_risk: true` for every book (the hash includes it; the recording does not).
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
            HashVerdict::NotChecked => self.group_unchecked += 1,
        }
        self.bbo_bad += u64::from(!v.bbo_ok);
        self.crossed += u64::from(v.crossed);
    }
}

/// Loads the frames to replay: (frame text, market of the frame if a fixture names it).
fn load_frames(path: &PathBuf) -> Result<Vec<String>> {
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let msgs: Vec<serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON array of messages", path.display()))?;
        return Ok(msgs.iter().map(|m| m.to_string()).collect());
    }
    let first_line = trimmed.lines().next().unwrap_or("");
    let is_recording = serde_json::from_str::<serde_json::Value>(first_line)
        .ok()
        .is_some_and(|v| v.get("frame").is_some() && v.get("recv_ns").is_some());
    if is_recording {
        let frames = read_frames(BufReader::new(text.as_bytes()))
            .map(|f| f.map(|f| f.frame))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading recording {}", path.display()))?;
        return Ok(frames);
    }
    if trimmed.starts_with('{') {
        return Ok(vec![text]);
    }
    bail!(
        "{} is neither a recording (JSON lines with recv_ns/conn/frame) nor a JSON fixture",
        path.display()
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let frames = load_frames(&args.input)?;
    let bytes: usize = frames.iter().map(String::len).sum();

    let mut ids = AssetInterner::new();
    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    let mut ctx = CheckContext::new(args.check);
    let mut books: Vec<OrderBook> = Vec::new();
    let mut markets: Vec<String> = Vec::new();
    let mut t = Tally::default();

    let started = Instant::now();
    for frame in &frames {
        out.clear();
        let (kind, stats) = decoder.decode(frame.as_bytes(), 0, &mut ids, &mut out);
        t.frames += 1;
        t.pongs += u64::from(kind == FrameKind::Pong);
        t.messages += u64::from(stats.messages);
        t.unknown += u64::from(stats.unknown);
        t.failed += u64::from(stats.failed);
        t.records += out.records.len() as u64;
        if ids.len() > books.len() {
            // New assets: the market comes from the frame (books name it; price_change too).
            let market = frame_market(frame);
            while books.len() < ids.len() {
                let name = ids.name(AssetId(books.len() as u32)).unwrap_or_default();
                let mut meta = BookMeta::new(name, &market);
                meta.neg_risk = args.neg_risk;
                books.push(OrderBook::new(meta));
                markets.push(market.clone());
            }
        }
        for failure in &out.failures {
            for asset in &failure.assets {
                books[asset.index()].mark_untrusted(polypy::orderbook::UntrustReason::DataLoss);
            }
        }
        for rec in &out.records {
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
    println!("input            {}", args.input.display());
    println!(
        "frames           {} ({} PONG), {} bytes",
        t.frames, t.pongs, bytes
    );
    println!(
        "messages         {} ({} unknown skipped, {} failed)",
        t.messages, t.unknown, t.failed
    );
    println!("records          {}", t.records);
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

/// The `market` field of a frame's first message, for new books' metadata.
fn frame_market(frame: &str) -> String {
    serde_json::from_str::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| {
            let m = if v.is_array() { v.get(0).cloned()? } else { v };
            m.get("market")?.as_str().map(str::to_string)
        })
        .unwrap_or_default()
}
