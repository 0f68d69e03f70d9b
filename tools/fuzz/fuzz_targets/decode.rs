//! Fuzz target: arbitrary bytes → `Decoder::decode` → `OrderBook::apply`.
//!
//! The input is split on the ASCII record separator (0x1E) into consecutive text frames of
//! one connection, so book state carries across frames (a snapshot, then deltas, then a
//! broken frame…). Every record is applied to its asset's book with per-entry hash checks,
//! and each book's ladders are checked sorted with non-zero sizes after every record.
//! A crash is either a panic in the foundation or a broken book invariant.
//!
//! Run from the repository root: `cargo +nightly fuzz run --fuzz-dir tools/fuzz decode`
//! (see `tools/fuzz/README.md`).

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use polypy::market::{AssetId, AssetInterner};
use polypy::orderbook::{BookMeta, CheckContext, CheckMode, OrderBook, UntrustReason};
use polypy::venue::{DecodeOutput, Decoder};

fn check_sorted(book: &OrderBook) {
    let bids = book.bids().wire_order();
    let asks = book.asks().wire_order();
    assert!(bids.windows(2).all(|w| w[0].price < w[1].price));
    assert!(asks.windows(2).all(|w| w[0].price > w[1].price));
    assert!(bids.iter().chain(asks).all(|l| !l.size.is_zero()));
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    let mut interner = AssetInterner::new();
    let mut out = DecodeOutput::default();
    let mut books: HashMap<AssetId, OrderBook> = HashMap::new();
    let mut ctx = CheckContext::new(CheckMode::EveryEntry);
    for (i, frame) in data.split(|&b| b == 0x1E).enumerate() {
        out.clear();
        let (_, stats) = decoder.decode(frame, i as u64, &mut interner, &mut out);
        assert_eq!(stats.records as usize, out.records.len());
        for rec in &out.records {
            let name = interner.name(rec.asset).unwrap_or("").to_string();
            let book = books
                .entry(rec.asset)
                .or_insert_with(|| OrderBook::new(BookMeta::new(&name, "0x00")));
            book.apply(rec, &mut ctx);
            check_sorted(book);
        }
        for failure in &out.failures {
            for asset in &failure.assets {
                if let Some(book) = books.get_mut(asset) {
                    book.mark_untrusted(UntrustReason::DataLoss);
                }
            }
        }
    }
    for book in books.values_mut() {
        book.settle(&mut ctx);
        check_sorted(book);
        let _ = ctx.hasher.hex(book, book.last_timestamp());
    }
});
