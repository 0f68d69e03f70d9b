//! Fixed-layout fast paths for the market channel's hot objects.
//!
//! The venue writes compact JSON with a fixed key order (docs/venue-protocol.md §3.1–§3.2, the captured
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
use crate::market::swar::{HIGHS, ONES, in_range, zero_bytes};

/// Whether the fast paths are on: always, except inside
/// [`tests::with_fast_paths_off`], which lets the tests decode the same frame both ways and
/// compare.
#[cfg(not(test))]
#[inline(always)]
pub(crate) const fn enabled() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
pub(crate) fn enabled() -> bool {
    !OFF.with(std::cell::Cell::get)
}

/// A value's string body as `(start, len)` byte offsets in the frame.
pub(crate) type Body = (u32, u32);

#[inline(always)]
pub(crate) fn literal<const L: usize>(b: &[u8], i: usize, lit: &[u8; L]) -> bool {
    // A compile-time length: compiled to a few word compares, not a memcmp call.
    b.get(i..).and_then(|r| r.first_chunk::<L>()) == Some(lit)
}

/// Like [`value`], for the long bodies (77-digit asset ids, 40-hex hashes, condition ids):
/// searched with `memchr2` from the start.
#[inline(always)]
pub(crate) fn long_value<const L: usize>(b: &[u8], i: &mut usize, sep: &[u8; L]) -> Option<Body> {
    let start = *i;
    let end = start + memchr::memchr2(b'"', b'\\', b.get(start..)?)?;
    if !literal(b, end, sep) {
        return None;
    }
    *i = end + L;
    Some((u32::try_from(start).ok()?, u32::try_from(end - start).ok()?))
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
    if !enabled() {
        return None;
    }
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
    if !enabled() {
        return None;
    }
    const OPEN: &[u8; 13] = b"{\"asset_id\":\"";
    if !literal(b, i, OPEN) {
        return None;
    }
    let mut i = i + OPEN.len();
    let asset_id = long_value(b, &mut i, b"\",\"price\":\"")?;
    let price = value(b, &mut i, b"\",\"size\":\"")?;
    let size = value(b, &mut i, b"\",\"side\":\"")?;
    let side = value(b, &mut i, b"\",\"hash\":\"")?;
    let hash = long_value(b, &mut i, b"\",\"best_bid\":\"")?;
    let best_bid = value(b, &mut i, b"\",\"best_ask\":\"")?;
    let best_ask = value(b, &mut i, b"\"}")?;
    Some(([asset_id, price, size, side, hash, best_bid, best_ask], i))
}

/// The 8 bytes of `b` at `i` as a little-endian word, if there are 8.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..)
        .and_then(|r| r.first_chunk::<8>())
        .map(|c| u64::from_le_bytes(*c))
}

/// The value of the `len` (1..=8) ASCII digits at the start of `w` (first digit in the low
/// byte), or `None` if any of them is not `0-9`. Bytes after them are ignored.
#[inline(always)]
fn digits(w: u64, len: usize) -> Option<u64> {
    debug_assert!((1..=8).contains(&len));
    // Keep the first `len` bytes, moved to the top: the vacated low bytes are zero, i.e.
    // leading zeros of the number.
    let v = w << (8 * (8 - len));
    let want = HIGHS << (8 * (8 - len));
    if v & HIGHS != 0 || in_range(v, b'0', b'9') & want != want {
        return None;
    }
    // Eight digit values (most significant in the low byte) → one integer, in three
    // multiply steps: pairs, quads, then the two quads.
    let v = v & (ONES * 0x0f);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v = ((v & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32))
        + ((v >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(v)
}

/// The value of the decimal digits `b[start..start + len]` for 1 ≤ `len` ≤ 16, or `None`
/// if any is not `0-9` (or `len` is out of that range). The bytes after them are read
/// (whole words) but ignored; near the end of `b` a padded copy is used.
#[inline(always)]
pub(crate) fn uint(b: &[u8], start: usize, len: usize) -> Option<u64> {
    if !enabled() {
        return None;
    }
    if len == 0 || len > 16 {
        return None;
    }
    if b.len().saturating_sub(start) < 16 {
        return near_end(b, start, len, uint_words);
    }
    uint_words(b, start, len)
}

#[inline(always)]
fn uint_words(b: &[u8], start: usize, len: usize) -> Option<u64> {
    let w = word_at(b, start)?;
    if len <= 8 {
        return digits(w, len);
    }
    let high = digits(w, 8)?;
    let low = digits(word_at(b, start + 8)?, len - 8)?;
    Some(high * POW10_16[len - 8] + low)
}

const POW10_16: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// The raw 10⁻⁶ value of the decimal text `b[start..start + len]`, for the common shape
/// only: 1–8 integer digits, then optionally `.` and 1–6 fraction digits. The bytes after
/// the text are read (whole words) but ignored; near the end of `b` a padded copy is used.
///
/// `Some(raw)` only where `market::price::parse_decimal` returns `Ok` with that same `raw`
/// (the same arithmetic: `int × 10⁶ + frac × 10^(6 − digits)`, no overflow possible at
/// these lengths); `None` for everything else, including every input it would reject, so
/// the caller falls back to `Price::parse` / `Size::parse` for the exact result or error.
/// Branch-light: no per-digit loop, which is where the general parser loses its time on
/// the venue's mixed lengths.
#[inline(always)]
pub(crate) fn decimal(b: &[u8], start: usize, len: usize) -> Option<u64> {
    if !enabled() {
        return None;
    }
    if len == 0 || len > 15 {
        return None;
    }
    if b.len().saturating_sub(start) < 16 {
        return near_end(b, start, len, decimal_words);
    }
    decimal_words(b, start, len)
}

/// `parse(b, start, len)` too close to the end of `b` for its word reads: on a padded copy
/// of the (at most 16-byte) text.
#[cold]
#[inline(never)]
fn near_end(
    b: &[u8],
    start: usize,
    len: usize,
    parse: fn(&[u8], usize, usize) -> Option<u64>,
) -> Option<u64> {
    let mut buf = [0u8; 16];
    buf.get_mut(..len)?
        .copy_from_slice(b.get(start..)?.get(..len)?);
    parse(&buf, 0, len)
}

#[inline(always)]
fn decimal_words(b: &[u8], start: usize, len: usize) -> Option<u64> {
    let w = word_at(b, start)?;
    // The first '.' among the text's first 8 bytes.
    let dots = zero_bytes(w ^ (ONES * u64::from(b'.')));
    let in_text = if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    let dots = dots & in_text;
    if dots == 0 {
        // No '.' in the first 8 bytes: a whole number of at most 8 digits.
        if len > 8 {
            return None;
        }
        return digits(w, len)?.checked_mul(1_000_000);
    }
    let int_len = (dots.trailing_zeros() / 8) as usize;
    let frac_len = len - int_len - 1;
    if int_len == 0 || frac_len == 0 || frac_len > 6 {
        return None;
    }
    if len <= 8 {
        // All in one word: drop the '.' byte and read int‖frac as one number,
        // int × 10^f + frac; times 10^(6 − f) that is int × 10⁶ + frac × 10^(6 − f).
        let below = (1u64 << (8 * int_len)) - 1;
        let joined = (w & below) | ((w >> (8 * (int_len + 1))) << (8 * int_len));
        return Some(digits(joined, len - 1)? * POW10[6 - frac_len]);
    }
    let int = digits(w, int_len)?;
    let frac = digits(word_at(b, start + int_len + 1)?, frac_len)?;
    Some(int * 1_000_000 + frac * POW10[6 - frac_len])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `f` with every fast path off: the generic scan and the `market` parsers only,
    /// i.e. the decoder as it was before the fast paths.
    pub(crate) fn with_fast_paths_off<T>(f: impl FnOnce() -> T) -> T {
        OFF.with(|o| o.set(true));
        let r = f();
        OFF.with(|o| o.set(false));
        r
    }
    use crate::market::price::parse_decimal;

    /// `decimal` on `text` placed in a frame with `pad` bytes after it.
    fn fast_at(text: &[u8], pad: &[u8]) -> Option<u64> {
        let mut frame = b"x\"".to_vec();
        frame.extend_from_slice(text);
        frame.extend_from_slice(pad);
        decimal(&frame, 2, text.len())
    }

    fn check_decimal(text: &[u8]) {
        let want = parse_decimal(text).map(|d| d.raw).ok();
        for pad in [
            &b"\",\"size\":\"12\"}]"[..],
            b"\"}",
            b"",
            b"99999999",
            b"........",
        ] {
            if let Some(raw) = fast_at(text, pad) {
                assert_eq!(
                    Some(raw),
                    want,
                    "{:?} + {:?}",
                    String::from_utf8_lossy(text),
                    String::from_utf8_lossy(pad)
                );
            }
        }
    }

    #[test]
    fn decimal_agrees_with_parse_decimal() {
        // Every string of up to 5 bytes over digits, '.', and a few others.
        let alphabet = b"0159.-x /:\x80";
        let mut text = Vec::new();
        fn all(alphabet: &[u8], text: &mut Vec<u8>, left: usize, f: &mut dyn FnMut(&[u8])) {
            f(text);
            if left == 0 {
                return;
            }
            for &c in alphabet {
                text.push(c);
                all(alphabet, text, left - 1, f);
                text.pop();
            }
        }
        all(alphabet, &mut text, 5, &mut |t| check_decimal(t));
        // Pseudo-random venue-like and longer numbers, every int/frac length.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for int_len in 0..=12 {
            for frac_len in 0..=8 {
                for dot in [true, false] {
                    for _ in 0..40 {
                        let mut t = Vec::new();
                        for _ in 0..int_len {
                            t.push(b'0' + (next() % 10) as u8);
                        }
                        if dot {
                            t.push(b'.');
                        }
                        for _ in 0..frac_len {
                            t.push(b'0' + (next() % 10) as u8);
                        }
                        check_decimal(&t);
                        // One corrupted byte anywhere.
                        if !t.is_empty() {
                            let k = (next() % t.len() as u64) as usize;
                            t[k] = (next() % 256) as u8;
                            check_decimal(&t);
                        }
                    }
                }
            }
        }
        // The fast path does take the venue's shapes (else it would be dead weight).
        for t in [
            &b"0.5"[..],
            b"0.523",
            b"1",
            b"0",
            b"41666.32",
            b"3149725.72",
            b"219.217767",
        ] {
            assert_eq!(
                fast_at(t, b"\"}]"),
                parse_decimal(t).map(|d| d.raw).ok(),
                "{t:?}"
            );
            assert!(fast_at(t, b"\"}]").is_some(), "{t:?}");
        }
    }

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
