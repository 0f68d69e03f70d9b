//! The recording format: one raw frame per line, with its receive time and connection.
//!
//! Each line is a JSON object `{"recv_ns":<u64>,"conn":<u32>,"frame":"<the text frame>"}`
//! (JSON Lines). `recv_ns` is nanoseconds since the Unix epoch when the frame was read;
//! `conn` is the engine's connection id (the sim uses the subscriber's connection number).
//! The frame is the exact text the venue sent, escaped as a JSON string, so frames that span
//! lines, contain garbage or are not JSON at all survive byte for byte. See
//! `docs/recording-format.md`.
//!
//! Writing happens off the hot path (the recorder owns a buffered file); reading is for the
//! replay tool, tests and benches.

use std::io::{self, BufRead, Write};

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

/// Errors reading a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The file could not be read; check the path.
    #[error("reading recording: {0}")]
    Io(#[from] io::Error),
    /// A line is not a recorded frame; the recording is damaged at that line.
    #[error("line {line}: not a recorded frame: {source}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// Parse failure.
        source: serde_json::Error,
    },
}

/// Appends frames to a writer, one line each.
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

    /// Writes one frame.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub fn write_frame(&mut self, recv_ns: u64, conn: u32, frame: &str) -> io::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(b"{\"recv_ns\":");
        crate::market::price::write_u64(&mut self.line, recv_ns);
        self.line.extend_from_slice(b",\"conn\":");
        crate::market::price::write_u64(&mut self.line, u64::from(conn));
        self.line.extend_from_slice(b",\"frame\":");
        serde_json::to_writer(&mut self.line, frame).map_err(io::Error::other)?;
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)
    }

    /// Flushes the writer.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads frames back, one per line; blank lines are skipped.
pub fn read_frames<R: BufRead>(
    input: R,
) -> impl Iterator<Item = Result<RecordedFrame, RecordingError>> {
    input
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map(|s| !s.trim().is_empty()).unwrap_or(true))
        .map(|(i, line)| {
            let line = line?;
            serde_json::from_str(&line).map_err(|source| RecordingError::Line {
                line: i + 1,
                source,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_frames() {
        let frames = [
            "PONG",
            "[{\"a\":\"b\"}]",
            "line\nbreak \"quoted\" \\ \u{1}",
            "",
        ];
        let mut w = RecordingWriter::new(Vec::new());
        for (i, f) in frames.iter().enumerate() {
            w.write_frame(1_000 + i as u64, 7, f).unwrap();
        }
        let bytes = w.out;
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), frames.len());
        let back: Vec<RecordedFrame> = read_frames(&bytes[..]).map(Result::unwrap).collect();
        assert_eq!(back.len(), frames.len());
        for (i, f) in back.iter().enumerate() {
            assert_eq!(f.frame, frames[i]);
            assert_eq!(f.recv_ns, 1_000 + i as u64);
            assert_eq!(f.conn, 7);
        }
    }
}
