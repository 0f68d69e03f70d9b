//! Router + book workers, end to end on real threads and rings.
//!
//! Every wait polls with a deadline; workers idle by parking (1 ms) so a 2-core CI machine is
//! never starved, and every test stops the workers it started.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on setup errors"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use polypy::handoff::{Router, WorkItem, worker_for_token};
use polypy::market::{
    AssetId, AssetInterner, Bbo, BookHash, Event, FieldUpdate, Price, Record, Side, Size,
};
use polypy::orderbook::{BookMeta, CheckContext, CheckMode, OrderBook, UntrustReason};
use polypy::pinning::CorePlacement;
use polypy::venue::{DecodeOutput, Decoder};
use polypy::worker::{
    BookWorker, Handler, HandlerFactory, IdleStrategy, NoopHandler, PoolConfig, QueryError,
    ResyncRequest, ResyncSink, WorkerConfig, WorkerHandle, spawn_workers,
};
use rtrb::RingBuffer;

const MARKET: &str = "0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917";
const DEADLINE: Duration = Duration::from_secs(5);

fn test_config() -> WorkerConfig {
    WorkerConfig {
        check_mode: CheckMode::Settled,
        idle: IdleStrategy::Backoff {
            spin: Duration::ZERO,
            yield_for: Duration::from_micros(50),
            park: Duration::from_millis(1),
        },
        settle_after: Duration::from_millis(10),
        stats_interval: Duration::from_millis(5),
        ..WorkerConfig::default()
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn p(s: &str) -> Price {
    Price::parse(s.as_bytes()).unwrap()
}

fn sz(s: &str) -> Size {
    Size::parse(s.as_bytes()).unwrap()
}

fn token(n: u32) -> String {
    format!("7132104567925221259462638553270691275033272857194253228963137931245558{n:07}")
}

fn meta(n: u32) -> BookMeta {
    BookMeta::new(&token(n), MARKET)
}

/// Records of a `book` snapshot; levels best first per side.
fn snapshot(
    asset: AssetId,
    ts: u64,
    bids: &[(&str, &str)],
    asks: &[(&str, &str)],
    hash: Option<BookHash>,
) -> Vec<Record> {
    let rec = |event| Record {
        asset,
        exchange_ts: ts,
        received_ns: polypy::worker::now_ns(),
        event,
    };
    let mut v = vec![rec(Event::BookBegin {
        bids: bids.len() as u16,
        asks: asks.len() as u16,
        tick_size: Some(p("0.01")),
        last_trade: FieldUpdate::Keep,
    })];
    // Wire order: bids ascending, asks descending (worst first).
    for (price, size) in bids.iter().rev() {
        v.push(rec(Event::Level {
            side: Side::Bid,
            price: p(price),
            size: sz(size),
        }));
    }
    for (price, size) in asks.iter().rev() {
        v.push(rec(Event::Level {
            side: Side::Ask,
            price: p(price),
            size: sz(size),
        }));
    }
    v.push(rec(Event::BookEnd { hash }));
    v
}

fn change(
    asset: AssetId,
    ts: u64,
    side: Side,
    price: &str,
    size: &str,
    hash: Option<BookHash>,
    bbo: Bbo,
) -> Record {
    Record {
        asset,
        exchange_ts: ts,
        received_ns: polypy::worker::now_ns(),
        event: Event::Change {
            side,
            price: p(price),
            size: sz(size),
            hash,
            bbo,
        },
    }
}

fn bbo(bid: &str, ask: &str) -> Bbo {
    Bbo {
        bid: FieldUpdate::Set(p(bid)),
        ask: FieldUpdate::Set(p(ask)),
    }
}

/// A reference book fed the same records without checks, to compute the venue's hashes.
struct Reference {
    book: OrderBook,
    ctx: CheckContext,
}

impl Reference {
    fn new(meta: BookMeta) -> Reference {
        Reference {
            book: OrderBook::new(meta),
            ctx: CheckContext::new(CheckMode::Off),
        }
    }

    fn apply(&mut self, recs: &[Record]) {
        for r in recs {
            self.book.apply(r, &mut self.ctx);
        }
    }

    fn hash(&mut self, ts: u64) -> BookHash {
        self.ctx.hasher.prefix(&self.book, ts)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Snapshot(AssetId),
    Change(AssetId, Price),
    Trade(AssetId),
    TickSize(AssetId),
    Trust(AssetId, bool, Option<UntrustReason>),
}

struct Recorder(Sender<Seen>);

impl Handler for Recorder {
    fn on_snapshot(&mut self, asset: AssetId, _book: &OrderBook) {
        let _ = self.0.send(Seen::Snapshot(asset));
    }
    fn on_change(&mut self, asset: AssetId, rec: &Record, _book: &OrderBook) {
        if let Event::Change { price, .. } = rec.event {
            let _ = self.0.send(Seen::Change(asset, price));
        }
    }
    fn on_trade(&mut self, asset: AssetId, _rec: &Record, _book: &OrderBook) {
        let _ = self.0.send(Seen::Trade(asset));
    }
    fn on_tick_size(&mut self, asset: AssetId, _rec: &Record, _book: &OrderBook) {
        let _ = self.0.send(Seen::TickSize(asset));
    }
    fn on_trust_change(&mut self, asset: AssetId, trusted: bool, reason: Option<UntrustReason>) {
        let _ = self.0.send(Seen::Trust(asset, trusted, reason));
    }
}

/// One worker on one ring, with a router in front, a recording handler and a resync channel.
struct Rig {
    router: Router,
    handle: WorkerHandle,
    shutdown: Arc<AtomicBool>,
    seen: Receiver<Seen>,
    resync: Receiver<ResyncRequest>,
    resync_list: Vec<AssetId>,
}

impl Rig {
    fn start(config: WorkerConfig, ring: usize, handler: Option<Box<dyn Handler>>) -> Rig {
        let (p, c) = RingBuffer::new(ring);
        let (seen_tx, seen) = crossbeam_channel::unbounded();
        let (resync_tx, resync) = crossbeam_channel::bounded(64);
        let shutdown = Arc::new(AtomicBool::new(false));
        let handler = handler.unwrap_or_else(|| Box::new(Recorder(seen_tx)));
        let worker = BookWorker::new(
            0,
            c,
            config,
            handler,
            ResyncSink::new(resync_tx),
            Arc::clone(&shutdown),
        );
        let handle = worker.spawn().unwrap();
        let mut router = Router::new(vec![p]);
        router.set_unparkers(vec![handle.unparker()]);
        Rig {
            router,
            handle,
            shutdown,
            seen,
            resync,
            resync_list: Vec::new(),
        }
    }

    fn send(&mut self, recs: &[Record]) {
        for r in recs {
            self.router.route(*r).unwrap();
        }
        self.router.flush(&mut self.resync_list);
    }

    fn add(&mut self, n: u32) -> AssetId {
        let asset = AssetId(n);
        self.router.register(asset, 0).unwrap();
        self.router
            .send_control(
                0,
                WorkItem::AddBook {
                    asset,
                    meta: Box::new(meta(n)),
                },
            )
            .unwrap();
        asset
    }

    fn processed(&self) -> u64 {
        self.handle.stats().messages_processed()
    }

    fn wait_processed(&self, n: u64) {
        wait_until(&format!("{n} items processed"), || self.processed() >= n);
    }

    fn next_seen(&self) -> Seen {
        self.seen.recv_timeout(DEADLINE).expect("handler event")
    }

    fn stop(self) {
        self.shutdown.store(true, Ordering::Release);
        self.handle.unpark();
        self.handle.join().unwrap();
    }
}

#[test]
fn routing_is_stable_and_splits_a_multi_asset_price_change() {
    // Two tokens of one market that hash to different workers of two.
    let a = token(1);
    let b = (2..100)
        .map(token)
        .find(|t| worker_for_token(t, 2) != worker_for_token(&a, 2))
        .unwrap();
    assert_eq!(worker_for_token(&a, 2), worker_for_token(&a.clone(), 2));

    let frame = format!(
        r#"{{"event_type":"price_change","market":"{MARKET}","timestamp":"1703875201000","price_changes":[
        {{"asset_id":"{a}","price":"0.51","side":"BUY","size":"150","best_bid":"0.51","best_ask":"0.52"}},
        {{"asset_id":"{b}","price":"0.49","side":"SELL","size":"150","best_bid":"0.48","best_ask":"0.49"}}]}}"#
    );
    let mut interner = AssetInterner::new();
    let mut out = DecodeOutput::default();
    Decoder::new().decode(frame.as_bytes(), 1, &mut interner, &mut out);
    assert_eq!(out.records.len(), 2, "{:?}", out.failures);

    let (p0, mut c0) = RingBuffer::new(8);
    let (p1, mut c1) = RingBuffer::new(8);
    let mut router = Router::new(vec![p0, p1]);
    for t in [&a, &b] {
        let id = interner.get(t).unwrap();
        router.register(id, router.worker_for_token(t)).unwrap();
    }
    for r in &out.records {
        router.route(*r).unwrap();
    }
    let mut resync = Vec::new();
    let report = router.flush(&mut resync);
    assert_eq!((report.pushed, report.dropped), (2, 0));

    let consumers = [&mut c0, &mut c1];
    let wa = worker_for_token(&a, 2);
    let (ca, cb) = if wa == 0 {
        (consumers[0].pop(), consumers[1].pop())
    } else {
        (consumers[1].pop(), consumers[0].pop())
    };
    assert!(matches!(ca, Ok(WorkItem::Record(r)) if r.asset == interner.get(&a).unwrap()));
    assert!(matches!(cb, Ok(WorkItem::Record(r)) if r.asset == interner.get(&b).unwrap()));
    assert_eq!(router.stats().snapshot().batches_sent, 2);
}

#[test]
fn a_full_ring_drops_marks_untrusted_and_reports_resync() {
    let (p, c) = RingBuffer::new(8);
    let mut router = Router::new(vec![p]);
    let asset = AssetId(3);
    router.register(asset, 0).unwrap();
    router
        .send_control(
            0,
            WorkItem::AddBook {
                asset,
                meta: Box::new(meta(3)),
            },
        )
        .unwrap();
    for r in snapshot(asset, 10, &[("0.48", "10")], &[("0.52", "10")], None) {
        router.route(r).unwrap();
    }
    for ts in 11..17 {
        router
            .route(change(
                asset,
                ts,
                Side::Bid,
                "0.47",
                &format!("{ts}"),
                None,
                Bbo::default(),
            ))
            .unwrap();
    }
    // The worker is not running yet: 5 control/snapshot items + 3 changes fit, 3 are dropped,
    // and flush returns at once.
    let mut resync = Vec::new();
    let t0 = Instant::now();
    let report = router.flush(&mut resync);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!((report.pushed, report.dropped), (8, 3));
    assert_eq!(resync, vec![asset]);
    let rs = router.stats().snapshot();
    assert_eq!(
        (
            rs.messages_dropped,
            rs.queue_full_events,
            rs.queue_depths[0]
        ),
        (3, 1, 8)
    );

    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let (resync_tx, resync_rx) = crossbeam_channel::bounded(8);
    let shutdown = Arc::new(AtomicBool::new(false));
    let worker = BookWorker::new(
        0,
        c,
        test_config(),
        Box::new(Recorder(seen_tx)),
        ResyncSink::new(resync_tx),
        Arc::clone(&shutdown),
    );
    let handle = worker.spawn().unwrap();
    router.set_unparkers(vec![handle.unparker()]);
    wait_until("first 8 items", || handle.stats().messages_processed() == 8);
    assert!(handle.query(asset, 5, DEADLINE).unwrap().unwrap().trusted);

    // A later record: the DataLoss marker goes first, so it is never applied to the gapped book.
    router
        .route(change(
            asset,
            20,
            Side::Bid,
            "0.46",
            "1",
            None,
            Bbo::default(),
        ))
        .unwrap();
    resync.clear();
    let report = router.flush(&mut resync);
    assert_eq!((report.pushed, report.dropped), (2, 0));
    assert!(resync.is_empty());
    wait_until("marker and record", || {
        handle.stats().messages_processed() == 10
    });

    let view = handle.query(asset, 5, DEADLINE).unwrap().unwrap();
    assert!(!view.trusted);
    assert_eq!(view.reason, Some(UntrustReason::DataLoss));
    assert_eq!(view.bids.len(), 2, "0.48 and 0.47; 0.46 was not applied");
    let s = handle.stats().snapshot();
    assert_eq!(
        (
            s.data_loss_marks,
            s.skipped_untrusted,
            s.untrusted.data_loss
        ),
        (1, 1, 1)
    );
    assert_eq!(
        s.resync_requests_sent, 0,
        "the router already reported the asset"
    );
    assert!(resync_rx.try_recv().is_err());
    let events: Vec<Seen> = seen.try_iter().collect();
    assert_eq!(events.first(), Some(&Seen::Snapshot(asset)));
    assert_eq!(
        events.last(),
        Some(&Seen::Trust(asset, false, Some(UntrustReason::DataLoss)))
    );

    shutdown.store(true, Ordering::Release);
    handle.unpark();
    handle.join().unwrap();
}

#[test]
fn worker_applies_decoded_snapshot_and_deltas_with_matching_hashes() {
    let mut rig = Rig::start(test_config(), 256, None);
    let mut interner = AssetInterner::new();
    let tok = token(7);
    let asset = interner.intern(&tok);
    rig.router.register(asset, 0).unwrap();
    rig.router
        .send_control(
            0,
            WorkItem::AddBook {
                asset,
                meta: Box::new(BookMeta::new(&tok, MARKET)),
            },
        )
        .unwrap();

    // Frames built with the venue's real hashes (computed on a reference book).
    let mut reference = Reference::new(BookMeta::new(&tok, MARKET));
    let book_frame = |hash: &str| {
        format!(
            r#"{{"event_type":"book","asset_id":"{tok}","market":"{MARKET}","timestamp":"1000","hash":"{hash}","tick_size":"0.01",
            "bids":[{{"price":"0.48","size":"30"}},{{"price":"0.49","size":"20"}}],
            "asks":[{{"price":"0.52","size":"25"}},{{"price":"0.51","size":"10"}}]}}"#
        )
    };
    let mut out = DecodeOutput::default();
    let mut decoder = Decoder::new();
    decoder.decode(book_frame("").as_bytes(), 1, &mut interner, &mut out);
    reference.apply(&out.records);
    let hash = reference.ctx.hasher.hex(&reference.book, 1000);
    out.clear();
    decoder.decode(
        book_frame(&hash).as_bytes(),
        polypy::worker::now_ns(),
        &mut interner,
        &mut out,
    );

    let entries = [
        ("1001", "BUY", "0.50", "5"),
        ("1002", "SELL", "0.51", "0"),
        ("1003", "BUY", "0.48", "0"),
    ];
    let mut frames = Vec::new();
    for (ts, side, price, size) in entries {
        let side_e = if side == "BUY" { Side::Bid } else { Side::Ask };
        let ts_n: u64 = ts.parse().unwrap();
        reference.apply(&[change(
            asset,
            ts_n,
            side_e,
            price,
            size,
            None,
            Bbo::default(),
        )]);
        let h = reference.ctx.hasher.hex(&reference.book, ts_n);
        let bb = reference.book.best_bid().unwrap().price;
        let ba = reference.book.best_ask().unwrap().price;
        frames.push(format!(
            r#"[{{"event_type":"price_change","market":"{MARKET}","timestamp":"{ts}","price_changes":[{{"asset_id":"{tok}","price":"{price}","side":"{side}","size":"{size}","hash":"{h}","best_bid":"{bb}","best_ask":"{ba}"}}]}}]"#
        ));
    }
    for f in &frames {
        decoder.decode(
            f.as_bytes(),
            polypy::worker::now_ns(),
            &mut interner,
            &mut out,
        );
    }
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let records = std::mem::take(&mut out.records);
    rig.send(&records);
    let total = 1 + records.len() as u64;
    rig.wait_processed(total);

    let view = rig.handle.query(asset, 10, DEADLINE).unwrap().unwrap();
    assert!(view.trusted, "{:?}", view.reason);
    let levels = |ls: &[polypy::orderbook::Level]| {
        ls.iter()
            .map(|l| (l.price.to_text(), l.size.to_text()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        levels(&view.bids),
        vec![("0.5".into(), "5".into()), ("0.49".into(), "20".into())]
    );
    assert_eq!(levels(&view.asks), vec![("0.52".into(), "25".into())]);
    assert_eq!(view.hash, reference.ctx.hasher.hex(&reference.book, 1003));
    assert_eq!(
        (view.update_count, view.timestamp, view.asset_id.as_str()),
        (3, 1003, tok.as_str())
    );
    assert!(
        serde_json::to_string(&view)
            .unwrap()
            .contains(r#""price":"0.5""#)
    );

    // The last group settles on the timer; every check passed.
    wait_until("three settled groups", || {
        rig.handle.stats().snapshot().groups_settled == 3
    });
    let s = rig.handle.stats().snapshot();
    assert_eq!(
        (
            s.snapshot_hash_matched,
            s.hash_matched,
            s.hash_mismatched,
            s.bbo_mismatches
        ),
        (1, 3, 0, 0)
    );
    assert_eq!(
        (
            s.updates_applied,
            s.snapshots_received,
            s.orderbook_count,
            s.trusted_books
        ),
        (3, 1, 1, 1)
    );
    assert!(s.latency.count >= 7 && s.latency.max_ns > 0);
    assert!(s.processing.count >= 1);
    wait_until("memory gauge", || {
        rig.handle.stats().snapshot().memory_usage > 0
    });
    assert_eq!(rig.handle.query(AssetId(999), 10, DEADLINE).unwrap(), None);
    rig.stop();
}

#[test]
fn handler_callbacks_fire_in_order_with_trust_transitions() {
    let mut rig = Rig::start(test_config(), 256, None);
    let a = rig.add(1);
    rig.send(&snapshot(a, 100, &[("0.40", "1")], &[("0.60", "1")], None));
    assert_eq!(rig.next_seen(), Seen::Snapshot(a));
    assert_eq!(rig.next_seen(), Seen::Trust(a, true, None));

    rig.send(&[change(
        a,
        101,
        Side::Bid,
        "0.45",
        "2",
        None,
        bbo("0.45", "0.6"),
    )]);
    assert_eq!(rig.next_seen(), Seen::Change(a, p("0.45")));
    let trade = Record {
        asset: a,
        exchange_ts: 102,
        received_ns: 0,
        event: Event::Trade {
            price: polypy::market::QuotedPrice::parse(b"0.45").unwrap(),
            size: sz("1"),
            side: Side::Bid,
        },
    };
    let tick = Record {
        asset: a,
        exchange_ts: 103,
        received_ns: 0,
        event: Event::TickSize {
            old: p("0.01"),
            new: p("0.001"),
        },
    };
    rig.send(&[trade, tick]);
    assert_eq!(rig.next_seen(), Seen::Trade(a));
    assert_eq!(rig.next_seen(), Seen::TickSize(a));
    assert_eq!(
        rig.next_seen(),
        Seen::Trust(a, false, Some(UntrustReason::TickSizeChange))
    );
    let req = rig.resync.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        (req.asset, req.reason, req.worker),
        (a, UntrustReason::TickSizeChange, 0)
    );

    // Deltas while untrusted are skipped silently; the next snapshot restores trust.
    rig.send(&[change(a, 104, Side::Bid, "0.46", "2", None, Bbo::default())]);
    rig.send(&snapshot(a, 105, &[("0.401", "1")], &[("0.6", "1")], None));
    assert_eq!(rig.next_seen(), Seen::Snapshot(a));
    assert_eq!(rig.next_seen(), Seen::Trust(a, true, None));
    // A re-snapshot of a trusted book reports the snapshot only.
    rig.send(&snapshot(a, 106, &[("0.402", "1")], &[("0.6", "1")], None));
    assert_eq!(rig.next_seen(), Seen::Snapshot(a));
    rig.wait_processed(1 + 4 + 1 + 2 + 1 + 4 + 4);
    assert!(rig.seen.try_recv().is_err());
    let s = rig.handle.stats().snapshot();
    assert_eq!(
        (
            s.skipped_untrusted,
            s.trades,
            s.tick_size_changes,
            s.untrusted.tick_size_change
        ),
        (1, 1, 1, 1)
    );
    rig.stop();
}

#[test]
fn hash_mismatch_untrusts_and_requests_resync() {
    let mut rig = Rig::start(test_config(), 256, None);
    let a = rig.add(2);
    let mut reference = Reference::new(meta(2));
    let snap = snapshot(a, 200, &[("0.40", "1")], &[("0.60", "1")], None);
    reference.apply(&snap);
    let good = reference.hash(200);
    rig.send(&snapshot(
        a,
        200,
        &[("0.40", "1")],
        &[("0.60", "1")],
        Some(good),
    ));
    assert_eq!(rig.next_seen(), Seen::Snapshot(a));
    assert_eq!(rig.next_seen(), Seen::Trust(a, true, None));

    // A correct delta, then one whose hash is wrong; the last group settles on the timer.
    let d1 = change(a, 201, Side::Ask, "0.55", "3", None, Bbo::default());
    reference.apply(&[d1]);
    let h1 = reference.hash(201);
    let d1 = change(a, 201, Side::Ask, "0.55", "3", Some(h1), bbo("0.4", "0.55"));
    let d2 = change(
        a,
        202,
        Side::Ask,
        "0.54",
        "3",
        Some(BookHash::from_digest(&[7; 8])),
        bbo("0.4", "0.54"),
    );
    rig.send(&[d1, d2]);
    let req = rig.resync.recv_timeout(DEADLINE).expect("resync request");
    assert_eq!((req.asset, req.reason), (a, UntrustReason::HashMismatch));
    assert_eq!(rig.next_seen(), Seen::Change(a, p("0.55")));
    assert_eq!(rig.next_seen(), Seen::Change(a, p("0.54")));
    assert_eq!(
        rig.next_seen(),
        Seen::Trust(a, false, Some(UntrustReason::HashMismatch))
    );
    let s = rig.handle.stats().snapshot();
    assert_eq!(
        (s.hash_matched, s.hash_mismatched, s.timer_settles),
        (1, 1, 1)
    );
    assert_eq!(
        (
            s.untrusted.hash_mismatch,
            s.resync_requests_sent,
            s.trusted_books
        ),
        (1, 1, 0)
    );
    let view = rig.handle.query(a, 1, DEADLINE).unwrap().unwrap();
    assert_eq!(view.reason, Some(UntrustReason::HashMismatch));
    rig.stop();
}

#[test]
fn heartbeat_advances_and_shutdown_stops_the_worker() {
    let rig = Rig::start(test_config(), 16, None);
    assert!(rig.handle.is_alive());
    let (beat, loops) = (
        rig.handle.stats().heartbeat_ns(),
        rig.handle.stats().loops(),
    );
    wait_until("heartbeat", || {
        rig.handle.stats().heartbeat_ns() > beat && rig.handle.stats().loops() > loops + 2
    });
    assert!(rig.handle.heartbeat_age() < Duration::from_secs(1));
    let stats = Arc::clone(rig.handle.stats());
    rig.stop();
    assert!(!stats.is_running());
}

#[test]
fn a_panicking_handler_makes_the_worker_not_alive() {
    struct Panics;
    impl Handler for Panics {
        fn on_snapshot(&mut self, _asset: AssetId, _book: &OrderBook) {
            panic!("handler bug (expected by the test)");
        }
    }
    let mut rig = Rig::start(test_config(), 64, Some(Box::new(Panics)));
    let a = rig.add(4);
    assert!(rig.handle.is_alive());
    rig.send(&snapshot(a, 1, &[("0.4", "1")], &[], None));
    wait_until("worker death", || !rig.handle.is_alive());
    assert!(!rig.handle.stats().is_running());
    assert!(matches!(
        rig.handle.query(a, 1, Duration::from_millis(200)),
        Err(QueryError::Disconnected { worker: 0 })
    ));
    let Rig { handle, .. } = rig;
    assert!(handle.join().is_err());
}

#[test]
fn pinning_to_an_impossible_core_falls_back_to_unpinned() {
    let config = WorkerConfig {
        placement: CorePlacement::Core(999),
        ..test_config()
    };
    let mut rig = Rig::start(config, 64, None);
    rig.add(5);
    rig.send(&[]);
    rig.wait_processed(1);
    let s = rig.handle.stats().snapshot();
    assert!(!s.pinned && s.core.is_none());
    assert_eq!(s.orderbook_count, 1);
    rig.stop();

    // A core this process may run on: pinned.
    let core = core_affinity::get_core_ids().unwrap()[0].id;
    let config = WorkerConfig {
        placement: CorePlacement::Core(core),
        ..test_config()
    };
    let rig = Rig::start(config, 64, None);
    wait_until("pinned", || rig.handle.stats().snapshot().pinned);
    assert_eq!(rig.handle.stats().snapshot().core, Some(core));
    rig.stop();
}

#[test]
fn queries_time_out_or_disconnect_when_nobody_answers() {
    let (_p, c) = RingBuffer::new(4);
    let worker = BookWorker::new(
        3,
        c,
        test_config(),
        Box::new(NoopHandler),
        ResyncSink::disabled(),
        Arc::new(AtomicBool::new(false)),
    );
    let querier = worker.querier();
    let t0 = Instant::now();
    assert_eq!(
        querier.query(AssetId(1), 5, Duration::from_millis(30)),
        Err(QueryError::Timeout { worker: 3 })
    );
    assert!(t0.elapsed() >= Duration::from_millis(30) && t0.elapsed() < DEADLINE);
    drop(worker);
    assert_eq!(
        querier.query(AssetId(1), 5, Duration::from_millis(30)),
        Err(QueryError::Disconnected { worker: 3 })
    );
}

#[test]
fn a_pool_shards_books_and_exits_when_the_router_is_dropped() {
    let (resync_tx, _resync_rx) = crossbeam_channel::bounded(16);
    let factory: HandlerFactory = polypy::worker::noop_factory();
    let cfg = PoolConfig {
        workers: 2,
        ring_capacity: 1024,
        worker: test_config(),
        ..PoolConfig::default()
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let (mut router, handles) =
        spawn_workers(&cfg, &factory, &ResyncSink::new(resync_tx), &shutdown).unwrap();
    let mut resync = Vec::new();
    for n in 0..20 {
        let asset = AssetId(n);
        router.add_book(asset, meta(n));
        for r in snapshot(asset, 1, &[("0.4", "1")], &[("0.6", "2")], None) {
            router.route(r).unwrap();
        }
    }
    router.flush(&mut resync);
    assert!(resync.is_empty());
    wait_until("20 trusted books", || {
        handles
            .iter()
            .map(|h| h.stats().snapshot().trusted_books)
            .sum::<u64>()
            == 20
    });
    let per_worker: Vec<u64> = handles
        .iter()
        .map(|h| h.stats().snapshot().orderbook_count)
        .collect();
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    for n in 0..20 {
        let asset = AssetId(n);
        let owner = router.worker_of(asset).unwrap();
        let view = handles[owner].query(asset, 1, DEADLINE).unwrap().unwrap();
        assert_eq!(view.worker, owner);
        assert_eq!(view.best_ask.unwrap().size, sz("2"));
        assert_eq!(handles[1 - owner].query(asset, 1, DEADLINE).unwrap(), None);
    }
    assert_eq!(router.stats().snapshot().messages_routed, 20 * 4);
    drop(router);
    for h in handles {
        wait_until("worker exit", || h.is_finished());
        h.join().unwrap();
    }
}
