//! Word-at-a-time (SWAR) byte tests on little-endian `u64` words (the byte at the lowest
//! address is the least significant): the primitives shared by the venue decoder's string
//! and number fast paths (`venue::json`, `venue::fast`) and [`super::BookHash::parse_hex`].
//! Pure arithmetic, no `unsafe`.

/// `0x01` in every byte.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` (bit 7) in every byte.
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of the result is set for the first zero byte of `v`. Bytes above the
/// first zero byte may be flagged spuriously (borrow propagation), never bytes below it, so
/// the lowest set bit is exact, which is all the callers use.
#[inline(always)]
pub(crate) fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// Bit 7 of each byte set where `lo <= byte <= hi`, for bytes below 0x80 (no carry crosses a
/// byte: `byte + (0x80 - lo)` and `byte + (0x7f - hi)` both stay below 0x100).
#[inline(always)]
pub(crate) fn in_range(w: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = w.wrapping_add(ONES * u64::from(0x80 - lo));
    let above_hi = w.wrapping_add(ONES * u64::from(0x7f - hi));
    at_least_lo & !above_hi & HIGHS
}

/// The value of the 8 hex digits in `w` (first digit in the low byte, most significant), or
/// `None` if any byte is not `0-9a-fA-F`.
#[inline(always)]
pub(crate) fn hex8(w: u64) -> Option<u32> {
    let digit = in_range(w, b'0', b'9');
    let letter = in_range(w | (ONES * 0x20), b'a', b'f');
    if w & HIGHS != 0 || digit | letter != HIGHS {
        return None;
    }
    // Nibble per byte: low four bits, plus 9 for a letter ('a' = 0x61 → 1 + 9).
    let nib = (w & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Byte pairs → one byte each (in the low byte of each 16-bit lane), then lanes → u32.
    let pairs = ((nib << 4) | (nib >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let le = (quads | (quads >> 16)) as u32;
    Some(le.swap_bytes())
}
