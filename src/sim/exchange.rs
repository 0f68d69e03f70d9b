//! The exchange proper: markets, true books and the messages each step of flow produces.
//!
//! [`Exchange::step`] plans one step of a market's flow (`flow.rs`), applies it to both
//! tokens' true books (`truth.rs`), and writes the venue's messages for it (`wire.rs`), each
//! once, tagged with a [`Route`] the core uses to pick the connections that get it. Steps of
//! markets nobody listens to update the books without hashing or writing anything.
//!
//! Message rules (docs/venue-protocol.md §3–§4):
//! - a quote is one `price_change` whose entries cover both tokens (YES and its NO mirror, in
//!   random order); each entry carries the hash and best bid/ask of its asset's book right
//!   after that entry, at the message timestamp;
//! - a trade is several `price_change`s with one timestamp (the remainder resting at the
//!   limit, then each consumed level) whose entries all carry the *final* post-trade hash and
//!   best bid/ask (computed with the new last trade price), then `last_trade_price` for both
//!   tokens, then a post-trade `book` for both, all with that timestamp;
//! - crossing 0.04/0.96 on a cent tick gives `tick_size_change` and a fresh `book` per token;
//! - lifecycle: new markets (`new_market`) and expiring markets resolving (`market_resolved`).
//!
//! Owned by the core thread.

use std::sync::Arc;

use rustc_hash::FxHashSet;
use tungstenite::Utf8Bytes;

use super::MarketInfo;
use super::SimConfig;
use super::flow::{self, Step};
use super::gamma::{Card, Catalog};
use super::truth::{TrueBook, TruthBook};
use super::universe::{
    MarketStatus, StartBook, Universe, UniverseConfig, chance, on_grid, random_size,
};
use super::wire::{self, BookStyle, Entry, TradeText};
use crate::market::{Price, QuotedPrice, Side, Size};
use crate::orderbook::{BookHasher, BookMeta, CheckContext, CheckMode};

/// Who should receive a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Subscribers of any token of the market (`price_change`).
    Market(u32),
    /// Subscribers of the asset.
    Asset(u32),
    /// Subscribers of the asset with the custom feature on (`best_bid_ask`).
    AssetCustom(u32),
    /// Every connection with the custom feature on (`new_market`, `market_resolved`).
    CustomAll,
}

/// One message to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Emit {
    /// Recipients.
    pub(crate) route: Route,
    /// The JSON text, shared by every recipient.
    pub(crate) text: Utf8Bytes,
}

/// Who listens to a market, so unheard steps skip hashing and writing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Listen {
    /// Some connection subscribes a token of the market.
    pub(crate) market: bool,
    /// Some custom-feature connection subscribes token 0 / token 1.
    pub(crate) custom: [bool; 2],
}

/// Best bid and ask of a book.
type Bbo = (Option<Price>, Option<Price>);

/// An asset's hash and best bid/ask after a whole trade group.
type FinalState = (String, Bbo);

/// A `price_change` entry before it is written.
#[derive(Debug, Clone)]
struct PendingEntry {
    asset: u32,
    side: Side,
    price: Price,
    size: Size,
    hash: String,
    bbo: Bbo,
}

/// Markets, books, and the generator state.
#[derive(Debug)]
pub(crate) struct Exchange {
    universe: Universe,
    books: Vec<TrueBook>,
    hasher: BookHasher,
    ctx: CheckContext,
    rng: fastrand::Rng,
    ucfg: UniverseConfig,
    trade_percent: u32,
    active: Vec<u32>,
    expiring: Vec<u32>,
    stalled: FxHashSet<u32>,
    cards: Vec<Arc<Card>>,
    catalog: Arc<Catalog>,
    buf: Vec<u8>,
    entries: Vec<PendingEntry>,
    truth_errors: u64,
}

fn meta(u: &Universe, asset: u32) -> BookMeta {
    let a = &u.assets[asset as usize];
    let m = &u.markets[a.market as usize];
    BookMeta {
        asset_id: a.token.clone(),
        market: m.condition_id.clone(),
        min_order_size: m.min_order_size,
        neg_risk: m.neg_risk,
        known: true,
    }
}

impl Exchange {
    /// Generates the starting universe and loads every book at `now_ms`.
    pub(crate) fn new(cfg: &SimConfig, now_us: u64) -> Exchange {
        let ucfg = UniverseConfig {
            markets: cfg.markets,
            neg_risk_share: cfg.neg_risk_share,
            expiring_share: cfg.expiring_share,
            new_market_neg_risk_share: cfg.new_market_neg_risk_share,
            expiry_within_us: cfg.expiry_within.as_micros() as u64,
        };
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let (universe, starts) = Universe::generate(&ucfg, &mut rng, now_us);
        let mut ex = Exchange {
            universe,
            books: Vec::new(),
            hasher: BookHasher::new(),
            ctx: CheckContext::new(CheckMode::Off),
            rng,
            ucfg,
            trade_percent: cfg.trade_percent.min(100),
            active: Vec::new(),
            expiring: Vec::new(),
            stalled: FxHashSet::default(),
            cards: Vec::new(),
            catalog: Arc::new(Catalog::default()),
            buf: Vec::with_capacity(4096),
            entries: Vec::new(),
            truth_errors: 0,
        };
        for (mi, start) in starts.iter().enumerate() {
            ex.open_market(mi as u32, start, now_us / 1000);
        }
        ex.catalog = Arc::new(Catalog::new(ex.cards.clone()));
        ex
    }

    fn open_market(&mut self, mi: u32, start: &StartBook, ts: u64) {
        let m = &self.universe.markets[mi as usize];
        let tick = m.tick;
        let expires = m.expires;
        let [yes, no] = m.assets;
        for (asset, book) in [(yes, start.clone()), (no, start.mirror())] {
            let mut t = TrueBook::new(meta(&self.universe, asset), asset);
            if !t.load(&book, tick, ts, &mut self.ctx) {
                self.truth_errors += 1;
            }
            debug_assert_eq!(self.books.len(), asset as usize);
            self.books.push(t);
        }
        self.active.push(mi);
        if expires {
            self.expiring.push(mi);
        }
        self.cards.push(Arc::new(self.card(mi)));
    }

    fn card(&self, mi: u32) -> Card {
        let m = &self.universe.markets[mi as usize];
        let yes = &self.books[m.assets[0] as usize];
        let tokens = m.assets.map(|a| &*self.universe.assets[a as usize].token);
        Card::render(m, tokens, yes.book())
    }

    /// Asset count (including closed markets' tokens).
    pub(crate) fn asset_count(&self) -> usize {
        self.books.len()
    }

    /// The asset index of a token id.
    pub(crate) fn asset_index(&self, token: &str) -> Option<u32> {
        self.universe.asset_index(token)
    }

    /// The market index of an asset.
    pub(crate) fn market_of(&self, asset: u32) -> u32 {
        self.universe.assets[asset as usize].market
    }

    /// The two assets of a market.
    pub(crate) fn assets_of(&self, market: u32) -> [u32; 2] {
        self.universe.markets[market as usize].assets
    }

    /// True while the asset's market trades.
    pub(crate) fn is_live(&self, asset: u32) -> bool {
        self.universe.markets[self.market_of(asset) as usize].is_active()
    }

    /// Number of active and closed markets.
    pub(crate) fn market_counts(&self) -> (usize, usize) {
        (
            self.active.len(),
            self.universe.markets.len() - self.active.len(),
        )
    }

    /// Books the sim refused to apply to its own truth (a sim bug if ever non-zero).
    pub(crate) fn truth_errors(&self) -> u64 {
        self.truth_errors
    }

    /// The Gamma catalog.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog)
    }

    /// Stalls (or releases) an asset. Returns false for an unknown token.
    pub(crate) fn stall(&mut self, token: &str, on: bool) -> bool {
        let Some(a) = self.asset_index(token) else {
            return false;
        };
        if on {
            self.stalled.insert(a);
        } else {
            self.stalled.remove(&a);
        }
        true
    }

    /// Releases every stalled asset.
    pub(crate) fn clear_stalls(&mut self) {
        self.stalled.clear();
    }

    /// True when the asset's data is held back.
    pub(crate) fn is_stalled(&self, asset: u32) -> bool {
        self.stalled.contains(&asset)
    }

    /// Picks an active market (a tenth of them get a quarter of the flow).
    pub(crate) fn pick_market(&mut self) -> Option<u32> {
        let n = self.active.len();
        if n == 0 {
            return None;
        }
        let i = if self.rng.u32(..4) == 0 {
            self.rng.usize(..(n / 10).max(1))
        } else {
            self.rng.usize(..n)
        };
        Some(self.active[i])
    }

    /// The truth of one asset.
    pub(crate) fn truth(&mut self, asset: u32) -> TruthBook {
        self.books[asset as usize].view(&mut self.hasher)
    }

    /// The public description of every market.
    pub(crate) fn market_infos(&self) -> Vec<MarketInfo> {
        self.universe
            .markets
            .iter()
            .map(|m| MarketInfo {
                gamma_id: m.gamma_id,
                condition_id: m.condition_id.to_string(),
                question: m.question.clone(),
                outcomes: m.outcomes.to_vec(),
                tokens: m
                    .assets
                    .iter()
                    .map(|&a| self.universe.assets[a as usize].token.to_string())
                    .collect(),
                tick_size: m.tick,
                min_order_size: m.min_order_size,
                neg_risk: m.neg_risk,
                closed: !m.is_active(),
                end_date_ms: m.end_us / 1000,
            })
            .collect()
    }

    /// Writes an initial-dump `book` for the asset stamped `ts` into `out`.
    pub(crate) fn dump_book(&mut self, asset: u32, ts: u64, out: &mut Vec<u8>) {
        let t = &mut self.books[asset as usize];
        t.touch(ts);
        let hash = self.hasher.hex(t.book(), ts);
        wire::book(out, BookStyle::Full, t.book(), ts, &hash);
    }

    /// The CLOB REST summary of a token, stamped `ts`; `None` without a live book.
    pub(crate) fn rest_book(&mut self, token: &str, ts: u64) -> Option<String> {
        let a = self.asset_index(token)?;
        if !self.is_live(a) {
            return None;
        }
        let t = &self.books[a as usize];
        let hash = self.hasher.hex(t.book(), ts);
        let mut out = Vec::with_capacity(2048);
        wire::rest_book(&mut out, t.book(), ts, &hash);
        String::from_utf8(out).ok()
    }

    fn emit(&mut self, route: Route, out: &mut Vec<Emit>) {
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(1024));
        if let Ok(text) = Utf8Bytes::try_from(bytes) {
            out.push(Emit { route, text });
        }
    }

    /// One step of a market's flow at `ts`. Returns the number of flow messages it stands for
    /// (whether or not anyone listens).
    pub(crate) fn step(&mut self, mi: u32, listen: Listen, ts: u64, out: &mut Vec<Emit>) -> u64 {
        let m = &self.universe.markets[mi as usize];
        let (fair, [yes, no]) = (m.fair, m.assets);
        let before = [
            self.books[yes as usize].bbo(),
            self.books[no as usize].bbo(),
        ];
        let count = match flow::plan_step(
            &mut self.rng,
            self.books[yes as usize].book(),
            fair,
            self.trade_percent,
        ) {
            Step::Quote { changes } => self.quote(mi, changes, listen.market, ts, out),
            Step::Trade(trade) => self.trade(mi, &trade, listen.market, ts, out),
        };
        for (k, asset) in [yes, no].into_iter().enumerate() {
            let now = self.books[asset as usize].bbo();
            if listen.custom[k] && now != before[k] && !self.stalled.contains(&asset) {
                let market = &self.universe.markets[mi as usize].condition_id;
                let token = &self.universe.assets[asset as usize].token;
                wire::best_bid_ask(&mut self.buf, market, token, now.0, now.1, ts);
                self.emit(Route::AssetCustom(asset), out);
            }
        }
        count + self.retick(mi, listen.market, ts, out)
    }

    fn apply(&mut self, asset: u32, side: Side, price: Price, size: Size, ts: u64) {
        if !self.books[asset as usize].set(side, price, size, ts, &mut self.ctx) {
            self.truth_errors += 1;
        }
    }

    fn pending(
        &mut self,
        asset: u32,
        side: Side,
        price: Price,
        size: Size,
        final_state: Option<&FinalState>,
        ts: u64,
    ) {
        if self.stalled.contains(&asset) {
            return;
        }
        let (hash, bbo) = match final_state {
            Some((h, bbo)) => (h.clone(), *bbo),
            None => {
                let t = &self.books[asset as usize];
                (self.hasher.hex(t.book(), ts), t.bbo())
            }
        };
        self.entries.push(PendingEntry {
            asset,
            side,
            price,
            size,
            hash,
            bbo,
        });
    }

    fn write_price_change(&mut self, mi: u32, ts: u64, out: &mut Vec<Emit>) {
        if self.entries.is_empty() {
            return;
        }
        let assets = &self.universe.assets;
        let entries: Vec<Entry<'_>> = self
            .entries
            .iter()
            .map(|e| Entry {
                asset_id: &assets[e.asset as usize].token,
                price: e.price,
                size: e.size,
                side: e.side,
                hash: &e.hash,
                best_bid: e.bbo.0,
                best_ask: e.bbo.1,
            })
            .collect();
        let market = &self.universe.markets[mi as usize].condition_id;
        wire::price_change(&mut self.buf, market, &entries, ts);
        self.entries.clear();
        self.emit(Route::Market(mi), out);
    }

    fn quote(&mut self, mi: u32, changes: usize, send: bool, ts: u64, out: &mut Vec<Emit>) -> u64 {
        let m = &self.universe.markets[mi as usize];
        let (tick, fair, [yes, no]) = (m.tick, m.fair, m.assets);
        let mut applied = 0;
        self.entries.clear();
        for _ in 0..changes {
            let Some(c) =
                flow::plan_change(&mut self.rng, self.books[yes as usize].book(), tick, fair)
            else {
                continue;
            };
            applied += 1;
            let mut pair = [
                (yes, c.side, c.price),
                (no, c.side.opposite(), c.price.complement()),
            ];
            if self.rng.bool() {
                pair.swap(0, 1);
            }
            for (asset, side, price) in pair {
                self.apply(asset, side, price, c.size, ts);
                if send {
                    self.pending(asset, side, price, c.size, None, ts);
                }
            }
        }
        if applied == 0 {
            return 0;
        }
        self.write_price_change(mi, ts, out);
        1
    }

    fn trade(
        &mut self,
        mi: u32,
        trade: &flow::Trade,
        send: bool,
        ts: u64,
        out: &mut Vec<Emit>,
    ) -> u64 {
        let [yes, no] = self.universe.markets[mi as usize].assets;
        let changes: Vec<flow::Change> = trade.rest.iter().chain(&trade.fills).copied().collect();
        for c in &changes {
            self.apply(yes, c.side, c.price, c.size, ts);
            self.apply(no, c.side.opposite(), c.price.complement(), c.size, ts);
        }
        let sides = [trade.taker, trade.taker.opposite()];
        let prices = [trade.price, trade.price.complement()].map(QuotedPrice::canonical);
        for (k, asset) in [yes, no].into_iter().enumerate() {
            self.books[asset as usize].trade(prices[k], trade.size, sides[k], ts, &mut self.ctx);
        }
        let messages = changes.len() as u64 + 4;
        if !send {
            return messages;
        }
        // Every entry of the group carries the final state (docs/venue-protocol.md §4).
        let finals = [yes, no].map(|a| {
            let t = &self.books[a as usize];
            (self.hasher.hex(t.book(), ts), t.bbo())
        });
        for c in &changes {
            self.entries.clear();
            let mut pair = [
                (yes, c.side, c.price, 0usize),
                (no, c.side.opposite(), c.price.complement(), 1usize),
            ];
            if self.rng.bool() {
                pair.swap(0, 1);
            }
            for (asset, side, price, k) in pair {
                self.pending(asset, side, price, c.size, Some(&finals[k]), ts);
            }
            self.write_price_change(mi, ts, out);
        }
        let tx_hash = self.tx_hash();
        for (k, asset) in [yes, no].into_iter().enumerate() {
            if self.stalled.contains(&asset) {
                continue;
            }
            let text = TradeText {
                asset_id: &self.universe.assets[asset as usize].token,
                price: prices[k],
                size: trade.size,
                side: sides[k],
                fee_rate_bps: 0,
                transaction_hash: &tx_hash,
            };
            wire::last_trade_price(
                &mut self.buf,
                &self.universe.markets[mi as usize].condition_id,
                &text,
                ts,
            );
            self.emit(Route::Asset(asset), out);
        }
        for (k, asset) in [yes, no].into_iter().enumerate() {
            if self.stalled.contains(&asset) {
                continue;
            }
            wire::book(
                &mut self.buf,
                BookStyle::PostTrade,
                self.books[asset as usize].book(),
                ts,
                &finals[k].0,
            );
            self.emit(Route::Asset(asset), out);
        }
        messages
    }

    fn tx_hash(&mut self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(66);
        s.push_str("0x");
        for _ in 0..64 {
            s.push(char::from(HEX[self.rng.usize(..16)]));
        }
        s
    }

    /// Applies a tick-size change if the market's touch crossed a threshold.
    fn retick(&mut self, mi: u32, send: bool, ts: u64, out: &mut Vec<Emit>) -> u64 {
        let m = &self.universe.markets[mi as usize];
        let [yes, no] = m.assets;
        let (bid, ask) = self.books[yes as usize].bbo();
        let Some(new) = flow::wanted_tick(m.base_tick, m.tick, bid, ask) else {
            return 0;
        };
        let old = m.tick;
        self.universe.markets[mi as usize].tick = new;
        for a in [yes, no] {
            if !self.books[a as usize].change_tick(old, new, ts, &mut self.ctx) {
                self.truth_errors += 1;
            }
        }
        self.refill_empty_sides(mi, ts);
        if !send {
            return 4;
        }
        let market = self.universe.markets[mi as usize].condition_id.clone();
        for a in [yes, no] {
            if self.stalled.contains(&a) {
                continue;
            }
            let token = &self.universe.assets[a as usize].token;
            wire::tick_size_change(&mut self.buf, &market, token, old, new, ts);
            self.emit(Route::Asset(a), out);
            let t = &self.books[a as usize];
            let hash = self.hasher.hex(t.book(), ts);
            wire::book(&mut self.buf, BookStyle::Full, t.book(), ts, &hash);
            self.emit(Route::Asset(a), out);
        }
        4
    }

    /// A coarser tick can leave a side without levels; put one back (YES and its mirror) so
    /// the flow can go on.
    fn refill_empty_sides(&mut self, mi: u32, ts: u64) {
        let m = &self.universe.markets[mi as usize];
        let (tick, fair, [yes, no]) = (m.tick, m.fair, m.assets);
        let t = i64::from(tick.raw());
        for side in [Side::Bid, Side::Ask] {
            let (bid, ask) = self.books[yes as usize].bbo();
            let price = match (side, bid, ask) {
                (Side::Bid, None, Some(a)) => on_grid(i64::from(a.raw()) - t, tick),
                (Side::Bid, None, None) => on_grid(i64::from(fair.raw()), tick),
                (Side::Ask, Some(b), None) => on_grid(i64::from(b.raw()) + 2 * t - 1, tick),
                _ => continue,
            };
            let (bid, ask) = (bid.unwrap_or(Price::default()), ask.unwrap_or(Price::ONE));
            if (side == Side::Bid && price >= ask) || (side == Side::Ask && price <= bid) {
                continue;
            }
            let size = random_size(&mut self.rng, 5, 500);
            self.apply(yes, side, price, size, ts);
            self.apply(no, side.opposite(), price.complement(), size, ts);
        }
    }

    /// Resolves expired markets and opens a new one when due; writes `market_resolved` /
    /// `new_market` when some custom-feature connection exists. Returns the number of markets
    /// created or resolved.
    pub(crate) fn lifecycle(
        &mut self,
        now_us: u64,
        new_market: bool,
        send: bool,
        out: &mut Vec<Emit>,
    ) -> usize {
        let ts = now_us / 1000;
        let mut changed = 0;
        let due: Vec<u32> = self
            .expiring
            .iter()
            .copied()
            .filter(|&mi| self.universe.markets[mi as usize].end_us <= now_us)
            .collect();
        for mi in due {
            changed += 1;
            self.expiring.retain(|&x| x != mi);
            self.active.retain(|&x| x != mi);
            let [yes, no] = self.universe.markets[mi as usize].assets;
            let (bid, ask) = self.books[yes as usize].bbo();
            let mid = (bid.map_or(0, Price::raw) + ask.map_or(1_000_000, Price::raw)) / 2;
            let winner = usize::from(mid < 500_000);
            self.universe.markets[mi as usize].status = MarketStatus::Resolved {
                at_us: now_us,
                winner: winner as u8,
            };
            self.cards[mi as usize] = Arc::new(self.card(mi));
            self.books[yes as usize].touch(ts);
            self.books[no as usize].touch(ts);
            if send {
                let tokens = [yes, no].map(|a| &*self.universe.assets[a as usize].token);
                wire::market_resolved(
                    &mut self.buf,
                    &self.universe.markets[mi as usize],
                    tokens,
                    winner,
                    ts,
                );
                self.emit(Route::CustomAll, out);
            }
        }
        if new_market {
            changed += 1;
            let expires = chance(&mut self.rng, self.ucfg.expiring_share);
            // Drawn only when asked for, so runs without the knob keep their sequence.
            let share = self.ucfg.new_market_neg_risk_share;
            let neg_risk = share > 0.0 && chance(&mut self.rng, share);
            let start = self.universe.add_binary(
                &mut self.rng,
                &self.ucfg,
                now_us,
                expires,
                true,
                neg_risk,
            );
            let mi = (self.universe.markets.len() - 1) as u32;
            self.open_market(mi, &start, ts);
            if send {
                let m = &self.universe.markets[mi as usize];
                let tokens = m.assets.map(|a| &*self.universe.assets[a as usize].token);
                wire::new_market(&mut self.buf, m, tokens, ts);
                self.emit(Route::CustomAll, out);
            }
        }
        if changed > 0 {
            self.catalog = Arc::new(Catalog::new(self.cards.clone()));
        }
        changed
    }
}
