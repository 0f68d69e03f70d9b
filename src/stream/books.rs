//! The client side of the book channel: rebuilds every book from the stream's `snapshot` and
//! `delta` (and `trade`, `tick_size`, `status`) messages, checking seq continuity and every
//! hash the server gives against the book's own venue hash ([`MirrorBook`], the engine's
//! code). Used by `polypy-tail` and the tests; any thread (pure code).

use std::collections::HashMap;

use serde_json::Value;

use crate::feed::MirrorBook;
use crate::feed::mirror::mirror_context;
use crate::market::{Price, QuotedPrice, Side, Size};
use crate::orderbook::{BookMeta, CheckContext};

/// One rebuilt book.
#[derive(Debug)]
pub struct ClientBook {
    /// The book.
    pub mirror: MirrorBook,
    /// Seq of the last message applied.
    pub seq: u64,
    /// As the server last said.
    pub trusted: bool,
    /// False after a seq gap, until the next snapshot.
    pub in_sync: bool,
    /// Built from a depth-limited snapshot (no hash): delta hashes are not checked.
    pub partial: bool,
}

/// What the checks found so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BookChecks {
    /// Book-channel messages applied.
    pub messages: u64,
    /// Snapshots received.
    pub snapshots: u64,
    /// Deltas applied.
    pub deltas: u64,
    /// Hashes compared (snapshots and deltas that carried one).
    pub hashes_checked: u64,
    /// Hashes that differed from the rebuilt book's.
    pub hash_mismatches: u64,
    /// Messages whose seq was not the previous one plus one.
    pub seq_gaps: u64,
    /// Messages for a book that had no snapshot yet.
    pub orphans: u64,
    /// Messages that could not be understood.
    pub malformed: u64,
}

/// Every book a client follows.
#[derive(Debug)]
pub struct ClientBooks {
    /// Books by token id.
    pub books: HashMap<String, ClientBook>,
    /// Check results.
    pub checks: BookChecks,
    ctx: CheckContext,
}

impl Default for ClientBooks {
    fn default() -> ClientBooks {
        ClientBooks::new()
    }
}

/// What one message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A book-channel message, applied.
    Book,
    /// A book-channel message that revealed a problem (counted in [`BookChecks`]).
    Problem,
    /// Anything else (`bbo`, `heartbeat`, `subscribed`, `error`, …): not applied.
    Other,
}

fn num<T>(v: &Value, parse: fn(&[u8]) -> Result<T, crate::market::NumberError>) -> Option<T> {
    v.as_str().and_then(|s| parse(s.as_bytes()).ok())
}

fn side(v: &Value) -> Option<Side> {
    v.as_str().and_then(|s| Side::parse(s.as_bytes()))
}

fn ts(m: &Value) -> u64 {
    m["ts"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl ClientBooks {
    /// No books yet.
    pub fn new() -> ClientBooks {
        ClientBooks {
            books: HashMap::new(),
            checks: BookChecks::default(),
            ctx: mirror_context(),
        }
    }

    /// Applies one server message.
    pub fn apply(&mut self, m: &Value) -> Applied {
        let kind = m["type"].as_str().unwrap_or("");
        if kind == "removed" {
            if let Some(a) = m["asset"].as_str() {
                self.books.remove(a);
            }
            return Applied::Book;
        }
        if !matches!(
            kind,
            "snapshot" | "delta" | "trade" | "tick_size" | "status"
        ) {
            return Applied::Other;
        }
        let (Some(asset), Some(seq)) = (m["asset"].as_str(), m["seq"].as_u64()) else {
            self.checks.malformed += 1;
            return Applied::Problem;
        };
        self.checks.messages += 1;
        if kind == "snapshot" {
            return self.snapshot(asset, seq, m);
        }
        let Some(b) = self.books.get_mut(asset) else {
            self.checks.orphans += 1;
            return Applied::Problem;
        };
        let mut problem = false;
        if seq != b.seq + 1 {
            self.checks.seq_gaps += 1;
            b.in_sync = false;
            problem = true;
        }
        b.seq = seq;
        let t = ts(m);
        let ctx = &mut self.ctx;
        match kind {
            "delta" => {
                for c in m["changes"].as_array().map_or(&[][..], Vec::as_slice) {
                    let (Some(s), Some(p), Some(z)) = (
                        side(&c[0]),
                        num(&c[1], Price::parse),
                        num(&c[2], Size::parse),
                    ) else {
                        self.checks.malformed += 1;
                        return Applied::Problem;
                    };
                    b.mirror.change(ctx, t, s, p, z);
                }
                self.checks.deltas += 1;
                if let Some(h) = m["hash"].as_str() {
                    if b.in_sync && !b.partial {
                        self.checks.hashes_checked += 1;
                        if b.mirror.hash_hex(ctx) != h {
                            self.checks.hash_mismatches += 1;
                            problem = true;
                        }
                    }
                }
            }
            "trade" => {
                let (Some(p), Some(z), Some(s)) = (
                    num(&m["price"], QuotedPrice::parse),
                    num(&m["size"], Size::parse),
                    side(&m["side"]),
                ) else {
                    self.checks.malformed += 1;
                    return Applied::Problem;
                };
                b.mirror.trade(ctx, t, p, z, s);
            }
            "tick_size" => {
                if let (Some(o), Some(n)) =
                    (num(&m["old"], Price::parse), num(&m["new"], Price::parse))
                {
                    b.mirror.tick_size(ctx, t, o, n);
                }
                b.trusted = false;
            }
            _ => {}
        }
        if let Some(t) = m["trusted"].as_bool() {
            b.trusted = t;
        }
        if problem {
            Applied::Problem
        } else {
            Applied::Book
        }
    }

    fn snapshot(&mut self, asset: &str, seq: u64, m: &Value) -> Applied {
        let market = m["market"].as_str().unwrap_or("");
        let mut meta = BookMeta::new(asset, market);
        if let Some(s) = num(&m["min_order_size"], Size::parse) {
            meta.min_order_size = s;
        }
        meta.neg_risk = m["neg_risk"].as_bool().unwrap_or(false);
        let levels = |key: &str| -> Option<Vec<(Price, Size)>> {
            m[key]
                .as_array()?
                .iter()
                .map(|l| Some((num(&l[0], Price::parse)?, num(&l[1], Size::parse)?)))
                .collect()
        };
        let (Some(bids), Some(asks)) = (levels("bids"), levels("asks")) else {
            self.checks.malformed += 1;
            return Applied::Problem;
        };
        let ctx = &mut self.ctx;
        let mut mirror = MirrorBook::new(meta);
        let t = ts(m);
        mirror.begin(
            ctx,
            t,
            bids.len() as u32,
            asks.len() as u32,
            num(&m["tick_size"], Price::parse),
            num(&m["last_trade_price"], QuotedPrice::parse),
        );
        // Best first on the wire; the book takes them worst first.
        for (s, list) in [(Side::Bid, &bids), (Side::Ask, &asks)] {
            for &(p, z) in list.iter().rev() {
                mirror.level(ctx, t, s, p, z);
            }
        }
        self.checks.snapshots += 1;
        let mut problem = false;
        let partial = m["hash"].is_null();
        if let Some(h) = m["hash"].as_str() {
            self.checks.hashes_checked += 1;
            if mirror.hash_hex(ctx) != h {
                self.checks.hash_mismatches += 1;
                problem = true;
            }
        }
        self.books.insert(
            asset.to_string(),
            ClientBook {
                mirror,
                seq,
                trusted: m["trusted"].as_bool().unwrap_or(false),
                in_sync: true,
                partial,
            },
        );
        if problem {
            Applied::Problem
        } else {
            Applied::Book
        }
    }
}
