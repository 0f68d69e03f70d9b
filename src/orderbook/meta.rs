//! A book's static metadata ([`BookMeta`]): what the venue's hash commits to besides the
//! levels, and the candidates tried when it is not known.
//!
//! Pure data; each copy is owned by the book that carries it (a book worker thread).

use crate::market::Size;
use crate::market::price::SCALE;

/// Static facts about a book that the hash needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookMeta {
    /// Token id, as the venue writes it.
    pub asset_id: Box<str>,
    /// Condition id (`0x…`).
    pub market: Box<str>,
    /// Minimum order size (Gamma `orderMinSize`, REST `min_order_size`).
    pub min_order_size: Size,
    /// Negative-risk market (Gamma `negRisk`).
    pub neg_risk: bool,
    /// `min_order_size` and `neg_risk` are known (from Gamma, or inferred from a matching
    /// hash). `false` = assumed defaults, e.g. a market announced by `new_market`, whose
    /// notice carries neither: the first hash that disagrees is tried against
    /// [`META_CANDIDATES`] before it counts as a mismatch.
    pub known: bool,
}

/// Minimum order sizes (whole shares) tried, with both `neg_risk` values, when a book whose
/// metadata is unknown fails a hash check. Values seen on Polymarket markets.
pub const META_CANDIDATES: [u64; 8] = [5, 1, 15, 10, 20, 25, 50, 100];

impl BookMeta {
    /// Metadata with the values observed on every WebSocket book so far
    /// (`min_order_size` 5, `neg_risk` false), for assets whose Gamma record is unknown.
    pub fn new(asset_id: &str, market: &str) -> BookMeta {
        BookMeta {
            asset_id: asset_id.into(),
            market: market.into(),
            min_order_size: Size::from_raw(5 * SCALE),
            neg_risk: false,
            known: false,
        }
    }
}

impl BookMeta {
    /// Every (`min_order_size`, `neg_risk`) pair tried when the metadata is unknown:
    /// [`META_CANDIDATES`] × {false, true}, most common first.
    pub fn candidates() -> impl Iterator<Item = (Size, bool)> {
        [false, true].into_iter().flat_map(|neg_risk| {
            META_CANDIDATES
                .into_iter()
                .map(move |whole| (Size::from_raw(whole * SCALE), neg_risk))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::{AssetId, BookHash, Event, FieldUpdate, Price, Record, Side};
    use crate::orderbook::{CheckContext, CheckMode, Effect, HashVerdict, OrderBook};

    fn rec(event: Event) -> Record {
        Record {
            asset: AssetId(0),
            exchange_ts: 7,
            received_ns: 0,
            event,
        }
    }

    /// Applies a two-level snapshot ending with `hash`; returns the snapshot's verdict.
    fn snapshot(book: &mut OrderBook, ctx: &mut CheckContext, hash: Option<BookHash>) -> Effect {
        let p = |t: &str| Price::parse(t.as_bytes()).unwrap();
        let begin = Event::BookBegin {
            bids: 1,
            asks: 1,
            tick_size: Some(p("0.01")),
            last_trade: FieldUpdate::Keep,
        };
        book.apply(&rec(begin), ctx);
        for (side, price) in [(Side::Bid, "0.45"), (Side::Ask, "0.47")] {
            let size = Size::from_raw(100 * SCALE);
            book.apply(
                &rec(Event::Level {
                    side,
                    price: p(price),
                    size,
                }),
                ctx,
            );
        }
        book.apply(&rec(Event::BookEnd { hash }), ctx).effect
    }

    fn meta(min: u64, neg_risk: bool, known: bool) -> BookMeta {
        BookMeta {
            min_order_size: Size::from_raw(min * SCALE),
            neg_risk,
            known,
            ..BookMeta::new("123", "0xabc")
        }
    }

    /// The venue's hash of the test snapshot for a market with this metadata.
    fn venue_hash(ctx: &mut CheckContext, m: BookMeta) -> BookHash {
        let mut truth = OrderBook::new(m);
        snapshot(&mut truth, ctx, None);
        ctx.hasher.prefix(&truth, 7)
    }

    #[test]
    fn unknown_metadata_is_inferred_from_the_snapshot_hash() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let expected = venue_hash(&mut ctx, meta(15, true, true));
        let mut book = OrderBook::new(BookMeta::new("123", "0xabc"));
        assert!(!book.meta().known);
        let effect = snapshot(&mut book, &mut ctx, Some(expected));
        assert_eq!(
            effect,
            Effect::SnapshotApplied {
                hash: HashVerdict::MatchedInferredMeta
            }
        );
        assert_eq!(book.meta(), &meta(15, true, true));
        // Later hashes use the inferred values: the next snapshot simply matches.
        assert_eq!(
            snapshot(&mut book, &mut ctx, Some(expected)),
            Effect::SnapshotApplied {
                hash: HashVerdict::Matched
            }
        );
        // An unknown refresh (a later notice) does not undo what the hash proved.
        book.set_meta(BookMeta::new("123", "0xabc"));
        assert_eq!(book.meta(), &meta(15, true, true));
    }

    #[test]
    fn default_metadata_that_matches_becomes_known() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let expected = venue_hash(&mut ctx, meta(5, false, true));
        let mut book = OrderBook::new(BookMeta::new("123", "0xabc"));
        let effect = snapshot(&mut book, &mut ctx, Some(expected));
        assert_eq!(
            effect,
            Effect::SnapshotApplied {
                hash: HashVerdict::Matched
            }
        );
        assert!(book.meta().known);
    }

    #[test]
    fn known_metadata_is_never_guessed_and_a_real_mismatch_stays_one() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let expected = venue_hash(&mut ctx, meta(15, true, true));
        // Gamma said 5 / false: the disagreement is the venue's or ours, not missing data.
        let mut known = OrderBook::new(meta(5, false, true));
        assert_eq!(
            snapshot(&mut known, &mut ctx, Some(expected)),
            Effect::SnapshotApplied {
                hash: HashVerdict::Mismatch
            }
        );
        assert_eq!(known.meta(), &meta(5, false, true));
        // Unknown metadata, but no candidate explains the hash: a mismatch, values unchanged.
        let mut unknown = OrderBook::new(BookMeta::new("123", "0xabc"));
        let other = venue_hash(&mut ctx, meta(7, true, true));
        assert_eq!(
            snapshot(&mut unknown, &mut ctx, Some(other)),
            Effect::SnapshotApplied {
                hash: HashVerdict::Mismatch
            }
        );
        assert_eq!(unknown.meta(), &BookMeta::new("123", "0xabc"));
    }
}
