//! Ground truth: every asset's true book, kept with the foundation's own [`OrderBook`].
//!
//! The sim never keeps a second book implementation: [`TrueBook`] drives an `OrderBook` with
//! the same [`Record`]s a client decodes from the wire (`BookBegin/Level/BookEnd`, `Change`,
//! `Trade`, `TickSize`), and every hash the sim sends is [`BookHasher`] output for that book.
//! [`TruthBook`] is the owned, serialisable view handed to tests and served at
//! `GET /sim/truth/{asset_id}`; its JSON has the shape of one entry of
//! `polypy-replay --dump-books` (plus `asset_id` and `last_trade_price`).
//!
//! [`TrueBook`] is owned by the core thread; [`TruthBook`] values cross threads.

use serde::{Deserialize, Serialize};

use super::universe::StartBook;
use crate::market::{AssetId, Event, FieldUpdate, Price, QuotedPrice, Record, Side, Size};
use crate::orderbook::{BookHasher, BookMeta, CheckContext, Effect, Level, OrderBook};

/// One level as canonical decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthLevel {
    /// Price ("0.48").
    pub price: String,
    /// Size ("41666.32").
    pub size: String,
}

/// A book as the sim knows it: levels best first, every number canonical text.
///
/// Build the same view of a client's book with [`TruthBook::of`] and compare with `==`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthBook {
    /// Condition id (`0x…`).
    pub market: String,
    /// Token id.
    pub asset_id: String,
    /// Unix ms of the last message the sim sent (or generated) for this asset.
    pub timestamp: String,
    /// The venue-compatible hash of the book at `timestamp`.
    pub hash: String,
    /// Tick size ("0.01").
    pub tick_size: Option<String>,
    /// Last trade price as the venue writes it, `""` when none.
    pub last_trade_price: String,
    /// Bids, best (highest) first.
    pub bids: Vec<TruthLevel>,
    /// Asks, best (lowest) first.
    pub asks: Vec<TruthLevel>,
}

impl TruthBook {
    /// The view of `book` stamped with `timestamp_ms` (the hash is computed at that time).
    pub fn of(book: &OrderBook, timestamp_ms: u64, hasher: &mut BookHasher) -> TruthBook {
        let text = |l: Level| TruthLevel {
            price: l.price.to_text(),
            size: l.size.to_text(),
        };
        TruthBook {
            market: book.meta().market.to_string(),
            asset_id: book.meta().asset_id.to_string(),
            timestamp: timestamp_ms.to_string(),
            hash: hasher.hex(book, timestamp_ms),
            tick_size: book.tick_size().map(Price::to_text),
            last_trade_price: book
                .last_trade()
                .map(QuotedPrice::to_text)
                .unwrap_or_default(),
            bids: book.bids().best_first().map(text).collect(),
            asks: book.asks().best_first().map(text).collect(),
        }
    }

    /// The JSON text (`GET /sim/truth/{asset_id}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One asset's true book and the time of the last message about it.
#[derive(Debug)]
pub(crate) struct TrueBook {
    book: OrderBook,
    asset: AssetId,
    last_ts: u64,
}

impl TrueBook {
    /// An empty book (load a snapshot before use).
    pub(crate) fn new(meta: BookMeta, asset_index: u32) -> TrueBook {
        TrueBook {
            book: OrderBook::new(meta),
            asset: AssetId(asset_index),
            last_ts: 0,
        }
    }

    /// The foundation book.
    pub(crate) fn book(&self) -> &OrderBook {
        &self.book
    }

    /// Records that a message about the asset was stamped `ts` (hash-free messages too).
    pub(crate) fn touch(&mut self, ts: u64) {
        self.last_ts = self.last_ts.max(ts);
    }

    fn record(&self, ts: u64, event: Event) -> Record {
        Record {
            asset: self.asset,
            exchange_ts: ts,
            received_ns: 0,
            event,
        }
    }

    /// Replaces the book with a snapshot. Returns false if the foundation rejected it (a sim
    /// bug; counted by the caller).
    pub(crate) fn load(
        &mut self,
        start: &StartBook,
        tick: Price,
        ts: u64,
        ctx: &mut CheckContext,
    ) -> bool {
        let last_trade = match start.last_trade {
            Some(q) => FieldUpdate::Set(q),
            None => FieldUpdate::Clear,
        };
        let begin = Event::BookBegin {
            bids: start.bids.len().min(usize::from(u16::MAX)) as u16,
            asks: start.asks.len().min(usize::from(u16::MAX)) as u16,
            tick_size: Some(tick),
            last_trade,
        };
        self.book.apply(&self.record(ts, begin), ctx);
        for &(price, size) in &start.bids {
            let level = Event::Level {
                side: Side::Bid,
                price,
                size,
            };
            self.book.apply(&self.record(ts, level), ctx);
        }
        for &(price, size) in &start.asks {
            let level = Event::Level {
                side: Side::Ask,
                price,
                size,
            };
            self.book.apply(&self.record(ts, level), ctx);
        }
        let step = self
            .book
            .apply(&self.record(ts, Event::BookEnd { hash: None }), ctx);
        self.touch(ts);
        matches!(step.effect, Effect::SnapshotApplied { .. })
    }

    /// The current levels and last trade as a start book (wire order).
    pub(crate) fn levels(&self) -> StartBook {
        StartBook {
            bids: self
                .book
                .bids()
                .wire_order()
                .iter()
                .map(|l| (l.price, l.size))
                .collect(),
            asks: self
                .book
                .asks()
                .wire_order()
                .iter()
                .map(|l| (l.price, l.size))
                .collect(),
            last_trade: self.book.last_trade(),
        }
    }

    /// Sets one level (a `price_change` entry). Returns false if the book refused it.
    pub(crate) fn set(
        &mut self,
        side: Side,
        price: Price,
        size: Size,
        ts: u64,
        ctx: &mut CheckContext,
    ) -> bool {
        let change = Event::Change {
            side,
            price,
            size,
            hash: None,
            bbo: Default::default(),
        };
        let step = self.book.apply(&self.record(ts, change), ctx);
        self.touch(ts);
        step.effect == Effect::Applied
    }

    /// Records a trade (`last_trade_price`): the book's last trade price becomes `price`.
    pub(crate) fn trade(
        &mut self,
        price: QuotedPrice,
        size: Size,
        side: Side,
        ts: u64,
        ctx: &mut CheckContext,
    ) {
        self.book
            .apply(&self.record(ts, Event::Trade { price, size, side }), ctx);
        self.touch(ts);
    }

    /// A `tick_size_change` followed by the fresh snapshot the venue sends: levels off the new
    /// grid are gone. Returns false if the snapshot was rejected.
    pub(crate) fn change_tick(
        &mut self,
        old: Price,
        new: Price,
        ts: u64,
        ctx: &mut CheckContext,
    ) -> bool {
        let mut levels = self.levels();
        self.book
            .apply(&self.record(ts, Event::TickSize { old, new }), ctx);
        let on_grid = |l: &(Price, Size)| l.0.raw() % new.raw() == 0;
        levels.bids.retain(on_grid);
        levels.asks.retain(on_grid);
        self.load(&levels, new, ts, ctx)
    }

    /// The owned view at the last message time.
    pub(crate) fn view(&self, hasher: &mut BookHasher) -> TruthBook {
        TruthBook::of(&self.book, self.last_ts, hasher)
    }

    /// Best bid and ask prices.
    pub(crate) fn bbo(&self) -> (Option<Price>, Option<Price>) {
        (
            self.book.best_bid().map(|l| l.price),
            self.book.best_ask().map(|l| l.price),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orderbook::CheckMode;
    use crate::sim::universe::{TICK_CENT, TICK_MILLI, price};

    fn p(raw: u32) -> Price {
        price(raw)
    }

    fn start() -> StartBook {
        StartBook {
            bids: vec![
                (p(20_000), Size::from_raw(5_000_000)),
                (p(30_000), Size::from_raw(1_000_000)),
            ],
            asks: vec![
                (p(60_000), Size::from_raw(2_000_000)),
                (p(45_000), Size::from_raw(3_000_000)),
            ],
            last_trade: None,
        }
    }

    #[test]
    fn drives_the_foundation_book() {
        let mut ctx = CheckContext::new(CheckMode::Off);
        let mut h = BookHasher::new();
        let mut t = TrueBook::new(BookMeta::new("1", "0xab"), 0);
        assert!(t.load(&start(), TICK_CENT, 10, &mut ctx));
        assert!(t.set(
            Side::Bid,
            p(40_000),
            Size::from_raw(7_000_000),
            11,
            &mut ctx
        ));
        let v = t.view(&mut h);
        assert_eq!(v.bids[0].price, "0.04");
        assert_eq!(v.asks[0].price, "0.045");
        assert_eq!(v.timestamp, "11");
        assert_eq!(v.hash.len(), 40);
        assert_eq!(v.hash, h.hex(t.book(), 11));
        // Crossed within one trade group, fine once it settles uncrossed.
        assert!(t.set(
            Side::Ask,
            p(40_000),
            Size::from_raw(1_000_000),
            12,
            &mut ctx
        ));
        assert!(t.set(Side::Bid, p(40_000), Size::ZERO, 12, &mut ctx));
        t.trade(
            QuotedPrice::canonical(p(40_000)),
            Size::from_raw(1),
            Side::Ask,
            12,
            &mut ctx,
        );
        assert!(t.set(Side::Bid, p(20_000), Size::ZERO, 13, &mut ctx));
        assert_eq!(t.view(&mut h).last_trade_price, "0.04");
    }

    #[test]
    fn tick_change_drops_off_grid_levels() {
        let mut ctx = CheckContext::new(CheckMode::Off);
        let mut t = TrueBook::new(BookMeta::new("1", "0xab"), 0);
        assert!(t.load(&start(), TICK_MILLI, 10, &mut ctx));
        assert!(t.change_tick(TICK_MILLI, TICK_CENT, 11, &mut ctx));
        let v = t.view(&mut BookHasher::new());
        assert_eq!(v.tick_size.as_deref(), Some("0.01"));
        assert_eq!(v.asks.len(), 1);
        assert!(t.set(Side::Bid, p(10_000), Size::from_raw(1), 12, &mut ctx));
    }
}
