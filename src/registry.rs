//! The asset registry (seed component 3): every known asset, its status and its connection.
//!
//! Owned by the event loop thread alone, so it needs no locks (the seeds' `asyncio.Lock` is
//! replaced by single ownership). It interns token ids to [`AssetId`]s and keeps the indexes
//! the seeds name: by token, by condition id (market), by connection, by status and by
//! expiration. The per-record hot path uses only [`Registry::owner`] and
//! [`Registry::resolve`], which are array lookups after an allocation-free intern lookup.

use std::collections::{BTreeSet, HashMap};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::market::{AssetId, AssetInterner, Price, Size};

/// A connection's id, as the pool numbers them.
pub type ConnId = u32;

/// Lifecycle status of an asset (seed `AssetStatus`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetStatus {
    /// Known, not yet subscribed on any connection.
    Pending,
    /// Subscribed on a connection.
    Subscribed,
    /// Past its end; unsubscribed, kept until the cleanup grace period ends.
    Expired,
}

/// What discovery knows about an asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    /// Token id.
    pub token: String,
    /// Condition id (`0x…`): all tokens of a market share it.
    pub condition: String,
    /// Outcome name ("Yes", "Up", …).
    pub outcome: String,
    /// Market question, when known.
    pub question: String,
    /// End time, Unix ms.
    pub end_ms: Option<u64>,
    /// Minimum tick.
    pub tick_size: Option<Price>,
    /// Minimum order size (the hash needs it).
    pub min_order_size: Size,
    /// Negative-risk market (the hash needs it).
    pub neg_risk: bool,
    /// `min_order_size` and `neg_risk` come from Gamma; `false` = defaults the book infers
    /// from its first hash ([`BookMeta::known`](crate::orderbook::BookMeta::known)).
    pub meta_known: bool,
}

/// One asset's registry entry.
#[derive(Clone, Debug)]
pub struct AssetEntry {
    /// Interned id.
    pub id: AssetId,
    /// Discovery facts.
    pub info: AssetInfo,
    /// Status.
    pub status: AssetStatus,
    /// Owner connection while subscribed.
    pub connection: Option<ConnId>,
    /// When the asset became expired (ms), for the cleanup grace period.
    pub expired_at_ms: Option<u64>,
}

/// Per-connection counts (seed `connection_stats`), with the pollution ratio.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ConnectionAssets {
    /// Assets assigned (subscribed or expired but not yet moved).
    pub total: usize,
    /// Subscribed assets.
    pub active: usize,
    /// Expired assets still counted against the connection.
    pub expired: usize,
    /// `expired / total` (0 when empty).
    pub pollution_ratio: f64,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Registry {
    interner: AssetInterner,
    entries: Vec<Option<AssetEntry>>,
    /// Owner connection per asset index, `u32::MAX` for none: the hot-path lookup.
    owners: Vec<ConnId>,
    by_condition: HashMap<String, Vec<AssetId>>,
    by_connection: FxHashMap<ConnId, FxHashSet<AssetId>>,
    pending: BTreeSet<AssetId>,
    counts: [usize; 3],
    expirations: BTreeSet<(u64, AssetId)>,
    /// Grows by one on every change; readers rebuild their views only when it moved.
    revision: u64,
}

const NO_OWNER: ConnId = u32::MAX;

fn status_slot(s: AssetStatus) -> usize {
    match s {
        AssetStatus::Pending => 0,
        AssetStatus::Subscribed => 1,
        AssetStatus::Expired => 2,
    }
}

impl Registry {
    /// Changes so far: equal revisions, equal contents.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds an asset as pending; returns its id and whether it was new. Re-adding a known
    /// asset updates its facts (a removed asset comes back as pending).
    pub fn add_asset(&mut self, info: AssetInfo) -> (AssetId, bool) {
        self.revision += 1;
        let id = self.interner.intern(&info.token);
        let idx = id.index();
        if self.entries.len() <= idx {
            self.entries.resize_with(idx + 1, || None);
            self.owners.resize(idx + 1, NO_OWNER);
        }
        if let Some(entry) = self.entries[idx].as_mut() {
            if let Some(end) = entry.info.end_ms {
                self.expirations.remove(&(end, id));
            }
            if let Some(end) = info.end_ms {
                self.expirations.insert((end, id));
            }
            entry.info = info;
            return (id, false);
        }
        if let Some(end) = info.end_ms {
            self.expirations.insert((end, id));
        }
        self.by_condition
            .entry(info.condition.clone())
            .or_default()
            .push(id);
        self.entries[idx] = Some(AssetEntry {
            id,
            info,
            status: AssetStatus::Pending,
            connection: None,
            expired_at_ms: None,
        });
        self.pending.insert(id);
        self.counts[0] += 1;
        (id, true)
    }

    /// The entry of an asset.
    pub fn get(&self, id: AssetId) -> Option<&AssetEntry> {
        self.entries.get(id.index()).and_then(Option::as_ref)
    }

    /// The entry of a token.
    pub fn get_by_token(&self, token: &str) -> Option<&AssetEntry> {
        self.interner.get(token).and_then(|id| self.get(id))
    }

    /// Resolves a token to a registered asset without allocating (hot path).
    #[inline]
    pub fn resolve(&self, token: &str) -> Option<AssetId> {
        let id = self.interner.get(token)?;
        self.entries.get(id.index())?.as_ref().map(|_| id)
    }

    /// The connection that owns an asset's updates (hot path).
    #[inline]
    pub fn owner(&self, id: AssetId) -> Option<ConnId> {
        match self.owners.get(id.index()) {
            Some(&c) if c != NO_OWNER => Some(c),
            _ => None,
        }
    }

    /// Token text of an asset.
    pub fn token(&self, id: AssetId) -> Option<&str> {
        self.interner.name(id)
    }

    /// Assets of a market (condition id).
    pub fn by_condition(&self, condition: &str) -> &[AssetId] {
        self.by_condition
            .get(condition)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every known condition id.
    pub fn conditions(&self) -> impl Iterator<Item = &str> {
        self.by_condition.keys().map(String::as_str)
    }

    /// Assets on a connection.
    pub fn by_connection(&self, conn: ConnId) -> impl Iterator<Item = AssetId> + '_ {
        self.by_connection
            .get(&conn)
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Assets with a status.
    pub fn by_status(&self, status: AssetStatus) -> impl Iterator<Item = &AssetEntry> {
        self.entries
            .iter()
            .flatten()
            .filter(move |e| e.status == status)
    }

    /// Number of assets with a status.
    pub fn count(&self, status: AssetStatus) -> usize {
        self.counts[status_slot(status)]
    }

    /// Number of pending assets (seed `get_pending_count`).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Pending assets in id order.
    pub fn pending(&self) -> impl Iterator<Item = AssetId> + '_ {
        self.pending.iter().copied()
    }

    /// Number of registered assets.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_status(&mut self, id: AssetId, status: AssetStatus) {
        let Some(entry) = self.entries.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        self.counts[status_slot(entry.status)] -= 1;
        self.counts[status_slot(status)] += 1;
        entry.status = status;
        if status == AssetStatus::Pending {
            self.pending.insert(id);
        } else {
            self.pending.remove(&id);
        }
    }

    /// Marks an asset subscribed on `conn` and makes `conn` its owner.
    pub fn mark_subscribed(&mut self, id: AssetId, conn: ConnId) {
        self.revision += 1;
        if self.get(id).is_none() {
            return;
        }
        self.reassign_connection(id, Some(conn));
        self.set_status(id, AssetStatus::Subscribed);
    }

    /// Moves an asset's ownership to another connection (or none), atomically for the
    /// event loop: the next record is checked against the new owner.
    pub fn reassign_connection(&mut self, id: AssetId, conn: Option<ConnId>) {
        self.revision += 1;
        let Some(entry) = self.entries.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        if let Some(old) = entry.connection.take() {
            if let Some(set) = self.by_connection.get_mut(&old) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_connection.remove(&old);
                }
            }
        }
        entry.connection = conn;
        self.owners[id.index()] = conn.unwrap_or(NO_OWNER);
        if let Some(c) = conn {
            self.by_connection.entry(c).or_default().insert(id);
        }
    }

    /// Puts an asset back to pending (its connection is gone or it must be resubscribed).
    pub fn mark_pending(&mut self, id: AssetId) {
        self.revision += 1;
        self.reassign_connection(id, None);
        self.set_status(id, AssetStatus::Pending);
    }

    /// Marks an asset expired at `now_ms`. It keeps its connection entry (counted as
    /// pollution) until the connection is recycled, but stops owning updates.
    pub fn mark_expired(&mut self, id: AssetId, now_ms: u64) {
        self.revision += 1;
        let Some(entry) = self.entries.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        entry.expired_at_ms = Some(now_ms);
        self.owners[id.index()] = NO_OWNER;
        self.set_status(id, AssetStatus::Expired);
    }

    /// Removes an asset entirely (after the cleanup grace period).
    pub fn remove(&mut self, id: AssetId) -> Option<AssetEntry> {
        self.revision += 1;
        self.reassign_connection(id, None);
        let entry = self.entries.get_mut(id.index())?.take()?;
        self.counts[status_slot(entry.status)] -= 1;
        self.pending.remove(&id);
        if let Some(end) = entry.info.end_ms {
            self.expirations.remove(&(end, id));
        }
        if let Some(list) = self.by_condition.get_mut(&entry.info.condition) {
            list.retain(|a| *a != id);
            if list.is_empty() {
                self.by_condition.remove(&entry.info.condition);
            }
        }
        Some(entry)
    }

    /// Assets whose end time is before `ms` (seed `get_expiring_before`), any status.
    pub fn expiring_before(&self, ms: u64) -> impl Iterator<Item = AssetId> + '_ {
        self.expirations
            .range(..(ms, AssetId(0)))
            .map(|(_, id)| *id)
    }

    /// Counts for one connection.
    pub fn connection_stats(&self, conn: ConnId) -> ConnectionAssets {
        let mut c = ConnectionAssets::default();
        for id in self.by_connection(conn) {
            c.total += 1;
            match self.get(id).map(|e| e.status) {
                Some(AssetStatus::Subscribed) => c.active += 1,
                Some(AssetStatus::Expired) => c.expired += 1,
                _ => {}
            }
        }
        if c.total > 0 {
            c.pollution_ratio = c.expired as f64 / c.total as f64;
        }
        c
    }

    /// Every connection that holds assets.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.by_connection.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(token: &str, condition: &str, end_ms: Option<u64>) -> AssetInfo {
        AssetInfo {
            token: token.into(),
            condition: condition.into(),
            outcome: "Yes".into(),
            question: String::new(),
            end_ms,
            tick_size: None,
            min_order_size: Size::from_raw(5_000_000),
            neg_risk: false,
            meta_known: true,
        }
    }

    #[test]
    fn lifecycle_and_indexes() {
        let mut r = Registry::new();
        let (a, new) = r.add_asset(info("111", "0xa", Some(1_000)));
        assert!(new);
        let (b, _) = r.add_asset(info("222", "0xa", Some(2_000)));
        let (c, _) = r.add_asset(info("333", "0xb", None));
        assert_eq!(r.add_asset(info("111", "0xa", Some(1_000))), (a, false));
        assert_eq!(r.pending_count(), 3);
        assert_eq!(r.by_condition("0xa"), &[a, b]);
        r.mark_subscribed(a, 1);
        r.mark_subscribed(b, 1);
        r.mark_subscribed(c, 2);
        assert_eq!(r.owner(a), Some(1));
        assert_eq!(r.count(AssetStatus::Subscribed), 3);
        assert_eq!(r.pending_count(), 0);
        assert_eq!(r.expiring_before(1_500).collect::<Vec<_>>(), vec![a]);
        r.mark_expired(a, 1_600);
        assert_eq!(r.owner(a), None);
        let s = r.connection_stats(1);
        assert_eq!((s.total, s.active, s.expired), (2, 1, 1));
        assert!((s.pollution_ratio - 0.5).abs() < 1e-9);
        r.reassign_connection(b, Some(3));
        assert_eq!(r.owner(b), Some(3));
        assert_eq!(r.by_connection(3).collect::<Vec<_>>(), vec![b]);
        assert!(r.remove(a).is_some());
        assert_eq!(r.resolve("111"), None);
        assert_eq!(r.by_condition("0xa"), &[b]);
        assert_eq!(r.len(), 2);
        r.mark_pending(c);
        assert_eq!((r.owner(c), r.pending_count()), (None, 1));
    }
}
