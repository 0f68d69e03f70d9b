//! Order books: one asset's L2 state, its trust, and the venue-compatible hash.
//!
//! Pure data structures; each book is owned by exactly one book worker thread.

pub mod book;
pub mod hash;
pub mod ladder;
pub mod meta;
pub mod view;

pub use book::{
    CheckContext, CheckMode, Effect, HashVerdict, OrderBook, Step, UntrustReason, Verdict,
};
pub use hash::BookHasher;
pub use ladder::{Ladder, Level};
pub use meta::{BookMeta, META_CANDIDATES};
pub use view::{BookDump, LevelText};
