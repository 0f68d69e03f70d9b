//! The loop itself; see the module doc of `event_loop`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Poll, Token};
use rustc_hash::FxHashMap;

use super::commands::Command;
use super::snapshot::{self, LoopSnapshot, MarketView};

use crate::connection::{
    Connection, ConnectionConfig, ConnectionError, Endpoint, Progress, ReconnectConfig,
    ReconnectScheduler, Status,
};
use crate::handoff::{Router, RouterStats};
use crate::market::{AssetId, Event};
use crate::orderbook::BookMeta;
use crate::pool::{PoolAction, PoolPlanner};
use crate::recycler::{
    Candidate, ConnHealth, Move, RecycleEvent, RecycleReason, Recycler, RecyclerConfig,
};
use crate::registry::{AssetInfo, AssetStatus, ConnId, Registry};
use crate::venue::subscribe::{self, Operation};
use crate::venue::{DecodeOutput, Decoder, Notice};
use crate::worker::ResyncRequest;

/// The waker's token; connection `c` uses `Token(c + 1)`.
pub const WAKER: Token = Token(0);

fn token_of(conn: ConnId) -> Token {
    Token(conn as usize + 1)
}

/// Why an asset is being resynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResyncCause {
    /// Its connection dropped and came back.
    Reconnect,
    /// Records were dropped on a full ring.
    RingFull,
    /// A frame naming it failed to decode.
    DecodeFailure,
    /// Its worker found the book untrusted: a failed check (hash, best bid/ask, crossed,
    /// incomplete snapshot), a tick-size change, or a data-loss marker.
    Book(crate::orderbook::UntrustReason),
    /// No snapshot within the timeout after subscribing.
    NoSnapshot,
    /// No data for the asset for a long time while its connection delivered.
    AssetSilent,
    /// A recycle could not move it by snapshot (deadline passed or replacement lost).
    Recycle,
    /// Asked for by an operator or another component.
    Requested,
}

impl ResyncCause {
    /// snake_case name for stats.
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncCause::Reconnect => "reconnect",
            ResyncCause::RingFull => "ring_full",
            ResyncCause::DecodeFailure => "decode_failure",
            ResyncCause::Book(r) => r.as_str(),
            ResyncCause::NoSnapshot => "no_snapshot",
            ResyncCause::AssetSilent => "asset_silent",
            ResyncCause::Recycle => "recycle",
            ResyncCause::Requested => "requested",
        }
    }
}

/// Counters the loop publishes for `/health` and `/ready` without a round trip.
#[derive(Debug, Default)]
pub struct LoopShared {
    /// The loop is running.
    pub running: AtomicBool,
    /// Connected connections.
    pub active_connections: AtomicUsize,
    /// Connections in the pool.
    pub connections: AtomicUsize,
    /// Subscribed assets.
    pub subscribed: AtomicUsize,
    /// Assets awaiting a snapshot.
    pub awaiting_snapshot: AtomicUsize,
    /// Last iteration, ns on the engine clock.
    pub heartbeat_ns: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
}

/// Event-loop settings (a part of `EngineConfig`).
#[derive(Clone)]
pub struct LoopConfig {
    /// Per-connection settings.
    pub connection: ConnectionConfig,
    /// Reconnect backoff and rate cap.
    pub reconnect: ReconnectConfig,
    /// Reconnect an open connection with assets but no data message for this long.
    pub data_silence: Duration,
    /// Resync when no snapshot arrives this long after subscribing.
    pub snapshot_timeout: Duration,
    /// Resync an asset with no data this long while its connection delivers.
    pub asset_silence: Duration,
    /// Ask for the custom-feature messages.
    pub custom_features: bool,
    /// Markets to follow (empty: all); `new_market` messages outside it are ignored.
    pub allow: crate::config::AllowList,
    /// Poll timeout when idle.
    pub idle_poll: Duration,
    /// Workers (for routing).
    pub workers: usize,
    /// How often subscribed assets past their end time are expired.
    pub expiry_interval: Duration,
    /// How long an expired asset (and its book) is kept before it is removed.
    pub cleanup_grace: Duration,
    /// Called on the event loop when markets appear or expire (cold path).
    pub lifecycle_hook: Option<LifecycleHook>,
    /// Connection recycling policy.
    pub recycler: RecyclerConfig,
}

/// A market appeared or expired (the seeds' `on_new_market` / `on_market_expired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// New assets were registered (from Gamma, `--asset`, or a `new_market` message).
    NewMarket {
        /// Condition id.
        condition: String,
        /// Its token ids that are new.
        tokens: Vec<String>,
    },
    /// Assets expired (end time passed, closed on Gamma, or `market_resolved`).
    MarketExpired {
        /// Condition id.
        condition: String,
        /// Its token ids that expired.
        tokens: Vec<String>,
    },
}

/// Receives [`LifecycleEvent`]s on the event-loop thread; must return quickly.
pub type LifecycleHook = Arc<dyn Fn(&LifecycleEvent) + Send + Sync>;

/// Lifecycle counters kept by the event loop.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LifecycleCounts {
    /// Assets expired since start.
    pub expired: u64,
    /// Expired assets removed after the grace period.
    pub removed: u64,
    /// `new_market` messages seen.
    pub new_market_notices: u64,
    /// `market_resolved` messages seen.
    pub resolved_notices: u64,
    /// Expiry checks run.
    pub expiry_checks: u64,
}

struct ConnSlot {
    conn: Connection,
    /// Assets this connection is subscribed to (what to resend after a reconnect).
    assets: Vec<AssetId>,
    created: Instant,
    /// The WebSocket is open (set on `Connected`, cleared when lost).
    open: bool,
}

/// The event loop; `run` consumes it on its own thread.
pub struct EventLoop {
    poll: Poll,
    commands: Receiver<Command>,
    resyncs_in: Receiver<ResyncRequest>,
    endpoint: Arc<Endpoint>,
    config: LoopConfig,
    planner: PoolPlanner,
    scheduler: ReconnectScheduler,
    conns: BTreeMap<ConnId, ConnSlot>,
    core: Core,
    shared: Arc<LoopShared>,
    recorder: Option<Sender<(u64, u32, String)>>,
}

impl std::fmt::Debug for LoopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopConfig")
            .field("connection", &self.connection)
            .field("snapshot_timeout", &self.snapshot_timeout)
            .field("expiry_interval", &self.expiry_interval)
            .field("cleanup_grace", &self.cleanup_grace)
            .field("lifecycle_hook", &self.lifecycle_hook.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.conns.len())
            .finish()
    }
}

/// Everything a frame touches; split from the connections so both can be borrowed at once.
struct Core {
    registry: Registry,
    decoder: Decoder,
    out: DecodeOutput,
    router: Router,
    router_stats: Arc<RouterStats>,
    workers_of: Vec<u16>,
    /// When each asset last received a record (ns), for the asset-silence watchdog.
    last_record_ns: Vec<u64>,
    /// Assets subscribed and waiting for a snapshot, with the time they started waiting.
    awaiting: FxHashMap<AssetId, Instant>,
    /// Assets to resync at the next tick, with the cause.
    wanted: FxHashMap<AssetId, ResyncCause>,
    last_resync: FxHashMap<AssetId, Instant>,
    stats: snapshot::IntegrityView,
    resync_counts: BTreeMap<&'static str, u64>,
    lost: Vec<AssetId>,
    notices: Vec<Notice>,
    /// Expired assets in expiry order, with the Unix ms they expired at (for cleanup).
    expired_queue: std::collections::VecDeque<(u64, AssetId)>,
    lifecycle: LifecycleCounts,
    /// Recycles in progress; consulted on the hot path only for a snapshot that arrives on
    /// a connection that does not own its asset.
    recycler: Recycler,
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
        recorder: Option<Sender<(u64, u32, String)>>,
    ) -> std::io::Result<EventLoop> {
        let core = Core {
            registry: Registry::new(),
            decoder: Decoder::new(),
            out: DecodeOutput::default(),
            router_stats: router.stats(),
            router,
            workers_of: Vec::new(),
            last_record_ns: Vec::new(),
            awaiting: FxHashMap::default(),
            wanted: FxHashMap::default(),
            last_resync: FxHashMap::default(),
            stats: snapshot::IntegrityView::default(),
            resync_counts: BTreeMap::new(),
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
        })
    }

    /// Runs until [`Command::Stop`] or until the command channel closes.
    pub fn run(mut self) {
        self.shared.running.store(true, Ordering::Release);
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now();
        let mut next_expiry = Instant::now() + self.config.expiry_interval;
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
                self.drive(conn_id, now);
            }
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
        self.shared.running.store(false, Ordering::Release);
        self.shared.active_connections.store(0, Ordering::Relaxed);
    }

    /// Reads everything a connection has and handles what happened.
    fn drive(&mut self, conn_id: ConnId, now: Instant) {
        let Some(slot) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let core = &mut self.core;
        let recorder = &self.recorder;
        let result = slot
            .conn
            .on_ready(self.poll.registry(), now, &mut |text: &str| {
                let recv_ns = crate::worker::now_ns();
                if let Some(tx) = recorder {
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0);
                    let _ = tx.try_send((wall, conn_id, text.to_string()));
                }
                core.on_frame(conn_id, text, recv_ns);
            });
        self.after_progress(conn_id, result, now);
    }

    fn after_progress(
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

    fn on_error(&mut self, conn_id: ConnId, now: Instant, e: &ConnectionError) {
        if matches!(e, ConnectionError::InvalidState { .. }) {
            return;
        }
        let why = e.to_string();
        self.on_lost(conn_id, now, &why);
    }

    fn on_connected(&mut self, conn_id: ConnId, now: Instant) {
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
        let mut frames = Vec::new();
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
        for f in &frames {
            if let Err(e) = slot.conn.send_text(self.poll.registry(), f) {
                self.on_error(conn_id, now, &e);
                return;
            }
        }
        // A replacement's assets are still owned by the old connection: the recycler's
        // deadline, not the snapshot watchdog, covers them.
        for a in &slot.assets {
            if self.core.registry.owner(*a) == Some(conn_id) {
                self.core.awaiting.insert(*a, now);
            }
        }
    }

    /// A connection died: its assets' books may have missed data.
    fn on_lost(&mut self, conn_id: ConnId, now: Instant, why: &str) {
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
        for a in &slot.assets {
            if self.core.registry.owner(*a) != Some(conn_id) {
                continue;
            }
            if was_open {
                self.core.mark_lost(*a);
                *self
                    .core
                    .resync_counts
                    .entry(ResyncCause::Reconnect.as_str())
                    .or_default() += 1;
            }
            self.core.awaiting.remove(a);
            self.core.wanted.remove(a);
        }
        if self.core.recycler.is_recycling(conn_id) {
            // Being replaced: the replacement's snapshots restore these books; no reconnect.
            return;
        }
        self.scheduler.request(conn_id, now);
    }

    fn flush_router(&mut self) {
        self.core.router.flush(&mut self.core.lost);
        while let Some(asset) = self.core.lost.pop() {
            self.core.want(asset, ResyncCause::RingFull);
        }
    }

    /// Returns false when the loop must stop.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
                Ok(cmd) => self.on_command(cmd),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
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
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot(Instant::now()));
            }
            Command::Markets(reply) => {
                let _ = reply.send(self.markets());
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

    fn add_assets(&mut self, infos: Vec<AssetInfo>) {
        let mut added = 0usize;
        let mut new_by_condition: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for info in infos {
            let (token, condition) = (info.token.clone(), info.condition.clone());
            let meta = BookMeta {
                asset_id: info.token.as_str().into(),
                market: info.condition.as_str().into(),
                min_order_size: info.min_order_size,
                neg_risk: info.neg_risk,
            };
            let (id, new) = self.core.registry.add_asset(info);
            let idx = id.index();
            if self.core.workers_of.len() <= idx {
                self.core.workers_of.resize(idx + 1, 0);
                self.core.last_record_ns.resize(idx + 1, 0);
            }
            // A known asset gets its metadata refreshed (Gamma may correct it).
            let worker = self.core.router.add_book(id, meta);
            self.core.workers_of[idx] = worker as u16;
            added += usize::from(new);
            if new {
                new_by_condition.entry(condition).or_default().push(token);
            }
        }
        if let Some(hook) = &self.config.lifecycle_hook {
            for (condition, tokens) in new_by_condition {
                hook(&LifecycleEvent::NewMarket { condition, tokens });
            }
        }
        if added > 0 {
            log::info!(
                "Assets registered: added={added} total={}",
                self.core.registry.len()
            );
        }
    }

    fn expire(&mut self, ids: &[AssetId], now_ms: u64) {
        let mut by_conn: BTreeMap<ConnId, Vec<AssetId>> = BTreeMap::new();
        let mut by_condition: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in ids {
            let Some(entry) = self.core.registry.get(*id) else {
                continue;
            };
            if entry.status == AssetStatus::Expired {
                continue;
            }
            if let Some(c) = entry.connection {
                by_conn.entry(c).or_default().push(*id);
            }
            by_condition
                .entry(entry.info.condition.clone())
                .or_default()
                .push(entry.info.token.clone());
            self.core.registry.mark_expired(*id, now_ms);
            self.core.awaiting.remove(id);
            self.core.wanted.remove(id);
            self.core.expired_queue.push_back((now_ms, *id));
            self.core.lifecycle.expired += 1;
            self.core.recycler.forget_asset(*id);
        }
        if !by_condition.is_empty() {
            log::info!(
                "Markets expired: markets={} assets={}",
                by_condition.len(),
                by_condition.values().map(Vec::len).sum::<usize>()
            );
        }
        if let Some(hook) = &self.config.lifecycle_hook {
            for (condition, tokens) in by_condition {
                hook(&LifecycleEvent::MarketExpired { condition, tokens });
            }
        }
        for (conn, assets) in by_conn {
            let Some(slot) = self.conns.get_mut(&conn) else {
                continue;
            };
            slot.assets.retain(|a| !assets.contains(a));
            if slot.conn.status() != Status::Connected {
                continue;
            }
            let tokens: Vec<&str> = assets
                .iter()
                .filter_map(|a| self.core.registry.token(*a))
                .collect();
            for chunk in subscribe::chunks(&tokens) {
                let _ = slot.conn.send_text(
                    self.poll.registry(),
                    &subscribe::operation(Operation::Unsubscribe, chunk.iter().copied()),
                );
            }
        }
    }

    /// Every `expiry_interval`: subscribed or pending assets past their end time expire
    /// (unsubscribed); expired assets older than the grace period are removed with their
    /// books.
    fn lifecycle_tick(&mut self, now_ms: u64) {
        self.core.lifecycle.expiry_checks += 1;
        let due: Vec<AssetId> = self
            .core
            .registry
            .expiring_before(now_ms)
            .filter(|id| {
                self.core
                    .registry
                    .get(*id)
                    .is_some_and(|e| e.status != AssetStatus::Expired)
            })
            .collect();
        if !due.is_empty() {
            self.expire(&due, now_ms);
        }
        let grace = self.config.cleanup_grace.as_millis() as u64;
        let mut removed = 0usize;
        while let Some(&(at, id)) = self.core.expired_queue.front() {
            if at.saturating_add(grace) > now_ms {
                break;
            }
            self.core.expired_queue.pop_front();
            // Still expired (not re-added since)?
            if self
                .core
                .registry
                .get(id)
                .is_none_or(|e| e.status != AssetStatus::Expired)
            {
                continue;
            }
            self.core.registry.remove(id);
            let _ = self.core.router.remove_book(id);
            self.core.last_resync.remove(&id);
            self.core.lifecycle.removed += 1;
            removed += 1;
        }
        if removed > 0 {
            log::info!("Expired assets removed: count={removed}");
        }
    }

    /// `new_market` registers the market's tokens at once (Gamma later fills in the end
    /// time); `market_resolved` expires them.
    fn on_notices(&mut self) {
        let notices = std::mem::take(&mut self.core.notices);
        for n in notices {
            match n {
                Notice::NewMarket {
                    market,
                    question,
                    assets_ids,
                    outcomes,
                    tick_size,
                    ..
                } => {
                    self.core.lifecycle.new_market_notices += 1;
                    let infos: Vec<AssetInfo> = assets_ids
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| self.core.registry.resolve(t).is_none())
                        .filter(|_| self.allowed(&market))
                        .map(|(i, t)| AssetInfo {
                            token: t.clone(),
                            condition: market.clone(),
                            outcome: outcomes.get(i).cloned().unwrap_or_default(),
                            question: question.clone(),
                            end_ms: None,
                            tick_size,
                            min_order_size: crate::market::Size::ZERO,
                            neg_risk: false,
                        })
                        .collect();
                    if !infos.is_empty() {
                        log::info!(
                            "new_market received: market={market} assets={}",
                            infos.len()
                        );
                        self.add_assets(infos);
                        self.planner.force();
                    }
                }
                Notice::MarketResolved {
                    market, assets_ids, ..
                } => {
                    self.core.lifecycle.resolved_notices += 1;
                    let ids: Vec<AssetId> = assets_ids
                        .iter()
                        .filter_map(|t| self.core.registry.resolve(t))
                        .collect();
                    if !ids.is_empty() {
                        log::info!("market_resolved received: market={market}");
                        self.expire(&ids, wall_ms());
                    }
                }
            }
        }
    }

    /// With an allow-list, only listed markets are followed.
    fn allowed(&self, condition: &str) -> bool {
        let allow = &self.config.allow;
        allow.is_empty() || allow.markets.iter().any(|m| m == condition)
    }

    fn drain_resync_requests(&mut self) {
        while let Ok(req) = self.resyncs_in.try_recv() {
            self.core.want(req.asset, ResyncCause::Book(req.reason));
        }
    }

    /// Timers, every ~100 ms.
    fn tick(&mut self, now: Instant) {
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
        self.recycle(now);
        self.watchdogs(now);
        self.send_resyncs(now);
        self.publish(now);
    }

    fn plan_subscriptions(&mut self, now: Instant) {
        let conns = &self.conns;
        let live = |c: ConnId| {
            conns
                .get(&c)
                .is_some_and(|s| s.conn.status() == Status::Connected)
        };
        let actions = self.planner.plan(&self.core.registry, now, &live);
        for action in actions {
            match action {
                PoolAction::Open { conn, assets } => {
                    for a in &assets {
                        self.core.registry.mark_subscribed(*a, conn);
                    }
                    let mut connection = Connection::new(
                        conn,
                        Arc::clone(&self.endpoint),
                        self.config.connection.clone(),
                    );
                    log::info!("Opening connection: conn={conn} assets={}", assets.len());
                    if let Err(e) = connection.connect(self.poll.registry(), token_of(conn), now) {
                        log::warn!("Connect failed to start: conn={conn} error={e}");
                        self.scheduler.request(conn, now);
                    }
                    self.conns.insert(
                        conn,
                        ConnSlot {
                            conn: connection,
                            assets,
                            created: now,
                            open: false,
                        },
                    );
                }
                PoolAction::Subscribe { conn, assets } => {
                    let Some(slot) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    let tokens: Vec<&str> = assets
                        .iter()
                        .filter_map(|a| self.core.registry.token(*a))
                        .collect();
                    for chunk in subscribe::chunks(&tokens) {
                        let _ = slot.conn.send_text(
                            self.poll.registry(),
                            &subscribe::operation(Operation::Subscribe, chunk.iter().copied()),
                        );
                    }
                    for a in &assets {
                        self.core.registry.mark_subscribed(*a, conn);
                        self.core.awaiting.insert(*a, now);
                    }
                    slot.assets.extend(assets);
                }
            }
        }
    }

    /// Recycling (seed component 9): pick connections to replace, open their replacements,
    /// and finish recycles whose assets all moved (see `recycler`).
    fn recycle(&mut self, now: Instant) {
        if self
            .core
            .recycler
            .next_deadline(now)
            .is_some_and(|d| d <= now)
        {
            // Unhealthy = silent for half the data-silence watchdog: the recycler replaces
            // it make-before-break before the watchdog would drop it (a gap). Asset-level
            // stalls are healed by resubscribing the asset (`watchdogs`), not by recycling:
            // an asset the venue never serves would otherwise recycle its connection forever.
            let silent_after = self.config.data_silence / 2;
            let health: Vec<ConnHealth> = self
                .conns
                .iter()
                .filter(|(id, _)| !self.core.recycler.is_replacement(**id))
                .map(|(id, slot)| {
                    let counts = self.core.registry.connection_stats(*id);
                    let open = slot.conn.status() == Status::Connected;
                    let st = slot.conn.stats();
                    let silent = open
                        && !silent_after.is_zero()
                        && !slot.assets.is_empty()
                        && st
                            .last_message_at
                            .or(st.connected_since)
                            .is_some_and(|t| now.duration_since(t) >= silent_after);
                    ConnHealth {
                        conn: *id,
                        age: now.duration_since(slot.created),
                        pollution_ratio: counts.pollution_ratio,
                        active_assets: counts.active,
                        silent,
                        stalled_assets: 0,
                        open,
                    }
                })
                .collect();
            for cand in self.core.recycler.candidates(now, &health) {
                match cand {
                    Candidate::Close { conn } => {
                        log::info!("Closing connection with only expired assets: conn={conn}");
                        self.close_connection(conn);
                    }
                    Candidate::Recycle { conn, reason } => {
                        self.begin_recycle(vec![conn], reason, now)
                    }
                }
            }
            let target = self.planner.config().target_per_connection;
            if let Some(olds) = self.core.recycler.repack_candidates(&health, target) {
                self.begin_recycle(olds, RecycleReason::Repack, now);
            }
        }
        for ev in self.core.recycler.tick(now) {
            self.on_recycle_event(ev, now);
        }
    }

    /// Opens a replacement for `olds` subscribing all their active assets; ownership moves
    /// asset by asset as the replacement's snapshots arrive.
    fn begin_recycle(&mut self, olds: Vec<ConnId>, reason: RecycleReason, now: Instant) {
        let mut plan: Vec<(ConnId, Vec<AssetId>)> = Vec::new();
        for old in &olds {
            let assets: Vec<AssetId> = self
                .core
                .registry
                .by_connection(*old)
                .filter(|a| {
                    self.core.registry.owner(*a) == Some(*old)
                        && self
                            .core
                            .registry
                            .get(*a)
                            .is_some_and(|e| e.status == AssetStatus::Subscribed)
                })
                .collect();
            plan.push((*old, assets));
        }
        let all: Vec<AssetId> = plan.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        let new = self.planner.reserve_connection(true);
        match self.core.recycler.begin(plan, new, reason, now) {
            Ok(_) => {}
            Err(e) => {
                log::warn!("Recycle not started: olds={olds:?} error={e}");
                self.planner.remove_connection(new);
                return;
            }
        }
        for old in &olds {
            self.planner.set_draining(*old, true);
            if let Some(slot) = self.conns.get_mut(old) {
                slot.conn.drain();
            }
        }
        log::info!(
            "Recycle started: olds={olds:?} new={new} assets={} reason={}",
            all.len(),
            reason.as_str()
        );
        self.planner.set_assigned(new, all.len());
        let mut connection = Connection::new(
            new,
            Arc::clone(&self.endpoint),
            self.config.connection.clone(),
        );
        if let Err(e) = connection.connect(self.poll.registry(), token_of(new), now) {
            log::warn!("Replacement connect failed to start: conn={new} error={e}");
        }
        self.conns.insert(
            new,
            ConnSlot {
                conn: connection,
                assets: all,
                created: now,
                open: false,
            },
        );
    }

    fn on_recycle_event(&mut self, ev: RecycleEvent, now: Instant) {
        match ev {
            RecycleEvent::Completed {
                olds,
                new,
                migrated,
                duration,
                ..
            } => {
                log::info!(
                    "Recycle completed: olds={olds:?} new={new} migrated={migrated} ms={}",
                    duration.as_millis()
                );
                self.finish_recycle(&olds, new);
            }
            RecycleEvent::TimedOut {
                olds,
                new,
                migrated,
                stragglers,
                ..
            } => {
                log::warn!(
                    "Recycle timed out: olds={olds:?} new={new} migrated={migrated} stragglers={}",
                    stragglers.len()
                );
                for a in stragglers {
                    self.core.registry.mark_subscribed(a, new);
                    self.core.mark_lost(a);
                    self.core.want(a, ResyncCause::Recycle);
                }
                self.finish_recycle(&olds, new);
            }
            RecycleEvent::Failed {
                olds,
                new,
                reason,
                returned,
                ..
            } => {
                log::warn!(
                    "Recycle failed: olds={olds:?} new={new} reason={reason:?} returned={}",
                    returned.len()
                );
                self.close_connection(new);
                for Move { asset, from, .. } in returned {
                    self.core.registry.mark_subscribed(asset, from);
                    self.core.mark_lost(asset);
                    self.core.want(asset, ResyncCause::Recycle);
                }
                for old in olds {
                    self.planner.set_draining(old, false);
                }
            }
        }
        let _ = now;
    }

    /// Every asset is on `new`: close the old connections.
    fn finish_recycle(&mut self, olds: &[ConnId], new: ConnId) {
        for old in olds {
            self.close_connection(*old);
        }
        self.planner.set_draining(new, false);
        let active = self.core.registry.connection_stats(new).active;
        self.planner.set_assigned(new, active);
    }

    /// Closes a connection for good; assets still listed on it (expired ones) are detached.
    fn close_connection(&mut self, conn: ConnId) {
        if let Some(mut slot) = self.conns.remove(&conn) {
            slot.conn.close(self.poll.registry());
        }
        let left: Vec<AssetId> = self.core.registry.by_connection(conn).collect();
        for a in left {
            if self.core.registry.owner(a) == Some(conn) {
                // Still owned here (a failed replacement never owned anything; an old
                // connection only keeps expired assets): detach and resync on the next plan.
                self.core.registry.reassign_connection(a, None);
                self.core.mark_lost(a);
            } else {
                self.core.registry.reassign_connection(a, None);
            }
        }
        self.scheduler.remove(conn);
        self.planner.remove_connection(conn);
    }

    fn watchdogs(&mut self, now: Instant) {
        // Connection-level data silence: PONGs flow, data does not ("silent freeze").
        let silence = self.config.data_silence;
        if !silence.is_zero() {
            let frozen: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, s)| s.conn.status() == Status::Connected && !s.assets.is_empty())
                .filter(|(_, s)| {
                    let st = s.conn.stats();
                    st.last_message_at
                        .or(st.connected_since)
                        .is_some_and(|t| now.duration_since(t) >= silence)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in frozen {
                if let Some(slot) = self.conns.get_mut(&id) {
                    slot.conn.disconnect(self.poll.registry());
                }
                self.core.stats.data_silence_reconnects += 1;
                self.on_lost(id, now, "no data while PONGs flow (silent freeze)");
            }
        }
        let timeout = self.config.snapshot_timeout;
        let late: Vec<AssetId> = self
            .core
            .awaiting
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in late {
            self.core.want(a, ResyncCause::NoSnapshot);
        }
        // Asset-level silence: the connection delivers, the asset does not.
        let silence_ns = self.config.asset_silence.as_nanos() as u64;
        let now_ns = crate::worker::now_ns();
        if silence_ns > 0 {
            for slot in self.conns.values() {
                if slot.conn.status() != Status::Connected {
                    continue;
                }
                for a in &slot.assets {
                    let last = self
                        .core
                        .last_record_ns
                        .get(a.index())
                        .copied()
                        .unwrap_or(0);
                    if last != 0
                        && now_ns.saturating_sub(last) > silence_ns
                        && !self.core.awaiting.contains_key(a)
                    {
                        self.core
                            .wanted
                            .entry(*a)
                            .or_insert(ResyncCause::AssetSilent);
                    }
                }
            }
        }
    }

    /// Resubscribes wanted assets on their owner connections, rate-limited per asset.
    fn send_resyncs(&mut self, now: Instant) {
        if self.core.wanted.is_empty() {
            return;
        }
        let min_gap = self.config.snapshot_timeout / 2;
        let mut by_conn: BTreeMap<ConnId, Vec<AssetId>> = BTreeMap::new();
        let wanted: Vec<(AssetId, ResyncCause)> =
            self.core.wanted.iter().map(|(a, c)| (*a, *c)).collect();
        for (a, cause) in wanted {
            let Some(conn) = self.core.registry.owner(a) else {
                self.core.wanted.remove(&a);
                continue;
            };
            let live = self
                .conns
                .get(&conn)
                .is_some_and(|s| s.conn.status() == Status::Connected);
            if !live {
                continue; // the reconnect resubscribes it
            }
            if self
                .core
                .last_resync
                .get(&a)
                .is_some_and(|t| now.duration_since(*t) < min_gap)
            {
                continue;
            }
            self.core.wanted.remove(&a);
            self.core.last_resync.insert(a, now);
            self.core.awaiting.insert(a, now);
            *self.core.resync_counts.entry(cause.as_str()).or_default() += 1;
            self.core.last_record_ns[a.index()] = 0;
            by_conn.entry(conn).or_default().push(a);
        }
        for (conn, assets) in by_conn {
            let Some(slot) = self.conns.get_mut(&conn) else {
                continue;
            };
            let tokens: Vec<&str> = assets
                .iter()
                .filter_map(|a| self.core.registry.token(*a))
                .collect();
            for chunk in subscribe::chunks(&tokens) {
                let _ = slot.conn.send_text(
                    self.poll.registry(),
                    &subscribe::operation(Operation::Unsubscribe, chunk.iter().copied()),
                );
                let _ = slot.conn.send_text(
                    self.poll.registry(),
                    &subscribe::operation(Operation::Subscribe, chunk.iter().copied()),
                );
            }
        }
    }

    fn publish(&mut self, _now: Instant) {
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
            .store(self.core.awaiting.len(), Ordering::Relaxed);
        self.shared
            .frames
            .store(self.core.stats.frames, Ordering::Relaxed);
    }

    fn snapshot(&self, now: Instant) -> LoopSnapshot {
        let r = &self.core.registry;
        let mut stats = Vec::with_capacity(self.conns.len());
        for (id, slot) in &self.conns {
            let s = slot.conn.stats();
            let counts = r.connection_stats(*id);
            stats.push(snapshot::ConnectionView {
                connection_id: format!("conn-{id}"),
                status: slot.conn.status().as_str().to_string(),
                subscribed_markets: counts.active,
                messages_received: s.messages,
                bytes_received: s.bytes,
                parse_errors: s.parse_errors,
                reconnects: s.reconnects,
                uptime: s
                    .connected_since
                    .map(|t| now.duration_since(t).as_secs_f64())
                    .unwrap_or(0.0),
                age_seconds: now.duration_since(slot.created).as_secs_f64(),
                last_message_age: s
                    .last_message_at
                    .map(|t| now.duration_since(t).as_secs_f64()),
                total: counts.total,
                active: counts.active,
                expired: counts.expired,
                pollution_ratio: counts.pollution_ratio,
            });
        }
        let rs = self.core.router_stats.snapshot();
        let mut integrity = self.core.stats.clone();
        integrity.resyncs = self
            .core
            .resync_counts
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        integrity.awaiting_snapshot = self.core.awaiting.len();
        LoopSnapshot {
            registry: snapshot::RegistryView {
                total_markets: r.len(),
                conditions: r.conditions().count(),
                pending: r.pending_count(),
                subscribed: r.count(AssetStatus::Subscribed),
                expired: r.count(AssetStatus::Expired),
            },
            pool: snapshot::PoolView {
                connection_count: self.conns.len(),
                active_connections: stats.iter().filter(|c| c.status == "connected").count(),
                total_capacity: self.planner.total_capacity(),
                stats,
            },
            router: snapshot::RouterView {
                messages_routed: rs.messages_routed,
                messages_dropped: rs.messages_dropped,
                batches_sent: rs.batches_sent,
                queue_full_events: rs.queue_full_events,
                routing_errors: rs.routing_errors
                    + integrity.foreign_entries
                    + integrity.unknown_assets,
                queue_depths: rs
                    .queue_depths
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (format!("worker_{i}"), *d as usize))
                    .collect(),
            },
            integrity,
            recycler: {
                let mut v = serde_json::to_value(self.core.recycler.stats()).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("is_running".into(), true.into());
                }
                v
            },
            lifecycle: self.core.lifecycle,
        }
    }

    fn markets(&self) -> Vec<MarketView> {
        let r = &self.core.registry;
        let mut out = Vec::new();
        for cond in r.conditions() {
            let ids = r.by_condition(cond);
            let entries: Vec<_> = ids.iter().filter_map(|a| r.get(*a)).collect();
            let Some(first) = entries.first() else {
                continue;
            };
            if first.status != AssetStatus::Subscribed {
                continue;
            }
            out.push(MarketView {
                condition_id: cond.to_string(),
                question: first.info.question.clone(),
                outcomes: entries.iter().map(|e| e.info.outcome.clone()).collect(),
                tokens: entries
                    .iter()
                    .map(|e| snapshot::TokenView {
                        token_id: e.info.token.clone(),
                        outcome: e.info.outcome.clone(),
                    })
                    .collect(),
                end_date: first.info.end_ms.and_then(|ms| {
                    jiff::Timestamp::from_millisecond(ms as i64)
                        .ok()
                        .map(|t| t.to_string())
                }),
                status: "subscribed".into(),
            });
        }
        out.sort_by(|a, b| a.condition_id.cmp(&b.condition_id));
        out
    }
}

impl Core {
    /// Decodes one frame from `conn` and routes its records.
    fn on_frame(&mut self, conn: ConnId, text: &str, recv_ns: u64) {
        self.out.clear();
        let mut resolver = RegistryResolver(&self.registry);
        let (_, fs) = self
            .decoder
            .decode(text.as_bytes(), recv_ns, &mut resolver, &mut self.out);
        self.stats.frames += 1;
        self.stats.messages += u64::from(fs.messages);
        self.stats.unknown_messages += u64::from(fs.unknown);
        self.stats.decode_failures += u64::from(fs.failed);
        self.stats.unknown_assets += u64::from(fs.unresolved);
        for i in 0..self.out.records.len() {
            let rec = self.out.records[i];
            if self.registry.owner(rec.asset) != Some(conn) && !self.try_move(conn, &rec) {
                self.stats.foreign_entries += 1;
                continue;
            }
            if let Event::BookBegin { .. } = rec.event {
                self.awaiting.remove(&rec.asset);
            }
            if let Some(t) = self.last_record_ns.get_mut(rec.asset.index()) {
                *t = recv_ns;
            }
            // Unregistered assets are counted by the router.
            let _ = self.router.route(rec);
        }
        if !self.out.failures.is_empty() {
            self.on_failures(conn);
        }
        if !self.out.notices.is_empty() {
            self.notices.append(&mut self.out.notices);
        }
    }

    /// A frame (or part) failed to decode: every asset it may have carried data for is
    /// marked untrusted and resynced. Cold path (allocates).
    fn on_failures(&mut self, conn: ConnId) {
        let failures = std::mem::take(&mut self.out.failures);
        let mut hit: Vec<AssetId> = Vec::new();
        for f in &failures {
            hit.extend(f.assets.iter().copied());
            for m in &f.markets {
                hit.extend(self.registry.by_condition(m).iter().copied());
            }
            if f.assets.is_empty() && f.markets.is_empty() {
                // Names nothing: anything on this connection may have lost data.
                hit.extend(self.registry.by_connection(conn));
                self.stats.unattributed_failures += 1;
            }
        }
        hit.sort_unstable();
        hit.dedup();
        for asset in hit {
            if self.registry.owner(asset) == Some(conn) {
                self.mark_lost(asset);
                self.want(asset, ResyncCause::DecodeFailure);
            }
        }
        self.out.failures = failures;
    }

    /// A record from a connection that does not own its asset: when it is the snapshot a
    /// recycle waits for, the asset moves to this connection now (make-before-break).
    #[cold]
    fn try_move(&mut self, conn: ConnId, rec: &crate::market::Record) -> bool {
        if !matches!(rec.event, Event::BookBegin { .. }) || !self.recycler.is_replacement(conn) {
            return false;
        }
        match self.recycler.on_snapshot(conn, rec.asset, Instant::now()) {
            Some(m) => {
                self.registry.mark_subscribed(m.asset, m.to);
                true
            }
            None => false,
        }
    }

    fn mark_lost(&mut self, asset: AssetId) {
        let _ = self.router.mark_data_loss(asset);
    }

    fn want(&mut self, asset: AssetId, cause: ResyncCause) {
        self.wanted.entry(asset).or_insert(cause);
    }
}

/// Wall-clock Unix milliseconds (for expiry bookkeeping, not latency).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Resolves token ids against the registry (never interns: unknown assets are counted).
struct RegistryResolver<'a>(&'a Registry);

impl crate::venue::AssetResolver for RegistryResolver<'_> {
    fn resolve(&mut self, token: &str) -> Option<AssetId> {
        self.0.resolve(token)
    }
}
