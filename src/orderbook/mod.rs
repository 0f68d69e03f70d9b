//! Order books: one asset's L2 state, its trust, and the venue-compatible hash.
//!
//! Pure data structures; each book is owned by exactly one book worker thread.

pub mod book;
pub mod hash;
pub mod ladder;

pub use book::{
    BookMeta, CheckContext, CheckMode, Effect, HashVerdict, OrderBook, Step, UntrustReason, Verdict,
};
pub use hash::BookHasher;
pub use ladder::{Ladder, Level};
