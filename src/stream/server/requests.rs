//! Client requests: subscribe, unsubscribe, ping, the legacy subscription.

use std::sync::atomic::Ordering;

use super::super::client::{BookOpts, Legacy};
use super::super::protocol::{Channel, Request, Selector};
use super::{Server, bump, count, set_channel};
use crate::market::AssetId;

impl Server {
    // ---- requests -------------------------------------------------------------------

    pub(super) fn resolve(&mut self, i: usize, sel: &Selector) -> Option<Vec<AssetId>> {
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        match sel {
            Selector::All => return None,
            Selector::Assets(v) => {
                for t in v {
                    match self.by_token.get(t.as_str()) {
                        Some(&a) => out.push(a),
                        None => unknown.push(t.as_str()),
                    }
                }
            }
            Selector::Markets(v) => {
                for m in v {
                    match self.by_market.get(m.as_str()) {
                        Some(list) => out.extend_from_slice(list),
                        None => unknown.push(m.as_str()),
                    }
                }
            }
        }
        if !unknown.is_empty() {
            let what = if matches!(sel, Selector::Markets(_)) {
                "market"
            } else {
                "asset"
            };
            let shown: Vec<&str> = unknown.iter().take(10).copied().collect();
            let msg = format!(
                "unknown {what}{} ({} of them): {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.len(),
                shown.join(", ")
            );
            bump(&self.stats.bad_requests, 1);
            self.error(i, &msg);
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    pub(super) fn request(&mut self, i: usize, req: Request) {
        match req {
            Request::Ping => self.send_own(i, b"{\"type\":\"pong\"}"),
            Request::Legacy { asset, interval_ms } => {
                let Some(&a) = self.by_token.get(asset.as_str()) else {
                    bump(&self.stats.bad_requests, 1);
                    self.error(i, &format!("unknown asset: {asset}"));
                    return;
                };
                let now = self.now_ms();
                if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) {
                    c.legacy.retain(|l| l.asset != a);
                    c.legacy.push(Legacy {
                        asset: a,
                        interval_ms: u64::from(interval_ms),
                        next_ms: now,
                    });
                }
            }
            Request::Subscribe {
                channel,
                selector,
                depth,
                interval_ms,
            } => self.subscribe(i, channel, &selector, BookOpts { depth, interval_ms }),
            Request::Unsubscribe { channel, selector } => self.unsubscribe(i, channel, &selector),
        }
    }

    pub(super) fn subscribe(&mut self, i: usize, channel: Channel, sel: &Selector, opts: BookOpts) {
        let assets = self.resolve(i, sel);
        let all = assets.is_none();
        let max_all = self.cfg.max_all_subscribers;
        if all && !self.all_subs.contains(&i) && self.all_subs.len() >= max_all {
            bump(&self.stats.bad_requests, 1);
            self.error(
                i,
                &format!("too many clients on \"all\" ({max_all}); name assets or markets"),
            );
            return;
        }
        let list: Vec<AssetId> = match assets {
            Some(v) => v,
            None => self
                .books
                .iter()
                .enumerate()
                .filter_map(|(k, b)| b.as_ref().map(|_| AssetId(k as u32)))
                .collect(),
        };
        let mut new_subs = 0u64;
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if all {
            let was = c.all.any();
            let before = count(&c.all);
            set_channel(&mut c.all, channel, Some(opts));
            new_subs += count(&c.all) - before;
            if !was {
                self.all_subs.push(i);
            }
        }
        for &a in &list {
            let ca = c.assets.entry(a).or_default();
            if !all {
                let had = ca.explicit.any();
                let before = count(&ca.explicit);
                set_channel(&mut ca.explicit, channel, Some(opts));
                new_subs += count(&ca.explicit) - before;
                if !had {
                    if let Some(b) = self.books.get_mut(a.index()).and_then(Option::as_mut) {
                        b.subs.push(i);
                    }
                }
            }
            if channel == Channel::Book {
                if opts.interval_ms > 0 {
                    if !ca.dirty {
                        c.dirty.push(a);
                    }
                    ca.dirty = true;
                    ca.last_snap_ms = 0;
                } else if !ca.need_snap {
                    ca.need_snap = true;
                    c.snap_queue.push_back(a);
                }
            }
        }
        if channel == Channel::Book && opts.interval_ms > 0 {
            c.conflated = true;
        }
        bump(&self.stats.subscriptions, new_subs);
        let mut msg = Vec::with_capacity(64);
        msg.extend_from_slice(b"{\"type\":\"subscribed\",\"channel\":\"");
        msg.extend_from_slice(channel.as_str().as_bytes());
        msg.extend_from_slice(b"\",\"assets\":");
        crate::market::price::write_u64(&mut msg, list.len() as u64);
        if all {
            msg.extend_from_slice(b",\"all\":true");
        }
        msg.push(b'}');
        self.send_own(i, &msg);
        self.drain_snapshots_of(i);
        self.timers_wanted = true;
        if channel == Channel::Bbo {
            for a in list {
                self.send_bbo_to(i, a);
            }
        }
    }

    pub(super) fn unsubscribe(&mut self, i: usize, channel: Channel, sel: &Selector) {
        let assets = self.resolve(i, sel);
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut removed = 0u64;
        let n = match &assets {
            None => {
                let before = count(&c.all);
                set_channel(&mut c.all, channel, None);
                removed += before - count(&c.all);
                if !c.all.any() {
                    self.all_subs.retain(|&x| x != i);
                }
                0
            }
            Some(list) => {
                for a in list {
                    if let Some(ca) = c.assets.get_mut(a) {
                        let before = count(&ca.explicit);
                        set_channel(&mut ca.explicit, channel, None);
                        removed += before - count(&ca.explicit);
                        if !ca.explicit.any() {
                            if let Some(b) = self.books.get_mut(a.index()).and_then(Option::as_mut)
                            {
                                b.subs.retain(|&x| x != i);
                            }
                        }
                    }
                }
                list.len()
            }
        };
        self.stats.subscriptions.fetch_sub(
            removed.min(self.stats.subscriptions.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        let mut msg = Vec::with_capacity(64);
        msg.extend_from_slice(b"{\"type\":\"unsubscribed\",\"channel\":\"");
        msg.extend_from_slice(channel.as_str().as_bytes());
        msg.extend_from_slice(b"\",\"assets\":");
        crate::market::price::write_u64(&mut msg, n as u64);
        msg.push(b'}');
        self.send_own(i, &msg);
    }
}
