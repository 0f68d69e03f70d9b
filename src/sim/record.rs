//! THREAD `sim-recorder`: writes every frame the sim sends to a recording file.
//!
//! The format is the foundation's ([`crate::recording`]): one JSON line per frame,
//! `{"recv_ns","conn","frame"}`; for the sim `recv_ns` is the time the writer handed the frame
//! to its socket and `conn` the connection id. Writers send [`RecordItem`]s over a bounded
//! channel (a full channel slows the writers down rather than losing frames); the recorder
//! ends when every writer is gone.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;
use tungstenite::Utf8Bytes;

use crate::recording::RecordingWriter;

/// One frame to record.
#[derive(Debug)]
pub(crate) struct RecordItem {
    /// When it was written, ns since the Unix epoch.
    pub(crate) recv_ns: u64,
    /// Connection id.
    pub(crate) conn: u32,
    /// The frame text.
    pub(crate) frame: Utf8Bytes,
}

/// The recorder thread's state.
#[derive(Debug)]
pub(crate) struct Recorder {
    out: RecordingWriter<BufWriter<File>>,
    path: PathBuf,
    rx: Receiver<RecordItem>,
    recorded: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder writing to `file`; `recorded` counts frames written.
    pub(crate) fn new(
        file: File,
        path: PathBuf,
        rx: Receiver<RecordItem>,
        recorded: Arc<AtomicU64>,
    ) -> Recorder {
        Recorder {
            out: RecordingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            path,
            rx,
            recorded,
        }
    }

    /// Writes frames until every sender is gone, then flushes.
    pub(crate) fn run(mut self) {
        let mut failed = false;
        for item in self.rx.iter() {
            if failed {
                continue; // keep draining so writers never block on a dead recorder
            }
            match self
                .out
                .write_frame(item.recv_ns, item.conn, item.frame.as_str())
            {
                Ok(_) => {
                    self.recorded.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    log::error!("Recording failed: path={} error={e}", self.path.display());
                    failed = true;
                }
            }
        }
        if let Err(e) = self.out.flush() {
            log::error!(
                "Recording flush failed: path={} error={e}",
                self.path.display()
            );
        }
    }
}
