//! `polypy --replay`: the engine served from a recording instead of the venue.
//!
//! Design (see `docs/recording-format.md`, "Serving a recording"): a **feeder** thread
//! (`replay`) reads the recording (plain or zstd, several files in order) and hands the event
//! loop, over a bounded channel plus the loop's waker, what a venue connection would have
//! produced: each frame with the connection id it was recorded on, and before it the
//! registrations and ownership the engine had at that point. The event loop
//! (`event_loop/replay.rs`) runs every frame through the same `Core::on_frame` as live frames
//! (decoder, owner check, router, workers, hash checks, HTTP), so books are built exactly as
//! they were live. No socket is opened: every asset is registered as subscribed to the
//! connection it was recorded on.
//!
//! - Registration: market lines become [`AssetInfo`]s with their metadata; assets a bare
//!   recording names without a market line are registered at their first frame with unknown
//!   metadata (the book infers it from its first hash), as are `new_market` tokens.
//! - Ownership: an asset belongs to the connection that sent its latest snapshot (the engine's
//!   rule, recycles included), so records the live owner check dropped are dropped again.
//! - Gaps: a gap line (a lost connection, recorder drops) marks the books concerned
//!   untrusted until their next recorded snapshot, as the live engine did.
//! - Exactness: the loop takes frames only while every worker ring has room for them, and the
//!   bounded channel makes the feeder wait, so `max` speed never drops a record.
//! - Pace: `--replay-speed 1` sleeps to the recorded receive times, `N` N× faster, `max` not
//!   at all; `--replay-loop` starts over at the end.
//!
//! THREAD `replay` (this module): owns the files, its own decoder and interner (to see which
//! assets a frame names and which it snapshots). Progress is single-writer atomics
//! ([`ReplayProgress`]) read by HTTP and the progress line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use mio::Waker;

use crate::market::{AssetId, AssetInterner, Event, Price, Size};
use crate::recording::{Entry, MarketMeta, read_entries};
use crate::registry::{AssetInfo, ConnId};
use crate::venue::{DecodeOutput, Decoder, Notice};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplaySpeed {
    /// At the recorded pace times this factor (1 = recorded pace).
    Factor(f64),
    /// As fast as the engine takes it.
    Max,
}

/// Errors parsing a speed.
#[derive(Debug, thiserror::Error)]
#[error("expected 1, a factor such as 10 or 0.5, or max; got {0:?}")]
pub struct SpeedParseError(String);

impl std::str::FromStr for ReplaySpeed {
    type Err = SpeedParseError;
    fn from_str(s: &str) -> Result<ReplaySpeed, SpeedParseError> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(ReplaySpeed::Max);
        }
        match s.trim_end_matches(['x', 'X']).parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(ReplaySpeed::Factor(f)),
            _ => Err(SpeedParseError(s.to_string())),
        }
    }
}

/// What to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Recording files, replayed in order as one recording.
    pub files: Vec<PathBuf>,
    /// Pace.
    pub speed: ReplaySpeed,
    /// Start over at the end.
    pub looped: bool,
}

/// Replay progress (each field has one writer: the feeder or the event loop).
#[derive(Debug, Default)]
pub struct ReplayProgress {
    /// Frames the event loop has processed (event loop).
    pub frames: AtomicU64,
    /// Frame bytes processed (event loop).
    pub bytes: AtomicU64,
    /// Recorded receive time of the last processed frame, ns since the epoch (event loop).
    pub position_ns: AtomicU64,
    /// Recorded receive time of the first frame (feeder).
    pub first_ns: AtomicU64,
    /// Frames read from the files so far in this pass (feeder).
    pub read: AtomicU64,
    /// Passes completed (event loop).
    pub passes: AtomicU64,
    /// Every pass is over and processed (event loop).
    pub done: AtomicBool,
    /// The recording could not be read (feeder; the reason is logged).
    pub failed: AtomicBool,
}

impl ReplayProgress {
    /// `/stats` and `/health` `replay` object.
    pub fn to_json(&self, cfg: &ReplayConfig) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (first, pos) = (n(&self.first_ns), n(&self.position_ns));
        let position = jiff::Timestamp::from_nanosecond(i128::from(pos))
            .map(|t| t.to_string())
            .ok()
            .filter(|_| pos > 0);
        serde_json::json!({
            "files": cfg.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "speed": match cfg.speed {
                ReplaySpeed::Max => "max".to_string(),
                ReplaySpeed::Factor(f) => f.to_string(),
            },
            "loop": cfg.looped,
            "frames": n(&self.frames),
            "bytes": n(&self.bytes),
            "position": position,
            "position_ns": pos,
            "recorded_seconds_replayed": pos.saturating_sub(first) as f64 / 1e9,
            "passes": n(&self.passes),
            "done": self.done.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// One step for the event loop, in recording order.
#[derive(Debug)]
pub enum ReplayItem {
    /// Register (or refresh) these assets as subscribed on `conn`.
    Assets {
        /// The connection they are recorded on.
        conn: ConnId,
        /// What to register.
        infos: Vec<AssetInfo>,
    },
    /// This token now belongs to `conn` (its snapshot arrives there).
    Own {
        /// Token id.
        token: String,
        /// The owner.
        conn: ConnId,
    },
    /// A frame as recorded.
    Frame {
        /// Connection id.
        conn: ConnId,
        /// Recorded receive time, ns since the epoch.
        recv_ns: u64,
        /// Frame text.
        text: String,
    },
    /// Frames of `conn` (every connection when `None`) may be missing here: its books are
    /// untrusted until their next snapshot.
    Gap {
        /// The connection.
        conn: Option<ConnId>,
    },
    /// A pass over the recording ended (`last`: no more follow).
    PassEnd {
        /// Nothing follows.
        last: bool,
    },
}

/// A connection id no recorded frame uses: the owner of assets a market line registers
/// before any frame names them.
pub const NO_CONN: ConnId = u32::MAX - 1;

/// Items per channel message.
const BATCH: usize = 256;

/// Starts the feeder thread.
///
/// # Errors
/// The thread cannot be spawned.
pub fn spawn(
    cfg: ReplayConfig,
    tx: Sender<Vec<ReplayItem>>,
    waker: Arc<Waker>,
    progress: Arc<ReplayProgress>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let mut f = Feeder {
                tx,
                waker,
                progress,
                stop,
                batch: Vec::with_capacity(BATCH),
                ids: AssetInterner::new(),
                decoder: Decoder::new(),
                out: DecodeOutput::default(),
                owners: Vec::new(),
                registered: HashMap::new(),
            };
            f.run(&cfg);
        })
}

struct Feeder {
    tx: Sender<Vec<ReplayItem>>,
    waker: Arc<Waker>,
    progress: Arc<ReplayProgress>,
    stop: Arc<AtomicBool>,
    batch: Vec<ReplayItem>,
    ids: AssetInterner,
    decoder: Decoder,
    out: DecodeOutput,
    /// Owner connection per feeder asset id.
    owners: Vec<Option<ConnId>>,
    /// Tokens registered so far, with their metadata.
    registered: HashMap<String, AssetInfo>,
}

fn info_of(m: &MarketMeta) -> Option<AssetInfo> {
    Some(AssetInfo {
        token: m.asset_id.clone(),
        condition: m.market.clone(),
        outcome: m.outcome.clone(),
        question: m.question.clone(),
        end_ms: None,
        tick_size: m
            .tick_size
            .as_deref()
            .and_then(|t| Price::parse(t.as_bytes()).ok()),
        min_order_size: Size::parse(m.min_order_size.as_bytes()).ok()?,
        neg_risk: m.neg_risk,
        meta_known: m.known,
    })
}

fn unknown_info(token: &str, market: &str) -> AssetInfo {
    AssetInfo {
        token: token.to_string(),
        condition: market.to_string(),
        outcome: String::new(),
        question: String::new(),
        end_ms: None,
        tick_size: None,
        min_order_size: Size::from_raw(5 * crate::market::price::SCALE),
        neg_risk: false,
        meta_known: false,
    }
}

impl Feeder {
    fn run(&mut self, cfg: &ReplayConfig) {
        let mut first = true;
        loop {
            let ok = self.pass(cfg, &mut first);
            let last = !ok || !cfg.looped || self.stop.load(Ordering::Relaxed);
            self.batch.push(ReplayItem::PassEnd { last });
            if !self.send_batch() || last {
                return;
            }
            self.progress.read.store(0, Ordering::Relaxed);
        }
    }

    /// One pass; false when reading failed or the engine stopped.
    fn pass(&mut self, cfg: &ReplayConfig, first: &mut bool) -> bool {
        let started = Instant::now();
        let mut base_ns: Option<u64> = None;
        for path in &cfg.files {
            let input = match crate::recording::open(path) {
                Ok(i) => i,
                Err(e) => {
                    log::error!("Replay: cannot open {}: {e}", path.display());
                    self.progress.failed.store(true, Ordering::Relaxed);
                    return false;
                }
            };
            for entry in read_entries(input) {
                if self.stop.load(Ordering::Relaxed) {
                    return false;
                }
                match entry {
                    Ok(Entry::Market(_, m)) => self.market(&m),
                    Ok(Entry::Gap { conn, .. }) => self.batch.push(ReplayItem::Gap { conn }),
                    Ok(Entry::Frame(f)) => {
                        if *first {
                            self.progress.first_ns.store(f.recv_ns, Ordering::Relaxed);
                            *first = false;
                        }
                        if let ReplaySpeed::Factor(k) = cfg.speed {
                            let base = *base_ns.get_or_insert(f.recv_ns);
                            let due = started
                                + Duration::from_secs_f64(
                                    f.recv_ns.saturating_sub(base) as f64 / 1e9 / k,
                                );
                            if !self.wait_until(due) {
                                return false;
                            }
                        }
                        self.frame(f.conn, f.recv_ns, f.frame);
                        self.progress.read.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        log::error!("Replay: {}: {e}", path.display());
                        self.progress.failed.store(true, Ordering::Relaxed);
                        return false;
                    }
                }
                if self.batch.len() >= BATCH && !self.send_batch() {
                    return false;
                }
            }
        }
        true
    }

    /// Sends what is batched, then sleeps until `due` (in slices, watching `stop`).
    fn wait_until(&mut self, due: Instant) -> bool {
        if Instant::now() >= due {
            return true;
        }
        if !self.send_batch() {
            return false;
        }
        loop {
            let now = Instant::now();
            if now >= due {
                return true;
            }
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(100)));
        }
    }

    fn market(&mut self, m: &MarketMeta) {
        let Some(info) = info_of(m) else {
            log::warn!(
                "Replay: market line for {} has a bad min_order_size",
                m.asset_id
            );
            return;
        };
        if self
            .registered
            .get(&info.token)
            .is_some_and(|r| same(r, &info))
        {
            return;
        }
        let conn = self
            .ids
            .get(&info.token)
            .and_then(|id| self.owners.get(id.index()).copied().flatten())
            .unwrap_or(NO_CONN);
        self.registered.insert(info.token.clone(), info.clone());
        self.batch.push(ReplayItem::Assets {
            conn,
            infos: vec![info],
        });
    }

    fn frame(&mut self, conn: ConnId, recv_ns: u64, text: String) {
        self.out.clear();
        let before = self.ids.len();
        self.decoder
            .decode(text.as_bytes(), 0, &mut self.ids, &mut self.out);
        if self.ids.len() > before || !self.out.notices.is_empty() {
            self.register_new(conn, &text, before);
        }
        self.owners.resize(self.ids.len(), None);
        for rec in &self.out.records {
            let owner = &mut self.owners[rec.asset.index()];
            let snapshot = matches!(rec.event, Event::BookBegin { .. });
            if owner.is_none() || (snapshot && *owner != Some(conn)) {
                *owner = Some(conn);
                if let Some(token) = self.ids.name(rec.asset) {
                    self.batch.push(ReplayItem::Own {
                        token: token.to_string(),
                        conn,
                    });
                }
            }
        }
        self.batch.push(ReplayItem::Frame {
            conn,
            recv_ns,
            text,
        });
    }

    /// Registers assets this frame names for the first time (and `new_market` tokens) that
    /// no market line registered. Cold: parses the frame as JSON.
    #[cold]
    fn register_new(&mut self, conn: ConnId, text: &str, first_new: usize) {
        let markets = frame_markets(text);
        let mut infos = Vec::new();
        for i in first_new..self.ids.len() {
            let Some(token) = self.ids.name(AssetId(i as u32)) else {
                continue;
            };
            if !self.registered.contains_key(token) {
                let market = markets.get(token).map_or("", String::as_str);
                infos.push(unknown_info(token, market));
            }
        }
        for n in &self.out.notices {
            if let Notice::NewMarket {
                market,
                question,
                assets_ids,
                outcomes,
                tick_size,
                ..
            } = n
            {
                for (i, token) in assets_ids.iter().enumerate() {
                    if self.registered.contains_key(token)
                        || infos.iter().any(|x| &x.token == token)
                    {
                        continue;
                    }
                    let mut info = unknown_info(token, market);
                    info.question.clone_from(question);
                    info.outcome = outcomes.get(i).cloned().unwrap_or_default();
                    info.tick_size = *tick_size;
                    infos.push(info);
                }
            }
        }
        if infos.is_empty() {
            return;
        }
        for info in &infos {
            self.registered.insert(info.token.clone(), info.clone());
        }
        self.batch.push(ReplayItem::Assets { conn, infos });
    }

    /// Hands the batch to the event loop, waiting while its channel is full.
    fn send_batch(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let mut batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        loop {
            match self.tx.send_timeout(batch, Duration::from_millis(100)) {
                Ok(()) => {
                    let _ = self.waker.wake();
                    return true;
                }
                Err(SendTimeoutError::Timeout(b)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    let _ = self.waker.wake();
                    batch = b;
                }
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }
}

fn same(a: &AssetInfo, b: &AssetInfo) -> bool {
    (
        &a.condition,
        &a.outcome,
        &a.question,
        a.tick_size,
        a.min_order_size,
        a.neg_risk,
        a.meta_known,
    ) == (
        &b.condition,
        &b.outcome,
        &b.question,
        b.tick_size,
        b.min_order_size,
        b.neg_risk,
        b.meta_known,
    )
}

/// Each asset's market (condition id) as the frame's messages name it: `asset_id` beside
/// `market` in every message and in every `price_changes` entry.
pub fn frame_markets(frame: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(frame) else {
        return map;
    };
    let msgs = match v {
        serde_json::Value::Array(a) => a,
        v => vec![v],
    };
    for m in &msgs {
        let Some(market) = m.get("market").and_then(|x| x.as_str()) else {
            continue;
        };
        let entries = m.get("price_changes").and_then(|x| x.as_array());
        let assets = std::iter::once(m)
            .chain(entries.into_iter().flatten())
            .filter_map(|e| e.get("asset_id").and_then(|x| x.as_str()));
        for asset in assets {
            map.entry(asset.to_string())
                .or_insert_with(|| market.to_string());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<ReplaySpeed>().unwrap(), ReplaySpeed::Max);
        assert_eq!(
            "1".parse::<ReplaySpeed>().unwrap(),
            ReplaySpeed::Factor(1.0)
        );
        assert_eq!(
            "10x".parse::<ReplaySpeed>().unwrap(),
            ReplaySpeed::Factor(10.0)
        );
        for bad in ["0", "-1", "fast", "inf", ""] {
            assert!(bad.parse::<ReplaySpeed>().is_err(), "{bad}");
        }
    }

    #[test]
    fn frame_markets_names_every_asset() {
        let f = r#"[{"market":"0xa","asset_id":"1","event_type":"book"},
                    {"market":"0xb","event_type":"price_change","price_changes":[{"asset_id":"2"},{"asset_id":"3"}]}]"#;
        let m = frame_markets(f);
        assert_eq!(m["1"], "0xa");
        assert_eq!(m["2"], "0xb");
        assert_eq!(m["3"], "0xb");
        assert!(frame_markets("PONG").is_empty());
    }
}
