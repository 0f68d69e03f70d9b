use super::*;
use crate::market::{FieldUpdate, Price, Size};
use crate::orderbook::{CheckContext, CheckMode};

fn p(raw: u32) -> Price {
    Price::from_raw(raw).unwrap_or_default()
}

fn book_with(levels: usize) -> OrderBook {
    let mut book = OrderBook::new(BookMeta::new("123", "0xabc"));
    let mut ctx = CheckContext::new(CheckMode::Off);
    let rec = |event| Record {
        asset: AssetId(0),
        exchange_ts: 1000,
        received_ns: 0,
        event,
    };
    book.apply(
        &rec(Event::BookBegin {
            bids: levels as u16,
            asks: 0,
            tick_size: Some(p(10_000)),
            last_trade: FieldUpdate::Clear,
        }),
        &mut ctx,
    );
    for i in 0..levels {
        book.apply(
            &rec(Event::Level {
                side: Side::Bid,
                price: p(10_000 * (i as u32 + 1)),
                size: Size::from_raw(1_000_000),
            }),
            &mut ctx,
        );
    }
    book.apply(&rec(Event::BookEnd { hash: None }), &mut ctx);
    book
}

struct One<'a>(&'a OrderBook);
impl BookLookup for One<'_> {
    fn book(&self, asset: AssetId) -> Option<&OrderBook> {
        (asset == AssetId(0)).then_some(self.0)
    }
}

fn change(size: u64) -> Record {
    Record {
        asset: AssetId(0),
        exchange_ts: 1001,
        received_ns: 5,
        event: Event::Change {
            side: Side::Bid,
            price: p(10_000),
            size: Size::from_raw(size),
            hash: None,
            bbo: Default::default(),
        },
    }
}

fn drain(c: &mut FeedConsumer) -> Vec<FeedEvent> {
    let mut v = Vec::new();
    while let Some(item) = c.pop() {
        if let FeedItem::Event(e) = item {
            v.push(e);
        }
    }
    v
}

#[test]
fn seq_grows_by_one_and_a_full_ring_gaps_then_repairs_with_a_snapshot() {
    let wake = Arc::new(FeedWake::default());
    let (feed, factory, mut consumers) = Feed::new(1, 8, crate::worker::noop_factory(), wake);
    let mut h = factory(0);
    let book = book_with(3);
    let end = Record {
        asset: AssetId(0),
        exchange_ts: 1000,
        received_ns: 77,
        event: Event::BookEnd { hash: None },
    };
    h.on_snapshot_record(AssetId(0), &end, &book);
    h.on_change(AssetId(0), &change(2), &book);
    let got = drain(&mut consumers[0]);
    // meta is not an event; snapshot head + 3 levels + one change.
    assert_eq!(got.len(), 5);
    assert!(matches!(
        got[0].kind,
        FeedKind::Snapshot {
            bids: 3,
            repair: false,
            ..
        }
    ));
    assert_eq!(got[0].seq, 1);
    assert_eq!(got[0].recv_ns, 77);
    assert_eq!(got[1].recv_ns, 77, "levels carry the head's stamps");
    assert_eq!(got[4].seq, 2);
    assert_eq!(got[4].recv_ns, 5);
    // Fill the ring: 8 changes fit, the 9th and 10th are dropped (one gap).
    for _ in 0..10 {
        h.on_change(AssetId(0), &change(3), &book);
    }
    let s = feed.stats();
    assert_eq!(s.gaps, 1);
    assert_eq!(s.events_dropped, 2);
    let got = drain(&mut consumers[0]);
    assert_eq!(got.len(), 8);
    assert_eq!(got.last().map(|e| e.seq), Some(10));
    // The next chunk end repairs with a snapshot (seq 11), then events resume at 12.
    h.on_flush(&One(&book));
    h.on_change(AssetId(0), &change(4), &book);
    let got = drain(&mut consumers[0]);
    assert!(matches!(
        got[0].kind,
        FeedKind::Snapshot { repair: true, .. }
    ));
    assert_eq!(got[0].seq, 11);
    assert_eq!(got.last().map(|e| e.seq), Some(12));
    assert_eq!(feed.stats().repairs, 1);
}

#[test]
fn a_book_larger_than_the_ring_is_counted_not_published() {
    let wake = Arc::new(FeedWake::default());
    let (feed, factory, mut consumers) = Feed::new(1, 4, crate::worker::noop_factory(), wake);
    let mut h = factory(0);
    let book = book_with(10);
    h.on_snapshot(AssetId(0), &book);
    assert!(drain(&mut consumers[0]).is_empty());
    assert!(feed.stats().oversized >= 1);
}

#[test]
fn a_removed_book_is_announced_and_starts_over_when_added_again() {
    let wake = Arc::new(FeedWake::default());
    let (_feed, factory, mut consumers) = Feed::new(1, 64, crate::worker::noop_factory(), wake);
    let mut h = factory(0);
    let book = book_with(1);
    h.on_snapshot(AssetId(0), &book);
    h.on_remove(AssetId(0));
    let got = drain(&mut consumers[0]);
    assert_eq!(
        got.last().map(|e| (e.kind, e.seq)),
        Some((FeedKind::Removed, 2))
    );
    h.on_snapshot(AssetId(0), &book);
    let mut metas = 0;
    while let Some(item) = consumers[0].pop() {
        match item {
            FeedItem::Meta { .. } => metas += 1,
            FeedItem::Event(e) => assert_eq!(e.seq, 1),
        }
    }
    assert_eq!(metas, 1, "the metadata is sent again");
}
