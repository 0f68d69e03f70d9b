//! Test-side helpers for the simulator: a blocking WebSocket client with deadlines, a book
//! mirror that applies frames with the foundation's decoder and books and verifies every hash
//! the sim sends, an order-preserving JSON value for key-order checks, and a tiny HTTP client.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    unreachable_pub,
    reason = "a test helper module; pub is its interface to the test file"
)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use polypy::market::{AssetId, AssetInterner, BookHash, Event};
use polypy::orderbook::{BookMeta, CheckContext, CheckMode, Effect, HashVerdict, OrderBook};
use polypy::sim::MarketInfo;
use polypy::venue::{DecodeOutput, Decoder};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// What one read produced.
#[derive(Debug)]
pub enum Read {
    /// A data frame.
    Frame(String),
    /// A `PONG`.
    Pong,
    /// Nothing before the deadline.
    Timeout,
    /// The connection ended (reason).
    Closed(String),
}

/// A blocking market-channel client.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub local: SocketAddr,
    pub frames: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Client({})", self.local)
    }
}

/// Connects to `ws://host:port/path`.
pub fn connect(url: &str) -> Result<Client, tungstenite::Error> {
    connect_with(url, WebSocketConfig::default())
}

/// Connects with a WebSocket config (frame size limits).
pub fn connect_with(url: &str, config: WebSocketConfig) -> Result<Client, tungstenite::Error> {
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let (ws, _) = tungstenite::client::client_with_config(url, stream, Some(config)).map_err(
        |e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        },
    )?;
    Ok(Client {
        ws,
        local,
        frames: 0,
    })
}

impl Client {
    pub fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string().into()))
            .expect("send");
    }

    /// The initial message with the first ≤100 ids, then `operation: subscribe` frames.
    pub fn subscribe(&mut self, assets: &[String], custom: bool) {
        for (i, chunk) in assets.chunks(100).enumerate() {
            let frame = if i == 0 {
                serde_json::json!({"assets_ids": chunk, "type": "market", "initial_dump": true, "custom_feature_enabled": custom})
            } else {
                serde_json::json!({"operation": "subscribe", "assets_ids": chunk})
            };
            self.send(&frame.to_string());
        }
    }

    /// Reads one frame, waiting at most until `deadline`.
    pub fn read(&mut self, deadline: Instant) -> Read {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read::Timeout;
            }
            let _ = self
                .ws
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.ws.read() {
                Ok(Message::Text(t)) if t.as_str() == "PONG" => return Read::Pong,
                Ok(Message::Text(t)) => {
                    self.frames += 1;
                    return Read::Frame(t.as_str().to_string());
                }
                Ok(Message::Close(_)) => return Read::Closed("close frame".into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Read::Closed(e.to_string()),
            }
        }
    }

    /// Reads data frames until `deadline`, calling `f` on each; stops early on close.
    pub fn read_for(&mut self, deadline: Instant, mut f: impl FnMut(&str)) -> Option<String> {
        loop {
            match self.read(deadline) {
                Read::Frame(t) => f(&t),
                Read::Pong => {}
                Read::Timeout => return None,
                Read::Closed(why) => return Some(why),
            }
        }
    }
}

/// Books of the assets a connection owns, fed from its frames, with every hash verified.
pub struct Mirror {
    interner: AssetInterner,
    decoder: Decoder,
    out: DecodeOutput,
    metas: HashMap<String, BookMeta>,
    owned: HashSet<AssetId>,
    books: HashMap<AssetId, OrderBook>,
    ctx: CheckContext,
    /// Entry hashes that did not match right away: (ts, claimed hash); a trade group's final
    /// state must confirm them.
    pending: HashMap<AssetId, Vec<(u64, BookHash)>>,
    /// Everything that went wrong.
    pub errors: Vec<String>,
    /// Entries whose hash matched immediately.
    pub entries_matched: u64,
    /// Entries confirmed by the final state of their trade group.
    pub entries_confirmed: u64,
    /// Snapshots whose hash matched.
    pub snapshots_matched: u64,
    /// Decode failures (malformed frames).
    pub failures: u64,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Mirror({} books, {} errors)",
            self.books.len(),
            self.errors.len()
        )
    }
}

impl Mirror {
    /// A mirror knowing every market's metadata.
    pub fn new(markets: &[MarketInfo]) -> Mirror {
        let mut metas = HashMap::new();
        for m in markets {
            for (i, t) in m.tokens.iter().enumerate() {
                metas.insert(t.clone(), m.book_meta(i));
            }
        }
        Mirror {
            interner: AssetInterner::new(),
            decoder: Decoder::new(),
            out: DecodeOutput::default(),
            metas,
            owned: HashSet::new(),
            books: HashMap::new(),
            ctx: CheckContext::new(CheckMode::EveryEntry),
            pending: HashMap::new(),
            errors: Vec::new(),
            entries_matched: 0,
            entries_confirmed: 0,
            snapshots_matched: 0,
            failures: 0,
        }
    }

    /// Takes ownership of these tokens (others' entries are dropped, as the engine does).
    pub fn own(&mut self, tokens: &[String]) {
        for t in tokens {
            let id = self.interner.intern(t);
            self.owned.insert(id);
            if let Some(meta) = self.metas.get(t) {
                self.books
                    .entry(id)
                    .or_insert_with(|| OrderBook::new(meta.clone()));
            }
        }
    }

    /// Entry hashes still waiting for their trade group's post-trade book.
    pub fn unconfirmed(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// The book of a token.
    pub fn book(&self, token: &str) -> Option<&OrderBook> {
        self.books.get(&self.interner.get(token)?)
    }

    fn err(&mut self, e: String) {
        if self.errors.len() < 50 {
            self.errors.push(e);
        }
    }

    /// Applies one frame.
    pub fn apply(&mut self, frame: &str) {
        self.out.clear();
        self.decoder
            .decode(frame.as_bytes(), 0, &mut self.interner, &mut self.out);
        if !self.out.failures.is_empty() {
            self.failures += self.out.failures.len() as u64;
        }
        let records = std::mem::take(&mut self.out.records);
        for rec in &records {
            if !self.owned.contains(&rec.asset) {
                continue;
            }
            let Some(book) = self.books.get_mut(&rec.asset) else {
                continue;
            };
            let step = book.apply(rec, &mut self.ctx);
            let name = self.interner.name(rec.asset).unwrap_or("?").to_string();
            if let Some(v) = step.settled {
                if v.hash == HashVerdict::Mismatch || !v.bbo_ok || v.crossed {
                    self.err(format!(
                        "settled group failed checks: asset={name} ts={} {v:?}",
                        rec.exchange_ts
                    ));
                }
            }
            let mut pending = self.pending.remove(&rec.asset).unwrap_or_default();
            match rec.event {
                Event::Change { hash, .. } => {
                    if pending.iter().any(|(ts, _)| *ts != rec.exchange_ts) {
                        let p = std::mem::take(&mut pending);
                        self.err(format!("entry hashes never confirmed: asset={name} {p:?}"));
                    }
                    match (step.entry_hash, hash) {
                        (Some(true), _) => self.entries_matched += 1,
                        (Some(false), Some(h)) => pending.push((rec.exchange_ts, h)),
                        (_, None) => {
                            self.err(format!("entry without a verifiable hash: asset={name}"))
                        }
                        (None, Some(_)) => {
                            if step.effect != Effect::SkippedNotTrusted {
                                self.err(format!(
                                    "entry not checked: asset={name} {:?}",
                                    step.effect
                                ));
                            }
                        }
                    }
                }
                Event::BookEnd { hash } => {
                    match step.effect {
                        Effect::SnapshotApplied {
                            hash: HashVerdict::Matched,
                        } => self.snapshots_matched += 1,
                        other => self.err(format!("snapshot hash: asset={name} {other:?}")),
                    }
                    for (ts, h) in std::mem::take(&mut pending) {
                        if ts == rec.exchange_ts && Some(h) == hash {
                            self.entries_confirmed += 1;
                        } else {
                            self.err(format!("trade-group entry hash differs from the post-trade book: asset={name}"));
                        }
                    }
                }
                _ => {}
            }
            if !pending.is_empty() {
                self.pending.insert(rec.asset, pending);
            }
        }
        self.out.records = records;
    }
}

/// An order-preserving JSON value, to check key orders.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Obj(Vec<(String, J)>),
    Arr(Vec<J>),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

impl J {
    pub fn parse(text: &str) -> J {
        serde_json::from_str(text).expect("valid json")
    }
    pub fn keys(&self) -> Vec<&str> {
        match self {
            J::Obj(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn arr(&self) -> &[J] {
        match self {
            J::Arr(a) => a,
            _ => &[],
        }
    }
    /// True when no value anywhere inside is a JSON number.
    pub fn no_numbers(&self) -> bool {
        match self {
            J::Num(_) => false,
            J::Obj(kv) => kv.iter().all(|(_, v)| v.no_numbers()),
            J::Arr(a) => a.iter().all(J::no_numbers),
            _ => true,
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("json")
            }
            fn visit_bool<E>(self, v: bool) -> Result<J, E> {
                Ok(J::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<J, E> {
                Ok(J::Num(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<J, E> {
                Ok(J::Num(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<J, E> {
                Ok(J::Num(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry()? {
                    v.push((k, x));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `(status, body)` of an HTTP request (any status, no error on 4xx/5xx).
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("POST", Some(b)) => agent.post(url).send(b),
        ("POST", None) => agent.post(url).send_empty(),
        _ => panic!("method {method}"),
    };
    let mut resp = resp.expect("http request");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// Waits until `f` returns `Some`, polling every 10 ms, or panics at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
