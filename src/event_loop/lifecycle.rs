//! Seed component 8 (market lifecycle), acting half on the event-loop thread: expire assets
//! (end time passed, Gamma closed them, `market_resolved`), remove them after the grace
//! period, and register markets announced by `new_market`. Gamma scans and their diff live
//! in `discovery/`.

use std::collections::BTreeMap;

use super::config::LifecycleEvent;
use super::run::{EventLoop, wall_ms};
use crate::connection::Status;
use crate::market::AssetId;
use crate::registry::{AssetInfo, AssetStatus, ConnId};
use crate::venue::Notice;
use crate::venue::subscribe::Operation;

impl EventLoop {
    pub(super) fn expire(&mut self, ids: &[AssetId], now_ms: u64) {
        let mut by_conn: BTreeMap<ConnId, Vec<AssetId>> = BTreeMap::new();
        let mut by_condition: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in ids {
            let Some(entry) = self.core.registry.get(*id) else {
                continue;
            };
            if entry.status == AssetStatus::Expired {
                continue;
            }
            if let Some(c) = entry.connection {
                by_conn.entry(c).or_default().push(*id);
            }
            by_condition
                .entry(entry.info.condition.clone())
                .or_default()
                .push(entry.info.token.clone());
            self.core.registry.mark_expired(*id, now_ms);
            self.core.resyncs.connection_lost(*id);
            self.core.expired_queue.push_back((now_ms, *id));
            self.core.lifecycle.expired += 1;
            self.core.recycler.forget_asset(*id);
        }
        if !by_condition.is_empty() {
            log::info!(
                "Markets expired: markets={} assets={}",
                by_condition.len(),
                by_condition.values().map(Vec::len).sum::<usize>()
            );
        }
        if let Some(hook) = &self.config.lifecycle_hook {
            for (condition, tokens) in by_condition {
                hook(&LifecycleEvent::MarketExpired { condition, tokens });
            }
        }
        let now = std::time::Instant::now();
        self.probe_forget(ids, now);
        for (conn, assets) in by_conn {
            let Some(slot) = self.conns.get_mut(&conn) else {
                continue;
            };
            slot.assets.retain(|a| !assets.contains(a));
            if slot.conn.status() != Status::Connected {
                continue;
            }
            let frames = self.op_frames(Operation::Unsubscribe, &assets);
            self.send_frames(conn, &frames, now);
        }
    }

    /// Every `expiry_interval`: subscribed or pending assets past their end time expire
    /// (unsubscribed); expired assets older than the grace period are removed with their
    /// books.
    pub(super) fn lifecycle_tick(&mut self, now_ms: u64) {
        self.core.lifecycle.expiry_checks += 1;
        let due: Vec<AssetId> = self
            .core
            .registry
            .expiring_before(now_ms)
            .filter(|id| {
                self.core
                    .registry
                    .get(*id)
                    .is_some_and(|e| e.status != AssetStatus::Expired)
            })
            .collect();
        if !due.is_empty() {
            self.expire(&due, now_ms);
        }
        let grace = self.config.cleanup_grace.as_millis() as u64;
        let mut removed = 0usize;
        while let Some(&(at, id)) = self.core.expired_queue.front() {
            if at.saturating_add(grace) > now_ms {
                break;
            }
            self.core.expired_queue.pop_front();
            // Still expired (not re-added since)?
            if self
                .core
                .registry
                .get(id)
                .is_none_or(|e| e.status != AssetStatus::Expired)
            {
                continue;
            }
            self.core.registry.remove(id);
            let _ = self.core.router.remove_book(id);
            self.core.resyncs.forget(id);
            self.core.lifecycle.removed += 1;
            removed += 1;
        }
        if removed > 0 {
            log::info!("Expired assets removed: count={removed}");
        }
    }

    /// `new_market` registers the market's tokens at once (Gamma later fills in the end
    /// time); `market_resolved` expires them.
    pub(super) fn on_notices(&mut self) {
        let notices = std::mem::take(&mut self.core.notices);
        for n in notices {
            match n {
                Notice::NewMarket {
                    market,
                    question,
                    assets_ids,
                    outcomes,
                    tick_size,
                    ..
                } => {
                    self.core.lifecycle.new_market_notices += 1;
                    let infos: Vec<AssetInfo> = assets_ids
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| self.core.registry.resolve(t).is_none())
                        .filter(|_| self.allowed(&market))
                        .map(|(i, t)| AssetInfo {
                            token: t.clone(),
                            condition: market.clone(),
                            outcome: outcomes.get(i).cloned().unwrap_or_default(),
                            question: question.clone(),
                            end_ms: None,
                            tick_size,
                            // The notice carries neither: the book infers them from its
                            // first snapshot's hash (`OrderBook`, `META_CANDIDATES`).
                            min_order_size: crate::market::Size::from_raw(
                                5 * crate::market::price::SCALE,
                            ),
                            neg_risk: false,
                            meta_known: false,
                        })
                        .collect();
                    if !infos.is_empty() {
                        log::info!(
                            "new_market received: market={market} assets={}",
                            infos.len()
                        );
                        self.add_assets(infos);
                        self.planner.force();
                    }
                }
                Notice::MarketResolved {
                    market, assets_ids, ..
                } => {
                    self.core.lifecycle.resolved_notices += 1;
                    let ids: Vec<AssetId> = assets_ids
                        .iter()
                        .filter_map(|t| self.core.registry.resolve(t))
                        .collect();
                    if !ids.is_empty() {
                        log::info!("market_resolved received: market={market}");
                        self.expire(&ids, wall_ms());
                    }
                }
            }
        }
    }

    /// With an allow-list, only listed markets are followed.
    pub(super) fn allowed(&self, condition: &str) -> bool {
        let allow = &self.config.allow;
        allow.in_shard(condition)
            && ((allow.assets.is_empty() && allow.markets.is_empty())
                || allow.markets.iter().any(|m| m == condition))
    }
}
