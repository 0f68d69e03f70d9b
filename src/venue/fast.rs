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

/// Opening literal of a book level object.
pub(crate) const LEVEL_OPEN: &[u8] = b"{\"price\":\"";
/// Literals after each level value (`price`, `size`).
pub(crate) const LEVEL_SEPS: [&[u8]; 2] = [b"\",\"size\":\"", b"\"}"];

/// Opening literal of a `price_change` entry object.
pub(crate) const ENTRY_OPEN: &[u8] = b"{\"asset_id\":\"";
/// Literals after each entry value (`asset_id`, `price`, `size`, `side`, `hash`,
/// `best_bid`, `best_ask`).
pub(crate) const ENTRY_SEPS: [&[u8]; 7] = [
    b"\",\"price\":\"",
    b"\",\"size\":\"",
    b"\",\"side\":\"",
    b"\",\"hash\":\"",
    b"\",\"best_bid\":\"",
    b"\",\"best_ask\":\"",
    b"\"}",
];

#[inline(always)]
fn literal(b: &[u8], i: usize, lit: &[u8]) -> bool {
    b.get(i..).is_some_and(|r| r.starts_with(lit))
}

/// Matches `open v₀ seps[0] v₁ seps[1] … v₍N−1₎ seps[N−1]` at byte `i` of `b`, where each
/// `vₖ` is a string body without `"` or `\` and every `seps[k]` starts with the closing `"`.
///
/// Returns the value bodies and the offset just past the last literal, or `None` if the
/// bytes at `i` are anything else.
#[inline(always)]
pub(crate) fn fixed_object<const N: usize>(
    b: &[u8],
    i: usize,
    open: &[u8],
    seps: [&[u8]; N],
) -> Option<([Body; N], usize)> {
    if !literal(b, i, open) {
        return None;
    }
    let mut i = i + open.len();
    let mut out = [(0u32, 0u32); N];
    for (slot, sep) in out.iter_mut().zip(seps) {
        let end = string_stop(b, i)?;
        // `sep` starts with '"': a backslash (escape) at `end` fails here.
        if !literal(b, end, sep) {
            return None;
        }
        *slot = (u32::try_from(i).ok()?, u32::try_from(end - i).ok()?);
        i = end + sep.len();
    }
    Some((out, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_layout() {
        let t = br#"[{"price":"0.48","size":"30"},{"price":"0.5","size":""}]"#;
        let (v, end) = fixed_object(t, 1, LEVEL_OPEN, LEVEL_SEPS).unwrap();
        assert_eq!(v, [(11, 4), (25, 2)]);
        assert_eq!(t[end], b',');
        let (v, end) = fixed_object(t, end + 1, LEVEL_OPEN, LEVEL_SEPS).unwrap();
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
            assert!(
                fixed_object(bad, 0, LEVEL_OPEN, LEVEL_SEPS).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(fixed_object(t, t.len() + 5, LEVEL_OPEN, LEVEL_SEPS).is_none());
    }
}
