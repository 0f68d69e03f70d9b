//! The feed on NATS JetStream (`--nats-url`): the stream's messages published for consumers
//! on other machines, and a JetStream key-value bucket of the latest snapshots for late
//! joiners (docs/scaling.md; the payloads are docs/stream-api.md's, one schema).
//!
//! Two sides, joined by one bounded channel (`tokio::sync::mpsc`, `try_send` only):
//!
//! - THREAD `stream` (the feed's only consumer, `stream::server::nats`) encodes each message
//!   once, with the WebSocket clients' encoding, and hands it to [`NatsSink`]. A full channel
//!   is a counted drop and marks the asset: its next publication is a snapshot. The engine is
//!   never blocked.
//! - THREAD `nats` ([`sink`]): a tokio current-thread runtime running `async-nats` (the
//!   engine's one async corner). It publishes, keeps the KV bucket `<prefix>_books`, and
//!   reconnects with backoff. Every loss it sees (a disconnect, a publication it could not
//!   make) bumps the *generation* ([`NatsStats::generation`]); the stream thread reacts by
//!   publishing a fresh snapshot of every book, and the sink drops messages encoded before
//!   the bump, so each book's first publication after a gap is a snapshot.
//!
//! [`consumer`] is the other end (any thread of its own): it rebuilds books from NATS,
//! joining late through the KV snapshots; `polypy-tail --nats` and the tests use it.
//!
//! Subjects (`<prefix>` is `--nats-prefix`, default `polypy`):
//!
//! | subject | messages |
//! |---|---|
//! | `<prefix>.book.<condition id>.<token id>` | every book-channel message of the token (`snapshot`, `delta`, `trade`, `tick_size`, `status`, `removed`), in seq order |
//! | `<prefix>.bbo.<token id>` | `bbo` |
//! | `<prefix>.trade.<token id>` | `trade` (copies) |
//! | `<prefix>.status.<token id>` | `status` and `tick_size` (copies) |

pub mod consumer;
mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

pub use async_nats::Subject;

/// Default subject prefix.
pub const DEFAULT_PREFIX: &str = "polypy";

/// Configuration of the NATS publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// Subject prefix; the KV bucket is `<prefix>_books`.
    pub prefix: String,
    /// Least time between two KV refreshes of one changed book (trust changes are at once).
    pub snapshot_every: Duration,
    /// Messages the stream thread may queue for the sink.
    pub channel_capacity: usize,
    /// KV writes in flight at most.
    pub kv_window: usize,
}

impl Default for NatsConfig {
    /// `nats://127.0.0.1:4222`, prefix `polypy`, KV refresh every 1 s, 65,536 queued
    /// messages, 512 KV writes in flight.
    fn default() -> NatsConfig {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: DEFAULT_PREFIX.into(),
            snapshot_every: Duration::from_millis(1000),
            channel_capacity: 1 << 16,
            kv_window: 512,
        }
    }
}

impl NatsConfig {
    /// The KV bucket's name.
    pub fn bucket(&self) -> String {
        format!("{}_books", self.prefix)
    }
}

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The prefix is empty or holds characters a subject token cannot.
    #[error("invalid --nats-prefix {0:?}: use letters, digits, '-' and '_'")]
    Prefix(String),
    /// The OS refused the thread or the runtime.
    #[error("nats publisher: {0}")]
    Os(#[from] std::io::Error),
}

/// Counters and state of the publisher (writers: the `nats` and `stream` threads).
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Connected to the server now.
    pub connected: AtomicBool,
    /// Bumped at every loss the sink saw (disconnect, reconnect, failed publication).
    pub generation: AtomicU64,
    /// Messages published.
    pub published: AtomicU64,
    /// Snapshots among them.
    pub snapshots: AtomicU64,
    /// Messages not published, every cause (the three below).
    pub dropped: AtomicU64,
    /// … because the channel to the sink was full (stream thread).
    pub dropped_full: AtomicU64,
    /// … because NATS was down, or they were encoded before a gap (sink, stream thread).
    pub dropped_down: AtomicU64,
    /// … because the client refused them (sink).
    pub dropped_failed: AtomicU64,
    /// Connections established after the first.
    pub reconnects: AtomicU64,
    /// Connections lost.
    pub disconnects: AtomicU64,
    /// KV snapshots written.
    pub kv_puts: AtomicU64,
    /// KV entries deleted (expired markets).
    pub kv_deletes: AtomicU64,
    /// KV writes that failed (the book is written again).
    pub kv_errors: AtomicU64,
    /// KV writes queued or in flight now (gauge).
    pub kv_inflight: AtomicU64,
    /// The KV bucket exists and is used.
    pub kv_ready: AtomicBool,
    connects: AtomicU64,
    /// Bumped at every failed KV write: the stream thread then rewrites every entry.
    kv_failures: AtomicU64,
}

/// A point-in-time copy of [`NatsStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs, reason = "the fields of NatsStats")]
pub struct NatsStatsSnapshot {
    pub connected: bool,
    pub generation: u64,
    pub published: u64,
    pub snapshots: u64,
    pub dropped: u64,
    pub dropped_full: u64,
    pub dropped_down: u64,
    pub dropped_failed: u64,
    pub reconnects: u64,
    pub disconnects: u64,
    pub kv_puts: u64,
    pub kv_deletes: u64,
    pub kv_errors: u64,
    pub kv_inflight: u64,
    pub kv_ready: bool,
}

impl NatsStats {
    /// A copy.
    pub fn snapshot(&self) -> NatsStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NatsStatsSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            generation: l(&self.generation),
            published: l(&self.published),
            snapshots: l(&self.snapshots),
            dropped: l(&self.dropped),
            dropped_full: l(&self.dropped_full),
            dropped_down: l(&self.dropped_down),
            dropped_failed: l(&self.dropped_failed),
            reconnects: l(&self.reconnects),
            disconnects: l(&self.disconnects),
            kv_puts: l(&self.kv_puts),
            kv_deletes: l(&self.kv_deletes),
            kv_errors: l(&self.kv_errors),
            kv_inflight: l(&self.kv_inflight),
            kv_ready: self.kv_ready.load(Ordering::Relaxed),
        }
    }

    /// Counts one dropped message under `cause` and in the total.
    pub fn drop_one(&self, cause: &AtomicU64) {
        cause.fetch_add(1, Ordering::Relaxed);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A counter that changes whenever a KV write failed (the stream thread then marks every
    /// entry stale: failures are rare, and which key failed does not matter then).
    pub fn kv_failures(&self) -> u64 {
        self.kv_failures.load(Ordering::Acquire)
    }

    fn kv_failed(&self) {
        self.kv_failures.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the stream thread hands the sink.
#[derive(Debug)]
pub enum Out {
    /// A message for `subject`, encoded at `generation`.
    Publish {
        /// Subject.
        subject: Subject,
        /// JSON.
        payload: Bytes,
        /// [`NatsStats::generation`] when it was encoded (older ones are dropped).
        generation: u64,
        /// A snapshot (counted apart).
        snapshot: bool,
    },
    /// Write a book's latest snapshot into the KV bucket (key: token id).
    KvPut {
        /// Token id.
        key: Box<str>,
        /// The snapshot JSON.
        value: Bytes,
    },
    /// Remove a book from the KV bucket (its market expired).
    KvDelete {
        /// Token id.
        key: Box<str>,
    },
}

/// The stream thread's end: a bounded channel to the sink, and the shared counters.
#[derive(Debug, Clone)]
pub struct NatsSink {
    tx: tokio::sync::mpsc::Sender<Out>,
    stats: Arc<NatsStats>,
    config: NatsConfig,
}

/// Why [`NatsSink::offer`] did not queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// The channel is full (counted by the caller's policy).
    Full,
    /// The sink is gone.
    Closed,
}

impl NatsSink {
    /// Queues `out` without waiting.
    pub fn offer(&self, out: Out) -> Offer {
        use tokio::sync::mpsc::error::TrySendError;
        match self.tx.try_send(out) {
            Ok(()) => Offer::Queued,
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Free places in the channel now.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<NatsStats> {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }
}

/// The running publisher thread.
#[derive(Debug)]
pub struct NatsHandle {
    sink: Option<NatsSink>,
    stats: Arc<NatsStats>,
    thread: Option<JoinHandle<()>>,
    config: NatsConfig,
}

impl NatsHandle {
    /// Starts the `nats` thread; it connects (and reconnects) in the background.
    ///
    /// # Errors
    /// [`NatsError`]: a bad prefix, or the OS refused the thread.
    pub fn start(config: NatsConfig) -> Result<NatsHandle, NatsError> {
        let ok = !config.prefix.is_empty()
            && config
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(NatsError::Prefix(config.prefix));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(config.channel_capacity.max(16));
        let stats = Arc::new(NatsStats::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (c, s) = (config.clone(), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || runtime.block_on(sink::run(c, rx, s)))?;
        log::info!(
            "NATS publisher started: url={} prefix={} bucket={}",
            config.url,
            config.prefix,
            config.bucket()
        );
        Ok(NatsHandle {
            sink: Some(NatsSink {
                tx,
                stats: Arc::clone(&stats),
                config: config.clone(),
            }),
            stats,
            thread: Some(thread),
            config,
        })
    }

    /// The stream thread's end (taken once).
    pub fn take_sink(&mut self) -> Option<NatsSink> {
        self.sink.take()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<NatsStats> {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// Waits for the thread once every sink is dropped (it flushes for at most ~2 s).
    pub fn stop(&mut self) {
        self.sink = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NatsHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/stats` `nats`: the configuration and the counters.
pub fn stats_json(n: &NatsHandle) -> serde_json::Value {
    let mut v = serde_json::to_value(n.stats().snapshot()).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("enabled".into(), true.into());
        o.insert("url".into(), n.config().url.clone().into());
        o.insert("prefix".into(), n.config().prefix.clone().into());
        o.insert("bucket".into(), n.config().bucket().into());
    }
    v
}

/// The subjects of one token.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// `<prefix>.book.<condition>.<token>`.
    pub book: Subject,
    /// `<prefix>.bbo.<token>`.
    pub bbo: Subject,
    /// `<prefix>.trade.<token>`.
    pub trade: Subject,
    /// `<prefix>.status.<token>`.
    pub status: Subject,
}

impl Subjects {
    /// The subjects of `token` (of market `condition`) under `prefix`. Characters a subject
    /// token cannot hold (`.`, `*`, `>`, whitespace) are replaced by `_`; an empty condition
    /// is `_`.
    pub fn new(prefix: &str, condition: &str, token: &str) -> Subjects {
        let clean = |s: &str| -> String {
            if s.is_empty() {
                return "_".into();
            }
            s.chars()
                .map(|c| {
                    if matches!(c, '.' | '*' | '>') || c.is_whitespace() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect()
        };
        let (c, t) = (clean(condition), clean(token));
        Subjects {
            book: Subject::from(format!("{prefix}.book.{c}.{t}")),
            bbo: Subject::from(format!("{prefix}.bbo.{t}")),
            trade: Subject::from(format!("{prefix}.trade.{t}")),
            status: Subject::from(format!("{prefix}.status.{t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_layout_and_bad_prefixes_are_refused() {
        let s = Subjects::new("polypy", "0xab", "123");
        assert_eq!(s.book.as_str(), "polypy.book.0xab.123");
        assert_eq!(s.bbo.as_str(), "polypy.bbo.123");
        assert_eq!(s.trade.as_str(), "polypy.trade.123");
        assert_eq!(s.status.as_str(), "polypy.status.123");
        assert_eq!(Subjects::new("p", "", "a.b").book.as_str(), "p.book._.a_b");
        for bad in ["", "a.b", "a b", "*"] {
            let r = NatsHandle::start(NatsConfig {
                prefix: bad.into(),
                ..NatsConfig::default()
            });
            assert!(matches!(r, Err(NatsError::Prefix(_))), "{bad}");
        }
    }
}
