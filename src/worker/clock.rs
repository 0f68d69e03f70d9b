//! The engine's one clock for latency: monotonic nanoseconds since the first call.
//!
//! The event loop stamps [`Record::received_ns`](crate::market::Record) with [`now_ns`] and
//! the book workers subtract it from their own [`now_ns`] for the wire → applied histogram,
//! so both sides must use this function. Any thread; `Instant` is monotonic and, on this
//! machine's TSC clocksource, served by the vDSO (about 20 ns).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the process first called this function (never 0 after the
/// first call returns, so 0 can mean "not stamped").
#[inline]
pub fn now_ns() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_monotonic_and_nonzero() {
        let a = now_ns();
        let b = now_ns();
        assert!(a >= 1 && b >= a);
    }
}
