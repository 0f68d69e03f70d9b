//! The stream's wire contract (docs/stream-api.md): client requests parsed with serde, server
//! messages written by hand into byte buffers (numbers as the venue's decimal text), and the
//! WebSocket framing of server messages (unmasked, one frame per message), so that a message
//! is encoded once and shared by every client that gets it.

use serde::Deserialize;

use crate::market::price::{write_canonical, write_u64};
use crate::market::{Price, QuotedPrice, Side, Size};
use crate::orderbook::{OrderBook, UntrustReason};

/// The channels a client can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Snapshots, deltas, trades, tick sizes and status, sequenced.
    Book,
    /// Best bid/ask when it changes.
    Bbo,
    /// Trades.
    Trades,
}

impl Channel {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Book => "book",
            Channel::Bbo => "bbo",
            Channel::Trades => "trades",
        }
    }
}

/// Which books a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Token ids.
    Assets(Vec<String>),
    /// Condition ids.
    Markets(Vec<String>),
    /// Every book, present and future.
    All,
}

/// A parsed client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `subscribe`.
    Subscribe {
        /// Channel.
        channel: Channel,
        /// Books.
        selector: Selector,
        /// Levels per side in snapshots (0 = all).
        depth: u32,
        /// Conflation interval (0 = every change).
        interval_ms: u32,
    },
    /// `unsubscribe`.
    Unsubscribe {
        /// Channel.
        channel: Channel,
        /// Books.
        selector: Selector,
    },
    /// `ping`.
    Ping,
    /// The original system's `{"subscribe":"<asset>","interval_ms":500}`.
    Legacy {
        /// Token id.
        asset: String,
        /// Interval.
        interval_ms: u32,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    op: Option<String>,
    channel: Option<String>,
    assets: Option<Vec<String>>,
    markets: Option<Vec<String>>,
    all: Option<bool>,
    depth: Option<u32>,
    interval_ms: Option<u32>,
    subscribe: Option<String>,
}

/// Shortest conflation interval accepted.
pub const MIN_INTERVAL_MS: u32 = 10;

/// Parses one text frame. The error is the message sent back in an `error`.
///
/// # Errors
/// Malformed JSON, unknown fields, ops or channels, missing selectors, more than
/// `max_ids` ids.
pub fn parse_request(text: &str, max_ids: usize) -> Result<Request, String> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| format!("malformed request: {e}"))?;
    if let Some(asset) = raw.subscribe {
        return Ok(Request::Legacy {
            asset,
            interval_ms: raw.interval_ms.unwrap_or(500).max(MIN_INTERVAL_MS),
        });
    }
    let op = raw.op.as_deref().ok_or("missing \"op\"")?;
    if op == "ping" {
        return Ok(Request::Ping);
    }
    let channel = match raw.channel.as_deref().unwrap_or("book") {
        "book" => Channel::Book,
        "bbo" => Channel::Bbo,
        "trades" => Channel::Trades,
        other => return Err(format!("unknown channel {other:?} (book, bbo, trades)")),
    };
    let ids = raw.assets.as_ref().map_or(0, Vec::len) + raw.markets.as_ref().map_or(0, Vec::len);
    if ids > max_ids {
        return Err(format!(
            "too many ids in one request: {ids} > {max_ids}; split it into several requests"
        ));
    }
    let selector = match (raw.all, raw.assets, raw.markets) {
        (Some(true), None, None) => Selector::All,
        (None | Some(false), Some(a), None) => Selector::Assets(a),
        (None | Some(false), None, Some(m)) => Selector::Markets(m),
        _ => return Err("give exactly one of \"assets\", \"markets\" or \"all\":true".into()),
    };
    match op {
        "subscribe" => {
            let interval_ms = raw.interval_ms.unwrap_or(0);
            if interval_ms != 0 && interval_ms < MIN_INTERVAL_MS {
                return Err(format!(
                    "interval_ms must be 0 or at least {MIN_INTERVAL_MS}"
                ));
            }
            Ok(Request::Subscribe {
                channel,
                selector,
                depth: raw.depth.unwrap_or(0),
                interval_ms,
            })
        }
        "unsubscribe" => Ok(Request::Unsubscribe { channel, selector }),
        other => Err(format!(
            "unknown op {other:?} (subscribe, unsubscribe, ping)"
        )),
    }
}

/// Appends a JSON string (escaping quotes, backslashes and control characters), exactly as
/// the book hash's summary writes its strings.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    crate::orderbook::hash::write_json_str(out, s);
}

fn price(out: &mut Vec<u8>, p: Price) {
    out.push(b'"');
    write_canonical(out, u64::from(p.raw()));
    out.push(b'"');
}

fn size(out: &mut Vec<u8>, s: Size) {
    out.push(b'"');
    write_canonical(out, s.raw());
    out.push(b'"');
}

fn opt_price(out: &mut Vec<u8>, p: Option<Price>) {
    match p {
        Some(p) => price(out, p),
        None => out.extend_from_slice(b"null"),
    }
}

fn quoted(out: &mut Vec<u8>, q: Option<QuotedPrice>) {
    match q {
        Some(q) => {
            out.push(b'"');
            q.write(out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// The common head of a per-asset message: `{"type":T,"asset":A,"seq":S,"ts":"…","recv_ns":N`.
pub fn head(out: &mut Vec<u8>, kind: &str, asset: &str, seq: u64, ts: u64, recv_ns: u64) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"asset\":");
    write_str(out, asset);
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, seq);
    out.extend_from_slice(b",\"ts\":\"");
    write_u64(out, ts);
    out.extend_from_slice(b"\",\"recv_ns\":");
    write_u64(out, recv_ns);
}

fn trust(out: &mut Vec<u8>, untrusted: Option<UntrustReason>) {
    match untrusted {
        None => out.extend_from_slice(b",\"trusted\":true"),
        Some(r) => {
            out.extend_from_slice(b",\"trusted\":false,\"reason\":\"");
            out.extend_from_slice(r.as_str().as_bytes());
            out.push(b'"');
        }
    }
}

/// What a snapshot message says besides the book itself.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotHead<'a> {
    /// Per-asset seq.
    pub seq: u64,
    /// Engine receive time of the last event.
    pub recv_ns: u64,
    /// Trust.
    pub untrusted: Option<UntrustReason>,
    /// Hash (40 hex digits; written only when `depth` is 0).
    pub hash: &'a str,
    /// Levels per side (0 = all).
    pub depth: u32,
}

/// A `snapshot` message of `book`.
pub fn snapshot(out: &mut Vec<u8>, book: &OrderBook, h: &SnapshotHead<'_>) {
    let meta = book.meta();
    head(
        out,
        "snapshot",
        &meta.asset_id,
        h.seq,
        book.last_timestamp(),
        h.recv_ns,
    );
    out.extend_from_slice(b",\"market\":");
    write_str(out, &meta.market);
    trust(out, h.untrusted);
    // A depth-limited snapshot is not the whole book: its hash would not match it.
    out.extend_from_slice(b",\"hash\":");
    if h.depth == 0 {
        write_str(out, h.hash);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"tick_size\":");
    opt_price(out, book.tick_size());
    out.extend_from_slice(b",\"min_order_size\":");
    size(out, meta.min_order_size);
    out.extend_from_slice(if meta.neg_risk {
        b",\"neg_risk\":true,\"last_trade_price\":"
    } else {
        b",\"neg_risk\":false,\"last_trade_price\":"
    });
    quoted(out, book.last_trade());
    let depth = if h.depth == 0 {
        usize::MAX
    } else {
        h.depth as usize
    };
    out.extend_from_slice(b",\"bids\":[");
    levels(out, book.bids().best_first().take(depth));
    out.extend_from_slice(b"],\"asks\":[");
    levels(out, book.asks().best_first().take(depth));
    out.extend_from_slice(b"]}");
}

fn levels(out: &mut Vec<u8>, it: impl Iterator<Item = crate::orderbook::Level>) {
    for (i, l) in it.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        price(out, l.price);
        out.push(b',');
        size(out, l.size);
        out.push(b']');
    }
}

/// A one-change `delta` message.
#[allow(clippy::too_many_arguments, reason = "one flat message")]
pub fn delta(
    out: &mut Vec<u8>,
    asset: &str,
    seq: u64,
    ts: u64,
    recv_ns: u64,
    change: (Side, Price, Size),
    hash: Option<&str>,
    untrusted: Option<UntrustReason>,
) {
    head(out, "delta", asset, seq, ts, recv_ns);
    out.extend_from_slice(b",\"changes\":[[\"");
    out.extend_from_slice(change.0.as_str().as_bytes());
    out.extend_from_slice(b"\",");
    price(out, change.1);
    out.push(b',');
    size(out, change.2);
    out.extend_from_slice(b"]]");
    if let Some(h) = hash {
        out.extend_from_slice(b",\"hash\":");
        write_str(out, h);
    }
    trust(out, untrusted);
    out.push(b'}');
}

/// A `trade` message.
pub fn trade(
    out: &mut Vec<u8>,
    asset: &str,
    seq: u64,
    ts: u64,
    recv_ns: u64,
    t: (QuotedPrice, Size, Side),
) {
    head(out, "trade", asset, seq, ts, recv_ns);
    out.extend_from_slice(b",\"price\":");
    quoted(out, Some(t.0));
    out.extend_from_slice(b",\"size\":");
    size(out, t.1);
    out.extend_from_slice(b",\"side\":\"");
    out.extend_from_slice(t.2.as_str().as_bytes());
    out.extend_from_slice(b"\"}");
}

/// A `tick_size` message.
pub fn tick_size(
    out: &mut Vec<u8>,
    asset: &str,
    seq: u64,
    ts: u64,
    recv_ns: u64,
    old: Price,
    new: Price,
) {
    head(out, "tick_size", asset, seq, ts, recv_ns);
    out.extend_from_slice(b",\"old\":");
    price(out, old);
    out.extend_from_slice(b",\"new\":");
    price(out, new);
    out.push(b'}');
}

/// A `status` message.
pub fn status(out: &mut Vec<u8>, asset: &str, seq: u64, ts: u64, untrusted: Option<UntrustReason>) {
    head(out, "status", asset, seq, ts, 0);
    trust(out, untrusted);
    out.push(b'}');
}

/// A `bbo` message.
pub fn bbo(
    out: &mut Vec<u8>,
    asset: &str,
    seq: u64,
    ts: u64,
    recv_ns: u64,
    bid: Option<crate::orderbook::Level>,
    ask: Option<crate::orderbook::Level>,
) {
    head(out, "bbo", asset, seq, ts, recv_ns);
    for (name, l) in [("bid", bid), ("ask", ask)] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        opt_price(out, l.map(|l| l.price));
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"_size\":");
        match l {
            Some(l) => size(out, l.size),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// The original system's top-10 `orderbook` message.
pub fn legacy_orderbook(out: &mut Vec<u8>, book: &OrderBook, hash: &str, trusted: bool) {
    let meta = book.meta();
    out.extend_from_slice(b"{\"type\":\"orderbook\",\"asset_id\":");
    write_str(out, &meta.asset_id);
    out.extend_from_slice(b",\"market\":");
    write_str(out, &meta.market);
    out.extend_from_slice(b",\"timestamp\":\"");
    write_u64(out, book.last_timestamp());
    out.extend_from_slice(b"\",\"hash\":");
    write_str(out, hash);
    out.extend_from_slice(if trusted {
        b",\"trusted\":true"
    } else {
        b",\"trusted\":false"
    });
    for (name, side) in [("bids", Side::Bid), ("asks", Side::Ask)] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":[");
        let mut write = |i: usize, l: crate::orderbook::Level| {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"price\":");
            price(out, l.price);
            out.extend_from_slice(b",\"size\":");
            size(out, l.size);
            out.push(b'}');
        };
        match side {
            Side::Bid => book
                .bids()
                .best_first()
                .take(10)
                .enumerate()
                .for_each(|(i, l)| write(i, l)),
            Side::Ask => book
                .asks()
                .best_first()
                .take(10)
                .enumerate()
                .for_each(|(i, l)| write(i, l)),
        }
        out.extend_from_slice(b"]");
    }
    out.push(b'}');
}

/// Wraps a JSON message into one unmasked WebSocket text frame.
pub fn text_frame(json: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(json.len() + 10);
    frame_header(&mut f, 0x1, json.len());
    f.extend_from_slice(json);
    f
}

/// A close frame with `code` and `reason` (the reason is cut to fit 123 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut r = reason.as_bytes();
    if r.len() > 123 {
        r = &r[..123];
    }
    let mut f = Vec::with_capacity(4 + r.len());
    frame_header(&mut f, 0x8, 2 + r.len());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(r);
    f
}

fn frame_header(f: &mut Vec<u8>, opcode: u8, len: usize) {
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(len as u8);
    } else if len <= 0xffff {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request_form_and_rejects_bad_ones() {
        let r = parse_request(
            r#"{"op":"subscribe","channel":"book","all":true,"depth":5}"#,
            10,
        );
        assert_eq!(
            r,
            Ok(Request::Subscribe {
                channel: Channel::Book,
                selector: Selector::All,
                depth: 5,
                interval_ms: 0
            })
        );
        assert!(matches!(
            parse_request(
                r#"{"op":"unsubscribe","channel":"trades","markets":["0x1"]}"#,
                10
            ),
            Ok(Request::Unsubscribe {
                channel: Channel::Trades,
                selector: Selector::Markets(_)
            })
        ));
        assert_eq!(parse_request(r#"{"op":"ping"}"#, 10), Ok(Request::Ping));
        assert_eq!(
            parse_request(r#"{"subscribe":"123","interval_ms":500}"#, 10),
            Ok(Request::Legacy {
                asset: "123".into(),
                interval_ms: 500
            })
        );
        for bad in [
            "{",
            "[]",
            r#"{"op":"dance"}"#,
            r#"{"op":"subscribe","channel":"x","all":true}"#,
            r#"{"op":"subscribe"}"#,
            r#"{"op":"subscribe","all":true,"assets":["1"]}"#,
            r#"{"op":"subscribe","all":true,"interval_ms":3}"#,
            r#"{"op":"subscribe","all":true,"colour":1}"#,
        ] {
            assert!(parse_request(bad, 10).is_err(), "{bad}");
        }
        let many = format!(
            r#"{{"op":"subscribe","assets":[{}]}}"#,
            ["\"1\""; 11].join(",")
        );
        assert!(parse_request(&many, 10).unwrap_err().contains("too many"));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panicking(text in ".{0,200}") {
            let _ = parse_request(&text, 10);
        }

        #[test]
        fn json_shaped_text_parses_or_errs(
            op in "(subscribe|unsubscribe|ping|x)",
            channel in "(book|bbo|trades|y)",
            n in 0usize..20,
            depth in proptest::option::of(0u32..100),
            interval in proptest::option::of(0u32..1000),
        ) {
            let ids: Vec<String> = (0..n).map(|i| format!("\"{i}\"")).collect();
            let mut text = format!(
                r#"{{"op":"{op}","channel":"{channel}","assets":[{}]"#,
                ids.join(",")
            );
            if let Some(d) = depth {
                text.push_str(&format!(r#","depth":{d}"#));
            }
            if let Some(i) = interval {
                text.push_str(&format!(r#","interval_ms":{i}"#));
            }
            text.push('}');
            let r = parse_request(&text, 10);
            if let Ok(Request::Subscribe { selector: Selector::Assets(a), .. }) = &r {
                proptest::prop_assert!(a.len() <= 10);
            }
            // `ping` ignores everything else.
            let bad_interval =
                interval.is_some_and(|i| op == "subscribe" && i != 0 && i < MIN_INTERVAL_MS);
            let want_err =
                op != "ping" && (n > 10 || op == "x" || channel == "y" || bad_interval);
            proptest::prop_assert_eq!(r.is_err(), want_err);
        }
    }

    #[test]
    fn frames_carry_the_right_lengths() {
        assert_eq!(text_frame(b"ab"), vec![0x81, 2, b'a', b'b']);
        let long = text_frame(&[b'x'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        let big = text_frame(&vec![b'x'; 70_000]);
        assert_eq!(big[1], 127);
        let c = close_frame(1008, "slow");
        assert_eq!(&c[..4], &[0x88, 6, 0x03, 0xf0]);
        let mut s = Vec::new();
        write_str(&mut s, "a\"b\\\n\u{1}");
        assert_eq!(s, br#""a\"b\\\n\u0001""#);
    }
}
