//! Subscription frames the client sends on the market channel (docs/venue-protocol.md §2.1–§2.2).
//!
//! Frames carry at most [`MAX_IDS_PER_FRAME`] ids: the venue closes the socket on frames with
//! thousands of ids (issue Polymarket/rs-clob-client-v2#116), so callers chunk with
//! [`chunks`]. Built off the hot path (on subscription changes), so they return `String`s.

/// Most asset ids sent in one subscribe/unsubscribe frame.
pub const MAX_IDS_PER_FRAME: usize = 100;

/// The first message on a new socket: `{"assets_ids":[…],"type":"market","initial_dump":true}`
/// (plus `"custom_feature_enabled":true` when asked).
pub fn initial<'a>(ids: impl IntoIterator<Item = &'a str>, custom_features: bool) -> String {
    let mut s = String::from("{\"assets_ids\":");
    push_ids(&mut s, ids);
    s.push_str(",\"type\":\"market\",\"initial_dump\":true");
    if custom_features {
        s.push_str(",\"custom_feature_enabled\":true");
    }
    s.push('}');
    s
}

/// Subscribe or unsubscribe more assets on an open socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `"subscribe"`.
    Subscribe,
    /// `"unsubscribe"`.
    Unsubscribe,
}

/// `{"operation":"subscribe"|"unsubscribe","assets_ids":[…]}`; a subscribe also asks for the
/// initial dump so each new asset gets its snapshot.
pub fn operation<'a>(op: Operation, ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::from("{\"operation\":");
    s.push_str(match op {
        Operation::Subscribe => "\"subscribe\"",
        Operation::Unsubscribe => "\"unsubscribe\"",
    });
    s.push_str(",\"assets_ids\":");
    push_ids(&mut s, ids);
    if op == Operation::Subscribe {
        s.push_str(",\"initial_dump\":true");
    }
    s.push('}');
    s
}

/// Splits ids into frame-sized chunks.
pub fn chunks<T>(ids: &[T]) -> std::slice::Chunks<'_, T> {
    ids.chunks(MAX_IDS_PER_FRAME)
}

fn push_ids<'a>(s: &mut String, ids: impl IntoIterator<Item = &'a str>) {
    s.push('[');
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        // Token ids are decimal digits; anything needing escapes is escaped anyway.
        for c in id.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_venue_shapes() {
        assert_eq!(
            initial(["1", "2"], false),
            r#"{"assets_ids":["1","2"],"type":"market","initial_dump":true}"#
        );
        assert_eq!(
            initial(["1"], true),
            r#"{"assets_ids":["1"],"type":"market","initial_dump":true,"custom_feature_enabled":true}"#
        );
        assert_eq!(
            operation(Operation::Unsubscribe, ["9"]),
            r#"{"operation":"unsubscribe","assets_ids":["9"]}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&operation(Operation::Subscribe, ["a\"b"])).unwrap();
        assert_eq!(v["assets_ids"][0], "a\"b");
        let ids: Vec<u32> = (0..250).collect();
        assert_eq!(
            chunks(&ids).map(<[u32]>::len).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
    }
}
