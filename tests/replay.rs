//! The `polypy-replay` binary on the crossing-burst fixture and on a recording.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::process::Command;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polymarket")
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_polypy-replay"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn replay_reproduces_the_burst_final_book() {
    let input =
        fixtures().join("nautilus_trader__test_data__ws_market_price_change_crossing_burst.json");
    let dir = std::env::temp_dir().join(format!("polypy-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("books.json");
    let stdout = run(&[input.as_os_str(), "--dump-books".as_ref(), dump.as_os_str()]);
    assert!(stdout.contains("unexplained hash failures 0"), "{stdout}");
    assert!(
        stdout.contains("per entry      47 passed, 2 differed"),
        "{stdout}"
    );

    let msgs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
    let last = msgs.last().unwrap();
    let books: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let book = &books[last["asset_id"].as_str().unwrap()];
    assert_eq!(book["hash"], last["hash"]);
    assert_eq!(book["timestamp"], last["timestamp"]);
    assert_eq!(book["market"], last["market"]);
    assert_eq!(book["tick_size"], "0.001");
    // The dump is best first; the venue's message is worst first.
    let mut bids = last["bids"].as_array().unwrap().clone();
    bids.reverse();
    let mut asks = last["asks"].as_array().unwrap().clone();
    asks.reverse();
    assert_eq!(book["bids"], serde_json::Value::Array(bids));
    assert_eq!(book["asks"], serde_json::Value::Array(asks));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_reads_recordings_and_counts_failures() {
    let dir = std::env::temp_dir().join(format!("polypy-replay-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rec.jsonl");
    let mut w = polypy::recording::RecordingWriter::new(std::fs::File::create(&path).unwrap());
    let book = std::fs::read_to_string(
        fixtures().join("nautilus_trader__test_data__ws_book_snapshot_captured.json"),
    )
    .unwrap();
    w.write_frame(1, 0, &book).unwrap();
    w.write_frame(2, 0, "PONG").unwrap();
    w.write_frame(
        3,
        0,
        "{\"event_type\":\"price_change\",\"market\":\"0x1\",\"price_changes\":[",
    )
    .unwrap();
    w.flush().unwrap();
    drop(w);
    let stdout = run(&[path.as_os_str(), "--check".as_ref(), "settled".as_ref()]);
    assert!(stdout.contains("frames           3 (1 PONG)"), "{stdout}");
    assert!(stdout.contains("(0 unknown skipped, 1 failed)"), "{stdout}");
    assert!(
        stdout.contains("snapshots      1 passed, 0 failed"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
