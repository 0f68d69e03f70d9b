//! The loop itself (event-loop thread): poll, read ready connections, flush the router, drain
//! commands and resync requests, run the 100 ms timers. Connection lifetimes (connected,
//! lost, reconnect) and the one send path live here; each seed component's acting half has
//! its own file (see the module doc of `event_loop`).

use super::freeze::{PROBE_ID, ProbeSlot};
use crate::watchdog::{FreezeDetector, RateWindow};
use crate::worker::{HistogramCounts, LatencyWindow};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::{Events, Poll, Token};

use super::commands::Command;
use super::config::{LifecycleCounts, LoopConfig, LoopShared, ResyncCause};
use super::frame::Core;
use super::published::PublishClock;
use super::snapshot;
use crate::connection::{
    Connection, ConnectionError, Endpoint, Progress, ReconnectScheduler, Status,
};
use crate::handoff::Router;
use crate::market::AssetId;
use crate::pool::PoolPlanner;
use crate::recycler::Recycler;
use crate::registry::{AssetStatus, ConnId, Registry};
use crate::venue::subscribe::{self, Operation};
use crate::venue::{DecodeOutput, Decoder};
use crate::worker::ResyncRequest;

/// The waker's token; connection `c` uses `Token(c + 1)`.
pub const WAKER: Token = Token(0);

pub(super) fn token_of(conn: ConnId) -> Token {
    Token(conn as usize + 1)
}

pub(super) struct ConnSlot {
    pub(super) conn: Connection,
    /// Assets this connection is subscribed to (what to resend after a reconnect).
    pub(super) assets: Vec<AssetId>,
    pub(super) created: Instant,
    /// The WebSocket is open (set on `Connected`, cleared when lost).
    pub(super) open: bool,
    /// Flow records it delivered (changes, trades, …; not snapshots), for its rate.
    pub(super) flow: u64,
    /// Its recent flow rate (`watchdog::RateWindow`), for the rate-aware silence rules.
    pub(super) rate: RateWindow,
}

impl ConnSlot {
    /// A slot for a connection just created.
    pub(super) fn new(conn: Connection, assets: Vec<AssetId>, now: Instant) -> ConnSlot {
        ConnSlot {
            conn,
            assets,
            created: now,
            open: false,
            flow: 0,
            rate: RateWindow::default(),
        }
    }
}

/// The event loop; `run` consumes it on its own thread.
pub struct EventLoop {
    pub(super) poll: Poll,
    pub(super) commands: Receiver<Command>,
    pub(super) resyncs_in: Receiver<ResyncRequest>,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) config: LoopConfig,
    pub(super) planner: PoolPlanner,
    pub(super) scheduler: ReconnectScheduler,
    pub(super) conns: BTreeMap<ConnId, ConnSlot>,
    pub(super) core: Core,
    pub(super) shared: Arc<LoopShared>,
    pub(super) recorder: Option<crate::recording::recorder::RecorderTx>,
    pub(super) publish_clock: PublishClock,
    /// The probe connection (`probe.rs`), when running.
    pub(super) probe: Option<ProbeSlot>,
    /// Probe evidence against owner connections.
    pub(super) freeze: FreezeDetector,
    /// Since when `Core::flow_counts` count (the probe's last choice).
    pub(super) probe_counted_since: Option<Instant>,
    /// Each asset's recent flow rate as the probe chooses by it (`freeze.rs`).
    pub(super) probe_rates: Vec<f64>,
    /// Connections suspected frozen, since when (until recycled or lost).
    pub(super) suspected: BTreeMap<ConnId, Instant>,
    /// Wire → book latency of the last [`RECENT_WINDOW`](crate::worker::RECENT_WINDOW).
    pub(super) latency_window: LatencyWindow,
    /// `--replay`: the recording this loop is served from (`replay.rs`).
    pub(super) replay: Option<super::replay::ReplayFeed>,
    /// `--replay`: half the rings' capacity (set at the first replay step).
    pub(super) ring_room_max: usize,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl EventLoop {
    /// Builds the loop around `poll`, whose [`WAKER`] token the engine's waker uses.
    ///
    /// # Errors
    /// Never at present; kept fallible for OS resources created here later.
    #[allow(clippy::too_many_arguments, reason = "constructed once by the engine")]
    pub fn new(
        poll: Poll,
        endpoint: Arc<Endpoint>,
        config: LoopConfig,
        planner: PoolPlanner,
        router: Router,
        commands: Receiver<Command>,
        resyncs_in: Receiver<ResyncRequest>,
        shared: Arc<LoopShared>,
        recorder: Option<crate::recording::recorder::RecorderTx>,
    ) -> std::io::Result<EventLoop> {
        let core = Core {
            registry: Registry::new(),
            decoder: Decoder::new(),
            out: DecodeOutput::default(),
            router_stats: router.stats(),
            router,
            workers_of: Vec::new(),
            last_record_ns: Vec::new(),
            flow_counts: Vec::new(),
            probe_hits: Vec::new(),
            probe_frames: 0,
            resyncs: crate::watchdog::Resyncs::new(config.snapshot_timeout),
            stats: snapshot::IntegrityView::default(),
            lost: Vec::new(),
            notices: Vec::new(),
            expired_queue: std::collections::VecDeque::new(),
            lifecycle: LifecycleCounts::default(),
            recycler: Recycler::new(config.recycler.clone()),
        };
        Ok(EventLoop {
            poll,
            commands,
            resyncs_in,
            endpoint,
            scheduler: ReconnectScheduler::new(config.reconnect, fastrand::u64(..)),
            config,
            planner,
            conns: BTreeMap::new(),
            core,
            shared,
            recorder,
            publish_clock: PublishClock::default(),
            probe: None,
            freeze: FreezeDetector::default(),
            probe_counted_since: None,
            probe_rates: Vec::new(),
            suspected: BTreeMap::new(),
            latency_window: LatencyWindow::default(),
            replay: None,
            ring_room_max: 0,
        })
    }

    /// Runs until [`Command::Stop`] or until the command channel closes.
    pub fn run(mut self) {
        self.shared.running.store(true, Ordering::Release);
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now();
        let mut next_expiry = Instant::now() + self.config.expiry_interval;
        self.publish(Instant::now());
        loop {
            let now = Instant::now();
            let timeout = next_tick
                .saturating_duration_since(now)
                .min(self.config.idle_poll);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("Event loop poll failed: {e}");
                    break;
                }
            }
            let now = Instant::now();
            self.shared
                .heartbeat_ns
                .store(crate::worker::now_ns(), Ordering::Relaxed);
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let conn_id = (event.token().0 - 1) as ConnId;
                if conn_id == PROBE_ID {
                    self.drive_probe(now);
                } else {
                    self.drive(conn_id, now);
                }
            }
            self.replay_step();
            self.flush_router();
            if !self.drain_commands() {
                break;
            }
            self.drain_resync_requests();
            if !self.core.notices.is_empty() {
                self.on_notices();
            }
            if now >= next_tick {
                self.tick(now);
                next_tick = now + Duration::from_millis(100);
            }
            if now >= next_expiry {
                self.lifecycle_tick(wall_ms());
                next_expiry = now + self.config.expiry_interval;
            }
        }
        for (_, slot) in self.conns.iter_mut() {
            slot.conn.close(self.poll.registry());
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.conn.close(self.poll.registry());
        }
        self.shared.running.store(false, Ordering::Release);
        self.shared.active_connections.store(0, Ordering::Relaxed);
    }

    /// Reads everything a connection has and handles what happened.
    pub(super) fn drive(&mut self, conn_id: ConnId, now: Instant) {
        let Some(slot) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let core = &mut self.core;
        let recorder = &self.recorder;
        let (mut failed, mut flow) = (0u64, 0u64);
        let result = slot
            .conn
            .on_ready(self.poll.registry(), now, &mut |text: &str| {
                let recv_ns = crate::worker::now_ns();
                if let Some(tx) = recorder {
                    tx.frame(conn_id, text);
                }
                let out = core.on_frame(conn_id, text, recv_ns);
                failed += u64::from(out.failed);
                flow += u64::from(out.flow);
            });
        slot.flow += flow;
        if failed > 0 {
            slot.conn.record_parse_errors(failed);
        }
        self.after_progress(conn_id, result, now);
    }

    pub(super) fn after_progress(
        &mut self,
        conn_id: ConnId,
        result: Result<Progress, ConnectionError>,
        now: Instant,
    ) {
        match result {
            Ok(Progress::Connected { .. }) => self.on_connected(conn_id, now),
            Ok(_) => {}
            Err(e) => self.on_error(conn_id, now, &e),
        }
    }

    pub(super) fn on_error(&mut self, conn_id: ConnId, now: Instant, e: &ConnectionError) {
        if matches!(e, ConnectionError::InvalidState { .. }) {
            return;
        }
        let why = e.to_string();
        if !e.is_retryable() {
            // Retried anyway (with backoff): the operator may fix it without a restart.
            log::error!(
                "Connection error that will not heal by itself: conn={conn_id} error={why}"
            );
        }
        self.on_lost(conn_id, now, &why);
    }

    pub(super) fn on_connected(&mut self, conn_id: ConnId, now: Instant) {
        self.probe_soon(now);
        let Some(slot) = self.conns.get_mut(&conn_id) else {
            return;
        };
        self.scheduler.connected(conn_id, now);
        slot.open = true;
        let tokens: Vec<&str> = slot
            .assets
            .iter()
            .filter_map(|a| self.core.registry.token(*a))
            .collect();
        log::info!(
            "Connected: conn={conn_id} assets={} url={}",
            tokens.len(),
            self.endpoint.url()
        );
        let mut frames = Vec::with_capacity(1 + tokens.len() / subscribe::MAX_IDS_PER_FRAME);
        let mut chunks = subscribe::chunks(&tokens);
        frames.push(subscribe::initial(
            chunks.next().unwrap_or_default().iter().copied(),
            self.config.custom_features,
        ));
        for chunk in chunks {
            frames.push(subscribe::operation(
                Operation::Subscribe,
                chunk.iter().copied(),
            ));
        }
        if !self.send_frames(conn_id, &frames, now) {
            return;
        }
        let Some(slot) = self.conns.get(&conn_id) else {
            return;
        };
        // A replacement's assets are still owned by the old connection: the recycler's
        // deadline, not the snapshot watchdog, covers them.
        for a in &slot.assets {
            if self.core.registry.owner(*a) == Some(conn_id) {
                self.core.resyncs.subscribed(*a, now);
            }
        }
    }

    /// The one send path: every frame for the venue goes through here. A send that fails has
    /// torn its connection down (`Connection::send_text`) and is handled exactly like a failed
    /// read: lost → its books untrusted → reconnect → resubscribe (→ fresh snapshots).
    /// Returns whether every frame was queued.
    pub(super) fn send_frames(&mut self, conn_id: ConnId, frames: &[String], now: Instant) -> bool {
        let Some(slot) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        for f in frames {
            if let Err(e) = slot.conn.send_text(self.poll.registry(), f) {
                self.on_error(conn_id, now, &e);
                return false;
            }
        }
        true
    }

    /// `op` frames for `assets`, in the venue's batch size.
    pub(super) fn op_frames(&self, op: Operation, assets: &[AssetId]) -> Vec<String> {
        let tokens: Vec<&str> = assets
            .iter()
            .filter_map(|a| self.core.registry.token(*a))
            .collect();
        subscribe::chunks(&tokens)
            .map(|chunk| subscribe::operation(op, chunk.iter().copied()))
            .collect()
    }

    /// A connection died: its assets' books may have missed data.
    pub(super) fn on_lost(&mut self, conn_id: ConnId, now: Instant, why: &str) {
        self.forget_suspect(conn_id);
        if self.core.recycler.is_replacement(conn_id) {
            log::warn!("Replacement connection lost: conn={conn_id} reason={why}");
            if let Some(ev) = self.core.recycler.on_new_lost(conn_id) {
                self.on_recycle_event(ev, now);
            }
            return;
        }
        let Some(slot) = self.conns.get_mut(&conn_id) else {
            return;
        };
        log::warn!(
            "Connection lost: conn={conn_id} assets={} reason={why}",
            slot.assets.len()
        );
        // Books of a connection that never opened (a failed reconnect) are already marked;
        // assets that moved away (recycling) are not this connection's concern.
        let was_open = std::mem::replace(&mut slot.open, false);
        if let (true, Some(rec)) = (was_open, &self.recorder) {
            rec.gap(conn_id, "connection_lost");
        }
        for a in &slot.assets {
            if self.core.registry.owner(*a) != Some(conn_id) {
                continue;
            }
            if was_open {
                self.core.mark_lost(*a);
                self.core.resyncs.count(ResyncCause::Reconnect);
            }
            self.core.resyncs.connection_lost(*a);
        }
        if self.core.recycler.is_recycling(conn_id) {
            // Being replaced: the replacement's snapshots restore these books; no reconnect.
            return;
        }
        self.scheduler.request(conn_id, now);
    }

    pub(super) fn flush_router(&mut self) {
        self.core.router.flush(&mut self.core.lost);
        while let Some(asset) = self.core.lost.pop() {
            self.core.want(asset, ResyncCause::RingFull);
        }
    }

    /// Returns false when the loop must stop.
    pub(super) fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
                Ok(cmd) => self.on_command(cmd),
            }
        }
    }

    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::AddAssets(infos) => self.add_assets(infos),
            Command::ExpireTokens(tokens) => {
                let now_ms = wall_ms();
                let ids: Vec<AssetId> = tokens
                    .iter()
                    .filter_map(|t| self.core.registry.resolve(t))
                    .collect();
                self.expire(&ids, now_ms);
            }
            Command::Resync(tokens) => {
                for t in tokens {
                    if let Some(id) = self.core.registry.resolve(&t) {
                        self.core.want(id, ResyncCause::Requested);
                    }
                }
            }
            Command::ForceSubscribe => self.planner.force(),
            Command::ForceRecycle(conn) => {
                log::info!("Recycle requested: conn={conn}");
                self.core.recycler.force(conn);
            }
            Command::InjectSendFailure(conn) => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    log::warn!("Fault injected: the next send on conn={conn} fails");
                    slot.conn.inject_send_failure();
                }
            }
            Command::Snapshot(reply) => {
                let now = Instant::now();
                let snap = self.snapshot(now);
                let _ = reply.send(self.shared.published.store_snapshot(now, snap));
            }
            Command::Locate(token, reply) => {
                let found = self.core.registry.resolve(&token).map(|id| {
                    let w = self.core.workers_of.get(id.index()).copied().unwrap_or(0);
                    (id, usize::from(w))
                });
                let _ = reply.send(found);
            }
            Command::Stop => {}
        }
    }

    pub(super) fn drain_resync_requests(&mut self) {
        while let Ok(req) = self.resyncs_in.try_recv() {
            self.core.want(req.asset, ResyncCause::Book(req.reason));
        }
    }

    /// Timers, every ~100 ms.
    pub(super) fn tick(&mut self, now: Instant) {
        // Keep-alive and silence watchdog.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in &ids {
            let Some(slot) = self.conns.get_mut(id) else {
                continue;
            };
            if let Err(e) = slot.conn.on_tick(self.poll.registry(), now) {
                self.on_error(*id, now, &e);
            }
        }
        // Reconnects that are due.
        let due: Vec<ConnId> = self.scheduler.due(now).collect();
        for id in due {
            if let Some(slot) = self.conns.get_mut(&id) {
                log::info!("Reconnecting: conn={id}");
                if let Err(e) = slot.conn.connect(self.poll.registry(), token_of(id), now) {
                    log::warn!("Reconnect failed to start: conn={id} error={e}");
                    self.scheduler.request(id, now);
                }
            }
        }
        self.plan_subscriptions(now);
        self.freeze_tick(now);
        self.recycle(now);
        self.watchdogs(now);
        self.send_resyncs(now);
        self.publish(now);
    }

    /// Gauges every tick; the snapshot and market list when due (`published.rs`).
    pub(super) fn publish(&mut self, now: Instant) {
        if self.publish_clock.snapshot_due(now) {
            let sources = &self.config.latency_sources;
            self.latency_window.observe(now, || {
                let mut all = HistogramCounts::default();
                for w in sources {
                    w.latency_histogram().add_to(&mut all);
                }
                all
            });
            let snap = self.snapshot(now);
            self.shared.published.store_snapshot(now, snap);
        }
        if self
            .publish_clock
            .markets_due(now, self.core.registry.revision())
        {
            let markets = self.markets();
            self.shared.published.store_markets(now, markets);
        }
        let active = self
            .conns
            .values()
            .filter(|s| s.conn.status() == Status::Connected)
            .count();
        self.shared
            .active_connections
            .store(active, Ordering::Relaxed);
        self.shared
            .connections
            .store(self.conns.len(), Ordering::Relaxed);
        self.shared.subscribed.store(
            self.core.registry.count(AssetStatus::Subscribed),
            Ordering::Relaxed,
        );
        self.shared
            .awaiting_snapshot
            .store(self.core.resyncs.awaiting_len(), Ordering::Relaxed);
        self.shared
            .frames
            .store(self.core.stats.frames, Ordering::Relaxed);
    }
}

/// Wall-clock Unix milliseconds (for expiry bookkeeping, not latency).
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
