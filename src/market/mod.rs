//! The shared vocabulary: fixed-point numbers, interned ids and the decoded record.
//!
//! Pure code used by every thread; no I/O, no clock.

pub mod id;
pub mod price;
pub mod record;
pub(crate) mod swar;

pub use id::{AssetId, AssetInterner};
pub use price::{NumberError, Price, QuotedPrice, Size};
pub use record::{Bbo, BookHash, Event, FieldUpdate, Record, Side};
