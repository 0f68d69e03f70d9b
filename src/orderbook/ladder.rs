//! One side of a book: a sorted vector whose best level is always the last element.
//!
//! Bids are stored ascending and asks descending, the venue's own wire order, so a snapshot
//! is appended as it arrives, the best level is `last()` (O(1)), the hash walks the vector
//! front to back, and most updates (which cluster at the touch) move few elements.
//! `ASK` selects the ordering at compile time. Measured against a BTreeMap and dense arrays
//! in `docs/machine-reference.md` §4 and in `benches/orderbook.rs`.

use crate::market::{Price, Size};

/// One price level.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Level {
    /// Price.
    pub price: Price,
    /// Aggregate size, never zero inside a ladder.
    pub size: Size,
}

/// One side of a book; `ASK == false` for bids (ascending), `true` for asks (descending).
#[derive(Clone, Debug, Default)]
pub struct Ladder<const ASK: bool> {
    levels: Vec<Level>,
}

impl<const ASK: bool> Ladder<ASK> {
    /// An empty side.
    pub const fn new() -> Self {
        Ladder { levels: Vec::new() }
    }

    /// True when `a` sorts before `b` in storage order (worse price first).
    #[inline]
    fn before(a: Price, b: Price) -> bool {
        if ASK { a > b } else { a < b }
    }

    #[inline]
    fn search(&self, price: Price) -> Result<usize, usize> {
        // Updates cluster at the touch, i.e. at the end of the vector: check it first.
        let n = self.levels.len();
        if n == 0 {
            return Err(0);
        }
        let last = self.levels[n - 1].price;
        if last == price {
            return Ok(n - 1);
        }
        if Self::before(last, price) {
            return Err(n);
        }
        self.levels[..n - 1].binary_search_by(|l| {
            if l.price == price {
                std::cmp::Ordering::Equal
            } else if Self::before(l.price, price) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
    }

    /// Sets the level at `price` to `size`; a zero size removes it. Returns the size the
    /// level had before (zero when it did not exist).
    #[inline]
    pub fn set(&mut self, price: Price, size: Size) -> Size {
        match self.search(price) {
            Ok(i) => {
                let old = self.levels[i].size;
                if size.is_zero() {
                    self.levels.remove(i);
                } else {
                    self.levels[i].size = size;
                }
                old
            }
            Err(i) => {
                if !size.is_zero() {
                    self.levels.insert(i, Level { price, size });
                }
                Size::ZERO
            }
        }
    }

    /// Appends a snapshot level; falls back to [`Ladder::set`] if the venue's order is broken.
    #[inline]
    pub fn push_snapshot_level(&mut self, price: Price, size: Size) {
        match self.levels.last() {
            Some(last) if !Self::before(last.price, price) => {
                self.set(price, size);
            }
            _ if size.is_zero() => {}
            _ => self.levels.push(Level { price, size }),
        }
    }

    /// Removes every level, keeping the allocation.
    pub fn clear(&mut self) {
        self.levels.clear();
    }

    /// The best level.
    #[inline]
    pub fn best(&self) -> Option<Level> {
        self.levels.last().copied()
    }

    /// Number of levels.
    #[inline]
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True when the side is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Levels in the venue's wire order (worst first).
    #[inline]
    pub fn wire_order(&self) -> &[Level] {
        &self.levels
    }

    /// Levels best first.
    pub fn best_first(&self) -> impl Iterator<Item = Level> + '_ {
        self.levels.iter().rev().copied()
    }

    /// Size at a price.
    pub fn size_at(&self, price: Price) -> Size {
        match self.search(price) {
            Ok(i) => self.levels[i].size,
            Err(_) => Size::ZERO,
        }
    }

    /// Sum of all sizes, in raw units.
    pub fn total_size(&self) -> u128 {
        self.levels.iter().map(|l| u128::from(l.size.raw())).sum()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.levels.capacity() * std::mem::size_of::<Level>()
    }

    /// Releases spare capacity beyond twice the current length (after a large snapshot
    /// shrinks), keeping typical books small.
    pub fn trim(&mut self) {
        if self.levels.capacity() > 2 * self.levels.len() + 8 {
            self.levels.shrink_to(self.levels.len() + 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: u32) -> Price {
        Price::from_raw(raw).unwrap()
    }

    #[test]
    fn bids_ascend_and_best_is_last() {
        let mut b: Ladder<false> = Ladder::new();
        b.set(p(400_000), Size::from_raw(1));
        b.set(p(500_000), Size::from_raw(2));
        b.set(p(450_000), Size::from_raw(3));
        let prices: Vec<u32> = b.wire_order().iter().map(|l| l.price.raw()).collect();
        assert_eq!(prices, vec![400_000, 450_000, 500_000]);
        assert_eq!(b.best().unwrap().price, p(500_000));
        b.set(p(500_000), Size::ZERO);
        assert_eq!(b.best().unwrap().price, p(450_000));
        assert_eq!(b.set(p(1), Size::ZERO), Size::ZERO);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn asks_descend_and_best_is_last() {
        let mut a: Ladder<true> = Ladder::new();
        for raw in [600_000, 550_000, 700_000, 520_000] {
            a.set(p(raw), Size::from_raw(1));
        }
        let prices: Vec<u32> = a.wire_order().iter().map(|l| l.price.raw()).collect();
        assert_eq!(prices, vec![700_000, 600_000, 550_000, 520_000]);
        assert_eq!(a.best_first().next().unwrap().price, p(520_000));
    }

    #[test]
    fn snapshot_levels_out_of_order_still_sort() {
        let mut b: Ladder<false> = Ladder::new();
        b.push_snapshot_level(p(3), Size::from_raw(1));
        b.push_snapshot_level(p(1), Size::from_raw(1));
        b.push_snapshot_level(p(2), Size::from_raw(1));
        b.push_snapshot_level(p(2), Size::from_raw(5));
        let prices: Vec<u32> = b.wire_order().iter().map(|l| l.price.raw()).collect();
        assert_eq!(prices, vec![1, 2, 3]);
        assert_eq!(b.size_at(p(2)), Size::from_raw(5));
    }
}
