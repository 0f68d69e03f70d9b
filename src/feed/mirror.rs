//! A copy of one book rebuilt from the feed (or from the stream's snapshot and delta
//! messages), through the library's own [`OrderBook`], so that its levels and its venue hash
//! are exactly the engine's.
//!
//! Used by the stream server's thread (one per asset, to build snapshots for clients at any
//! time) and by `polypy-tail` (one per book it follows). Pure code: no I/O, no clock.

use crate::market::{AssetId, Event, FieldUpdate, Price, QuotedPrice, Record, Side, Size};
use crate::orderbook::{BookMeta, CheckContext, CheckMode, Effect, OrderBook};

/// One rebuilt book.
#[derive(Debug)]
pub struct MirrorBook {
    book: OrderBook,
    /// Levels still expected by the snapshot being received.
    left: u32,
    /// Deltas the book refused (it was not trusted); should stay 0.
    pub refused: u64,
}

/// A checking context for mirrors: hashes nothing by itself, checks nothing that matters.
pub fn mirror_context() -> CheckContext {
    CheckContext::new(CheckMode::Off)
}

impl MirrorBook {
    /// An empty book with `meta`.
    pub fn new(meta: BookMeta) -> MirrorBook {
        MirrorBook {
            book: OrderBook::new(meta),
            left: 0,
            refused: 0,
        }
    }

    /// The book.
    pub fn book(&self) -> &OrderBook {
        &self.book
    }

    /// Replaces the metadata.
    pub fn set_meta(&mut self, meta: BookMeta) {
        self.book.set_meta(meta);
    }

    /// True while a snapshot's levels are still expected.
    pub fn in_snapshot(&self) -> bool {
        self.left > 0
    }

    fn apply(&mut self, ctx: &mut CheckContext, ts: u64, event: Event) -> Effect {
        let rec = Record {
            asset: AssetId(0),
            exchange_ts: ts,
            received_ns: 0,
            event,
        };
        self.book.apply(&rec, ctx).effect
    }

    /// Starts a snapshot of `bids + asks` levels (bids first, then asks, in any order within a
    /// side). With no levels the snapshot completes at once.
    pub fn begin(
        &mut self,
        ctx: &mut CheckContext,
        ts: u64,
        bids: u32,
        asks: u32,
        tick_size: Option<Price>,
        last_trade: Option<QuotedPrice>,
    ) {
        let (b, a) = (
            u16::try_from(bids).unwrap_or(u16::MAX),
            u16::try_from(asks).unwrap_or(u16::MAX),
        );
        self.apply(
            ctx,
            ts,
            Event::BookBegin {
                bids: b,
                asks: a,
                tick_size,
                last_trade: match last_trade {
                    Some(q) => FieldUpdate::Set(q),
                    None => FieldUpdate::Clear,
                },
            },
        );
        self.left = u32::from(b) + u32::from(a);
        if self.left == 0 {
            self.apply(ctx, ts, Event::BookEnd { hash: None });
        }
    }

    /// One level of the snapshot being received; the last one completes it.
    pub fn level(&mut self, ctx: &mut CheckContext, ts: u64, side: Side, price: Price, size: Size) {
        if self.left == 0 {
            return;
        }
        self.apply(ctx, ts, Event::Level { side, price, size });
        self.left -= 1;
        if self.left == 0 {
            self.apply(ctx, ts, Event::BookEnd { hash: None });
        }
    }

    /// One level change (size zero removes the level).
    pub fn change(
        &mut self,
        ctx: &mut CheckContext,
        ts: u64,
        side: Side,
        price: Price,
        size: Size,
    ) {
        let e = self.apply(
            ctx,
            ts,
            Event::Change {
                side,
                price,
                size,
                hash: None,
                bbo: crate::market::Bbo::default(),
            },
        );
        if e == Effect::SkippedNotTrusted {
            self.refused += 1;
        }
    }

    /// A trade (sets the last trade price).
    pub fn trade(
        &mut self,
        ctx: &mut CheckContext,
        ts: u64,
        price: QuotedPrice,
        size: Size,
        side: Side,
    ) {
        self.apply(ctx, ts, Event::Trade { price, size, side });
    }

    /// A tick size change (the book waits for its next snapshot, like the engine's).
    pub fn tick_size(&mut self, ctx: &mut CheckContext, ts: u64, old: Price, new: Price) {
        self.apply(ctx, ts, Event::TickSize { old, new });
    }

    /// Settles the pending group, so the book and its hash reflect every change applied.
    pub fn settle(&mut self, ctx: &mut CheckContext) {
        let _ = self.book.settle(ctx);
    }

    /// The venue hash of the book now (40 hex digits).
    pub fn hash_hex(&self, ctx: &mut CheckContext) -> String {
        ctx.hasher.hex(&self.book, self.book.last_timestamp())
    }
}
