//! Market-channel and CLOB REST message text, byte for byte as the venue prints it.
//!
//! Key orders follow the captured fixtures (docs/venue-protocol.md §3, §6): initial-dump `book`s are
//! `market, asset_id, timestamp, hash, bids, asks, tick_size, event_type, last_trade_price`,
//! post-trade `book`s `market, asset_id, bids, asks, hash, timestamp, event_type`,
//! `price_change` `market, price_changes[asset_id, price, size, side, hash, best_bid,
//! best_ask], timestamp, event_type`, REST books `market, asset_id, timestamp, hash, bids,
//! asks, min_order_size, tick_size, neg_risk, last_trade_price`; the rest follow the docs'
//! examples. Bids are written ascending and asks descending (best last), every number is a
//! string in canonical form, timestamps are millisecond strings.
//!
//! Pure writers into a caller-owned buffer; called by the core thread, once per message
//! however many connections receive it.

use super::universe::Market;
use crate::market::price::{write_canonical, write_u64};
use crate::market::{Price, QuotedPrice, Side, Size};
use crate::orderbook::{Level, OrderBook};

/// One `price_changes[]` entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    /// Token id.
    pub(crate) asset_id: &'a str,
    /// Level price.
    pub(crate) price: Price,
    /// New aggregate size (zero removes the level).
    pub(crate) size: Size,
    /// Side of the level.
    pub(crate) side: Side,
    /// Hash of the asset's book after the entry (after the whole trade inside a trade).
    pub(crate) hash: &'a str,
    /// Best bid after the entry.
    pub(crate) best_bid: Option<Price>,
    /// Best ask after the entry.
    pub(crate) best_ask: Option<Price>,
}

/// Which of the two observed `book` layouts to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BookStyle {
    /// Initial dump / fresh book: with `tick_size` and `last_trade_price`.
    Full,
    /// After a trade: without them, hash before timestamp.
    PostTrade,
}

fn key(out: &mut Vec<u8>, first: bool, name: &str) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `"name":"text"` for text that needs no escaping (ids, hashes, fixed words).
fn plain(out: &mut Vec<u8>, first: bool, name: &str, text: &str) {
    key(out, first, name);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// A JSON string with escaping (free text).
pub(crate) fn json_str(out: &mut Vec<u8>, text: &str) {
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

fn text(out: &mut Vec<u8>, first: bool, name: &str, value: &str) {
    key(out, first, name);
    json_str(out, value);
}

fn num(out: &mut Vec<u8>, first: bool, name: &str, raw: u64) {
    key(out, first, name);
    out.push(b'"');
    write_canonical(out, raw);
    out.push(b'"');
}

fn opt_price(out: &mut Vec<u8>, first: bool, name: &str, p: Option<Price>) {
    match p {
        Some(p) => num(out, first, name, u64::from(p.raw())),
        None => plain(out, first, name, ""),
    }
}

fn ts_field(out: &mut Vec<u8>, first: bool, ts: u64) {
    key(out, first, "timestamp");
    out.push(b'"');
    write_u64(out, ts);
    out.push(b'"');
}

fn levels(out: &mut Vec<u8>, first: bool, name: &str, levels: &[Level]) {
    key(out, first, name);
    out.push(b'[');
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"price\":\"");
        write_canonical(out, u64::from(l.price.raw()));
        out.extend_from_slice(b"\",\"size\":\"");
        write_canonical(out, l.size.raw());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
}

fn last_trade(out: &mut Vec<u8>, first: bool, q: Option<QuotedPrice>) {
    key(out, first, "last_trade_price");
    out.push(b'"');
    if let Some(q) = q {
        q.write(out);
    }
    out.push(b'"');
}

fn tick(out: &mut Vec<u8>, first: bool, book: &OrderBook) {
    match book.tick_size() {
        Some(t) => num(out, first, "tick_size", u64::from(t.raw())),
        None => plain(out, first, "tick_size", ""),
    }
}

/// A `book` message for `book` stamped `ts` with `hash`.
pub(crate) fn book(out: &mut Vec<u8>, style: BookStyle, book: &OrderBook, ts: u64, hash: &str) {
    let meta = book.meta();
    out.push(b'{');
    plain(out, true, "market", &meta.market);
    plain(out, false, "asset_id", &meta.asset_id);
    match style {
        BookStyle::Full => {
            ts_field(out, false, ts);
            plain(out, false, "hash", hash);
            levels(out, false, "bids", book.bids().wire_order());
            levels(out, false, "asks", book.asks().wire_order());
            tick(out, false, book);
            plain(out, false, "event_type", "book");
            last_trade(out, false, book.last_trade());
        }
        BookStyle::PostTrade => {
            levels(out, false, "bids", book.bids().wire_order());
            levels(out, false, "asks", book.asks().wire_order());
            plain(out, false, "hash", hash);
            ts_field(out, false, ts);
            plain(out, false, "event_type", "book");
        }
    }
    out.push(b'}');
}

/// A CLOB REST book summary (`GET /book`, one element of `POST /books`).
pub(crate) fn rest_book(out: &mut Vec<u8>, book: &OrderBook, ts: u64, hash: &str) {
    let meta = book.meta();
    out.push(b'{');
    plain(out, true, "market", &meta.market);
    plain(out, false, "asset_id", &meta.asset_id);
    ts_field(out, false, ts);
    plain(out, false, "hash", hash);
    levels(out, false, "bids", book.bids().wire_order());
    levels(out, false, "asks", book.asks().wire_order());
    num(out, false, "min_order_size", meta.min_order_size.raw());
    tick(out, false, book);
    key(out, false, "neg_risk");
    out.extend_from_slice(if meta.neg_risk { b"true" } else { b"false" });
    last_trade(out, false, book.last_trade());
    out.push(b'}');
}

/// A `price_change` message.
pub(crate) fn price_change(out: &mut Vec<u8>, market: &str, entries: &[Entry<'_>], ts: u64) {
    out.push(b'{');
    plain(out, true, "market", market);
    key(out, false, "price_changes");
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        out.push(b'{');
        plain(out, true, "asset_id", e.asset_id);
        num(out, false, "price", u64::from(e.price.raw()));
        num(out, false, "size", e.size.raw());
        plain(out, false, "side", e.side.as_str());
        plain(out, false, "hash", e.hash);
        opt_price(out, false, "best_bid", e.best_bid);
        opt_price(out, false, "best_ask", e.best_ask);
        out.push(b'}');
        if i + 1 < entries.len() {
            out.push(b',');
        }
    }
    out.push(b']');
    ts_field(out, false, ts);
    plain(out, false, "event_type", "price_change");
    out.push(b'}');
}

/// The trade facts of a `last_trade_price` message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TradeText<'a> {
    /// Token id.
    pub(crate) asset_id: &'a str,
    /// Trade price as written.
    pub(crate) price: QuotedPrice,
    /// Size.
    pub(crate) size: Size,
    /// Taker side.
    pub(crate) side: Side,
    /// Fee rate in basis points.
    pub(crate) fee_rate_bps: u32,
    /// `0x…` transaction hash.
    pub(crate) transaction_hash: &'a str,
}

/// A `last_trade_price` message (docs' key order).
pub(crate) fn last_trade_price(out: &mut Vec<u8>, market: &str, t: &TradeText<'_>, ts: u64) {
    out.push(b'{');
    plain(out, true, "event_type", "last_trade_price");
    plain(out, false, "asset_id", t.asset_id);
    plain(out, false, "market", market);
    key(out, false, "price");
    out.push(b'"');
    t.price.write(out);
    out.push(b'"');
    num(out, false, "size", t.size.raw());
    key(out, false, "fee_rate_bps");
    out.push(b'"');
    write_u64(out, u64::from(t.fee_rate_bps));
    out.push(b'"');
    plain(out, false, "side", t.side.as_str());
    ts_field(out, false, ts);
    plain(out, false, "transaction_hash", t.transaction_hash);
    out.push(b'}');
}

/// A `tick_size_change` message.
pub(crate) fn tick_size_change(
    out: &mut Vec<u8>,
    market: &str,
    asset_id: &str,
    old: Price,
    new: Price,
    ts: u64,
) {
    out.push(b'{');
    plain(out, true, "event_type", "tick_size_change");
    plain(out, false, "asset_id", asset_id);
    plain(out, false, "market", market);
    num(out, false, "old_tick_size", u64::from(old.raw()));
    num(out, false, "new_tick_size", u64::from(new.raw()));
    ts_field(out, false, ts);
    out.push(b'}');
}

/// A `best_bid_ask` message (custom feature); an empty side is `""`.
pub(crate) fn best_bid_ask(
    out: &mut Vec<u8>,
    market: &str,
    asset_id: &str,
    bid: Option<Price>,
    ask: Option<Price>,
    ts: u64,
) {
    out.push(b'{');
    plain(out, true, "event_type", "best_bid_ask");
    plain(out, false, "market", market);
    plain(out, false, "asset_id", asset_id);
    opt_price(out, false, "best_bid", bid);
    opt_price(out, false, "best_ask", ask);
    match (bid, ask) {
        (Some(b), Some(a)) if a >= b => num(out, false, "spread", u64::from(a.raw() - b.raw())),
        _ => plain(out, false, "spread", ""),
    }
    ts_field(out, false, ts);
    out.push(b'}');
}

fn string_list(out: &mut Vec<u8>, first: bool, name: &str, items: &[&str]) {
    key(out, first, name);
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, s);
    }
    out.push(b']');
}

/// A `new_market` message (custom feature), in the live capture's key order.
pub(crate) fn new_market(out: &mut Vec<u8>, m: &Market, tokens: [&str; 2], ts: u64) {
    let outcomes = [m.outcomes[0].as_str(), m.outcomes[1].as_str()];
    out.push(b'{');
    key(out, true, "id");
    out.push(b'"');
    write_u64(out, m.gamma_id);
    out.push(b'"');
    text(out, false, "question", &m.question);
    plain(out, false, "market", &m.condition_id);
    text(out, false, "slug", &m.slug);
    text(out, false, "description", &m.description);
    string_list(out, false, "assets_ids", &tokens);
    string_list(out, false, "outcomes", &outcomes);
    key(out, false, "event_message");
    out.push(b'{');
    key(out, true, "id");
    out.push(b'"');
    write_u64(out, m.event.id);
    out.push(b'"');
    text(out, false, "ticker", &m.event.slug);
    text(out, false, "slug", &m.event.slug);
    text(out, false, "title", &m.event.title);
    text(out, false, "description", &m.description);
    out.push(b'}');
    ts_field(out, false, ts);
    plain(out, false, "event_type", "new_market");
    string_list(out, false, "tags", &[]);
    plain(out, false, "condition_id", &m.condition_id);
    key(out, false, "active");
    out.extend_from_slice(b"false");
    string_list(out, false, "clob_token_ids", &tokens);
    plain(out, false, "sports_market_type", "");
    plain(out, false, "line", "");
    plain(out, false, "game_start_time", "");
    num(
        out,
        false,
        "order_price_min_tick_size",
        u64::from(m.tick.raw()),
    );
    plain(out, false, "group_item_title", "");
    plain(out, false, "taker_base_fee", "1000");
    key(out, false, "fees_enabled");
    out.extend_from_slice(b"true");
    key(out, false, "fee_schedule");
    out.extend_from_slice(
        b"{\"exponent\":\"1\",\"rate\":\"0.07\",\"taker_only\":true,\"rebate_rate\":\"0.2\"}",
    );
    out.push(b'}');
}

/// A `market_resolved` message (custom feature), in the docs' key order.
pub(crate) fn market_resolved(
    out: &mut Vec<u8>,
    m: &Market,
    tokens: [&str; 2],
    winner: usize,
    ts: u64,
) {
    out.push(b'{');
    plain(out, true, "event_type", "market_resolved");
    key(out, false, "id");
    out.push(b'"');
    write_u64(out, m.gamma_id);
    out.push(b'"');
    plain(out, false, "market", &m.condition_id);
    string_list(out, false, "assets_ids", &tokens);
    plain(out, false, "winning_asset_id", tokens[winner.min(1)]);
    text(out, false, "winning_outcome", &m.outcomes[winner.min(1)]);
    ts_field(out, false, ts);
    string_list(out, false, "tags", &[]);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orderbook::{BookMeta, CheckContext, CheckMode};
    use crate::sim::truth::TrueBook;
    use crate::sim::universe::{StartBook, TICK_CENT, price};

    #[test]
    fn book_matches_live_key_order_and_hash() {
        // The LIVE_INITIAL_FRAME book, rebuilt: same text, same hash as the server's.
        let meta = BookMeta::new(
            "98756637703320879198441871470345384821367334051929992047845197222571333888980",
            "0x8a9f8be5bef9bc8d36c7895707a4f2561d49de9f5467b6675ba206196e8bd2e2",
        );
        let sz = |t: &str| Size::parse(t.as_bytes()).unwrap();
        let start = StartBook {
            bids: vec![
                (price(10_000), sz("112689")),
                (price(20_000), sz("133687")),
                (price(30_000), sz("41666.32")),
            ],
            asks: vec![
                (price(990_000), sz("37677.02")),
                (price(980_000), sz("25298")),
                (price(970_000), sz("8960.67")),
            ],
            last_trade: Some(QuotedPrice::parse(b"0.140").unwrap()),
        };
        let mut t = TrueBook::new(meta, 0);
        assert!(t.load(
            &start,
            TICK_CENT,
            1_790_908_667_676,
            &mut CheckContext::new(CheckMode::Off)
        ));
        let mut out = Vec::new();
        book(
            &mut out,
            BookStyle::Full,
            t.book(),
            1_790_908_667_676,
            "9e4f2ff8ba2be56177e8bdc8623dfaba4d18f5c8",
        );
        let expected = r#"{"market":"0x8a9f8be5bef9bc8d36c7895707a4f2561d49de9f5467b6675ba206196e8bd2e2","asset_id":"98756637703320879198441871470345384821367334051929992047845197222571333888980","timestamp":"1790908667676","hash":"9e4f2ff8ba2be56177e8bdc8623dfaba4d18f5c8","bids":[{"price":"0.01","size":"112689"},{"price":"0.02","size":"133687"},{"price":"0.03","size":"41666.32"}],"asks":[{"price":"0.99","size":"37677.02"},{"price":"0.98","size":"25298"},{"price":"0.97","size":"8960.67"}],"tick_size":"0.01","event_type":"book","last_trade_price":"0.140"}"#;
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }
}
