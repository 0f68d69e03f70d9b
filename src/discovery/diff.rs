//! Pure diff of a Gamma scan against what is already followed. No I/O, no clock.

use std::collections::HashMap;

use crate::config::AllowList;
use crate::market::Size;
use crate::registry::AssetInfo;
use crate::venue::gamma::GammaMarket;

/// Markets followed so far: condition id → token ids.
#[derive(Debug, Default)]
pub struct Known {
    markets: HashMap<String, Vec<String>>,
}

impl Known {
    /// Number of followed markets.
    pub fn len(&self) -> usize {
        self.markets.len()
    }

    /// True when nothing is followed.
    pub fn is_empty(&self) -> bool {
        self.markets.is_empty()
    }

    /// True when the condition is followed.
    pub fn contains(&self, condition: &str) -> bool {
        self.markets.contains_key(condition)
    }
}

/// What a scan changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Tokens of newly tradable markets.
    pub added: Vec<AssetInfo>,
    /// Markets newly followed.
    pub added_markets: usize,
    /// Tokens of markets that closed or left the listing.
    pub closed_tokens: Vec<String>,
    /// Markets no longer followed.
    pub closed_markets: usize,
}

fn allowed(m: &GammaMarket, allow: &AllowList) -> bool {
    if !allow.in_shard(&m.condition_id) {
        return false;
    }
    (allow.assets.is_empty() && allow.markets.is_empty())
        || allow.markets.contains(&m.condition_id)
        || m.tokens
            .iter()
            .any(|(t, _)| allow.assets.iter().any(|a| a == t))
}

/// Turns one complete scan into additions and closures, updating `known`.
pub fn diff(known: &mut Known, scan: &[GammaMarket], allow: &AllowList) -> Changes {
    let mut changes = Changes::default();
    let mut listed = std::collections::HashSet::new();
    for m in scan {
        if !m.is_tradable() || !allowed(m, allow) {
            continue;
        }
        listed.insert(m.condition_id.as_str());
        if known.markets.contains_key(&m.condition_id) {
            continue;
        }
        changes.added_markets += 1;
        known.markets.insert(
            m.condition_id.clone(),
            m.tokens.iter().map(|(t, _)| t.clone()).collect(),
        );
        for (token, outcome) in &m.tokens {
            changes.added.push(AssetInfo {
                token: token.clone(),
                condition: m.condition_id.clone(),
                outcome: outcome.clone(),
                question: m.question.clone(),
                end_ms: m.end_ms,
                tick_size: m.tick_size,
                min_order_size: m
                    .min_order_size
                    .unwrap_or(Size::from_raw(5 * crate::market::price::SCALE)),
                neg_risk: m.neg_risk,
                meta_known: m.min_order_size.is_some(),
            });
        }
    }
    let gone: Vec<String> = known
        .markets
        .keys()
        .filter(|c| !listed.contains(c.as_str()))
        .cloned()
        .collect();
    for c in gone {
        if let Some(tokens) = known.markets.remove(&c) {
            changes.closed_markets += 1;
            changes.closed_tokens.extend(tokens);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market(cond: &str, closed: bool) -> GammaMarket {
        GammaMarket {
            id: cond.into(),
            condition_id: cond.into(),
            question: "q".into(),
            tokens: vec![
                (format!("{cond}-y"), "Yes".into()),
                (format!("{cond}-n"), "No".into()),
            ],
            end_ms: Some(1),
            active: true,
            closed,
            enable_order_book: true,
            accepting_orders: true,
            neg_risk: false,
            tick_size: None,
            min_order_size: None,
        }
    }

    #[test]
    fn adds_new_and_closes_gone_markets() {
        let mut known = Known::default();
        let all = AllowList::default();
        let c = diff(&mut known, &[market("a", false), market("b", true)], &all);
        assert_eq!((c.added_markets, c.added.len()), (1, 2));
        assert_eq!(c.added[0].outcome, "Yes");
        let c = diff(&mut known, &[market("a", false)], &all);
        assert_eq!(c, Changes::default());
        let c = diff(&mut known, &[market("a", true), market("c", false)], &all);
        assert_eq!(c.closed_tokens, vec!["a-y".to_string(), "a-n".to_string()]);
        assert_eq!(c.added_markets, 1);
        assert_eq!(known.len(), 1);
    }

    #[test]
    fn allow_list_filters() {
        let mut known = Known::default();
        let allow = AllowList {
            assets: vec!["b-n".into()],
            markets: vec!["c".into()],
            shard: None,
        };
        let c = diff(
            &mut known,
            &[market("a", false), market("b", false), market("c", false)],
            &allow,
        );
        assert_eq!(c.added_markets, 2);
        assert!(known.contains("b") && known.contains("c") && !known.contains("a"));
    }
}
