//! The simulated market universe: markets, their outcome tokens and their static facts.
//!
//! Everything here is drawn from the core thread's seeded RNG, so one seed gives the same
//! markets, token ids, tick sizes and starting books every run (dates are relative to the
//! clock at start). Most markets are stand-alone binaries; some belong to negative-risk events
//! of several binary markets (Polymarket's multi-outcome form). Every market has exactly two
//! tokens whose books mirror each other (YES bid p ⇔ NO ask 1−p).
//!
//! Owned by the core thread (`core.rs`); pure apart from the RNG it is handed.

use rustc_hash::FxHashMap;

use crate::market::price::SCALE;
use crate::market::{Price, QuotedPrice, Size};

/// Where a market is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarketStatus {
    /// Trading; books move.
    Active,
    /// Closed and resolved at `at_us`; `winner` is the index of the winning outcome.
    Resolved {
        /// Unix µs of the resolution.
        at_us: u64,
        /// Winning outcome index (0 or 1).
        winner: u8,
    },
}

/// The Gamma event a market belongs to.
#[derive(Debug, Clone)]
pub(crate) struct EventInfo {
    /// Gamma event id.
    pub(crate) id: u64,
    /// Ticker (= slug).
    pub(crate) slug: String,
    /// Title.
    pub(crate) title: String,
    /// `negRiskMarketID` for negative-risk events.
    pub(crate) neg_risk_market_id: Option<String>,
}

/// One market (condition) with its two outcome tokens.
#[derive(Debug, Clone)]
pub(crate) struct Market {
    /// Gamma market id (numeric string on the wire).
    pub(crate) gamma_id: u64,
    /// Condition id, `0x` + 64 hex.
    pub(crate) condition_id: Box<str>,
    /// Question id, `0x` + 64 hex.
    pub(crate) question_id: String,
    /// Question text.
    pub(crate) question: String,
    /// URL slug.
    pub(crate) slug: String,
    /// Description (contains quotes, as real ones do).
    pub(crate) description: String,
    /// Outcome names, aligned with `assets`.
    pub(crate) outcomes: [String; 2],
    /// Asset indexes of the two tokens (YES first).
    pub(crate) assets: [u32; 2],
    /// Current tick size.
    pub(crate) tick: Price,
    /// The tick the market was created with (it returns to it away from the extremes).
    pub(crate) base_tick: Price,
    /// Minimum order size.
    pub(crate) min_order_size: Size,
    /// Negative-risk market.
    pub(crate) neg_risk: bool,
    /// Gamma event.
    pub(crate) event: EventInfo,
    /// Creation time, Unix µs.
    pub(crate) created_us: u64,
    /// Start date, Unix µs.
    pub(crate) start_us: u64,
    /// End date, Unix µs; expiring markets resolve when it passes.
    pub(crate) end_us: u64,
    /// Resolves at `end_us` (a market "expiring within minutes").
    pub(crate) expires: bool,
    /// Status.
    pub(crate) status: MarketStatus,
    /// Long-run YES price the flow reverts to.
    pub(crate) fair: Price,
    /// Liquidity and volume figures for Gamma, 10^-6 units.
    pub(crate) liquidity: u64,
    /// Volume, 10^-6 units.
    pub(crate) volume: u64,
    /// Created while the sim ran (announced with `new_market`).
    pub(crate) is_new: bool,
}

impl Market {
    /// True while trading.
    pub(crate) fn is_active(&self) -> bool {
        self.status == MarketStatus::Active
    }
}

/// One outcome token.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    /// Token id: a 76–78 digit decimal.
    pub(crate) token: Box<str>,
    /// Market index.
    pub(crate) market: u32,
}

/// The YES book a market starts with (the NO book is its mirror).
#[derive(Debug, Clone, Default)]
pub(crate) struct StartBook {
    /// Bids ascending (wire order).
    pub(crate) bids: Vec<(Price, Size)>,
    /// Asks descending (wire order).
    pub(crate) asks: Vec<(Price, Size)>,
    /// Last trade price of the YES token, as the venue would write it.
    pub(crate) last_trade: Option<QuotedPrice>,
}

impl StartBook {
    /// The NO token's book: YES asks become NO bids at 1−p and YES bids NO asks.
    pub(crate) fn mirror(&self) -> StartBook {
        StartBook {
            bids: self
                .asks
                .iter()
                .map(|&(p, s)| (p.complement(), s))
                .collect(),
            asks: self
                .bids
                .iter()
                .map(|&(p, s)| (p.complement(), s))
                .collect(),
            last_trade: self
                .last_trade
                .map(|q| QuotedPrice::canonical(q.price.complement())),
        }
    }
}

/// Knobs of the universe generator (a subset of `SimConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UniverseConfig {
    /// Markets to create at start.
    pub(crate) markets: usize,
    /// Share of markets (0..=1) that belong to negative-risk events.
    pub(crate) neg_risk_share: f64,
    /// Share of markets (0..=1) that expire within `expiry_within_us`.
    pub(crate) expiring_share: f64,
    /// Share of markets created while running that are negative-risk.
    pub(crate) new_market_neg_risk_share: f64,
    /// Horizon of expiring markets, µs.
    pub(crate) expiry_within_us: u64,
}

/// All markets and tokens the sim has ever created (closed ones stay).
#[derive(Debug, Default)]
pub(crate) struct Universe {
    /// Markets in creation order (Gamma id ascending).
    pub(crate) markets: Vec<Market>,
    /// Tokens; `markets[i].assets` index here.
    pub(crate) assets: Vec<Asset>,
    /// Token id → asset index.
    pub(crate) by_token: FxHashMap<Box<str>, u32>,
    next_gamma_id: u64,
    next_event_id: u64,
}

const P: u32 = SCALE as u32;
/// 0.01.
pub(crate) const TICK_CENT: Price = price_const(10_000);
/// 0.001.
pub(crate) const TICK_MILLI: Price = price_const(1_000);
/// 0.0025 (World Cup markets, 2026).
pub(crate) const TICK_QUARTER_CENT: Price = price_const(2_500);

const fn price_const(raw: u32) -> Price {
    match Price::from_raw(raw) {
        Ok(p) => p,
        Err(_) => Price::ONE,
    }
}

/// Builds a price from raw units known to be in range (clamped to 1).
pub(crate) fn price(raw: u32) -> Price {
    Price::from_raw(raw.min(P)).unwrap_or(Price::ONE)
}

const SUBJECTS: &[&str] = &[
    "Bitcoin",
    "Ethereum",
    "Solana",
    "NVIDIA (NVDA)",
    "Tesla (TSLA)",
    "the Fed",
    "Apple (AAPL)",
    "the S&P 500",
    "Gold",
    "Oil (WTI)",
    "XRP",
    "Dogecoin",
];
const VERBS: &[&str] = &[
    "close above",
    "reach",
    "dip below",
    "finish the month above",
    "trade above",
];
const CANDIDATES: &[&str] = &[
    "Alice Moreno",
    "Bruno Keller",
    "Chen Wei",
    "Dana Okafor",
    "Emil Novak",
    "Farah Haddad",
    "Gus Lindqvist",
    "Hana Sato",
    "Ivan Petrov",
    "Julia Costa",
];
const CONTESTS: &[&str] = &[
    "2028 Democratic presidential nomination",
    "2028 Republican presidential nomination",
    "Ballon d'Or 2026",
    "2026 World Cup",
    "Best Picture Oscar",
    "NBA MVP award",
];
const TEAMS: &[(&str, &str)] = &[
    ("FaZe", "illwill"),
    ("Lakers", "Celtics"),
    ("Arsenal", "Chelsea"),
    ("Navi", "Vitality"),
    ("Yankees", "Red Sox"),
    ("Real Madrid", "Barcelona"),
];

fn hex_id(rng: &mut fastrand::Rng) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(66);
    s.push_str("0x");
    for _ in 0..64 {
        s.push(char::from(HEX[rng.usize(..16)]));
    }
    s
}

fn token_id(rng: &mut fastrand::Rng) -> String {
    // Real token ids are uint256 in decimal: mostly 77 digits, some 76 or 78.
    let len = match rng.u32(..10) {
        0 => 76,
        1 => 78,
        _ => 77,
    };
    let mut s = String::with_capacity(len);
    s.push(char::from(b'1' + rng.u8(..9)));
    for _ in 1..len {
        s.push(char::from(b'0' + rng.u8(..10)));
    }
    s
}

fn slugify(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let mut dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !s.is_empty() {
            s.push('-');
            dash = true;
        }
    }
    while s.ends_with('-') {
        s.pop();
    }
    s
}

/// Draws `true` with probability `share`.
pub(crate) fn chance(rng: &mut fastrand::Rng, share: f64) -> bool {
    share > 0.0 && rng.f64() < share
}

/// A random size: mostly cents ("41666.32"), some whole ("1000"), a few with six decimals.
pub(crate) fn random_size(rng: &mut fastrand::Rng, min_units: u64, max_units: u64) -> Size {
    let whole = rng.u64(min_units.max(1)..max_units.max(2));
    let raw = match rng.u32(..10) {
        0..=5 => whole * SCALE + rng.u64(..100) * 10_000,
        6..=8 => whole * SCALE,
        _ => whole * SCALE + rng.u64(..SCALE),
    };
    Size::from_raw(raw.max(1))
}

/// Rounds `raw` to the tick grid and clamps it into `[tick, 1 - tick]`.
pub(crate) fn on_grid(raw: i64, tick: Price) -> Price {
    let t = i64::from(tick.raw());
    let r = (raw / t) * t;
    price(r.clamp(t, i64::from(P) - t) as u32)
}

/// The YES book a market starts with around `fair`, on `tick`.
pub(crate) fn start_book(rng: &mut fastrand::Rng, tick: Price, fair: Price) -> StartBook {
    let t = i64::from(tick.raw());
    let one = i64::from(P);
    let bid_raw =
        i64::from(on_grid(i64::from(fair.raw()) - t * i64::from(rng.u32(0..2)), tick).raw());
    let best_bid = price(bid_raw.clamp(t, one - 2 * t) as u32);
    let spread_ticks = i64::from(rng.u32(1..4));
    let best_ask = price((i64::from(best_bid.raw()) + spread_ticks * t).min(one - t) as u32);
    let mut book = StartBook::default();
    // Bids downwards from the best, gathered best-first then reversed to wire order.
    let levels = rng.usize(4..16);
    let mut p = i64::from(best_bid.raw());
    let mut bids = Vec::with_capacity(levels);
    for _ in 0..levels {
        if p < t {
            break;
        }
        bids.push((price(p as u32), random_size(rng, 5, 5_000)));
        p -= t * i64::from(rng.u32(1..4));
    }
    bids.reverse();
    let levels = rng.usize(4..16);
    let mut p = i64::from(best_ask.raw());
    let mut asks = Vec::with_capacity(levels);
    while asks.len() < levels && p <= one - t {
        asks.push((price(p as u32), random_size(rng, 5, 5_000)));
        p += t * i64::from(rng.u32(1..4));
    }
    asks.reverse();
    book.bids = bids;
    book.asks = asks;
    book.last_trade = match rng.u32(..10) {
        0 | 1 => None,
        2..=4 => Some(QuotedPrice {
            // Written with three digits ("0.140"), as live books sometimes are.
            price: best_bid,
            frac_digits: 3,
        }),
        _ => Some(QuotedPrice::canonical(best_ask)),
    };
    book
}

/// Picks a starting YES price: mostly mid-range, some near the extremes where tick sizes
/// change (docs/venue-protocol.md §3.3).
fn random_fair(rng: &mut fastrand::Rng) -> Price {
    let raw = match rng.u32(..20) {
        0 | 1 => rng.u32(25_000..70_000),
        2 | 3 => rng.u32(930_000..975_000),
        _ => rng.u32(80_000..920_000),
    };
    price(raw)
}

impl Universe {
    /// Creates the starting markets. Returns the universe and each market's YES start book.
    pub(crate) fn generate(
        cfg: &UniverseConfig,
        rng: &mut fastrand::Rng,
        now_us: u64,
    ) -> (Universe, Vec<StartBook>) {
        let mut u = Universe {
            next_gamma_id: 500_000 + rng.u64(..100_000),
            next_event_id: 20_000 + rng.u64(..10_000),
            ..Universe::default()
        };
        let mut books = Vec::with_capacity(cfg.markets);
        while u.markets.len() < cfg.markets {
            let left = cfg.markets - u.markets.len();
            if left >= 3 && chance(rng, cfg.neg_risk_share / 4.0) {
                let n = rng.usize(3..7).min(left);
                books.extend(u.add_neg_risk_event(rng, cfg, now_us, n));
            } else {
                let expires = chance(rng, cfg.expiring_share);
                books.push(u.add_binary(rng, cfg, now_us, expires, false, false));
            }
        }
        (u, books)
    }

    fn next_event(&mut self, rng: &mut fastrand::Rng, title: &str, neg_risk: bool) -> EventInfo {
        let id = self.next_event_id;
        self.next_event_id += 1 + rng.u64(..3);
        EventInfo {
            id,
            slug: slugify(title),
            title: title.to_string(),
            neg_risk_market_id: neg_risk.then(|| hex_id(rng)),
        }
    }

    fn end_date(rng: &mut fastrand::Rng, cfg: &UniverseConfig, now_us: u64, expires: bool) -> u64 {
        if expires {
            let lo = cfg.expiry_within_us / 10;
            now_us + rng.u64(lo..cfg.expiry_within_us.max(lo + 1))
        } else {
            // Weeks to years ahead, on a whole minute (real end dates are round).
            let minutes = rng.u64(7 * 24 * 60..3 * 365 * 24 * 60);
            (now_us / 60_000_000 + minutes) * 60_000_000
        }
    }

    /// Adds one binary market (of its own event; `neg_risk`: flagged negative-risk, as a
    /// market added to a negative-risk event is); returns its YES start book.
    pub(crate) fn add_binary(
        &mut self,
        rng: &mut fastrand::Rng,
        cfg: &UniverseConfig,
        now_us: u64,
        expires: bool,
        is_new: bool,
        neg_risk: bool,
    ) -> StartBook {
        let end_us = Self::end_date(rng, cfg, now_us, expires);
        let (question, outcomes, description) = match rng.u32(..3) {
            0 => {
                let q = format!(
                    "{} Up or Down - {}",
                    SUBJECTS[rng.usize(..SUBJECTS.len())],
                    super::calendar::rfc3339(end_us)
                );
                let d = "This market will resolve to \"Up\" if the price at the end of the \
                         time range is greater than or equal to the price at the beginning. \
                         Otherwise, it will resolve to \"Down\"."
                    .to_string();
                (q, ["Up".to_string(), "Down".to_string()], d)
            }
            1 => {
                let (a, b) = TEAMS[rng.usize(..TEAMS.len())];
                let q = format!("{a} vs {b} - Match Winner #{}", self.next_gamma_id);
                let d = format!("This market will resolve to \"{a}\" if {a} wins the match.");
                (q, [a.to_string(), b.to_string()], d)
            }
            _ => {
                let q = format!(
                    "Will {} {} ${} by {}?",
                    SUBJECTS[rng.usize(..SUBJECTS.len())],
                    VERBS[rng.usize(..VERBS.len())],
                    rng.u32(10..5_000),
                    super::calendar::date_iso(end_us)
                );
                let d = "This market will resolve to \"Yes\" if the condition in the title is \
                         met. Otherwise, this market will resolve to \"No\"."
                    .to_string();
                (q, ["Yes".to_string(), "No".to_string()], d)
            }
        };
        let event = self.next_event(rng, &question, neg_risk);
        let tick = match rng.u32(..20) {
            0 => TICK_QUARTER_CENT,
            1..=5 => TICK_MILLI,
            _ => TICK_CENT,
        };
        self.push_market(
            rng,
            now_us,
            end_us,
            expires,
            is_new,
            question,
            outcomes,
            description,
            event,
            tick,
            neg_risk,
        )
    }

    fn add_neg_risk_event(
        &mut self,
        rng: &mut fastrand::Rng,
        cfg: &UniverseConfig,
        now_us: u64,
        n: usize,
    ) -> Vec<StartBook> {
        let contest = CONTESTS[rng.usize(..CONTESTS.len())];
        let title = format!("{contest} winner #{}", self.next_event_id);
        let event = self.next_event(rng, &title, true);
        let expires = chance(rng, cfg.expiring_share);
        let end_us = Self::end_date(rng, cfg, now_us, expires);
        let tick = if rng.bool() { TICK_CENT } else { TICK_MILLI };
        let mut names: Vec<&str> = CANDIDATES.to_vec();
        rng.shuffle(&mut names);
        (0..n)
            .map(|i| {
                let who = names[i % names.len()];
                let question = format!("Will {who} win the {contest}?");
                let description = format!(
                    "This market will resolve to \"Yes\" if {who} wins the {contest}. \
                     Otherwise, this market will resolve to \"No\"."
                );
                self.push_market(
                    rng,
                    now_us,
                    end_us,
                    expires,
                    false,
                    question,
                    ["Yes".to_string(), "No".to_string()],
                    description,
                    event.clone(),
                    tick,
                    true,
                )
            })
            .collect()
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private constructor with named call sites"
    )]
    fn push_market(
        &mut self,
        rng: &mut fastrand::Rng,
        now_us: u64,
        end_us: u64,
        expires: bool,
        is_new: bool,
        question: String,
        outcomes: [String; 2],
        description: String,
        event: EventInfo,
        base_tick: Price,
        neg_risk: bool,
    ) -> StartBook {
        let index = self.markets.len() as u32;
        let gamma_id = self.next_gamma_id;
        self.next_gamma_id += 1 + rng.u64(..5);
        let mut assets = [0u32; 2];
        for slot in assets.iter_mut() {
            let mut token = token_id(rng);
            while self.by_token.contains_key(token.as_str()) {
                token = token_id(rng);
            }
            let a = self.assets.len() as u32;
            self.by_token.insert(token.clone().into(), a);
            self.assets.push(Asset {
                token: token.into(),
                market: index,
            });
            *slot = a;
        }
        let fair = random_fair(rng);
        // A cent-tick market near the extremes trades on the milli tick (docs/venue-protocol.md §3.3).
        let tick = if base_tick == TICK_CENT && !(40_000..=960_000).contains(&fair.raw()) {
            TICK_MILLI
        } else {
            base_tick
        };
        let min_order_size = Size::from_raw(
            match rng.u32(..10) {
                0 => 1,
                1 => 15,
                _ => 5,
            } * SCALE,
        );
        let created_us = now_us.saturating_sub(if is_new {
            0
        } else {
            rng.u64(3_600..90 * 86_400) * 1_000_000 + rng.u64(..1_000_000)
        });
        let start_us =
            created_us + rng.u64(..120_000_000) + u64::from(rng.bool()) * rng.u64(..1_000) * 10;
        let slug = format!("{}-{}", slugify(&question), gamma_id % 1000);
        self.markets.push(Market {
            gamma_id,
            condition_id: hex_id(rng).into(),
            question_id: hex_id(rng),
            question,
            slug,
            description,
            outcomes,
            assets,
            tick,
            base_tick,
            min_order_size,
            neg_risk,
            event,
            created_us,
            start_us,
            end_us,
            expires,
            status: MarketStatus::Active,
            fair,
            liquidity: rng.u64(1_000..5_000_000) * SCALE + rng.u64(..SCALE),
            volume: rng.u64(10..50_000_000) * SCALE + rng.u64(..SCALE),
            is_new,
        });
        start_book(rng, tick, fair)
    }

    /// Looks a token up.
    pub(crate) fn asset_index(&self, token: &str) -> Option<u32> {
        self.by_token.get(token).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(markets: usize) -> UniverseConfig {
        UniverseConfig {
            markets,
            neg_risk_share: 0.3,
            expiring_share: 0.2,
            new_market_neg_risk_share: 0.0,
            expiry_within_us: 300_000_000,
        }
    }

    #[test]
    fn same_seed_same_universe() {
        let now = 1_790_000_000_000_000;
        let (a, ba) = Universe::generate(&cfg(50), &mut fastrand::Rng::with_seed(7), now);
        let (b, bb) = Universe::generate(&cfg(50), &mut fastrand::Rng::with_seed(7), now);
        assert_eq!(a.markets.len(), 50);
        for (x, y) in a.assets.iter().zip(&b.assets) {
            assert_eq!(x.token, y.token);
        }
        assert_eq!(ba[3].bids, bb[3].bids);
        assert!(a.markets.iter().any(|m| m.neg_risk));
        assert!(a.markets.iter().any(|m| !m.neg_risk));
        for a in &a.assets {
            assert!((76..=78).contains(&a.token.len()), "{}", a.token);
        }
    }

    #[test]
    fn start_books_are_on_grid_uncrossed_and_mirror() {
        let mut rng = fastrand::Rng::with_seed(3);
        for tick in [TICK_CENT, TICK_MILLI, TICK_QUARTER_CENT] {
            for _ in 0..200 {
                let fair = random_fair(&mut rng);
                let b = start_book(&mut rng, tick, fair);
                assert!(!b.bids.is_empty() && !b.asks.is_empty());
                let best_bid = b.bids.last().unwrap().0;
                let best_ask = b.asks.last().unwrap().0;
                assert!(best_bid < best_ask);
                assert!(b.bids.windows(2).all(|w| w[0].0 < w[1].0));
                assert!(b.asks.windows(2).all(|w| w[0].0 > w[1].0));
                for (p, s) in b.bids.iter().chain(&b.asks) {
                    assert_eq!(p.raw() % tick.raw(), 0);
                    assert!(p.raw() > 0 && p.raw() < P && s.raw() > 0);
                }
                let m = b.mirror();
                assert_eq!(m.bids.last().unwrap().0, best_ask.complement());
                assert!(m.bids.windows(2).all(|w| w[0].0 < w[1].0));
            }
        }
    }
}
