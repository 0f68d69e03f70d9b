//! Seed component 5 (connection pool), acting half: register assets (seed component 3, the
//! registry) and carry out the [`PoolPlanner`](crate::pool::PoolPlanner)'s actions: open
//! connections, send subscriptions in batches. Runs on the event-loop thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::config::LifecycleEvent;
use super::run::{ConnSlot, EventLoop, token_of};
use crate::connection::{Connection, Status};
use crate::orderbook::BookMeta;
use crate::pool::PoolAction;
use crate::registry::{AssetInfo, ConnId};
use crate::venue::subscribe::Operation;

impl EventLoop {
    pub(super) fn add_assets(&mut self, infos: Vec<AssetInfo>) {
        let mut added = 0usize;
        let mut new_by_condition: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for info in infos {
            let (token, condition) = (info.token.clone(), info.condition.clone());
            let meta = BookMeta {
                asset_id: info.token.as_str().into(),
                market: info.condition.as_str().into(),
                min_order_size: info.min_order_size,
                neg_risk: info.neg_risk,
                known: info.meta_known,
            };
            if let Some(rec) = &self.recorder {
                rec.market(crate::recording::MarketMeta::of(&info));
            }
            let (id, new) = self.core.registry.add_asset(info);
            let idx = id.index();
            if self.core.workers_of.len() <= idx {
                self.core.workers_of.resize(idx + 1, 0);
                self.core.last_record_ns.resize(idx + 1, 0);
                self.core.flow_counts.resize(idx + 1, 0);
            }
            // A known asset gets its metadata refreshed (Gamma may correct it).
            let worker = self.core.router.add_book(id, meta);
            self.core.workers_of[idx] = worker as u16;
            added += usize::from(new);
            if new {
                new_by_condition.entry(condition).or_default().push(token);
            }
        }
        if let Some(hook) = &self.config.lifecycle_hook {
            for (condition, tokens) in new_by_condition {
                hook(&LifecycleEvent::NewMarket { condition, tokens });
            }
        }
        if added > 0 {
            log::info!(
                "Assets registered: added={added} total={}",
                self.core.registry.len()
            );
        }
    }

    pub(super) fn plan_subscriptions(&mut self, now: Instant) {
        let conns = &self.conns;
        let live = |c: ConnId| {
            conns
                .get(&c)
                .is_some_and(|s| s.conn.status() == Status::Connected)
        };
        let actions = self.planner.plan(&self.core.registry, now, &live);
        for action in actions {
            match action {
                PoolAction::Open { conn, assets } => {
                    for a in &assets {
                        self.core.registry.mark_subscribed(*a, conn);
                    }
                    let mut connection = Connection::new(
                        conn,
                        Arc::clone(&self.endpoint),
                        self.config.connection.clone(),
                    );
                    log::info!("Opening connection: conn={conn} assets={}", assets.len());
                    if let Err(e) = connection.connect(self.poll.registry(), token_of(conn), now) {
                        log::warn!("Connect failed to start: conn={conn} error={e}");
                        self.scheduler.request(conn, now);
                    }
                    self.conns
                        .insert(conn, ConnSlot::new(connection, assets, now));
                }
                PoolAction::Subscribe { conn, assets } => {
                    let Some(slot) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    // Registered before sending: a failed send loses the connection, and its
                    // reconnect then subscribes these assets with the rest.
                    slot.assets.extend(assets.iter().copied());
                    for a in &assets {
                        self.core.registry.mark_subscribed(*a, conn);
                        self.core.resyncs.subscribed(*a, now);
                    }
                    let frames = self.op_frames(Operation::Subscribe, &assets);
                    self.send_frames(conn, &frames, now);
                }
            }
        }
    }
}
