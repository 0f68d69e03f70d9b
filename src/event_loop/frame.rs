//! The per-frame hot path (event-loop thread): decode a frame once, check each record's
//! owner connection, hand it to the router, and turn decode failures into resyncs.
//! [`Core`] is everything a frame touches, split from the connections so both can be
//! borrowed at once. No allocation, lock or log line per message.

use std::time::Instant;

use crate::watchdog::Resyncs;

use super::config::{LifecycleCounts, ResyncCause};
use super::snapshot;
use crate::handoff::{Router, RouterStats};
use crate::market::{AssetId, Event};
use crate::recycler::Recycler;
use crate::registry::{ConnId, Registry};
use crate::venue::{DecodeOutput, Decoder, Notice};
use std::sync::Arc;

/// What one frame carried (see [`Core::on_frame`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FrameOutcome {
    /// Messages (or the frame) that failed to decode.
    pub(super) failed: u32,
    /// Flow records routed.
    pub(super) flow: u32,
}

/// Everything a frame touches; split from the connections so both can be borrowed at once.
pub(super) struct Core {
    pub(super) registry: Registry,
    pub(super) decoder: Decoder,
    pub(super) out: DecodeOutput,
    pub(super) router: Router,
    pub(super) router_stats: Arc<RouterStats>,
    pub(super) workers_of: Vec<u16>,
    /// When each asset last received a record (ns), for the asset-silence watchdog.
    pub(super) last_record_ns: Vec<u64>,
    /// Flow records per asset since the probe last chose its assets (`probe.rs`).
    pub(super) flow_counts: Vec<u32>,
    /// Owners the probe's current frames named (evidence; drained by `probe.rs`).
    pub(super) probe_hits: Vec<ConnId>,
    /// Frames the probe connection received.
    pub(super) probe_frames: u64,
    /// Assets waiting for a snapshot, wanted for a resync, and the counts (`watchdog.rs`).
    pub(super) resyncs: Resyncs,
    pub(super) stats: snapshot::IntegrityView,
    pub(super) lost: Vec<AssetId>,
    pub(super) notices: Vec<Notice>,
    /// Expired assets in expiry order, with the Unix ms they expired at (for cleanup).
    pub(super) expired_queue: std::collections::VecDeque<(u64, AssetId)>,
    pub(super) lifecycle: LifecycleCounts,
    /// Recycles in progress; consulted on the hot path only for a snapshot that arrives on
    /// a connection that does not own its asset.
    pub(super) recycler: Recycler,
}

impl Core {
    /// Decodes one frame from `conn` and routes its records; returns how many of its
    /// messages (or the frame itself) failed to decode, and how many flow records (changes,
    /// trades, tick sizes, quotes: what every subscriber receives) it carried.
    pub(super) fn on_frame(&mut self, conn: ConnId, text: &str, recv_ns: u64) -> FrameOutcome {
        self.out.clear();
        let mut resolver = RegistryResolver(&self.registry);
        let (_, fs) = self
            .decoder
            .decode(text.as_bytes(), recv_ns, &mut resolver, &mut self.out);
        self.stats.frames += 1;
        self.stats.messages += u64::from(fs.messages);
        self.stats.unknown_messages += u64::from(fs.unknown);
        self.stats.decode_failures += u64::from(fs.failed);
        self.stats.unknown_assets += u64::from(fs.unresolved);
        let mut flow = 0u32;
        for i in 0..self.out.records.len() {
            let rec = self.out.records[i];
            if self.registry.owner(rec.asset) != Some(conn) && !self.try_move(conn, &rec) {
                self.stats.foreign_entries += 1;
                continue;
            }
            match rec.event {
                Event::BookBegin { .. } => self.resyncs.snapshot_arrived(rec.asset),
                Event::Level { .. } | Event::BookEnd { .. } => {}
                _ => {
                    flow += 1;
                    if let Some(n) = self.flow_counts.get_mut(rec.asset.index()) {
                        *n = n.saturating_add(1);
                    }
                }
            }
            if let Some(t) = self.last_record_ns.get_mut(rec.asset.index()) {
                *t = recv_ns;
            }
            // Unregistered assets are counted by the router.
            let _ = self.router.route(rec);
        }
        if !self.out.failures.is_empty() {
            self.on_failures(conn);
        }
        if !self.out.notices.is_empty() {
            self.notices.append(&mut self.out.notices);
        }
        FrameOutcome {
            failed: fs.failed,
            flow,
        }
    }

    /// Decodes one frame of the probe connection (`probe.rs`): nothing is routed or applied
    /// (the owner rule stands); the owner of each asset that got a flow record is noted in
    /// `probe_hits` as evidence that the venue is sending it data.
    pub(super) fn on_probe_frame(&mut self, text: &str, recv_ns: u64) {
        self.out.clear();
        let mut resolver = RegistryResolver(&self.registry);
        let _ = self
            .decoder
            .decode(text.as_bytes(), recv_ns, &mut resolver, &mut self.out);
        self.probe_frames += 1;
        for rec in &self.out.records {
            if matches!(
                rec.event,
                Event::BookBegin { .. } | Event::Level { .. } | Event::BookEnd { .. }
            ) {
                continue; // snapshots go to the subscriber only: no evidence
            }
            if let Some(owner) = self.registry.owner(rec.asset) {
                if self.probe_hits.last() != Some(&owner) {
                    self.probe_hits.push(owner);
                }
            }
        }
        // Failures and notices of the probe's frames are the owners' business.
        self.out.failures.clear();
        self.out.notices.clear();
    }

    /// A frame (or part) failed to decode: every asset it may have carried data for is
    /// marked untrusted and resynced. Cold path (allocates).
    pub(super) fn on_failures(&mut self, conn: ConnId) {
        let failures = std::mem::take(&mut self.out.failures);
        let mut hit: Vec<AssetId> = Vec::new();
        for f in &failures {
            hit.extend(f.assets.iter().copied());
            for m in &f.markets {
                hit.extend(self.registry.by_condition(m).iter().copied());
            }
            if f.assets.is_empty() && f.markets.is_empty() {
                // Names nothing: anything on this connection may have lost data.
                hit.extend(self.registry.by_connection(conn));
                self.stats.unattributed_failures += 1;
            }
        }
        hit.sort_unstable();
        hit.dedup();
        for asset in hit {
            if self.registry.owner(asset) == Some(conn) {
                self.mark_lost(asset);
                self.want(asset, ResyncCause::DecodeFailure);
            }
        }
        self.out.failures = failures;
    }

    /// A record from a connection that does not own its asset: when it is the snapshot a
    /// recycle waits for, the asset moves to this connection now (make-before-break).
    #[cold]
    pub(super) fn try_move(&mut self, conn: ConnId, rec: &crate::market::Record) -> bool {
        if !matches!(rec.event, Event::BookBegin { .. }) || !self.recycler.is_replacement(conn) {
            return false;
        }
        match self.recycler.on_snapshot(conn, rec.asset, Instant::now()) {
            Some(m) => {
                self.registry.mark_subscribed(m.asset, m.to);
                true
            }
            None => false,
        }
    }

    pub(super) fn mark_lost(&mut self, asset: AssetId) {
        let _ = self.router.mark_data_loss(asset);
    }

    pub(super) fn want(&mut self, asset: AssetId, cause: ResyncCause) {
        self.resyncs.want(asset, cause);
    }
}

/// Resolves token ids against the registry (never interns: unknown assets are counted).
struct RegistryResolver<'a>(&'a Registry);

impl crate::venue::AssetResolver for RegistryResolver<'_> {
    fn resolve(&mut self, token: &str) -> Option<AssetId> {
        self.0.resolve(token)
    }
}
