//! The Gamma fixtures through `venue::gamma`.

#![allow(clippy::unwrap_used, reason = "test")]

use polypy::venue::gamma::{GammaMarket, parse_market};

fn market(name: &str) -> GammaMarket {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
    parse_market(&v).unwrap()
}

// TC0: a real 5-minute BTC market, double-encoded tokens and outcomes.
#[test]
fn real_market_fields() {
    let m = market("nautilus_trader__test_data__gamma_market.json");
    assert_eq!(
        m.condition_id,
        "0x78443f961b9a65869dcb39359de9960165c7e5cbad0904eac7f29cd77872a63b"
    );
    assert_eq!(m.tokens.len(), 2);
    assert_eq!(
        m.tokens[0].0,
        "104239898038807136052399800151408521467737075933964991162589336683346093173875"
    );
    assert_eq!(
        (m.tokens[0].1.as_str(), m.tokens[1].1.as_str()),
        ("Up", "Down")
    );
    assert_eq!(m.end_ms, Some(1_773_307_500_000));
    assert_eq!(m.tick_size.map(|t| t.to_text()), Some("0.01".into()));
    assert_eq!(m.min_order_size.map(|s| s.to_text()), Some("5".into()));
    assert!(m.enable_order_book && !m.neg_risk);
}

// TC1: closed markets (accepting orders or not) are not tradable; sports market dates.
#[test]
fn closed_and_sports_markets() {
    for name in [
        "nautilus_trader__test_data__gamma_market_closed_binary_accepting_true.json",
        "nautilus_trader__test_data__gamma_market_closed_binary_accepting_false.json",
    ] {
        let m = market(name);
        assert!(m.closed && !m.is_tradable(), "{name}");
    }
    let m = market("nautilus_trader__test_data__gamma_market_sports_market_money_line.json");
    assert_eq!(m.tick_size.map(|t| t.to_text()), Some("0.001".into()));
    assert!(m.end_ms.is_some());
}

// TC2: an event nests full market objects.
#[test]
fn event_nested_markets() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("nautilus_trader__test_data__gamma_event.json")).unwrap(),
    )
    .unwrap();
    let markets = v[0]["markets"].as_array().unwrap();
    assert!(!markets.is_empty());
    for m in markets {
        let m = parse_market(m).unwrap();
        assert!(!m.tokens.is_empty());
    }
}
