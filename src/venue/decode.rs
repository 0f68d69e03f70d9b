//! Market-channel frames → [`Record`]s (docs/venue-protocol.md §2.4 and §3).
//!
//! One call decodes one text frame: `PONG`, `NO NEW ASSETS`, a JSON object, or a JSON array
//! of objects. Each object is one message; its keys may come in any order, so the whole object
//! is scanned into spans first and then emitted according to `event_type`. Messages, levels
//! and entries in the venue's exact compact layouts take fixed-layout fast paths
//! (`venue::fast`, `Decoder::scan_fixed`) that produce the same spans; anything else falls
//! back to the generic scan from the same offset, which defines the semantics. Unknown
//! `event_type`s are skipped and counted per element without failing the rest of the frame.
//! A message that fails (a malformed number, a missing field) is reported with the assets it
//! named and emits nothing; a frame that is not valid JSON emits nothing and reports every
//! asset id that can still be found in its bytes, so the owner can resync exactly those books.
//!
//! Pure and allocation-free on success once the scratch vectors are warm. Runs on the event
//! loop thread (engine) or the replay loop (`polypy-replay`).

use super::fast;
use super::json::{Scalar, Scanner, SyntaxError};
use crate::market::{
    AssetId, Bbo, BookHash, Event, FieldUpdate, NumberError, Price, QuotedPrice, Record, Side, Size,
};

/// Why a frame or a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not valid JSON. Every asset it names may have lost data: resync them.
    #[error("malformed json at byte {offset}: expected {expected}")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What the scanner expected there.
        expected: &'static str,
    },
    /// A number field did not parse. The message's assets may have lost data: resync them.
    #[error("bad number in field {field}: {text:?}: {source}")]
    Number {
        /// Field name.
        field: &'static str,
        /// The offending text (at most 40 bytes).
        text: String,
        /// The parse failure.
        source: NumberError,
    },
    /// A required field is missing or has the wrong type.
    #[error("missing or invalid field {field} in {event} message")]
    Field {
        /// The message type.
        event: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A snapshot with more levels per side than a record can count (65,535).
    #[error("book with {levels} levels on one side is too large")]
    TooManyLevels {
        /// Levels on the larger side.
        levels: usize,
    },
    /// A text frame that is neither JSON nor a known keep-alive text.
    #[error("unexpected text frame: {text:?}")]
    UnexpectedText {
        /// The first bytes of the frame.
        text: String,
    },
}

impl From<SyntaxError> for DecodeError {
    fn from(e: SyntaxError) -> DecodeError {
        DecodeError::Syntax {
            offset: e.offset,
            expected: e.expected,
        }
    }
}

fn number_error(field: &'static str, text: &[u8], source: NumberError) -> DecodeError {
    let end = text.len().min(40);
    DecodeError::Number {
        field,
        text: String::from_utf8_lossy(&text[..end]).into_owned(),
        source,
    }
}

/// What kind of frame was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `PONG`: the answer to our keep-alive `PING`.
    Pong,
    /// `NO NEW ASSETS`: a heartbeat/ack of the custom feature.
    NoNewAssets,
    /// JSON: one object or an array of objects (possibly empty).
    Json,
}

/// A lifecycle notice (custom feature messages); rare, so owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `new_market`.
    NewMarket {
        /// Gamma market id.
        id: String,
        /// Condition id.
        market: String,
        /// Question text.
        question: String,
        /// Token ids, aligned with `outcomes`.
        assets_ids: Vec<String>,
        /// Outcome names.
        outcomes: Vec<String>,
        /// Minimum tick, when sent.
        tick_size: Option<Price>,
        /// Unix ms.
        timestamp: u64,
    },
    /// `market_resolved`.
    MarketResolved {
        /// Condition id.
        market: String,
        /// Token ids of the market.
        assets_ids: Vec<String>,
        /// The winning token.
        winning_asset_id: String,
        /// Unix ms.
        timestamp: u64,
    },
}

/// A message (or frame) that failed, with the assets it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error.
    pub error: DecodeError,
    /// Known assets the failed message named; their books may have lost data.
    pub assets: Vec<AssetId>,
    /// Condition ids (`"market"`) a broken frame named: a cut-off `price_change` may have
    /// lost entries for assets it no longer names, so every asset of these markets may have
    /// lost data. Empty when the message parsed and `assets` is complete.
    pub markets: Vec<String>,
}

/// Counters for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameStats {
    /// Messages decoded successfully (known types).
    pub messages: u32,
    /// Messages with an unknown `event_type`, skipped.
    pub unknown: u32,
    /// Messages that failed.
    pub failed: u32,
    /// Entries or messages naming an asset the resolver does not know, dropped.
    pub unresolved: u32,
    /// Records emitted.
    pub records: u32,
}

/// The output of decoding frames; reuse it (call [`DecodeOutput::clear`]) across frames.
#[derive(Debug, Default)]
pub struct DecodeOutput {
    /// Records in wire order.
    pub records: Vec<Record>,
    /// Lifecycle notices.
    pub notices: Vec<Notice>,
    /// Failed messages.
    pub failures: Vec<Failure>,
}

impl DecodeOutput {
    /// Empties the output, keeping allocations.
    pub fn clear(&mut self) {
        self.records.clear();
        self.notices.clear();
        self.failures.clear();
    }
}

/// Maps a token id to an interned asset; `None` drops the asset's data (not ours).
pub trait AssetResolver {
    /// Resolves a token id.
    fn resolve(&mut self, token: &str) -> Option<AssetId>;
}

impl AssetResolver for crate::market::AssetInterner {
    /// Interns every asset (the replay tool's behaviour).
    fn resolve(&mut self, token: &str) -> Option<AssetId> {
        Some(self.intern(token))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(text: &[u8], part: &[u8]) -> Span {
        // `part` is a subslice of `text`.
        let start = part.as_ptr() as usize - text.as_ptr() as usize;
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    #[inline]
    fn body((start, len): fast::Body) -> Span {
        Span { start, len }
    }

    fn get(self, text: &[u8]) -> &[u8] {
        let s = self.start as usize;
        text.get(s..s + self.len as usize).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct EntrySpans {
    asset_id: Option<Span>,
    price: Option<Span>,
    size: Option<Span>,
    side: Option<Span>,
    hash: Option<Span>,
    best_bid: Option<Span>,
    best_ask: Option<Span>,
}

impl EntrySpans {
    /// The spans of a `fast::entry` match.
    #[inline]
    fn from_fast([asset_id, price, size, side, hash, best_bid, best_ask]: [fast::Body; 7]) -> Self {
        EntrySpans {
            asset_id: Some(Span::body(asset_id)),
            price: Some(Span::body(price)),
            size: Some(Span::body(size)),
            side: Some(Span::body(side)),
            hash: Some(Span::body(hash)),
            best_bid: Some(Span::body(best_bid)),
            best_ask: Some(Span::body(best_ask)),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ListRange {
    start: u32,
    end: u32,
}

/// Everything one message object carries, as spans into the frame.
#[derive(Clone, Copy, Debug, Default)]
struct MessageSpans {
    event_type: Option<Span>,
    asset_id: Option<Span>,
    market: Option<Span>,
    id: Option<Span>,
    question: Option<Span>,
    timestamp: Option<Span>,
    hash: Option<Span>,
    tick_size: Option<Span>,
    last_trade_price: Option<Span>,
    old_tick_size: Option<Span>,
    new_tick_size: Option<Span>,
    winning_asset_id: Option<Span>,
    order_price_min_tick_size: Option<Span>,
    // Legacy #1 price_change and last_trade_price / best_bid_ask scalars.
    entry: EntrySpans,
    bids: Option<ListRange>,
    asks: Option<ListRange>,
    changes: Option<ListRange>,
    assets_ids: Option<ListRange>,
    outcomes: Option<ListRange>,
}

/// Decodes market-channel frames; owns reusable scratch space.
#[derive(Debug, Default)]
pub struct Decoder {
    levels: Vec<(Span, Span)>,
    entries: Vec<EntrySpans>,
    strings: Vec<Span>,
}

impl Decoder {
    /// A decoder with empty scratch space.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes one text frame, appending to `out`.
    ///
    /// Never panics; every problem is reported in `out.failures` and counted in the stats.
    pub fn decode<R: AssetResolver + ?Sized>(
        &mut self,
        text: &[u8],
        received_ns: u64,
        resolver: &mut R,
        out: &mut DecodeOutput,
    ) -> (FrameKind, FrameStats) {
        let mut stats = FrameStats::default();
        let trimmed = text.trim_ascii();
        match trimmed {
            b"PONG" => return (FrameKind::Pong, stats),
            b"NO NEW ASSETS" => return (FrameKind::NoNewAssets, stats),
            _ => {}
        }
        let records_before = out.records.len();
        let notices_before = out.notices.len();
        let mut s = Scanner::new(text);
        let result = match s.peek() {
            Some(b'[') => self.decode_array(text, &mut s, received_ns, resolver, out, &mut stats),
            Some(b'{') => self
                .decode_message(text, &mut s, received_ns, resolver, out, &mut stats)
                .and_then(|()| if s.at_end() { Ok(()) } else { Err(s_err(&s)) }),
            _ => {
                let end = trimmed.len().min(40);
                stats.failed += 1;
                out.failures.push(Failure {
                    error: DecodeError::UnexpectedText {
                        text: String::from_utf8_lossy(&trimmed[..end]).into_owned(),
                    },
                    assets: salvage_assets(text, resolver),
                    markets: salvage_markets(text),
                });
                return (FrameKind::Json, stats);
            }
        };
        if let Err(e) = result {
            // The frame is broken: emit nothing from it, report every asset it names.
            out.records.truncate(records_before);
            out.notices.truncate(notices_before);
            stats.records = 0;
            stats.messages = 0;
            stats.unknown = 0;
            stats.unresolved = 0;
            stats.failed += 1;
            out.failures.push(Failure {
                error: e.into(),
                assets: salvage_assets(text, resolver),
                markets: salvage_markets(text),
            });
        }
        (FrameKind::Json, stats)
    }

    fn decode_array<R: AssetResolver + ?Sized>(
        &mut self,
        text: &[u8],
        s: &mut Scanner<'_>,
        received_ns: u64,
        resolver: &mut R,
        out: &mut DecodeOutput,
        stats: &mut FrameStats,
    ) -> Result<(), SyntaxError> {
        s.begin_array()?;
        let mut first = true;
        while s.next_element(first)? {
            first = false;
            if s.peek() == Some(b'{') {
                self.decode_message(text, s, received_ns, resolver, out, stats)?;
            } else {
                s.skip_value()?;
                stats.unknown += 1;
            }
        }
        if s.at_end() { Ok(()) } else { Err(s_err(s)) }
    }

    fn decode_message<R: AssetResolver + ?Sized>(
        &mut self,
        text: &[u8],
        s: &mut Scanner<'_>,
        received_ns: u64,
        resolver: &mut R,
        out: &mut DecodeOutput,
        stats: &mut FrameStats,
    ) -> Result<(), SyntaxError> {
        self.levels.clear();
        self.entries.clear();
        self.strings.clear();
        let m = match self.scan_fixed(text, s.offset()) {
            Some((m, end)) => {
                s.set_offset(end);
                m
            }
            None => {
                // Not one of the venue's exact layouts: the generic scan, from the same
                // offset and with empty scratch, is the reference.
                self.levels.clear();
                self.entries.clear();
                self.scan_message(text, s)?
            }
        };
        let before = out.records.len();
        match self.emit(text, &m, received_ns, resolver, out, stats) {
            Ok(Emitted::Known) => stats.messages += 1,
            Ok(Emitted::Unknown) => stats.unknown += 1,
            Err(error) => {
                out.records.truncate(before);
                stats.failed += 1;
                let mut assets = Vec::new();
                let mut add = |span: Option<Span>, r: &mut R| {
                    if let Some(id) = span
                        .and_then(|sp| std::str::from_utf8(sp.get(text)).ok())
                        .and_then(|t| r.resolve(t))
                    {
                        if !assets.contains(&id) {
                            assets.push(id);
                        }
                    }
                };
                add(m.asset_id, resolver);
                for e in &self.entries {
                    add(e.asset_id, resolver);
                }
                out.failures.push(Failure {
                    error,
                    assets,
                    markets: Vec::new(),
                });
            }
        }
        stats.records += (out.records.len() - before) as u32;
        Ok(())
    }

    /// Fast path: a whole message in one of the venue's compact layouts (`sim::wire` writes
    /// them; docs/venue-protocol.md §3.1–§3.2):
    ///
    /// * `price_change`: `market, price_changes[…], timestamp, event_type`;
    /// * initial-dump `book`: `market, asset_id, timestamp, hash, bids, asks, tick_size,
    ///   event_type, last_trade_price`;
    /// * post-trade `book`: `market, asset_id, bids, asks, hash, timestamp, event_type`;
    ///
    /// every scalar a plain string, every list element in its `fast` layout, no whitespace.
    /// Returns what [`Decoder::scan_message`] would for the same bytes, and the offset after
    /// the object; `None` for anything else (the scratch lists may then hold partial
    /// pushes: the caller clears them and runs the generic scan from the same offset).
    #[inline]
    fn scan_fixed(&mut self, b: &[u8], at: usize) -> Option<(MessageSpans, usize)> {
        let mut i = at;
        if !fast::enabled() || !fast::eat(b, &mut i, b"{\"market\":\"") {
            return None;
        }
        let mut m = MessageSpans {
            market: Some(Span::body(fast::long_value(b, &mut i, b"\",\"")?)),
            ..MessageSpans::default()
        };
        if fast::eat(b, &mut i, b"price_changes\":[") {
            m.changes = Some(self.fast_entries(b, &mut i)?);
            if !fast::eat(b, &mut i, b",\"timestamp\":\"") {
                return None;
            }
            m.timestamp = Some(Span::body(fast::value(b, &mut i, b"\",\"event_type\":\"")?));
            m.event_type = Some(Span::body(fast::value(b, &mut i, b"\"}")?));
            return Some((m, i));
        }
        if !fast::eat(b, &mut i, b"asset_id\":\"") {
            return None;
        }
        m.asset_id = Some(Span::body(fast::long_value(b, &mut i, b"\",\"")?));
        if fast::eat(b, &mut i, b"timestamp\":\"") {
            m.timestamp = Some(Span::body(fast::value(b, &mut i, b"\",\"hash\":\"")?));
            m.hash = Some(Span::body(fast::long_value(b, &mut i, b"\",\"bids\":[")?));
            m.bids = Some(self.fast_levels(b, &mut i)?);
            if !fast::eat(b, &mut i, b",\"asks\":[") {
                return None;
            }
            m.asks = Some(self.fast_levels(b, &mut i)?);
            if !fast::eat(b, &mut i, b",\"tick_size\":\"") {
                return None;
            }
            m.tick_size = Some(Span::body(fast::value(b, &mut i, b"\",\"event_type\":\"")?));
            m.event_type = Some(Span::body(fast::value(
                b,
                &mut i,
                b"\",\"last_trade_price\":\"",
            )?));
            m.last_trade_price = Some(Span::body(fast::value(b, &mut i, b"\"}")?));
            return Some((m, i));
        }
        if !fast::eat(b, &mut i, b"bids\":[") {
            return None;
        }
        m.bids = Some(self.fast_levels(b, &mut i)?);
        if !fast::eat(b, &mut i, b",\"asks\":[") {
            return None;
        }
        m.asks = Some(self.fast_levels(b, &mut i)?);
        if !fast::eat(b, &mut i, b",\"hash\":\"") {
            return None;
        }
        m.hash = Some(Span::body(fast::long_value(
            b,
            &mut i,
            b"\",\"timestamp\":\"",
        )?));
        m.timestamp = Some(Span::body(fast::value(b, &mut i, b"\",\"event_type\":\"")?));
        m.event_type = Some(Span::body(fast::value(b, &mut i, b"\"}")?));
        Some((m, i))
    }

    /// The rest of a level array after its `[`, every element in the `fast::level` layout,
    /// through the closing `]`.
    #[inline]
    fn fast_levels(&mut self, b: &[u8], i: &mut usize) -> Option<ListRange> {
        let start = self.levels.len() as u32;
        if !fast::eat(b, i, b"]") {
            loop {
                let ([price, size], end) = fast::level(b, *i)?;
                self.levels.push((Span::body(price), Span::body(size)));
                *i = end + 1;
                match b.get(end) {
                    Some(b',') => {}
                    Some(b']') => break,
                    _ => return None,
                }
            }
        }
        Some(ListRange {
            start,
            end: self.levels.len() as u32,
        })
    }

    /// The rest of a `price_changes` array after its `[`, every element in the
    /// `fast::entry` layout, through the closing `]`.
    #[inline]
    fn fast_entries(&mut self, b: &[u8], i: &mut usize) -> Option<ListRange> {
        let start = self.entries.len() as u32;
        if !fast::eat(b, i, b"]") {
            loop {
                let (e, end) = fast::entry(b, *i)?;
                self.entries.push(EntrySpans::from_fast(e));
                *i = end + 1;
                match b.get(end) {
                    Some(b',') => {}
                    Some(b']') => break,
                    _ => return None,
                }
            }
        }
        Some(ListRange {
            start,
            end: self.entries.len() as u32,
        })
    }

    fn scan_message(
        &mut self,
        text: &[u8],
        s: &mut Scanner<'_>,
    ) -> Result<MessageSpans, SyntaxError> {
        let mut m = MessageSpans::default();
        s.begin_object()?;
        let mut first = true;
        while let Some(key) = s.next_key(first)? {
            first = false;
            let slot = match key {
                b"event_type" => &mut m.event_type,
                b"asset_id" => &mut m.asset_id,
                b"market" => &mut m.market,
                b"id" => &mut m.id,
                b"question" => &mut m.question,
                b"timestamp" => &mut m.timestamp,
                b"hash" => &mut m.hash,
                b"tick_size" => &mut m.tick_size,
                b"last_trade_price" => &mut m.last_trade_price,
                b"old_tick_size" => &mut m.old_tick_size,
                b"new_tick_size" => &mut m.new_tick_size,
                b"winning_asset_id" => &mut m.winning_asset_id,
                b"order_price_min_tick_size" => &mut m.order_price_min_tick_size,
                b"price" => &mut m.entry.price,
                b"size" => &mut m.entry.size,
                b"side" => &mut m.entry.side,
                b"best_bid" => &mut m.entry.best_bid,
                b"best_ask" => &mut m.entry.best_ask,
                b"bids" => {
                    m.bids = Some(self.scan_levels(text, s)?);
                    continue;
                }
                b"asks" => {
                    m.asks = Some(self.scan_levels(text, s)?);
                    continue;
                }
                b"price_changes" | b"changes" => {
                    m.changes = Some(self.scan_entries(text, s)?);
                    continue;
                }
                b"assets_ids" => {
                    m.assets_ids = Some(self.scan_strings(text, s)?);
                    continue;
                }
                b"outcomes" => {
                    m.outcomes = Some(self.scan_strings(text, s)?);
                    continue;
                }
                _ => {
                    s.skip_value()?;
                    continue;
                }
            };
            *slot = scalar_span(text, s)?;
        }
        Ok(m)
    }

    fn scan_levels(&mut self, text: &[u8], s: &mut Scanner<'_>) -> Result<ListRange, SyntaxError> {
        let start = self.levels.len() as u32;
        if s.peek() != Some(b'[') {
            s.skip_value()?;
            return Ok(ListRange { start, end: start });
        }
        s.begin_array()?;
        let mut first = true;
        while s.next_element(first)? {
            first = false;
            // Fast path: the venue's exact `{"price":"…","size":"…"}`; else generic.
            if let Some(([p, sz], end)) = fast::level(text, s.offset()) {
                self.levels.push((Span::body(p), Span::body(sz)));
                s.set_offset(end);
                continue;
            }
            if s.peek() != Some(b'{') {
                s.skip_value()?;
                continue;
            }
            s.begin_object()?;
            let (mut price, mut size) = (Span::default(), Span::default());
            let mut kfirst = true;
            while let Some(key) = s.next_key(kfirst)? {
                kfirst = false;
                match key {
                    b"price" => price = scalar_span(text, s)?.unwrap_or_default(),
                    b"size" => size = scalar_span(text, s)?.unwrap_or_default(),
                    _ => s.skip_value()?,
                }
            }
            self.levels.push((price, size));
        }
        Ok(ListRange {
            start,
            end: self.levels.len() as u32,
        })
    }

    fn scan_entries(&mut self, text: &[u8], s: &mut Scanner<'_>) -> Result<ListRange, SyntaxError> {
        let start = self.entries.len() as u32;
        if s.peek() != Some(b'[') {
            s.skip_value()?;
            return Ok(ListRange { start, end: start });
        }
        s.begin_array()?;
        let mut first = true;
        while s.next_element(first)? {
            first = false;
            // Fast path: the venue's seven keys in their usual order; else generic.
            if let Some((e, end)) = fast::entry(text, s.offset()) {
                self.entries.push(EntrySpans::from_fast(e));
                s.set_offset(end);
                continue;
            }
            if s.peek() != Some(b'{') {
                s.skip_value()?;
                continue;
            }
            s.begin_object()?;
            let mut e = EntrySpans::default();
            let mut kfirst = true;
            while let Some(key) = s.next_key(kfirst)? {
                kfirst = false;
                let slot = match key {
                    b"asset_id" => &mut e.asset_id,
                    b"price" => &mut e.price,
                    b"size" => &mut e.size,
                    b"side" => &mut e.side,
                    b"hash" => &mut e.hash,
                    b"best_bid" => &mut e.best_bid,
                    b"best_ask" => &mut e.best_ask,
                    _ => {
                        s.skip_value()?;
                        continue;
                    }
                };
                *slot = scalar_span(text, s)?;
            }
            self.entries.push(e);
        }
        Ok(ListRange {
            start,
            end: self.entries.len() as u32,
        })
    }

    fn scan_strings(&mut self, text: &[u8], s: &mut Scanner<'_>) -> Result<ListRange, SyntaxError> {
        let start = self.strings.len() as u32;
        if s.peek() != Some(b'[') {
            s.skip_value()?;
            return Ok(ListRange { start, end: start });
        }
        s.begin_array()?;
        let mut first = true;
        while s.next_element(first)? {
            first = false;
            if let Some(sp) = scalar_span(text, s)? {
                self.strings.push(sp);
            }
        }
        Ok(ListRange {
            start,
            end: self.strings.len() as u32,
        })
    }

    fn emit<R: AssetResolver + ?Sized>(
        &self,
        text: &[u8],
        m: &MessageSpans,
        received_ns: u64,
        resolver: &mut R,
        out: &mut DecodeOutput,
        stats: &mut FrameStats,
    ) -> Result<Emitted, DecodeError> {
        let event = m.event_type.map(|sp| sp.get(text));
        let kind = match event {
            Some(b"book") => Kind::Book,
            Some(b"price_change") => Kind::PriceChange,
            Some(b"tick_size_change") => Kind::TickSize,
            Some(b"last_trade_price") => Kind::Trade,
            Some(b"best_bid_ask") => Kind::BestBidAsk,
            Some(b"new_market") => Kind::NewMarket,
            Some(b"market_resolved") => Kind::Resolved,
            // Very old initial snapshots had no event_type (docs/venue-protocol.md §2.4).
            None if m.bids.is_some() || m.asks.is_some() => Kind::Book,
            // Some captures of the current price_change form lack event_type too.
            None if m.changes.is_some() => Kind::PriceChange,
            _ => return Ok(Emitted::Unknown),
        };
        let ev = kind.name();
        let timestamp = match m.timestamp {
            Some(sp) => timestamp_of(text, sp).ok_or(DecodeError::Field {
                event: ev,
                field: "timestamp",
            })?,
            None => 0,
        };
        let base = |asset| Record {
            asset,
            exchange_ts: timestamp,
            received_ns,
            event: Event::BestBidAsk {
                bbo: Bbo::default(),
            },
        };
        match kind {
            Kind::Book => {
                let asset_text = required(text, m.asset_id, ev, "asset_id")?;
                let bids = m.bids.unwrap_or_default();
                let asks = m.asks.unwrap_or_default();
                let nb = (bids.end - bids.start) as usize;
                let na = (asks.end - asks.start) as usize;
                if nb > usize::from(u16::MAX) || na > usize::from(u16::MAX) {
                    return Err(DecodeError::TooManyLevels { levels: nb.max(na) });
                }
                let tick_size = opt_price(text, m.tick_size, "tick_size")?;
                let last_trade = match m.last_trade_price.map(|sp| sp.get(text)) {
                    None => FieldUpdate::Keep,
                    Some(b"") => FieldUpdate::Clear,
                    Some(t) => FieldUpdate::Set(
                        QuotedPrice::parse(t)
                            .map_err(|e| number_error("last_trade_price", t, e))?,
                    ),
                };
                let hash = m.hash.and_then(|sp| BookHash::parse_hex(sp.get(text)));
                // Levels are parsed while they are emitted; a bad one fails the message and
                // the caller truncates what this message pushed (`before`), so a
                // failed message still emits nothing.
                let Some(asset) = resolve(resolver, asset_text) else {
                    stats.unresolved += 1;
                    return Ok(Emitted::Known);
                };
                out.records.push(Record {
                    event: Event::BookBegin {
                        bids: nb as u16,
                        asks: na as u16,
                        tick_size,
                        last_trade,
                    },
                    ..base(asset)
                });
                for (range, side) in [(bids, Side::Bid), (asks, Side::Ask)] {
                    for &(p, sz) in &self.levels[range.start as usize..range.end as usize] {
                        let price =
                            price_of(text, p).map_err(|e| number_error("price", p.get(text), e))?;
                        let size =
                            size_of(text, sz).map_err(|e| number_error("size", sz.get(text), e))?;
                        out.records.push(Record {
                            event: Event::Level { side, price, size },
                            ..base(asset)
                        });
                    }
                }
                out.records.push(Record {
                    event: Event::BookEnd { hash },
                    ..base(asset)
                });
            }
            Kind::PriceChange => {
                if let Some(range) = m.changes {
                    let legacy_asset = m.asset_id;
                    let n = range.end - range.start;
                    for (k, e) in self.entries[range.start as usize..range.end as usize]
                        .iter()
                        .enumerate()
                    {
                        // Legacy #2: asset and hash at the top level; the hash is the book's
                        // after the whole message, so it goes on the last entry.
                        let asset_span = e.asset_id.or(legacy_asset);
                        let hash_span = if e.asset_id.is_none() && (k as u32) + 1 == n {
                            m.hash
                        } else {
                            e.hash
                        };
                        self.emit_change(
                            text,
                            asset_span,
                            e,
                            hash_span,
                            received_ns,
                            timestamp,
                            resolver,
                            out,
                            stats,
                        )?;
                    }
                } else {
                    // Legacy #1: one level per message, fields at the top level.
                    self.emit_change(
                        text,
                        m.asset_id,
                        &m.entry,
                        m.hash,
                        received_ns,
                        timestamp,
                        resolver,
                        out,
                        stats,
                    )?;
                }
            }
            Kind::TickSize => {
                let asset_text = required(text, m.asset_id, ev, "asset_id")?;
                let old = opt_price(text, m.old_tick_size, "old_tick_size")?.unwrap_or_default();
                let new = opt_price(text, m.new_tick_size, "new_tick_size")?.ok_or(
                    DecodeError::Field {
                        event: ev,
                        field: "new_tick_size",
                    },
                )?;
                match resolve(resolver, asset_text) {
                    Some(asset) => out.records.push(Record {
                        event: Event::TickSize { old, new },
                        ..base(asset)
                    }),
                    None => stats.unresolved += 1,
                }
            }
            Kind::Trade => {
                let asset_text = required(text, m.asset_id, ev, "asset_id")?;
                let pt = required(text, m.entry.price, ev, "price")?;
                let price = QuotedPrice::parse(pt).map_err(|e| number_error("price", pt, e))?;
                let size = match m.entry.size.map(|sp| sp.get(text)) {
                    Some(st) => Size::parse(st).map_err(|e| number_error("size", st, e))?,
                    None => Size::ZERO,
                };
                let side = m
                    .entry
                    .side
                    .and_then(|sp| Side::parse(sp.get(text)))
                    .unwrap_or(Side::Bid);
                match resolve(resolver, asset_text) {
                    Some(asset) => out.records.push(Record {
                        event: Event::Trade { price, size, side },
                        ..base(asset)
                    }),
                    None => stats.unresolved += 1,
                }
            }
            Kind::BestBidAsk => {
                let asset_text = required(text, m.asset_id, ev, "asset_id")?;
                let bbo = parse_bbo(text, &m.entry)?;
                match resolve(resolver, asset_text) {
                    Some(asset) => out.records.push(Record {
                        event: Event::BestBidAsk { bbo },
                        ..base(asset)
                    }),
                    None => stats.unresolved += 1,
                }
            }
            Kind::NewMarket => {
                let market = required(text, m.market, ev, "market")?;
                out.notices.push(Notice::NewMarket {
                    id: owned(m.id.map(|sp| sp.get(text)).unwrap_or_default()),
                    market: owned(market),
                    question: owned(m.question.map(|sp| sp.get(text)).unwrap_or_default()),
                    assets_ids: self.owned_list(text, m.assets_ids),
                    outcomes: self.owned_list(text, m.outcomes),
                    tick_size: opt_price(
                        text,
                        m.order_price_min_tick_size,
                        "order_price_min_tick_size",
                    )
                    .unwrap_or(None),
                    timestamp,
                });
            }
            Kind::Resolved => {
                let market = required(text, m.market, ev, "market")?;
                out.notices.push(Notice::MarketResolved {
                    market: owned(market),
                    assets_ids: self.owned_list(text, m.assets_ids),
                    winning_asset_id: owned(
                        m.winning_asset_id
                            .map(|sp| sp.get(text))
                            .unwrap_or_default(),
                    ),
                    timestamp,
                });
            }
        }
        Ok(Emitted::Known)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "internal helper sharing the decode state"
    )]
    fn emit_change<R: AssetResolver + ?Sized>(
        &self,
        text: &[u8],
        asset_span: Option<Span>,
        e: &EntrySpans,
        hash_span: Option<Span>,
        received_ns: u64,
        timestamp: u64,
        resolver: &mut R,
        out: &mut DecodeOutput,
        stats: &mut FrameStats,
    ) -> Result<(), DecodeError> {
        const EV: &str = "price_change";
        let asset_text = required(text, asset_span, EV, "asset_id")?;
        let pt = required_span(e.price, EV, "price")?;
        let price = price_of(text, pt).map_err(|err| number_error("price", pt.get(text), err))?;
        let st = required_span(e.size, EV, "size")?;
        let size = size_of(text, st).map_err(|err| number_error("size", st.get(text), err))?;
        let side = e
            .side
            .and_then(|sp| Side::parse(sp.get(text)))
            .ok_or(DecodeError::Field {
                event: EV,
                field: "side",
            })?;
        let bbo = parse_bbo(text, e)?;
        let hash = hash_span.and_then(|sp| BookHash::parse_hex(sp.get(text)));
        match resolve(resolver, asset_text) {
            Some(asset) => out.records.push(Record {
                asset,
                exchange_ts: timestamp,
                received_ns,
                event: Event::Change {
                    side,
                    price,
                    size,
                    hash,
                    bbo,
                },
            }),
            None => stats.unresolved += 1,
        }
        Ok(())
    }

    fn owned_list(&self, text: &[u8], range: Option<ListRange>) -> Vec<String> {
        let r = range.unwrap_or_default();
        self.strings[r.start as usize..r.end as usize]
            .iter()
            .map(|sp| owned(sp.get(text)))
            .collect()
    }
}

enum Emitted {
    Known,
    Unknown,
}

#[derive(Clone, Copy)]
enum Kind {
    Book,
    PriceChange,
    TickSize,
    Trade,
    BestBidAsk,
    NewMarket,
    Resolved,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Book => "book",
            Kind::PriceChange => "price_change",
            Kind::TickSize => "tick_size_change",
            Kind::Trade => "last_trade_price",
            Kind::BestBidAsk => "best_bid_ask",
            Kind::NewMarket => "new_market",
            Kind::Resolved => "market_resolved",
        }
    }
}

fn s_err(s: &Scanner<'_>) -> SyntaxError {
    SyntaxError {
        offset: s.offset(),
        expected: "end of frame",
    }
}

fn scalar_span(text: &[u8], s: &mut Scanner<'_>) -> Result<Option<Span>, SyntaxError> {
    match s.peek() {
        Some(b'{') | Some(b'[') => {
            s.skip_value()?;
            Ok(None)
        }
        _ => Ok(match s.scalar()? {
            Scalar::Str(v) => Some(Span::of(text, v)),
            Scalar::Bare(b"null") => None,
            Scalar::Bare(v) => Some(Span::of(text, v)),
        }),
    }
}

fn required<'t>(
    text: &'t [u8],
    span: Option<Span>,
    event: &'static str,
    field: &'static str,
) -> Result<&'t [u8], DecodeError> {
    span.map(|sp| sp.get(text))
        .ok_or(DecodeError::Field { event, field })
}

fn required_span(
    span: Option<Span>,
    event: &'static str,
    field: &'static str,
) -> Result<Span, DecodeError> {
    span.ok_or(DecodeError::Field { event, field })
}

/// `Price::parse` of a span's text, through [`fast::decimal`] when that applies.
#[inline]
fn price_of(text: &[u8], sp: Span) -> Result<Price, NumberError> {
    // Above 1 (or above u32) falls back too, for `parse`'s OutOfRange error.
    match fast::decimal(text, sp.start as usize, sp.len as usize)
        .and_then(|raw| u32::try_from(raw).ok())
        .map(Price::from_raw)
    {
        Some(Ok(p)) => Ok(p),
        _ => Price::parse(sp.get(text)),
    }
}

/// `Size::parse` of a span's text, through [`fast::decimal`] when that applies.
#[inline]
fn size_of(text: &[u8], sp: Span) -> Result<Size, NumberError> {
    match fast::decimal(text, sp.start as usize, sp.len as usize) {
        Some(raw) => Ok(Size::from_raw(raw)),
        None => Size::parse(sp.get(text)),
    }
}

fn opt_price(
    text: &[u8],
    span: Option<Span>,
    field: &'static str,
) -> Result<Option<Price>, DecodeError> {
    match span.map(|sp| sp.get(text)) {
        None | Some(b"") => Ok(None),
        Some(t) => Price::parse(t)
            .map(Some)
            .map_err(|e| number_error(field, t, e)),
    }
}

fn parse_bbo(text: &[u8], e: &EntrySpans) -> Result<Bbo, DecodeError> {
    let one = |span: Option<Span>, field| -> Result<FieldUpdate<Price>, DecodeError> {
        match span {
            None => Ok(FieldUpdate::Keep),
            Some(sp) if sp.len == 0 => Ok(FieldUpdate::Clear),
            Some(sp) => price_of(text, sp)
                .map(FieldUpdate::Set)
                .map_err(|err| number_error(field, sp.get(text), err)),
        }
    };
    Ok(Bbo {
        bid: one(e.best_bid, "best_bid")?,
        ask: one(e.best_ask, "best_ask")?,
    })
}

/// `parse_u64` of a span's text, through [`fast::uint`] when that applies.
#[inline]
fn timestamp_of(text: &[u8], sp: Span) -> Option<u64> {
    fast::uint(text, sp.start as usize, sp.len as usize).or_else(|| parse_u64(sp.get(text)))
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in t {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    Some(v)
}

#[inline]
fn resolve<R: AssetResolver + ?Sized>(resolver: &mut R, token: &[u8]) -> Option<AssetId> {
    std::str::from_utf8(token)
        .ok()
        .and_then(|t| resolver.resolve(t))
}

fn owned(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Finds the asset ids a broken frame still names (`"asset_id":"…"` pairs).
/// Every `"market"` string value in a broken frame (failure path only).
fn salvage_markets(text: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\"market\"";
    let mut found: Vec<String> = Vec::new();
    let mut at = 0;
    while let Some(k) = memchr::memmem::find(text.get(at..).unwrap_or_default(), KEY) {
        at += k + KEY.len();
        let mut s = Scanner::new(text.get(at..).unwrap_or_default());
        if s.expect(b':', "':'").is_ok() {
            if let Ok(v) = s.string() {
                if let Ok(v) = std::str::from_utf8(v) {
                    if !v.is_empty() && !found.iter().any(|f| f == v) {
                        found.push(v.to_string());
                    }
                }
            }
        }
    }
    found
}

fn salvage_assets<R: AssetResolver + ?Sized>(text: &[u8], resolver: &mut R) -> Vec<AssetId> {
    const KEY: &[u8] = b"\"asset_id\"";
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(k) = memchr::memmem::find(text.get(at..).unwrap_or_default(), KEY) {
        at += k + KEY.len();
        let mut s = Scanner::new(text.get(at..).unwrap_or_default());
        if s.expect(b':', "':'").is_ok() {
            if let Ok(v) = s.string() {
                if let Some(id) = resolve(resolver, v) {
                    if !found.contains(&id) {
                        found.push(id);
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    //! The fast paths (`super::fast`, [`Decoder::scan_fixed`]) against the generic scan:
    //! every frame here is decoded twice, normally and with the fast paths off (the decoder
    //! as it was before them), and the two outputs must be identical, failures included.

    use super::*;
    use crate::market::{AssetInterner, BookHash};
    use crate::venue::fast::tests::with_fast_paths_off;

    const A1: &str =
        "76670567130917723816490572615540605537878462672464291990940067659127658071111";
    const A2: &str =
        "54179564009642723353355316176091991063553046330768303687769988635499280029688";
    const MARKET: &str = "0x285746de0e4f751fd4dc8f9dc2cecd0101ba9ad0096a43145ed9643b09514f01";

    /// A current-schema `price_change` in the venue's exact layout.
    fn price_change() -> String {
        format!(
            r#"{{"market":"{MARKET}","price_changes":[{{"asset_id":"{A1}","price":"0.301","size":"1000","side":"BUY","hash":"b7623b6417b3ae46dbe5d608a65474c9cec84ef9","best_bid":"0.301","best_ask":"0.397"}},{{"asset_id":"{A2}","price":"0.699","size":"45.83","side":"SELL","hash":"c0978ce48e525b35579b9fb4556a08538ebf265a","best_bid":"0.603","best_ask":""}}],"timestamp":"1790658674035","event_type":"price_change"}}"#
        )
    }

    /// An initial-dump `book` in the venue's exact layout.
    fn book_full() -> String {
        format!(
            r#"{{"market":"{MARKET}","asset_id":"{A1}","timestamp":"1790908667676","hash":"9e4f2ff8ba2be56177e8bdc8623dfaba4d18f5c8","bids":[{{"price":"0.01","size":"112689"}},{{"price":"0.02","size":"133687"}},{{"price":"0.03","size":"41666.32"}}],"asks":[{{"price":"0.99","size":"37677.02"}},{{"price":"0.98","size":"25298"}},{{"price":"0.97","size":"8960.670001"}}],"tick_size":"0.01","event_type":"book","last_trade_price":"0.140"}}"#
        )
    }

    /// A post-trade `book` in the venue's exact layout (one side empty).
    fn book_post_trade() -> String {
        format!(
            r#"{{"market":"{MARKET}","asset_id":"{A2}","bids":[{{"price":"0.5","size":"3149725.72"}},{{"price":"0.523","size":"0"}}],"asks":[],"hash":"5511583ad6f3eb4678e0a374e0cc2bd3b1975d07","timestamp":"1790658661234","event_type":"book"}}"#
        )
    }

    /// The initial dump: an array of books.
    fn dump() -> String {
        format!("[{},{}]", book_full(), book_post_trade())
    }

    fn canonical() -> Vec<String> {
        vec![price_change(), book_full(), book_post_trade(), dump()]
    }

    type Decoded = (
        FrameKind,
        FrameStats,
        Vec<Record>,
        Vec<Notice>,
        Vec<Failure>,
    );

    fn decode_with(text: &[u8]) -> Decoded {
        let mut ids = AssetInterner::new();
        ids.intern(A1);
        ids.intern(A2);
        let mut out = DecodeOutput::default();
        let (kind, stats) = Decoder::new().decode(text, 5, &mut ids, &mut out);
        (kind, stats, out.records, out.notices, out.failures)
    }

    /// Decodes `text` both ways, asserts equal output, returns it.
    fn both(text: &[u8]) -> Decoded {
        let fast = decode_with(text);
        let generic = with_fast_paths_off(|| decode_with(text));
        assert_eq!(fast, generic, "{}", String::from_utf8_lossy(text));
        fast
    }

    /// A decoder that has seen `text` takes the whole-message fast path for it.
    fn takes_fast_path(text: &str) -> bool {
        Decoder::new().scan_fixed(text.as_bytes(), 0).is_some()
    }

    #[test]
    fn canonical_frames_take_the_fast_path() {
        for t in [price_change(), book_full(), book_post_trade()] {
            assert!(takes_fast_path(&t), "{t}");
            let (kind, stats, records, _, failures) = both(t.as_bytes());
            assert_eq!(kind, FrameKind::Json);
            assert!(failures.is_empty(), "{failures:?}");
            assert_eq!(stats.messages, 1);
            assert!(!records.is_empty());
        }
        let (_, stats, records, _, _) = both(dump().as_bytes());
        assert_eq!((stats.messages, records.len()), (2, 8 + 4));
        // Spot-check the values the fast parsers produced.
        let (_, _, records, _, _) = both(price_change().as_bytes());
        assert_eq!(records.len(), 2);
        let Event::Change {
            side,
            price,
            size,
            hash,
            bbo,
        } = records[1].event
        else {
            panic!("{:?}", records[1]);
        };
        assert_eq!(side, Side::Ask);
        assert_eq!((price.raw(), size.raw()), (699_000, 45_830_000));
        assert_eq!(
            hash,
            BookHash::parse_hex(b"c0978ce48e525b35579b9fb4556a08538ebf265a")
        );
        assert_eq!(bbo.bid, FieldUpdate::Set(Price::from_raw(603_000).unwrap()));
        assert_eq!(bbo.ask, FieldUpdate::Clear);
        assert_eq!(records[1].exchange_ts, 1_790_658_674_035);
    }

    /// The same messages written differently: key order, whitespace, extra keys, escapes.
    /// Each variant leaves the fast path (at least in part) and must give exactly the
    /// records of the canonical form.
    #[test]
    fn variants_fall_back_to_identical_records() {
        let pc = price_change();
        let full = book_full();
        let post = book_post_trade();
        let cases: Vec<(&String, String)> = vec![
            // Top-level keys permuted.
            (
                &pc,
                pc.replacen(
                    &format!(r#"{{"market":"{MARKET}","#),
                    r#"{"event_type":"price_change","#,
                    1,
                )
                .replacen(
                    r#","event_type":"price_change"}"#,
                    &format!(r#","market":"{MARKET}"}}"#),
                    1,
                ),
            ),
            // Entry keys in the docs' order (side before size).
            (
                &pc,
                pc.replacen(
                    r#""size":"1000","side":"BUY""#,
                    r#""side":"BUY","size":"1000""#,
                    1,
                ),
            ),
            // An unknown key inside an entry, and one at the top level with an escape.
            (
                &pc,
                pc.replacen(r#""side":"BUY","#, r#""side":"BUY","fee":1.5,"#, 1),
            ),
            (
                &pc,
                pc.replacen(r#"{"market""#, r#"{"note":"a\"b\\","market""#, 1),
            ),
            // Whitespace (Python's json.dumps spacing, as in the nautilus captures).
            (
                &pc,
                pc.replace(r#"",""#, r#"", ""#).replace(r#"":""#, r#"": ""#),
            ),
            (&pc, format!("  {pc}\n")),
            // Level keys swapped, a level with an extra key, a spaced level.
            (
                &full,
                full.replacen(
                    r#"{"price":"0.02","size":"133687"}"#,
                    r#"{"size":"133687","price":"0.02"}"#,
                    1,
                ),
            ),
            (
                &full,
                full.replacen(
                    r#""size":"25298"}"#,
                    r#""size":"25298","x":[1,{"y":null}]}"#,
                    1,
                ),
            ),
            (
                &full,
                full.replacen(
                    r#"{"price":"0.99","size":"37677.02"}"#,
                    r#"{ "price": "0.99", "size": "37677.02" }"#,
                    1,
                ),
            ),
            // Book top-level keys in the docs' order.
            (
                &post,
                format!(
                    r#"{{"event_type":"book","asset_id":"{A2}","market":"{MARKET}","bids":[{{"price":"0.5","size":"3149725.72"}},{{"price":"0.523","size":"0"}}],"asks":[],"timestamp":"1790658661234","hash":"5511583ad6f3eb4678e0a374e0cc2bd3b1975d07"}}"#
                ),
            ),
        ];
        // Same layout, numbers written differently (leading '.', trailing '.', trailing
        // zeros, a long integer): the scan stays fast; the numbers may fall back.
        let numbers: Vec<(&String, String)> = vec![
            (
                &post,
                post.replacen(r#""price":"0.5""#, r#""price":".5""#, 1),
            ),
            (&post, post.replacen(r#""size":"0"}"#, r#""size":"0."}"#, 1)),
            (
                &post,
                post.replacen(r#""price":"0.5""#, r#""price":"0.500000""#, 1),
            ),
            (
                &post,
                post.replacen(r#""size":"0"}"#, r#""size":"000000000000.0"}"#, 1),
            ),
        ];
        for (_, variant) in &cases {
            assert!(!takes_fast_path(variant), "{variant}");
        }
        for (_, variant) in &numbers {
            assert!(takes_fast_path(variant), "{variant}");
        }
        for (canon, variant) in cases.iter().chain(&numbers) {
            assert_ne!(*canon, variant, "the replacement did not apply");
            let want = both(canon.as_bytes());
            let got = both(variant.as_bytes());
            assert!(got.4.is_empty(), "{variant}: {:?}", got.4);
            assert_eq!(got.2, want.2, "{variant}");
            assert_eq!(got.1, want.1, "{variant}");
        }
    }

    /// A frame cut off anywhere (a fast-path object included) fails exactly as the generic
    /// scan fails: same error, same offset, same salvaged assets.
    #[test]
    fn truncated_frames_fail_the_same_way() {
        for t in canonical() {
            for end in 0..t.len() {
                both(&t.as_bytes()[..end]);
            }
        }
        // One explicit case: cut inside the second entry's `price` value.
        let pc = price_change();
        let cut = pc.find(r#""price":"0.699"#).unwrap() + 12;
        let (_, stats, records, _, failures) = both(&pc.as_bytes()[..cut]);
        assert!(records.is_empty());
        assert_eq!(stats.failed, 1);
        assert_eq!(failures.len(), 1);
        assert!(
            matches!(failures[0].error, DecodeError::Syntax { offset, .. } if offset == cut),
            "{:?}",
            failures[0]
        );
    }

    /// Every single-byte change of the canonical frames: same output both ways.
    #[test]
    fn mutated_frames_agree() {
        for t in canonical() {
            let bytes = t.as_bytes();
            for pos in 0..bytes.len() {
                for c in [
                    b'"', b'\\', b' ', b'}', b']', b',', b'x', b'0', b'.', b'-', 0x80,
                ] {
                    if bytes[pos] == c {
                        continue;
                    }
                    let mut m = bytes.to_vec();
                    m[pos] = c;
                    both(&m);
                }
            }
        }
    }

    /// The captured fixtures (`tests/data/polymarket/`), as captured and compacted.
    #[test]
    fn shared_fixtures_agree() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fixture folder {}: {e}", dir.display()));
        let mut seen = 0;
        for entry in entries {
            let entry = entry.expect("fixture folder entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.contains("ws_") || !name.ends_with(".json") {
                continue;
            }
            seen += 1;
            let text = std::fs::read(entry.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
            both(&text);
            both(&compact(&text));
            // The nautilus burst fixture holds one message per array element; decode each
            // compacted element alone too (the venue sends them as separate frames).
            for line in text.split(|&b| b == b'\n') {
                both(line);
            }
        }
        assert!(
            seen >= 15,
            "expected the market-channel captures in {}, found {seen}",
            dir.display()
        );
    }

    #[test]
    fn timestamps_agree_with_parse_u64() {
        for t in [
            &b"1790658674035"[..],
            b"0",
            b"1",
            b"12345678",
            b"123456789",
            b"1234567890123456",
            b"12345678901234567",
            b"18446744073709551615",
            b"",
            b"12a4",
            b"1234567812345x78",
            b"-1",
        ] {
            let mut frame = b"{\"timestamp\":\"".to_vec();
            frame.extend_from_slice(t);
            let start = frame.len() - t.len();
            frame.extend_from_slice(b"\"}");
            let sp = Span {
                start: start as u32,
                len: t.len() as u32,
            };
            assert_eq!(timestamp_of(&frame, sp), parse_u64(t), "{t:?}");
            assert_eq!(timestamp_of(&frame[..start + t.len()], sp), parse_u64(t));
        }
    }

    /// Removes JSON whitespace outside strings.
    fn compact(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let (mut in_str, mut esc) = (false, false);
        for &c in text {
            if in_str {
                out.push(c);
                if esc {
                    esc = false;
                } else if c == b'\\' {
                    esc = true;
                } else if c == b'"' {
                    in_str = false;
                }
            } else if !c.is_ascii_whitespace() {
                in_str = c == b'"';
                out.push(c);
            }
        }
        out
    }
}
