//! Fixed-layout fast paths for the market channel's hot objects.
//!
//! The venue writes compact JSON with a fixed key order (PROTOCOL.md §3.1–§3.2, the captured
//! fixtures, and `sim::wire`, which copies them): book levels are always
//! `{"price":"…","size":"…"}` and `price_change` entries
//! `{"asset_id":"…","price":"…","size":"…","side":"…","hash":"…","best_bid":"…","best_ask":"…"}`.
//! Such an object is matched here with literal compares between the values, instead of
//! scanning and dispatching every key.
//!
//! These functions only *recognise*: anything else (another key order, whitespace, an
//! escape, a missing, extra or non-string value, a truncated frame) returns `None` without
//! side effects, and the caller scans the same object with the generic [`super::json`]
//! path from the same offset. The generic path stays the single source of semantics: a
//! match here returns exactly the spans the generic scan would record for those bytes (the
//! keys are distinct, every value is a plain string body without `"` or `\`), so results
//! are identical either way, errors included (a failed match never consumes anything).

use super::json::string_stop;

/// A value's string body as `(start, len)` byte offsets in the frame.
pub(crate) type Body = (u32, u32);

#[inline(always)]
pub(crate) fn literal<const L: usize>(b: &[u8], i: usize, lit: &[u8; L]) -> bool {
    // A compile-time length: compiled to a few word compares, not a memcmp call.
    b.get(i..).and_then(|r| r.first_chunk::<L>()) == Some(lit)
}

/// Consumes the literal `lit` at `*i` if it is there.
#[inline(always)]
pub(crate) fn eat<const L: usize>(b: &[u8], i: &mut usize, lit: &[u8; L]) -> bool {
    let hit = literal(b, *i, lit);
    if hit {
        *i += L;
    }
    hit
}

/// A string body starting at `*i` and the literal `sep` after it (which starts with the
/// closing `"`, so an escape fails the match); advances `*i` past `sep`.
#[inline(always)]
pub(crate) fn value<const L: usize>(b: &[u8], i: &mut usize, sep: &[u8; L]) -> Option<Body> {
    let start = *i;
    let end = string_stop(b, start)?;
    if !literal(b, end, sep) {
        return None;
    }
    *i = end + L;
    Some((u32::try_from(start).ok()?, u32::try_from(end - start).ok()?))
}

/// A book level `{"price":"…","size":"…"}` at byte `i`: the `price` and `size` bodies and
/// the offset just past the object, or `None` for anything else.
#[inline]
pub(crate) fn level(b: &[u8], i: usize) -> Option<([Body; 2], usize)> {
    const OPEN: &[u8; 10] = b"{\"price\":\"";
    if !literal(b, i, OPEN) {
        return None;
    }
    let mut i = i + OPEN.len();
    let price = value(b, &mut i, b"\",\"size\":\"")?;
    let size = value(b, &mut i, b"\"}")?;
    Some(([price, size], i))
}

/// A `price_change` entry
/// `{"asset_id":"…","price":"…","size":"…","side":"…","hash":"…","best_bid":"…","best_ask":"…"}`
/// at byte `i`: the seven bodies in that order and the offset just past the object, or
/// `None` for anything else.
#[inline]
pub(crate) fn entry(b: &[u8], i: usize) -> Option<([Body; 7], usize)> {
    const OPEN: &[u8; 13] = b"{\"asset_id\":\"";
    if !literal(b, i, OPEN) {
        return None;
    }
    let mut i = i + OPEN.len();
    let asset_id = value(b, &mut i, b"\",\"price\":\"")?;
    let price = value(b, &mut i, b"\",\"size\":\"")?;
    let size = value(b, &mut i, b"\",\"side\":\"")?;
    let side = value(b, &mut i, b"\",\"hash\":\"")?;
    let hash = value(b, &mut i, b"\",\"best_bid\":\"")?;
    let best_bid = value(b, &mut i, b"\",\"best_ask\":\"")?;
    let best_ask = value(b, &mut i, b"\"}")?;
    Some(([asset_id, price, size, side, hash, best_bid, best_ask], i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_layout() {
        let t = br#"[{"price":"0.48","size":"30"},{"price":"0.5","size":""}]"#;
        let (v, end) = level(t, 1).unwrap();
        assert_eq!(v, [(11, 4), (25, 2)]);
        assert_eq!(t[end], b',');
        let (v, end) = level(t, end + 1).unwrap();
        assert_eq!(&t[v[0].0 as usize..][..v[0].1 as usize], b"0.5");
        assert_eq!(v[1].1, 0);
        assert_eq!(t[end], b']');
        for bad in [
            &br#"{"price": "0.48","size":"30"}"#[..],
            br#"{"size":"30","price":"0.48"}"#,
            br#"{"price":"0.4\"8","size":"30"}"#,
            br#"{"price":"0.48","size":"30","x":1}"#,
            br#"{"price":"0.48","size":30}"#,
            br#"{"price":"0.48","size":"30""#,
            br#"{"price":"0.48","size":"3"#,
            br#"{"price":"0.48""#,
            br#"{"price":"#,
            b"",
        ] {
            assert!(level(bad, 0).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(level(t, t.len() + 5).is_none());
    }
}
