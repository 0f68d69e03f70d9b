//! The connection pool's plan (seed component 5): which assets go on which connection, when.
//!
//! Pure policy, owned by the event loop: it never touches a socket. The event loop asks
//! [`PoolPlanner::plan`] what to do and carries out the returned [`PoolAction`]s (open a
//! connection with an initial subscription, or subscribe more assets on a live one).
//!
//! Rules (seed `ConnectionPool`, docs/venue-protocol.md §2.5):
//! - Every token of a market goes on the same connection (a `price_change` names all of a
//!   market's tokens; records are applied only from the asset's owner connection).
//! - A connection carries at most `target_per_connection` assets (default 200; the venue
//!   silently stops sending data beyond ~500, the hard maximum).
//! - At start-up everything pending is planned at once; afterwards pending assets are
//!   batched: planned every `batch_interval` or as soon as `min_pending` are waiting.
//!   [`PoolPlanner::force`] plans at once (seed `force_subscribe`).
//! - New connections open gradually: at most `max_opens_per_plan` per call.
//! - Draining connections (being recycled) take no new assets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::market::AssetId;
use crate::registry::{ConnId, Registry};

/// Pool policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Assets per connection the planner aims for.
    pub target_per_connection: usize,
    /// Never more than this on one connection (the venue's limit).
    pub hard_max_per_connection: usize,
    /// After start-up, plan pending assets at least this often.
    pub batch_interval: Duration,
    /// … or as soon as this many are pending.
    pub min_pending: usize,
    /// Connections opened per plan at most (gradual opening).
    pub max_opens_per_plan: usize,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            target_per_connection: 200,
            hard_max_per_connection: 500,
            batch_interval: Duration::from_secs(5),
            min_pending: 50,
            max_opens_per_plan: 4,
        }
    }
}

/// Something the event loop must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolAction {
    /// Open connection `conn` and send these assets in its initial subscription.
    Open {
        /// New connection id.
        conn: ConnId,
        /// Assets to subscribe.
        assets: Vec<AssetId>,
    },
    /// Subscribe these assets on the live connection `conn`.
    Subscribe {
        /// Connection id.
        conn: ConnId,
        /// Assets to subscribe.
        assets: Vec<AssetId>,
    },
}

#[derive(Clone, Debug)]
struct Slot {
    assigned: usize,
    draining: bool,
}

/// Plans subscriptions across connections.
#[derive(Debug)]
pub struct PoolPlanner {
    config: PoolConfig,
    slots: BTreeMap<ConnId, Slot>,
    next_conn: ConnId,
    last_plan: Option<Instant>,
    forced: bool,
}

impl PoolPlanner {
    /// A planner with no connections.
    pub fn new(config: PoolConfig) -> PoolPlanner {
        PoolPlanner {
            config,
            slots: BTreeMap::new(),
            next_conn: 0,
            last_plan: None,
            forced: false,
        }
    }

    /// The policy.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Plans at the next call regardless of batching (seed `force_subscribe`).
    pub fn force(&mut self) {
        self.forced = true;
    }

    /// Reserves a fresh connection id (the recycler opens replacement connections with it).
    pub fn reserve_connection(&mut self, draining: bool) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.slots.insert(
            conn,
            Slot {
                assigned: 0,
                draining,
            },
        );
        conn
    }

    /// Marks a connection draining (no new assets) or not.
    pub fn set_draining(&mut self, conn: ConnId, draining: bool) {
        if let Some(s) = self.slots.get_mut(&conn) {
            s.draining = draining;
        }
    }

    /// Forgets a closed connection.
    pub fn remove_connection(&mut self, conn: ConnId) {
        self.slots.remove(&conn);
    }

    /// Updates how many assets a connection holds (after moves, expiries, removals).
    pub fn set_assigned(&mut self, conn: ConnId, assigned: usize) {
        if let Some(s) = self.slots.get_mut(&conn) {
            s.assigned = assigned;
        }
    }

    /// Connections known to the planner.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.keys().copied()
    }

    /// Total capacity (target per connection × connections).
    pub fn total_capacity(&self) -> usize {
        self.slots.len() * self.config.target_per_connection
    }

    /// Decides what to do with the registry's pending assets now. `live` says whether a
    /// connection can take a dynamic subscribe (it is connected).
    pub fn plan(
        &mut self,
        registry: &Registry,
        now: Instant,
        live: &dyn Fn(ConnId) -> bool,
    ) -> Vec<PoolAction> {
        let pending = registry.pending_count();
        if pending == 0 {
            return Vec::new();
        }
        let due = match self.last_plan {
            None => true,
            Some(t) => {
                self.forced
                    || pending >= self.config.min_pending
                    || now.duration_since(t) >= self.config.batch_interval
            }
        };
        if !due {
            return Vec::new();
        }
        self.forced = false;
        self.last_plan = Some(now);

        // Group pending assets by market, keeping a market's tokens together.
        let mut groups: Vec<Vec<AssetId>> = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        for id in registry.pending() {
            let Some(entry) = registry.get(id) else {
                continue;
            };
            if !seen.insert(entry.info.condition.as_str()) {
                continue;
            }
            let group: Vec<AssetId> = registry
                .by_condition(&entry.info.condition)
                .iter()
                .copied()
                .filter(|a| {
                    registry
                        .get(*a)
                        .is_some_and(|e| e.status == crate::registry::AssetStatus::Pending)
                })
                .collect();
            groups.push(group);
        }

        let target = self
            .config
            .target_per_connection
            .min(self.config.hard_max_per_connection);
        let mut actions: Vec<PoolAction> = Vec::new();
        let mut groups = groups.into_iter().peekable();
        // 1. Fill live connections that have room.
        let conns: Vec<ConnId> = self.slots.keys().copied().collect();
        for conn in conns {
            let Some(slot) = self.slots.get_mut(&conn) else {
                continue;
            };
            if slot.draining || !live(conn) {
                continue;
            }
            let mut batch = Vec::new();
            while let Some(g) = groups.peek() {
                if slot.assigned + batch.len() + g.len() > target {
                    break;
                }
                batch.extend(groups.next().unwrap_or_default());
            }
            if !batch.is_empty() {
                slot.assigned += batch.len();
                actions.push(PoolAction::Subscribe {
                    conn,
                    assets: batch,
                });
            }
        }
        // 2. Open new connections for the rest, gradually.
        let mut opened = 0;
        while groups.peek().is_some() && opened < self.config.max_opens_per_plan {
            let mut batch = Vec::new();
            while let Some(g) = groups.peek() {
                if !batch.is_empty() && batch.len() + g.len() > target {
                    break;
                }
                batch.extend(groups.next().unwrap_or_default());
            }
            let conn = self.reserve_connection(false);
            if let Some(s) = self.slots.get_mut(&conn) {
                s.assigned = batch.len();
            }
            actions.push(PoolAction::Open {
                conn,
                assets: batch,
            });
            opened += 1;
        }
        if groups.peek().is_some() {
            // More to open next time: do not wait for the batch interval.
            self.forced = true;
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Size;
    use crate::registry::AssetInfo;

    fn registry(markets: usize, tokens: usize) -> Registry {
        let mut r = Registry::new();
        for m in 0..markets {
            for t in 0..tokens {
                r.add_asset(AssetInfo {
                    token: format!("{m}-{t}"),
                    condition: format!("0x{m}"),
                    outcome: String::new(),
                    question: String::new(),
                    end_ms: None,
                    tick_size: None,
                    min_order_size: Size::ZERO,
                    neg_risk: false,
                    meta_known: true,
                });
            }
        }
        r
    }

    fn apply(r: &mut Registry, actions: &[PoolAction]) {
        for a in actions {
            let (PoolAction::Open { conn, assets } | PoolAction::Subscribe { conn, assets }) = a;
            for id in assets {
                r.mark_subscribed(*id, *conn);
            }
        }
    }

    #[test]
    fn startup_plans_everything_with_markets_kept_together() {
        let mut r = registry(250, 2);
        let mut p = PoolPlanner::new(PoolConfig {
            max_opens_per_plan: 10,
            ..PoolConfig::default()
        });
        let now = Instant::now();
        let actions = p.plan(&r, now, &|_| false);
        assert_eq!(actions.len(), 3);
        let sizes: Vec<usize> = actions
            .iter()
            .map(|a| match a {
                PoolAction::Open { assets, .. } => assets.len(),
                PoolAction::Subscribe { .. } => panic!("no live connection yet"),
            })
            .collect();
        assert_eq!(sizes, vec![200, 200, 100]);
        apply(&mut r, &actions);
        assert_eq!(r.pending_count(), 0);
        for conn in 0..3 {
            for id in r.by_connection(conn).collect::<Vec<_>>() {
                let cond = r.get(id).unwrap().info.condition.clone();
                assert!(
                    r.by_condition(&cond)
                        .iter()
                        .all(|a| r.owner(*a) == Some(conn))
                );
            }
        }
    }

    #[test]
    fn later_pending_is_batched_and_fills_live_connections() {
        let mut r = registry(10, 2);
        let mut p = PoolPlanner::new(PoolConfig::default());
        let t0 = Instant::now();
        let a = p.plan(&r, t0, &|_| true);
        apply(&mut r, &a);
        r.add_asset(AssetInfo {
            token: "new".into(),
            condition: "0xnew".into(),
            outcome: String::new(),
            question: String::new(),
            end_ms: None,
            tick_size: None,
            min_order_size: Size::ZERO,
            neg_risk: false,
            meta_known: true,
        });
        assert!(
            p.plan(&r, t0 + Duration::from_secs(1), &|_| true)
                .is_empty(),
            "batched"
        );
        let a = p.plan(&r, t0 + Duration::from_secs(6), &|_| true);
        assert_eq!(
            a,
            vec![PoolAction::Subscribe {
                conn: 0,
                assets: vec![r.resolve("new").unwrap()]
            }]
        );
    }

    #[test]
    fn opens_gradually() {
        let r = registry(1000, 2);
        let mut p = PoolPlanner::new(PoolConfig::default());
        let a = p.plan(&r, Instant::now(), &|_| false);
        assert_eq!(a.len(), 4);
        assert!(p.forced, "the rest is planned at the next call");
    }
}
