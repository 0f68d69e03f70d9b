//! The venue's wire protocol (Polymarket CLOB market channel): bytes in, records out.
//!
//! Pure: no I/O, no clock. See `docs/venue-protocol.md` for the facts encoded here.

pub mod decode;
mod fast;
pub mod gamma;
pub mod json;
pub mod subscribe;

pub use decode::{
    AssetResolver, DecodeError, DecodeOutput, Decoder, Failure, FrameKind, FrameStats, Notice,
};
