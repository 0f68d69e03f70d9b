//! WebSocket connections to the venue, driven by the event loop.
//!
//! Owns: every socket's life, TCP connect → TLS (`wss://`, rustls + webpki roots) → WebSocket
//! upgrade (tungstenite) → open → closed, plus keep-alive (`PING` text every 10 s), the
//! inbound-silence watchdog, per-connection counters, and the [`ReconnectScheduler`] that
//! decides when failed connections try again. Owns no thread: everything here runs on the
//! event-loop thread, and nothing here blocks, sleeps or logs per message
//! ([`Endpoint::resolve`] is the one blocking call and is meant for start-up).
//!
//! | file | what |
//! |---|---|
//! | `state.rs` | [`Connection`]: the state machine the event loop drives |
//! | `handshake.rs` | TCP → TLS → upgrade stages, each resumed across `WouldBlock` |
//! | `stream.rs` | plain / TLS byte stream, non-blocking |
//! | `endpoint.rs` | [`Endpoint`]: `ws://` / `wss://` URL and its addresses |
//! | `config.rs` | [`ConnectionConfig`] (defaults = the venue's values), TLS configs |
//! | `stats.rs` | [`ConnectionStats`] |
//! | `backoff.rs` | [`Backoff`]: 1 s → 30 s, ×2, equal jitter (pure) |
//! | `reconnect.rs` | [`ReconnectScheduler`]: backoff + global rate cap + stagger (pure) |
//! | `error.rs` | [`ConnectionError`] with `is_retryable` |
//!
//! # Calling protocol (what `event_loop/` does)
//! - One [`Connection`] per socket, kept by the event loop in a map keyed by connection id,
//!   with `mio::Token(id)`. [`Connection::connect`] registers the socket for
//!   `READABLE | WRITABLE` once per attempt; the loop never (re)registers it.
//! - Every readiness event for the token → [`Connection::on_ready`]. It returns
//!   [`Progress::Connected`] once per successful handshake: (re)send the subscriptions then
//!   (the venue has no acknowledgement and needs the subscription after every reconnect).
//!   Data frames arrive through the `on_frame` callback as borrowed `&str`, in wire order.
//! - The loop wakes at least every ~100 ms (its tick; [`Connection::next_deadline`] says when a
//!   connection needs it sooner, for embedders that sleep longer) and calls
//!   [`Connection::on_tick`] on every connection: it sends `PING` and enforces the silence and
//!   handshake timeouts.
//! - **One failure path.** Any `Err` from `on_ready`, `on_tick` or `send_text` (except
//!   [`ConnectionError::InvalidState`]) means the connection is already torn down and
//!   `Disconnected`. The loop then does the same thing whatever failed (`EventLoop::on_lost`):
//!   the connection's books are marked untrusted (a `DataLoss` marker each), resyncs are
//!   counted, and [`ReconnectScheduler::request`] schedules a new attempt. Every send goes
//!   through `EventLoop::send_frames`, so a failed write is a lost connection like a failed
//!   read. Errors that [`is_retryable`](ConnectionError::is_retryable) says will not heal
//!   (bad URL, certificate, a 4xx answer) are retried too, with backoff, and logged at error
//!   level: the engine keeps trying and `/health` shows the connections down.
//! - The scheduler's policy ([`reconnect`](ReconnectScheduler)): a connection lost after it
//!   stayed up ≥ 1 s (`stable_after`) is retried within ≤ 100 ms of jitter and its backoff
//!   restarts; attempts that fail escalate 1 s → 30 s; a global rate cap and a stagger bound
//!   storms. [`ReconnectScheduler::connected`] is told about every successful handshake, and
//!   each id that [`ReconnectScheduler::due`] yields is `connect`ed again.
//! - Recycling: [`Connection::drain`] marks the old connection (it keeps delivering), the caller
//!   moves assets to the new one, then [`Connection::close`].
//!
//! `PONG` is consumed by the connection (counted in [`ConnectionStats::pongs`]) and never
//! reaches `on_frame`; every other text frame does, including the venue's `NO NEW ASSETS`.
//!
//! # Example: one connection in your own mio loop (an embedder; the engine's is `event_loop/`)
//! ```no_run
//! use std::{sync::Arc, time::Instant};
//!
//! use mio::{Events, Poll, Token};
//! use polypy::connection::{
//!     Connection, ConnectionConfig, ConnectionError, Endpoint, Progress, ReconnectConfig,
//!     ReconnectScheduler, POLYMARKET_MARKET_URL, webpki_client_config,
//! };
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut endpoint = Endpoint::parse(POLYMARKET_MARKET_URL)?;
//!     endpoint.resolve()?; // blocking DNS: at start-up, never on the loop
//!     let mut config = ConnectionConfig::default();
//!     config.tls = Some(webpki_client_config()?); // build once, share between connections
//!     let mut conn = Connection::new(0, Arc::new(endpoint), config);
//!     let mut sched = ReconnectScheduler::new(ReconnectConfig::default(), 7);
//!     let subscribe = r#"{"assets_ids":["123"],"type":"market","initial_dump":true}"#;
//!
//!     let mut poll = Poll::new()?;
//!     let mut events = Events::with_capacity(256);
//!     sched.request_now(0, Instant::now());
//!     loop {
//!         let now = Instant::now();
//!         while let Some(id) = sched.pop_due(now) {
//!             // id == 0 here; a real loop looks the connection up by id.
//!             if let Err(e) = conn.connect(poll.registry(), Token(id as usize), now) {
//!                 if !e.is_retryable() { return Err(e.into()); }
//!                 sched.request(id, now);
//!             }
//!         }
//!         let deadline = [conn.next_deadline(), sched.next_deadline()].into_iter().flatten().min();
//!         poll.poll(&mut events, deadline.map(|d| d.saturating_duration_since(now)))?;
//!
//!         let now = Instant::now();
//!         let mut result: Result<(), ConnectionError> = Ok(());
//!         for event in events.iter() {
//!             if event.token() != Token(0) { continue; }
//!             result = match conn.on_ready(poll.registry(), now, &mut |frame| {
//!                 let _ = frame; // decode once, route records to the book threads
//!             }) {
//!                 Ok(Progress::Connected { .. }) => {
//!                     sched.connected(0, now);
//!                     conn.send_text(poll.registry(), subscribe)
//!                 }
//!                 Ok(_) => Ok(()),
//!                 Err(e) => Err(e),
//!             };
//!         }
//!         if result.is_ok() {
//!             result = conn.on_tick(poll.registry(), now);
//!         }
//!         if let Err(e) = result {
//!             // Torn down already. Mark the connection's books untrusted here.
//!             if !e.is_retryable() { return Err(e.into()); }
//!             sched.request(0, now);
//!         }
//!     }
//! }
//! ```

mod backoff;
mod config;
mod endpoint;
mod error;
mod handshake;
mod reconnect;
mod state;
mod stats;
mod stream;

use std::fmt;

pub use backoff::{Backoff, BackoffConfig, Jitter};
pub use config::{ConnectionConfig, client_config_with_roots, webpki_client_config};
pub use endpoint::{Endpoint, POLYMARKET_MARKET_URL, Scheme};
pub use error::{ConnectionError, Stage};
pub use reconnect::{Due, ReconnectConfig, ReconnectScheduler};
pub use state::{Connection, PING, PONG};
pub use stats::ConnectionStats;

/// A connection's status, as shown in `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// No socket: never connected, or torn down and waiting for the scheduler.
    Disconnected,
    /// TCP connect, TLS or WebSocket upgrade in progress.
    Connecting,
    /// Open and live.
    Connected,
    /// Open, being retired (recycling): still delivers frames; no new subscriptions.
    Draining,
    /// Closed by the caller; terminal.
    Closed,
}

impl Status {
    /// Lower-case name (`"connected"`, ...), as the seeds' `/stats` show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Disconnected => "disconnected",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Draining => "draining",
            Status::Closed => "closed",
        }
    }

    /// Whether frames can flow (`Connected` or `Draining`).
    pub const fn is_open(self) -> bool {
        matches!(self, Status::Connected | Status::Draining)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Connection::on_ready`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing for the caller: a handshake step, a flush, a `PONG`, or a spurious wake-up.
    Idle,
    /// The WebSocket upgrade completed during this call: (re)send subscriptions now. `frames`
    /// data frames that arrived right behind the upgrade were already delivered.
    Connected {
        /// Data frames delivered after the upgrade in the same call.
        frames: u32,
    },
    /// This many data frames were delivered to `on_frame`.
    Frames(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_and_openness() {
        for status in [
            Status::Disconnected,
            Status::Connecting,
            Status::Connected,
            Status::Draining,
            Status::Closed,
        ] {
            assert_eq!(status.to_string(), status.as_str());
        }
        assert!(Status::Draining.is_open() && !Status::Connecting.is_open());
    }
}
