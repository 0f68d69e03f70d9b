//! The dashboard at `GET /` in a real headless Chromium (W3C WebDriver through chromedriver,
//! `support/webdriver.rs`) against `polypy --simulate`: the page loads without a console
//! error, `/` focuses the finder, a word of a question finds its market and opens it at
//! `/#<token id>`, the ladder's best bid and ask equal `/orderbook`'s within 2 s, the engine
//! tiles show a non-zero msgs/s, the browser's own recomputation of the venue hash agrees, and
//! once the sim pauses the top 10 levels of both sides equal `/orderbook`'s. Takes a
//! screenshot: `docs/img/dashboard.png` with `POLYPY_SCREENSHOT=1`, else the target's tmp dir.
//! Fails (does not skip) without `/usr/bin/chromium` and `/usr/bin/chromedriver`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/polypy_bin.rs"]
mod polypy_bin;
#[path = "support/webdriver.rs"]
mod webdriver;
use polypy_bin::Bin;
use webdriver::Browser;

/// Polls `f` (every 20 ms) until it gives `Some`, or panics with `what` and the last
/// `Err` it saw at the deadline.
fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < end,
                "timed out after {timeout:?} waiting for {what}; last: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A token, its question and a word of that question found in at most 10 questions (the
/// finder lists 50 tokens); of those, the deepest book (for the screenshot).
fn pick_market(bin: &Bin, markets: &[Value]) -> (String, String, String) {
    let words = |q: &str| -> Vec<String> {
        let mut ws: Vec<String> = q
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| w.len() >= 4)
            .map(str::to_lowercase)
            .collect();
        ws.sort();
        ws.dedup();
        ws
    };
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in markets {
        for w in words(m["question"].as_str().unwrap_or("")) {
            *count.entry(w).or_default() += 1;
        }
    }
    let mut best: Option<(usize, String, String, String)> = None;
    for m in markets {
        let q = m["question"].as_str().unwrap_or("");
        let Some(word) = words(q).into_iter().min_by_key(|w| count[w]) else {
            continue;
        };
        if count[&word] > 10 {
            continue;
        }
        for t in m["tokens"].as_array().into_iter().flatten() {
            let token = t["token_id"].as_str().unwrap_or("");
            let depth = bin
                .get(&format!("/orderbook/{token}?depth=1000"))
                .map_or(0, |b| {
                    let n = |k: &str| b[k].as_array().map_or(0, Vec::len);
                    n("bids").min(n("asks"))
                });
            if best.as_ref().is_none_or(|b| depth > b.0) {
                best = Some((depth, word.clone(), q.to_string(), token.to_string()));
            }
        }
    }
    let (_, word, question, token) = best.expect("a market with an uncommon word");
    (word, question, token)
}

/// (price, size) of the ladder's rows on one side, best first.
fn ladder(b: &Browser, side: &str) -> Result<Vec<(String, String)>, String> {
    let v = b.eval(
        "return [...document.querySelectorAll('#' + arguments[0] + ' tbody tr[data-price]')]\
         .map(r => [r.dataset.price, r.dataset.size]);",
        &[json!(side)],
    )?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn http_levels(book: &Value, side: &str, n: usize) -> Vec<(String, String)> {
    book[side]
        .as_array()
        .into_iter()
        .flatten()
        .take(n)
        .map(|l| {
            (
                l["price"].as_str().unwrap_or("").to_string(),
                l["size"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sim_http_url(bin: &Bin) -> String {
    wait(
        "the sim's address in the log",
        Duration::from_secs(10),
        || {
            let log = bin.log();
            log.lines()
                .find_map(|l| {
                    let rest = l.split_once("Simulated exchange up:")?.1;
                    let http = rest
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("http="))?;
                    Some(http.trim_end_matches('/').to_string())
                })
                .ok_or_else(|| "not logged yet".to_string())
        },
    )
}

#[test]
fn dashboard_in_headless_chromium_shows_the_engines_books() {
    let bin = Bin::spawn(&[
        "--simulate".as_ref(),
        "--sim-markets".as_ref(),
        "30".as_ref(),
        "--sim-rate".as_ref(),
        "600".as_ref(),
    ]);
    let sim = sim_http_url(&bin);
    wait("/ready", Duration::from_secs(30), || {
        bin.get("/ready")
            .map(drop)
            .ok_or_else(|| "not ready".into())
    });
    let markets = wait(
        "/markets lists the 30 markets",
        Duration::from_secs(10),
        || {
            let m = bin.get("/markets").ok_or("no /markets")?;
            match m.as_array() {
                Some(a) if a.len() == 30 => Ok(a.clone()),
                _ => Err(format!("{m}")),
            }
        },
    );
    let (word, question, token) = pick_market(&bin, &markets);

    let browser = Browser::start(1280, 900);
    browser
        .goto(&format!("{}/", bin.http_url()))
        .expect("open /");
    browser.viewport(1280, 900).unwrap();
    let title = browser.eval("return document.title;", &[]).unwrap();
    assert!(title.as_str().unwrap_or("").contains("polypy"), "{title}");

    // `/` focuses the finder; a word of the question finds the market.
    browser.press("/").unwrap();
    let focused = browser
        .eval("return document.activeElement.id;", &[])
        .unwrap();
    assert_eq!(focused, "finder", "`/` focuses the finder");
    let finder = browser.find("#finder").unwrap();
    browser.type_into(&finder, &word).unwrap();
    let option = format!("#finder-results li[data-token=\"{token}\"]");
    let row = wait(
        &format!("the finder lists {question:?} for {word:?}"),
        Duration::from_secs(10),
        || browser.find(&option),
    );
    let clicked = Instant::now();
    browser.click(&row).unwrap();
    let hash = browser.eval("return location.hash;", &[]).unwrap();
    assert_eq!(hash, format!("#{token}"), "the selection is in the URL");
    let shown = browser
        .eval(
            "return document.getElementById('question').textContent;",
            &[],
        )
        .unwrap();
    assert_eq!(shown, question.as_str());

    // Best bid and ask equal /orderbook's within 2 s of the click.
    wait(
        "the ladder's best bid and ask to equal /orderbook's",
        Duration::from_secs(2).saturating_sub(clicked.elapsed()),
        || {
            let (bids, asks) = (ladder(&browser, "bids")?, ladder(&browser, "asks")?);
            let book = bin
                .get(&format!("/orderbook/{token}?depth=1"))
                .ok_or("no /orderbook")?;
            let page = (
                bids.first().map(|l| l.0.clone()),
                asks.first().map(|l| l.0.clone()),
            );
            let http = (
                book["best_bid"].as_str().map(str::to_string),
                book["best_ask"].as_str().map(str::to_string),
            );
            if page == http && page.0.is_some() && page.1.is_some() {
                Ok(())
            } else {
                Err(format!("page {page:?}, /orderbook {http:?}"))
            }
        },
    );
    let attr = |css: &str, key: &str| -> Result<String, String> {
        let v = browser.eval(
            "const e = document.querySelector(arguments[0]); return e ? (e.dataset[arguments[1]] ?? '') : null;",
            &[json!(css), json!(key)],
        )?;
        v.as_str().map(str::to_string).ok_or(format!("no {css}"))
    };
    assert_eq!(attr("#trust", "trusted").unwrap(), "true");
    assert_eq!(attr("#conn-state", "state").unwrap(), "live");

    // Engine tiles: a non-zero message rate (two /stats polls apart).
    let rate = wait("a non-zero msgs/s tile", Duration::from_secs(10), || {
        let v: f64 = attr("#tile-rate", "value")?
            .parse()
            .map_err(|_| "not a number")?;
        if v > 0.0 { Ok(v) } else { Err(format!("{v}")) }
    });
    assert!(rate > 0.0);
    // The browser recomputed the venue hash of its book and it matched.
    wait(
        "the browser's hash check",
        Duration::from_secs(10),
        || match attr("#hash-state", "state")?.as_str() {
            "verified" => Ok(()),
            other => Err(other.to_string()),
        },
    );
    // A few points of best bid/ask history, for the screenshot.
    wait("BBO history points", Duration::from_secs(10), || {
        let n: u32 = attr("#bbo", "points")?.parse().map_err(|_| "NaN")?;
        if n >= 3 { Ok(()) } else { Err(format!("{n}")) }
    });
    let png = browser.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = if std::env::var_os("POLYPY_SCREENSHOT").is_some_and(|v| v == "1") {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img/dashboard.png")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
    };
    std::fs::write(&path, &png).unwrap();

    // The sim pauses: the top 10 levels of both sides equal /orderbook's.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let paused = agent.post(format!("{sim}/sim/pause")).send_empty();
    assert_eq!(
        paused.expect("pause").status().as_u16(),
        200,
        "POST /sim/pause"
    );
    wait(
        "the top 10 levels to equal /orderbook's after the pause",
        Duration::from_secs(10),
        || {
            let book = bin
                .get(&format!("/orderbook/{token}?depth=10"))
                .ok_or("no /orderbook")?;
            let want = (
                http_levels(&book, "bids", 10),
                http_levels(&book, "asks", 10),
            );
            let got = (ladder(&browser, "bids")?, ladder(&browser, "asks")?);
            let got = (
                got.0.into_iter().take(10).collect::<Vec<_>>(),
                got.1.into_iter().take(10).collect::<Vec<_>>(),
            );
            if book["trusted"] == true && got == want && !want.0.is_empty() {
                Ok(())
            } else {
                Err(format!("page {got:?}\n/orderbook {want:?}"))
            }
        },
    );
    assert_ne!(attr("#hash-state", "state").unwrap(), "mismatch");

    // No console error, from the load to now.
    let log = browser.console_log().unwrap();
    let errors: Vec<&Value> = log
        .iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console: {errors:#?}");
    drop(browser);
    bin.stop();
}
