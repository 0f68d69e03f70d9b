//! The venue's book hash, computed exactly as the server does (docs/venue-protocol.md §4).
//!
//! `sha1_hex(compact_json(summary))` where the summary has the keys, in this order,
//! `market, asset_id, timestamp, hash(""), bids, asks, min_order_size, tick_size, neg_risk,
//! last_trade_price`, levels in server order (bids ascending, asks descending) and every
//! number as the server prints it (canonical decimal, trailing zeros trimmed; the last trade
//! price as it was written). Verified on the captured fixtures in `tests/fixtures.rs`.
//!
//! [`BookHasher`] owns a reusable text buffer, so hashing allocates nothing once warm.

use sha1::{Digest, Sha1};

use super::book::OrderBook;
use crate::market::price::{write_canonical, write_u64};
use crate::market::{BookHash, QuotedPrice};

/// Builds hash input text and digests it; one per thread that verifies books.
#[derive(Debug, Default)]
pub struct BookHasher {
    text: Vec<u8>,
}

impl BookHasher {
    /// A hasher with an empty buffer.
    pub fn new() -> BookHasher {
        BookHasher {
            text: Vec::with_capacity(4096),
        }
    }

    /// The hash of `book` stamped with `timestamp_ms`, using `last_trade` in place of the
    /// book's own last trade price.
    pub fn digest_with(
        &mut self,
        book: &OrderBook,
        timestamp_ms: u64,
        last_trade: Option<QuotedPrice>,
    ) -> [u8; 20] {
        self.write_summary(book, timestamp_ms, last_trade);
        Sha1::digest(&self.text).into()
    }

    /// The 64-bit prefix of the book's hash at `timestamp_ms`.
    pub fn prefix(&mut self, book: &OrderBook, timestamp_ms: u64) -> BookHash {
        BookHash::from_digest(&self.digest_with(book, timestamp_ms, book.last_trade()))
    }

    /// The prefix, with a substitute last trade price.
    pub fn prefix_with(
        &mut self,
        book: &OrderBook,
        timestamp_ms: u64,
        last_trade: Option<QuotedPrice>,
    ) -> BookHash {
        BookHash::from_digest(&self.digest_with(book, timestamp_ms, last_trade))
    }

    /// The full 40-digit hex hash, as the venue prints it.
    pub fn hex(&mut self, book: &OrderBook, timestamp_ms: u64) -> String {
        let d = self.digest_with(book, timestamp_ms, book.last_trade());
        let mut s = String::with_capacity(40);
        for b in d {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// The exact text that is hashed (for diagnostics and tests).
    pub fn summary_text(&mut self, book: &OrderBook, timestamp_ms: u64) -> &str {
        self.write_summary(book, timestamp_ms, book.last_trade());
        std::str::from_utf8(&self.text).unwrap_or("")
    }

    fn write_summary(&mut self, book: &OrderBook, ts: u64, last_trade: Option<QuotedPrice>) {
        let t = &mut self.text;
        let meta = book.meta();
        t.clear();
        t.extend_from_slice(b"{\"market\":");
        write_json_str(t, &meta.market);
        t.extend_from_slice(b",\"asset_id\":");
        write_json_str(t, &meta.asset_id);
        t.extend_from_slice(b",\"timestamp\":\"");
        write_u64(t, ts);
        t.extend_from_slice(b"\",\"hash\":\"\",\"bids\":[");
        write_levels(t, book.bids().wire_order());
        t.extend_from_slice(b"],\"asks\":[");
        write_levels(t, book.asks().wire_order());
        t.extend_from_slice(b"],\"min_order_size\":\"");
        write_canonical(t, meta.min_order_size.raw());
        t.extend_from_slice(b"\",\"tick_size\":");
        match book.tick_size() {
            Some(tick) => {
                t.push(b'"');
                write_canonical(t, u64::from(tick.raw()));
                t.push(b'"');
            }
            None => t.extend_from_slice(b"null"),
        }
        t.extend_from_slice(if meta.neg_risk {
            b",\"neg_risk\":true,\"last_trade_price\":\""
        } else {
            b",\"neg_risk\":false,\"last_trade_price\":\""
        });
        if let Some(ltp) = last_trade {
            ltp.write(t);
        }
        t.extend_from_slice(b"\"}");
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_levels(t: &mut Vec<u8>, levels: &[super::ladder::Level]) {
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            t.push(b',');
        }
        t.extend_from_slice(b"{\"price\":\"");
        write_canonical(t, u64::from(l.price.raw()));
        t.extend_from_slice(b"\",\"size\":\"");
        write_canonical(t, l.size.raw());
        t.extend_from_slice(b"\"}");
    }
}

/// Writes a JSON string the way Python's `json.dumps(ensure_ascii=False)` does (also what
/// the stream's messages use: `stream::protocol::write_str`).
pub(crate) fn write_json_str(t: &mut Vec<u8>, s: &str) {
    t.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => t.extend_from_slice(b"\\\""),
            b'\\' => t.extend_from_slice(b"\\\\"),
            b'\n' => t.extend_from_slice(b"\\n"),
            b'\r' => t.extend_from_slice(b"\\r"),
            b'\t' => t.extend_from_slice(b"\\t"),
            0x08 => t.extend_from_slice(b"\\b"),
            0x0c => t.extend_from_slice(b"\\f"),
            0..=0x1f => {
                t.extend_from_slice(b"\\u00");
                t.push(HEX[usize::from(b >> 4)]);
                t.push(HEX[usize::from(b & 15)]);
            }
            _ => t.push(b),
        }
    }
    t.push(b'"');
}
