//! Discovery against a small fake Gamma on loopback: keyset paging, offsets fallback, retries.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use polypy::discovery::{GammaClient, RetryPolicy};

fn market(i: usize) -> serde_json::Value {
    serde_json::json!({
        "id": i.to_string(),
        "conditionId": format!("0x{i:064x}"),
        "question": format!("Q{i}?"),
        "clobTokenIds": format!("[\"{}1\", \"{}2\"]", 1000 + i, 1000 + i),
        "outcomes": "[\"Yes\", \"No\"]",
        "endDate": "2030-01-01T00:00:00.5Z",
        "active": true, "closed": false, "enableOrderBook": true, "acceptingOrders": true,
        "negRisk": i % 2 == 0, "orderPriceMinTickSize": 0.01, "orderMinSize": 5
    })
}

/// Serves `total` markets: keyset (unless disabled) and offsets; the first `fail_first`
/// calls get a 429 or 500.
fn fake_gamma(
    total: usize,
    keyset: bool,
    fail_first: usize,
) -> (String, Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let t = std::thread::spawn(move || {
        while let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(500)) {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let url = req.url().to_string();
            let q = |k: &str| {
                url.split(['?', '&'])
                    .find_map(|p| p.strip_prefix(&format!("{k}=")).map(str::to_string))
            };
            let (status, body) = if n < fail_first {
                (if n % 2 == 0 { 429 } else { 500 }, "{}".to_string())
            } else if url.starts_with("/markets/keyset") {
                if !keyset {
                    (404, "{}".into())
                } else {
                    let start: usize = q("after_cursor").map(|c| c.parse().unwrap()).unwrap_or(0);
                    let end = (start + 100).min(total);
                    let page: Vec<_> = (start..end).map(market).collect();
                    let mut v = serde_json::json!({ "markets": page });
                    if end < total {
                        v["next_cursor"] = serde_json::json!(end.to_string());
                    }
                    (200, v.to_string())
                }
            } else if url.starts_with("/markets") {
                let offset: usize = q("offset").unwrap().parse().unwrap();
                if offset > 2000 {
                    (422, r#"{"type":"validation error","error":"offset too large, use /markets/keyset for deeper pagination"}"#.into())
                } else {
                    let end = (offset + 100).min(total);
                    (
                        200,
                        serde_json::Value::Array((offset..end).map(market).collect()).to_string(),
                    )
                }
            } else {
                (404, "{}".into())
            };
            let _ = req.respond(tiny_http::Response::from_string(body).with_status_code(status));
        }
    });
    (url, calls, t)
}

fn client(url: &str) -> GammaClient {
    GammaClient::new(
        url,
        Duration::from_secs(2),
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
        },
    )
}

#[test]
fn keyset_scan_reads_every_page() {
    let (url, calls, t) = fake_gamma(3000, true, 0);
    let scan = client(&url).scan(&|| false).unwrap();
    assert_eq!(scan.markets.len(), 3000);
    assert_eq!(scan.pages, 30);
    assert!(!scan.used_offsets);
    assert_eq!(scan.markets[2999].tokens[1].0, "39992");
    assert!(scan.markets[0].neg_risk && !scan.markets[1].neg_risk);
    assert_eq!(calls.load(Ordering::SeqCst), 30);
    t.join().unwrap();
}

#[test]
fn survives_429_and_500_with_backoff() {
    let (url, _calls, t) = fake_gamma(250, true, 4);
    let mut c = client(&url);
    let scan = c.scan(&|| false).unwrap();
    assert_eq!(scan.markets.len(), 250);
    assert_eq!(c.retries, 4);
    t.join().unwrap();
}

#[test]
fn falls_back_to_offsets_until_the_offset_limit() {
    let (url, _calls, t) = fake_gamma(2500, false, 0);
    let scan = client(&url).scan(&|| false).unwrap();
    assert!(scan.used_offsets);
    // Offsets stop at the venue's limit: 0..=2000 in pages of 100.
    assert_eq!(scan.markets.len(), 2100);
    t.join().unwrap();
}

#[test]
fn gives_up_after_the_retries() {
    let (url, _calls, t) = fake_gamma(10, true, 100);
    let e = client(&url).scan(&|| false).unwrap_err();
    assert!(e.to_string().contains("after 5 attempts"), "{e}");
    drop(t);
}
