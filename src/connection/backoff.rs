//! [`Backoff`]: exponential reconnect delays with jitter. Pure: no clock, no I/O; randomness
//! comes from an owned, seedable `fastrand::Rng`. One per connection, owned by the
//! [`ReconnectScheduler`](super::ReconnectScheduler) on the event-loop thread.
//!
//! Attempt `n` (0-based) has the ceiling `min(max, base × factor^n)`: 1 s, 2 s, 4 s, 8 s, 16 s,
//! 30 s, 30 s, … with the defaults (docs/venue-protocol.md §2.3: the official Rust client uses 1 s → 60 s
//! ×2; the engine caps at 30 s because a missing book costs more than a few extra attempts).
//!
//! The default jitter is *equal jitter*: a delay is uniform in `[ceiling / 2, ceiling]`. It keeps
//! a floor (no zero-delay hammering) and still spreads connections that failed together. AWS's
//! "decorrelated" jitter was considered and rejected: with factor 2 its expected logarithm
//! *shrinks* (`E[ln(2U)] = ln 2 − 1 < 0`), so it would not grow towards the cap.

use std::time::Duration;

/// How a delay is randomised below its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// No randomness: every delay is the ceiling. Deterministic; meant for tests.
    None,
    /// Uniform in `[0, ceiling]` (AWS "full jitter"): spreads the most, may be almost zero.
    Full,
    /// Uniform in `[ceiling / 2, ceiling]` (AWS "equal jitter"). The default.
    Equal,
}

/// Backoff parameters. `Default` is the venue policy: 1 s → 30 s, ×2, equal jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// Ceiling of the first delay. Default 1 s.
    pub base: Duration,
    /// Largest delay ever returned. Default 30 s.
    pub max: Duration,
    /// Growth per attempt (values below 1 count as 1). Default 2.
    pub factor: u32,
    /// Randomisation below the ceiling. Default [`Jitter::Equal`].
    pub jitter: Jitter,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            factor: 2,
            jitter: Jitter::Equal,
        }
    }
}

impl BackoffConfig {
    /// A config with the given bounds and the default factor and jitter.
    pub fn new(base: Duration, max: Duration) -> BackoffConfig {
        BackoffConfig {
            base,
            max,
            ..BackoffConfig::default()
        }
    }

    /// The same config with another jitter.
    pub fn with_jitter(mut self, jitter: Jitter) -> BackoffConfig {
        self.jitter = jitter;
        self
    }
}

/// The delay sequence of one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A fresh sequence. `seed` makes the jitter reproducible.
    pub fn new(config: BackoffConfig, seed: u64) -> Backoff {
        Backoff {
            config,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The un-jittered ceiling of attempt `n`: `min(max, base × factor^n)`. Non-decreasing in `n`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let max = self.config.max;
        let grown = self
            .config
            .factor
            .max(1)
            .checked_pow(n)
            .and_then(|mul| self.config.base.checked_mul(mul))
            .unwrap_or(max);
        grown.min(max)
    }

    /// The next delay; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        match self.config.jitter {
            Jitter::None => ceiling,
            Jitter::Full => self.uniform(Duration::ZERO, ceiling),
            Jitter::Equal => self.uniform(ceiling / 2, ceiling),
        }
    }

    /// Starts over at attempt 0 (after a connection proved stable).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn uniform(&mut self, low: Duration, high: Duration) -> Duration {
        let low_ns = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
        let high_ns = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
        if high_ns <= low_ns {
            return high;
        }
        Duration::from_nanos(self.rng.u64(low_ns..=high_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ceilings_are_one_to_thirty_seconds() {
        let mut b = Backoff::new(BackoffConfig::default().with_jitter(Jitter::None), 1);
        let secs: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn huge_attempt_counts_saturate_at_max() {
        let b = Backoff::new(BackoffConfig::default(), 1);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }
}

#[cfg(test)]
mod property_tests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> impl Strategy<Value = BackoffConfig> {
        (
            1u64..5_000,
            0u64..120_000,
            0u32..5,
            prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
        )
            .prop_map(|(base_ms, extra_ms, factor, jitter)| BackoffConfig {
                base: Duration::from_millis(base_ms),
                max: Duration::from_millis(base_ms + extra_ms),
                factor,
                jitter,
            })
    }

    proptest! {
        #[test]
        fn prop_never_exceeds_max_and_stays_in_band(cfg in config(), seed: u64, n in 1usize..80) {
            let mut b = Backoff::new(cfg, seed);
            for i in 0..n {
                let ceiling = b.ceiling(u32::try_from(i).unwrap());
                let d = b.next_delay();
                prop_assert!(d <= cfg.max);
                prop_assert!(d <= ceiling);
                match cfg.jitter {
                    Jitter::None => prop_assert_eq!(d, ceiling),
                    Jitter::Full => {}
                    Jitter::Equal => prop_assert!(d >= ceiling / 2),
                }
            }
        }

        #[test]
        fn prop_ceiling_grows_to_max(cfg in config()) {
            let b = Backoff::new(cfg, 0);
            for n in 0..64 {
                prop_assert!(b.ceiling(n + 1) >= b.ceiling(n));
            }
            if cfg.factor >= 2 {
                prop_assert_eq!(b.ceiling(64), cfg.max);
            }
        }

        #[test]
        fn prop_equal_jitter_grows(seed: u64) {
            // With the defaults, attempt 5 and later are never shorter than any delay of attempt 0.
            let mut b = Backoff::new(BackoffConfig::default(), seed);
            let first = b.next_delay();
            for _ in 1..5 {
                b.next_delay();
            }
            for _ in 0..10 {
                prop_assert!(b.next_delay() >= first);
            }
        }

        #[test]
        fn prop_reset_starts_over(cfg in config(), seed: u64, k in 0usize..40) {
            let mut b = Backoff::new(cfg, seed);
            for _ in 0..k {
                b.next_delay();
            }
            b.reset();
            prop_assert_eq!(b.attempt(), 0);
            prop_assert!(b.next_delay() <= b.ceiling(0));
        }
    }
}
