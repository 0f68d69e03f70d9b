//! [`ReconnectScheduler`]: the one place that decides when each connection may try again.
//! Pure (time is passed in as `now`), owned by the event-loop thread, shared by all connections.
//!
//! Three rules, applied together:
//! 1. **Lost healthy connections come back at once; failing attempts back off.** A connection
//!    that had completed its handshake and stayed up for `stable_after` (default 1 s) before it
//!    was lost is retried after a small random delay (`healthy_jitter`, default ≤ 100 ms, so a
//!    venue-wide drop does not reconnect everything in the same instant) and its backoff starts
//!    over. Backoff exists to spare a venue that refuses connections: while attempts
//!    themselves fail (connect, TLS or upgrade errors, or accepted and dropped within
//!    `stable_after`), each waits its [`Backoff`] delay (1 s → 30 s, ×2, equal jitter).
//! 2. **Global rate cap**: at most `max_attempts_per_window` attempts over all connections in
//!    any `rate_window` (sliding window, exact: no window of that length ever holds more).
//! 3. **Stagger**: consecutive attempts are at least `min_spacing` apart.
//!
//! Why: the venue throttles many simultaneous sockets from one IP and answers bursts of opens
//! with HTTP 429 (docs/venue-protocol.md §2.5), so a network blip that drops 250 connections must not
//! turn into 250 simultaneous handshakes. Defaults: 5 attempts per second, 50 ms apart; a
//! single reconnect is never slowed by the cap, a storm drains at 5 per second.

use std::{collections::VecDeque, time::Duration, time::Instant};

use rustc_hash::FxHashMap;

use super::backoff::{Backoff, BackoffConfig};

/// Scheduler policy. `Default` is the production policy described in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectConfig {
    /// Per-connection backoff. Default 1 s → 30 s, ×2, equal jitter.
    pub backoff: BackoffConfig,
    /// Most attempts (all connections together) in any `rate_window`; 0 counts as 1. Default 5.
    pub max_attempts_per_window: u32,
    /// The sliding window of the rate cap. Default 1 s.
    pub rate_window: Duration,
    /// Smallest gap between two attempts. Default 50 ms.
    pub min_spacing: Duration,
    /// A connection that stayed connected this long before it was lost is healthy: it is
    /// retried within `healthy_jitter` and its backoff restarts; one lost sooner (accepted,
    /// then dropped: a flapping subscription) keeps backing off. Default 1 s.
    pub stable_after: Duration,
    /// Largest random delay before retrying a lost healthy connection. Default 100 ms.
    pub healthy_jitter: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            backoff: BackoffConfig::default(),
            max_attempts_per_window: 5,
            rate_window: Duration::from_secs(1),
            min_spacing: Duration::from_millis(50),
            stable_after: Duration::from_secs(1),
            healthy_jitter: Duration::from_millis(100),
        }
    }
}

#[derive(Debug)]
struct Slot {
    backoff: Backoff,
    connected_at: Option<Instant>,
}

/// Decides when each connection may (re)connect. See the module docs.
#[derive(Debug)]
pub struct ReconnectScheduler {
    config: ReconnectConfig,
    rng: fastrand::Rng,
    slots: FxHashMap<u32, Slot>,
    /// Requested attempts: (not before, connection id). Small (only failed connections).
    pending: Vec<(Instant, u32)>,
    /// Times of the most recent attempts, oldest first; at most `cap` entries.
    recent: VecDeque<Instant>,
}

impl ReconnectScheduler {
    /// A scheduler with no connections. `seed` makes the jitter reproducible.
    pub fn new(config: ReconnectConfig, seed: u64) -> ReconnectScheduler {
        let cap = config.max_attempts_per_window.max(1) as usize;
        ReconnectScheduler {
            config,
            rng: fastrand::Rng::with_seed(seed),
            slots: FxHashMap::default(),
            pending: Vec::new(),
            recent: VecDeque::with_capacity(cap),
        }
    }

    /// The policy.
    pub fn config(&self) -> &ReconnectConfig {
        &self.config
    }

    fn cap(&self) -> usize {
        self.config.max_attempts_per_window.max(1) as usize
    }

    fn slot(&mut self, conn: u32) -> &mut Slot {
        let config = self.config.backoff;
        let rng = &mut self.rng;
        self.slots.entry(conn).or_insert_with(|| Slot {
            backoff: Backoff::new(config, rng.u64(..)),
            connected_at: None,
        })
    }

    /// Asks for a reconnect of `conn`: within `healthy_jitter` when it was lost after being
    /// up for `stable_after`, else after its next backoff delay. Returns the earliest time the
    /// attempt may start (the rate cap may push it later). If an attempt is already pending, it
    /// is kept and its time returned; the backoff does not advance.
    pub fn request(&mut self, conn: u32, now: Instant) -> Instant {
        if let Some(&(at, _)) = self.pending.iter().find(|(_, c)| *c == conn) {
            return at;
        }
        let stable_after = self.config.stable_after;
        let jitter_ns = self.config.healthy_jitter.as_nanos() as u64;
        let jitter = Duration::from_nanos(self.rng.u64(0..=jitter_ns));
        let slot = self.slot(conn);
        let healthy = slot
            .connected_at
            .take()
            .is_some_and(|since| now.saturating_duration_since(since) >= stable_after);
        let at = if healthy {
            slot.backoff.reset();
            now + jitter
        } else {
            now + slot.backoff.next_delay()
        };
        self.pending.push((at, conn));
        at
    }

    /// Asks for a first connect of `conn` as soon as the rate cap allows (start-up, or a new
    /// connection for recycling). Replaces a pending request.
    pub fn request_now(&mut self, conn: u32, now: Instant) -> Instant {
        self.pending.retain(|(_, c)| *c != conn);
        self.slot(conn);
        self.pending.push((now, conn));
        now
    }

    /// Reports that `conn` completed its handshake at `now` (see `stable_after`).
    pub fn connected(&mut self, conn: u32, now: Instant) {
        self.slot(conn).connected_at = Some(now);
    }

    /// Forgets `conn` entirely (closed for good, or its slot reused).
    pub fn remove(&mut self, conn: u32) {
        self.pending.retain(|(_, c)| *c != conn);
        self.slots.remove(&conn);
    }

    /// Whether `conn` has an attempt waiting.
    pub fn is_pending(&self, conn: u32) -> bool {
        self.pending.iter().any(|(_, c)| *c == conn)
    }

    /// Number of attempts waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many delays `conn` has been handed since its backoff last reset.
    pub fn attempt(&self, conn: u32) -> u32 {
        self.slots.get(&conn).map_or(0, |s| s.backoff.attempt())
    }

    /// The connection whose attempt may start now (earliest first), if the rate cap and the
    /// stagger allow one. The id returned counts as an attempt at `now`: the caller must call
    /// `Connection::connect` for it (and `request` again if that fails).
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        self.take_due(now)
    }

    /// [`pop_due`](Self::pop_due) as an iterator: every connection that may start now. Ids not
    /// yet taken when the iterator is dropped stay pending. (It borrows the scheduler; to call
    /// `request` while iterating, loop on `pop_due` instead.)
    pub fn due(&mut self, now: Instant) -> Due<'_> {
        Due { sched: self, now }
    }

    /// When [`due`](Self::due) may next yield something, for the poll timeout. `None` when
    /// nothing is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        let earliest = self.pending.iter().map(|&(at, _)| at).min()?;
        let mut free_at = earliest;
        if let Some(&last) = self.recent.back() {
            free_at = free_at.max(last + self.config.min_spacing);
        }
        if self.recent.len() >= self.cap() {
            if let Some(&oldest) = self.recent.front() {
                free_at = free_at.max(oldest + self.config.rate_window);
            }
        }
        Some(free_at)
    }

    fn rate_allows(&mut self, now: Instant) -> bool {
        let window = self.config.rate_window;
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            self.recent.pop_front();
        }
        let spaced = self
            .recent
            .back()
            .is_none_or(|&last| now >= last + self.config.min_spacing);
        spaced && self.recent.len() < self.cap()
    }

    fn take_due(&mut self, now: Instant) -> Option<u32> {
        if self.pending.is_empty() || !self.rate_allows(now) {
            return None;
        }
        let (index, _) = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= now)
            .min_by_key(|(_, (at, conn))| (*at, *conn))?;
        let (_, conn) = self.pending.swap_remove(index);
        if self.recent.len() >= self.cap() {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        Some(conn)
    }
}

/// Iterator returned by [`ReconnectScheduler::due`].
#[derive(Debug)]
pub struct Due<'a> {
    sched: &'a mut ReconnectScheduler,
    now: Instant,
}

impl Iterator for Due<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        self.sched.take_due(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::backoff::Jitter;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the scheduler like the event loop would: jump to `next_deadline`, take what is due.
    /// Returns (time, conn) for every attempt.
    fn drain(s: &mut ReconnectScheduler, start: Instant, limit: usize) -> Vec<(Instant, u32)> {
        let mut out = Vec::new();
        let mut now = start;
        while let Some(deadline) = s.next_deadline() {
            now = now.max(deadline);
            out.extend(s.due(now).map(|c| (now, c)));
            assert!(out.len() <= limit, "runaway scheduler");
        }
        out
    }

    #[test]
    fn storm_of_250_is_spread_and_capped() {
        let mut s = ReconnectScheduler::new(ReconnectConfig::default(), 42);
        let t0 = Instant::now();
        for conn in 0..250 {
            s.request(conn, t0);
        }
        let attempts = drain(&mut s, t0, 250);
        assert_eq!(attempts.len(), 250);
        // Nobody before its first backoff floor (0.5 s), no two in the same instant, ≤ 5 per s.
        assert!(attempts.iter().all(|(t, _)| *t >= t0 + ms(500)));
        for pair in attempts.windows(2) {
            assert!(pair[1].0 >= pair[0].0 + ms(50));
        }
        for (i, (t, _)) in attempts.iter().enumerate() {
            let in_window = attempts[i..]
                .iter()
                .take_while(|(u, _)| *u < *t + ms(1000))
                .count();
            assert!(in_window <= 5);
        }
        // 250 at 5/s takes about 50 s, not 250 × 30 s.
        let last = attempts.last().unwrap().0;
        assert!(last < t0 + Duration::from_secs(52), "{:?}", last - t0);
    }

    #[test]
    fn backoff_grows_while_attempts_fail_and_healthy_loss_comes_back_at_once() {
        let config = ReconnectConfig {
            backoff: BackoffConfig::default().with_jitter(Jitter::None),
            ..ReconnectConfig::default()
        };
        let mut s = ReconnectScheduler::new(config, 1);
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..4 {
            let at = s.request(7, now);
            delays.push((at - now).as_secs());
            assert_eq!(s.due(at).collect::<Vec<_>>(), [7]);
            // Connected, but dropped after 0.5 s: not stable, keep backing off.
            s.connected(7, at);
            now = at + ms(500);
        }
        assert_eq!(delays, [1, 2, 4, 8]);
        // Failed attempts (never connected) escalate too.
        let at = s.request(7, now);
        assert_eq!(at - now, Duration::from_secs(16));
        assert_eq!(s.due(at).collect::<Vec<_>>(), [7]);
        now = at;
        // Up for 5 s, then dropped (a venue that drops every connection every 5 s): back
        // within the jitter, every time, and a later failed attempt starts at 1 s again.
        for _ in 0..10 {
            s.connected(7, now);
            now += Duration::from_secs(5);
            let at = s.request(7, now);
            assert!(at - now <= ms(100), "{:?}", at - now);
            assert_eq!(s.due(at).collect::<Vec<_>>(), [7]);
            now = at;
        }
        let at = s.request(7, now);
        assert_eq!(
            at - now,
            Duration::from_secs(1),
            "failed attempt after a reset"
        );
    }

    #[test]
    fn request_is_idempotent_and_remove_cancels() {
        let mut s = ReconnectScheduler::new(ReconnectConfig::default(), 3);
        let t0 = Instant::now();
        let at = s.request(1, t0);
        assert_eq!(s.request(1, t0 + ms(10)), at);
        assert_eq!(s.attempt(1), 1);
        assert_eq!(s.pending(), 1);
        assert_eq!(s.due(at - ms(1)).count(), 0, "not before its time");
        s.remove(1);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.due(at + ms(1)).count(), 0);
    }

    #[test]
    fn request_now_goes_immediately_but_staggered() {
        let mut s = ReconnectScheduler::new(ReconnectConfig::default(), 3);
        let t0 = Instant::now();
        for conn in 0..3 {
            s.request_now(conn, t0);
        }
        assert_eq!(s.due(t0).collect::<Vec<_>>(), [0], "one per min_spacing");
        assert_eq!(s.next_deadline(), Some(t0 + ms(50)));
        assert_eq!(s.due(t0 + ms(50)).collect::<Vec<_>>(), [1]);
    }
}

#[cfg(test)]
mod property_tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn prop_no_storms_and_no_early_attempts(
            seed: u64,
            cap in 1u32..10,
            spacing_ms in 0u64..300,
            requests in proptest::collection::vec((0u32..100, 0u64..5_000), 1..100),
            step_ms in 5u64..200,
        ) {
            let config = ReconnectConfig {
                max_attempts_per_window: cap,
                min_spacing: Duration::from_millis(spacing_ms),
                ..ReconnectConfig::default()
            };
            let mut s = ReconnectScheduler::new(config, seed);
            let t0 = Instant::now();
            let mut requests = requests;
            requests.sort_by_key(|&(_, at)| at);
            let mut not_before: FxHashMap<u32, Instant> = FxHashMap::default();
            let mut attempts: Vec<(Instant, u32)> = Vec::new();
            let mut next_request = 0;
            let mut now = t0;
            // Fixed-step loop (like a poll loop with a timer tick) until all requests were made
            // and nothing is pending.
            for _ in 0..100_000 {
                while next_request < requests.len()
                    && t0 + Duration::from_millis(requests[next_request].1) <= now
                {
                    let conn = requests[next_request].0;
                    let at = s.request(conn, now);
                    not_before.entry(conn).or_insert(at);
                    next_request += 1;
                }
                for conn in s.due(now) {
                    let earliest = not_before.remove(&conn);
                    prop_assert!(earliest.is_some_and(|at| at <= now), "conn {} too early", conn);
                    attempts.push((now, conn));
                }
                if next_request == requests.len() && s.pending() == 0 {
                    break;
                }
                now += Duration::from_millis(step_ms);
            }
            prop_assert_eq!(s.pending(), 0, "liveness: everything requested was attempted");
            prop_assert!(not_before.is_empty());
            let window = Duration::from_secs(1);
            for (i, &(t, _)) in attempts.iter().enumerate() {
                let in_window = attempts[i..].iter().take_while(|(u, _)| *u < t + window).count();
                prop_assert!(in_window <= cap as usize, "{} attempts in 1 s, cap {}", in_window, cap);
            }
            for pair in attempts.windows(2) {
                prop_assert!(pair[1].0 >= pair[0].0 + Duration::from_millis(spacing_ms));
            }
        }

        #[test]
        fn prop_next_deadline_is_when_something_is_due(
            seed: u64,
            conns in proptest::collection::vec(0u32..50, 1..60),
        ) {
            let mut s = ReconnectScheduler::new(ReconnectConfig::default(), seed);
            let t0 = Instant::now();
            for &c in &conns {
                s.request(c, t0);
            }
            let mut now = t0;
            while let Some(deadline) = s.next_deadline() {
                now = now.max(deadline);
                prop_assert!(s.due(now).next().is_some(), "nothing due at the announced deadline");
            }
        }
    }
}
