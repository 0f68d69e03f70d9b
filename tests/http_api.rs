//! The HTTP server against a fake engine: routes, status codes, shapes, idle clients.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use polypy::http::{ApiSource, BookAnswer, Components, Health, HttpServer};

#[derive(Default)]
struct Fake {
    sick: AtomicBool,
}

impl ApiSource for Fake {
    fn health(&self) -> Health {
        let ok = !self.sick.load(Ordering::Relaxed);
        Health {
            healthy: ok,
            timestamp: "2026-11-22T00:00:00Z".into(),
            components: Components {
                workers: ok,
                ..Components::default()
            },
            replay: None,
        }
    }
    fn ready(&self) -> Result<(), String> {
        Err("first discovery not finished".into())
    }
    fn stats(&self) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({"running": true}))
    }
    fn metrics(&self) -> Result<String, String> {
        Ok("# EOF\n".into())
    }
    fn markets(&self) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!([]))
    }
    fn book(&self, asset_id: &str, depth: usize) -> Result<Option<BookAnswer>, String> {
        Ok((asset_id == "42").then(|| BookAnswer {
            asset_id: asset_id.into(),
            bids: vec![(500_000, 1_000_000); depth.min(3)],
            ..BookAnswer::default()
        }))
    }
}

fn request(addr: std::net::SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn routes_status_codes_and_shapes() {
    let fake = Arc::new(Fake::default());
    let server = HttpServer::start("127.0.0.1:0", Arc::clone(&fake)).unwrap();
    let addr = server.addr();

    let (s, body) = get(addr, "/health");
    assert_eq!(s, 200);
    let h: Health = serde_json::from_str(&body).unwrap();
    assert!(h.healthy && h.components.workers);
    fake.sick.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/health").0, 503);

    let (s, body) = get(addr, "/ready");
    assert_eq!(s, 503);
    assert!(body.contains("first discovery"));
    assert_eq!(get(addr, "/stats").0, 200);
    assert_eq!(get(addr, "/metrics").0, 200);
    assert_eq!(get(addr, "/markets").0, 200);

    let (s, body) = get(addr, "/orderbook/42?depth=2");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bids"].as_array().unwrap().len(), 2);
    assert_eq!(v["best_bid"], "0.5");
    assert!(v["best_ask"].is_null());
    assert_eq!(get(addr, "/orderbook/42").0, 200);
    assert_eq!(get(addr, "/orderbook/7").0, 404);
    assert_eq!(get(addr, "/orderbook/42?depth=0").0, 400);
    assert_eq!(get(addr, "/orderbook/42?depth=1001").0, 400);
    assert_eq!(get(addr, "/orderbook/42?depth=x").0, 400);
    assert_eq!(get(addr, "/nope").0, 404);
    // The dashboard (src/http/page/).
    let (s, body) = get(addr, "/");
    assert_eq!(s, 200);
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert_eq!(get(addr, "/page/app.js").0, 200);
    let (s, _) = request(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(s, 405);
    let (s, _) = request(
        addr,
        "POST /stats HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(s, 405);
    let (s, _) = request(addr, "garbage\r\n\r\n");
    assert!((400..500).contains(&s) || s == 0, "{s}");
    server.stop();
}

#[test]
fn health_answers_while_many_clients_idle() {
    let server = HttpServer::start("127.0.0.1:0", Arc::new(Fake::default())).unwrap();
    let addr = server.addr();
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for _ in 0..5 {
        assert_eq!(get(addr, "/health").0, 200);
    }
    drop(idle);
    server.stop();
}

#[test]
fn port_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = HttpServer::start(&addr, Arc::new(Fake::default())).unwrap_err();
    assert!(e.to_string().contains(&addr), "{e}");
}
