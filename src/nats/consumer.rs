//! A NATS consumer of the feed: rebuilds books from `<prefix>.book.…` and the KV bucket
//! `<prefix>_books`, the way docs/scaling.md tells any consumer to. Used by
//! `polypy-tail --nats` and the tests.
//!
//! THREAD `nats-consumer` (its own tokio current-thread runtime); the state is behind a
//! mutex the caller reads ([`NatsConsumer::with_state`]) — a client tool, not the engine.
//!
//! The rule: subscribe to the book subjects first, then read the snapshots (a KV watch: the
//! latest value of every key, then every refresh). A book starts at its snapshot; live
//! messages with seq ≤ the book's are dropped, seq + 1 is applied, a higher seq is a *gap*:
//! the book is out of sync and its messages are buffered until a snapshot (live, after the
//! publisher repaired, or from the KV: watched, and read again every 250 ms while out of
//! sync) lets the buffer be replayed contiguously.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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
            return;
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

/// A running consumer.
#[derive(Debug)]
pub struct NatsConsumer {
    state: Arc<Mutex<ConsumerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NatsConsumer {
    /// Starts the consumer thread (it connects and reconnects by itself).
    ///
    /// # Errors
    /// The OS refused the thread or the runtime.
    pub fn start(config: ConsumerConfig) -> std::io::Result<NatsConsumer> {
        let state = Arc::new(Mutex::new(ConsumerState {
            max_buffered: config.max_buffered,
            record_latency: config.record_latency,
            ..ConsumerState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (s, st) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("nats-consumer".into())
            .spawn(move || runtime.block_on(run(config, s, st)))?;
        Ok(NatsConsumer {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// Reads the state.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ConsumerState) -> R) -> R {
        let mut g = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Stops the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NatsConsumer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(state: &Mutex<ConsumerState>) -> std::sync::MutexGuard<'_, ConsumerState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_kv(state: &Mutex<ConsumerState>, config: &ConsumerConfig, key: &str, value: &[u8]) {
    match serde_json::from_slice::<Value>(value) {
        Ok(v) => {
            if let Filter::Market(c) = &config.filter {
                if v["market"].as_str() != Some(c.as_str()) {
                    return;
                }
            }
            lock(state).on_kv(key, Some(v));
        }
        Err(_) => lock(state).counts.unparsable += 1,
    }
}

async fn run(config: ConsumerConfig, state: Arc<Mutex<ConsumerState>>, stop: Arc<AtomicBool>) {
    let events = Arc::clone(&state);
    let options = async_nats::ConnectOptions::new()
        .name("polypy-consumer")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(1 << 18)
        .request_timeout(Some(Duration::from_secs(2)))
        .reconnect_delay_callback(|n| Duration::from_millis((50u64 << n.min(4)).min(500)))
        .event_callback(move |e| {
            match e {
                async_nats::Event::Connected => lock(&events).connected = true,
                async_nats::Event::Disconnected => lock(&events).connected = false,
                _ => {}
            }
            async {}
        });
    let Ok(client) = options.connect(config.url.as_str()).await else {
        log::error!("NATS consumer: unusable url {}", config.url);
        return;
    };
    let mut sub = loop {
        match client.subscribe(config.subject()).await {
            Ok(s) => break s,
            Err(_) if !stop.load(Ordering::Acquire) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    };
    let js = jetstream::new(client.clone());
    let bucket = format!("{}_books", config.prefix);
    let mut store: Option<jetstream::kv::Store> = None;
    let mut watch: Option<jetstream::kv::Watch> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !stop.load(Ordering::Acquire) {
        if store.is_none() {
            if let Ok(s) = js.get_key_value(bucket.as_str()).await {
                store = Some(s);
            }
        }
        if watch.is_none() {
            if let Some(s) = &store {
                let w = match &config.filter {
                    Filter::Token(t) => s.watch(t.as_str()).await,
                    _ => s.watch_all().await,
                };
                if let Ok(w) = w {
                    watch = Some(w);
                    lock(&state).kv_ready = true;
                }
            }
        }
        tokio::select! {
            m = sub.next() => {
                let Some(m) = m else { break };
                match serde_json::from_slice::<Value>(&m.payload) {
                    Ok(v) => lock(&state).on_live(v),
                    Err(_) => lock(&state).counts.unparsable += 1,
                }
            }
            e = async {
                match &mut watch {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            } => {
                match e {
                    Some(Ok(entry)) => match entry.operation {
                        jetstream::kv::Operation::Put => {
                            parse_kv(&state, &config, &entry.key, &entry.value);
                        }
                        _ => lock(&state).on_kv(&entry.key, None),
                    },
                    // The watch ended or failed (server restart): watched again.
                    _ => watch = None,
                }
            }
            _ = tick.tick() => {
                let Some(s) = &store else { continue };
                let missing = lock(&state).out_of_sync();
                for key in missing.into_iter().take(256) {
                    if let Ok(Some(value)) = s.get(key.as_str()).await {
                        parse_kv(&state, &config, &key, &value);
                    }
                }
            }
        }
    }
}
