//! One asset's L2 book: apply records, track trust, verify against the venue's own checks.
//!
//! Rules (`docs/ARCHITECTURE.md` "Invariants", `docs/venue-protocol.md` §4–§5):
//! - A book is trusted only from a complete `book` snapshot on; deltas before that are skipped.
//! - `tick_size_change` makes the book untrusted until the next snapshot.
//! - Checks run when a *same-timestamp group* settles (the next record with another timestamp,
//!   a snapshot, or an explicit [`OrderBook::settle`]): inside a trade group intermediate
//!   states can be crossed and the entries already carry the final hash and best bid/ask.
//! - The venue's hash can include the price of a trade whose `last_trade_price` message has not
//!   arrived yet (issue Polymarket/py-clob-client-v2#117; the crossing-burst fixture). On a
//!   hash mismatch the prices touched by the settled group are tried as the last trade price;
//!   a match is accepted and counted separately ([`HashVerdict::MatchedInferredTrade`]).
//! - A book whose `min_order_size` / `neg_risk` are not known (a market announced by
//!   `new_market`: the notice carries neither) infers them from its first hash that disagrees:
//!   the candidates of [`META_CANDIDATES`](super::meta::META_CANDIDATES) are tried and the matching pair is kept
//!   ([`HashVerdict::MatchedInferredMeta`], counted as `meta_inferred`), so missing metadata is
//!   never counted as a venue error.
//! - A failed check marks the book untrusted; the owner counts it and resyncs.
//!
//! Pure code: no I/O, no clock; the worker thread that owns the book drives it.

use std::num::NonZeroU32;

use super::hash::BookHasher;
use super::ladder::{Ladder, Level};
use super::meta::BookMeta;
use crate::market::{Bbo, BookHash, Event, FieldUpdate, Price, QuotedPrice, Record};

/// Why a book is not trusted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum UntrustReason {
    /// No snapshot yet.
    AwaitingSnapshot,
    /// A `tick_size_change` invalidated the levels; wait for the next snapshot.
    TickSizeChange,
    /// A snapshot arrived with fewer or more levels than announced (records were lost).
    IncompleteSnapshot,
    /// The book's hash disagreed with the venue's after a group settled.
    HashMismatch,
    /// The book's best bid/ask disagreed with the venue's.
    BboMismatch,
    /// The book was crossed after a group settled.
    Crossed,
    /// Data may have been lost upstream (reconnect, full ring, unparsable frame).
    DataLoss,
    /// Its connection is suspected frozen (the venue sends data it does not deliver): the
    /// levels may be old. A replacement connection's snapshot restores it.
    Stale,
}

impl UntrustReason {
    /// Short snake_case name for stats.
    pub fn as_str(self) -> &'static str {
        match self {
            UntrustReason::AwaitingSnapshot => "awaiting_snapshot",
            UntrustReason::TickSizeChange => "tick_size_change",
            UntrustReason::IncompleteSnapshot => "incomplete_snapshot",
            UntrustReason::HashMismatch => "hash_mismatch",
            UntrustReason::BboMismatch => "bbo_mismatch",
            UntrustReason::Crossed => "crossed",
            UntrustReason::DataLoss => "data_loss",
            UntrustReason::Stale => "stale",
        }
    }
}

/// How often the book hash is recomputed and compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CheckMode {
    /// After every entry (reports per-entry agreement) and at every settled group.
    EveryEntry,
    /// At every settled group.
    Settled,
    /// At one settled group in N (per checking context).
    Sampled(NonZeroU32),
    /// At every settled group while the worker has slack; at one in N while it has a backlog
    /// (more than a chunk waiting: [`CheckContext::set_backlog`]), so it never falls behind.
    Adaptive(NonZeroU32),
    /// Never; best bid/ask and crossing are still checked.
    Off,
}

/// Per-thread checking state: the hasher buffer and the sampling counter.
#[derive(Debug)]
pub struct CheckContext {
    /// Reusable hasher.
    pub hasher: BookHasher,
    /// Mode.
    pub mode: CheckMode,
    sample: u32,
    backlog: bool,
}

impl CheckContext {
    /// A context for `mode`.
    pub fn new(mode: CheckMode) -> CheckContext {
        CheckContext {
            hasher: BookHasher::new(),
            mode,
            sample: 0,
            backlog: false,
        }
    }

    /// Whether the thread has a backlog ([`CheckMode::Adaptive`] samples only then).
    #[inline]
    pub fn set_backlog(&mut self, backlog: bool) {
        self.backlog = backlog;
    }

    fn should_hash(&mut self) -> bool {
        match self.mode {
            CheckMode::EveryEntry | CheckMode::Settled => true,
            CheckMode::Off => false,
            CheckMode::Adaptive(_) if !self.backlog => true,
            CheckMode::Sampled(n) | CheckMode::Adaptive(n) => {
                self.sample = self.sample.wrapping_add(1);
                self.sample % n.get() == 0
            }
        }
    }
}

/// Result of the hash comparison of a settled group.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HashVerdict {
    /// Not compared (no hash sent, or checking off).
    NotChecked,
    /// A hash was sent but this group was not sampled.
    Skipped,
    /// Equal.
    Matched,
    /// Equal once a trade price from the group was taken as the last trade price.
    MatchedInferredTrade,
    /// Equal once the book's unknown metadata (`min_order_size`, `neg_risk`) was inferred
    /// from [`META_CANDIDATES`](super::meta::META_CANDIDATES); the book keeps the inferred values (`meta.known` set).
    MatchedInferredMeta,
    /// Different.
    Mismatch,
}

/// The checks of one settled same-timestamp group.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Verdict {
    /// Hash comparison.
    pub hash: HashVerdict,
    /// Best bid/ask agreed with the venue's (or were not stated).
    pub bbo_ok: bool,
    /// The book was crossed.
    pub crossed: bool,
    /// Entries in the group.
    pub entries: u32,
}

impl Verdict {
    /// True when every check passed.
    pub fn is_ok(&self) -> bool {
        self.hash != HashVerdict::Mismatch && self.bbo_ok && !self.crossed
    }

    fn failure(&self) -> Option<UntrustReason> {
        if self.hash == HashVerdict::Mismatch {
            Some(UntrustReason::HashMismatch)
        } else if !self.bbo_ok {
            Some(UntrustReason::BboMismatch)
        } else if self.crossed {
            Some(UntrustReason::Crossed)
        } else {
            None
        }
    }
}

/// What applying one record did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Effect {
    /// A delta, trade or quote was applied.
    Applied,
    /// Part of a snapshot was staged.
    Staged,
    /// A snapshot completed; the book is trusted. `hash` compares it with the venue's hash.
    SnapshotApplied {
        /// Hash comparison of the snapshot itself.
        hash: HashVerdict,
    },
    /// A delta arrived while the book was not trusted; it was not applied.
    SkippedNotTrusted,
    /// This record made the book untrusted.
    BecameUntrusted(UntrustReason),
    /// A snapshot part arrived without its start (lost records); ignored.
    Stray,
}

/// The outcome of [`OrderBook::apply`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    /// What the record did.
    pub effect: Effect,
    /// With [`CheckMode::EveryEntry`]: whether the entry's own hash matched right after it.
    pub entry_hash: Option<bool>,
    /// The checks of a group that settled before this record was applied.
    pub settled: Option<Verdict>,
}

const MAX_CANDIDATES: usize = 4;

#[derive(Clone, Copy, Debug)]
struct PendingGroup {
    ts: u64,
    hash: Option<BookHash>,
    bbo: Bbo,
    entries: u32,
    candidates: [Price; MAX_CANDIDATES],
    n_candidates: u8,
}

#[derive(Clone, Copy, Debug)]
struct SnapshotProgress {
    bids_left: u16,
    asks_left: u16,
    broken: bool,
}

/// The L2 book of one asset.
#[derive(Debug)]
pub struct OrderBook {
    meta: BookMeta,
    bids: Ladder<false>,
    asks: Ladder<true>,
    tick_size: Option<Price>,
    last_trade: Option<QuotedPrice>,
    trust: Result<(), UntrustReason>,
    snapshot: Option<SnapshotProgress>,
    pending: Option<PendingGroup>,
    last_ts: u64,
    update_count: u64,
    snapshots: u64,
}

impl OrderBook {
    /// An empty, untrusted book awaiting its first snapshot.
    pub fn new(meta: BookMeta) -> OrderBook {
        OrderBook {
            meta,
            bids: Ladder::new(),
            asks: Ladder::new(),
            tick_size: None,
            last_trade: None,
            trust: Err(UntrustReason::AwaitingSnapshot),
            snapshot: None,
            pending: None,
            last_ts: 0,
            update_count: 0,
            snapshots: 0,
        }
    }

    /// Applies one record addressed to this book.
    pub fn apply(&mut self, rec: &Record, ctx: &mut CheckContext) -> Step {
        let mut step = Step {
            effect: Effect::Applied,
            entry_hash: None,
            settled: None,
        };
        match rec.event {
            Event::BookBegin {
                bids,
                asks,
                tick_size,
                last_trade,
            } => {
                step.settled = self.settle_inner(ctx, false);
                self.bids.clear();
                self.asks.clear();
                if tick_size.is_some() {
                    self.tick_size = tick_size;
                }
                self.set_last_trade(last_trade);
                self.snapshot = Some(SnapshotProgress {
                    bids_left: bids,
                    asks_left: asks,
                    broken: false,
                });
                self.trust = Err(UntrustReason::AwaitingSnapshot);
                self.last_ts = rec.exchange_ts;
                step.effect = Effect::Staged;
            }
            Event::Level { side, price, size } => {
                let Some(progress) = self.snapshot.as_mut() else {
                    step.effect = Effect::Stray;
                    return step;
                };
                let left = match side {
                    crate::market::Side::Bid => &mut progress.bids_left,
                    crate::market::Side::Ask => &mut progress.asks_left,
                };
                match left.checked_sub(1) {
                    Some(v) => *left = v,
                    None => progress.broken = true,
                }
                match side {
                    crate::market::Side::Bid => self.bids.push_snapshot_level(price, size),
                    crate::market::Side::Ask => self.asks.push_snapshot_level(price, size),
                }
                step.effect = Effect::Staged;
            }
            Event::BookEnd { hash } => {
                let Some(progress) = self.snapshot.take() else {
                    step.effect = Effect::Stray;
                    return step;
                };
                self.snapshots += 1;
                self.bids.trim();
                self.asks.trim();
                if progress.broken || progress.bids_left != 0 || progress.asks_left != 0 {
                    self.trust = Err(UntrustReason::IncompleteSnapshot);
                    step.effect = Effect::BecameUntrusted(UntrustReason::IncompleteSnapshot);
                    return step;
                }
                self.trust = Ok(());
                let verdict = match hash {
                    Some(expected) if ctx.mode != CheckMode::Off => {
                        if ctx.hasher.prefix(self, rec.exchange_ts) == expected {
                            self.meta.known = true;
                            HashVerdict::Matched
                        } else if self.infer_meta(ctx, rec.exchange_ts, expected) {
                            HashVerdict::MatchedInferredMeta
                        } else {
                            HashVerdict::Mismatch
                        }
                    }
                    _ => HashVerdict::NotChecked,
                };
                step.effect = Effect::SnapshotApplied { hash: verdict };
            }
            Event::Change {
                side,
                price,
                size,
                hash,
                bbo,
            } => {
                if self.pending.is_some_and(|p| p.ts != rec.exchange_ts) {
                    step.settled = self.settle_inner(ctx, true);
                }
                if self.trust.is_err() || self.snapshot.is_some() {
                    step.effect = Effect::SkippedNotTrusted;
                    return step;
                }
                match side {
                    crate::market::Side::Bid => self.bids.set(price, size),
                    crate::market::Side::Ask => self.asks.set(price, size),
                };
                self.update_count += 1;
                self.last_ts = rec.exchange_ts;
                let group = self.pending.get_or_insert(PendingGroup {
                    ts: rec.exchange_ts,
                    hash: None,
                    bbo: Bbo::default(),
                    entries: 0,
                    candidates: [Price::default(); MAX_CANDIDATES],
                    n_candidates: 0,
                });
                group.entries += 1;
                group.hash = hash;
                group.bbo = bbo;
                let n = usize::from(group.n_candidates);
                if n < MAX_CANDIDATES && !group.candidates[..n].contains(&price) {
                    group.candidates[n] = price;
                    group.n_candidates += 1;
                }
                if let (CheckMode::EveryEntry, Some(expected)) = (ctx.mode, hash) {
                    // An entry may already include the price of the trade it is part of.
                    let group = *group;
                    let matches = ctx.hasher.prefix(self, rec.exchange_ts) == expected
                        || group.candidates[..usize::from(group.n_candidates)]
                            .iter()
                            .any(|p| {
                                ctx.hasher.prefix_with(
                                    self,
                                    rec.exchange_ts,
                                    Some(QuotedPrice::canonical(*p)),
                                ) == expected
                            });
                    step.entry_hash = Some(matches);
                }
            }
            Event::TickSize { new, .. } => {
                step.settled = self.settle_inner(ctx, false);
                self.tick_size = Some(new);
                self.last_ts = rec.exchange_ts;
                self.trust = Err(UntrustReason::TickSizeChange);
                step.effect = Effect::BecameUntrusted(UntrustReason::TickSizeChange);
            }
            Event::Trade { price, .. } => {
                if self.pending.is_some_and(|p| p.ts != rec.exchange_ts) {
                    step.settled = self.settle_inner(ctx, true);
                }
                self.last_trade = Some(price);
            }
            Event::BestBidAsk { .. } => {}
        }
        if let Some(v) = step.settled {
            if let Some(reason) = v.failure() {
                if step.effect == Effect::Applied {
                    step.effect = Effect::BecameUntrusted(reason);
                }
            }
        }
        step
    }

    /// Settles the pending same-timestamp group now (the owner calls this when no more
    /// records for the group can be expected) and runs its checks. A failed check marks the
    /// book untrusted.
    pub fn settle(&mut self, ctx: &mut CheckContext) -> Option<Verdict> {
        self.settle_inner(ctx, true)
    }

    /// True when a group awaits settlement.
    pub fn has_pending_group(&self) -> bool {
        self.pending.is_some()
    }

    fn settle_inner(&mut self, ctx: &mut CheckContext, enforce: bool) -> Option<Verdict> {
        let group = self.pending.take()?;
        if self.trust.is_err() {
            return None;
        }
        let best_bid = self.bids.best().map(|l| l.price);
        let best_ask = self.asks.best().map(|l| l.price);
        let crossed = matches!((best_bid, best_ask), (Some(b), Some(a)) if b >= a);
        let bbo_ok = agrees(group.bbo.bid, best_bid) && agrees(group.bbo.ask, best_ask);
        let hash = match group.hash {
            Some(_) if !ctx.should_hash() => HashVerdict::Skipped,
            Some(expected) => {
                if ctx.hasher.prefix(self, group.ts) == expected {
                    HashVerdict::Matched
                } else {
                    let inferred = group.candidates[..usize::from(group.n_candidates)]
                        .iter()
                        .map(|p| QuotedPrice::canonical(*p))
                        .find(|q| ctx.hasher.prefix_with(self, group.ts, Some(*q)) == expected);
                    match inferred {
                        Some(q) => {
                            self.last_trade = Some(q);
                            HashVerdict::MatchedInferredTrade
                        }
                        None if self.infer_meta(ctx, group.ts, expected) => {
                            HashVerdict::MatchedInferredMeta
                        }
                        None => HashVerdict::Mismatch,
                    }
                }
            }
            _ => HashVerdict::NotChecked,
        };
        let verdict = Verdict {
            hash,
            bbo_ok,
            crossed,
            entries: group.entries,
        };
        if enforce {
            if let Some(reason) = verdict.failure() {
                self.trust = Err(reason);
            }
        }
        Some(verdict)
    }

    /// Marks the book untrusted (data may have been lost upstream); a snapshot restores it.
    pub fn mark_untrusted(&mut self, reason: UntrustReason) {
        self.pending = None;
        self.trust = Err(reason);
    }

    fn set_last_trade(&mut self, update: FieldUpdate<QuotedPrice>) {
        match update {
            FieldUpdate::Keep => {}
            FieldUpdate::Clear => self.last_trade = None,
            FieldUpdate::Set(p) => self.last_trade = Some(p),
        }
    }

    /// Static metadata.
    pub fn meta(&self) -> &BookMeta {
        &self.meta
    }

    /// Replaces the metadata (Gamma learned `min_order_size` / `neg_risk`). Metadata that is
    /// not known does not overwrite known (Gamma's or inferred) values.
    pub fn set_meta(&mut self, meta: BookMeta) {
        if meta.known || !self.meta.known {
            self.meta = meta;
        }
    }

    /// With unknown metadata: tries every candidate (`min_order_size`, `neg_risk`) against
    /// `expected` and keeps the first that matches (then the metadata is known). At most
    /// 2 × [`META_CANDIDATES`](super::meta::META_CANDIDATES) hashes, once per book: only until the metadata is known.
    fn infer_meta(&mut self, ctx: &mut CheckContext, ts: u64, expected: BookHash) -> bool {
        if self.meta.known {
            return false;
        }
        let (size0, neg0) = (self.meta.min_order_size, self.meta.neg_risk);
        for (size, neg_risk) in BookMeta::candidates() {
            if (size, neg_risk) == (size0, neg0) {
                continue;
            }
            self.meta.min_order_size = size;
            self.meta.neg_risk = neg_risk;
            if ctx.hasher.prefix(self, ts) == expected {
                self.meta.known = true;
                return true;
            }
        }
        self.meta.min_order_size = size0;
        self.meta.neg_risk = neg0;
        false
    }

    /// Bid side.
    pub fn bids(&self) -> &Ladder<false> {
        &self.bids
    }

    /// Ask side.
    pub fn asks(&self) -> &Ladder<true> {
        &self.asks
    }

    /// Best bid.
    #[inline]
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.best()
    }

    /// Best ask.
    #[inline]
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.best()
    }

    /// Tick size, when known.
    pub fn tick_size(&self) -> Option<Price> {
        self.tick_size
    }

    /// Last trade price, as written by the venue.
    pub fn last_trade(&self) -> Option<QuotedPrice> {
        self.last_trade
    }

    /// `Ok` when trusted, else why not.
    pub fn trust(&self) -> Result<(), UntrustReason> {
        self.trust
    }

    /// True when trusted.
    pub fn is_trusted(&self) -> bool {
        self.trust.is_ok()
    }

    /// Exchange timestamp (ms) of the last record applied.
    pub fn last_timestamp(&self) -> u64 {
        self.last_ts
    }

    /// Deltas applied since creation.
    pub fn update_count(&self) -> u64 {
        self.update_count
    }

    /// Snapshots received since creation.
    pub fn snapshot_count(&self) -> u64 {
        self.snapshots
    }

    /// Heap bytes held by the book (levels and id strings).
    pub fn heap_bytes(&self) -> usize {
        self.bids.heap_bytes()
            + self.asks.heap_bytes()
            + self.meta.asset_id.len()
            + self.meta.market.len()
    }
}

fn agrees(stated: FieldUpdate<Price>, actual: Option<Price>) -> bool {
    match stated {
        FieldUpdate::Keep => true,
        FieldUpdate::Clear => actual.is_none(),
        FieldUpdate::Set(p) => actual == Some(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_checks_every_group_with_slack_and_samples_under_backlog() {
        let n = NonZeroU32::new(4).expect("4");
        let mut ctx = CheckContext::new(CheckMode::Adaptive(n));
        assert!((0..10).all(|_| ctx.should_hash()), "slack: every group");
        ctx.set_backlog(true);
        let hashed = (0..40).filter(|_| ctx.should_hash()).count();
        assert_eq!(hashed, 10, "backlog: one in 4");
        ctx.set_backlog(false);
        assert!(ctx.should_hash());
    }
    use crate::market::Size;
    use crate::market::{AssetId, Side};

    fn p(s: &str) -> Price {
        Price::parse(s.as_bytes()).unwrap()
    }

    fn rec(ts: u64, event: Event) -> Record {
        Record {
            asset: AssetId(0),
            exchange_ts: ts,
            received_ns: 0,
            event,
        }
    }

    fn change(ts: u64, side: Side, price: &str, size: u64, bbo: Bbo) -> Record {
        rec(
            ts,
            Event::Change {
                side,
                price: p(price),
                size: Size::from_raw(size),
                hash: None,
                bbo,
            },
        )
    }

    fn snapshot(book: &mut OrderBook, ctx: &mut CheckContext, bids: &[&str], asks: &[&str]) {
        let begin = Event::BookBegin {
            bids: bids.len() as u16,
            asks: asks.len() as u16,
            tick_size: Some(p("0.01")),
            last_trade: FieldUpdate::Keep,
        };
        book.apply(&rec(1, begin), ctx);
        for (side, levels) in [(Side::Bid, bids), (Side::Ask, asks)] {
            for l in levels {
                let ev = Event::Level {
                    side,
                    price: p(l),
                    size: Size::from_raw(1_000_000),
                };
                book.apply(&rec(1, ev), ctx);
            }
        }
        let step = book.apply(&rec(1, Event::BookEnd { hash: None }), ctx);
        assert_eq!(
            step.effect,
            Effect::SnapshotApplied {
                hash: HashVerdict::NotChecked
            }
        );
    }

    fn bbo(bid: &str, ask: &str) -> Bbo {
        Bbo {
            bid: FieldUpdate::Set(p(bid)),
            ask: FieldUpdate::Set(p(ask)),
        }
    }

    #[test]
    fn deltas_before_snapshot_are_skipped() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let mut b = OrderBook::new(BookMeta::new("1", "0x1"));
        let s = b.apply(&change(1, Side::Bid, "0.4", 5, Bbo::default()), &mut ctx);
        assert_eq!(s.effect, Effect::SkippedNotTrusted);
        assert_eq!(b.trust(), Err(UntrustReason::AwaitingSnapshot));
        snapshot(&mut b, &mut ctx, &["0.4", "0.5"], &["0.7", "0.6"]);
        assert!(b.is_trusted());
        assert_eq!(b.best_bid().unwrap().price, p("0.5"));
        assert_eq!(b.best_ask().unwrap().price, p("0.6"));
    }

    #[test]
    fn tick_size_change_waits_for_snapshot() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let mut b = OrderBook::new(BookMeta::new("1", "0x1"));
        snapshot(&mut b, &mut ctx, &["0.4"], &["0.6"]);
        let s = b.apply(
            &rec(
                2,
                Event::TickSize {
                    old: p("0.01"),
                    new: p("0.001"),
                },
            ),
            &mut ctx,
        );
        assert_eq!(
            s.effect,
            Effect::BecameUntrusted(UntrustReason::TickSizeChange)
        );
        assert_eq!(b.tick_size(), Some(p("0.001")));
        let s = b.apply(&change(3, Side::Bid, "0.41", 5, Bbo::default()), &mut ctx);
        assert_eq!(s.effect, Effect::SkippedNotTrusted);
        snapshot(&mut b, &mut ctx, &["0.4"], &["0.6"]);
        assert!(b.is_trusted());
    }

    #[test]
    fn incomplete_snapshot_is_not_trusted() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let mut b = OrderBook::new(BookMeta::new("1", "0x1"));
        let begin = Event::BookBegin {
            bids: 2,
            asks: 0,
            tick_size: None,
            last_trade: FieldUpdate::Keep,
        };
        b.apply(&rec(1, begin), &mut ctx);
        let lvl = Event::Level {
            side: Side::Bid,
            price: p("0.4"),
            size: Size::from_raw(1),
        };
        b.apply(&rec(1, lvl), &mut ctx);
        let s = b.apply(&rec(1, Event::BookEnd { hash: None }), &mut ctx);
        assert_eq!(
            s.effect,
            Effect::BecameUntrusted(UntrustReason::IncompleteSnapshot)
        );
        assert_eq!(
            b.apply(&rec(1, Event::BookEnd { hash: None }), &mut ctx)
                .effect,
            Effect::Stray
        );
    }

    #[test]
    fn crossed_intermediate_state_is_fine_once_the_group_settles() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let mut b = OrderBook::new(BookMeta::new("1", "0x1"));
        snapshot(&mut b, &mut ctx, &["0.4"], &["0.6"]);
        // A trade group: the bid crosses the ask, then the ask is consumed.
        b.apply(
            &change(5, Side::Bid, "0.6", 1_000_000, bbo("0.6", "0.7")),
            &mut ctx,
        );
        b.apply(&change(5, Side::Ask, "0.6", 0, bbo("0.6", "0.7")), &mut ctx);
        b.apply(&change(5, Side::Ask, "0.7", 3, bbo("0.6", "0.7")), &mut ctx);
        let v = b.settle(&mut ctx).unwrap();
        assert!(v.is_ok(), "{v:?}");
        assert_eq!(v.entries, 3);
        assert!(b.is_trusted());
    }

    #[test]
    fn settled_bbo_mismatch_and_crossing_untrust() {
        let mut ctx = CheckContext::new(CheckMode::Settled);
        let mut b = OrderBook::new(BookMeta::new("1", "0x1"));
        snapshot(&mut b, &mut ctx, &["0.4"], &["0.6"]);
        b.apply(
            &change(5, Side::Bid, "0.45", 1, bbo("0.44", "0.6")),
            &mut ctx,
        );
        // The next timestamp settles the group first: the venue said 0.44, we have 0.45.
        let s = b.apply(&change(6, Side::Bid, "0.3", 1, Bbo::default()), &mut ctx);
        assert!(!s.settled.unwrap().bbo_ok);
        assert_eq!(s.effect, Effect::SkippedNotTrusted);
        assert_eq!(b.trust(), Err(UntrustReason::BboMismatch));

        let mut b = OrderBook::new(BookMeta::new("1", "0x1"));
        snapshot(&mut b, &mut ctx, &["0.4"], &["0.6"]);
        b.apply(&change(5, Side::Bid, "0.65", 1, Bbo::default()), &mut ctx);
        let v = b.settle(&mut ctx).unwrap();
        assert!(v.crossed);
        assert_eq!(b.trust(), Err(UntrustReason::Crossed));
    }

    #[test]
    fn typical_book_heap_is_small() {
        let mut ctx = CheckContext::new(CheckMode::Off);
        let mut b = OrderBook::new(BookMeta::new(&"7".repeat(77), &"a".repeat(66)));
        let bids: Vec<String> = (1..=20).map(|i| format!("0.{:02}", i)).collect();
        let asks: Vec<String> = (0..20).map(|i| format!("0.{:02}", 99 - i)).collect();
        let bids: Vec<&str> = bids.iter().map(String::as_str).collect();
        let asks: Vec<&str> = asks.iter().map(String::as_str).collect();
        snapshot(&mut b, &mut ctx, &bids, &asks);
        assert!(b.heap_bytes() <= 2048, "{}", b.heap_bytes());
    }
}
