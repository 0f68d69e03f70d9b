//! The Gamma API client (blocking ureq), run only on the discovery thread.
//!
//! Full scans page through `/markets/keyset` (`after_cursor` → `next_cursor`, absent on the
//! last page; a repeated cursor stops the scan) and fall back to `/markets` offsets where the
//! keyset endpoint is unavailable (404, 422 or 503 "not configured"; offsets stop at the
//! venue's ~2,000 limit). Every call has a timeout; 429, 5xx and transport errors are retried
//! with exponential backoff (docs/venue-protocol.md §7).

use std::time::Duration;

use serde_json::Value;

use crate::venue::gamma::{GammaMarket, parse_market};

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Gamma kept failing after every retry; the next interval tries again.
    #[error("gamma {url} failed after {attempts} attempts: {last}")]
    Exhausted {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Gamma answered something that is not the expected JSON; the next interval tries again.
    #[error("gamma {url} answered unexpected json: {why}")]
    Shape {
        /// The URL.
        url: String,
        /// What was wrong.
        why: String,
    },
    /// The scan was interrupted by shutdown.
    #[error("discovery stopped")]
    Stopped,
}

/// Retry policy of one call.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call.
    pub attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(250),
            max: Duration::from_secs(8),
        }
    }
}

/// Outcome of one page fetch.
enum Page {
    Ok(Value),
    /// The endpoint does not exist or refuses keyset paging here.
    Unavailable,
}

/// A blocking Gamma client.
#[derive(Debug)]
pub struct GammaClient {
    agent: ureq::Agent,
    base: String,
    retry: RetryPolicy,
    /// Calls that were retried (429/5xx/timeouts), for stats.
    pub retries: u64,
}

/// Markets of one scan, and what was skipped.
#[derive(Debug, Default)]
pub struct Scan {
    /// Parsed markets (tradable or not).
    pub markets: Vec<GammaMarket>,
    /// Records that could not be parsed.
    pub unusable: usize,
    /// Pages fetched.
    pub pages: usize,
    /// True when the offset fallback was used.
    pub used_offsets: bool,
}

impl GammaClient {
    /// A client for `base` (e.g. `https://gamma-api.polymarket.com`).
    pub fn new(base: &str, timeout: Duration, retry: RetryPolicy) -> GammaClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent("polypy")
            .build();
        GammaClient {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_string(),
            retry,
            retries: 0,
        }
    }

    /// Scans every open market. `stop` is polled between pages and during backoff.
    ///
    /// # Errors
    /// [`DiscoveryError`] when Gamma fails beyond the retries or answers garbage.
    pub fn scan(&mut self, stop: &dyn Fn() -> bool) -> Result<Scan, DiscoveryError> {
        let mut scan = Scan::default();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            if stop() {
                return Err(DiscoveryError::Stopped);
            }
            let url = format!("{}/markets/keyset", self.base);
            let mut params = vec![
                ("limit", "100".to_string()),
                ("closed", "false".to_string()),
            ];
            if let Some(c) = &cursor {
                params.push(("after_cursor", c.clone()));
            }
            let page = match self.fetch(&url, &params, stop)? {
                Page::Ok(v) => v,
                Page::Unavailable if scan.pages == 0 => {
                    log::info!("Gamma keyset paging unavailable, using offsets");
                    return self.scan_offsets(stop);
                }
                Page::Unavailable => {
                    return Err(DiscoveryError::Shape {
                        url,
                        why: "keyset page refused mid-scan".into(),
                    });
                }
            };
            scan.pages += 1;
            let markets = page
                .get("markets")
                .and_then(Value::as_array)
                .ok_or_else(|| DiscoveryError::Shape {
                    url: url.clone(),
                    why: "no markets array".into(),
                })?;
            collect(markets, &mut scan);
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    if !seen.insert(next.to_string()) {
                        log::warn!("Gamma repeated a cursor; ending the scan: cursor={next}");
                        break;
                    }
                    cursor = Some(next.to_string());
                }
                _ => break,
            }
            if scan.pages >= 10_000 {
                log::warn!("Gamma scan stopped at 10000 pages");
                break;
            }
        }
        Ok(scan)
    }

    fn scan_offsets(&mut self, stop: &dyn Fn() -> bool) -> Result<Scan, DiscoveryError> {
        let mut scan = Scan {
            used_offsets: true,
            ..Scan::default()
        };
        let mut offset = 0usize;
        loop {
            if stop() {
                return Err(DiscoveryError::Stopped);
            }
            let url = format!("{}/markets", self.base);
            let params = [
                ("limit", "100".to_string()),
                ("closed", "false".to_string()),
                ("offset", offset.to_string()),
            ];
            let Page::Ok(page) = self.fetch(&url, &params, stop)? else {
                // 422 "offset too large": the legacy list ends here.
                break;
            };
            scan.pages += 1;
            let markets = page.as_array().ok_or_else(|| DiscoveryError::Shape {
                url: url.clone(),
                why: "not an array".into(),
            })?;
            collect(markets, &mut scan);
            if markets.len() < 100 {
                break;
            }
            offset += markets.len();
        }
        Ok(scan)
    }

    fn fetch(
        &mut self,
        url: &str,
        params: &[(&str, String)],
        stop: &dyn Fn() -> bool,
    ) -> Result<Page, DiscoveryError> {
        let mut delay = self.retry.base;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            let request = params
                .iter()
                .fold(self.agent.get(url), |r, (k, v)| r.query(*k, v));
            match request.call() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    match status {
                        200 => {
                            let text = resp.body_mut().read_to_string().map_err(|e| {
                                DiscoveryError::Shape {
                                    url: url.to_string(),
                                    why: e.to_string(),
                                }
                            });
                            match text.and_then(|t| {
                                serde_json::from_str(&t).map_err(|e| DiscoveryError::Shape {
                                    url: url.to_string(),
                                    why: e.to_string(),
                                })
                            }) {
                                Ok(v) => return Ok(Page::Ok(v)),
                                Err(e) => last = e.to_string(),
                            }
                        }
                        404 | 422 => return Ok(Page::Unavailable),
                        503 => {
                            let body = resp.body_mut().read_to_string().unwrap_or_default();
                            if body.contains("not configured") {
                                return Ok(Page::Unavailable);
                            }
                            last = format!("http {status}");
                        }
                        _ => last = format!("http {status}"),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if attempt == self.retry.attempts {
                break;
            }
            self.retries += 1;
            log::warn!("Gamma call failed, retrying: url={url} attempt={attempt} error={last}");
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until {
                if stop() {
                    return Err(DiscoveryError::Stopped);
                }
                std::thread::sleep(Duration::from_millis(20).min(delay));
            }
            delay = (delay * 2).min(self.retry.max);
        }
        Err(DiscoveryError::Exhausted {
            url: url.to_string(),
            attempts: self.retry.attempts,
            last,
        })
    }
}

fn collect(markets: &[Value], scan: &mut Scan) {
    for m in markets {
        match parse_market(m) {
            Ok(m) => scan.markets.push(m),
            Err(e) => {
                scan.unusable += 1;
                log::debug!("Gamma market skipped: {e}");
            }
        }
    }
}
