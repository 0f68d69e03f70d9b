//! THREAD `sim-ws-w{id}`: the only writer of one connection's socket.
//!
//! Pops [`Outbound`] items from the connection's queue and writes them with tungstenite:
//! single messages as one text frame each, or (with probability `array_share`) several
//! consecutive messages as one JSON array frame, as the venue does in bursts. It carries out
//! the one-shot faults in order with the data (malformed, garbage, oversized, drop), splits
//! socket writes into tiny chunks when asked, counts what it wrote, hands every frame to the
//! recorder, and flushes whenever its queue runs dry (so `pause()` can wait on a `Flush`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tungstenite::protocol::Role;
use tungstenite::{Message, Utf8Bytes, WebSocket};

use super::calendar::Clock;
use super::conn::{ConnShared, Injection, Outbound};
use super::record::RecordItem;

/// The writer's socket: counts `write` calls and obeys the split-writes fault.
#[derive(Debug)]
pub(crate) struct WriterIo {
    stream: TcpStream,
    shared: Arc<ConnShared>,
}

impl Read for WriterIo {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        // The writer's WebSocket never reads; the reader thread owns the input side.
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for WriterIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk = self.shared.split_chunk.load(Ordering::Relaxed);
        let n = if chunk > 0 {
            buf.len().min(chunk)
        } else {
            buf.len()
        };
        self.shared.write_calls.fetch_add(1, Ordering::Relaxed);
        self.stream.write(&buf[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Everything a writer thread needs.
#[derive(Debug)]
pub(crate) struct Writer {
    ws: WebSocket<WriterIo>,
    rx: Receiver<Outbound>,
    shared: Arc<ConnShared>,
    rng: fastrand::Rng,
    array_share: f64,
    recorder: Option<Sender<RecordItem>>,
    clock: Clock,
    malformed_next: bool,
    oversized_next: Option<usize>,
    carry: Option<Outbound>,
}

/// Why the writer stopped.
enum Exit {
    /// Queue closed (connection over or sim stopping).
    Done,
    /// The socket failed or a drop fault cut it.
    Cut,
}

impl Writer {
    /// A writer over `stream` (already upgraded to WebSocket by the reader).
    pub(crate) fn new(
        stream: TcpStream,
        shared: Arc<ConnShared>,
        rx: Receiver<Outbound>,
        seed: u64,
        array_share: f64,
        recorder: Option<Sender<RecordItem>>,
        clock: Clock,
    ) -> Writer {
        let config = tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(256)
            .write_buffer_size(64 * 1024);
        let io = WriterIo {
            stream,
            shared: Arc::clone(&shared),
        };
        Writer {
            ws: WebSocket::from_raw_socket(io, Role::Server, Some(config)),
            rx,
            rng: fastrand::Rng::with_seed(seed ^ u64::from(shared.id).wrapping_mul(0x9E37_79B9)),
            shared,
            array_share,
            recorder,
            clock,
            malformed_next: false,
            oversized_next: None,
            carry: None,
        }
    }

    /// Runs until the queue closes or the socket fails; then cuts the socket.
    pub(crate) fn run(mut self) {
        let exit = self.pump();
        if matches!(exit, Exit::Done) {
            let _ = self.ws.flush();
        }
        self.shared.shutdown();
    }

    fn next(&mut self) -> Option<Outbound> {
        if let Some(item) = self.carry.take() {
            return Some(item);
        }
        if let Ok(item) = self.rx.try_recv() {
            return Some(item);
        }
        // The queue ran dry: push what is buffered to the socket before blocking.
        if self.ws.flush().is_err() {
            return None;
        }
        // Block, but not forever: a sender may outlive the connection (a `Register` still
        // queued when the core stopped), so the reader's end is checked between waits.
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(item) => return Some(item),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if self.shared.reader_done.load(Ordering::Relaxed)
                        || self.shared.closed.load(Ordering::Relaxed)
                    {
                        return None;
                    }
                }
            }
        }
    }

    fn pump(&mut self) -> Exit {
        while let Some(item) = self.next() {
            let ok = match item {
                Outbound::Msg(m) => self.message(m),
                Outbound::Frame(f) => self.text(f, 1, true),
                Outbound::Pong => {
                    self.shared.pongs.fetch_add(1, Ordering::Relaxed);
                    self.text(Utf8Bytes::from_static("PONG"), 0, false)
                }
                Outbound::Raw(bytes) => {
                    self.ws.flush().is_ok() && self.ws.get_mut().stream.write_all(&bytes).is_ok()
                }
                Outbound::Flush(ack) => {
                    let ok = self.ws.flush().is_ok();
                    drop(ack);
                    ok
                }
                Outbound::Inject(fault) => {
                    self.shared.injected.fetch_add(1, Ordering::Relaxed);
                    match fault {
                        Injection::Drop => return Exit::Cut,
                        Injection::Malformed => {
                            self.malformed_next = true;
                            true
                        }
                        Injection::Oversized { min_bytes } => {
                            self.oversized_next = Some(min_bytes);
                            true
                        }
                        Injection::Garbage => self.garbage(),
                    }
                }
            };
            if !ok {
                return Exit::Cut;
            }
        }
        Exit::Done
    }

    fn message(&mut self, m: Utf8Bytes) -> bool {
        if let Some(min_bytes) = self.oversized_next.take() {
            let reps = (min_bytes / m.len().max(1)) + 1;
            let mut frame = String::with_capacity(reps * (m.len() + 1) + 2);
            frame.push('[');
            for i in 0..reps {
                if i > 0 {
                    frame.push(',');
                }
                frame.push_str(m.as_str());
            }
            frame.push(']');
            return self.text(frame.into(), reps as u64, true);
        }
        if self.malformed_next {
            self.malformed_next = false;
            let text = m.as_str();
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return self.text(Utf8Bytes::from(&text[..cut]), 1, true);
        }
        if self.array_share <= 0.0 || self.rng.f64() >= self.array_share {
            return self.text(m, 1, true);
        }
        let want = self.rng.usize(2..6);
        let mut batch = vec![m];
        while batch.len() < want {
            match self.rx.try_recv() {
                Ok(Outbound::Msg(next)) => batch.push(next),
                Ok(other) => {
                    self.carry = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let len: usize = batch.iter().map(|b| b.len() + 1).sum();
        let mut frame = String::with_capacity(len + 2);
        frame.push('[');
        for (i, b) in batch.iter().enumerate() {
            if i > 0 {
                frame.push(',');
            }
            frame.push_str(b.as_str());
        }
        frame.push(']');
        self.text(frame.into(), batch.len() as u64, true)
    }

    fn text(&mut self, frame: Utf8Bytes, messages: u64, data: bool) -> bool {
        let len = frame.len() as u64;
        if let Some(rec) = &self.recorder {
            let item = RecordItem {
                recv_ns: self.clock.now_ns(),
                conn: self.shared.id,
                frame: frame.clone(),
            };
            // The recorder is gone only when its file failed; keep serving.
            let _ = rec.send(item);
        }
        if self.ws.write(Message::Text(frame)).is_err() {
            return false;
        }
        if data {
            self.shared.frames.fetch_add(1, Ordering::Relaxed);
            self.shared.messages.fetch_add(messages, Ordering::Relaxed);
            self.shared.bytes.fetch_add(len, Ordering::Relaxed);
        }
        true
    }

    fn garbage(&mut self) -> bool {
        if self.ws.flush().is_err() {
            return false;
        }
        // 0xFF: FIN with all three reserved bits set, an invalid frame header for any client.
        let mut bytes = vec![0xFFu8; 64];
        for b in bytes.iter_mut().skip(1) {
            *b = self.rng.u8(..);
        }
        self.ws.get_mut().stream.write_all(&bytes).is_ok()
    }
}
