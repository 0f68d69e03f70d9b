//! Book queries: any thread asks the owning worker for an owned copy of one book.
//!
//! The asking thread (HTTP, embedding code) sends a [`BookQuery`] on the worker's bounded
//! query channel, unparks the worker, and waits for the reply with a deadline
//! ([`BookQuerier::query`]). The worker polls its query channel once per loop iteration with
//! `try_recv`, builds a [`BookView`] (allocates; queries are not per message) and replies.
//! Books never leave their worker; only copies do.

use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use serde::{Serialize, Serializer};

use crate::market::{AssetId, Price, QuotedPrice, Size};
use crate::orderbook::{BookHasher, Level, OrderBook, UntrustReason};

/// A request for a copy of `asset`'s book, best `depth` levels per side.
#[derive(Debug)]
pub struct BookQuery {
    /// The asset.
    pub asset: AssetId,
    /// Levels per side (best first).
    pub depth: usize,
    /// Where the worker sends the answer (`None`: it has no book for the asset).
    pub reply: Sender<Option<BookView>>,
}

/// Why a query got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The worker did not answer within the deadline (overloaded or stalled). Retry later;
    /// the worker's heartbeat tells whether it is alive.
    #[error("worker {worker} did not answer within the deadline")]
    Timeout {
        /// The worker.
        worker: usize,
    },
    /// The worker is gone (shut down or panicked). The engine is unhealthy.
    #[error("worker {worker} is gone")]
    Disconnected {
        /// The worker.
        worker: usize,
    },
}

/// An owned snapshot of one book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookView {
    /// Interned id.
    #[serde(skip)]
    pub asset: AssetId,
    /// Token id text.
    pub asset_id: String,
    /// Condition id.
    pub market: String,
    /// The worker that owns the book.
    pub worker: usize,
    /// True when trusted.
    pub trusted: bool,
    /// Why not trusted.
    #[serde(serialize_with = "ser_reason")]
    pub reason: Option<UntrustReason>,
    /// Exchange timestamp (ms) of the last record applied.
    pub timestamp: u64,
    /// The book's hash at `timestamp`, 40 hex digits, as the venue computes it.
    pub hash: String,
    /// Tick size.
    #[serde(serialize_with = "ser_opt_price")]
    pub tick_size: Option<Price>,
    /// Bids, best first, at most `depth`.
    #[serde(serialize_with = "ser_levels")]
    pub bids: Vec<Level>,
    /// Asks, best first, at most `depth`.
    #[serde(serialize_with = "ser_levels")]
    pub asks: Vec<Level>,
    /// Best bid.
    #[serde(serialize_with = "ser_opt_level")]
    pub best_bid: Option<Level>,
    /// Best ask.
    #[serde(serialize_with = "ser_opt_level")]
    pub best_ask: Option<Level>,
    /// Bid levels in the whole book.
    pub bid_depth: usize,
    /// Ask levels in the whole book.
    pub ask_depth: usize,
    /// Last trade price, as the venue wrote it.
    #[serde(serialize_with = "ser_opt_quoted")]
    pub last_trade: Option<QuotedPrice>,
    /// Deltas applied since the book was created.
    pub update_count: u64,
}

impl BookView {
    /// Copies `book` (best `depth` levels per side) and computes its hash with `hasher`.
    pub fn of(
        asset: AssetId,
        worker: usize,
        book: &OrderBook,
        depth: usize,
        hasher: &mut BookHasher,
    ) -> BookView {
        let meta = book.meta();
        BookView {
            asset,
            asset_id: meta.asset_id.to_string(),
            market: meta.market.to_string(),
            worker,
            trusted: book.is_trusted(),
            reason: book.trust().err(),
            timestamp: book.last_timestamp(),
            hash: hasher.hex(book, book.last_timestamp()),
            tick_size: book.tick_size(),
            bids: book.bids().best_first().take(depth).collect(),
            asks: book.asks().best_first().take(depth).collect(),
            best_bid: book.best_bid(),
            best_ask: book.best_ask(),
            bid_depth: book.bids().len(),
            ask_depth: book.asks().len(),
            last_trade: book.last_trade(),
            update_count: book.update_count(),
        }
    }
}

fn ser_reason<S: Serializer>(r: &Option<UntrustReason>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&r.map(UntrustReason::as_str))
}

fn ser_opt_price<S: Serializer>(p: &Option<Price>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&p.map(Price::to_text))
}

fn ser_opt_quoted<S: Serializer>(p: &Option<QuotedPrice>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&p.map(QuotedPrice::to_text))
}

#[derive(Serialize)]
struct LevelText {
    price: String,
    size: String,
}

fn level_text(l: &Level) -> LevelText {
    LevelText {
        price: l.price.to_text(),
        size: Size::to_text(l.size),
    }
}

fn ser_levels<S: Serializer>(levels: &[Level], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(levels.iter().map(level_text))
}

fn ser_opt_level<S: Serializer>(l: &Option<Level>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&l.as_ref().map(level_text))
}

/// A cloneable handle that queries one worker; give one to the HTTP thread.
#[derive(Debug, Clone)]
pub struct BookQuerier {
    worker: usize,
    tx: Sender<BookQuery>,
    thread: Option<Thread>,
}

impl BookQuerier {
    pub(crate) fn new(worker: usize, tx: Sender<BookQuery>, thread: Option<Thread>) -> BookQuerier {
        BookQuerier { worker, tx, thread }
    }

    /// The worker this querier asks.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// A copy of `asset`'s book (best `depth` levels per side), or `None` if the worker has no
    /// book for it. Waits at most `deadline` in total. Allocates (one reply channel).
    ///
    /// # Errors
    /// [`QueryError::Timeout`] when the worker did not answer in time,
    /// [`QueryError::Disconnected`] when it is gone.
    pub fn query(
        &self,
        asset: AssetId,
        depth: usize,
        deadline: Duration,
    ) -> Result<Option<BookView>, QueryError> {
        let start = Instant::now();
        let (reply, rx) = crossbeam_channel::bounded(1);
        let q = BookQuery {
            asset,
            depth,
            reply,
        };
        match self.tx.send_timeout(q, deadline) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                return Err(QueryError::Timeout {
                    worker: self.worker,
                });
            }
            Err(SendTimeoutError::Disconnected(_)) => {
                return Err(QueryError::Disconnected {
                    worker: self.worker,
                });
            }
        }
        if let Some(t) = &self.thread {
            t.unpark();
        }
        let left = deadline.saturating_sub(start.elapsed());
        wait_reply(&rx, left, self.worker)
    }
}

fn wait_reply(
    rx: &Receiver<Option<BookView>>,
    left: Duration,
    worker: usize,
) -> Result<Option<BookView>, QueryError> {
    match rx.recv_timeout(left) {
        Ok(v) => Ok(v),
        Err(RecvTimeoutError::Timeout) => Err(QueryError::Timeout { worker }),
        Err(RecvTimeoutError::Disconnected) => Err(QueryError::Disconnected { worker }),
    }
}
