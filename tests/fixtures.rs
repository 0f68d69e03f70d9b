//! Every captured fixture in `tests/data/polymarket/` through the decoder and books.
//!
//! TC numbers name the fixture cases; the hash cases prove the server-compatible hash.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use polypy::market::{AssetInterner, Event, FieldUpdate, Price, Record, Side, Size};
use polypy::orderbook::{BookMeta, CheckContext, CheckMode, Effect, HashVerdict, OrderBook};
use polypy::venue::{DecodeOutput, Decoder, FrameKind, FrameStats, Notice};

fn fixture(name: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket");
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode(text: &str) -> (FrameKind, FrameStats, DecodeOutput, AssetInterner) {
    let mut ids = AssetInterner::new();
    let mut out = DecodeOutput::default();
    let (kind, stats) = Decoder::new().decode(text.as_bytes(), 7, &mut ids, &mut out);
    (kind, stats, out, ids)
}

/// Applies records to per-asset books, creating books with the given meta defaults.
fn apply_all(
    records: &[Record],
    ids: &AssetInterner,
    market: &str,
    neg_risk: bool,
    ctx: &mut CheckContext,
) -> (Vec<OrderBook>, Vec<polypy::orderbook::Step>) {
    let mut books: Vec<OrderBook> = (0..ids.len())
        .map(|i| {
            let mut meta =
                BookMeta::new(ids.name(polypy::market::AssetId(i as u32)).unwrap(), market);
            meta.neg_risk = neg_risk;
            OrderBook::new(meta)
        })
        .collect();
    let steps = records
        .iter()
        .map(|r| books[r.asset.index()].apply(r, ctx))
        .collect();
    (books, steps)
}

type Levels = Vec<(String, String)>;

fn level_texts(book: &OrderBook) -> (Levels, Levels) {
    let f = |l: polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
    (
        book.bids().wire_order().iter().copied().map(f).collect(),
        book.asks().wire_order().iter().copied().map(f).collect(),
    )
}

fn json_levels(v: &serde_json::Value) -> Levels {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["price"].as_str().unwrap().to_string(),
                l["size"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// TC0: the real crossing burst: initial book, 49 price_changes, post-trade book.
#[test]
fn crossing_burst_reproduces_final_book_and_hashes() {
    let text = fixture("nautilus_trader__test_data__ws_market_price_change_crossing_burst.json");
    let msgs: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut ids = AssetInterner::new();
    let mut decoder = Decoder::new();
    let mut ctx = CheckContext::new(CheckMode::EveryEntry);
    let mut books: Vec<OrderBook> = Vec::new();
    let (mut entry_ok, mut entry_bad, mut settled_bad, mut inferred) = (0, 0, 0, 0);
    let mut snapshot_verdicts = Vec::new();
    for m in &msgs {
        // One message per frame, as the venue sends them.
        let frame = serde_json::to_string(m).unwrap();
        let mut out = DecodeOutput::default();
        let (_, stats) = decoder.decode(frame.as_bytes(), 0, &mut ids, &mut out);
        assert_eq!(stats.failed, 0);
        while books.len() < ids.len() {
            let name = ids
                .name(polypy::market::AssetId(books.len() as u32))
                .unwrap()
                .to_string();
            books.push(OrderBook::new(BookMeta::new(
                &name,
                m["market"].as_str().unwrap(),
            )));
        }
        for r in &out.records {
            let step = books[r.asset.index()].apply(r, &mut ctx);
            match step.entry_hash {
                Some(true) => entry_ok += 1,
                Some(false) => entry_bad += 1,
                None => {}
            }
            if let Some(v) = step.settled {
                if !v.is_ok() {
                    settled_bad += 1;
                }
                if v.hash == HashVerdict::MatchedInferredTrade {
                    inferred += 1;
                }
            }
            if let Effect::SnapshotApplied { hash } = step.effect {
                snapshot_verdicts.push(hash);
            }
        }
    }
    let yes = ids
        .get("76670567130917723816490572615540605537878462672464291990940067659127658071111")
        .unwrap();
    let yes_book = &books[yes.index()];
    // Only the YES token had a snapshot: all 49 of its entries are checkable.
    assert_eq!(entry_ok + entry_bad, 49);
    assert_eq!(
        entry_ok, 47,
        "47 of 49 per-entry hashes match (docs/venue-protocol.md §4)"
    );
    assert_eq!(
        entry_bad, 2,
        "the 2 mid-trade entries carry the post-trade hash"
    );
    assert_eq!(settled_bad, 0, "no settled group fails");
    assert_eq!(
        inferred, 1,
        "the trade group's hash needs the trade price 0.301"
    );
    assert_eq!(
        snapshot_verdicts,
        vec![HashVerdict::Matched, HashVerdict::Matched]
    );
    assert!(yes_book.is_trusted());
    let last = msgs.last().unwrap();
    let (bids, asks) = level_texts(yes_book);
    assert_eq!(bids, json_levels(&last["bids"]));
    assert_eq!(asks, json_levels(&last["asks"]));
    assert_eq!(
        ctx.hasher.hex(yes_book, 1790658827000),
        last["hash"].as_str().unwrap()
    );
    assert_eq!(yes_book.last_trade().unwrap().to_text(), "0.301");
    // The NO token never got a snapshot: its entries were skipped, never applied.
    let no = ids
        .get("54179564009642723353355316176091991063553046330768303687769988635499280029688")
        .unwrap();
    assert!(!books[no.index()].is_trusted());
    assert_eq!(books[no.index()].update_count(), 0);
}

// TC1: a real WS initial book with tick_size and last_trade_price ("0.920").
#[test]
fn captured_ws_snapshot_hash_matches() {
    let text = fixture("nautilus_trader__test_data__ws_book_snapshot_captured.json");
    let (kind, stats, out, ids) = decode(&text);
    assert_eq!(
        (kind, stats.messages, stats.failed),
        (FrameKind::Json, 1, 0)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ctx = CheckContext::new(CheckMode::Settled);
    let (books, steps) = apply_all(
        &out.records,
        &ids,
        v["market"].as_str().unwrap(),
        false,
        &mut ctx,
    );
    assert_eq!(
        steps.last().unwrap().effect,
        Effect::SnapshotApplied {
            hash: HashVerdict::Matched
        }
    );
    assert_eq!(
        ctx.hasher
            .hex(&books[0], v["timestamp"].as_str().unwrap().parse().unwrap()),
        v["hash"].as_str().unwrap()
    );
    assert_eq!(books[0].bids().len(), 7);
    assert_eq!(books[0].asks().len(), 57);
    assert_eq!(books[0].last_trade().unwrap().to_text(), "0.920");
}

// TC2: a real REST /book response with empty asks, neg_risk true, last_trade_price "".
#[test]
fn rest_book_with_empty_ask_hash_matches() {
    let text = fixture("nautilus_trader__test_data__clob_book_response_empty_ask.json");
    let (_, stats, out, ids) = decode(&text);
    assert_eq!(stats.messages, 1);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ctx = CheckContext::new(CheckMode::Settled);
    let (books, steps) = apply_all(
        &out.records,
        &ids,
        v["market"].as_str().unwrap(),
        true,
        &mut ctx,
    );
    assert_eq!(
        steps.last().unwrap().effect,
        Effect::SnapshotApplied {
            hash: HashVerdict::Matched
        }
    );
    assert!(books[0].asks().is_empty());
    assert_eq!(books[0].last_trade(), None);
}

// TC3: the live initial frame is an array of books; the second is empty with a zero hash.
#[test]
fn live_initial_frame_is_an_array_of_books() {
    let (_, stats, out, ids) = decode(&fixture(
        "marcasite__ws_market_rs__LIVE_INITIAL_FRAME_2026-10-02_trimmed.json",
    ));
    assert_eq!((stats.messages, stats.failed, ids.len()), (2, 0, 2));
    assert_eq!(out.records.len(), 2 + 6 + 2);
    match out.records[0].event {
        Event::BookBegin {
            bids,
            asks,
            tick_size,
            last_trade,
        } => {
            assert_eq!((bids, asks), (3, 3));
            assert_eq!(tick_size, Some(Price::parse(b"0.01").unwrap()));
            match last_trade {
                FieldUpdate::Set(q) => assert_eq!(q.to_text(), "0.140"),
                other => panic!("{other:?}"),
            }
        }
        ref other => panic!("{other:?}"),
    }
    assert!(matches!(
        out.records[8].event,
        Event::BookBegin {
            bids: 0,
            asks: 0,
            last_trade: FieldUpdate::Clear,
            ..
        }
    ));
    assert_eq!(out.records[0].exchange_ts, 1790908667676);
    assert_eq!(out.records[0].received_ns, 7);
}

// TC4: the live new_market message becomes a notice with aligned tokens and outcomes.
#[test]
fn live_new_market_becomes_a_notice() {
    let (_, stats, out, _) = decode(&fixture(
        "marcasite__ws_market_rs__live_new_market_2026-10-02_trimmed.json",
    ));
    assert_eq!((stats.messages, stats.records), (1, 0));
    match &out.notices[..] {
        [
            Notice::NewMarket {
                market,
                assets_ids,
                outcomes,
                tick_size,
                id,
                ..
            },
        ] => {
            assert_eq!(
                market,
                "0x9691dbea9f392aea399936926ff9d3013de1550381454b9579124df96168f54a"
            );
            assert_eq!(id, "5196322");
            assert_eq!(assets_ids.len(), 2);
            assert_eq!(outcomes, &["Up", "Down"]);
            assert_eq!(*tick_size, Some(Price::parse(b"0.01").unwrap()));
        }
        other => panic!("{other:?}"),
    }
}

// TC5: the docs' new_market (with extra live fields) and market_resolved.
#[test]
fn new_market_and_resolved_docs_examples() {
    let (_, _, out, _) = decode(&fixture(
        "nautilus_trader__test_data__ws_market_new_market_msg.json",
    ));
    assert!(
        matches!(&out.notices[..], [Notice::NewMarket { assets_ids, .. }] if assets_ids.len() == 2)
    );
    let (_, _, out, _) = decode(&fixture(
        "nautilus_trader__test_data__ws_market_resolved_msg.json",
    ));
    match &out.notices[..] {
        [
            Notice::MarketResolved {
                winning_asset_id,
                assets_ids,
                ..
            },
        ] => {
            assert_eq!(winning_asset_id, &assets_ids[0]);
        }
        other => panic!("{other:?}"),
    }
}

// TC6: real 2024 WS book without tick_size; real 2024 REST book; synthetic books.
#[test]
fn other_books_decode_with_all_levels() {
    for (name, bids, asks) in [
        ("nautilus_trader__py_ws_messages__book.json", 76, 86),
        (
            "nautilus_trader__py_http_responses__book.json",
            5,
            usize::MAX,
        ),
        ("nautilus_trader__test_data__clob_book_response.json", 3, 3),
        ("nautilus_trader__test_data__ws_book_snapshot.json", 3, 3),
        ("nautilus_trader__test_data__ws_market_book_msg.json", 2, 2),
    ] {
        let text = fixture(name);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let (_, stats, out, ids) = decode(&text);
        assert_eq!((stats.messages, stats.failed), (1, 0), "{name}");
        let mut ctx = CheckContext::new(CheckMode::Off);
        let (books, _) = apply_all(&out.records, &ids, "m", false, &mut ctx);
        assert!(books[0].is_trusted(), "{name}");
        assert_eq!(
            books[0].bids().len(),
            v["bids"].as_array().unwrap().len(),
            "{name}"
        );
        assert_eq!(
            books[0].asks().len(),
            v["asks"].as_array().unwrap().len(),
            "{name}"
        );
        if bids != usize::MAX {
            assert_eq!(books[0].bids().len(), bids, "{name}");
        }
        if asks != usize::MAX {
            assert_eq!(books[0].asks().len(), asks, "{name}");
        }
        // Best bid is the highest bid whatever the wire order.
        let max_bid = v["bids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| Price::parse(l["price"].as_str().unwrap().as_bytes()).unwrap())
            .max();
        assert_eq!(books[0].best_bid().map(|l| l.price), max_bid, "{name}");
    }
}

// TC7: price_change in the current form (with and without event_type), legacy #1 and quotes.
#[test]
fn price_changes_in_every_form() {
    // Current form, docs-like synthetic: the placeholder hash is not verifiable.
    let (_, stats, out, _) = decode(&fixture(
        "nautilus_trader__test_data__ws_market_price_change_msg.json",
    ));
    assert_eq!((stats.messages, out.records.len()), (1, 1));
    match out.records[0].event {
        Event::Change {
            side,
            price,
            size,
            hash,
            bbo,
        } => {
            assert_eq!(side, Side::Bid);
            assert_eq!(price, Price::parse(b"0.51").unwrap());
            assert_eq!(size, Size::parse(b"150").unwrap());
            assert_eq!(hash, None);
            assert_eq!(bbo.bid, FieldUpdate::Set(Price::parse(b"0.51").unwrap()));
        }
        ref other => panic!("{other:?}"),
    }
    // Current form without event_type; hex hashes are parsed.
    let (_, stats, out, _) = decode(&fixture(
        "nautilus_trader__py_ws_messages__price_change_v2.json",
    ));
    assert_eq!(stats.messages, 1);
    assert!(out.records.len() >= 2);
    assert!(
        out.records
            .iter()
            .all(|r| matches!(r.event, Event::Change { hash: Some(_), .. }))
    );
    // Legacy #1: one level per message, fields at the top level.
    let (_, stats, out, _) = decode(&fixture(
        "nautilus_trader__py_ws_messages__price_change.json",
    ));
    assert_eq!(stats.messages, 1);
    assert!(matches!(
        out.records[..],
        [Record {
            event: Event::Change {
                side: Side::Ask,
                hash: Some(_),
                ..
            },
            exchange_ts: 1723967931411,
            ..
        }]
    ));
    // Quotes capture: current form, no event_type.
    let (_, stats, out, _) = decode(&fixture("nautilus_trader__test_data__ws_quotes.json"));
    assert_eq!((stats.messages, stats.failed), (1, 0));
    assert!(!out.records.is_empty());
}

// TC8: legacy #2 price_change: asset and hash at the top level, hash on the last entry.
#[test]
fn legacy_changes_form() {
    let frame = r#"{"asset_id":"7132","changes":[{"price":"0.4","side":"SELL","size":"3300"},{"price":"0.5","side":"BUY","size":"0"}],"event_type":"price_change","market":"0x5f","timestamp":"1729084877448","hash":"3cd4d61e042c81560c9037ece0c61f3b1a8fbbdd"}"#;
    let (_, stats, out, _) = decode(frame);
    assert_eq!((stats.messages, out.records.len()), (1, 2));
    assert!(matches!(
        out.records[0].event,
        Event::Change {
            hash: None,
            side: Side::Ask,
            ..
        }
    ));
    assert!(matches!(
        out.records[1].event,
        Event::Change {
            hash: Some(_),
            size: Size::ZERO,
            ..
        }
    ));
}

// TC9: tick_size_change (real and synthetic), last_trade_price (real and synthetic), best_bid_ask.
#[test]
fn tick_trade_and_quote_messages() {
    for name in [
        "nautilus_trader__py_ws_messages__tick_size_change.json",
        "nautilus_trader__test_data__ws_market_tick_size_msg.json",
    ] {
        let (_, _, out, _) = decode(&fixture(name));
        assert!(
            matches!(
                out.records[..],
                [Record {
                    event: Event::TickSize { .. },
                    ..
                }]
            ),
            "{name}"
        );
    }
    let (_, _, out, _) = decode(&fixture(
        "nautilus_trader__py_ws_messages__tick_size_change.json",
    ));
    assert_eq!(
        out.records[0].event,
        Event::TickSize {
            old: Price::parse(b"0.01").unwrap(),
            new: Price::parse(b"0.001").unwrap()
        }
    );
    for (name, price) in [
        (
            "nautilus_trader__py_ws_messages__last_trade_price.json",
            "0.491",
        ),
        (
            "nautilus_trader__test_data__ws_market_last_trade_msg.json",
            "0.51",
        ),
    ] {
        let (_, _, out, _) = decode(&fixture(name));
        match out.records[..] {
            [
                Record {
                    event: Event::Trade { price: p, .. },
                    ..
                },
            ] => assert_eq!(p.to_text(), price),
            ref other => panic!("{name}: {other:?}"),
        }
    }
    let (_, _, out, _) = decode(&fixture(
        "nautilus_trader__test_data__ws_market_best_bid_ask_msg.json",
    ));
    match out.records[..] {
        [
            Record {
                event: Event::BestBidAsk { bbo },
                ..
            },
        ] => {
            assert_eq!(bbo.bid, FieldUpdate::Set(Price::parse(b"0.73").unwrap()));
            assert_eq!(bbo.ask, FieldUpdate::Set(Price::parse(b"0.77").unwrap()));
        }
        ref other => panic!("{other:?}"),
    }
}

// TC10: an unknown event_type inside an array is skipped and counted; the rest decodes.
#[test]
fn unknown_event_type_is_skipped_per_element() {
    let (_, stats, out, _) = decode(&fixture(
        "nautilus_trader__test_data__ws_market_mixed_known_unknown.json",
    ));
    assert_eq!((stats.messages, stats.unknown, stats.failed), (2, 1, 0));
    assert!(matches!(out.records[0].event, Event::Change { .. }));
    assert!(matches!(out.records[1].event, Event::Trade { .. }));
}

// TC11: keep-alive texts and bare arrays.
#[test]
fn keepalive_texts_and_empty_array() {
    assert_eq!(decode("PONG").0, FrameKind::Pong);
    assert_eq!(decode("NO NEW ASSETS").0, FrameKind::NoNewAssets);
    let (kind, stats, out, _) = decode("[]");
    assert_eq!(
        (kind, stats, out.records.len()),
        (FrameKind::Json, FrameStats::default(), 0)
    );
}

// TC12: Gamma payloads are not market-channel messages: skipped as unknown, never failing.
// (They are parsed by the discovery client.)
#[test]
fn gamma_payloads_are_not_channel_messages() {
    for name in [
        "nautilus_trader__test_data__gamma_market.json",
        "nautilus_trader__test_data__gamma_event.json",
        "nautilus_trader__test_data__gamma_market_closed_binary_accepting_false.json",
        "nautilus_trader__test_data__gamma_market_closed_binary_accepting_true.json",
        "nautilus_trader__test_data__gamma_market_sports_market_money_line.json",
    ] {
        let (_, stats, out, _) = decode(&fixture(name));
        assert_eq!(
            (
                stats.messages,
                stats.unknown,
                stats.failed,
                out.records.len()
            ),
            (0, 1, 0, 0),
            "{name}"
        );
    }
}

// TC13: a malformed number fails only its message and names its asset; a broken frame emits
// nothing and names every asset it still contains.
#[test]
fn failures_name_the_affected_assets() {
    let frame = r#"[{"event_type":"last_trade_price","asset_id":"A1","price":"0.5","size":"1","side":"BUY","timestamp":"1"},
                    {"event_type":"price_change","market":"0x1","price_changes":[{"asset_id":"A2","price":"abc","size":"1","side":"BUY"}],"timestamp":"2"}]"#;
    let (_, stats, out, ids) = decode(frame);
    assert_eq!((stats.messages, stats.failed, out.records.len()), (1, 1, 1));
    assert_eq!(out.failures[0].assets, vec![ids.get("A2").unwrap()]);
    assert!(
        out.failures[0].error.to_string().contains("price"),
        "{}",
        out.failures[0].error
    );
    assert!(out.failures[0].error.to_string().contains("abc"));

    let broken = r#"[{"event_type":"book","asset_id":"B1","bids":[],"asks":[]},{"event_type":"price_change","market":"0x1","price_changes":[{"asset_id":"B2","price":"0.5""#;
    let (_, stats, out, ids) = decode(broken);
    assert_eq!((stats.failed, out.records.len()), (1, 0));
    let mut named = out.failures[0].assets.clone();
    named.sort();
    assert_eq!(named, vec![ids.get("B1").unwrap(), ids.get("B2").unwrap()]);

    let (_, stats, out, _) = decode("\u{1}\u{2}garbage");
    assert_eq!((stats.failed, out.failures[0].assets.len()), (1, 0));
}
