//! The Rust example client of docs/stream-api.md (kept identical; built by
//! `cargo build --all-targets`): rebuilds every book from the stream and checks `seq`.
//! Run: `cargo run --example stream_client` against an engine on port 8081.

use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
struct Book {
    seq: u64,
    bids: BTreeMap<String, String>, // price text -> size text (order by parsed value to rank)
    asks: BTreeMap<String, String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut ws, _) = tungstenite::connect("ws://127.0.0.1:8081/ws")?;
    ws.send(tungstenite::Message::text(
        r#"{"op":"subscribe","channel":"book","all":true}"#,
    ))?;
    let mut books: HashMap<String, Book> = HashMap::new();
    loop {
        let tungstenite::Message::Text(text) = ws.read()? else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_str(text.as_str())?;
        let asset = m["asset"].as_str().unwrap_or_default().to_string();
        let seq = m["seq"].as_u64().unwrap_or(0);
        match m["type"].as_str() {
            Some("snapshot") => {
                let side = |k: &str| -> BTreeMap<String, String> {
                    m[k].as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            (
                                l[0].as_str().unwrap_or("").into(),
                                l[1].as_str().unwrap_or("").into(),
                            )
                        })
                        .collect()
                };
                books.insert(
                    asset,
                    Book {
                        seq,
                        bids: side("bids"),
                        asks: side("asks"),
                    },
                );
            }
            Some("delta" | "trade" | "tick_size" | "status") => {
                let Some(b) = books.get_mut(&asset) else {
                    continue;
                };
                if seq != b.seq + 1 {
                    eprintln!("gap on {asset}: waiting for its snapshot");
                }
                b.seq = seq;
                for c in m["changes"].as_array().into_iter().flatten() {
                    let (side, price, size) = (c[0].as_str(), c[1].as_str(), c[2].as_str());
                    let levels = if side == Some("BUY") {
                        &mut b.bids
                    } else {
                        &mut b.asks
                    };
                    match (price, size) {
                        (Some(p), Some("0")) => {
                            levels.remove(p);
                        }
                        (Some(p), Some(s)) => {
                            levels.insert(p.into(), s.into());
                        }
                        _ => {}
                    }
                }
            }
            Some("error") => eprintln!("server error: {}", m["error"]),
            _ => {}
        }
    }
}
