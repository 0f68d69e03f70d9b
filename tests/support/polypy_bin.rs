//! A `polypy` binary run by a test: spawned with HTTP on a free loopback port, read over
//! HTTP, stopped with SIGTERM (killed on drop). Its log goes to
//! `$TMPDIR/polypy-bin-<port>.log`, kept only when the test fails.

#![allow(dead_code, reason = "each test binary uses part of it")]
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    reason = "a test helper module; it fails loudly"
)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// (bids, asks, hash, timestamp) as text, bids/asks best first.
pub type Book = (Vec<(String, String)>, Vec<(String, String)>, String, String);

/// A running `polypy` binary; killed on drop.
pub struct Bin {
    child: std::process::Child,
    port: u16,
    stream_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Bin {
    pub fn spawn(args: &[&std::ffi::OsStr]) -> Bin {
        let (port, stream_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_polypy"))
            .args(args)
            .args(["--http-host", "127.0.0.1", "--http-port", &port.to_string()])
            .args(["--stream-port", &stream_port.to_string()])
            .args(["--idle", "park", "--no-pin", "--workers", "2"])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(std::env::temp_dir().join(format!("polypy-bin-{port}.log")))
                    .map_or_else(|_| std::process::Stdio::null(), Into::into),
            )
            .spawn()
            .unwrap();
        Bin {
            child,
            port,
            stream_port,
        }
    }

    /// Every asset's book as a stream client on `all` rebuilds it from the server's
    /// snapshots and deltas (`polypy::stream::books::ClientBooks`), once all are trusted and
    /// every check held; `None` after 20 s.
    pub fn stream_books(&self, assets: &[String]) -> Option<BTreeMap<String, Book>> {
        use polypy::stream::books::ClientBooks;
        use tungstenite::Message;
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.stream_port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_millis(50))).ok()?;
        let url = format!("ws://127.0.0.1:{}/ws", self.stream_port);
        let (mut ws, _) = tungstenite::client(url, tcp).ok()?;
        ws.send(Message::text(
            r#"{"op":"subscribe","channel":"book","all":true}"#,
        ))
        .ok()?;
        let mut books = ClientBooks::new();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        let mut hasher = polypy::orderbook::BookHasher::new();
        while std::time::Instant::now() < end {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
                    books.apply(&v);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
            let all = assets
                .iter()
                .all(|a| books.books.get(a).is_some_and(|b| b.trusted && b.in_sync));
            if all {
                let c = books.checks;
                assert_eq!(
                    (c.seq_gaps, c.hash_mismatches, c.orphans, c.malformed),
                    (0, 0, 0, 0),
                    "stream checks: {c:?}"
                );
                let t = |l: polypy::orderbook::Level| (l.price.to_text(), l.size.to_text());
                let mut out = BTreeMap::new();
                for a in assets {
                    let b = books.books[a].mirror.book();
                    let ts = b.last_timestamp();
                    let book = (
                        b.bids().best_first().map(t).collect(),
                        b.asks().best_first().map(t).collect(),
                        hasher.hex(b, ts),
                        ts.to_string(),
                    );
                    out.insert(a.clone(), book);
                }
                return Some(out);
            }
        }
        None
    }

    /// `http://127.0.0.1:PORT` of its HTTP API.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        let path = std::env::temp_dir().join(format!("polypy-bin-{}.log", self.port));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        head.contains(" 200 ")
            .then(|| serde_json::from_str(body).ok())?
    }

    /// Every asset's book over HTTP, `None` unless all are trusted.
    pub fn books(&self, assets: &[String]) -> Option<BTreeMap<String, Book>> {
        let side = |s: &serde_json::Value| -> Option<Vec<(String, String)>> {
            s.as_array()?
                .iter()
                .map(|l| Some((l["price"].as_str()?.into(), l["size"].as_str()?.into())))
                .collect()
        };
        let mut out = BTreeMap::new();
        for a in assets {
            let b = self.get(&format!("/orderbook/{a}?depth=1000"))?;
            if b["trusted"] != true {
                return None;
            }
            let book = (
                side(&b["bids"])?,
                side(&b["asks"])?,
                b["hash"].as_str()?.to_string(),
                b["timestamp"].as_str()?.to_string(),
            );
            out.insert(a.clone(), book);
        }
        Some(out)
    }

    /// SIGTERM, then waits for the exit (the recording is flushed on a clean stop).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < end, "polypy did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log stays for a failed test only.
        if !std::thread::panicking() {
            let log = std::env::temp_dir().join(format!("polypy-bin-{}.log", self.port));
            let _ = std::fs::remove_file(log);
        }
    }
}
