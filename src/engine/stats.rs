//! `/stats` as JSON, assembled from the event loop's snapshot, the workers' counters and the
//! stream, NATS and recorder handles (the seeds' structure plus `integrity`, `stream`, `nats`).
//! Runs on whichever thread asks (the HTTP thread, tests, an embedder).

use super::*;

impl EngineHandle {
    pub(super) fn stats_of(&self, stamped: &Stamped<LoopSnapshot>) -> serde_json::Value {
        let snap = &stamped.value;
        let snap_age = stamped.at.elapsed().as_secs_f64();
        let workers = self.worker_stats();
        let latency = self.latency();
        let rs = self.router_stats();
        let alive = self.workers.iter().filter(|w| w.is_alive()).count();
        let sum = |f: fn(&WorkerStatsSnapshot) -> u64| -> u64 { workers.iter().map(f).sum() };
        let ms = |ns: u64| ns as f64 / 1e6;
        let mut router = serde_json::to_value(&snap.router).unwrap_or_default();
        if let Some(r) = router.as_object_mut() {
            r.insert("avg_latency_ms".into(), ms(latency.mean_ns).into());
            r.insert("p50_latency_ms".into(), ms(latency.p50_ns).into());
            r.insert("p99_latency_ms".into(), ms(latency.p99_ns).into());
            r.insert("p999_latency_ms".into(), ms(latency.p999_ns).into());
            r.insert("max_latency_ms".into(), ms(latency.max_ns).into());
            r.insert("latency_samples".into(), latency.count.into());
            // The figures above are since start; these cover the last 15 s only.
            let recent = &snap.latency_recent;
            r.insert(
                "recent_window_seconds".into(),
                (recent.window_ns as f64 / 1e9).into(),
            );
            r.insert("recent_latency_samples".into(), recent.latency.count.into());
            r.insert(
                "recent_p50_latency_ms".into(),
                ms(recent.latency.p50_ns).into(),
            );
            r.insert(
                "recent_p99_latency_ms".into(),
                ms(recent.latency.p99_ns).into(),
            );
            r.insert(
                "recent_p999_latency_ms".into(),
                ms(recent.latency.p999_ns).into(),
            );
            r.insert("data_loss_markers".into(), rs.data_loss_markers.into());
            r.insert("resync_assets".into(), rs.resync_assets.into());
        }
        let mut integrity = serde_json::to_value(&snap.integrity).unwrap_or_default();
        if let Some(i) = integrity.as_object_mut() {
            i.insert("groups_settled".into(), sum(|w| w.groups_settled).into());
            i.insert("hash_matched".into(), sum(|w| w.hash_matched).into());
            i.insert(
                "hash_matched_inferred_trade".into(),
                sum(|w| w.hash_matched_inferred_trade).into(),
            );
            i.insert("hash_mismatched".into(), sum(|w| w.hash_mismatched).into());
            i.insert(
                "hash_not_checked".into(),
                sum(|w| w.hash_not_checked).into(),
            );
            i.insert("hash_skipped".into(), sum(|w| w.hash_skipped).into());
            i.insert(
                "hash_verified_share".into(),
                crate::worker::hash_verified_share(&workers).into(),
            );
            i.insert(
                "snapshot_hash_matched".into(),
                sum(|w| w.snapshot_hash_matched).into(),
            );
            i.insert(
                "snapshot_hash_mismatched".into(),
                sum(|w| w.snapshot_hash_mismatched).into(),
            );
            i.insert("meta_inferred".into(), sum(|w| w.meta_inferred).into());
            i.insert("bbo_mismatches".into(), sum(|w| w.bbo_mismatches).into());
            i.insert("crossed".into(), sum(|w| w.crossed).into());
            i.insert(
                "skipped_untrusted".into(),
                sum(|w| w.skipped_untrusted).into(),
            );
            i.insert("trusted_books".into(), sum(|w| w.trusted_books).into());
            i.insert("books".into(), sum(|w| w.orderbook_count).into());
        }
        let mut lifecycle = self.discovery_stats().map_or(
            serde_json::json!({"is_running": false, "enabled": false}),
            |d| d.to_json(),
        );
        if let (Some(l), Ok(serde_json::Value::Object(counts))) = (
            lifecycle.as_object_mut(),
            serde_json::to_value(snap.lifecycle),
        ) {
            l.extend(counts);
        }
        if let Some(l) = lifecycle.as_object_mut() {
            l.insert("shard".into(), self.shard.map(|s| s.to_string()).into());
        }
        serde_json::json!({
            "running": self.shared.running.load(Ordering::Acquire),
            "uptime_seconds": self.uptime().as_secs_f64(),
            "registry": snap.registry,
            "pool": snap.pool,
            "router": router,
            "workers": {
                "alive_count": alive,
                "is_healthy": self.workers_healthy(),
                "worker_stats": workers,
            },
            "lifecycle": lifecycle,
            "recycler": snap.recycler,
            "integrity": integrity,
            "stream": self.stream_json(),
            "nats": self.nats.as_ref().map_or(serde_json::json!({"enabled": false}), |n| {
                crate::nats::stats_json(n)
            }),
            "shard": self.shard.map(|s| s.to_string()),
            "snapshot_age_seconds": snap_age,
        })
    }

    /// `/stats` `stream`: the server's and the feed's counters.
    pub fn stream_json(&self) -> serde_json::Value {
        match (self.stream_stats(), self.feed_stats()) {
            (Some(s), Some(f)) => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("enabled".into(), true.into());
                    o.insert("port".into(), self.stream_port().unwrap_or(0).into());
                    o.insert("feed".into(), serde_json::to_value(f).unwrap_or_default());
                }
                v
            }
            _ => serde_json::json!({"enabled": false}),
        }
    }
}
