//! The simulator's clock and the date texts Gamma prints.
//!
//! [`Clock`] turns one `Instant` taken at start into Unix milliseconds/microseconds that never
//! go backwards (the wall clock can), so per-asset timestamps are non-decreasing. The
//! formatting functions print the three date shapes Gamma mixes (docs/venue-protocol.md §7.4): RFC 3339
//! with a variable fraction (`2026-03-12T09:25:00Z`, `…05.41Z`, `…01.328428Z`), the bare date
//! (`2026-03-12`) and the Postgres form of `closedTime` (`2026-05-09 02:07:01+00`).
//!
//! Pure except [`Clock::now_us`]; used by every sim thread.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic Unix clock: `epoch` at `start`, advancing with `Instant`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    epoch_us: u64,
}

impl Clock {
    /// A clock that reads `epoch_ms` now (the wall clock when `None`).
    pub(crate) fn new(epoch_ms: Option<u64>) -> Clock {
        let epoch_us = match epoch_ms {
            Some(ms) => ms.saturating_mul(1000),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        };
        Clock {
            start: Instant::now(),
            epoch_us,
        }
    }

    /// Unix microseconds now.
    pub(crate) fn now_us(&self) -> u64 {
        self.epoch_us + self.start.elapsed().as_micros() as u64
    }

    /// Unix milliseconds now.
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }

    /// Unix nanoseconds now (recording timestamps).
    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch_us * 1000 + self.start.elapsed().as_nanos() as u64
    }

    /// Time since the clock started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Calendar fields of a Unix time in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

fn civil(us: u64) -> Civil {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        micros: (us % 1_000_000) as u32,
    }
}

/// `2026-03-12`.
pub(crate) fn date_iso(us: u64) -> String {
    let c = civil(us);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

/// RFC 3339 in UTC with the fraction trimmed of trailing zeros, as Go's `RFC3339Nano` prints
/// it: `2026-03-12T09:25:00Z`, `2026-04-01T18:24:05.41Z`, `2026-03-11T09:29:01.328428Z`.
pub(crate) fn rfc3339(us: u64) -> String {
    let c = civil(us);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
    if c.micros != 0 {
        let mut frac = format!("{:06}", c.micros);
        while frac.ends_with('0') {
            frac.pop();
        }
        s.push('.');
        s.push_str(&frac);
    }
    s.push('Z');
    s
}

/// `2026-05-09 02:07:01+00` (Gamma's `closedTime`).
pub(crate) fn postgres(us: u64) -> String {
    let c = civil(us);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_gamma_date_shapes() {
        // 2026-03-12T09:25:00Z = 1773307500 s
        let t = 1_773_307_500_000_000;
        assert_eq!(rfc3339(t), "2026-03-12T09:25:00Z");
        assert_eq!(date_iso(t), "2026-03-12");
        assert_eq!(rfc3339(t + 410_000), "2026-03-12T09:25:00.41Z");
        assert_eq!(rfc3339(t + 328_428), "2026-03-12T09:25:00.328428Z");
        assert_eq!(postgres(t), "2026-03-12 09:25:00+00");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // Leap day.
        assert_eq!(date_iso(1_709_164_800_000_000), "2024-02-29");
    }
}
