//! Pending snapshots, conflated and legacy subscriptions, slow clients, heartbeats.

use std::sync::Arc;
use std::time::Instant;

use super::super::client::{Chunk, Client};
use super::super::protocol as p;
use super::{Server, bump, snapshot_json};
use crate::market::AssetId;

impl Server {
    // ---- timers and writes ------------------------------------------------------------

    /// Sends pending snapshots to clients with room (half the queue bound free).
    pub(super) fn drain_snapshots(&mut self) {
        for i in 0..self.clients.len() {
            self.drain_snapshots_of(i);
        }
    }

    /// Sends client `i`'s pending snapshots while it has room (half the queue bound free).
    pub(super) fn drain_snapshots_of(&mut self, i: usize) {
        let cap = self.cfg.max_queued_bytes;
        {
            while let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                if c.snap_queue.is_empty() || c.queued > cap / 2 || !c.is_open() {
                    break;
                }
                let Some(asset) = c.snap_queue.pop_front() else {
                    break;
                };
                if !c.assets.get(&asset).is_some_and(|ca| ca.need_snap) {
                    // Already repaired by a snapshot from the feed.
                    continue;
                }
                let (subs, _) = self.effective(i, asset);
                let Some(opts) = subs.book else {
                    if let Some(ca) = self
                        .clients
                        .get_mut(i)
                        .and_then(Option::as_mut)
                        .and_then(|c| c.assets.get_mut(&asset))
                    {
                        ca.need_snap = false;
                    }
                    continue;
                };
                let Some(frame) = self.snapshot_frame(asset, opts.depth) else {
                    continue;
                };
                if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                    if let Some(ca) = c.assets.get_mut(&asset) {
                        ca.need_snap = false;
                    }
                    c.push(frame);
                }
                self.list(i);
            }
        }
    }

    /// A snapshot frame of `asset` now; full-depth frames are cached per seq and shared.
    pub(super) fn snapshot_frame(&mut self, asset: AssetId, depth: u32) -> Option<Chunk> {
        let b = self.books.get_mut(asset.index()).and_then(Option::as_mut)?;
        if b.mirror.in_snapshot() {
            return None;
        }
        if depth == 0 {
            if let Some((seq, f)) = &b.cached {
                if *seq == b.seq {
                    return Some(Chunk::Shared(Arc::clone(f)));
                }
            }
        }
        // A depth-limited snapshot carries no hash (it is not the whole book).
        let hash = if depth == 0 {
            b.mirror.hash_hex(&mut self.ctx)
        } else {
            String::new()
        };
        let mut out = Vec::new();
        snapshot_json(&mut out, b, &hash, depth);
        let frame = p::text_frame(&out);
        if depth == 0 {
            let f: Arc<[u8]> = Arc::from(frame);
            b.cached = Some((b.seq, Arc::clone(&f)));
            return Some(Chunk::Shared(f));
        }
        Some(Chunk::Owned(frame))
    }

    pub(super) fn timers(&mut self, now: Instant) {
        self.drain_snapshots();
        let mut wanted = false;
        let mut queued = 0u64;
        for c in self.clients.iter().flatten() {
            wanted |= c.conflated
                || !c.legacy.is_empty()
                || c.behind_since.is_some()
                || c.closing.is_some()
                || !c.snap_queue.is_empty();
            queued += c.queued as u64;
        }
        self.timers_wanted = wanted;
        self.stats
            .queued_bytes
            .store(queued, std::sync::atomic::Ordering::Relaxed);
        let now_ms = self.now_ms();
        let cap = self.cfg.max_queued_bytes;
        let slow_after = self.cfg.slow_close_after;
        for i in 0..self.clients.len() {
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(deadline) = c.closing {
                if c.out.is_empty() || now >= deadline {
                    self.remove(i);
                }
                continue;
            }
            if let Some(since) = c.behind_since {
                if c.snap_queue.is_empty() && c.queued <= cap / 4 {
                    c.behind_since = None;
                } else if now.duration_since(since) >= slow_after {
                    bump(&self.stats.slow_closes, 1);
                    let reason = format!(
                        "too slow: could not keep up for {} s (output bound {} bytes)",
                        slow_after.as_secs(),
                        cap
                    );
                    self.close(i, 1008, &reason);
                    continue;
                }
            }
            // Conflated subscriptions.
            if c.conflated && c.queued <= cap / 2 && !c.dirty.is_empty() {
                let list = std::mem::take(&mut c.dirty);
                let mut keep = Vec::new();
                for a in list {
                    let last = self
                        .clients
                        .get(i)
                        .and_then(Option::as_ref)
                        .and_then(|c| c.assets.get(&a))
                        .filter(|ca| ca.dirty)
                        .map(|ca| ca.last_snap_ms);
                    let Some(last) = last else { continue };
                    let (subs, _) = self.effective(i, a);
                    let Some(opts) = subs.book.filter(|o| o.interval_ms > 0) else {
                        continue;
                    };
                    if last != 0 && now_ms < last + u64::from(opts.interval_ms) {
                        keep.push(a);
                        continue;
                    }
                    let Some(frame) = self.snapshot_frame(a, opts.depth) else {
                        keep.push(a);
                        continue;
                    };
                    if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                        if let Some(ca) = c.assets.get_mut(&a) {
                            ca.dirty = false;
                            ca.last_snap_ms = now_ms.max(1);
                        }
                        c.push(frame);
                    }
                    self.list(i);
                }
                if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                    c.dirty.extend(keep);
                }
            }
            // Legacy top-10 messages.
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if c.legacy.is_empty() || !c.is_open() {
                continue;
            }
            let mut due = Vec::new();
            for l in &mut c.legacy {
                if now_ms >= l.next_ms {
                    l.next_ms = now_ms + l.interval_ms;
                    due.push(l.asset);
                }
            }
            for a in due {
                let Some(b) = self.books.get(a.index()).and_then(Option::as_ref) else {
                    continue;
                };
                let hash = b.mirror.hash_hex(&mut self.ctx);
                let mut out = Vec::new();
                p::legacy_orderbook(&mut out, b.mirror.book(), &hash, b.untrusted.is_none());
                self.send_droppable(i, Chunk::Owned(p::text_frame(&out)));
            }
        }
    }

    pub(super) fn heartbeat(&mut self) {
        let ms = jiff::Timestamp::now().as_millisecond();
        let json = format!("{{\"type\":\"heartbeat\",\"ts_ms\":{ms}}}");
        let frame: Arc<[u8]> = Arc::from(p::text_frame(json.as_bytes()));
        for i in 0..self.clients.len() {
            if self.clients[i].as_ref().is_some_and(Client::is_open) {
                self.send_droppable(i, Chunk::Shared(Arc::clone(&frame)));
            }
        }
    }
}
