//! What the threads of one simulated WebSocket connection share.
//!
//! A connection has a reader thread (`ws.rs`: handshake, client frames, PING) and a writer
//! thread (`writer.rs`: the only thread that writes to the socket). The core thread feeds the
//! writer through a bounded queue of [`Outbound`] items. [`ConnShared`] holds the atomics they
//! share: per-connection counters (each written by one thread only), fault switches, and a
//! clone of the socket so any thread can cut the connection abruptly. Also the fault commands
//! addressed to connections ([`ConnTarget`], `FaultCommand`), shared by `faults.rs` (which
//! sends them) and `core.rs` (which carries them out).

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use tungstenite::Utf8Bytes;

/// A one-shot fault carried out by a connection's writer, in order with its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// Cut the TCP connection without a close frame.
    Drop,
    /// Send the next data message cut in half (invalid JSON that still names its assets).
    Malformed,
    /// Write random bytes outside any WebSocket frame (the client sees a protocol error).
    Garbage,
    /// Send the next data message repeated inside one array frame of at least `min_bytes`.
    Oversized {
        /// Smallest frame payload, bytes.
        min_bytes: usize,
    },
}

/// One item of a connection's outbound queue.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One JSON message; the writer sends it alone or inside an array frame with its
    /// neighbours.
    Msg(Utf8Bytes),
    /// A complete frame written as is (the initial-dump array).
    Frame(Utf8Bytes),
    /// Answer a client `PING` with a text `PONG`.
    Pong,
    /// Bytes produced by the reader's WebSocket (automatic pong/close replies).
    Raw(Vec<u8>),
    /// A fault.
    Inject(Injection),
    /// Flush the socket, then drop the sender: `pause()` waits for every one to be dropped.
    Flush(Sender<()>),
}

/// Counters and switches shared by a connection's threads and the core.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// Connection id (the `conn` of recordings).
    pub(crate) id: u32,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    stream: TcpStream,
    /// Set when the connection is over (closed by either side, dropped, killed).
    pub(crate) closed: AtomicBool,
    /// Set by the reader when its loop is over: the writer drains its queue, then ends even
    /// if a sender is still alive somewhere (e.g. a `Register` queued behind a core `Stop`).
    pub(crate) reader_done: AtomicBool,
    /// Dropped because its queue overflowed (a slow subscriber).
    pub(crate) killed_slow: AtomicBool,
    /// Data frames written (not counting `PONG`).
    pub(crate) frames: AtomicU64,
    /// JSON messages inside those frames.
    pub(crate) messages: AtomicU64,
    /// Payload bytes of those frames.
    pub(crate) bytes: AtomicU64,
    /// `PONG`s written.
    pub(crate) pongs: AtomicU64,
    /// `write` calls on the socket.
    pub(crate) write_calls: AtomicU64,
    /// Faults carried out (drop, malformed, garbage, oversized).
    pub(crate) injected: AtomicU64,
    /// Fault: no data for this connection (the core skips it; PONG still answered).
    pub(crate) stalled: AtomicBool,
    /// Fault: write the socket in chunks of at most this many bytes (0 = off).
    pub(crate) split_chunk: AtomicUsize,
}

impl ConnShared {
    /// Shared state for a new connection on `stream` (a clone is kept for shutdown).
    ///
    /// # Errors
    /// The socket could not be cloned.
    pub(crate) fn new(
        id: u32,
        peer: SocketAddr,
        stream: &TcpStream,
    ) -> std::io::Result<ConnShared> {
        Ok(ConnShared {
            id,
            peer,
            stream: stream.try_clone()?,
            closed: AtomicBool::new(false),
            reader_done: AtomicBool::new(false),
            killed_slow: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            write_calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            split_chunk: AtomicUsize::new(0),
        })
    }

    /// Cuts the connection now (both directions; blocked reads and writes return).
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        // Already closed sockets report ENOTCONN; nothing to do then.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self, subscribed: usize, custom: bool, queued: usize) -> ConnStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnStats {
            conn: self.id,
            peer: self.peer,
            open: !self.closed.load(Ordering::Relaxed),
            dropped_slow: self.killed_slow.load(Ordering::Relaxed),
            subscribed,
            custom_features: custom,
            stalled: self.stalled.load(Ordering::Relaxed),
            queued,
            frames: r(&self.frames),
            messages: r(&self.messages),
            bytes: r(&self.bytes),
            pongs: r(&self.pongs),
            write_calls: r(&self.write_calls),
            injected: r(&self.injected),
        }
    }
}

/// What the sim sent on one connection (see `SimHandle::sent_counters`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnStats {
    /// Connection id.
    pub conn: u32,
    /// The client's address (match it with the client socket's `local_addr`).
    pub peer: SocketAddr,
    /// Still connected.
    pub open: bool,
    /// Dropped by the sim because the client read too slowly.
    pub dropped_slow: bool,
    /// Assets subscribed.
    pub subscribed: usize,
    /// `custom_feature_enabled` is on.
    pub custom_features: bool,
    /// Stalled by a fault.
    pub stalled: bool,
    /// Items waiting in the outbound queue.
    pub queued: usize,
    /// Data frames written (every text frame except `PONG`).
    pub frames: u64,
    /// JSON messages inside those frames.
    pub messages: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// `PONG` frames written.
    pub pongs: u64,
    /// `write` system calls on the socket.
    pub write_calls: u64,
    /// Faults carried out on this connection.
    pub injected: u64,
}

/// Which connections a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnTarget {
    /// Every open connection (switches: and every later one).
    All,
    /// One connection, by id (see `ConnStats::conn`).
    Conn(u32),
}

/// A fault for the core thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FaultCommand {
    /// One-shot injection.
    Inject(ConnTarget, Injection),
    /// Stall data on connections.
    StallConn(ConnTarget, bool),
    /// Stall one asset on every connection.
    StallAsset(String, bool),
    /// Split socket writes into chunks (0 = off).
    SplitWrites(ConnTarget, usize),
    /// Every per-connection and per-asset fault off.
    Clear,
}
