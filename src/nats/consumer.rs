//! A NATS consumer of the feed: rebuilds books from `<prefix>.book.…` and the KV bucket
//! `<prefix>_books`, the way docs/scaling.md tells any consumer to. Used by
//! `polypy-tail --nats` and the tests.
//!
//! THREAD: the caller's. [`NatsConsumer::run_for`] drives its own tokio current-thread
//! runtime for a while; between calls the caller reads the state (no lock, no thread).
//!
//! The rule: subscribe to the book subjects first, then read the snapshots (a KV watch: the
//! latest value of every key, then every refresh). A book starts at its snapshot; live
//! messages with seq ≤ the book's are dropped, seq + 1 is applied, a higher seq is a *gap*:
//! the book is out of sync and its messages are buffered until a snapshot (live, after the
//! publisher repaired, or from the KV: watched, and read again every 250 ms while out of
//! sync) lets the buffer be replayed contiguously.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::stream::books::ClientBooks;

/// Which books to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every book.
    All,
    /// The tokens of one market (condition id).
    Market(String),
    /// One token.
    Token(String),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// The publisher's `--nats-prefix`.
    pub prefix: String,
    /// Which books.
    pub filter: Filter,
    /// Messages buffered per out-of-sync book at most (older ones are dropped, counted).
    pub max_buffered: usize,
    /// Keep the wire → here latency of each delta (same process as the engine only:
    /// `recv_ns` is the engine's monotonic clock).
    pub record_latency: bool,
}

impl ConsumerConfig {
    /// Every book under `prefix` at `url`.
    pub fn new(url: &str, prefix: &str) -> ConsumerConfig {
        ConsumerConfig {
            url: url.into(),
            prefix: prefix.into(),
            filter: Filter::All,
            max_buffered: 10_000,
            record_latency: false,
        }
    }

    /// The live subject filter.
    pub fn subject(&self) -> String {
        let p = &self.prefix;
        match &self.filter {
            Filter::All => format!("{p}.book.>"),
            Filter::Market(c) => format!("{p}.book.{c}.*"),
            Filter::Token(t) => format!("{p}.book.*.{t}"),
        }
    }
}

/// What the consumer counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerCounts {
    /// Live messages received.
    pub messages: u64,
    /// Snapshots received live.
    pub live_snapshots: u64,
    /// Snapshots taken from the KV bucket.
    pub kv_snapshots: u64,
    /// Live messages dropped as already covered (seq ≤ the book's).
    pub stale: u64,
    /// Seq gaps detected.
    pub gaps: u64,
    /// Out-of-sync books brought back in sync.
    pub recoveries: u64,
    /// Buffered messages dropped (buffer full).
    pub overflows: u64,
    /// Messages that were not JSON.
    pub unparsable: u64,
}

/// The rebuilt books and the counters.
#[derive(Debug, Default)]
pub struct ConsumerState {
    /// The books (and the stream client's checks: hashes; seq is checked here).
    pub books: ClientBooks,
    /// Counters.
    pub counts: ConsumerCounts,
    /// Wire → consumer latencies, ns (with `record_latency`).
    pub latencies_ns: Vec<u64>,
    /// Connected to NATS now.
    pub connected: bool,
    /// The KV bucket was found and is watched.
    pub kv_ready: bool,
    pending: HashMap<String, Vec<Value>>,
    max_buffered: usize,
    record_latency: bool,
}

impl ConsumerState {
    /// Tokens whose book is not in sync (no snapshot yet, or after a gap).
    pub fn out_of_sync(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    /// True when `token`'s book is in sync.
    pub fn in_sync(&self, token: &str) -> bool {
        self.books.books.get(token).is_some_and(|b| b.in_sync) && !self.pending.contains_key(token)
    }

    fn buffer(&mut self, asset: &str, v: Value) {
        let max = self.max_buffered.max(1);
        let q = self.pending.entry(asset.to_string()).or_default();
        if q.len() >= max {
            q.remove(0);
            self.counts.overflows += 1;
        }
        q.push(v);
    }

    /// One live message of a book subject.
    pub fn on_live(&mut self, v: Value) {
        self.counts.messages += 1;
        let kind = v["type"].as_str().unwrap_or("");
        let (Some(asset), Some(seq)) = (v["asset"].as_str().map(str::to_string), v["seq"].as_u64())
        else {
            self.books.apply(&v);
            return;
        };
        if self.record_latency && kind == "delta" {
            if let Some(r) = v["recv_ns"].as_u64().filter(|&r| r > 0) {
                self.latencies_ns
                    .push(crate::worker::now_ns().saturating_sub(r));
            }
        }
        match kind {
            "removed" => {
                self.pending.remove(&asset);
                self.books.apply(&v);
            }
            "snapshot" => {
                self.counts.live_snapshots += 1;
                // A snapshot that skips seqs repairs a gap the publisher knew of.
                if self
                    .books
                    .books
                    .get(&asset)
                    .is_some_and(|b| b.in_sync && seq > b.seq + 1)
                {
                    self.counts.gaps += 1;
                }
                self.snapshot(&asset, seq, &v);
            }
            _ => {
                let state = self.books.books.get(&asset).map(|b| (b.in_sync, b.seq));
                match state {
                    Some((true, s)) if !self.pending.contains_key(&asset) => {
                        if seq <= s {
                            self.counts.stale += 1;
                        } else if seq == s + 1 {
                            self.books.apply(&v);
                        } else {
                            self.counts.gaps += 1;
                            if let Some(b) = self.books.books.get_mut(&asset) {
                                b.in_sync = false;
                            }
                            self.buffer(&asset, v);
                        }
                    }
                    _ => self.buffer(&asset, v),
                }
            }
        }
    }

    /// A snapshot from the KV bucket (`None`: the entry was deleted).
    pub fn on_kv(&mut self, key: &str, value: Option<Value>) {
        let Some(v) = value else {
            self.pending.remove(key);
            self.books.books.remove(key);
            return;
        };
        let Some(seq) = v["seq"].as_u64() else {
            self.counts.unparsable += 1;
            return;
        };
        if self.in_sync(key) {
            // The KV is written after the live message it contains: a newer seq there means
            // live messages were lost on the way here (a reconnect of this consumer).
            let behind = self.books.books.get(key).is_some_and(|b| seq > b.seq);
            if !behind {
                return;
            }
            self.counts.gaps += 1;
        }
        // Useful when the buffer continues from it, or when it is newer than the book.
        let first = self
            .pending
            .get(key)
            .and_then(|q| q.first())
            .and_then(|m| m["seq"].as_u64());
        let have = self.books.books.get(key).map(|b| b.seq);
        let useful = first.is_some_and(|f| f <= seq + 1) || have.is_none_or(|h| seq > h);
        if !useful {
            return;
        }
        self.counts.kv_snapshots += 1;
        self.snapshot(key, seq, &v);
    }

    /// Resets the book to the snapshot at `seq`, then replays what was buffered after it.
    fn snapshot(&mut self, asset: &str, seq: u64, v: &Value) {
        let was_out = self.pending.contains_key(asset)
            || self.books.books.get(asset).is_some_and(|b| !b.in_sync);
        self.books.apply(v);
        let mut next = seq + 1;
        let mut rest = Vec::new();
        let mut gap = false;
        for m in self.pending.remove(asset).unwrap_or_default() {
            let s = m["seq"].as_u64().unwrap_or(0);
            if gap {
                rest.push(m);
            } else if s < next {
                self.counts.stale += 1;
            } else if s == next {
                self.books.apply(&m);
                next += 1;
            } else {
                gap = true;
                rest.push(m);
            }
        }
        if gap {
            if let Some(b) = self.books.books.get_mut(asset) {
                b.in_sync = false;
            }
            self.pending.insert(asset.to_string(), rest);
        } else if was_out && self.books.books.contains_key(asset) {
            self.counts.recoveries += 1;
        }
    }
}

/// A consumer, driven by its caller: [`run_for`](NatsConsumer::run_for) runs its tokio
/// current-thread runtime (the NATS connection, the subscription, the KV watch) for a while
/// on the calling thread; between calls the state is the caller's to read.
pub struct NatsConsumer {
    runtime: tokio::runtime::Runtime,
    inner: Inner,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer")
            .field("subject", &self.inner.config.subject())
            .field("books", &self.inner.state.books.books.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ConsumerConfig,
    state: ConsumerState,
    connected: Arc<AtomicBool>,
    sub: Option<async_nats::Subscriber>,
    client: async_nats::Client,
    js: jetstream::Context,
    store: Option<jetstream::kv::Store>,
    watch: Option<jetstream::kv::Watch>,
    setup_due: bool,
    tick: tokio::time::Interval,
}

impl NatsConsumer {
    /// Connects (in the background: it retries and reconnects by itself) and subscribes.
    ///
    /// # Errors
    /// The runtime could not be built, or the URL is unusable.
    pub fn start(config: ConsumerConfig) -> std::io::Result<NatsConsumer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let connected = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&connected);
        let options = async_nats::ConnectOptions::new()
            .name("polypy-consumer")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .subscription_capacity(1 << 18)
            .request_timeout(Some(Duration::from_secs(2)))
            .reconnect_delay_callback(|n| Duration::from_millis((50u64 << n.min(4)).min(500)))
            .event_callback(move |e| {
                match e {
                    async_nats::Event::Connected => flag.store(true, Ordering::Release),
                    async_nats::Event::Disconnected => flag.store(false, Ordering::Release),
                    _ => {}
                }
                async {}
            });
        let subject = config.subject();
        let (client, sub) = runtime.block_on(async {
            let client = options
                .connect(config.url.as_str())
                .await
                .map_err(std::io::Error::other)?;
            let sub = client.subscribe(subject).await.ok();
            Ok::<_, std::io::Error>((client, sub))
        })?;
        let tick = runtime.block_on(async { tokio::time::interval(Duration::from_millis(250)) });
        let state = ConsumerState {
            max_buffered: config.max_buffered,
            record_latency: config.record_latency,
            ..ConsumerState::default()
        };
        let js = {
            let _in_runtime = runtime.enter();
            jetstream::new(client.clone())
        };
        Ok(NatsConsumer {
            runtime,
            inner: Inner {
                config,
                state,
                connected,
                sub,
                js,
                client,
                store: None,
                watch: None,
                setup_due: true,
                tick,
            },
        })
    }

    /// Receives and applies for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let inner = &mut self.inner;
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(d, inner.run()).await;
        });
        inner.state.connected = inner.connected.load(Ordering::Acquire);
    }

    /// The books and counters as of the last [`run_for`](Self::run_for).
    pub fn state(&self) -> &ConsumerState {
        &self.inner.state
    }

    /// The same, to take recorded latencies out.
    pub fn state_mut(&mut self) -> &mut ConsumerState {
        &mut self.inner.state
    }
}

impl Drop for NatsConsumer {
    fn drop(&mut self) {
        // Dropping a subscription or a watch spawns its unsubscribe on the runtime.
        let _in_runtime = self.runtime.enter();
        self.inner.sub = None;
        self.inner.watch = None;
        self.inner.store = None;
    }
}

impl Inner {
    fn parse_kv(&mut self, key: &str, value: &[u8]) {
        match serde_json::from_slice::<Value>(value) {
            Ok(v) => {
                if let Filter::Market(c) = &self.config.filter {
                    if v["market"].as_str() != Some(c.as_str()) {
                        return;
                    }
                }
                self.state.on_kv(key, Some(v));
            }
            Err(_) => self.state.counts.unparsable += 1,
        }
    }

    /// The bucket and its watch, (re)made at start and at most every tick after.
    async fn setup(&mut self) {
        if !std::mem::take(&mut self.setup_due) || self.watch.is_some() {
            return;
        }
        if self.sub.is_none() {
            self.sub = self.client.subscribe(self.config.subject()).await.ok();
        }
        if self.store.is_none() {
            let bucket = format!("{}_books", self.config.prefix);
            self.store = self.js.get_key_value(bucket).await.ok();
        }
        if let Some(s) = &self.store {
            let w = match &self.config.filter {
                Filter::Token(t) => s.watch(t.as_str()).await,
                _ => s.watch_all().await,
            };
            if let Ok(w) = w {
                self.watch = Some(w);
                self.state.kv_ready = true;
            }
        }
    }

    /// Never returns: [`NatsConsumer::run_for`] bounds it.
    async fn run(&mut self) {
        loop {
            self.setup().await;
            tokio::select! {
                m = async {
                    match &mut self.sub {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => match m {
                    Some(m) => match serde_json::from_slice::<Value>(&m.payload) {
                        Ok(v) => self.state.on_live(v),
                        Err(_) => self.state.counts.unparsable += 1,
                    },
                    None => self.sub = None,
                },
                e = async {
                    match &mut self.watch {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                } => match e {
                    Some(Ok(entry)) => match entry.operation {
                        jetstream::kv::Operation::Put => self.parse_kv(&entry.key, &entry.value),
                        _ => self.state.on_kv(&entry.key, None),
                    },
                    // The watch ended or failed (server restart): watched again.
                    _ => self.watch = None,
                },
                _ = self.tick.tick() => {
                    self.setup_due = true;
                    self.state.connected = self.connected.load(Ordering::Acquire);
                    let Some(s) = self.store.clone() else { continue };
                    let missing = self.state.out_of_sync();
                    for key in missing.into_iter().take(256) {
                        if let Ok(Some(value)) = s.get(key.as_str()).await {
                            self.parse_kv(&key, &value);
                        }
                    }
                }
            }
        }
    }
}
