//! Fixed-point prices and sizes, parsed exactly from the venue's decimal text.
//!
//! Every number the venue sends is a JSON string ("0.48", "41666.32", "219.217767").
//! They are parsed once, at the edge, into integers at a scale of 10^6 ([`SCALE`]); no float
//! is ever involved. Formatting goes back to the venue's canonical text (trailing zeros
//! trimmed: "0.3", "45.83", "1000"), which the book hash needs byte for byte.
//!
//! Pure code: no I/O, no clock, no allocation except in error values.

use std::fmt;

/// Number of decimal places kept: one unit is 10^-6.
pub const DECIMALS: u32 = 6;
/// Raw units per whole unit (10^[`DECIMALS`]).
pub const SCALE: u64 = 1_000_000;

/// Why a decimal text was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// The text was empty. The caller should treat the field as malformed.
    #[error("empty number")]
    Empty,
    /// A minus sign: the venue never sends negative prices or sizes.
    #[error("negative number")]
    Negative,
    /// A character other than digits and one '.'.
    #[error("not a decimal number")]
    Invalid,
    /// More than [`DECIMALS`] fraction digits: cannot be represented exactly.
    #[error("more than 6 decimal places")]
    TooManyDecimals,
    /// The value does not fit the field's range (a price above 1, a size beyond u64 units).
    #[error("out of range")]
    OutOfRange,
}

/// A fixed-point decimal value and the number of fraction digits it was written with.
///
/// The digit count lets a value be printed back exactly as the venue wrote it
/// (`last_trade_price` "0.920" keeps its trailing zero in the server's hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// Value in units of 10^-6.
    pub raw: u64,
    /// Fraction digits in the original text (0..=6).
    pub frac_digits: u8,
}

/// Parses an unsigned decimal text ("0.48", ".48", "1", "41666.32") into 10^-6 units.
///
/// # Errors
/// Returns a [`NumberError`] for empty text, a sign, any non-digit, more than six fraction
/// digits or a value beyond `u64` units.
#[inline]
pub fn parse_decimal(text: &[u8]) -> Result<Decimal, NumberError> {
    let (first, _) = text.split_first().ok_or(NumberError::Empty)?;
    if *first == b'-' {
        return Err(NumberError::Negative);
    }
    let mut int: u64 = 0;
    let mut i = 0;
    let mut int_digits = 0usize;
    while i < text.len() {
        let b = text[i];
        if b == b'.' {
            break;
        }
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumberError::Invalid);
        }
        int = int
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(NumberError::OutOfRange)?;
        int_digits += 1;
        i += 1;
    }
    let mut frac: u64 = 0;
    let mut frac_digits = 0u32;
    if i < text.len() {
        // text[i] == b'.'
        i += 1;
        if i == text.len() && int_digits == 0 {
            return Err(NumberError::Invalid); // "."
        }
        while i < text.len() {
            let d = text[i].wrapping_sub(b'0');
            if d > 9 {
                return Err(NumberError::Invalid);
            }
            frac_digits += 1;
            if frac_digits > DECIMALS {
                return Err(NumberError::TooManyDecimals);
            }
            frac = frac * 10 + u64::from(d);
            i += 1;
        }
    }
    let raw = int
        .checked_mul(SCALE)
        .and_then(|v| v.checked_add(frac * POW10[(DECIMALS - frac_digits) as usize]))
        .ok_or(NumberError::OutOfRange)?;
    Ok(Decimal {
        raw,
        frac_digits: frac_digits as u8,
    })
}

const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// Appends `raw` (10^-6 units) in canonical form: no trailing fraction zeros, no '.' for
/// whole numbers ("0.3", "45.83", "1000", "0").
pub fn write_canonical(out: &mut Vec<u8>, raw: u64) {
    let int = raw / SCALE;
    let mut frac = raw % SCALE;
    write_u64(out, int);
    if frac != 0 {
        let mut digits = DECIMALS as usize;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        out.push(b'.');
        write_padded(out, frac, digits);
    }
}

/// Appends `raw` with exactly `frac_digits` fraction digits ("0.920" for 920000 and 3).
pub fn write_fixed(out: &mut Vec<u8>, raw: u64, frac_digits: u8) {
    let digits = usize::from(frac_digits.min(DECIMALS as u8));
    write_u64(out, raw / SCALE);
    if digits > 0 {
        out.push(b'.');
        let frac = (raw % SCALE) / POW10[DECIMALS as usize - digits];
        write_padded(out, frac, digits);
    }
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 6];
    let mut v = v;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Canonical text of a raw value, as an owned string (for JSON output off the hot path).
pub fn canonical_string(raw: u64) -> String {
    let mut v = Vec::with_capacity(24);
    write_canonical(&mut v, raw);
    String::from_utf8(v).unwrap_or_default()
}

/// A price in 10^-6 units, within `0..=1` (0..=1_000_000 raw).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(u32);

impl Price {
    /// The largest valid price: 1.
    pub const ONE: Price = Price(SCALE as u32);

    /// Builds a price from raw units.
    ///
    /// # Errors
    /// [`NumberError::OutOfRange`] above 1.
    #[inline]
    pub const fn from_raw(raw: u32) -> Result<Price, NumberError> {
        if raw as u64 > SCALE {
            Err(NumberError::OutOfRange)
        } else {
            Ok(Price(raw))
        }
    }

    /// Parses a price text.
    ///
    /// # Errors
    /// Any [`NumberError`]; [`NumberError::OutOfRange`] above 1.
    #[inline]
    pub fn parse(text: &[u8]) -> Result<Price, NumberError> {
        let d = parse_decimal(text)?;
        if d.raw > SCALE {
            return Err(NumberError::OutOfRange);
        }
        Ok(Price(d.raw as u32))
    }

    /// Raw 10^-6 units.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The complementary price `1 - self` (the mirror token's price in a binary market).
    #[inline]
    pub const fn complement(self) -> Price {
        Price(SCALE as u32 - self.0)
    }

    /// Canonical text ("0.48").
    pub fn to_text(self) -> String {
        canonical_string(u64::from(self.0))
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A size (shares) in 10^-6 units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(u64);

impl Size {
    /// Zero: a level with this size is removed.
    pub const ZERO: Size = Size(0);

    /// Builds a size from raw units.
    #[inline]
    pub const fn from_raw(raw: u64) -> Size {
        Size(raw)
    }

    /// Parses a size text.
    ///
    /// # Errors
    /// Any [`NumberError`].
    #[inline]
    pub fn parse(text: &[u8]) -> Result<Size, NumberError> {
        Ok(Size(parse_decimal(text)?.raw))
    }

    /// Raw 10^-6 units.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// True for the "remove level" size.
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Canonical text ("45.83").
    pub fn to_text(self) -> String {
        canonical_string(self.0)
    }
}

impl fmt::Debug for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A price together with the number of fraction digits the venue wrote it with.
///
/// Used for `last_trade_price`, which the server hashes exactly as written ("0.140").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QuotedPrice {
    /// The value.
    pub price: Price,
    /// Fraction digits of the original text.
    pub frac_digits: u8,
}

impl QuotedPrice {
    /// Parses a price text and remembers its digit count.
    ///
    /// # Errors
    /// Any [`NumberError`]; [`NumberError::OutOfRange`] above 1.
    pub fn parse(text: &[u8]) -> Result<QuotedPrice, NumberError> {
        let d = parse_decimal(text)?;
        if d.raw > SCALE {
            return Err(NumberError::OutOfRange);
        }
        Ok(QuotedPrice {
            price: Price(d.raw as u32),
            frac_digits: d.frac_digits,
        })
    }

    /// A quoted price written in canonical form.
    pub fn canonical(price: Price) -> QuotedPrice {
        let mut frac = price.raw() % SCALE as u32;
        let mut digits = if frac == 0 { 0 } else { DECIMALS as u8 };
        while frac != 0 && frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        QuotedPrice {
            price,
            frac_digits: digits,
        }
    }

    /// Appends the text exactly as the venue wrote it.
    pub fn write(self, out: &mut Vec<u8>) {
        write_fixed(out, u64::from(self.price.raw()), self.frac_digits);
    }

    /// The text exactly as the venue wrote it.
    pub fn to_text(self) -> String {
        let mut v = Vec::with_capacity(12);
        self.write(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Result<u64, NumberError> {
        parse_decimal(s.as_bytes()).map(|d| d.raw)
    }

    #[test]
    fn parses_venue_forms_exactly() {
        // TC0: the forms the venue and its docs use
        assert_eq!(raw("0.48"), Ok(480_000));
        assert_eq!(raw(".48"), Ok(480_000));
        assert_eq!(raw("1"), Ok(1_000_000));
        assert_eq!(raw("41666.32"), Ok(41_666_320_000));
        assert_eq!(raw("219.217767"), Ok(219_217_767));
        assert_eq!(raw("0"), Ok(0));
        assert_eq!(raw("5."), Ok(5_000_000));
        assert_eq!(raw("0.0025"), Ok(2_500));
    }

    #[test]
    fn rejects_malformed_numbers() {
        assert_eq!(raw(""), Err(NumberError::Empty));
        assert_eq!(raw("-1"), Err(NumberError::Negative));
        assert_eq!(raw("abc"), Err(NumberError::Invalid));
        assert_eq!(raw("1.2.3"), Err(NumberError::Invalid));
        assert_eq!(raw("."), Err(NumberError::Invalid));
        assert_eq!(raw("1e5"), Err(NumberError::Invalid));
        assert_eq!(raw("0.1234567"), Err(NumberError::TooManyDecimals));
        assert_eq!(raw("99999999999999999999999"), Err(NumberError::OutOfRange));
        assert_eq!(raw("18446744073709.551616"), Err(NumberError::OutOfRange));
        assert_eq!(Price::parse(b"1.000001"), Err(NumberError::OutOfRange));
        assert_eq!(Price::parse(b"2"), Err(NumberError::OutOfRange));
    }

    #[test]
    fn formats_canonically() {
        for (v, s) in [
            (300_000, "0.3"),
            (45_830_000, "45.83"),
            (1_000_000_000, "1000"),
            (0, "0"),
            (1, "0.000001"),
            (2_500, "0.0025"),
        ] {
            assert_eq!(canonical_string(v), s);
        }
    }

    #[test]
    fn quoted_price_keeps_trailing_zeros() {
        let q = QuotedPrice::parse(b"0.920").unwrap();
        assert_eq!(q.to_text(), "0.920");
        assert_eq!(QuotedPrice::parse(b"0.5").unwrap().to_text(), "0.5");
        assert_eq!(
            QuotedPrice::canonical(Price::parse(b"0.30").unwrap()).to_text(),
            "0.3"
        );
        assert_eq!(QuotedPrice::canonical(Price::ONE).to_text(), "1");
    }

    mod property_tests {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn prop_canonical_round_trips(v in 0u64..u64::MAX / 2) {
                let s = canonical_string(v);
                prop_assert_eq!(parse_decimal(s.as_bytes()).map(|d| d.raw), Ok(v));
            }

            #[test]
            fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
                let _ = parse_decimal(&bytes);
            }
        }
    }
}
