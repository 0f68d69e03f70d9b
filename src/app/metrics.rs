//! `/metrics`: the engine's counters, gauges and latency histograms as Prometheus/OpenMetrics
//! text through the prometheus-client crate, every name prefixed `polypy_`.
//!
//! THREAD: the HTTP thread, per scrape. [`MetricsData::gather`] copies what the engine
//! exposes (atomics and one event-loop snapshot), then a throw-away registry with one
//! collector encodes it. Histograms are real: cumulative bucket counts from the workers'
//! log-linear histograms (exact to one bucket width), not averages.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::engine::EngineHandle;
use crate::event_loop::{LoopSnapshot, Stamped};
use crate::handoff::RouterStatsSnapshot;
use crate::worker::{CumulativeHistogram, WorkerStatsSnapshot};

/// Upper bounds of the wire → book histogram, ns (1 µs … 1 s).
const LATENCY_BOUNDS_NS: &[u64] = &[
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    25_000_000,
    100_000_000,
    1_000_000_000,
];

/// Everything one scrape shows, copied out of the engine.
#[derive(Debug)]
pub struct MetricsData {
    uptime: Duration,
    healthy: bool,
    snap: Arc<Stamped<LoopSnapshot>>,
    router: RouterStatsSnapshot,
    workers: Vec<WorkerStatsSnapshot>,
    latency: CumulativeHistogram,
    discovery: Option<serde_json::Value>,
    stream: Option<(
        crate::stream::StreamStatsSnapshot,
        crate::feed::FeedStatsSnapshot,
    )>,
    nats: Option<crate::nats::NatsStatsSnapshot>,
}

impl MetricsData {
    /// Copies the engine's figures (the loop's published snapshot); `None` when the loop has
    /// published nothing for `max_age` beyond due.
    pub fn gather(engine: &EngineHandle, max_age: Duration) -> Option<MetricsData> {
        Some(MetricsData {
            uptime: engine.uptime(),
            healthy: engine.health().healthy,
            snap: engine.published_snapshot(max_age)?,
            router: engine.router_stats(),
            workers: engine.worker_stats(),
            latency: engine.latency_cumulative(LATENCY_BOUNDS_NS),
            discovery: engine.discovery_stats().map(|d| d.to_json()),
            stream: engine.stream_stats().zip(engine.feed_stats()),
            nats: engine.nats_stats(),
        })
    }

    /// Prometheus/OpenMetrics text.
    ///
    /// # Errors
    /// Formatting failed (not expected with a `String` sink).
    pub fn render(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("polypy");
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Fmt {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Fmt {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// One metric with a `worker` label per worker.
fn per_worker(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl Iterator<Item = (usize, f64)>,
) -> Fmt {
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for (w, v) in values {
        let labels = [("worker", w.to_string())];
        let m = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v as u64).encode(m)?,
            _ => ConstGauge::new(v).encode(m)?,
        }
    }
    Ok(())
}

impl Collector for MetricsData {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let e = &mut enc;
        let s = &self.snap;
        let sum = |f: fn(&WorkerStatsSnapshot) -> u64| -> u64 { self.workers.iter().map(f).sum() };
        gauge(
            e,
            "up",
            "1 when the engine is healthy",
            f64::from(u8::from(self.healthy)),
        )?;
        gauge(
            e,
            "uptime_seconds",
            "Seconds since start",
            self.uptime.as_secs_f64(),
        )?;
        // Registry.
        gauge(
            e,
            "assets_known",
            "Assets in the registry",
            s.registry.total_markets as f64,
        )?;
        gauge(
            e,
            "assets_pending",
            "Assets awaiting subscription",
            s.registry.pending as f64,
        )?;
        gauge(
            e,
            "assets_subscribed",
            "Subscribed assets",
            s.registry.subscribed as f64,
        )?;
        gauge(
            e,
            "assets_expired",
            "Expired assets not yet removed",
            s.registry.expired as f64,
        )?;
        gauge(
            e,
            "conditions_known",
            "Distinct markets (condition ids)",
            s.registry.conditions as f64,
        )?;
        // Pool.
        gauge(
            e,
            "connections",
            "Connections in the pool",
            s.pool.connection_count as f64,
        )?;
        gauge(
            e,
            "connections_active",
            "Connected connections",
            s.pool.active_connections as f64,
        )?;
        gauge(
            e,
            "pool_capacity_assets",
            "Assets the pool holds at its target",
            s.pool.total_capacity as f64,
        )?;
        counter(
            e,
            "ws_frames_received",
            "WebSocket data frames received",
            s.pool.stats.iter().map(|c| c.messages_received).sum(),
        )?;
        counter(
            e,
            "ws_bytes_received",
            "WebSocket payload bytes received",
            s.pool.stats.iter().map(|c| c.bytes_received).sum(),
        )?;
        counter(
            e,
            "ws_reconnects",
            "Reconnects over all connections",
            s.pool.stats.iter().map(|c| c.reconnects).sum(),
        )?;
        // Decoding and routing.
        let i = &s.integrity;
        counter(e, "messages_decoded", "Venue messages decoded", i.messages)?;
        counter(
            e,
            "messages_unknown",
            "Messages of unknown type, skipped",
            i.unknown_messages,
        )?;
        counter(
            e,
            "decode_failures",
            "Frames or messages that failed to decode",
            i.decode_failures,
        )?;
        counter(
            e,
            "foreign_entries",
            "Entries for assets owned by another connection, dropped",
            i.foreign_entries,
        )?;
        counter(
            e,
            "unknown_asset_entries",
            "Entries for assets not followed, dropped",
            i.unknown_assets,
        )?;
        let r = &self.router;
        counter(
            e,
            "records_routed",
            "Records pushed to book workers",
            r.messages_routed,
        )?;
        counter(
            e,
            "records_dropped",
            "Records dropped on a full ring (books resynced)",
            r.messages_dropped,
        )?;
        counter(e, "batches_sent", "Ring writes", r.batches_sent)?;
        counter(
            e,
            "queue_full_events",
            "Ring-full events",
            r.queue_full_events,
        )?;
        counter(
            e,
            "data_loss_markers",
            "Data-loss markers sent to workers",
            r.data_loss_markers,
        )?;
        per_worker(
            e,
            "ring_depth",
            "Items waiting in a worker's ring",
            MetricType::Gauge,
            r.queue_depths
                .iter()
                .enumerate()
                .map(|(w, d)| (w, *d as f64)),
        )?;
        // Resyncs by cause.
        {
            let mut family = e.encode_descriptor(
                "resyncs",
                "Resyncs requested, by cause",
                None,
                MetricType::Counter,
            )?;
            for (cause, n) in &i.resyncs {
                let labels = [("cause", cause.clone())];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        // Silent freezes: suspicions by evidence, connections suspected now, the probe.
        {
            let mut family = e.encode_descriptor(
                "freeze_suspected",
                "Connections suspected frozen (books marked stale, recycled), by evidence",
                None,
                MetricType::Counter,
            )?;
            for evidence in ["probe", "rate"] {
                let n = i.freeze_suspected.get(evidence).copied().unwrap_or(0);
                let labels = [("evidence", evidence.to_string())];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            e,
            "connections_frozen",
            "Connections suspected frozen right now",
            i.frozen_now as f64,
        )?;
        gauge(
            e,
            "freeze_probe_assets",
            "Assets the freeze probe follows",
            i.probe_assets as f64,
        )?;
        counter(
            e,
            "data_silence_reconnects",
            "Connections reconnected by the hard data-silence watchdog",
            i.data_silence_reconnects,
        )?;
        gauge(
            e,
            "assets_awaiting_snapshot",
            "Subscribed assets waiting for a snapshot",
            i.awaiting_snapshot as f64,
        )?;
        // Workers.
        let ws = &self.workers;
        per_worker(
            e,
            "worker_alive",
            "1 while the worker loop runs",
            MetricType::Gauge,
            ws.iter()
                .map(|w| (w.worker, f64::from(u8::from(w.running)))),
        )?;
        per_worker(
            e,
            "worker_records_applied",
            "Records that changed a book",
            MetricType::Counter,
            ws.iter().map(|w| (w.worker, w.records_applied as f64)),
        )?;
        per_worker(
            e,
            "worker_books",
            "Books owned",
            MetricType::Gauge,
            ws.iter().map(|w| (w.worker, w.orderbook_count as f64)),
        )?;
        per_worker(
            e,
            "worker_books_trusted",
            "Trusted books owned",
            MetricType::Gauge,
            ws.iter().map(|w| (w.worker, w.trusted_books as f64)),
        )?;
        per_worker(
            e,
            "worker_heap_bytes",
            "Heap bytes held by the books",
            MetricType::Gauge,
            ws.iter().map(|w| (w.worker, w.memory_usage as f64)),
        )?;
        counter(
            e,
            "level_updates_applied",
            "price_change entries applied",
            sum(|w| w.updates_applied),
        )?;
        counter(
            e,
            "snapshots_applied",
            "book snapshots applied",
            sum(|w| w.snapshots_received),
        )?;
        counter(
            e,
            "hash_checks_matched",
            "Settled groups whose hash matched",
            sum(|w| w.hash_matched + w.hash_matched_inferred_trade),
        )?;
        counter(
            e,
            "hash_checks_skipped",
            "Settled groups with a hash that sampling left out (under backlog)",
            sum(|w| w.hash_skipped),
        )?;
        gauge(
            e,
            "hash_verified_share",
            "Share of settled groups with a hash that were verified",
            crate::worker::hash_verified_share(&self.workers),
        )?;
        counter(
            e,
            "hash_checks_mismatched",
            "Settled groups whose hash did not match",
            sum(|w| w.hash_mismatched),
        )?;
        counter(
            e,
            "meta_inferred",
            "Books whose unknown min_order_size/neg_risk were inferred from a hash",
            sum(|w| w.meta_inferred),
        )?;
        counter(
            e,
            "bbo_mismatches",
            "Settled groups whose best bid/ask disagreed",
            sum(|w| w.bbo_mismatches),
        )?;
        gauge(
            e,
            "books_trusted",
            "Trusted books",
            sum(|w| w.trusted_books) as f64,
        )?;
        // Wire → book latency: a real histogram.
        {
            let h = &self.latency;
            let mut buckets = Vec::with_capacity(h.bounds_ns.len() + 1);
            let mut prev = 0u64;
            for (bound, cum) in h.bounds_ns.iter().zip(&h.cumulative) {
                buckets.push((*bound as f64 / 1e9, cum - prev));
                prev = *cum;
            }
            buckets.push((f64::INFINITY, h.count - prev));
            let m = e.encode_descriptor(
                "wire_to_book_seconds",
                "Receive timestamp to applied on the book, per record",
                None,
                MetricType::Histogram,
            )?;
            let mut m = m;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum_ns as f64 / 1e9,
                h.count,
                &buckets,
                None,
            )?;
        }
        // The same latency over the recent window only (start-up bursts dominate the
        // since-start histogram for the whole run).
        {
            let r = &self.snap.latency_recent;
            for (name, help, ns) in [
                (
                    "wire_to_book_recent_p50_seconds",
                    "Wire to book p50 over the last 15 s",
                    r.latency.p50_ns,
                ),
                (
                    "wire_to_book_recent_p99_seconds",
                    "Wire to book p99 over the last 15 s",
                    r.latency.p99_ns,
                ),
                (
                    "wire_to_book_recent_p999_seconds",
                    "Wire to book p99.9 over the last 15 s",
                    r.latency.p999_ns,
                ),
            ] {
                gauge(e, name, help, ns as f64 / 1e9)?;
            }
            gauge(
                e,
                "wire_to_book_recent_window_seconds",
                "Interval the recent wire to book quantiles cover",
                r.window_ns as f64 / 1e9,
            )?;
        }
        // Discovery.
        if let Some(d) = &self.discovery {
            let n = |k: &str| d.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            counter(e, "discovery_scans", "Completed Gamma scans", n("scans"))?;
            counter(
                e,
                "discovery_scan_errors",
                "Failed Gamma scans",
                n("scan_errors"),
            )?;
            gauge(
                e,
                "discovery_known_markets",
                "Markets followed",
                n("known_market_count") as f64,
            )?;
            gauge(
                e,
                "discovery_last_scan_seconds",
                "Duration of the last scan",
                n("last_scan_ms") as f64 / 1e3,
            )?;
        }
        if let Some((st, feed)) = &self.stream {
            stream_metrics(e, st, feed)?;
        }
        if let Some(n) = &self.nats {
            nats_metrics(e, n)?;
        }
        Ok(())
    }
}

/// `polypy_stream_*`: the stream server and its feed.
fn stream_metrics(
    e: &mut DescriptorEncoder,
    s: &crate::stream::StreamStatsSnapshot,
    f: &crate::feed::FeedStatsSnapshot,
) -> Fmt {
    gauge(
        e,
        "stream_clients",
        "Stream clients connected",
        s.clients as f64,
    )?;
    gauge(
        e,
        "stream_subscriptions",
        "Stream subscriptions ((asset, channel) pairs and `all` ones)",
        s.subscriptions as f64,
    )?;
    gauge(
        e,
        "stream_queued_bytes",
        "Bytes queued for stream clients",
        s.queued_bytes as f64,
    )?;
    for (name, help, v) in [
        ("stream_accepted", "Stream connections accepted", s.accepted),
        (
            "stream_refused",
            "Stream connections refused (client limit)",
            s.refused,
        ),
        (
            "stream_handshake_failures",
            "Stream handshakes that failed",
            s.handshake_failures,
        ),
        (
            "stream_messages_sent",
            "Stream messages written",
            s.messages_sent,
        ),
        ("stream_bytes_sent", "Stream bytes written", s.bytes_sent),
        (
            "stream_conflations",
            "Book deltas replaced by a snapshot for a slow client",
            s.conflations,
        ),
        (
            "stream_dropped",
            "bbo/trade messages dropped for a slow client",
            s.dropped,
        ),
        (
            "stream_slow_closes",
            "Stream clients closed (1008) for staying behind",
            s.slow_closes,
        ),
        (
            "stream_bad_requests",
            "Stream requests answered with an error",
            s.bad_requests,
        ),
        (
            "stream_protocol_closes",
            "Stream clients closed for protocol violations",
            s.protocol_closes,
        ),
        (
            "stream_feed_gaps",
            "Repair snapshots received from the feed",
            s.feed_gaps,
        ),
        (
            "stream_seq_errors",
            "Feed events out of sequence (expected 0)",
            s.seq_errors,
        ),
        (
            "stream_feed_events",
            "Events published by the book workers to the feed",
            f.events,
        ),
        (
            "stream_feed_gaps_opened",
            "Feed gaps opened (ring full)",
            f.gaps,
        ),
        (
            "stream_feed_events_dropped",
            "Feed events not published (asset gapped)",
            f.events_dropped,
        ),
        (
            "stream_feed_repairs",
            "Repair snapshots published",
            f.repairs,
        ),
        (
            "stream_feed_wakes",
            "Wake-ups of the stream thread by the book workers",
            f.wakes,
        ),
    ] {
        counter(e, name, help, v)?;
    }
    Ok(())
}

/// `polypy_nats_*`: the NATS publisher.
fn nats_metrics(e: &mut DescriptorEncoder, n: &crate::nats::NatsStatsSnapshot) -> Fmt {
    gauge(
        e,
        "nats_connected",
        "1 while connected to NATS",
        f64::from(u8::from(n.connected)),
    )?;
    gauge(
        e,
        "nats_kv_inflight",
        "KV writes queued or in flight",
        n.kv_inflight as f64,
    )?;
    for (name, help, v) in [
        ("nats_published", "Messages published to NATS", n.published),
        ("nats_snapshots", "Snapshots published to NATS", n.snapshots),
        (
            "nats_dropped",
            "Messages not published (every cause)",
            n.dropped,
        ),
        (
            "nats_dropped_full",
            "Messages dropped: channel to the publisher full",
            n.dropped_full,
        ),
        (
            "nats_dropped_down",
            "Messages dropped: NATS down or message older than a gap",
            n.dropped_down,
        ),
        (
            "nats_dropped_failed",
            "Messages the NATS client refused",
            n.dropped_failed,
        ),
        ("nats_reconnects", "Reconnections to NATS", n.reconnects),
        (
            "nats_disconnects",
            "Connections to NATS lost",
            n.disconnects,
        ),
        ("nats_kv_puts", "KV snapshots written", n.kv_puts),
        ("nats_kv_deletes", "KV entries deleted", n.kv_deletes),
        ("nats_kv_errors", "KV writes that failed", n.kv_errors),
    ] {
        counter(e, name, help, v)?;
    }
    Ok(())
}
