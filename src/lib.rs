//! polypy: live, verified L2 order books for every active Polymarket outcome token.
//!
//! The crate is a thread-per-core synchronous engine (see `docs/ARCHITECTURE.md`):
//! a mio event loop owns every WebSocket connection, decodes each frame once into compact
//! [`market::Record`]s, and hands them over lock-free rings to pinned book workers that own
//! the [`orderbook::OrderBook`]s of their shard.
//!
//! | module | owns | thread |
//! |---|---|---|
//! | [`connection`] | WebSocket connections (TCP/TLS/upgrade, keep-alive, reconnect scheduling) | event loop |
//! | [`market`] | fixed-point numbers, interned ids, the record | any (pure) |
//! | [`venue`] | wire decoding of the market channel | event loop (pure) |
//! | [`orderbook`] | one asset's book, trust and hash | its book worker (pure) |
//! | [`recording`] | the raw-frame recording format | recorder / replay |
//! | [`handoff`] | the rings' producers, asset → worker routing, backpressure | event loop |
//! | [`worker`] | a shard's books, checks, handler calls, stats, queries | its book worker |
//! | [`pinning`] | core placement of hot threads | each hot thread, at start |

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod connection;
pub mod discovery;
pub mod event_loop;
pub mod handoff;
pub mod http;
pub mod market;
pub mod orderbook;
pub mod pinning;
pub mod pool;
pub mod recording;
pub mod registry;
pub mod venue;
pub mod worker;
