//! THREAD `recorder`: the engine's recording file, fed over a bounded channel.
//!
//! The event loop hands each frame it reads ([`RecorderTx::frame`]) and each asset it
//! registers or refreshes ([`RecorderTx::market`]) to this thread with `try_send`: it never
//! waits. When the channel is full (a slow disk), the item is dropped and counted in
//! [`RecorderStats::dropped`]; nothing else slows down. The thread owns the file: it writes
//! market lines only for new or changed metadata, compresses with zstd when the path ends in
//! `.zst`, rotates by age or size ([`Rotate`]) and starts every rotated file with the market
//! lines of every asset seen so far (each file replays on its own). It flushes when idle for
//! a second and when every sender is gone.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};

use super::{MarketMeta, RecordingWriter};

/// When to start a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    /// After this long.
    Every(Duration),
    /// Once the file holds this many bytes (for `.zst` the compressed bytes, give or take the
    /// block zstd is still filling, ≤ 128 KB).
    Bytes(u64),
}

/// Errors parsing a rotation setting.
#[derive(Debug, thiserror::Error)]
#[error("expected a duration (30s, 15m, 1h) or a size (512MB, 2GB, 100KB), got {0:?}")]
pub struct RotateParseError(String);

impl std::str::FromStr for Rotate {
    type Err = RotateParseError;

    /// `1h`, `30m`, `45s`, `1d`, `512MB`, `2GB`, `100KB`, `4096B` (decimal units).
    fn from_str(s: &str) -> Result<Rotate, RotateParseError> {
        let err = || RotateParseError(s.to_string());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (n, unit) = t.split_at(split);
        let n: u64 = n.parse().map_err(|_| err())?;
        if n == 0 {
            return Err(err());
        }
        let secs = |k: u64| Ok(Rotate::Every(Duration::from_secs(n.saturating_mul(k))));
        let bytes = |k: u64| Ok(Rotate::Bytes(n.saturating_mul(k)));
        match unit.to_ascii_lowercase().as_str() {
            "s" => secs(1),
            "m" | "min" => secs(60),
            "h" => secs(3_600),
            "d" => secs(86_400),
            "b" => bytes(1),
            "kb" => bytes(1_000),
            "mb" => bytes(1_000_000),
            "gb" => bytes(1_000_000_000),
            _ => Err(err()),
        }
    }
}

/// Recorder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The first file; rotated files are numbered ([`rotated_path`]). `.zst` = compressed.
    pub path: PathBuf,
    /// Rotation, if any.
    pub rotate: Option<Rotate>,
    /// Channel capacity (items). 65,536 by default.
    pub capacity: usize,
}

impl RecorderConfig {
    /// A recorder writing `path`, no rotation.
    pub fn new(path: impl Into<PathBuf>) -> RecorderConfig {
        RecorderConfig {
            path: path.into(),
            rotate: None,
            capacity: 65_536,
        }
    }
}

/// Counters (single writer each: drops by the event loop, the rest by the recorder).
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Frame lines written.
    pub frames: AtomicU64,
    /// Market lines written.
    pub market_lines: AtomicU64,
    /// Items dropped because the channel was full (or the recorder had stopped).
    pub dropped: AtomicU64,
    /// Bytes written before compression, over all files.
    pub bytes: AtomicU64,
    /// Files opened (1 + rotations).
    pub files: AtomicU64,
    /// Write errors (the recorder stops writing after the first one).
    pub errors: AtomicU64,
}

/// What the event loop sends.
#[derive(Debug)]
pub enum RecordItem {
    /// A frame read on a connection (`recv_ns`: wall clock, ns since the epoch).
    Frame {
        /// Receive time.
        recv_ns: u64,
        /// Connection id.
        conn: u32,
        /// Frame text.
        text: String,
    },
    /// An asset's metadata (registered, or refreshed by discovery).
    Market(Box<MarketMeta>),
    /// Frames may be missing here (`conn` `None`: on every connection).
    Gap {
        /// When.
        recv_ns: u64,
        /// The connection.
        conn: Option<u32>,
        /// Why.
        reason: &'static str,
    },
}

/// The sending side, held by the event loop. Never blocks.
#[derive(Debug, Clone)]
pub struct RecorderTx {
    tx: Sender<RecordItem>,
    stats: Arc<RecorderStats>,
    /// Something was dropped since the last line that got through: a gap line goes first.
    /// Written by the sending thread only.
    dropped_since: Arc<AtomicBool>,
}

/// Wall-clock ns since the Unix epoch.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl RecorderTx {
    /// Queues a frame (copies the text); a full channel drops it and counts it.
    pub fn frame(&self, conn: u32, text: &str) {
        self.send(RecordItem::Frame {
            recv_ns: wall_ns(),
            conn,
            text: text.to_string(),
        });
    }

    /// Queues an asset's metadata; the recorder writes it if it is new or changed.
    pub fn market(&self, meta: MarketMeta) {
        self.send(RecordItem::Market(Box::new(meta)));
    }

    /// Queues a gap line: frames of `conn` may be missing from here on (the connection was
    /// lost), so a replay distrusts its books until their next snapshot.
    pub fn gap(&self, conn: u32, reason: &'static str) {
        self.send(RecordItem::Gap {
            recv_ns: wall_ns(),
            conn: Some(conn),
            reason,
        });
    }

    fn send(&self, item: RecordItem) {
        if self.dropped_since.load(Ordering::Relaxed) {
            let gap = RecordItem::Gap {
                recv_ns: wall_ns(),
                conn: None,
                reason: "recorder_dropped",
            };
            if self.tx.try_send(gap).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.dropped_since.store(false, Ordering::Relaxed);
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(item) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_since.store(true, Ordering::Relaxed);
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }
}

/// File `n` of a rotated recording: `n = 0` is `path` itself; later files insert `.n` before
/// the first dot of the file name (`rec.jsonl.zst` → `rec.1.jsonl.zst`, `rec` → `rec.1`).
pub fn rotated_path(path: &Path, n: u64) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new = match name.find('.').filter(|&i| i > 0) {
        Some(i) => format!("{}.{n}{}", &name[..i], &name[i..]),
        None => format!("{name}.{n}"),
    };
    path.with_file_name(new)
}

/// Counts bytes that reach the file.
#[derive(Debug)]
struct Counting {
    file: File,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The open file, plain or compressed.
enum Sink {
    Plain(BufWriter<Counting>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<Counting>>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Plain(_) => "Sink::Plain",
            Sink::Zstd(_) => "Sink::Zstd",
        })
    }
}

impl Sink {
    fn open(path: &Path, compress: bool) -> io::Result<Sink> {
        let out = BufWriter::with_capacity(
            1 << 20,
            Counting {
                file: File::create(path)?,
                written: 0,
            },
        );
        Ok(if compress {
            Sink::Zstd(zstd::stream::write::Encoder::new(out, 3)?)
        } else {
            Sink::Plain(out)
        })
    }

    /// Bytes on disk so far (buffered bytes not yet counted).
    fn on_disk(&self) -> u64 {
        match self {
            Sink::Plain(w) => w.get_ref().written + w.buffer().len() as u64,
            Sink::Zstd(e) => e.get_ref().get_ref().written + e.get_ref().buffer().len() as u64,
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Zstd(e) => e.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(e) => e.flush(),
        }
    }
}

/// The recorder thread's state.
#[derive(Debug)]
struct Recorder {
    cfg: RecorderConfig,
    compress: bool,
    out: Option<RecordingWriter<Sink>>,
    opened: Instant,
    file_no: u64,
    markets: HashMap<String, MarketMeta>,
    stats: Arc<RecorderStats>,
}

/// Opens the first file and starts the recorder thread.
///
/// # Errors
/// The file cannot be created, or the thread cannot be spawned.
pub fn start(cfg: RecorderConfig) -> io::Result<(RecorderTx, JoinHandle<()>)> {
    let compress = cfg.path.extension().is_some_and(|e| e == "zst");
    let sink = Sink::open(&cfg.path, compress)?;
    let stats = Arc::new(RecorderStats::default());
    stats.files.store(1, Ordering::Relaxed);
    let (tx, rx) = bounded(cfg.capacity.max(1));
    log::info!(
        "Recording frames: file={} compressed={compress} rotate={:?}",
        cfg.path.display(),
        cfg.rotate
    );
    let mut rec = Recorder {
        cfg,
        compress,
        out: Some(RecordingWriter::new(sink)),
        opened: Instant::now(),
        file_no: 0,
        markets: HashMap::new(),
        stats: Arc::clone(&stats),
    };
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || rec.run(&rx))?;
    Ok((
        RecorderTx {
            tx,
            stats,
            dropped_since: Arc::new(AtomicBool::new(false)),
        },
        handle,
    ))
}

impl Recorder {
    fn run(&mut self, rx: &Receiver<RecordItem>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(item) => {
                    if let Err(e) = self.write(item) {
                        self.fail(&e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(out) = &mut self.out {
                        if let Err(e) = out.flush() {
                            self.fail(&e);
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Err(e) = self.maybe_rotate() {
                self.fail(&e);
            }
        }
        if let Some(out) = self.out.take() {
            if let Err(e) = out.into_inner().finish() {
                self.fail(&e);
            }
        }
    }

    /// Stops writing (the channel keeps draining, so senders never notice).
    fn fail(&mut self, e: &io::Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.out.take().is_some() {
            log::error!(
                "Recording stopped: file={} error={e}",
                rotated_path(&self.cfg.path, self.file_no).display()
            );
        }
    }

    fn write(&mut self, item: RecordItem) -> io::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        match item {
            RecordItem::Frame {
                recv_ns,
                conn,
                text,
            } => {
                let n = out.write_frame(recv_ns, conn, &text)?;
                self.stats.frames.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            RecordItem::Gap {
                recv_ns,
                conn,
                reason,
            } => {
                let n = out.write_gap(recv_ns, conn, reason)?;
                self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            RecordItem::Market(meta) => {
                if self.markets.get(&meta.asset_id) == Some(&*meta) {
                    return Ok(());
                }
                let n = out.write_market(wall_ns(), &meta)?;
                self.stats.market_lines.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                self.markets.insert(meta.asset_id.clone(), *meta);
            }
        }
        Ok(())
    }

    fn maybe_rotate(&mut self) -> io::Result<()> {
        let Some(out) = &self.out else {
            return Ok(());
        };
        let due = match self.cfg.rotate {
            None => false,
            Some(Rotate::Every(d)) => self.opened.elapsed() >= d,
            Some(Rotate::Bytes(b)) => out.get_ref().on_disk() >= b,
        };
        if !due {
            return Ok(());
        }
        if let Some(old) = self.out.take() {
            old.into_inner().finish()?;
        }
        self.file_no += 1;
        let path = rotated_path(&self.cfg.path, self.file_no);
        let mut out = RecordingWriter::new(Sink::open(&path, self.compress)?);
        let now = wall_ns();
        let mut metas: Vec<&MarketMeta> = self.markets.values().collect();
        metas.sort_by(|a, b| (&a.market, &a.asset_id).cmp(&(&b.market, &b.asset_id)));
        for meta in metas {
            let n = out.write_market(now, meta)?;
            self.stats.market_lines.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.out = Some(out);
        self.opened = Instant::now();
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        log::info!("Recording rotated: file={}", path.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Entry, open, read_entries};

    fn meta(token: &str, min: &str) -> MarketMeta {
        MarketMeta {
            asset_id: token.into(),
            market: "0xabc".into(),
            outcome: "Yes".into(),
            tick_size: Some("0.01".into()),
            min_order_size: min.into(),
            neg_risk: false,
            known: true,
            question: "Q?".into(),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("polypy-rec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotation_settings_parse() {
        assert_eq!(
            "1h".parse::<Rotate>().unwrap(),
            Rotate::Every(Duration::from_secs(3600))
        );
        assert_eq!(
            "512MB".parse::<Rotate>().unwrap(),
            Rotate::Bytes(512_000_000)
        );
        assert_eq!(
            "30s".parse::<Rotate>().unwrap(),
            Rotate::Every(Duration::from_secs(30))
        );
        for bad in ["", "h", "0h", "12", "5 parsecs"] {
            assert!(bad.parse::<Rotate>().is_err(), "{bad}");
        }
        let p = Path::new("/x/rec.jsonl.zst");
        assert_eq!(rotated_path(p, 0), p);
        assert_eq!(rotated_path(p, 2), Path::new("/x/rec.2.jsonl.zst"));
        assert_eq!(rotated_path(Path::new("rec"), 1), Path::new("rec.1"));
    }

    /// Writes the same items to `path` (rotating after every line when `rotate`) and reads
    /// every file back: (frames, min order sizes of the market lines, files).
    fn record_and_read(path: &Path, rotate: bool) -> (Vec<String>, Vec<String>, u64) {
        let mut cfg = RecorderConfig::new(path);
        cfg.rotate = rotate.then_some(Rotate::Bytes(1));
        let (tx, handle) = start(cfg).unwrap();
        tx.market(meta("1", "5"));
        tx.market(meta("1", "5")); // unchanged: not written again
        tx.frame(3, "PONG");
        tx.market(meta("1", "15")); // changed
        tx.frame(3, "[{\"event_type\":\"book\"}]");
        let stats = Arc::clone(tx.stats());
        drop(tx);
        handle.join().unwrap();
        assert_eq!(stats.frames.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        let (mut frames, mut metas) = (Vec::new(), Vec::new());
        let files = stats.files.load(Ordering::Relaxed);
        for n in 0..files {
            let p = rotated_path(path, n);
            let entries: Vec<Entry> = read_entries(open(&p).unwrap())
                .map(Result::unwrap)
                .collect();
            if n > 0 {
                assert!(
                    matches!(entries[0], Entry::Market(..)),
                    "file {n} starts with metadata"
                );
            }
            for e in entries {
                match e {
                    Entry::Frame(f) => frames.push(f.frame),
                    Entry::Market(_, m) => metas.push(m.min_order_size),
                    Entry::Gap { .. } => {}
                }
            }
        }
        (frames, metas, files)
    }

    #[test]
    fn compressed_and_rotated_recordings_read_back_with_metadata_in_every_file() {
        let d = dir("rot");
        let want = ["PONG", "[{\"event_type\":\"book\"}]"];
        let zst = d.join("rec.jsonl.zst");
        let (frames, metas, files) = record_and_read(&zst, false);
        assert_eq!((frames, files), (want.map(String::from).to_vec(), 1));
        assert_eq!(metas, ["5", "15"]);
        let mut raw = [0u8; 4];
        std::io::Read::read_exact(&mut File::open(&zst).unwrap(), &mut raw).unwrap();
        assert_eq!(raw, [0x28, 0xB5, 0x2F, 0xFD], "zstd magic");

        let (frames, metas, files) = record_and_read(&d.join("rec.jsonl"), true);
        assert_eq!(frames, want);
        assert!(files >= 3, "{files} files");
        assert_eq!(metas.first().map(String::as_str), Some("5"));
        assert_eq!(metas.last().map(String::as_str), Some("15"));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = bounded(2);
        let stats = Arc::new(RecorderStats::default());
        let tx = RecorderTx {
            tx,
            stats: Arc::clone(&stats),
            dropped_since: Arc::new(AtomicBool::new(false)),
        };
        tx.frame(0, "a");
        tx.frame(0, "b");
        tx.frame(0, "c"); // nobody reads: dropped, counted, returns at once
        tx.market(meta("1", "5")); // its gap line does not fit either
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.try_iter().count(), 2);
        // Once there is room, a gap line goes ahead of the next line, once.
        tx.frame(0, "d");
        assert!(matches!(
            rx.try_recv(),
            Ok(RecordItem::Gap { conn: None, .. })
        ));
        assert!(matches!(rx.try_recv(), Ok(RecordItem::Frame { .. })));
        tx.frame(0, "e");
        assert!(matches!(rx.try_recv(), Ok(RecordItem::Frame { .. })));
        assert!(rx.try_recv().is_err());
    }
}
