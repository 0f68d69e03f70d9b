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
//! | [`venue`] | wire decoding of the market channel, subscribe frames, Gamma parsing | event loop (pure) |
//! | [`orderbook`] | one asset's book, trust and hash | its book worker (pure) |
//! | [`registry`] | every known asset: identity, owner connection, lifecycle | event loop |
//! | [`pool`] | planning which connection subscribes which assets | event loop (pure) |
//! | [`connection`] | WebSocket connections (TCP/TLS/upgrade, keep-alive, reconnect scheduling) | event loop |
//! | [`event_loop`] | the mio loop: frames → records → router; watchdogs, resyncs, recycling | event loop |
//! | [`handoff`] | the rings' producers, asset → worker routing, backpressure | event loop |
//! | [`worker`] | a shard's books, checks, handler calls, stats, queries | its book worker |
//! | [`pinning`] | core placement of hot threads | each hot thread, at start |
//! | [`discovery`] | Gamma scans, market diffs, expiry dates | discovery thread |
//! | [`engine`] | start-up and shutdown order of all threads, the handle the API uses | caller |
//! | [`http`] | the HTTP API | HTTP thread |
//! | [`config`], [`cli`] | settings and the command line | main |
//! | [`app`] | the orchestrator: start order, signals, progress, HTTP wiring | main |
//! | [`recording`] | the recording format; the engine's recorder thread | recorder / replay |
//! | [`replay`] | `--replay`: the feeder that serves the engine from a recording | replay |
//! | [`sim`] | the simulated exchange (WebSocket, Gamma, CLOB REST, truth, faults) | its own threads |

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod connection;
pub mod discovery;
pub mod engine;
pub mod event_loop;
pub mod feed;
pub mod handoff;
pub mod http;
pub mod market;
pub mod nats;
pub mod orderbook;
pub mod pinning;
pub mod pool;
pub mod recording;
pub mod recycler;
pub mod registry;
pub mod replay;
pub mod shard;
pub mod sim;
pub mod stream;
pub mod venue;
pub mod watchdog;
pub mod worker;
