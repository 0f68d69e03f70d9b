//! `--shard I/N`: which markets an instance follows when N instances split the venue.
//!
//! A market belongs to shard `fnv1a64(condition id) mod N`, where the condition id is taken as
//! the venue writes it, ASCII-lowercased (`0x…`), and FNV-1a is the 64-bit variant (offset
//! basis `0xcbf29ce484222325`, prime `0x100000001b3`). The hash is stable across versions,
//! machines and restarts, so N instances started with `--shard 0/N` … `--shard N-1/N` follow
//! every market exactly once, and all tokens of a market (they share its condition id) on the
//! same instance. Pure code, any thread.

use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count` (`index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// This instance's shard, from 0.
    pub index: u32,
    /// How many shards split the venue.
    pub count: u32,
}

/// A `--shard` value that is not `I/N` with `I < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard {0:?}: expected I/N with 0 <= I < N, e.g. 0/2")]
pub struct ShardError(pub String);

/// The shard hash: 64-bit FNV-1a of the ASCII-lowercased condition id.
pub fn market_hash(condition_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in condition_id.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Shard {
    /// The shard a market falls in, out of `count`.
    pub fn of(condition_id: &str, count: u32) -> u32 {
        (market_hash(condition_id) % u64::from(count.max(1))) as u32
    }

    /// True when this shard follows the market.
    pub fn owns(&self, condition_id: &str) -> bool {
        Shard::of(condition_id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError(s.to_string());
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits_every_market_once() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["", "3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // Stable: pinned values (documented in docs/scaling.md).
        assert_eq!(market_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(market_hash("0xAB"), market_hash("0xab"));
        assert_eq!(market_hash("0xab"), 0xa785_a9fa_fe52_9a5a);
        let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
        for m in 0..500 {
            let id = format!("0x{m:064x}");
            assert_eq!(shards.iter().filter(|s| s.owns(&id)).count(), 1);
        }
    }
}
