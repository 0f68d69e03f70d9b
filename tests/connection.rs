//! Connection layer against loopback servers: handshake, frames in order across TCP
//! segmentation, keep-alive, silence watchdog, peer close, reconnect through the scheduler,
//! TLS with a self-signed certificate. Every wait has a deadline; nothing sleeps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

#[path = "support/ws_server.rs"]
mod ws_server;

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use mio::{Events, Poll, Token};
use polypy::connection::{
    BackoffConfig, Connection, ConnectionConfig, ConnectionError, Endpoint, Jitter, Progress,
    ReconnectConfig, ReconnectScheduler, Stage, Status, client_config_with_roots,
};
use tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};
use ws_server::{
    Accepted, read_text, read_until_closed, self_signed_localhost, spawn, spawn_raw, text_frame,
};

const TOKEN: Token = Token(7);
const WAIT: Duration = Duration::from_secs(5);
const SUBSCRIBE: &str = r#"{"assets_ids":["1","2"],"type":"market","initial_dump":true}"#;

/// A one-connection mio loop, as the event loop would run it.
struct Driver {
    poll: Poll,
    events: Events,
    conn: Connection,
    frames: Vec<String>,
    progress: Vec<Progress>,
    ready_events: u32,
}

impl Driver {
    fn new(endpoint: Endpoint, config: ConnectionConfig) -> Driver {
        Driver {
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(16),
            conn: Connection::new(1, Arc::new(endpoint), config),
            frames: Vec::new(),
            progress: Vec::new(),
            ready_events: 0,
        }
    }

    fn plain(addr: SocketAddr, config: ConnectionConfig) -> Driver {
        let url = format!("ws://{addr}/ws/market");
        Driver::new(Endpoint::parse(&url).unwrap(), config)
    }

    fn connect(&mut self) {
        self.conn
            .connect(self.poll.registry(), TOKEN, Instant::now())
            .unwrap();
    }

    /// One loop turn: poll until the connection's next deadline (at most `max_wait`), hand
    /// readiness to `on_ready`, fire timers.
    fn turn(&mut self, max_wait: Duration) -> Result<Option<Progress>, ConnectionError> {
        let now = Instant::now();
        let timeout = self
            .conn
            .next_deadline()
            .map_or(max_wait, |d| d.saturating_duration_since(now).min(max_wait));
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let now = Instant::now();
        let ready = self.events.iter().any(|e| e.token() == TOKEN);
        let mut progress = None;
        if ready {
            self.ready_events += 1;
            let frames = &mut self.frames;
            let p = self.conn.on_ready(self.poll.registry(), now, &mut |f| {
                frames.push(f.to_owned())
            })?;
            self.progress.push(p);
            progress = Some(p);
        }
        self.conn.on_tick(self.poll.registry(), now)?;
        Ok(progress)
    }

    /// Turns until `done` holds; panics after [`WAIT`]. Returns the first error.
    fn run_until(&mut self, mut done: impl FnMut(&Driver) -> bool) -> Result<(), ConnectionError> {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out: status={} stats={:?} frames={}",
                self.conn.status(),
                self.conn.stats(),
                self.frames.len()
            );
            self.turn(deadline - now)?;
        }
        Ok(())
    }

    /// Turns until the connection fails; panics if it does not within [`WAIT`].
    fn run_until_error(&mut self) -> ConnectionError {
        match self.run_until(|_| false) {
            Err(e) => e,
            Ok(()) => unreachable!(),
        }
    }

    fn run_until_connected(&mut self) {
        self.run_until(|d| d.conn.status() == Status::Connected)
            .unwrap();
    }

    fn send(&mut self, text: &str) {
        self.conn.send_text(self.poll.registry(), text).unwrap();
    }
}

fn fast_config() -> ConnectionConfig {
    let mut config = ConnectionConfig::default();
    config.handshake_timeout = Duration::from_secs(3);
    config
}

#[test]
fn handshake_reports_connected_once() {
    let (addr, server) = spawn(None, 1, |_, mut ws| {
        read_until_closed(&mut ws);
    });
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    assert_eq!(d.conn.status(), Status::Connecting);
    d.run_until_connected();
    let connected = d
        .progress
        .iter()
        .filter(|p| matches!(p, Progress::Connected { .. }))
        .count();
    assert_eq!(connected, 1);
    let stats = d.conn.stats();
    assert!(stats.connected_since.is_some());
    assert_eq!((stats.connects, stats.reconnects), (1, 0));
    assert!(d.conn.next_deadline().is_some(), "ping and watchdog armed");
    drop(d);
    server.join().unwrap();
}

#[test]
fn subscription_reaches_server_and_draining_connection_still_delivers_until_closed() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = spawn(None, 1, move |_, mut ws| {
        tx.send(read_text(&mut ws)).unwrap();
        ws.send(Message::text("after-drain")).unwrap();
        tx.send(read_until_closed(&mut ws).join(",")).unwrap();
    });
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    d.run_until_connected();
    d.send(SUBSCRIBE);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), SUBSCRIBE);
    assert_eq!(d.conn.stats().sent, 1);

    d.conn.drain();
    assert_eq!(d.conn.status(), Status::Draining);
    d.run_until(|d| !d.frames.is_empty()).unwrap();
    assert_eq!(d.frames, ["after-drain"]);

    d.conn.close(d.poll.registry());
    assert_eq!(d.conn.status(), Status::Closed);
    assert_eq!(d.conn.next_deadline(), None);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        "<close>",
        "server saw our close frame"
    );
    server.join().unwrap();
}

#[test]
fn frames_batched_in_one_write_arrive_in_order() {
    let big = "x".repeat(200_000);
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(text_frame(&format!("msg-{i}")));
    }
    batch.extend(text_frame(&big));
    let (addr, server) = spawn(None, 1, move |_, mut ws| {
        ws.get_mut().write_all(&batch).unwrap();
        read_until_closed(&mut ws);
    });
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    d.run_until(|d| d.frames.len() >= 501).unwrap();
    let expected: Vec<String> = (0..500).map(|i| format!("msg-{i}")).collect();
    assert_eq!(d.frames[..500], expected[..]);
    assert_eq!(d.frames[500].len(), big.len());
    let stats = d.conn.stats();
    assert_eq!(stats.messages, 501);
    let bytes: usize = d.frames.iter().map(String::len).sum();
    assert_eq!(stats.bytes, bytes as u64);
    assert!(stats.last_message_at.is_some());
    drop(d);
    server.join().unwrap();
}

#[test]
fn frame_split_over_many_writes_is_reassembled() {
    let short = "s".repeat(100);
    let long = "l".repeat(70_000); // 64-bit length header
    let mut wire = text_frame(&short);
    let split_short = [1, 2, 50];
    let first_long = wire.len();
    wire.extend(text_frame(&long));
    let split_long = [
        first_long + 1,
        first_long + 6,
        first_long + 10,
        first_long + 30_000,
    ];
    let cuts: Vec<usize> = split_short.into_iter().chain(split_long).collect();

    let (wrote_tx, wrote_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let cuts_for_server = cuts.clone();
    let (addr, server) = spawn(None, 1, move |_, mut ws| {
        let mut from = 0;
        for &cut in cuts_for_server.iter().chain([wire.len()].iter()) {
            // Lock-step with the test: one piece per go, so the client surely sees each alone.
            if go_rx.recv_timeout(WAIT).is_err() {
                return;
            }
            ws.get_mut().write_all(&wire[from..cut]).unwrap();
            ws.get_mut().flush().unwrap();
            from = cut;
            wrote_tx.send(cut).unwrap();
        }
        read_until_closed(&mut ws);
    });
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    d.run_until_connected();
    for (i, _) in cuts.iter().enumerate() {
        let seen = d.ready_events;
        go_tx.send(()).unwrap();
        wrote_rx.recv_timeout(WAIT).unwrap();
        // The bytes are in our receive buffer: wait for the readiness they caused.
        d.run_until(|d| d.ready_events > seen).unwrap();
        let complete = usize::from(i >= split_short.len());
        assert_eq!(d.frames.len(), complete, "after piece {i}");
    }
    go_tx.send(()).unwrap();
    wrote_rx.recv_timeout(WAIT).unwrap();
    d.run_until(|d| d.frames.len() == 2).unwrap();
    assert_eq!(d.frames[0], short);
    assert_eq!(d.frames[1], long);
    drop(d);
    server.join().unwrap();
}

#[test]
fn ping_text_is_sent_every_interval_and_pong_is_counted_not_delivered() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = spawn(None, 1, move |_, mut ws| {
        let mut pings = Vec::new();
        while pings.len() < 3 {
            let text = read_text(&mut ws);
            assert_eq!(text, "PING");
            pings.push(Instant::now());
            ws.send(Message::text("PONG")).unwrap();
        }
        tx.send(pings).unwrap();
        read_until_closed(&mut ws);
    });
    let mut config = fast_config();
    config.ping_interval = Duration::from_millis(100);
    config.silence_timeout = Duration::from_secs(2);
    let mut d = Driver::plain(addr, config);
    d.connect();
    d.run_until_connected();
    let connected_at = Instant::now();
    d.run_until(|d| d.conn.stats().pongs >= 3).unwrap();
    let pings = rx.recv_timeout(WAIT).unwrap();
    assert!(
        pings[0] >= connected_at + Duration::from_millis(95),
        "first ping too early"
    );
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(80), "pings {gap:?} apart");
    }
    assert!(
        d.frames.is_empty(),
        "PONG must not reach on_frame: {:?}",
        d.frames
    );
    assert!(d.conn.stats().pings_sent >= 3);
    assert_eq!(d.conn.stats().messages, 0);
    drop(d);
    server.join().unwrap();
}

#[test]
fn silence_watchdog_tears_down_a_quiet_connection() {
    // The server reads (so the client's pings are accepted) but never answers.
    let (addr, server) = spawn(None, 1, |_, mut ws| {
        read_until_closed(&mut ws);
    });
    let mut config = fast_config();
    config.ping_interval = Duration::from_millis(50);
    config.silence_timeout = Duration::from_millis(200);
    let mut d = Driver::plain(addr, config);
    d.connect();
    d.run_until_connected();
    let connected_at = Instant::now();
    let error = d.run_until_error();
    assert!(
        matches!(error, ConnectionError::Silent { conn: 1, silent_ms } if silent_ms >= 200),
        "{error:?}"
    );
    assert!(connected_at.elapsed() >= Duration::from_millis(195));
    assert!(error.is_retryable());
    assert_eq!(d.conn.status(), Status::Disconnected);
    assert_eq!(d.conn.next_deadline(), None);
    assert!(d.conn.stats().pings_sent >= 3);
    assert_eq!(d.conn.stats().last_error, Some("silent"));
    drop(d);
    server.join().unwrap();
}

#[test]
fn peer_close_frame_is_closed_by_peer_after_earlier_frames() {
    let (addr, server) = spawn(None, 1, |_, mut ws| {
        ws.send(Message::text("last words")).unwrap();
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
        read_until_closed(&mut ws);
    });
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    let error = d.run_until_error();
    assert!(
        matches!(
            error,
            ConnectionError::ClosedByPeer {
                code: Some(1000),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(d.frames, ["last words"]);
    assert_eq!(d.conn.status(), Status::Disconnected);
    drop(d);
    server.join().unwrap();
}

#[test]
fn abrupt_tcp_close_is_a_retryable_error() {
    let (addr, server) = spawn(None, 1, |_, ws| drop(ws));
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    let error = d.run_until_error();
    assert!(
        matches!(
            error,
            ConnectionError::ClosedByPeer { code: None, .. } | ConnectionError::Io { .. }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(d.conn.status(), Status::Disconnected);
    server.join().unwrap();
}

#[test]
fn websocket_ping_frame_is_answered() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = spawn(None, 1, move |_, mut ws| {
        ws.send(Message::Ping("hb".into())).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Pong(payload)) => {
                    tx.send(payload.to_vec()).unwrap();
                    break;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        read_until_closed(&mut ws);
    });
    let mut d = Driver::plain(addr, fast_config());
    d.connect();
    // The reply is queued while reading the ping and flushed before `on_ready` returns.
    d.run_until(|d| d.conn.stats().control_frames >= 1).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"hb");
    assert_eq!(d.conn.stats().control_frames, 1);
    assert!(d.frames.is_empty());
    drop(d);
    server.join().unwrap();
}

#[test]
fn reconnects_through_the_scheduler_with_backoff_and_resubscribes() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = spawn(None, 2, move |index, mut ws| {
        tx.send((index, read_text(&mut ws))).unwrap();
        if index == 0 {
            return; // drop: the client must reconnect
        }
        ws.send(Message::text("hello-again")).unwrap();
        read_until_closed(&mut ws);
    });
    let mut config = ReconnectConfig::default();
    config.backoff = BackoffConfig::new(Duration::from_millis(100), Duration::from_millis(400))
        .with_jitter(Jitter::None);
    let mut sched = ReconnectScheduler::new(config, 9);
    let mut d = Driver::plain(addr, fast_config());
    let id = d.conn.id();
    sched.request_now(id, Instant::now());
    let mut failed_at = None;
    let mut reconnected_at = None;
    let deadline = Instant::now() + WAIT;
    while !d.frames.iter().any(|f| f == "hello-again") {
        assert!(Instant::now() < deadline, "timed out: {:?}", d.conn.stats());
        let now = Instant::now();
        while let Some(due) = sched.pop_due(now) {
            assert_eq!(due, id);
            if failed_at.is_some() {
                reconnected_at = Some(now);
            }
            d.conn.connect(d.poll.registry(), TOKEN, now).unwrap();
        }
        let wait = sched
            .next_deadline()
            .map_or(WAIT, |t| t.saturating_duration_since(now))
            .min(WAIT);
        match d.turn(wait) {
            Ok(Some(Progress::Connected { .. })) => {
                sched.connected(id, Instant::now());
                d.send(SUBSCRIBE);
            }
            Ok(_) => {}
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                let now = Instant::now();
                failed_at = Some(now);
                sched.request(id, now);
            }
        }
    }
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (0, SUBSCRIBE.to_owned()));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (1, SUBSCRIBE.to_owned()));
    let backoff = reconnected_at.unwrap() - failed_at.unwrap();
    assert!(
        backoff >= Duration::from_millis(100),
        "reconnected after {backoff:?}"
    );
    let stats = d.conn.stats();
    assert_eq!((stats.connects, stats.reconnects), (2, 1));
    assert_eq!(d.conn.status(), Status::Connected);
    drop(d);
    server.join().unwrap();
}

#[test]
fn tls_handshake_over_mio_then_frames_and_keepalive_flow() {
    let (server_config, roots) = self_signed_localhost();
    let (tx, rx) = mpsc::channel();
    // The server answers the upgrade only once the client has been left waiting: so the
    // handshake must resume across WouldBlock, however the threads are scheduled.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let big = "b".repeat(100_000);
    let big_for_server = big.clone();
    let (addr, server) = spawn_raw(Some(server_config), 1, move |accepted: Accepted| {
        tx.send(accepted.sni.clone()).unwrap();
        go_rx.recv_timeout(WAIT).unwrap();
        let mut ws = tungstenite::accept(accepted.stream).unwrap();
        assert_eq!(read_text(&mut ws), SUBSCRIBE);
        for i in 0..100 {
            ws.write(Message::text(format!("tls-{i}"))).unwrap();
        }
        ws.write(Message::text(big_for_server.clone())).unwrap();
        ws.flush().unwrap();
        loop {
            match ws.read() {
                Ok(Message::Text(t)) if t.as_str() == "PING" => {
                    ws.send(Message::text("PONG")).unwrap();
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let endpoint = Endpoint::parse(&format!("wss://localhost:{}/ws/market", addr.port()))
        .unwrap()
        .with_addrs(vec![addr]);
    let mut config = fast_config();
    config.tls = Some(client_config_with_roots(roots).unwrap());
    config.ping_interval = Duration::from_millis(100);
    let mut d = Driver::new(endpoint, config);
    d.connect();
    d.run_until(|d| !d.progress.is_empty()).unwrap();
    go_tx.send(()).unwrap();
    d.run_until_connected();
    // The handshake was resumed across WouldBlock: readiness that completed nothing came first.
    let waits = d
        .progress
        .iter()
        .take_while(|p| !matches!(p, Progress::Connected { .. }))
        .count();
    assert!(
        waits >= 1,
        "handshake completed without ever blocking: {:?}",
        d.progress
    );
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap().as_deref(),
        Some("localhost"),
        "SNI"
    );
    d.send(SUBSCRIBE);
    d.run_until(|d| d.frames.len() >= 101 && d.conn.stats().pongs >= 1)
        .unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("tls-{i}")).collect();
    assert_eq!(d.frames[..100], expected[..]);
    assert_eq!(d.frames[100], big);
    drop(d);
    server.join().unwrap();
}

#[test]
fn untrusted_certificate_is_not_retryable() {
    let (server_config, _roots) = self_signed_localhost();
    let (addr, server) = spawn_raw(Some(server_config), 1, |_| {});
    let endpoint = Endpoint::parse(&format!("wss://localhost:{}/ws/market", addr.port()))
        .unwrap()
        .with_addrs(vec![addr]);
    // Default: webpki roots, which do not include our self-signed certificate.
    let mut d = Driver::new(endpoint, fast_config());
    d.connect();
    let error = d.run_until_error();
    assert!(
        matches!(error, ConnectionError::Certificate { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(d.conn.status(), Status::Disconnected);
    drop(d);
    server.join().unwrap();
}

#[test]
fn handshake_timeout_when_the_server_never_upgrades() {
    let (addr, server) = spawn_raw(None, 1, |mut accepted| {
        // Swallow the upgrade request, never answer, until the client gives up.
        let mut buf = [0u8; 1024];
        while matches!(std::io::Read::read(&mut accepted.stream, &mut buf), Ok(n) if n > 0) {}
    });
    let mut config = fast_config();
    config.handshake_timeout = Duration::from_millis(200);
    let mut d = Driver::plain(addr, config);
    d.connect();
    let error = d.run_until_error();
    assert!(
        matches!(
            error,
            ConnectionError::HandshakeTimeout { stage: Stage::WebSocket, after_ms, .. } if after_ms >= 200
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    drop(d);
    server.join().unwrap();
}

#[test]
#[allow(
    clippy::result_large_err,
    reason = "the callback signature is tungstenite's"
)]
fn wrong_path_is_rejected_with_404_and_not_retryable() {
    let (addr, server) = spawn_raw(None, 1, |accepted| {
        let check = |request: &tungstenite::handshake::server::Request,
                     response: tungstenite::handshake::server::Response| {
            if request.uri().path() == "/ws/market" {
                return Ok(response);
            }
            let mut refusal = tungstenite::handshake::server::ErrorResponse::new(None);
            *refusal.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            Err(refusal)
        };
        let _ = tungstenite::accept_hdr(accepted.stream, check);
    });
    let url = format!("ws://{addr}/ws/");
    let mut d = Driver::new(Endpoint::parse(&url).unwrap(), fast_config());
    d.connect();
    let error = d.run_until_error();
    assert!(
        matches!(error, ConnectionError::Rejected { status: 404, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    drop(d);
    server.join().unwrap();
}

#[test]
fn refused_tcp_connect_is_a_retryable_io_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut d = Driver::plain(addr, fast_config());
    // Loopback may refuse at once or report it with the first readiness.
    let error = match d.conn.connect(d.poll.registry(), TOKEN, Instant::now()) {
        Err(e) => e,
        Ok(()) => d.run_until_error(),
    };
    assert!(
        matches!(
            error,
            ConnectionError::Io {
                stage: Stage::Tcp,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(d.conn.status(), Status::Disconnected);
}
