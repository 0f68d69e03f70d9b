//! The stream server: the book feed pushed to WebSocket clients (`ws://HOST:PORT/ws`, the
//! contract is docs/stream-api.md).
//!
//! THREAD `stream`: one mio poll owns the listening socket, every client connection and the
//! read ends of the feed rings ([`FeedConsumer`], one per book worker). No thread per
//! client, no lock: the book workers only push into their rings and wake the poll (once per
//! chunk, only while it sleeps: [`FeedWake`]).
//!
//! The thread keeps its own copy of every book ([`MirrorBook`](crate::feed::MirrorBook),
//! rebuilt from the feed), so it can send any client a fresh, correctly sequenced snapshot at
//! any time without asking a worker: on subscribe, after conflating a slow client, for
//! `interval_ms` subscriptions and for the legacy top-10 messages. A message is encoded once
//! and its frame shared by every client that gets it.
//!
//! | file | what |
//! |---|---|
//! | `server.rs` | the loop: accept, read requests, drain the feed, fan out, timers, writes |
//! | `server/nats.rs` | the same messages for the NATS publisher (`crate::nats`) |
//! | `client.rs` | one client: socket, bounded output queue, subscriptions |
//! | `protocol.rs` | requests (serde), messages (hand-written JSON), frames |
//!
//! Slow clients: each client's queue is bounded (`max_queued_bytes`). A message that does
//! not fit is not queued: for the book channel the asset is marked and later gets one fresh
//! snapshot (a *conflation*), bbo/trade messages are dropped (counted). A client that stays
//! behind for `slow_close_after` is closed with 1008. Every cause is counted in
//! [`StreamStats`] (`/stats` `stream`, `/metrics` `polypy_stream_*`).

pub mod books;
mod client;
pub mod protocol;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};

use crate::feed::{FeedConsumer, FeedWake};

/// Default port of the stream.
pub const DEFAULT_STREAM_PORT: u16 = 8081;

/// Configuration of the stream server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Host to bind (the HTTP API's).
    pub host: String,
    /// Port (0 picks a free one; see [`StreamHandle::port`]).
    pub port: u16,
    /// Most clients at once; more are refused (counted).
    pub max_clients: usize,
    /// Bytes queued per client before it counts as behind.
    pub max_queued_bytes: usize,
    /// A client behind for this long is closed with 1008.
    pub slow_close_after: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Most ids (assets + markets) in one request.
    pub max_ids_per_request: usize,
    /// Largest client message accepted (bigger ones close the connection with 1009).
    pub max_message_bytes: usize,
    /// Items per feed ring.
    pub feed_capacity: usize,
    /// Least time between two hashes carried by one asset's deltas.
    pub delta_hash_every: Duration,
    /// Most clients with an `all` subscription at once (each holds per-book state and gets
    /// every message); more get an `error`.
    pub max_all_subscribers: usize,
    /// SO_SNDBUF of client sockets (`None`: the OS default); bounds the kernel's share of a
    /// slow client's backlog.
    pub send_buffer_bytes: Option<usize>,
    /// Bind the WebSocket listener (false: the thread only mirrors the feed for NATS,
    /// `--no-stream` with `--nats-url`).
    pub listen: bool,
}

impl Default for StreamConfig {
    /// Port 8081 on 0.0.0.0, 1,000 clients, 4 MiB per client, closed after 10 s behind,
    /// heartbeat 5 s, 1,000 ids per request, 1 MiB messages, 65,536-item feed rings, a delta
    /// hash at most every 250 ms per asset, 100 clients on `all`.
    fn default() -> StreamConfig {
        StreamConfig {
            host: "0.0.0.0".into(),
            port: DEFAULT_STREAM_PORT,
            max_clients: 1000,
            max_queued_bytes: 4 << 20,
            slow_close_after: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
            max_ids_per_request: 1000,
            max_message_bytes: 1 << 20,
            feed_capacity: crate::feed::DEFAULT_FEED_CAPACITY,
            delta_hash_every: Duration::from_millis(250),
            send_buffer_bytes: None,
            max_all_subscribers: 100,
            listen: true,
        }
    }
}

/// Counters of the stream (single writer: the stream thread).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Clients connected now (gauge).
    pub clients: AtomicU64,
    /// Subscriptions now: (asset, channel) pairs plus `all` subscriptions (gauge).
    pub subscriptions: AtomicU64,
    /// Bytes queued over all clients now (gauge).
    pub queued_bytes: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused: `max_clients` reached.
    pub refused: AtomicU64,
    /// Handshakes that failed (bad path, not a WebSocket upgrade).
    pub handshake_failures: AtomicU64,
    /// Messages written completely.
    pub messages_sent: AtomicU64,
    /// Bytes written.
    pub bytes_sent: AtomicU64,
    /// Book-channel deltas replaced by a later snapshot (slow client), per asset episode.
    pub conflations: AtomicU64,
    /// bbo and trade messages dropped for a slow client.
    pub dropped: AtomicU64,
    /// Clients closed with 1008 for staying behind.
    pub slow_closes: AtomicU64,
    /// Requests answered with an `error`.
    pub bad_requests: AtomicU64,
    /// Connections closed for a protocol violation or an oversized message.
    pub protocol_closes: AtomicU64,
    /// Repair snapshots received from the feed (the feed had a gap).
    pub feed_gaps: AtomicU64,
    /// Feed events whose seq did not follow (should stay 0).
    pub seq_errors: AtomicU64,
    /// Feed items received.
    pub feed_items: AtomicU64,
}

/// A point-in-time copy of [`StreamStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs, reason = "the fields of StreamStats")]
pub struct StreamStatsSnapshot {
    pub clients: u64,
    pub subscriptions: u64,
    pub queued_bytes: u64,
    pub accepted: u64,
    pub refused: u64,
    pub handshake_failures: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub conflations: u64,
    pub dropped: u64,
    pub slow_closes: u64,
    pub bad_requests: u64,
    pub protocol_closes: u64,
    pub feed_gaps: u64,
    pub seq_errors: u64,
    pub feed_items: u64,
}

impl StreamStats {
    /// A copy.
    pub fn snapshot(&self) -> StreamStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamStatsSnapshot {
            clients: l(&self.clients),
            subscriptions: l(&self.subscriptions),
            queued_bytes: l(&self.queued_bytes),
            accepted: l(&self.accepted),
            refused: l(&self.refused),
            handshake_failures: l(&self.handshake_failures),
            messages_sent: l(&self.messages_sent),
            bytes_sent: l(&self.bytes_sent),
            conflations: l(&self.conflations),
            dropped: l(&self.dropped),
            slow_closes: l(&self.slow_closes),
            bad_requests: l(&self.bad_requests),
            protocol_closes: l(&self.protocol_closes),
            feed_gaps: l(&self.feed_gaps),
            seq_errors: l(&self.seq_errors),
            feed_items: l(&self.feed_items),
        }
    }
}

/// Why the stream server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The host:port does not parse or resolve.
    #[error("stream address {0}: not a host:port")]
    Address(String),
    /// Binding or polling failed.
    #[error("stream server: {what}")]
    Io {
        /// What.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound stream server, not yet running (its wake handle goes to the feed publishers).
#[derive(Debug)]
pub struct StreamServer {
    poll: Poll,
    listener: Option<mio::net::TcpListener>,
    nats: Option<crate::nats::NatsSink>,
    wake: Arc<FeedWake>,
    waker: Arc<Waker>,
    config: StreamConfig,
    addr: SocketAddr,
}

impl StreamServer {
    /// Binds the listening socket and builds the poll and its waker.
    ///
    /// # Errors
    /// [`StreamError`] naming the step.
    pub fn bind(config: StreamConfig) -> Result<StreamServer, StreamError> {
        use std::net::ToSocketAddrs;
        let io = |what| move |source| StreamError::Io { what, source };
        let poll = Poll::new().map_err(io("poll"))?;
        let waker = Arc::new(Waker::new(poll.registry(), server::WAKER).map_err(io("waker"))?);
        let (listener, addr) = if config.listen {
            let text = format!("{}:{}", config.host, config.port);
            let addr = text
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| StreamError::Address(text.clone()))?;
            let mut listener = mio::net::TcpListener::bind(addr).map_err(io("bind"))?;
            poll.registry()
                .register(&mut listener, server::LISTENER, mio::Interest::READABLE)
                .map_err(io("register"))?;
            let addr = listener.local_addr().map_err(io("local address"))?;
            (Some(listener), addr)
        } else {
            (None, SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        let w = Arc::clone(&waker);
        let wake = Arc::new(FeedWake::new(Box::new(move || {
            // A failed wake means the poll is gone (shutdown).
            let _ = w.wake();
        })));
        Ok(StreamServer {
            poll,
            listener,
            nats: None,
            wake,
            waker,
            config,
            addr,
        })
    }

    /// The wake handle for [`Feed::new`](crate::feed::Feed::new).
    pub fn wake(&self) -> Arc<FeedWake> {
        Arc::clone(&self.wake)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Also hands every message to the NATS publisher (`crate::nats`).
    pub fn with_nats(mut self, sink: crate::nats::NatsSink) -> StreamServer {
        self.nats = Some(sink);
        self
    }

    /// Starts the stream thread reading `feeds`.
    ///
    /// # Errors
    /// The OS refused the thread.
    pub fn spawn(self, feeds: Vec<FeedConsumer>) -> std::io::Result<StreamHandle> {
        let stats = Arc::new(StreamStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Arc::clone(&self.waker);
        let addr = self.addr;
        let self_listening = self.listener.is_some();
        let s = Arc::clone(&stats);
        let st = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("stream".into())
            .spawn(move || server::run(self, feeds, s, st))?;
        let listening = self_listening;
        if listening {
            log::info!("Stream server listening: ws://{addr}/ws");
        } else {
            log::info!("Stream thread started without a listener (feed for NATS only)");
        }
        Ok(StreamHandle {
            addr,
            listening,
            stats,
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

/// The running stream server.
#[derive(Debug)]
pub struct StreamHandle {
    addr: SocketAddr,
    listening: bool,
    stats: Arc<StreamStats>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl StreamHandle {
    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// False when started without a listener (`StreamConfig::listen`).
    pub fn is_listening(&self) -> bool {
        self.listening
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<StreamStats> {
        &self.stats
    }

    /// True while the thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread (closes every client) and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
