//! Gamma API market records (docs/venue-protocol.md §7): parsing only, no I/O.
//!
//! Gamma is lenient and irregular: `clobTokenIds` and `outcomes` are JSON arrays encoded as
//! strings, tick and minimum size are JSON numbers (strings elsewhere), dates come in several
//! formats (`2026-03-12T09:25:00Z`, `…05.41Z`, `…01.328428Z`, `2026-05-09 02:07:01+00`,
//! `2026-03-12`), and legacy markets lack most fields. Everything is optional here; a market
//! without a condition id or tokens is reported as unusable rather than failing a page.
//! Used by the discovery thread and by the simulator's tests.

use serde_json::Value;

use crate::market::{Price, Size};

/// One Gamma market, reduced to what the engine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GammaMarket {
    /// Gamma id.
    pub id: String,
    /// Condition id (`0x…`).
    pub condition_id: String,
    /// Question.
    pub question: String,
    /// `(token id, outcome)` pairs, index-aligned as Gamma lists them.
    pub tokens: Vec<(String, String)>,
    /// `endDate` (or `endDateIso`) as Unix ms.
    pub end_ms: Option<u64>,
    /// `active`.
    pub active: bool,
    /// `closed`.
    pub closed: bool,
    /// `enableOrderBook`.
    pub enable_order_book: bool,
    /// `acceptingOrders`.
    pub accepting_orders: bool,
    /// `negRisk`.
    pub neg_risk: bool,
    /// `orderPriceMinTickSize`.
    pub tick_size: Option<Price>,
    /// `orderMinSize`.
    pub min_order_size: Option<Size>,
}

impl GammaMarket {
    /// True when the engine should keep a book for it: has an order book and is not closed.
    pub fn is_tradable(&self) -> bool {
        self.enable_order_book && !self.closed && !self.tokens.is_empty()
    }
}

/// Why a market record was unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GammaError {
    /// The record is not a JSON object.
    #[error("market record is not an object")]
    NotAnObject,
    /// No `conditionId`: it cannot be subscribed or matched.
    #[error("market {id:?} has no conditionId")]
    NoCondition {
        /// Gamma id, if any.
        id: String,
    },
    /// `clobTokenIds` is absent or not a (string-encoded) array of strings.
    #[error("market {id:?} has unreadable clobTokenIds")]
    BadTokens {
        /// Gamma id.
        id: String,
    },
}

/// Parses one market object.
///
/// # Errors
/// [`GammaError`] when the record cannot identify a market and its tokens.
pub fn parse_market(v: &Value) -> Result<GammaMarket, GammaError> {
    let o = v.as_object().ok_or(GammaError::NotAnObject)?;
    let text = |k: &str| -> Option<String> {
        match o.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    let id = text("id").unwrap_or_default();
    let condition_id = text("conditionId")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| GammaError::NoCondition { id: id.clone() })?;
    let tokens_list = string_list(o.get("clobTokenIds"))
        .ok_or_else(|| GammaError::BadTokens { id: id.clone() })?;
    let outcomes = string_list(o.get("outcomes")).unwrap_or_default();
    let tokens = tokens_list
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, outcomes.get(i).cloned().unwrap_or_default()))
        .collect();
    let end_ms = text("endDate")
        .and_then(|d| parse_date_ms(&d))
        .or_else(|| text("endDateIso").and_then(|d| parse_date_ms(&d)));
    Ok(GammaMarket {
        id,
        condition_id,
        question: text("question").unwrap_or_default(),
        tokens,
        end_ms,
        active: flag("active"),
        closed: flag("closed"),
        enable_order_book: flag("enableOrderBook"),
        accepting_orders: flag("acceptingOrders"),
        neg_risk: flag("negRisk"),
        tick_size: text("orderPriceMinTickSize").and_then(|t| Price::parse(t.as_bytes()).ok()),
        min_order_size: text("orderMinSize").and_then(|t| Size::parse(t.as_bytes()).ok()),
    })
}

/// A list given either as a JSON array of strings or as a string holding one.
fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    let decoded;
    let arr = match v? {
        Value::Array(a) => a,
        Value::String(s) => {
            decoded = serde_json::from_str::<Value>(s).ok()?;
            decoded.as_array()?
        }
        _ => return None,
    };
    arr.iter().map(|x| x.as_str().map(str::to_string)).collect()
}

/// Parses the date formats Gamma uses into Unix ms (UTC).
pub fn parse_date_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return u64::try_from(ts.as_millisecond()).ok();
    }
    // "2026-05-09 02:07:01+00": an hour-only offset.
    if let Some(base) = s.strip_suffix("+00") {
        if let Ok(ts) = format!("{base}Z").parse::<jiff::Timestamp>() {
            return u64::try_from(ts.as_millisecond()).ok();
        }
    }
    // "2026-03-12": a date alone, taken as midnight UTC.
    if let Ok(date) = s.parse::<jiff::civil::Date>() {
        let ts = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
        return u64::try_from(ts.as_millisecond()).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_date_form() {
        let base = parse_date_ms("2026-03-12T09:25:00Z").unwrap();
        assert_eq!(base, 1_773_307_500_000);
        assert_eq!(parse_date_ms("2026-03-12T09:25:00.41Z"), Some(base + 410));
        assert_eq!(
            parse_date_ms("2026-03-12T09:25:00.328428Z"),
            Some(base + 328)
        );
        assert_eq!(parse_date_ms("2026-03-12 09:25:00+00"), Some(base));
        assert_eq!(
            parse_date_ms("2026-03-12"),
            Some(base - (9 * 3600 + 25 * 60) * 1000)
        );
        assert_eq!(parse_date_ms("soon"), None);
    }
}
