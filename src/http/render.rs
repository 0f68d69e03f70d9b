//! Pure rendering of API answers: JSON bodies and the `/orderbook` shape. No I/O.

use serde::Serialize;

use crate::market::price::SCALE;
use crate::orderbook::LevelText;

/// `GET /health` body (the seeds' shape).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Health {
    /// All components healthy.
    pub healthy: bool,
    /// ISO-8601 UTC.
    pub timestamp: String,
    /// Per component.
    pub components: Components,
    /// `--replay`: the engine is served from a recording, and how far it is
    /// (`crate::replay::ReplayProgress::to_json`); absent when live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<serde_json::Value>,
}

/// The seeds' six components.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Components {
    /// Registry (owned by the event loop): the loop is running.
    pub registry: bool,
    /// Pool: at least one connection is connected.
    pub pool: bool,
    /// Router: the loop is running and its heartbeat is recent.
    pub router: bool,
    /// Every book worker is alive and progressing.
    pub workers: bool,
    /// Discovery (lifecycle controller) is running.
    pub lifecycle: bool,
    /// The recycler is running.
    pub recycler: bool,
    /// `--nats-url`: connected to NATS (false = degraded: the books are kept and served, the
    /// NATS consumers get snapshots once it is back); absent without NATS. Never makes the
    /// engine unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<bool>,
}

/// A book as the engine answers it (input to [`orderbook_json`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BookAnswer {
    /// Token id.
    pub asset_id: String,
    /// Condition id.
    pub market: String,
    /// Trusted (from a snapshot on, every check passed).
    pub trusted: bool,
    /// Why not trusted (`UntrustReason::as_str`), `None` while trusted.
    pub reason: Option<&'static str>,
    /// Exchange timestamp of the last update (ms), when any.
    pub timestamp: Option<u64>,
    /// Venue-compatible hash.
    pub hash: Option<String>,
    /// Tick size, raw 1e-6 units.
    pub tick_size: Option<u32>,
    /// Bids best first (raw price, raw size).
    pub bids: Vec<(u32, u64)>,
    /// Asks best first.
    pub asks: Vec<(u32, u64)>,
    /// Last trade price as the venue wrote it.
    pub last_trade_price: Option<String>,
    /// Deltas applied.
    pub update_count: u64,
}

/// `GET /orderbook/{asset_id}` body.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OrderbookJson {
    /// Token id.
    pub asset_id: String,
    /// Condition id.
    pub market: String,
    /// Trusted.
    pub trusted: bool,
    /// Why not trusted (`stale`, `hash_mismatch`, …); `null` while trusted.
    pub reason: Option<String>,
    /// Unix ms as a string.
    pub timestamp: Option<String>,
    /// Hash.
    pub hash: Option<String>,
    /// Tick size.
    pub tick_size: Option<String>,
    /// Bids best first.
    pub bids: Vec<LevelText>,
    /// Asks best first.
    pub asks: Vec<LevelText>,
    /// Best bid price.
    pub best_bid: Option<String>,
    /// Best ask price.
    pub best_ask: Option<String>,
    /// best_ask − best_bid.
    pub spread: Option<String>,
    /// (best_bid + best_ask) / 2.
    pub midpoint: Option<String>,
    /// Last trade price.
    pub last_trade_price: Option<String>,
    /// Deltas applied.
    pub update_count: u64,
}

fn text(raw: u64) -> String {
    crate::market::price::canonical_string(raw)
}

/// Half of a raw value, exactly (one more decimal place when odd).
fn half_text(raw_sum: u64) -> String {
    let whole = text(raw_sum / 2);
    if raw_sum % 2 == 0 {
        return whole;
    }
    // raw_sum / 2 + 0.5 units: append a 5 at the seventh decimal place.
    let int = (raw_sum / 2) / SCALE;
    let frac = (raw_sum / 2) % SCALE;
    format!("{int}.{frac:06}5")
}

/// Builds the `/orderbook` body.
pub fn orderbook_json(b: &BookAnswer) -> OrderbookJson {
    let level = |(p, s): &(u32, u64)| LevelText {
        price: text(u64::from(*p)),
        size: text(*s),
    };
    let best_bid = b.bids.first().map(|l| l.0);
    let best_ask = b.asks.first().map(|l| l.0);
    let (spread, midpoint) = match (best_bid, best_ask) {
        (Some(bid), Some(ask)) => (
            Some(if ask >= bid {
                text(u64::from(ask - bid))
            } else {
                format!("-{}", text(u64::from(bid - ask)))
            }),
            Some(half_text(u64::from(bid) + u64::from(ask))),
        ),
        _ => (None, None),
    };
    OrderbookJson {
        asset_id: b.asset_id.clone(),
        market: b.market.clone(),
        trusted: b.trusted,
        reason: b.reason.map(str::to_string),
        timestamp: b.timestamp.map(|t| t.to_string()),
        hash: b.hash.clone(),
        tick_size: b.tick_size.map(|t| text(u64::from(t))),
        bids: b.bids.iter().map(level).collect(),
        asks: b.asks.iter().map(level).collect(),
        best_bid: best_bid.map(|p| text(u64::from(p))),
        best_ask: best_ask.map(|p| text(u64::from(p))),
        spread,
        midpoint,
        last_trade_price: b.last_trade_price.clone(),
        update_count: b.update_count,
    }
}

/// An error body: `{"error": "..."}`.
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orderbook_shape_and_exact_midpoint() {
        let b = BookAnswer {
            asset_id: "1".into(),
            market: "0x1".into(),
            trusted: true,
            timestamp: Some(5),
            bids: vec![(480_000, 30_000_000), (470_000, 1)],
            asks: vec![(490_001, 2_500_000)],
            ..BookAnswer::default()
        };
        let j = orderbook_json(&b);
        assert_eq!(j.best_bid.as_deref(), Some("0.48"));
        assert_eq!(j.best_ask.as_deref(), Some("0.490001"));
        assert_eq!(j.spread.as_deref(), Some("0.010001"));
        assert_eq!(j.midpoint.as_deref(), Some("0.4850005"));
        assert_eq!(j.bids[0].size, "30");
        assert_eq!(j.timestamp.as_deref(), Some("5"));
        let empty = orderbook_json(&BookAnswer::default());
        assert_eq!(
            (empty.best_bid, empty.spread, empty.midpoint),
            (None, None, None)
        );
        let v = serde_json::to_value(orderbook_json(&BookAnswer::default())).unwrap();
        assert!(v["hash"].is_null() && v["last_trade_price"].is_null());
    }
}
