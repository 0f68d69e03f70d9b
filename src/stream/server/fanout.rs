//! The feed side: drain the rings, keep the mirrors, encode each message once, fan out.

use std::sync::Arc;
use std::time::Instant;

use super::super::client::{Chunk, ClientAsset, Subs};
use super::super::protocol as p;
use super::{AssetBook, FEED_BATCH, Server, bump};
use crate::feed::{FeedConsumer, FeedEvent, FeedItem, FeedKind, MirrorBook};
use crate::market::AssetId;
use crate::orderbook::{BookMeta, UntrustReason};

impl Server {
    // ---- feed -----------------------------------------------------------------------

    pub(super) fn drain(&mut self, f: &mut FeedConsumer) {
        self.batch.clear();
        while self.batch.len() < FEED_BATCH {
            match f.pop() {
                Some(item) => self.batch.push(item),
                None => break,
            }
        }
        if self.batch.is_empty() {
            return;
        }
        bump(&self.stats.feed_items, self.batch.len() as u64);
        // The last change of each asset in the batch may carry the book's hash.
        self.last_of_burst.clear();
        self.last_of_burst.resize(self.batch.len(), false);
        self.seen.clear();
        for (k, item) in self.batch.iter().enumerate().rev() {
            if let FeedItem::Event(e) = item {
                if matches!(e.kind, FeedKind::Change { .. }) && self.seen.insert(e.asset) {
                    self.last_of_burst[k] = true;
                }
            }
        }
        let batch = std::mem::take(&mut self.batch);
        for (k, item) in batch.iter().enumerate() {
            match item {
                FeedItem::Meta { asset, meta } => self.meta(*asset, meta),
                FeedItem::Event(e) => self.event(e, self.last_of_burst[k]),
            }
        }
        self.batch = batch;
    }

    pub(super) fn meta(&mut self, asset: AssetId, meta: &Arc<BookMeta>) {
        let i = asset.index();
        if i >= self.books.len() {
            self.books.resize_with(i + 1, || None);
        }
        match &mut self.books[i] {
            Some(b) => {
                b.cached = None;
                b.mirror.set_meta((**meta).clone());
                b.meta = Arc::clone(meta);
            }
            slot @ None => {
                *slot = Some(AssetBook {
                    mirror: MirrorBook::new((**meta).clone()),
                    meta: Arc::clone(meta),
                    seq: 0,
                    recv_ns: 0,
                    untrusted: Some(UntrustReason::AwaitingSnapshot),
                    bbo: (None, None),
                    repair: false,
                    subs: Vec::new(),
                    last_hash: None,
                    cached: None,
                });
            }
        }
        self.by_token.insert(meta.asset_id.clone(), asset);
        let list = self.by_market.entry(meta.market.clone()).or_default();
        if !list.contains(&asset) {
            list.push(asset);
        }
        self.nats_meta(asset, meta);
    }

    pub(super) fn event(&mut self, e: &FeedEvent, last_of_burst: bool) {
        let Some(b) = self.books.get_mut(e.asset.index()).and_then(Option::as_mut) else {
            bump(&self.stats.seq_errors, 1);
            return;
        };
        let ctx = &mut self.ctx;
        match e.kind {
            FeedKind::Snapshot {
                bids,
                asks,
                tick_size,
                last_trade,
                untrusted,
                repair,
            } => {
                b.seq = e.seq;
                b.untrusted = untrusted;
                b.repair = repair;
                b.recv_ns = e.recv_ns;
                b.mirror
                    .begin(ctx, e.venue_ts, bids, asks, tick_size, last_trade);
                if !b.mirror.in_snapshot() {
                    self.snapshot_done(e.asset);
                }
            }
            FeedKind::Level { side, price, size } => {
                if !b.mirror.in_snapshot() || e.seq != b.seq {
                    bump(&self.stats.seq_errors, 1);
                    return;
                }
                b.mirror.level(ctx, e.venue_ts, side, price, size);
                if !b.mirror.in_snapshot() {
                    self.snapshot_done(e.asset);
                }
            }
            FeedKind::Removed => self.removed(e.asset, e.seq),
            _ => {
                if e.seq != b.seq + 1 || b.mirror.in_snapshot() {
                    bump(&self.stats.seq_errors, 1);
                }
                b.seq = e.seq;
                b.recv_ns = e.recv_ns;
                self.delta_like(e, last_of_burst);
            }
        }
    }

    /// The engine removed the book: tell its book-channel clients, forget it everywhere.
    fn removed(&mut self, asset: AssetId, seq: u64) {
        let targets = self.targets(asset);
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::take) else {
            return;
        };
        let mut out = Vec::with_capacity(160);
        p::head(&mut out, "removed", b.token(), seq, 0, 0);
        out.push(b'}');
        self.nats_removed(asset, &out);
        let frame: Arc<[u8]> = Arc::from(p::text_frame(&out));
        let mut gone = 0u64;
        for &i in &targets {
            let book_sub = self.effective(i, asset).0.book.is_some();
            if book_sub {
                self.send_droppable(i, Chunk::Shared(Arc::clone(&frame)));
            }
            if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                if let Some(ca) = c.assets.remove(&asset) {
                    gone += super::count(&ca.explicit);
                }
            }
        }
        let s = &self.stats.subscriptions;
        s.fetch_sub(
            gone.min(s.load(std::sync::atomic::Ordering::Relaxed)),
            std::sync::atomic::Ordering::Relaxed,
        );
        if self.by_token.get(b.meta.asset_id.as_ref()) == Some(&asset) {
            self.by_token.remove(b.meta.asset_id.as_ref());
        }
        if let Some(list) = self.by_market.get_mut(b.meta.market.as_ref()) {
            list.retain(|&a| a != asset);
            if list.is_empty() {
                self.by_market.remove(b.meta.market.as_ref());
            }
        }
    }

    pub(super) fn snapshot_done(&mut self, asset: AssetId) {
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        if b.repair {
            bump(&self.stats.feed_gaps, 1);
        }
        let targets = self.targets(asset);
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        let bbo = (b.mirror.book().best_bid(), b.mirror.book().best_ask());
        let bbo_changed = bbo != b.bbo;
        b.bbo = bbo;
        self.nats_snapshot_done(asset, bbo_changed);
        if targets.is_empty() {
            return;
        }
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        // Everyone on the book channel gets it (the full-depth frame built once and
        // shared, depth-limited ones per client); conflated subscriptions are marked.
        b.last_hash = Some(Instant::now());
        for &i in &targets {
            let (subs, _) = self.effective(i, asset);
            let Some(opts) = subs.book else { continue };
            if opts.interval_ms > 0 {
                self.mark_dirty(i, asset);
                continue;
            }
            if let Some(frame) = self.snapshot_frame(asset, opts.depth) {
                self.send_book(i, asset, frame, true);
            }
        }
        if bbo_changed {
            self.bbo_out(asset, &targets);
        }
    }

    /// Changes, trades, tick sizes, trust changes.
    pub(super) fn delta_like(&mut self, e: &FeedEvent, last_of_burst: bool) {
        let asset = e.asset;
        let targets = self.targets(asset);
        let every = self.cfg.delta_hash_every;
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        let ctx = &mut self.ctx;
        let mut trade_frame = false;
        match e.kind {
            FeedKind::Change { side, price, size } => {
                b.mirror.change(ctx, e.venue_ts, side, price, size);
            }
            FeedKind::Trade { price, size, side } => {
                b.mirror.trade(ctx, e.venue_ts, price, size, side);
                trade_frame = true;
            }
            FeedKind::TickSize { old, new } => {
                b.mirror.tick_size(ctx, e.venue_ts, old, new);
                b.untrusted = Some(UntrustReason::TickSizeChange);
            }
            FeedKind::Trust { reason } => b.untrusted = reason,
            FeedKind::Snapshot { .. } | FeedKind::Level { .. } | FeedKind::Removed => return,
        }
        let bbo = (b.mirror.book().best_bid(), b.mirror.book().best_ask());
        let bbo_changed = bbo != b.bbo;
        b.bbo = bbo;
        let nats = self.nats_wanted();
        if targets.is_empty() && !nats {
            return;
        }
        let want_book = targets.iter().any(|&i| {
            self.effective(i, asset)
                .0
                .book
                .is_some_and(|o| o.interval_ms == 0)
        });
        let Some(b) = self.books.get_mut(asset.index()).and_then(Option::as_mut) else {
            return;
        };
        let mut frame: Option<Arc<[u8]>> = None;
        if want_book || trade_frame || nats {
            let mut out = std::mem::take(&mut self.buf);
            out.clear();
            let token: &str = &b.meta.asset_id;
            match e.kind {
                FeedKind::Change { side, price, size } => {
                    let hash = if last_of_burst && b.last_hash.is_none_or(|t| t.elapsed() >= every)
                    {
                        b.last_hash = Some(Instant::now());
                        Some(b.mirror.hash_hex(&mut self.ctx))
                    } else {
                        None
                    };
                    p::delta(
                        &mut out,
                        token,
                        e.seq,
                        e.venue_ts,
                        e.recv_ns,
                        (side, price, size),
                        hash.as_deref(),
                        b.untrusted,
                    );
                }
                FeedKind::Trade { price, size, side } => {
                    p::trade(
                        &mut out,
                        token,
                        e.seq,
                        e.venue_ts,
                        e.recv_ns,
                        (price, size, side),
                    );
                }
                FeedKind::TickSize { old, new } => {
                    p::tick_size(&mut out, token, e.seq, e.venue_ts, e.recv_ns, old, new);
                }
                FeedKind::Trust { reason } => {
                    p::status(&mut out, token, e.seq, e.venue_ts, reason);
                }
                _ => {}
            }
            if want_book || trade_frame {
                frame = Some(Arc::from(p::text_frame(&out)));
            }
            if nats {
                self.nats_event(e, &out);
            }
            self.buf = out;
        }
        for &i in &targets {
            let (subs, _) = self.effective(i, asset);
            let live_book = subs.book.is_some_and(|o| o.interval_ms == 0);
            match (subs.book, &frame) {
                // Conflated: a snapshot at the next interval.
                (Some(o), _) if o.interval_ms > 0 => self.mark_dirty(i, asset),
                (Some(_), Some(f)) => {
                    self.send_book(i, asset, Chunk::Shared(Arc::clone(f)), false);
                }
                _ => {}
            }
            if trade_frame && subs.trades && !live_book {
                if let Some(f) = &frame {
                    self.send_droppable(i, Chunk::Shared(Arc::clone(f)));
                }
            }
        }
        if bbo_changed {
            if nats {
                self.nats_bbo(asset);
            }
            self.bbo_out(asset, &targets);
        }
    }

    pub(super) fn bbo_json(&self, asset: AssetId, out: &mut Vec<u8>) -> bool {
        let Some(b) = self.books.get(asset.index()).and_then(Option::as_ref) else {
            return false;
        };
        p::bbo(
            out,
            b.token(),
            b.seq,
            b.mirror.book().last_timestamp(),
            b.recv_ns,
            b.bbo.0,
            b.bbo.1,
        );
        true
    }

    pub(super) fn bbo_out(&mut self, asset: AssetId, targets: &[usize]) {
        let mut frame: Option<Arc<[u8]>> = None;
        for &i in targets {
            if !self.effective(i, asset).0.bbo {
                continue;
            }
            let f = match &frame {
                Some(f) => Arc::clone(f),
                None => {
                    let mut out = Vec::new();
                    if !self.bbo_json(asset, &mut out) {
                        return;
                    }
                    let f: Arc<[u8]> = Arc::from(p::text_frame(&out));
                    frame = Some(Arc::clone(&f));
                    f
                }
            };
            self.send_droppable(i, Chunk::Shared(f));
        }
    }

    pub(super) fn send_bbo_to(&mut self, i: usize, asset: AssetId) {
        let mut out = Vec::new();
        if self.bbo_json(asset, &mut out) {
            self.send_droppable(i, Chunk::Owned(p::text_frame(&out)));
        }
    }

    /// Clients to consider for `asset`: explicit subscribers, then `all` ones (once each).
    pub(super) fn targets(&self, asset: AssetId) -> Vec<usize> {
        let mut t = match self.books.get(asset.index()).and_then(Option::as_ref) {
            Some(b) => b.subs.clone(),
            None => Vec::new(),
        };
        for &i in &self.all_subs {
            if !t.contains(&i) {
                t.push(i);
            }
        }
        t
    }

    /// The channels client `i` gets for `asset`: explicit ones over `all` ones.
    pub(super) fn effective(&self, i: usize, asset: AssetId) -> (Subs, bool) {
        let Some(c) = self.clients.get(i).and_then(Option::as_ref) else {
            return (Subs::default(), false);
        };
        if !c.is_open() {
            return (Subs::default(), false);
        }
        let e = c.assets.get(&asset).map(|a| a.explicit).unwrap_or_default();
        (
            Subs {
                book: e.book.or(c.all.book),
                bbo: e.bbo || c.all.bbo,
                trades: e.trades || c.all.trades,
            },
            true,
        )
    }

    pub(super) fn mark_dirty(&mut self, i: usize, asset: AssetId) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
            let ca = c.assets.entry(asset).or_default();
            if !ca.dirty {
                ca.dirty = true;
                c.dirty.push(asset);
            }
        }
    }

    /// A book-channel frame for an interval-0 subscription: queued, or conflated.
    pub(super) fn send_book(&mut self, i: usize, asset: AssetId, frame: Chunk, is_snapshot: bool) {
        let cap = self.cfg.max_queued_bytes;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let ca: &mut ClientAsset = c.assets.entry(asset).or_default();
        if ca.need_snap && !is_snapshot {
            return;
        }
        let len = frame.bytes().len();
        if c.queued + len <= cap {
            if is_snapshot && ca.need_snap {
                ca.need_snap = false;
            }
            c.push(frame);
            if !c.listed {
                c.listed = true;
                self.to_write.push(i);
            }
        } else {
            if !ca.need_snap {
                ca.need_snap = true;
                c.snap_queue.push_back(asset);
                bump(&self.stats.conflations, 1);
            }
            c.behind_since.get_or_insert_with(Instant::now);
            self.timers_wanted = true;
        }
    }

    /// bbo and trades-channel frames: queued, or dropped when the client is behind.
    pub(super) fn send_droppable(&mut self, i: usize, frame: Chunk) {
        let cap = self.cfg.max_queued_bytes;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.room(frame.bytes().len(), cap) {
            c.push(frame);
            self.list(i);
        } else {
            bump(&self.stats.dropped, 1);
            c.behind_since.get_or_insert_with(Instant::now);
            self.timers_wanted = true;
        }
    }
}
