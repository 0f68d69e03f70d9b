//! User callbacks run by a book worker, and the per-worker factory that makes them.
//!
//! Each book worker thread owns one [`Handler`], created by the [`HandlerFactory`] with the
//! worker's index, and calls it synchronously after each record changed one of its books.
//! A handler runs on the hot path and must not block. The same failure behaviour holds in
//! every build profile (docs/ARCHITECTURE.md, "When a book worker fails"): a handler that
//! panics ends its worker alone (the engine keeps running and `/health` reports 503 for
//! good); a handler that blocks stops the worker's heartbeat, and after the heartbeat
//! timeout `/health` reports 503 until it returns. See `WorkerHandle::is_alive`.
//!
//! Call order per record: first the content callback (`on_snapshot`, `on_change`,
//! `on_trade`, `on_tick_size`), then `on_trust_change` if the record changed the book's
//! trust. The transient untrusted state while a fresh snapshot of a trusted book is being
//! received is not reported; a book that loses trust reports `trusted == false` with the
//! reason, and `trusted == true` when a later snapshot restores it.

use std::sync::Arc;

use crate::market::{AssetId, Record};
use crate::orderbook::{OrderBook, UntrustReason};

/// Callbacks from a book worker. Every method has a no-op default.
///
/// Called on the worker's hot path: return quickly and never block. A panic here ends the
/// worker (the engine stays up and reports 503); blocking stops its heartbeat (503 after the
/// heartbeat timeout, until the call returns). Both hold in every build profile.
pub trait Handler: Send {
    /// A complete `book` snapshot was applied; the book is trusted.
    fn on_snapshot(&mut self, _asset: AssetId, _book: &OrderBook) {}
    /// The same event with the record that completed the snapshot (its venue timestamp and
    /// receive time). The worker calls this one; by default it calls
    /// [`on_snapshot`](Self::on_snapshot).
    fn on_snapshot_record(&mut self, asset: AssetId, _rec: &Record, book: &OrderBook) {
        self.on_snapshot(asset, book);
    }
    /// A `price_change` entry ([`Event::Change`](crate::market::Event::Change)) was applied.
    fn on_change(&mut self, _asset: AssetId, _rec: &Record, _book: &OrderBook) {}
    /// A `last_trade_price` ([`Event::Trade`](crate::market::Event::Trade)) was recorded.
    fn on_trade(&mut self, _asset: AssetId, _rec: &Record, _book: &OrderBook) {}
    /// A `tick_size_change` ([`Event::TickSize`](crate::market::Event::TickSize)); the book
    /// is untrusted until its next snapshot.
    fn on_tick_size(&mut self, _asset: AssetId, _rec: &Record, _book: &OrderBook) {}
    /// The book became trusted (`reason == None`) or untrusted (with the reason).
    fn on_trust_change(&mut self, _asset: AssetId, _trusted: bool, _reason: Option<UntrustReason>) {
    }
    /// The book was removed (its market expired and the cleanup grace passed).
    fn on_remove(&mut self, _asset: AssetId) {}
    /// Called once after each chunk of ring items and after each settle scan, with read
    /// access to every book of the worker (the feed publisher republishes the books it could
    /// not publish, and wakes its consumer once per chunk).
    fn on_flush(&mut self, _books: &dyn BookLookup) {}
}

/// Read access to the books of one worker, given to [`Handler::on_flush`].
pub trait BookLookup {
    /// The book of `asset`, when this worker owns one.
    fn book(&self, asset: AssetId) -> Option<&OrderBook>;
}

/// Makes the handler of worker `i`; called once per worker.
pub type HandlerFactory = Arc<dyn Fn(usize) -> Box<dyn Handler> + Send + Sync>;

/// A handler that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopHandler;

impl Handler for NoopHandler {}

/// A factory of [`NoopHandler`]s.
pub fn noop_factory() -> HandlerFactory {
    Arc::new(|_| Box::new(NoopHandler))
}
