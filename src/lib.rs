//! polypy: live, verified L2 order books for every active Polymarket outcome token.
//!
//! The crate is a thread-per-core synchronous engine (see `docs/ARCHITECTURE.md`):
//! a mio event loop owns every WebSocket connection, decodes each frame once into compact
//! [`market::Record`]s, and hands them over lock-free rings to pinned book workers that own
//! the [`orderbook::OrderBook`]s of their shard.
//!
//! | module | owns | thread |
//! |---|---|---|
//! | [`market`] | fixed-point numbers, interned ids, the record | any (pure) |
//! | [`venue`] | wire decoding of the market channel | event loop (pure) |
//! | [`orderbook`] | one asset's book, trust and hash | its book worker (pure) |
//! | [`recording`] | the raw-frame recording format | recorder / replay |
//! | [`sim`] | the simulated exchange (WebSocket, Gamma, CLOB REST, truth, faults) | its own threads |

#![warn(missing_docs)]

pub mod market;
pub mod orderbook;
pub mod recording;
pub mod sim;
pub mod venue;
