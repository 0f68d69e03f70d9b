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
}

impl Bin {
    pub fn spawn(args: &[&std::ffi::OsStr]) -> Bin {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_polypy"))
            .args(args)
            .args(["--http-host", "127.0.0.1", "--http-port", &port.to_string()])
            .args(["--idle", "park", "--no-pin", "--workers", "2"])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(std::env::temp_dir().join(format!("polypy-bin-{port}.log")))
                    .map_or_else(|_| std::process::Stdio::null(), Into::into),
            )
            .spawn()
            .unwrap();
        Bin { child, port }
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
