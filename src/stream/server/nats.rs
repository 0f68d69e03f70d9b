//! The stream thread's NATS side (`--nats-url`; see the module docs of `crate::nats`).
//!
//! Every message the WebSocket clients could get is also handed to the NATS sink, encoded
//! once (the same JSON): book-channel messages on the token's book subject, copies of trades
//! and trust changes on their subjects, bbo on its own. Per book it keeps what NATS needs:
//!
//! - `need_snap`: the book's next publication is a full snapshot (after a dropped message,
//!   and for every book after a NATS gap: the *sweep* publishes them, paced by the
//!   channel's room, so quiet books are repaired too);
//! - `kv_dirty`: the KV entry (`<prefix>_books`, key = token id) is stale; rewritten at most
//!   every `snapshot_every`, at once on a trust change, with a bounded number in flight.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use super::Server;
use crate::feed::{FeedEvent, FeedKind};
use crate::market::AssetId;
use crate::nats::{NatsSink, Offer, Out, Subjects};
use crate::orderbook::BookMeta;

/// What NATS needs of one book.
struct TapAsset {
    subjects: Subjects,
    key: Box<str>,
    need_snap: bool,
    in_sweep: bool,
    kv_dirty: bool,
    kv_listed: bool,
    kv_last: Option<Instant>,
}

/// The NATS state of the stream thread.
pub(in crate::stream) struct NatsTap {
    sink: NatsSink,
    assets: Vec<Option<TapAsset>>,
    generation: u64,
    live: bool,
    sweep: VecDeque<AssetId>,
    kv_due: Vec<AssetId>,
    kv_failures: u64,
}

impl std::fmt::Debug for NatsTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTap")
            .field("books", &self.assets.iter().flatten().count())
            .field("generation", &self.generation)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl NatsTap {
    pub(in crate::stream) fn new(sink: NatsSink) -> NatsTap {
        NatsTap {
            sink,
            assets: Vec::new(),
            generation: u64::MAX,
            live: false,
            sweep: VecDeque::new(),
            kv_due: Vec::new(),
            kv_failures: 0,
        }
    }

    fn asset(&mut self, a: AssetId) -> Option<&mut TapAsset> {
        self.assets.get_mut(a.index()).and_then(Option::as_mut)
    }

    fn want_snapshot(&mut self, a: AssetId) {
        let Some(t) = self.assets.get_mut(a.index()).and_then(Option::as_mut) else {
            return;
        };
        t.need_snap = true;
        if !t.in_sweep {
            t.in_sweep = true;
            self.sweep.push_back(a);
        }
    }

    fn kv_stale(&mut self, a: AssetId) {
        let Some(t) = self.assets.get_mut(a.index()).and_then(Option::as_mut) else {
            return;
        };
        t.kv_dirty = true;
        if !t.kv_listed {
            t.kv_listed = true;
            self.kv_due.push(a);
        }
    }

    /// Queues one publication; a full channel drops it (counted) and wants a snapshot.
    fn publish(&mut self, a: AssetId, subject: Which, payload: Bytes, snapshot: bool) {
        let Some(t) = self.asset(a) else { return };
        let subject = match subject {
            Which::Book => t.subjects.book.clone(),
            Which::Bbo => t.subjects.bbo.clone(),
            Which::Trade => t.subjects.trade.clone(),
            Which::Status => t.subjects.status.clone(),
        };
        let out = Out::Publish {
            subject,
            payload,
            generation: self.generation,
            snapshot,
        };
        match self.sink.offer(out) {
            Offer::Queued => {}
            Offer::Full => {
                let s = self.sink.stats();
                s.drop_one(&s.dropped_full);
                self.want_snapshot(a);
                self.kv_stale(a);
            }
            Offer::Closed => {
                let s = self.sink.stats();
                s.drop_one(&s.dropped_failed);
                self.live = false;
            }
        }
    }

    /// Queues a KV write if the window has room; false: try again later.
    fn kv_put(&mut self, a: AssetId, value: Bytes, now: Instant) -> bool {
        let window = self.sink.config().kv_window as u64;
        let stats = std::sync::Arc::clone(self.sink.stats());
        if stats.kv_inflight.load(Ordering::Relaxed) >= window {
            return false;
        }
        let Some(t) = self.asset(a) else { return true };
        let key = t.key.clone();
        stats.kv_inflight.fetch_add(1, Ordering::Relaxed);
        match self.sink.offer(Out::KvPut { key, value }) {
            Offer::Queued => {
                if let Some(t) = self.asset(a) {
                    t.kv_dirty = false;
                    t.kv_last = Some(now);
                }
                true
            }
            Offer::Full | Offer::Closed => {
                stats.kv_inflight.fetch_sub(1, Ordering::Relaxed);
                false
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    Book,
    Bbo,
    Trade,
    Status,
}

/// The JSON inside one unmasked server frame (`protocol::text_frame`).
fn frame_json(frame: &[u8]) -> &[u8] {
    let head = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(head..).unwrap_or_default()
}

impl Server {
    /// True when NATS gets this event; counts it as dropped when NATS is configured but down.
    pub(super) fn nats_wanted(&self) -> bool {
        match &self.nats {
            Some(n) if n.live => true,
            Some(n) => {
                let s = n.sink.stats();
                s.drop_one(&s.dropped_down);
                false
            }
            None => false,
        }
    }

    pub(super) fn nats_meta(&mut self, asset: AssetId, meta: &BookMeta) {
        let Some(n) = &mut self.nats else { return };
        let i = asset.index();
        if i >= n.assets.len() {
            n.assets.resize_with(i + 1, || None);
        }
        let subjects = Subjects::new(&n.sink.config().prefix, &meta.market, &meta.asset_id);
        match &mut n.assets[i] {
            Some(t) => t.subjects = subjects,
            slot @ None => {
                *slot = Some(TapAsset {
                    subjects,
                    key: meta.asset_id.clone(),
                    need_snap: false,
                    in_sweep: false,
                    kv_dirty: false,
                    kv_listed: false,
                    kv_last: None,
                });
            }
        }
    }

    /// A full snapshot of `asset` on its book subject, and into the KV bucket when `kv`.
    fn nats_snapshot(&mut self, asset: AssetId, kv: bool) {
        let Some(frame) = self.snapshot_frame(asset, 0) else {
            return;
        };
        let json = Bytes::copy_from_slice(frame_json(frame.bytes()));
        let Some(n) = &mut self.nats else { return };
        if let Some(t) = n.asset(asset) {
            t.need_snap = false;
        }
        n.publish(asset, Which::Book, json.clone(), true);
        if kv && !n.kv_put(asset, json, Instant::now()) {
            n.kv_stale(asset);
        }
    }

    /// The feed delivered a whole snapshot (subscribe, resubscribe, repair).
    pub(super) fn nats_snapshot_done(&mut self, asset: AssetId, bbo_changed: bool) {
        if !self.nats_wanted() {
            return;
        }
        self.nats_snapshot(asset, true);
        if bbo_changed {
            self.nats_bbo(asset);
        }
    }

    /// A change, trade, tick size or trust change, already encoded as `json`.
    pub(super) fn nats_event(&mut self, e: &FeedEvent, json: &[u8]) {
        let asset = e.asset;
        let need_snap = self
            .nats
            .as_mut()
            .and_then(|n| n.asset(asset))
            .is_some_and(|t| t.need_snap);
        let payload = Bytes::copy_from_slice(json);
        let trust = matches!(e.kind, FeedKind::Trust { .. } | FeedKind::TickSize { .. });
        if need_snap {
            // The mirror holds this event already: the snapshot carries it, at its seq.
            self.nats_snapshot(asset, trust);
        } else if let Some(n) = &mut self.nats {
            n.publish(asset, Which::Book, payload.clone(), false);
            if trust {
                self.nats_kv_now(asset);
            }
        }
        let Some(n) = &mut self.nats else { return };
        match e.kind {
            FeedKind::Trade { .. } => n.publish(asset, Which::Trade, payload, false),
            FeedKind::Trust { .. } | FeedKind::TickSize { .. } => {
                n.publish(asset, Which::Status, payload, false);
            }
            _ => {}
        }
        if !trust {
            n.kv_stale(asset);
        }
    }

    /// A trust change: the KV entry is rewritten at once (or as soon as the window allows).
    fn nats_kv_now(&mut self, asset: AssetId) {
        let Some(frame) = self.snapshot_frame(asset, 0) else {
            return;
        };
        let json = Bytes::copy_from_slice(frame_json(frame.bytes()));
        if let Some(n) = &mut self.nats {
            if !n.kv_put(asset, json, Instant::now()) {
                n.kv_stale(asset);
            }
        }
    }

    pub(super) fn nats_bbo(&mut self, asset: AssetId) {
        if self.nats.is_none() {
            return;
        }
        let mut out = Vec::with_capacity(192);
        if !self.bbo_json(asset, &mut out) {
            return;
        }
        if let Some(n) = &mut self.nats {
            n.publish(asset, Which::Bbo, Bytes::from(out), false);
        }
    }

    /// The engine removed the book: `removed` on its book subject, its KV entry deleted.
    pub(super) fn nats_removed(&mut self, asset: AssetId, json: &[u8]) {
        let Some(n) = &mut self.nats else { return };
        if n.live {
            n.publish(asset, Which::Book, Bytes::copy_from_slice(json), false);
        }
        if let Some(t) = n.assets.get_mut(asset.index()).and_then(Option::take) {
            n.sink.stats().kv_inflight.fetch_add(1, Ordering::Relaxed);
            if n.sink.offer(Out::KvDelete { key: t.key }) != Offer::Queued {
                n.sink.stats().kv_inflight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// True while NATS work is pending (the loop then ticks).
    pub(super) fn nats_busy(&self) -> bool {
        self.nats
            .as_ref()
            .is_some_and(|n| n.live && (!n.sweep.is_empty() || !n.kv_due.is_empty()))
    }

    /// Once per loop iteration: follow the sink's generation and connection, repair after a
    /// gap (the sweep), refresh due KV entries.
    pub(super) fn nats_tick(&mut self, now: Instant) {
        let Some(n) = &mut self.nats else { return };
        let stats = std::sync::Arc::clone(n.sink.stats());
        let generation = stats.generation.load(Ordering::Acquire);
        n.live = stats.connected.load(Ordering::Acquire);
        if generation != n.generation {
            n.generation = generation;
            for i in 0..n.assets.len() {
                let a = AssetId(i as u32);
                if n.assets[i].is_some() {
                    n.want_snapshot(a);
                    n.kv_stale(a);
                }
            }
        }
        let failures = stats.kv_failures();
        if failures != n.kv_failures {
            n.kv_failures = failures;
            for i in 0..n.assets.len() {
                if n.assets[i].is_some() {
                    n.kv_stale(AssetId(i as u32));
                }
            }
        }
        if !self.nats.as_ref().is_some_and(|n| n.live) {
            return;
        }
        // The sweep: snapshots while the channel is at most three quarters full.
        let cap = self
            .nats
            .as_ref()
            .map_or(0, |n| n.sink.config().channel_capacity);
        while let Some(n) = &mut self.nats {
            if n.sink.room() < cap / 4 {
                break;
            }
            let Some(a) = n.sweep.pop_front() else { break };
            let Some(t) = n.asset(a) else { continue };
            t.in_sweep = false;
            if !t.need_snap {
                continue;
            }
            let busy = self
                .books
                .get(a.index())
                .and_then(Option::as_ref)
                .is_none_or(|b| b.mirror.in_snapshot());
            if busy {
                // Its snapshot from the feed is on the way; it is published when complete.
                continue;
            }
            let kv = self
                .nats
                .as_mut()
                .and_then(|n| n.asset(a))
                .is_some_and(|t| t.kv_dirty);
            self.nats_snapshot(a, kv);
        }
        self.nats_kv_refresh(now);
    }

    fn nats_kv_refresh(&mut self, now: Instant) {
        let Some(n) = &mut self.nats else { return };
        if n.kv_due.is_empty() {
            return;
        }
        let every = n.sink.config().snapshot_every;
        let due = std::mem::take(&mut n.kv_due);
        let mut keep = Vec::with_capacity(due.len());
        let mut window_full = false;
        for a in due {
            let state = self.nats.as_mut().and_then(|n| n.asset(a)).map(|t| {
                (
                    t.kv_dirty,
                    t.kv_last.is_none_or(|l| now.duration_since(l) >= every),
                )
            });
            match state {
                None | Some((false, _)) => {
                    if let Some(t) = self.nats.as_mut().and_then(|n| n.asset(a)) {
                        t.kv_listed = false;
                    }
                }
                Some((true, false)) => keep.push(a),
                Some((true, true)) if window_full => keep.push(a),
                Some((true, true)) => {
                    let Some(frame) = self.snapshot_frame(a, 0) else {
                        keep.push(a);
                        continue;
                    };
                    let json = Bytes::copy_from_slice(frame_json(frame.bytes()));
                    let Some(n) = &mut self.nats else { return };
                    if n.kv_put(a, json, now) {
                        if let Some(t) = n.asset(a) {
                            t.kv_listed = false;
                        }
                    } else {
                        window_full = true;
                        keep.push(a);
                    }
                }
            }
        }
        if let Some(n) = &mut self.nats {
            keep.append(&mut n.kv_due);
            n.kv_due = keep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_json_strips_every_header_length() {
        for len in [3usize, 200, 70_000] {
            let json = vec![b'x'; len];
            assert_eq!(
                frame_json(&crate::stream::protocol::text_frame(&json)),
                &json[..]
            );
        }
        assert_eq!(frame_json(&[]), b"");
    }
}
