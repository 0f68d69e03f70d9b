//! The Gamma API: market records and their pagination (docs/venue-protocol.md §7).
//!
//! Each market is rendered once into a [`Card`] (re-rendered when it closes), with Gamma's
//! real field shapes: `conditionId`; `clobTokenIds`, `outcomes` and `outcomePrices` as
//! JSON-encoded strings; `orderPriceMinTickSize`/`orderMinSize` and the cached quotes as
//! numbers; `volume`/`liquidity` as strings; dates with varying fraction digits; `closedTime`
//! in the Postgres form. [`list`] serves `GET /markets` (limit capped at 100, `closed`
//! defaulting to false, offset beyond 2000 → 422) and [`keyset`] `GET /markets/keyset`
//! (`after_cursor` → `next_cursor`, absent on the last page).
//!
//! The core thread renders cards and publishes an immutable [`Catalog`]; HTTP threads read it.

use std::sync::Arc;

use super::calendar::{date_iso, postgres, rfc3339};
use super::universe::{Market, MarketStatus};
use super::wire::json_str;
use crate::market::price::{canonical_string, write_canonical, write_u64};
use crate::orderbook::OrderBook;

/// One market as Gamma serves it.
#[derive(Debug, Clone)]
pub(crate) struct Card {
    gamma_id: u64,
    closed: bool,
    condition_id: Box<str>,
    tokens: [Box<str>; 2],
    json: Box<str>,
}

/// Every market's card, in Gamma id order.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    cards: Vec<Arc<Card>>,
}

impl Catalog {
    /// A catalog over `cards` (already in id order).
    pub(crate) fn new(cards: Vec<Arc<Card>>) -> Catalog {
        Catalog { cards }
    }
}

struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Obj<'_> {
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        json_str(self.out, v);
    }
    fn id(&mut self, k: &str, v: u64) {
        self.key(k);
        self.out.push(b'"');
        write_u64(self.out, v);
        self.out.push(b'"');
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
    }
    /// A JSON number from 10^-6 units ("0.01", "5", "20328.3747").
    fn num(&mut self, k: &str, raw: u64) {
        self.key(k);
        write_canonical(self.out, raw);
    }
    /// A decimal as a JSON string ("20328.3747").
    fn num_str(&mut self, k: &str, raw: u64) {
        self.key(k);
        self.out.push(b'"');
        write_canonical(self.out, raw);
        self.out.push(b'"');
    }
}

/// `["a", "b"]`: how Gamma encodes arrays inside strings (note the space).
fn encoded_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Card {
    /// Renders a market; `yes` supplies Gamma's cached quotes.
    pub(crate) fn render(m: &Market, tokens: [&str; 2], yes: &OrderBook) -> Card {
        let closed = !m.is_active();
        let mut out = Vec::with_capacity(2048);
        out.push(b'{');
        let mut o = Obj {
            out: &mut out,
            first: true,
        };
        o.id("id", m.gamma_id);
        o.str("question", &m.question);
        o.str("conditionId", &m.condition_id);
        o.str("slug", &m.slug);
        o.str("resolutionSource", "");
        o.str("endDate", &rfc3339(m.end_us));
        o.num_str("liquidity", m.liquidity);
        o.str("startDate", &rfc3339(m.start_us));
        o.str("description", &m.description);
        o.str("outcomes", &encoded_list(&[&m.outcomes[0], &m.outcomes[1]]));
        let bid = yes.best_bid().map_or(0, |l| u64::from(l.price.raw()));
        let ask = yes
            .best_ask()
            .map_or(1_000_000, |l| u64::from(l.price.raw()));
        let prices = match m.status {
            MarketStatus::Resolved { winner: 0, .. } => ["1".to_string(), "0".to_string()],
            MarketStatus::Resolved { .. } => ["0".to_string(), "1".to_string()],
            MarketStatus::Active => {
                let mid = (bid + ask) / 2;
                [canonical_string(mid), canonical_string(1_000_000 - mid)]
            }
        };
        o.str("outcomePrices", &encoded_list(&[&prices[0], &prices[1]]));
        o.num_str("volume", m.volume);
        o.bool("active", true);
        o.bool("closed", closed);
        o.str("marketMakerAddress", "");
        o.str("createdAt", &rfc3339(m.created_us));
        o.str(
            "updatedAt",
            &rfc3339(m.created_us + 3_600_000_000 + 123_457),
        );
        if let MarketStatus::Resolved { at_us, .. } = m.status {
            o.str("closedTime", &postgres(at_us));
        }
        o.bool("new", m.is_new);
        o.bool("featured", false);
        o.bool("archived", false);
        o.bool("restricted", true);
        o.str("groupItemThreshold", "0");
        o.str("questionID", &m.question_id);
        if closed {
            o.str("umaResolutionStatus", "resolved");
        }
        o.bool("enableOrderBook", true);
        o.num("orderPriceMinTickSize", u64::from(m.tick.raw()));
        o.num("orderMinSize", m.min_order_size.raw());
        o.num("volumeNum", m.volume);
        o.num("liquidityNum", m.liquidity);
        o.str("endDateIso", &date_iso(m.end_us));
        o.str("startDateIso", &date_iso(m.start_us));
        o.bool("hasReviewedDates", true);
        o.num("volume24hr", m.volume / 7);
        o.str("clobTokenIds", &encoded_list(&tokens));
        o.bool("acceptingOrders", !closed);
        o.bool("negRisk", m.neg_risk);
        if let Some(id) = &m.event.neg_risk_market_id {
            o.str("negRiskMarketID", id);
        }
        o.key("events");
        o.out.extend_from_slice(b"[{");
        {
            let mut e = Obj {
                out: o.out,
                first: true,
            };
            e.id("id", m.event.id);
            e.str("ticker", &m.event.slug);
            e.str("slug", &m.event.slug);
            e.str("title", &m.event.title);
            e.bool("active", true);
            e.bool("closed", closed);
            e.bool("negRisk", m.neg_risk);
        }
        o.out.extend_from_slice(b"}]");
        o.num("spread", ask.saturating_sub(bid));
        if let Some(l) = yes.last_trade() {
            o.num("lastTradePrice", u64::from(l.price.raw()));
        }
        o.num("bestBid", bid);
        o.num("bestAsk", ask);
        o.str("umaResolutionStatuses", "[]");
        o.bool("feesEnabled", false);
        out.push(b'}');
        Card {
            gamma_id: m.gamma_id,
            closed,
            condition_id: m.condition_id.clone(),
            tokens: tokens.map(Into::into),
            json: String::from_utf8(out).unwrap_or_default().into(),
        }
    }
}

/// A Gamma error: HTTP status and JSON body.
pub(crate) type GammaError = (u16, String);

fn validation(msg: &str) -> GammaError {
    (
        422,
        format!("{{\"type\":\"validation error\",\"error\":\"{msg}\"}}"),
    )
}

/// The query parameters both listing endpoints understand.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    limit: Option<usize>,
    offset: Option<usize>,
    closed: bool,
    after_cursor: Option<String>,
    ids: Vec<u64>,
    condition_ids: Vec<String>,
    clob_token_ids: Vec<String>,
}

/// The largest page Gamma serves.
const MAX_LIMIT: usize = 100;
/// Default page size.
const DEFAULT_LIMIT: usize = 20;
/// Deeper offsets are refused on the legacy endpoint.
const MAX_OFFSET: usize = 2_000;
const CURSOR_MASK: u64 = 0x5eed_c0de_d00d_f00d;

impl Query {
    /// Parses decoded query pairs; arrays are repeated parameters.
    ///
    /// # Errors
    /// 422 for unparsable numbers or booleans.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Query, GammaError> {
        let mut q = Query::default();
        let number = |v: &str, name: &str| {
            v.parse::<usize>()
                .map_err(|_| validation(&format!("invalid {name}")))
        };
        for (k, v) in pairs {
            match k.trim_end_matches("[]") {
                "limit" => q.limit = Some(number(v, "limit")?),
                "offset" => q.offset = Some(number(v, "offset")?),
                "closed" => {
                    q.closed = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(validation("invalid closed")),
                    }
                }
                "after_cursor" => q.after_cursor = Some(v.clone()),
                "id" => q.ids.push(number(v, "id")? as u64),
                "condition_ids" => q.condition_ids.push(v.clone()),
                "clob_token_ids" => q.clob_token_ids.push(v.clone()),
                _ => {} // other filters are accepted and ignored
            }
        }
        Ok(q)
    }

    fn limit(&self) -> usize {
        match self.limit {
            Some(0) | None => DEFAULT_LIMIT,
            Some(n) => n.min(MAX_LIMIT),
        }
    }

    fn matches(&self, c: &Card) -> bool {
        c.closed == self.closed
            && (self.ids.is_empty() || self.ids.contains(&c.gamma_id))
            && (self.condition_ids.is_empty()
                || self.condition_ids.iter().any(|x| **x == *c.condition_id))
            && (self.clob_token_ids.is_empty()
                || self
                    .clob_token_ids
                    .iter()
                    .any(|x| c.tokens.iter().any(|t| **t == **x)))
    }
}

fn join<'a>(out: &mut String, cards: impl Iterator<Item = &'a Arc<Card>>) -> usize {
    let mut n = 0;
    out.push('[');
    for c in cards {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&c.json);
        n += 1;
    }
    out.push(']');
    n
}

/// `GET /markets`: a bare array.
///
/// # Errors
/// 422 for an offset beyond 2000 (with the real error text).
pub(crate) fn list(catalog: &Catalog, q: &Query) -> Result<String, GammaError> {
    let offset = q.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(validation(
            "offset too large, use /markets/keyset for deeper pagination",
        ));
    }
    let mut out = String::new();
    join(
        &mut out,
        catalog
            .cards
            .iter()
            .filter(|c| q.matches(c))
            .skip(offset)
            .take(q.limit()),
    );
    Ok(out)
}

/// `GET /markets/keyset`: `{"markets":[…],"next_cursor":"…"}`, the cursor only when the page
/// is full.
///
/// # Errors
/// 422 for `offset` or an unreadable `after_cursor`.
pub(crate) fn keyset(catalog: &Catalog, q: &Query) -> Result<String, GammaError> {
    if q.offset.is_some() {
        return Err(validation("offset is not allowed on keyset endpoints"));
    }
    let after = match &q.after_cursor {
        None => None,
        Some(c) => Some(
            c.strip_prefix("gk")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .map(|v| v ^ CURSOR_MASK)
                .ok_or_else(|| validation("invalid after_cursor"))?,
        ),
    };
    let limit = q.limit();
    let start = match after {
        None => 0,
        Some(id) => catalog.cards.partition_point(|c| c.gamma_id <= id),
    };
    let page: Vec<&Arc<Card>> = catalog.cards[start..]
        .iter()
        .filter(|c| q.matches(c))
        .take(limit)
        .collect();
    let mut out = String::from("{\"markets\":");
    let n = join(&mut out, page.iter().copied());
    if n == limit {
        if let Some(last) = page.last() {
            out.push_str(&format!(
                ",\"next_cursor\":\"gk{:x}\"",
                last.gamma_id ^ CURSOR_MASK
            ));
        }
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lists_like_gamma() {
        assert_eq!(encoded_list(&["Up", "Down"]), r#"["Up", "Down"]"#);
    }

    #[test]
    fn offset_limit_is_enforced() {
        let c = Catalog::default();
        let q = Query::parse(&[("offset".into(), "2001".into())]).unwrap();
        let (status, body) = list(&c, &q).unwrap_err();
        assert_eq!(status, 422);
        assert_eq!(
            body,
            r#"{"type":"validation error","error":"offset too large, use /markets/keyset for deeper pagination"}"#
        );
        assert!(
            list(
                &c,
                &Query::parse(&[("offset".into(), "2000".into())]).unwrap()
            )
            .is_ok()
        );
        assert_eq!(keyset(&c, &q).unwrap_err().0, 422);
    }
}
