//! [`Handshake`]: the connecting half of a connection's state machine, TCP connect → TLS
//! handshake (`wss://`) → WebSocket upgrade, each stage resumed across `WouldBlock`. Runs on
//! the event-loop thread inside `Connection::on_ready`; never blocks.
//!
//! Each stage owns its I/O value, and [`Handshake::advance`] consumes the stage and returns the
//! next one (tungstenite's `MidHandshake` works the same way).

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use mio::net::TcpStream;
use rustls::{ClientConfig, ClientConnection, pki_types::ServerName};
use tungstenite::{
    WebSocket,
    client::IntoClientRequest,
    handshake::{
        HandshakeError, MidHandshake,
        client::{ClientHandshake, Request},
    },
    protocol::WebSocketConfig,
};

use super::{
    ConnectionError, Endpoint, Stage,
    stream::{Stream, TlsStream},
};

/// What a handshake needs besides its socket; borrowed from the `Connection` for one call.
pub(crate) struct HandshakeCtx<'a> {
    pub(crate) conn: u32,
    pub(crate) endpoint: &'a Endpoint,
    /// `Some` for `wss://`.
    pub(crate) tls: Option<&'a Arc<ClientConfig>>,
    pub(crate) ws_config: WebSocketConfig,
}

/// The stage of an unfinished handshake, owning its I/O value.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// Non-blocking connect issued; waiting for the socket to become writable.
    Tcp(TcpStream),
    /// TLS handshake in progress.
    Tls(Box<TlsStream>),
    /// HTTP upgrade sent or being sent; waiting for `101 Switching Protocols`.
    WebSocket(Box<MidHandshake<ClientHandshake<Stream>>>),
}

/// Result of [`Handshake::advance`].
#[derive(Debug)]
pub(crate) enum Advance {
    /// Waiting for readiness.
    Blocked(Handshake),
    /// Upgrade complete: the WebSocket is open.
    Open(Box<WebSocket<Stream>>),
    /// Failed. The handshake is handed back when it still owns the socket, so the caller can
    /// deregister it; tungstenite drops the stream itself when the upgrade fails.
    Failed(Option<Handshake>, ConnectionError),
}

impl Handshake {
    /// The stage, for errors and logs.
    pub(crate) fn stage(&self) -> Stage {
        match self {
            Handshake::Tcp(_) => Stage::Tcp,
            Handshake::Tls(_) => Stage::Tls,
            Handshake::WebSocket(_) => Stage::WebSocket,
        }
    }

    /// The socket, for deregistration.
    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Handshake::Tcp(sock) => sock,
            Handshake::Tls(tls) => tls.tcp_mut(),
            Handshake::WebSocket(mid) => mid.get_mut().get_mut().tcp_mut(),
        }
    }

    /// Moves through as many stages as the socket allows without blocking.
    pub(crate) fn advance(self, ctx: &HandshakeCtx<'_>) -> Advance {
        let mut stage = self;
        loop {
            stage = match stage {
                Handshake::Tcp(sock) => match tcp_connected(&sock) {
                    Ok(false) => return Advance::Blocked(Handshake::Tcp(sock)),
                    Ok(true) => match ctx.tls {
                        Some(config) => match tls_client(ctx, config) {
                            Ok(tls) => Handshake::Tls(Box::new(TlsStream::new(tls, sock))),
                            Err(e) => return Advance::Failed(Some(Handshake::Tcp(sock)), e),
                        },
                        None => match start_upgrade(ctx, Stream::Plain(sock)) {
                            Ok(next) => next,
                            Err(failed) => return failed,
                        },
                    },
                    Err(e) => {
                        let error = ConnectionError::from_io(ctx.conn, Stage::Tcp, e);
                        return Advance::Failed(Some(Handshake::Tcp(sock)), error);
                    }
                },
                Handshake::Tls(mut tls) => match tls.handshake() {
                    Ok(()) => match start_upgrade(ctx, Stream::Tls(tls)) {
                        Ok(next) => next,
                        Err(failed) => return failed,
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Advance::Blocked(Handshake::Tls(tls));
                    }
                    Err(e) => {
                        let error = ConnectionError::from_io(ctx.conn, Stage::Tls, e);
                        return Advance::Failed(Some(Handshake::Tls(tls)), error);
                    }
                },
                Handshake::WebSocket(mid) => {
                    return match (*mid).handshake() {
                        Ok((ws, _response)) => Advance::Open(Box::new(ws)),
                        Err(HandshakeError::Interrupted(mid)) => {
                            Advance::Blocked(Handshake::WebSocket(Box::new(mid)))
                        }
                        Err(HandshakeError::Failure(e)) => Advance::Failed(
                            None,
                            ConnectionError::from_ws(ctx.conn, Stage::WebSocket, e),
                        ),
                    };
                }
            };
        }
    }
}

/// `EINPROGRESS` (`io::ErrorKind::InProgress` is not stable yet); Linux's value, the BSDs' and
/// macOS' differ.
#[cfg(not(any(target_os = "macos", target_os = "ios", target_os = "freebsd")))]
const EINPROGRESS: i32 = 115;
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
const EINPROGRESS: i32 = 36;

/// Whether a non-blocking connect has completed (mio's recipe in `TcpStream::connect`):
/// `take_error` reports a failed connect, `peer_addr` succeeds once connected.
fn tcp_connected(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotConnected | io::ErrorKind::WouldBlock
            ) || e.raw_os_error() == Some(EINPROGRESS) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn tls_client(
    ctx: &HandshakeCtx<'_>,
    config: &Arc<ClientConfig>,
) -> Result<ClientConnection, ConnectionError> {
    let host = ctx.endpoint.host();
    // SNI and certificate name: the URL's host (an IP literal becomes an IP server name).
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| ConnectionError::InvalidServerName {
            host: host.to_owned(),
        })?;
    ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| ConnectionError::from_tls(ctx.conn, e))
}

/// Builds the upgrade request and starts writing it.
#[allow(
    clippy::result_large_err,
    reason = "the error is the Advance to return; built once per connect"
)]
fn start_upgrade(ctx: &HandshakeCtx<'_>, stream: Stream) -> Result<Handshake, Advance> {
    let request: Request = match ctx.endpoint.url().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            let error = ConnectionError::from_ws(ctx.conn, Stage::WebSocket, e);
            let stage = match stream {
                Stream::Plain(sock) => Handshake::Tcp(sock),
                Stream::Tls(tls) => Handshake::Tls(tls),
            };
            return Err(Advance::Failed(Some(stage), error));
        }
    };
    match ClientHandshake::start(stream, request, Some(ctx.ws_config)) {
        Ok(mid) => Ok(Handshake::WebSocket(Box::new(mid))),
        Err(e) => Err(Advance::Failed(
            None,
            ConnectionError::from_ws(ctx.conn, Stage::WebSocket, e),
        )),
    }
}

/// How long a handshake has run, in whole milliseconds (for errors).
pub(crate) fn elapsed_ms(since: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX)
}

/// `Duration` in whole milliseconds, saturating (for errors and logs).
pub(crate) fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
