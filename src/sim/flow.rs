//! The order-flow model: what happens next to a market's YES book.
//!
//! Each step is one level change (a new order, a cancel, a partial cancel) or a trade (a taker
//! order sweeping one to three levels, its remainder resting at its limit). Changes are planned
//! on the YES book only; the core mirrors them onto the NO book (YES BUY p ⇔ NO SELL 1−p, same
//! size), as the venue does. Quotes drift towards the market's `fair` price, so books wander
//! but stay put on average, and markets near 0/1 cross the 0.04/0.96 tick thresholds.
//!
//! Invariants the planner keeps (the truth book relies on them): prices are on the tick grid
//! inside `[tick, 1 − tick]`; a quote never crosses the book; every side keeps at least two
//! levels (one for a trade's maker side); a trade's final state is never crossed.
//!
//! Pure (the RNG is handed in); called by the core thread.

use super::universe::{TICK_CENT, TICK_MILLI, price, random_size};
use crate::market::price::SCALE;
use crate::market::{Price, Side, Size};
use crate::orderbook::{Level, OrderBook};

/// One level change on the YES book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    /// Side of the level.
    pub(crate) side: Side,
    /// Price.
    pub(crate) price: Price,
    /// New aggregate size; zero removes the level.
    pub(crate) size: Size,
}

/// A taker order against the YES book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trade {
    /// The taker's side on YES: `Ask` sells YES into the bids, `Bid` buys the asks.
    pub(crate) taker: Side,
    /// The unfilled remainder, resting on the taker's side at its limit price.
    pub(crate) rest: Option<Change>,
    /// Maker levels consumed, best first, with their new sizes (zero when used up).
    pub(crate) fills: Vec<Change>,
    /// The last (worst) fill price: the new last trade price.
    pub(crate) price: Price,
    /// Total size filled.
    pub(crate) size: Size,
}

/// What the flow does next to a market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// One to three level changes in one `price_change` message; plan each after applying the
    /// previous one ([`plan_change`]).
    Quote {
        /// Number of changes in the message.
        changes: usize,
    },
    /// A trade.
    Trade(Trade),
}

fn level_at(levels: &[Level], best_first_index: usize) -> Option<Level> {
    levels
        .len()
        .checked_sub(best_first_index + 1)
        .map(|i| levels[i])
}

fn mid(book: &OrderBook) -> Option<u32> {
    Some((book.best_bid()?.price.raw() + book.best_ask()?.price.raw()) / 2)
}

/// Decides the next step for a market (`trade_percent` of steps are trades when possible).
pub(crate) fn plan_step(
    rng: &mut fastrand::Rng,
    yes: &OrderBook,
    fair: Price,
    trade_percent: u32,
) -> Step {
    if rng.u32(..100) < trade_percent {
        if let Some(trade) = plan_trade(rng, yes, fair) {
            return Step::Trade(trade);
        }
    }
    let changes = match rng.u32(..20) {
        0 => 3,
        1..=2 => 2,
        _ => 1,
    };
    Step::Quote { changes }
}

/// Plans one level change on the YES book (never crossing it).
pub(crate) fn plan_change(
    rng: &mut fastrand::Rng,
    yes: &OrderBook,
    tick: Price,
    fair: Price,
) -> Option<Change> {
    let best_bid = yes.best_bid()?.price.raw();
    let best_ask = yes.best_ask()?.price.raw();
    let t = tick.raw();
    let side = if rng.bool() { Side::Bid } else { Side::Ask };
    let levels = match side {
        Side::Bid => yes.bids().wire_order(),
        Side::Ask => yes.asks().wire_order(),
    };
    let kind = rng.u32(..100);
    if kind < 50 {
        // A new order at or near the touch; improving towards `fair` more often.
        let m = mid(yes).unwrap_or(fair.raw());
        let towards = match side {
            Side::Bid => m < fair.raw(),
            Side::Ask => m > fair.raw(),
        };
        let improve = rng.u32(..100) < if towards { 35 } else { 8 };
        let depth = match rng.u32(..10) {
            0..=3 => 0,
            4..=6 => 1,
            _ => rng.u32(2..6),
        };
        let raw = match (side, improve) {
            (Side::Bid, true) => best_bid + t,
            (Side::Bid, false) => best_bid.saturating_sub(depth * t),
            (Side::Ask, true) => best_ask.saturating_sub(t),
            (Side::Ask, false) => best_ask + depth * t,
        };
        let ok = raw >= t
            && raw <= SCALE as u32 - t
            && raw % t == 0
            && match side {
                Side::Bid => raw < best_ask,
                Side::Ask => raw > best_bid,
            };
        if !ok {
            return None;
        }
        let p = price(raw);
        let existing = match side {
            Side::Bid => yes.bids().size_at(p),
            Side::Ask => yes.asks().size_at(p),
        };
        let add = random_size(rng, 1, 2_000);
        return Some(Change {
            side,
            price: p,
            size: Size::from_raw(existing.raw() + add.raw()),
        });
    }
    if kind < 85 {
        // A cancel or partial cancel near the touch.
        let n = levels.len();
        let l = level_at(levels, rng.usize(..n.clamp(1, 5)))?;
        let size = if n > 2 && rng.bool() {
            Size::ZERO
        } else {
            let keep = l.size.raw() / 10 * u64::from(rng.u32(1..10)) / 10_000 * 10_000;
            Size::from_raw(keep.max(10_000))
        };
        return Some(Change {
            side,
            price: l.price,
            size,
        });
    }
    // A size change anywhere in the book.
    let l = level_at(levels, rng.usize(..levels.len().max(1)))?;
    Some(Change {
        side,
        price: l.price,
        size: random_size(rng, 5, 5_000),
    })
}

/// Plans a taker order that consumes one to three maker levels, keeping at least one.
pub(crate) fn plan_trade(rng: &mut fastrand::Rng, yes: &OrderBook, fair: Price) -> Option<Trade> {
    let m = mid(yes)?;
    // Takers push the price back towards fair: sellers when it is above.
    let sell_percent = if m > fair.raw() { 65 } else { 35 };
    let taker = if rng.u32(..100) < sell_percent {
        Side::Ask
    } else {
        Side::Bid
    };
    let makers = match taker {
        Side::Ask => yes.bids().wire_order(),
        Side::Bid => yes.asks().wire_order(),
    };
    if makers.len() < 2 {
        return None;
    }
    let k = rng.usize(1..=3.min(makers.len() - 1));
    let mut fills = Vec::with_capacity(k);
    let mut filled = 0u64;
    let mut last = None;
    for i in 0..k {
        let l = level_at(makers, i)?;
        let partial = i + 1 == k && rng.u32(..10) < 4 && l.size.raw() >= 20_000;
        let left = if partial {
            let left = l.size.raw() / 10 * u64::from(rng.u32(1..10)) / 10_000 * 10_000;
            left.clamp(10_000, l.size.raw() - 10_000)
        } else {
            0
        };
        filled += l.size.raw() - left;
        fills.push(Change {
            side: taker.opposite(),
            price: l.price,
            size: Size::from_raw(left),
        });
        last = Some((l.price, left));
    }
    let (limit, left_at_limit) = last?;
    let rest = (left_at_limit == 0 && rng.u32(..10) < 4).then(|| Change {
        side: taker,
        price: limit,
        size: random_size(rng, 1, 500),
    });
    Some(Trade {
        taker,
        rest,
        fills,
        price: limit,
        size: Size::from_raw(filled),
    })
}

/// The tick a market should trade on given its YES touch: cent-tick markets move to the milli
/// tick below 0.04 / above 0.96 and back once inside 0.05..0.95 (docs/venue-protocol.md §3.3).
pub(crate) fn wanted_tick(
    base: Price,
    current: Price,
    best_bid: Option<Price>,
    best_ask: Option<Price>,
) -> Option<Price> {
    if base != TICK_CENT {
        return None;
    }
    let (bid, ask) = (best_bid?.raw(), best_ask?.raw());
    if current == TICK_CENT && (bid < 40_000 || ask > 960_000) {
        Some(TICK_MILLI)
    } else if current == TICK_MILLI && bid >= 50_000 && ask <= 950_000 {
        Some(TICK_CENT)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orderbook::{BookMeta, CheckContext, CheckMode};
    use crate::sim::truth::TrueBook;
    use crate::sim::universe::{TICK_QUARTER_CENT, start_book};

    /// Runs the planner against a real book and checks the invariants after every step.
    #[test]
    fn planner_keeps_books_valid() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut ctx = CheckContext::new(CheckMode::Off);
        for (n, tick) in [TICK_CENT, TICK_MILLI, TICK_QUARTER_CENT]
            .into_iter()
            .enumerate()
        {
            let fair = price(rng.u32(30_000..970_000) / tick.raw() * tick.raw());
            let mut t = TrueBook::new(BookMeta::new("1", "0x1"), 0);
            assert!(t.load(&start_book(&mut rng, tick, fair), tick, 1, &mut ctx));
            let mut trades = 0;
            for i in 0..5_000u64 {
                let ts = 2 + i + n as u64 * 10_000;
                match plan_step(&mut rng, t.book(), fair, 10) {
                    Step::Quote { changes } => {
                        for _ in 0..changes {
                            if let Some(c) = plan_change(&mut rng, t.book(), tick, fair) {
                                assert_eq!(c.price.raw() % tick.raw(), 0);
                                assert!(t.set(c.side, c.price, c.size, ts, &mut ctx));
                                let (b, a) = t.bbo();
                                assert!(b.unwrap() < a.unwrap(), "quote crossed the book");
                            }
                        }
                    }
                    Step::Trade(tr) => {
                        trades += 1;
                        for c in tr.rest.iter().chain(&tr.fills) {
                            assert!(t.set(c.side, c.price, c.size, ts, &mut ctx));
                        }
                        let (b, a) = t.bbo();
                        assert!(b.unwrap() < a.unwrap(), "trade left the book crossed");
                    }
                }
                assert!(t.book().is_trusted());
                assert!(!t.book().bids().is_empty() && !t.book().asks().is_empty());
            }
            assert!(trades > 300);
        }
    }

    #[test]
    fn tick_thresholds() {
        let p = price;
        assert_eq!(
            wanted_tick(TICK_CENT, TICK_CENT, Some(p(30_000)), Some(p(50_000))),
            Some(TICK_MILLI)
        );
        assert_eq!(
            wanted_tick(TICK_CENT, TICK_CENT, Some(p(500_000)), Some(p(970_000))),
            Some(TICK_MILLI)
        );
        assert_eq!(
            wanted_tick(TICK_CENT, TICK_MILLI, Some(p(60_000)), Some(p(70_000))),
            Some(TICK_CENT)
        );
        assert_eq!(
            wanted_tick(TICK_CENT, TICK_MILLI, Some(p(45_000)), Some(p(70_000))),
            None
        );
        assert_eq!(
            wanted_tick(TICK_MILLI, TICK_MILLI, Some(p(10_000)), Some(p(20_000))),
            None
        );
    }
}
