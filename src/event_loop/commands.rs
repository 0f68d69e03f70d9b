//! Commands other threads send to the event loop (a crossbeam channel plus the loop's
//! `mio::Waker`). Rare by design: discovery batches, token lookups for `/orderbook`, control, fresh
//! snapshots for tests and embedders. HTTP never asks for statistics or the market list:
//! the loop publishes them (`published.rs`).

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::published::Stamped;
use super::snapshot::LoopSnapshot;

use crate::market::AssetId;
use crate::registry::{AssetInfo, ConnId};

/// A request to the event loop.
#[derive(Debug)]
pub enum Command {
    /// Register (and then subscribe) these assets; known ones are updated.
    AddAssets(Vec<AssetInfo>),
    /// Stop following these tokens now (resolved or closed markets): unsubscribe them.
    ExpireTokens(Vec<String>),
    /// Resubscribe these tokens for a fresh snapshot.
    Resync(Vec<String>),
    /// Plan pending subscriptions now (seed `force_subscribe`).
    ForceSubscribe,
    /// Recycle a connection now (seed `force_recycle`).
    ForceRecycle(ConnId),
    /// Fault injection: the next frame sent on this connection fails as if its write side
    /// broke (see `Connection::inject_send_failure`).
    InjectSendFailure(ConnId),
    /// Build and publish a snapshot now, and answer with it (for callers that need the
    /// state after their own actions; HTTP reads the published one instead).
    Snapshot(Sender<Arc<Stamped<LoopSnapshot>>>),
    /// Answer with the asset id and owning worker of a token.
    Locate(String, Sender<Option<(AssetId, usize)>>),
    /// Close every connection and return from `run`.
    Stop,
}
