//! A tiny W3C WebDriver client over `ureq`: starts `chromedriver` on a free loopback port,
//! opens one headless Chromium session with a fresh profile, and speaks the few commands the
//! browser tests need (navigate, execute script, find, click, keys, screenshot, browser log).
//! The driver, the browser and the profile go on drop.

#![allow(dead_code, reason = "each test binary uses part of it")]
#![allow(unreachable_pub, reason = "a test helper module")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where the Debian packages `chromium` and `chromium-driver` put them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; closed (browser and driver) on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    profile: PathBuf,
}

/// A WebDriver error (`value.error` and `value.message`) or a transport failure.
pub type WdResult<T> = Result<T, String>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn request(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> WdResult<Value> {
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, Some(b)) => agent.post(url).send(b.to_string().as_bytes()),
        (_, None) => agent.post(url).send("{}".as_bytes()),
    };
    let mut resp = resp.map_err(|e| format!("{method} {url}: {e}"))?;
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{method} {url}: {e}"))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if let Some(err) = value.get("error").and_then(Value::as_str) {
        let msg = value["message"].as_str().unwrap_or("");
        return Err(format!("{method} {url}: {err}: {msg}"));
    }
    Ok(value)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window. Panics
    /// (the test fails, it does not skip) when either binary is missing.
    pub fn start(width: u32, height: u32) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: install the Debian packages `chromium` and `chromium-driver` \
                 (.ci/run does when they are missing)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let profile = std::env::temp_dir().join(format!("polypy-chromium-{port}"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap_or_else(|e| panic!("profile dir: {e}"));
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            profile,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = request(&b.agent, "GET", &format!("{}/status", b.base), None)
                .is_ok_and(|v| v["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < end, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", b.profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = request(
            &b.agent,
            "POST",
            &format!("{}/session", b.base),
            Some(&caps),
        )
        .unwrap_or_else(|e| panic!("new session: {e}"));
        b.session = v["sessionId"].as_str().unwrap_or_default().to_string();
        assert!(!b.session.is_empty(), "no session id in {v}");
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> WdResult<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        request(&self.agent, method, &url, body)
    }

    /// Resizes the window so that the page's viewport is `width`×`height` (CSS pixels).
    pub fn viewport(&self, width: u32, height: u32) -> WdResult<()> {
        let v = self.eval(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            &[],
        )?;
        let extra = |i: usize| v[i].as_u64().unwrap_or(0);
        let rect =
            json!({"width": u64::from(width) + extra(0), "height": u64::from(height) + extra(1)});
        self.cmd("POST", "/window/rect", Some(&rect)).map(drop)
    }

    /// Opens `url` (returns once the page has loaded).
    pub fn goto(&self, url: &str) -> WdResult<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: &[Value]) -> WdResult<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The element matching a CSS selector.
    pub fn find(&self, css: &str) -> WdResult<String> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element reference in {v}"))
    }

    /// Clicks an element.
    pub fn click(&self, element: &str) -> WdResult<()> {
        self.cmd(
            "POST",
            &format!("/element/{element}/click"),
            Some(&json!({})),
        )
        .map(drop)
    }

    /// Types `text` into an element.
    pub fn type_into(&self, element: &str, text: &str) -> WdResult<()> {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    /// Presses and releases one key where the focus is (the page's keyboard handling).
    pub fn press(&self, key: &str) -> WdResult<()> {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.cmd("POST", "/actions", Some(&actions)).map(drop)
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> WdResult<Vec<u8>> {
        let v = self.cmd("GET", "/screenshot", None)?;
        base64_decode(v.as_str().unwrap_or_default())
    }

    /// The browser's console and network log entries since the last call
    /// (`{"level": "SEVERE", "message": …}`).
    pub fn console_log(&self) -> WdResult<Vec<Value>> {
        let v = self.cmd("POST", "/se/log", Some(&json!({"type": "browser"})))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.cmd("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(text: &str) -> WdResult<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return Err(format!("not base64: {c:#x}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
