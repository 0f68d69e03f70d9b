//! Owned, serialisable views of a book for dumps, HTTP answers and the simulator's truth.
//!
//! Built off the hot path (on query); every price and size is the venue's canonical text.

use serde::Serialize;

use super::book::OrderBook;
use super::hash::BookHasher;

/// One level as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LevelText {
    /// Price, canonical decimal.
    pub price: String,
    /// Size, canonical decimal.
    pub size: String,
}

/// A book as `polypy-replay --dump-books` writes it (one entry, keyed by asset id outside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BookDump {
    /// Condition id.
    pub market: String,
    /// Exchange timestamp of the last update, Unix ms, as a string.
    pub timestamp: String,
    /// The venue-compatible hash at that timestamp.
    pub hash: String,
    /// Tick size, when known.
    pub tick_size: Option<String>,
    /// Bids, best first.
    pub bids: Vec<LevelText>,
    /// Asks, best first.
    pub asks: Vec<LevelText>,
}

impl BookDump {
    /// Dumps `book` with all levels.
    pub fn of(book: &OrderBook, hasher: &mut BookHasher) -> BookDump {
        let text = |l: super::ladder::Level| LevelText {
            price: l.price.to_text(),
            size: l.size.to_text(),
        };
        BookDump {
            market: book.meta().market.to_string(),
            timestamp: book.last_timestamp().to_string(),
            hash: hasher.hex(book, book.last_timestamp()),
            tick_size: book.tick_size().map(|t| t.to_text()),
            bids: book.bids().best_first().map(text).collect(),
            asks: book.asks().best_first().map(text).collect(),
        }
    }
}
