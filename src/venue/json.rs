//! A minimal pull scanner over JSON text, for the market channel's hot path.
//!
//! Why not serde: the decoder must not allocate per message and must decode a 2-entry
//! `price_change` in ≤ 400 ns and a 60-level `book` in ≤ 4 µs. serde_json's borrowed typed
//! path costs about 410 ns for a 1-entry message and 4.8 µs for a 30+30 book on this machine,
//! and allocates a `Vec` per list; a span-recording scanner measured 144 ns and 0.5–1.6 µs
//! (`docs/machine-reference.md` §1). This scanner records byte spans into the caller's
//! reused vectors and never allocates.
//!
//! Scope: it validates structure (objects, arrays, strings, literals, numbers) strictly
//! enough that any input either scans or yields a [`SyntaxError`]; it never panics and bounds
//! nesting depth. String contents are returned raw (escapes are not decoded): the fields the
//! engine reads (ids, numbers, hashes, sides, event types) never contain escapes, and a value
//! that does simply fails to parse as what it should be.

use crate::market::swar::{ONES, zero_bytes};

/// A structural error: where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the text.
    pub offset: usize,
    /// What was expected.
    pub expected: &'static str,
}

/// Deepest nesting [`Scanner::skip_value`] follows before failing.
const MAX_DEPTH: u32 = 64;

/// Index of the first `"` or `\` in `b` at or after `from`, or `None` if there is none.
///
/// The end of a string body. Most string values on this feed are 1–8 bytes (prices, sizes,
/// sides, keys), where a call into memchr costs more than the search, so the first 16 bytes
/// are searched a word at a time (SWAR); longer bodies (77-digit asset ids, 40-hex hashes,
/// condition ids) continue with `memchr2`.
#[inline]
pub(crate) fn string_stop(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    for w in 0..2 {
        let Some(chunk) = rest.get(w * 8..).and_then(|r| r.first_chunk::<8>()) else {
            // Fewer than 8 bytes left: a plain byte loop.
            let tail = rest.get(w * 8..)?;
            let k = tail.iter().position(|&c| c == b'"' || c == b'\\')?;
            return Some(from + w * 8 + k);
        };
        let v = u64::from_le_bytes(*chunk);
        let hit =
            zero_bytes(v ^ (ONES * u64::from(b'"'))) | zero_bytes(v ^ (ONES * u64::from(b'\\')));
        if hit != 0 {
            return Some(from + w * 8 + (hit.trailing_zeros() / 8) as usize);
        }
    }
    memchr::memchr2(b'"', b'\\', rest.get(16..)?).map(|k| from + 16 + k)
}

/// Cursor over a JSON text.
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// A scalar value: its raw text and whether it was a JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// String contents, raw (without quotes, escapes not decoded).
    Str(&'a [u8]),
    /// A number, `true`, `false` or `null`, as written.
    Bare(&'a [u8]),
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `b`.
    pub fn new(b: &'a [u8]) -> Scanner<'a> {
        Scanner { b, i: 0 }
    }

    /// Current byte offset.
    #[inline]
    pub fn offset(&self) -> usize {
        self.i
    }

    /// Moves the cursor to `i` (clamped to the end of the text); used after a fast path
    /// (`super::fast`) has consumed a value itself.
    #[inline]
    pub(crate) fn set_offset(&mut self, i: usize) {
        self.i = i.min(self.b.len());
    }

    fn err(&self, expected: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.i,
            expected,
        }
    }

    /// Skips whitespace and returns the next byte without consuming it.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                return Some(c);
            }
        }
        None
    }

    /// Consumes `c` (after whitespace).
    #[inline]
    pub fn expect(&mut self, c: u8, what: &'static str) -> Result<(), SyntaxError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// True when only whitespace remains.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Reads a string (after whitespace) and returns its raw contents.
    #[inline]
    pub fn string(&mut self) -> Result<&'a [u8], SyntaxError> {
        self.expect(b'"', "'\"'")?;
        let start = self.i;
        loop {
            match string_stop(self.b, self.i) {
                None => {
                    self.i = self.b.len();
                    return Err(self.err("closing '\"'"));
                }
                Some(k) => {
                    self.i = k;
                    if self.b[k] == b'"' {
                        let s = &self.b[start..k];
                        self.i += 1;
                        return Ok(s);
                    }
                    // Backslash: skip it and the escaped byte.
                    self.i += 2;
                    if self.i > self.b.len() {
                        self.i = self.b.len();
                        return Err(self.err("escape"));
                    }
                }
            }
        }
    }

    /// Reads a scalar (string, number or literal).
    pub fn scalar(&mut self) -> Result<Scalar<'a>, SyntaxError> {
        match self.peek() {
            Some(b'"') => self.string().map(Scalar::Str),
            Some(c) if c == b'-' || c.is_ascii_digit() || c.is_ascii_alphabetic() => {
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let t = &self.b[start..self.i];
                let first = t.first().copied().unwrap_or(b'x');
                let ok = match first {
                    b't' => t == b"true",
                    b'f' => t == b"false",
                    b'n' => t == b"null",
                    c => c == b'-' || c.is_ascii_digit(),
                };
                if ok {
                    Ok(Scalar::Bare(t))
                } else {
                    self.i = start;
                    Err(self.err("value"))
                }
            }
            _ => Err(self.err("value")),
        }
    }

    /// Begins an object: consumes `{`. Then call [`Scanner::next_key`] until it returns
    /// `None`.
    pub fn begin_object(&mut self) -> Result<(), SyntaxError> {
        self.expect(b'{', "'{'")
    }

    /// The next key of an object (consuming the `:`), or `None` at its closing `}`.
    /// `first` must be true for the first call after [`Scanner::begin_object`].
    #[inline]
    pub fn next_key(&mut self, first: bool) -> Result<Option<&'a [u8]>, SyntaxError> {
        match self.peek() {
            Some(b'}') => {
                self.i += 1;
                return Ok(None);
            }
            Some(b',') if !first => self.i += 1,
            _ if first => {}
            _ => return Err(self.err("',' or '}'")),
        }
        let k = self.string()?;
        self.expect(b':', "':'")?;
        Ok(Some(k))
    }

    /// Begins an array: consumes `[`. Then call [`Scanner::next_element`] until it returns
    /// false.
    pub fn begin_array(&mut self) -> Result<(), SyntaxError> {
        self.expect(b'[', "'['")
    }

    /// True when another element follows (consuming the `,`), false at the closing `]`.
    #[inline]
    pub fn next_element(&mut self, first: bool) -> Result<bool, SyntaxError> {
        match self.peek() {
            Some(b']') => {
                self.i += 1;
                Ok(false)
            }
            Some(b',') if !first => {
                self.i += 1;
                Ok(true)
            }
            Some(_) if first => Ok(true),
            _ => Err(self.err("',' or ']'")),
        }
    }

    /// Skips one value of any kind.
    pub fn skip_value(&mut self) -> Result<(), SyntaxError> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: u32) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err("shallower nesting"));
        }
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut first = true;
                while self.next_key(first)?.is_some() {
                    first = false;
                    self.skip_depth(depth + 1)?;
                }
                Ok(())
            }
            Some(b'[') => {
                self.i += 1;
                let mut first = true;
                while self.next_element(first)? {
                    first = false;
                    self.skip_depth(depth + 1)?;
                }
                Ok(())
            }
            _ => self.scalar().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_nested_values() {
        let t = br#" {"a": [1, {"b": "x\"y"}, true, null], "c": -1.5e3, "d": {}} "#;
        let mut s = Scanner::new(t);
        s.begin_object().unwrap();
        assert_eq!(s.next_key(true).unwrap(), Some(&b"a"[..]));
        s.skip_value().unwrap();
        assert_eq!(s.next_key(false).unwrap(), Some(&b"c"[..]));
        assert_eq!(s.scalar().unwrap(), Scalar::Bare(b"-1.5e3"));
        assert_eq!(s.next_key(false).unwrap(), Some(&b"d"[..]));
        s.skip_value().unwrap();
        assert_eq!(s.next_key(false).unwrap(), None);
        assert!(s.at_end());
    }

    #[test]
    fn rejects_broken_text() {
        for t in [
            &b"{\"a\":"[..],
            b"{\"a\" 1}",
            b"[1 2]",
            b"{\"a\":tru}",
            b"\"abc",
            b"{\"a\":1,}",
        ] {
            let mut s = Scanner::new(t);
            assert!(
                s.skip_value().is_err() || !s.at_end(),
                "{}",
                String::from_utf8_lossy(t)
            );
        }
        let deep = "[".repeat(1000);
        assert!(Scanner::new(deep.as_bytes()).skip_value().is_err());
    }
}
