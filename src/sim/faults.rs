//! Fault switches, settable at run time from tests (in-process) or over HTTP
//! (`POST /sim/fault/...`).
//!
//! Two kinds: global switches read directly by the acceptor and HTTP threads (handshake
//! delay, refusing connections, Gamma/CLOB error statuses) live in [`FaultState`] atomics;
//! per-connection and per-asset faults go to the core thread, which owns the connection table
//! and forwards one-shot [`Injection`]s into each connection's queue so they happen in order
//! with its data. `ConnTarget::All` switches (stall, split writes) also apply to connections
//! opened later, until switched off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use super::SimError;
use super::calendar::Clock;
use super::conn::{ConnTarget, FaultCommand, Injection};
use super::core::{Command, CoreClient};

/// Global fault switches (atomics; read without asking the core).
#[derive(Debug)]
pub(crate) struct FaultState {
    clock: Clock,
    handshake_delay_ms: AtomicU64,
    refuse_until_ms: AtomicU64,
    gamma_error: AtomicU16,
    clob_error: AtomicU16,
}

impl FaultState {
    /// Everything off.
    pub(crate) fn new(clock: Clock) -> FaultState {
        FaultState {
            clock,
            handshake_delay_ms: AtomicU64::new(0),
            refuse_until_ms: AtomicU64::new(0),
            gamma_error: AtomicU16::new(0),
            clob_error: AtomicU16::new(0),
        }
    }

    /// Delay before answering a WebSocket handshake.
    pub(crate) fn handshake_delay(&self) -> Duration {
        Duration::from_millis(self.handshake_delay_ms.load(Ordering::Relaxed))
    }

    /// True while new WebSocket connections are refused.
    pub(crate) fn refusing(&self) -> bool {
        (self.clock.elapsed().as_millis() as u64) < self.refuse_until_ms.load(Ordering::Relaxed)
    }

    /// The status Gamma answers with instead of data, if any.
    pub(crate) fn gamma_error(&self) -> Option<u16> {
        Some(self.gamma_error.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }

    /// The status the CLOB answers with instead of data, if any.
    pub(crate) fn clob_error(&self) -> Option<u16> {
        Some(self.clob_error.load(Ordering::Relaxed)).filter(|s| *s != 0)
    }
}

/// The fault switchboard (see `SimHandle::faults`).
///
/// Methods that name connections return how many connections they reached.
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<FaultState>,
    core: CoreClient,
}

impl Faults {
    pub(crate) fn new(state: Arc<FaultState>, core: CoreClient) -> Faults {
        Faults { state, core }
    }

    fn send(&self, fault: FaultCommand) -> Result<usize, SimError> {
        self.core.request(|reply| Command::Fault { fault, reply })
    }

    /// Cuts the TCP connection(s) abruptly (no close frame), in order with queued data.
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn drop_connection(&self, target: ConnTarget) -> Result<usize, SimError> {
        self.send(FaultCommand::Inject(target, Injection::Drop))
    }

    /// Sends the next data message cut in half (malformed JSON naming its assets).
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn malformed_frame(&self, target: ConnTarget) -> Result<usize, SimError> {
        self.send(FaultCommand::Inject(target, Injection::Malformed))
    }

    /// Writes garbage bytes outside WebSocket framing (the client sees a protocol error).
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn garbage_bytes(&self, target: ConnTarget) -> Result<usize, SimError> {
        self.send(FaultCommand::Inject(target, Injection::Garbage))
    }

    /// Sends the next data message repeated in one array frame of at least `min_bytes`
    /// (tungstenite's default client limit is 16 MiB per frame).
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn oversized_frame(&self, target: ConnTarget, min_bytes: usize) -> Result<usize, SimError> {
        self.send(FaultCommand::Inject(
            target,
            Injection::Oversized { min_bytes },
        ))
    }

    /// Silent stall: the socket stays open and `PONG` is answered, but no data is sent
    /// (messages generated meanwhile are lost for that connection).
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn stall_connection(&self, target: ConnTarget, on: bool) -> Result<usize, SimError> {
        self.send(FaultCommand::StallConn(target, on))
    }

    /// Silent stall of one asset on every connection: its books, trades and entries are left
    /// out of what is sent. Returns 1 if the asset exists.
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn stall_asset(&self, asset_id: &str, on: bool) -> Result<usize, SimError> {
        self.send(FaultCommand::StallAsset(asset_id.to_string(), on))
    }

    /// Splits every socket write into chunks of at most `chunk` bytes (`None` = off).
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn split_writes(
        &self,
        target: ConnTarget,
        chunk: Option<usize>,
    ) -> Result<usize, SimError> {
        self.send(FaultCommand::SplitWrites(
            target,
            chunk.unwrap_or(0).max(usize::from(chunk.is_some())),
        ))
    }

    /// Slow start: wait this long before answering each new WebSocket handshake.
    pub fn set_handshake_delay(&self, delay: Duration) {
        self.state
            .handshake_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Refuses new WebSocket connections (HTTP 429 on the upgrade) for `window` from now.
    pub fn refuse_connections_for(&self, window: Duration) {
        let until = self.state.clock.elapsed() + window;
        self.state
            .refuse_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// Gamma answers every request with this status (e.g. 429, 500); `None` = normal.
    pub fn set_gamma_error(&self, status: Option<u16>) {
        self.state
            .gamma_error
            .store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// The CLOB REST endpoints answer with this status; `None` = normal.
    pub fn set_clob_error(&self, status: Option<u16>) {
        self.state
            .clob_error
            .store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// Every fault off.
    ///
    /// # Errors
    /// [`SimError::Stopped`] when the sim is gone.
    pub fn clear(&self) -> Result<(), SimError> {
        self.set_handshake_delay(Duration::ZERO);
        self.state.refuse_until_ms.store(0, Ordering::Relaxed);
        self.set_gamma_error(None);
        self.set_clob_error(None);
        self.send(FaultCommand::Clear).map(|_| ())
    }
}
