//! Interned asset ids: the ~77-digit token id becomes a dense `u32` once, at the edge.
//!
//! The [`AssetInterner`] is owned by exactly one thread (the event loop in the engine, the
//! replay loop in `polypy-replay`). Looking up a token costs no string hash: the key is built
//! from the token's length and its last 16 bytes (token ids are random decimals, so their
//! tails are uniformly distributed), and a hit is confirmed by comparing the full text.

use rustc_hash::FxHashMap;

/// A dense, interned asset (outcome token) id. Index into the interner's name table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct AssetId(pub u32);

impl AssetId {
    /// The id as an index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Maps token id text to [`AssetId`] and back.
#[derive(Debug, Default)]
pub struct AssetInterner {
    names: Vec<Box<str>>,
    /// Next entry with the same key (collision chain), `u32::MAX` for none.
    next_same_key: Vec<u32>,
    by_key: FxHashMap<u64, u32>,
}

const NONE: u32 = u32::MAX;

#[inline]
fn key_of(token: &[u8]) -> u64 {
    // Length plus the last 16 bytes (or all of a short id), folded with one multiply each.
    let n = token.len();
    let tail = &token[n.saturating_sub(16)..];
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    let split = tail.len().min(8);
    a[..split].copy_from_slice(&tail[..split]);
    b[..tail.len() - split].copy_from_slice(&tail[split..]);
    let x = u64::from_le_bytes(a) ^ (n as u64).rotate_left(56);
    let y = u64::from_le_bytes(b);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ y).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

impl AssetInterner {
    /// An empty interner.
    pub fn new() -> AssetInterner {
        AssetInterner::default()
    }

    /// Number of interned ids.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Looks a token up without interning it. Allocation-free.
    #[inline]
    pub fn get(&self, token: &str) -> Option<AssetId> {
        let mut idx = *self.by_key.get(&key_of(token.as_bytes()))?;
        while idx != NONE {
            if &*self.names[idx as usize] == token {
                return Some(AssetId(idx));
            }
            idx = self.next_same_key[idx as usize];
        }
        None
    }

    /// Interns a token, returning its existing id when already known.
    pub fn intern(&mut self, token: &str) -> AssetId {
        if let Some(id) = self.get(token) {
            return id;
        }
        let idx = self.names.len() as u32;
        self.names.push(token.into());
        let key = key_of(token.as_bytes());
        let prev = self.by_key.insert(key, idx).unwrap_or(NONE);
        self.next_same_key.push(prev);
        AssetId(idx)
    }

    /// The token text of an id.
    pub fn name(&self, id: AssetId) -> Option<&str> {
        self.names.get(id.index()).map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_and_resolves() {
        let mut i = AssetInterner::new();
        let a = i.intern(
            "76670567130917723816490572615540605537878462672464291990940067659127658071111",
        );
        let b = i.intern(
            "54179564009642723353355316176091991063553046330768303687769988635499280029688",
        );
        assert_ne!(a, b);
        assert_eq!(
            i.intern(
                "76670567130917723816490572615540605537878462672464291990940067659127658071111"
            ),
            a
        );
        assert_eq!(i.get("1111"), None);
        let c = i.intern("1111");
        assert_eq!(i.name(c), Some("1111"));
        assert_eq!(i.len(), 3);
    }

    #[test]
    fn same_key_collisions_resolve_by_full_text() {
        // Same length and same last 16 bytes: identical keys, different tokens.
        let mut i = AssetInterner::new();
        let a = i.intern("10000000000000000000000000000000001234567890123456");
        let b = i.intern("20000000000000000000000000000000001234567890123456");
        assert_ne!(a, b);
        assert_eq!(
            i.get("10000000000000000000000000000000001234567890123456"),
            Some(a)
        );
        assert_eq!(
            i.get("20000000000000000000000000000000001234567890123456"),
            Some(b)
        );
        assert_eq!(
            i.get("30000000000000000000000000000000001234567890123456"),
            None
        );
    }
}
