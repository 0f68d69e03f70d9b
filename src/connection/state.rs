//! [`Connection`]: one WebSocket's life as a state machine, driven by the event loop.
//! Owns no thread; lives in the event loop's connection map and runs only on the event-loop thread.
//!
//! `State` owns the I/O value of each phase: the handshake stage while connecting, the
//! `WebSocket` while open. Every failure goes through `fail`, which deregisters and drops the
//! socket, records the error and leaves the connection `Disconnected`; reconnecting is the
//! caller's decision (through the `ReconnectScheduler`).

use std::{
    fmt, io, mem,
    sync::Arc,
    time::{Duration, Instant},
};

use mio::{Interest, Registry, Token, net::TcpStream};
use rustls::ClientConfig;
use tungstenite::{Message, Utf8Bytes, WebSocket};

use super::{
    ConnectionConfig, ConnectionError, ConnectionStats, Endpoint, Progress, Stage, Status,
    config::webpki_client_config,
    handshake::{Advance, Handshake, HandshakeCtx, as_ms, elapsed_ms},
    stream::Stream,
};

/// The text the venue expects as keep-alive (docs/venue-protocol.md §2.3).
pub const PING: &str = "PING";
/// The venue's answer to [`PING`]. Counted and consumed; never passed to `on_frame`.
pub const PONG: &str = "PONG";

/// An open WebSocket and its keep-alive clocks.
struct Live {
    ws: WebSocket<Stream>,
    /// Last inbound frame of any kind (starts at the upgrade): the silence watchdog's clock.
    last_rx: Instant,
    /// When the next text `PING` is due.
    next_ping: Instant,
}

enum State {
    /// No socket. `connect` starts one.
    Disconnected,
    /// Handshaking (TCP, TLS, WebSocket upgrade) since `started`.
    Connecting { stage: Handshake, started: Instant },
    /// Open.
    Connected(Box<Live>),
    /// Open, marked for retirement: still reads, pings and sends; the caller moves its assets
    /// elsewhere and then calls `close`.
    Draining(Box<Live>),
    /// Closed by the caller. Terminal.
    Closed,
}

impl State {
    fn status(&self) -> Status {
        match self {
            State::Disconnected => Status::Disconnected,
            State::Connecting { .. } => Status::Connecting,
            State::Connected(_) => Status::Connected,
            State::Draining(_) => Status::Draining,
            State::Closed => Status::Closed,
        }
    }

    /// The socket, when there is one (for deregistration).
    fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            State::Connecting { stage, .. } => Some(stage.tcp_mut()),
            State::Connected(live) | State::Draining(live) => Some(live.ws.get_mut().tcp_mut()),
            State::Disconnected | State::Closed => None,
        }
    }
}

/// One WebSocket connection to one endpoint, reconnectable. See the module docs of
/// [`crate::connection`] for the calling protocol.
pub struct Connection {
    id: u32,
    endpoint: Arc<Endpoint>,
    config: ConnectionConfig,
    state: State,
    /// TLS config actually used: `config.tls`, or webpki roots built on the first `wss` connect.
    tls: Option<Arc<ClientConfig>>,
    stats: ConnectionStats,
    /// Fault injection ([`inject_send_failure`](Self::inject_send_failure)).
    fail_next_send: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("url", &self.endpoint.url())
            .field("status", &self.status())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// `Ok(())` for a successful or merely postponed write (`WouldBlock`: tungstenite keeps the
/// bytes and the next writable readiness flushes them).
fn postponed_ok(result: tungstenite::Result<()>) -> tungstenite::Result<()> {
    match result {
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

impl Connection {
    /// A disconnected connection. Nothing happens until [`connect`](Self::connect).
    pub fn new(id: u32, endpoint: Arc<Endpoint>, mut config: ConnectionConfig) -> Connection {
        // A zero interval would make every tick due at once and spin the loop.
        config.ping_interval = config.ping_interval.max(Duration::from_millis(1));
        let tls = config.tls.clone();
        Connection {
            id,
            endpoint,
            config,
            state: State::Disconnected,
            tls,
            stats: ConnectionStats::default(),
            fail_next_send: false,
        }
    }

    /// The id given at construction (appears in every error and log line).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Current status.
    pub fn status(&self) -> Status {
        self.state.status()
    }

    /// Counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Counts frames or messages the caller failed to decode.
    pub fn record_parse_errors(&mut self, n: u64) {
        self.stats.parse_errors += n;
    }

    /// Fault injection for tests and drills: the next [`send_text`](Self::send_text) fails as
    /// if the socket's write side broke (the connection is torn down as for any send error);
    /// reading is unaffected until then.
    pub fn inject_send_failure(&mut self) {
        self.fail_next_send = true;
    }

    /// Records how many assets the caller has subscribed on this connection.
    pub fn set_assets(&mut self, assets: u32) {
        self.stats.assets = assets;
    }

    /// Starts a non-blocking TCP connect to the endpoint's next address and registers the
    /// socket under `token` for `READABLE | WRITABLE` (kept for the socket's whole life: with
    /// edge-triggered readiness a writable event only follows a full send buffer, so this
    /// costs no wake-ups and saves a `reregister` per send). Progress then comes from
    /// [`on_ready`](Self::on_ready); the handshake clock starts at `now`.
    ///
    /// # Errors
    /// - [`ConnectionError::InvalidState`] unless `Disconnected` (nothing changes);
    /// - [`ConnectionError::NotResolved`] if the endpoint has no address;
    /// - [`ConnectionError::Io`] if the socket cannot be created or registered (retryable);
    /// - [`ConnectionError::Tls`] if the default TLS config cannot be built.
    pub fn connect(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> Result<(), ConnectionError> {
        let status = self.status();
        if status != Status::Disconnected {
            return Err(self.invalid("connect", status));
        }
        let addrs = self.endpoint.addrs();
        let Some(&addr) = addrs.get(self.stats.connects as usize % addrs.len().max(1)) else {
            return Err(ConnectionError::NotResolved {
                host: self.endpoint.host().to_owned(),
            });
        };
        if self.stats.connects > 0 {
            self.stats.reconnects += 1;
        }
        self.stats.connects += 1;
        if self.endpoint.is_tls() && self.tls.is_none() {
            let config = webpki_client_config().map_err(|e| ConnectionError::Tls {
                conn: self.id,
                source: e,
            })?;
            self.tls = Some(config);
        }
        let io_error = |source| ConnectionError::Io {
            conn: self.id,
            stage: Stage::Tcp,
            source,
        };
        let mut sock = TcpStream::connect(addr).map_err(io_error)?;
        sock.set_nodelay(true).map_err(io_error)?;
        registry
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(io_error)?;
        log::debug!(
            "Connecting: conn={} url={} addr={addr} attempt={}",
            self.id,
            self.endpoint.url(),
            self.stats.connects
        );
        self.state = State::Connecting {
            stage: Handshake::Tcp(sock),
            started: now,
        };
        Ok(())
    }

    /// Handles a readiness event for this connection's token (any kind: every event is treated
    /// as a hint). While connecting, advances the handshake as far as the socket allows. When
    /// open, flushes queued sends, then reads every available frame until the socket would
    /// block, calling `on_frame` with each data text frame in wire order. `PONG` is counted
    /// and consumed; WebSocket pings are answered automatically; binary frames are counted and
    /// dropped. An event for a `Disconnected` or `Closed` connection (stale) is ignored.
    ///
    /// # Errors
    /// Any error means the connection was torn down and is now `Disconnected`; see
    /// [`ConnectionError::is_retryable`]. Frames read before the error were delivered.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        now: Instant,
        on_frame: &mut dyn FnMut(&str),
    ) -> Result<Progress, ConnectionError> {
        let mut opened = false;
        if let State::Connecting { .. } = self.state {
            let State::Connecting { stage, started } =
                mem::replace(&mut self.state, State::Disconnected)
            else {
                return Ok(Progress::Idle);
            };
            let ctx = HandshakeCtx {
                conn: self.id,
                endpoint: &self.endpoint,
                tls: if self.endpoint.is_tls() {
                    self.tls.as_ref()
                } else {
                    None
                },
                ws_config: self.config.ws_config(),
            };
            match stage.advance(&ctx) {
                Advance::Blocked(stage) => {
                    self.state = State::Connecting { stage, started };
                    return Ok(Progress::Idle);
                }
                Advance::Failed(stage, error) => {
                    if let Some(stage) = stage {
                        self.state = State::Connecting { stage, started };
                    }
                    return Err(self.fail(registry, error));
                }
                Advance::Open(ws) => {
                    log::info!(
                        "Connected: conn={} url={} handshake_ms={}",
                        self.id,
                        self.endpoint.url(),
                        elapsed_ms(started, now)
                    );
                    self.stats.connected_since = Some(now);
                    self.state = State::Connected(Box::new(Live {
                        ws: *ws,
                        last_rx: now,
                        next_ping: now + self.config.ping_interval,
                    }));
                    opened = true;
                }
            }
        }
        let (State::Connected(live) | State::Draining(live)) = &mut self.state else {
            return Ok(Progress::Idle);
        };
        // Bytes that arrived together with the `101` are already buffered by tungstenite and
        // no new readiness will announce them: read right away.
        match read_frames(live, &mut self.stats, self.id, now, on_frame) {
            Ok(frames) if opened => Ok(Progress::Connected { frames }),
            Ok(0) => Ok(Progress::Idle),
            Ok(frames) => Ok(Progress::Frames(frames)),
            Err(error) => Err(self.fail(registry, error)),
        }
    }

    /// Queues a text frame and flushes as much as the socket takes now; the rest goes out on
    /// the next writable readiness. Allowed while `Connected` or `Draining`.
    ///
    /// # Errors
    /// [`ConnectionError::InvalidState`] when not open (nothing changes); any other error tore
    /// the connection down (as for [`on_ready`](Self::on_ready)).
    pub fn send_text(&mut self, registry: &Registry, text: &str) -> Result<(), ConnectionError> {
        let (State::Connected(live) | State::Draining(live)) = &mut self.state else {
            let status = self.status();
            return Err(self.invalid("send text", status));
        };
        let result = if std::mem::take(&mut self.fail_next_send) {
            Err(tungstenite::Error::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "injected send failure",
            )))
        } else {
            postponed_ok(live.ws.write(Message::text(text)))
                .and_then(|()| postponed_ok(live.ws.flush()))
        };
        match result {
            Ok(()) => {
                self.stats.sent += 1;
                Ok(())
            }
            Err(e) => {
                let error = ConnectionError::from_ws(self.id, Stage::Open, e);
                Err(self.fail(registry, error))
            }
        }
    }

    /// Timers; call when [`next_deadline`](Self::next_deadline) has passed (calling more often
    /// is harmless). Sends the text `PING` when due, tears down a connection that has been
    /// silent for `silence_timeout`, and a handshake that exceeded `handshake_timeout`.
    ///
    /// # Errors
    /// [`ConnectionError::Silent`], [`ConnectionError::HandshakeTimeout`] or a send error; the
    /// connection is then `Disconnected` (all retryable).
    pub fn on_tick(&mut self, registry: &Registry, now: Instant) -> Result<(), ConnectionError> {
        let id = self.id;
        let error = match &mut self.state {
            State::Connecting { stage, started } => {
                if now < *started + self.config.handshake_timeout {
                    return Ok(());
                }
                ConnectionError::HandshakeTimeout {
                    conn: id,
                    stage: stage.stage(),
                    after_ms: elapsed_ms(*started, now),
                }
            }
            State::Connected(live) | State::Draining(live) => {
                let silent = now.saturating_duration_since(live.last_rx);
                if silent >= self.config.silence_timeout {
                    ConnectionError::Silent {
                        conn: id,
                        silent_ms: as_ms(silent),
                    }
                } else if now >= live.next_ping {
                    // From `now`, not from the missed deadline: a late tick must not burst.
                    live.next_ping = now + self.config.ping_interval;
                    let ping = Message::Text(Utf8Bytes::from_static(PING));
                    match postponed_ok(live.ws.write(ping))
                        .and_then(|()| postponed_ok(live.ws.flush()))
                    {
                        Ok(()) => {
                            self.stats.pings_sent += 1;
                            return Ok(());
                        }
                        Err(e) => ConnectionError::from_ws(id, Stage::Open, e),
                    }
                } else {
                    return Ok(());
                }
            }
            State::Disconnected | State::Closed => return Ok(()),
        };
        Err(self.fail(registry, error))
    }

    /// The earliest instant at which [`on_tick`](Self::on_tick) has something to do: handshake
    /// timeout while connecting; next `PING` or silence timeout while open; `None` otherwise.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Connecting { started, .. } => Some(*started + self.config.handshake_timeout),
            State::Connected(live) | State::Draining(live) => Some(
                live.next_ping
                    .min(live.last_rx + self.config.silence_timeout),
            ),
            State::Disconnected | State::Closed => None,
        }
    }

    /// Marks an open connection for retirement (`Connected` → `Draining`). It keeps reading,
    /// pinging and sending until [`close`](Self::close). No effect in other statuses.
    pub fn drain(&mut self) {
        if let State::Connected(_) = self.state {
            if let State::Connected(live) = mem::replace(&mut self.state, State::Disconnected) {
                log::info!("Draining: conn={} url={}", self.id, self.endpoint.url());
                self.state = State::Draining(live);
            }
        }
    }

    /// Closes for good (→ `Closed`, terminal): sends a close frame if open (best effort, never
    /// waits for the answer), deregisters and drops the socket.
    pub fn close(&mut self, registry: &Registry) {
        self.shut(registry);
        if self.state.status() != Status::Closed {
            log::info!("Closed: conn={} url={}", self.id, self.endpoint.url());
        }
        self.state = State::Closed;
    }

    /// Drops the socket like [`close`](Self::close), but leaves the connection `Disconnected`
    /// so that it can [`connect`](Self::connect) again (a forced reconnect).
    pub fn disconnect(&mut self, registry: &Registry) {
        if let State::Closed = self.state {
            return;
        }
        self.shut(registry);
        if self.state.status() != Status::Disconnected {
            log::info!("Disconnected: conn={} url={}", self.id, self.endpoint.url());
        }
        self.state = State::Disconnected;
    }

    /// Best-effort close frame, then deregister. The socket is dropped by the caller's state
    /// change.
    fn shut(&mut self, registry: &Registry) {
        if let State::Connected(live) | State::Draining(live) = &mut self.state {
            let _ = live.ws.close(None);
            let _ = live.ws.flush();
        }
        self.stats.connected_since = None;
        if let Some(sock) = self.state.tcp_mut() {
            let _ = registry.deregister(sock);
        }
    }

    /// Tears down after `error`: deregister, drop, `Disconnected`; returns the error.
    fn fail(&mut self, registry: &Registry, error: ConnectionError) -> ConnectionError {
        if let Some(sock) = self.state.tcp_mut() {
            // The socket is being dropped anyway; a failed deregister changes nothing.
            let _ = registry.deregister(sock);
        }
        log::warn!(
            "Connection lost: conn={} url={} error_kind={} error={error}",
            self.id,
            self.endpoint.url(),
            error.kind()
        );
        self.stats.connected_since = None;
        self.stats.last_error = Some(error.kind());
        self.state = State::Disconnected;
        error
    }

    fn invalid(&self, op: &'static str, status: Status) -> ConnectionError {
        ConnectionError::InvalidState {
            conn: self.id,
            op,
            status,
        }
    }
}

/// Flushes pending writes, then reads frames until the socket would block.
fn read_frames(
    live: &mut Live,
    stats: &mut ConnectionStats,
    id: u32,
    now: Instant,
    on_frame: &mut dyn FnMut(&str),
) -> Result<u32, ConnectionError> {
    postponed_ok(live.ws.flush()).map_err(|e| ConnectionError::from_ws(id, Stage::Open, e))?;
    let mut frames = 0u32;
    loop {
        let message = match live.ws.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(frames);
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ConnectionError::from_ws(id, Stage::Open, e)),
        };
        live.last_rx = now;
        stats.last_frame_at = Some(now);
        match message {
            Message::Text(text) => {
                if text.as_str() == PONG {
                    stats.pongs += 1;
                } else {
                    stats.messages += 1;
                    stats.bytes += text.len() as u64;
                    stats.last_message_at = Some(now);
                    frames = frames.saturating_add(1);
                    on_frame(text.as_str());
                }
            }
            Message::Ping(_) | Message::Pong(_) => stats.control_frames += 1,
            Message::Binary(_) | Message::Frame(_) => stats.ignored_frames += 1,
            Message::Close(frame) => {
                // tungstenite queued the close reply; send it if the socket takes it.
                let _ = live.ws.flush();
                return Err(ConnectionError::ClosedByPeer {
                    conn: id,
                    code: frame.map(|f| u16::from(f.code)),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connection_is_disconnected_and_refuses_sends() {
        let endpoint = Arc::new(Endpoint::parse("ws://127.0.0.1:9/ws/market").unwrap());
        let mut conn = Connection::new(4, endpoint, ConnectionConfig::default());
        assert_eq!(conn.status(), Status::Disconnected);
        assert_eq!(conn.next_deadline(), None);
        let poll = mio::Poll::new().unwrap();
        let err = conn.send_text(poll.registry(), "x").unwrap_err();
        assert!(matches!(err, ConnectionError::InvalidState { conn: 4, .. }));
        assert!(!err.is_retryable());
        conn.close(poll.registry());
        assert_eq!(conn.status(), Status::Closed);
        let err = conn
            .connect(poll.registry(), Token(0), Instant::now())
            .unwrap_err();
        assert!(matches!(err, ConnectionError::InvalidState { .. }));
    }

    #[test]
    fn unresolved_endpoint_is_refused() {
        let endpoint = Arc::new(Endpoint::parse("ws://example.invalid/ws/market").unwrap());
        let mut conn = Connection::new(1, endpoint, ConnectionConfig::default());
        let poll = mio::Poll::new().unwrap();
        let err = conn
            .connect(poll.registry(), Token(0), Instant::now())
            .unwrap_err();
        assert!(matches!(err, ConnectionError::NotResolved { .. }));
        assert_eq!(conn.status(), Status::Disconnected);
        assert_eq!(conn.stats().connects, 0);
    }
}
