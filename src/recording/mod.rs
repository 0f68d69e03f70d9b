//! The recording format: raw frames, one per line, plus market-metadata lines.
//!
//! JSON Lines (see `docs/recording-format.md`):
//! - a **frame line** `{"recv_ns":<u64>,"conn":<u32>,"frame":"<the text frame>"}`: `recv_ns`
//!   is nanoseconds since the Unix epoch when the frame was read, `conn` the engine's
//!   connection id (the sim: the subscriber's connection number), `frame` the exact text the
//!   venue sent, escaped as a JSON string (frames with line breaks, garbage or non-JSON text
//!   survive byte for byte);
//! - a **market line** `{"recv_ns":<u64>,"meta":{…}}` ([`MarketMeta`]): what the books need
//!   that no frame carries (`min_order_size`, `neg_risk`: the hash commits to both), written
//!   when recording starts and whenever a market is added or changes;
//! - a **gap line** `{"recv_ns":<u64>,"conn":<u32>,"gap":"<reason>"}`: frames may be missing
//!   here (the connection was lost, or, without `conn`, the recorder dropped lines), so the
//!   books concerned cannot be trusted until their next snapshot.
//!
//! Files whose name ends in `.zst` are zstd-compressed; [`open`] reads either kind (it looks
//! at the magic number, not the name). Recordings without market lines (the first format)
//! read the same way.
//!
//! Writing: [`RecordingWriter`] (any `Write`); the engine's recorder thread, its bounded
//! channel, rotation and compression are in [`recorder`]. Reading ([`read_entries`],
//! [`read_frames`]) is for the replay tool, tests and benches.

pub mod recorder;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFrame {
    /// Receive time, ns since the Unix epoch.
    pub recv_ns: u64,
    /// Connection id.
    pub conn: u32,
    /// The frame text.
    pub frame: String,
}

/// One token's market metadata, as a market line carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketMeta {
    /// Token id.
    pub asset_id: String,
    /// Condition id (`0x…`).
    pub market: String,
    /// Outcome name ("Yes").
    #[serde(default)]
    pub outcome: String,
    /// Tick size as decimal text ("0.01"), when known.
    #[serde(default)]
    pub tick_size: Option<String>,
    /// Minimum order size as decimal text ("5").
    pub min_order_size: String,
    /// Negative-risk market.
    pub neg_risk: bool,
    /// `min_order_size` and `neg_risk` are known (Gamma); `false` = defaults to be inferred
    /// from the first hash (a `new_market` notice carries neither).
    #[serde(default = "yes")]
    pub known: bool,
    /// Market question.
    #[serde(default)]
    pub question: String,
}

fn yes() -> bool {
    true
}

impl MarketMeta {
    /// The line's metadata for `asset_id` as a book's [`BookMeta`](crate::orderbook::BookMeta)
    /// (`None` when `min_order_size` is not a decimal).
    pub fn book_meta(&self) -> Option<crate::orderbook::BookMeta> {
        Some(crate::orderbook::BookMeta {
            asset_id: self.asset_id.as_str().into(),
            market: self.market.as_str().into(),
            min_order_size: crate::market::Size::parse(self.min_order_size.as_bytes()).ok()?,
            neg_risk: self.neg_risk,
            known: self.known,
        })
    }

    /// The metadata of a registered asset.
    pub fn of(info: &crate::registry::AssetInfo) -> MarketMeta {
        MarketMeta {
            asset_id: info.token.clone(),
            market: info.condition.clone(),
            outcome: info.outcome.clone(),
            tick_size: info.tick_size.map(crate::market::Price::to_text),
            min_order_size: info.min_order_size.to_text(),
            neg_risk: info.neg_risk,
            known: info.meta_known,
            question: info.question.clone(),
        }
    }
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A frame line.
    Frame(RecordedFrame),
    /// A market line (with its `recv_ns`).
    Market(u64, MarketMeta),
    /// A gap line: frames of `conn` (every connection when `None`) may be missing here.
    Gap {
        /// When, ns since the epoch.
        recv_ns: u64,
        /// The connection, or `None` for all.
        conn: Option<u32>,
        /// Why (`connection_lost`, `recorder_dropped`).
        reason: String,
    },
}

/// Either kind of line, as parsed.
#[derive(Deserialize)]
struct RawLine {
    recv_ns: u64,
    #[serde(default)]
    conn: Option<u32>,
    #[serde(default)]
    frame: Option<String>,
    #[serde(default)]
    meta: Option<MarketMeta>,
    #[serde(default)]
    gap: Option<String>,
}

/// Errors reading a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The file could not be read (or decompressed); check the path.
    #[error("reading recording: {0}")]
    Io(#[from] io::Error),
    /// A line is neither a frame nor a market line; the recording is damaged at that line.
    #[error("line {line}: not a recording line: {source}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// Parse failure.
        source: serde_json::Error,
    },
    /// A line parses but has none of `frame`, `meta`, `gap`.
    #[error("line {line}: not a frame, market or gap line")]
    Empty {
        /// 1-based line number.
        line: usize,
    },
}

/// Appends lines to a writer.
#[derive(Debug)]
pub struct RecordingWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> RecordingWriter<W> {
    /// Wraps a writer (give it a `BufWriter`).
    pub fn new(out: W) -> Self {
        RecordingWriter {
            out,
            line: Vec::with_capacity(4096),
        }
    }

    /// Writes one frame line; returns its length in bytes.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub fn write_frame(&mut self, recv_ns: u64, conn: u32, frame: &str) -> io::Result<usize> {
        self.line.clear();
        self.line.extend_from_slice(b"{\"recv_ns\":");
        crate::market::price::write_u64(&mut self.line, recv_ns);
        self.line.extend_from_slice(b",\"conn\":");
        crate::market::price::write_u64(&mut self.line, u64::from(conn));
        self.line.extend_from_slice(b",\"frame\":");
        serde_json::to_writer(&mut self.line, frame).map_err(io::Error::other)?;
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        Ok(self.line.len())
    }

    /// Writes one market line; returns its length in bytes.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub fn write_market(&mut self, recv_ns: u64, meta: &MarketMeta) -> io::Result<usize> {
        self.line.clear();
        self.line.extend_from_slice(b"{\"recv_ns\":");
        crate::market::price::write_u64(&mut self.line, recv_ns);
        self.line.extend_from_slice(b",\"meta\":");
        serde_json::to_writer(&mut self.line, meta).map_err(io::Error::other)?;
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        Ok(self.line.len())
    }

    /// Writes one gap line (`conn` `None` = every connection); returns its length in bytes.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub fn write_gap(
        &mut self,
        recv_ns: u64,
        conn: Option<u32>,
        reason: &str,
    ) -> io::Result<usize> {
        self.line.clear();
        self.line.extend_from_slice(b"{\"recv_ns\":");
        crate::market::price::write_u64(&mut self.line, recv_ns);
        if let Some(c) = conn {
            self.line.extend_from_slice(b",\"conn\":");
            crate::market::price::write_u64(&mut self.line, u64::from(c));
        }
        self.line.extend_from_slice(b",\"gap\":");
        serde_json::to_writer(&mut self.line, reason).map_err(io::Error::other)?;
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        Ok(self.line.len())
    }

    /// Flushes the writer.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer, unflushed.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The zstd frame magic number (little endian `0xFD2FB528`).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Opens a recording for reading, decompressing it when it is zstd (by its first bytes).
///
/// # Errors
/// The file cannot be opened or read.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let head = file.fill_buf()?;
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        let decoder = zstd::stream::read::Decoder::with_buffer(file)?;
        return Ok(Box::new(BufReader::with_capacity(1 << 20, decoder)));
    }
    Ok(Box::new(file))
}

/// Reads every line back (frames and market lines); blank lines are skipped.
pub fn read_entries<R: BufRead>(input: R) -> impl Iterator<Item = Result<Entry, RecordingError>> {
    input
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map(|s| !s.trim().is_empty()).unwrap_or(true))
        .map(|(i, line)| {
            let line = line?;
            let raw: RawLine =
                serde_json::from_str(&line).map_err(|source| RecordingError::Line {
                    line: i + 1,
                    source,
                })?;
            match (raw.frame, raw.meta, raw.gap) {
                (Some(frame), _, _) => Ok(Entry::Frame(RecordedFrame {
                    recv_ns: raw.recv_ns,
                    conn: raw.conn.unwrap_or(0),
                    frame,
                })),
                (None, Some(meta), _) => Ok(Entry::Market(raw.recv_ns, meta)),
                (None, None, Some(reason)) => Ok(Entry::Gap {
                    recv_ns: raw.recv_ns,
                    conn: raw.conn,
                    reason,
                }),
                (None, None, None) => Err(RecordingError::Empty { line: i + 1 }),
            }
        })
}

/// Reads the frames back, one per line, skipping market lines and blank lines.
pub fn read_frames<R: BufRead>(
    input: R,
) -> impl Iterator<Item = Result<RecordedFrame, RecordingError>> {
    read_entries(input).filter_map(|e| match e {
        Ok(Entry::Frame(f)) => Some(Ok(f)),
        Ok(Entry::Market(..) | Entry::Gap { .. }) => None,
        Err(e) => Some(Err(e)),
    })
}

/// Reads everything from `input` (any `Read`, e.g. an already open file).
pub fn read_all<R: Read>(input: R) -> Result<Vec<Entry>, RecordingError> {
    read_entries(BufReader::new(input)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MarketMeta {
        MarketMeta {
            asset_id: "123".into(),
            market: "0xabc".into(),
            outcome: "Yes".into(),
            tick_size: Some("0.01".into()),
            min_order_size: "15".into(),
            neg_risk: true,
            known: true,
            question: "Will \"it\"\nhappen?".into(),
        }
    }

    #[test]
    fn round_trips_awkward_frames_and_market_lines() {
        let frames = [
            "PONG",
            "[{\"a\":\"b\"}]",
            "line\nbreak \"quoted\" \\ \u{1}",
            "",
        ];
        let mut w = RecordingWriter::new(Vec::new());
        w.write_market(999, &meta()).unwrap();
        w.write_gap(998, Some(4), "connection_lost").unwrap();
        w.write_gap(997, None, "recorder_dropped").unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write_frame(1_000 + i as u64, 7, f).unwrap();
        }
        let bytes = w.out;
        assert_eq!(
            bytes.iter().filter(|b| **b == b'\n').count(),
            frames.len() + 3
        );
        let back: Vec<RecordedFrame> = read_frames(&bytes[..]).map(Result::unwrap).collect();
        assert_eq!(back.len(), frames.len());
        for (i, f) in back.iter().enumerate() {
            assert_eq!(f.frame, frames[i]);
            assert_eq!(f.recv_ns, 1_000 + i as u64);
            assert_eq!(f.conn, 7);
        }
        let entries = read_all(&bytes[..]).unwrap();
        assert_eq!(entries[0], Entry::Market(999, meta()));
        assert_eq!(
            entries[1],
            Entry::Gap {
                recv_ns: 998,
                conn: Some(4),
                reason: "connection_lost".into()
            }
        );
        assert!(matches!(&entries[2], Entry::Gap { conn: None, .. }));
        let m = meta().book_meta().unwrap();
        assert_eq!(m.min_order_size.to_text(), "15");
        assert!(m.neg_risk && m.known);
    }

    #[test]
    fn first_format_lines_still_read_and_damage_is_located() {
        let text = "{\"recv_ns\":1,\"conn\":2,\"frame\":\"PONG\"}\n\n{\"recv_ns\":3}\nnot json\n";
        let all: Vec<_> = read_entries(text.as_bytes()).collect();
        assert!(matches!(&all[0], Ok(Entry::Frame(f)) if f.frame == "PONG" && f.conn == 2));
        assert!(matches!(all[1], Err(RecordingError::Empty { line: 3 })));
        assert!(matches!(all[2], Err(RecordingError::Line { line: 4, .. })));
    }
}
