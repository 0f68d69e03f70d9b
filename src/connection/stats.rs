//! [`ConnectionStats`]: plain counters of one connection. Written only by the event-loop thread
//! that owns the connection; the event loop publishes snapshots (copies) for `/stats` itself.

use std::time::{Duration, Instant};

/// Per-connection counters. Counters are cumulative over the `Connection`'s life, across
/// reconnects; times refer to the current (or last) socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Data text frames delivered to `on_frame` (everything but `PONG`).
    pub messages: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// `PONG` replies received (consumed, not delivered to `on_frame`).
    pub pongs: u64,
    /// Text `PING`s sent.
    pub pings_sent: u64,
    /// WebSocket control frames received (ping / pong); pings are answered by tungstenite.
    pub control_frames: u64,
    /// Binary frames received and ignored (the venue sends none).
    pub ignored_frames: u64,
    /// Text frames sent by the caller (`send_text`).
    pub sent: u64,
    /// Frames or messages that failed to decode (the event loop reports them with
    /// `Connection::record_parse_errors`).
    pub parse_errors: u64,
    /// `connect` calls.
    pub connects: u64,
    /// `connect` calls after the first.
    pub reconnects: u64,
    /// When the current socket finished its upgrade; `None` while not connected.
    pub connected_since: Option<Instant>,
    /// When the last data frame arrived.
    pub last_message_at: Option<Instant>,
    /// When the last frame of any kind arrived (data, `PONG`, control): the watchdog's clock.
    pub last_frame_at: Option<Instant>,
    /// Assets the caller has subscribed on this connection (set with `Connection::set_assets`).
    pub assets: u32,
    /// `ConnectionError::kind` of the last error that tore the connection down.
    pub last_error: Option<&'static str>,
}

impl ConnectionStats {
    /// Time since the last data frame, if any arrived.
    pub fn last_message_age(&self, now: Instant) -> Option<Duration> {
        self.last_message_at
            .map(|at| now.saturating_duration_since(at))
    }

    /// Time since the current socket connected, if connected.
    pub fn uptime(&self, now: Instant) -> Option<Duration> {
        self.connected_since
            .map(|at| now.saturating_duration_since(at))
    }
}
