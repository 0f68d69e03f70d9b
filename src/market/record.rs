//! The compact record every decoded market-channel message becomes.
//!
//! A [`Record`] is `Copy` and at most 64 bytes, so batches of them cross threads through
//! rtrb rings without allocation. A `book` snapshot becomes a [`Event::BookBegin`], one
//! [`Event::Level`] per level in wire order, and a [`Event::BookEnd`]; a `price_change`
//! becomes one [`Event::Change`] per entry (entries of one message may name different
//! assets).

use std::num::NonZeroU64;

use super::id::AssetId;
use super::price::{Price, QuotedPrice, Size};
use super::swar;

/// Book side. BUY orders rest on the bids, SELL orders on the asks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum Side {
    /// Bids ("BUY").
    Bid = 0,
    /// Asks ("SELL").
    Ask = 1,
}

impl Side {
    /// Parses the venue's "BUY" / "SELL".
    pub fn parse(text: &[u8]) -> Option<Side> {
        match text {
            b"BUY" => Some(Side::Bid),
            b"SELL" => Some(Side::Ask),
            _ => None,
        }
    }

    /// The venue's text for the side.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Bid => "BUY",
            Side::Ask => "SELL",
        }
    }

    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Bid => Side::Ask,
            Side::Ask => Side::Bid,
        }
    }
}

/// The first 8 bytes of a book hash (SHA1), never zero.
///
/// A 64-bit prefix detects a diverged book with a false-match probability of 2^-64 and keeps
/// records small. Both the venue's hex hash and our own digest go through
/// [`BookHash::from_digest`], so the zero remapping is consistent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BookHash(NonZeroU64);

impl BookHash {
    /// From the first bytes of a SHA1 digest.
    pub fn from_digest(digest: &[u8]) -> BookHash {
        let mut b = [0u8; 8];
        let n = digest.len().min(8);
        b[..n].copy_from_slice(&digest[..n]);
        let v = u64::from_be_bytes(b);
        BookHash(NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN))
    }

    /// Parses a 40-hex-digit hash as sent by the venue. Anything else (the docs' placeholder
    /// "0xabc123...", synthetic fixtures) yields `None`: such a hash cannot be verified.
    #[inline]
    pub fn parse_hex(text: &[u8]) -> Option<BookHash> {
        // Five words of 8 hex digits (`swar::hex8`): every one must be hex, the first two
        // are the prefix. A word at a time, since every `price_change` entry carries one.
        let text: &[u8; 40] = text.try_into().ok()?;
        let word = |k: usize| {
            text.get(k * 8..)
                .and_then(|r| r.first_chunk::<8>())
                .map(|c| u64::from_le_bytes(*c))
        };
        let hi = swar::hex8(word(0)?)?;
        let lo = swar::hex8(word(1)?)?;
        for k in 2..5 {
            swar::hex8(word(k)?)?;
        }
        let prefix = (u64::from(hi) << 32) | u64::from(lo);
        Some(BookHash::from_digest(&prefix.to_be_bytes()))
    }

    /// The prefix as an integer.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

/// A field that a message may set, clear (`""`) or leave out.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum FieldUpdate<T> {
    /// The message does not carry the field: keep the current value.
    #[default]
    Keep,
    /// The field is present and empty (`""`): no value.
    Clear,
    /// The field carries a value.
    Set(T),
}

/// What one record says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Start of a `book` snapshot; `bids` + `asks` [`Event::Level`]s follow, then
    /// [`Event::BookEnd`].
    BookBegin {
        /// Bid levels that follow.
        bids: u16,
        /// Ask levels that follow.
        asks: u16,
        /// `tick_size`, when the message carries it.
        tick_size: Option<Price>,
        /// `last_trade_price` ("" clears it).
        last_trade: FieldUpdate<QuotedPrice>,
    },
    /// One level of the snapshot, in wire order (bids ascending, asks descending).
    Level {
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// Size (never zero in a snapshot).
        size: Size,
    },
    /// End of the snapshot, with the hash the venue sent for it.
    BookEnd {
        /// The snapshot's hash.
        hash: Option<BookHash>,
    },
    /// One `price_change` entry: set the level's aggregate size (zero removes it).
    Change {
        /// Side.
        side: Side,
        /// Level price.
        price: Price,
        /// New aggregate size; zero removes the level.
        size: Size,
        /// Hash of the asset's whole book after this entry.
        hash: Option<BookHash>,
        /// Best bid and ask after this entry, as the venue states them.
        bbo: Bbo,
    },
    /// `tick_size_change`: the book must wait for a fresh snapshot.
    TickSize {
        /// Previous tick.
        old: Price,
        /// New tick.
        new: Price,
    },
    /// `last_trade_price`.
    Trade {
        /// Trade price as written.
        price: QuotedPrice,
        /// Trade size.
        size: Size,
        /// Taker side.
        side: Side,
    },
    /// `best_bid_ask` (custom feature).
    BestBidAsk {
        /// Best bid and ask.
        bbo: Bbo,
    },
}

/// Best bid and ask as a message states them; either may be absent or empty.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Bbo {
    /// Best bid: `Keep` when the field is absent, `Clear` for an empty side.
    pub bid: FieldUpdate<Price>,
    /// Best ask.
    pub ask: FieldUpdate<Price>,
}

/// One decoded fact about one asset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record {
    /// The asset.
    pub asset: AssetId,
    /// Exchange timestamp, Unix milliseconds.
    pub exchange_ts: u64,
    /// Receive time of the frame, nanoseconds on the engine's clock.
    pub received_ns: u64,
    /// What happened.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digit-by-digit parser `parse_hex` replaced, as the reference.
    fn parse_hex_reference(text: &[u8]) -> Option<BookHash> {
        fn hex_val(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            }
        }
        if text.len() != 40 {
            return None;
        }
        let mut digest = [0u8; 8];
        for (i, pair) in text[..16].chunks_exact(2).enumerate() {
            digest[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        if !text[16..].iter().all(|b| hex_val(*b).is_some()) {
            return None;
        }
        Some(BookHash::from_digest(&digest))
    }

    #[test]
    fn parse_hex_agrees_with_a_digit_by_digit_reference() {
        let base = b"9e4f2ff8ba2be56177e8bdc8623dfaba4d18f5c8";
        let check = |t: &[u8]| {
            assert_eq!(
                BookHash::parse_hex(t),
                parse_hex_reference(t),
                "{}",
                String::from_utf8_lossy(t)
            );
        };
        check(base);
        check(b"0000000000000000000000000000000000000000");
        check(b"ffffffffffffffffffffffffffffffffffffffff");
        check(b"FFFFFFFFFFFFFFFFaBcDeF0123456789ABCDEFab");
        // Every byte value at every position.
        for pos in 0..40 {
            for v in 0..=255u8 {
                let mut t = *base;
                t[pos] = v;
                check(&t);
            }
        }
        // Every length around 40, and pseudo-random hex with mixed case.
        for n in 0..=48 {
            check(&b"0123456789abcdefABCDEF0123456789abcdef0123456789"[..n]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut t = [0u8; 40];
            for c in &mut t {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = b"0123456789abcdefABCDEF"[(x % 22) as usize];
            }
            check(&t);
        }
    }

    #[test]
    fn record_fits_a_cache_line() {
        assert!(
            std::mem::size_of::<Record>() <= 64,
            "{}",
            std::mem::size_of::<Record>()
        );
    }

    #[test]
    fn parses_hex_hashes() {
        let h = BookHash::parse_hex(b"5511583ad6f3eb4678e0a374e0cc2bd3b1975d07").unwrap();
        assert_eq!(h.get(), 0x5511583ad6f3eb46);
        assert_eq!(BookHash::parse_hex(b"0xhash001"), None);
        assert_eq!(
            BookHash::parse_hex(b"5511583ad6f3eb4678e0a374e0cc2bd3b1975d0z"),
            None
        );
        assert_eq!(
            BookHash::parse_hex(b"0000000000000000000000000000000000000000").map(BookHash::get),
            Some(1)
        );
    }
}
