//! `--replay`, the event loop's half (event-loop thread): takes the feeder's items
//! ([`crate::replay`]) and runs them as if a venue connection had delivered them: assets are
//! registered as subscribed to their recorded connection (so the pool opens no socket),
//! ownership follows the recorded snapshots, and every frame goes through
//! [`Core::on_frame`](super::frame::Core::on_frame) like a live one.
//!
//! Exactness: frames are taken only while every worker's ring has room for at least
//! `ROOM_NEEDED` more records (after what is already batched), at most `MAX_FRAMES_PER_STEP`
//! per loop iteration; otherwise the rest waits in `pending` for the next iteration (the
//! loop polls every `idle_poll`), and the feeder waits on the bounded channel. So no record
//! is dropped at `max` speed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, TryRecvError};

use super::run::EventLoop;
use crate::replay::{ReplayItem, ReplayProgress};

/// Free ring slots every worker must have before the next frame is taken.
const ROOM_NEEDED: usize = 16_384;
/// Frames per loop iteration, so commands and timers keep their pace.
const MAX_FRAMES_PER_STEP: usize = 2_048;

/// The replay source the loop reads from.
#[derive(Debug)]
pub struct ReplayFeed {
    rx: Receiver<Vec<ReplayItem>>,
    pending: VecDeque<ReplayItem>,
    progress: Arc<ReplayProgress>,
    /// The feeder has gone (every pass sent, or it stopped).
    closed: bool,
}

impl ReplayFeed {
    /// A feed from the feeder's channel.
    pub fn new(rx: Receiver<Vec<ReplayItem>>, progress: Arc<ReplayProgress>) -> ReplayFeed {
        ReplayFeed {
            rx,
            pending: VecDeque::new(),
            progress,
            closed: false,
        }
    }
}

impl EventLoop {
    /// Serves this loop from a recording instead of the venue.
    pub fn with_replay(mut self, feed: ReplayFeed) -> EventLoop {
        self.replay = Some(feed);
        self
    }

    /// Whether every ring has room for another frame's records.
    fn rings_have_room(&self) -> bool {
        let r = &self.core.router;
        let need = ROOM_NEEDED.min(self.ring_room_max);
        (0..r.workers()).all(|w| r.free_slots(w).saturating_sub(r.pending(w)) >= need)
    }

    /// Takes what the feeder sent, as far as the rings allow. Called once per iteration.
    pub(super) fn replay_step(&mut self) {
        if self.replay.is_none() {
            return;
        }
        if self.ring_room_max == 0 {
            let r = &self.core.router;
            self.ring_room_max = (0..r.workers()).map(|w| r.free_slots(w)).min().unwrap_or(0) / 2;
        }
        let mut frames = 0usize;
        while frames < MAX_FRAMES_PER_STEP {
            let Some(feed) = self.replay.as_mut() else {
                return;
            };
            if feed.pending.is_empty() {
                if feed.closed {
                    return;
                }
                match feed.rx.try_recv() {
                    Ok(batch) => feed.pending.extend(batch),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        feed.closed = true;
                        break;
                    }
                }
                continue;
            }
            if matches!(feed.pending.front(), Some(ReplayItem::Frame { .. }))
                && !self.rings_have_room()
            {
                // Let the workers catch up; `flush_router` pushes what is batched.
                break;
            }
            let Some(item) = self.replay.as_mut().and_then(|f| f.pending.pop_front()) else {
                break;
            };
            frames += usize::from(self.replay_item(item));
        }
    }

    /// Carries out one item; true for a frame.
    fn replay_item(&mut self, item: ReplayItem) -> bool {
        match item {
            ReplayItem::Assets { conn, infos } => {
                let tokens: Vec<String> = infos.iter().map(|i| i.token.clone()).collect();
                self.add_assets(infos);
                for t in &tokens {
                    if let Some(id) = self.core.registry.resolve(t) {
                        self.core.registry.mark_subscribed(id, conn);
                    }
                }
                false
            }
            ReplayItem::Own { token, conn } => {
                if let Some(id) = self.core.registry.resolve(&token) {
                    self.core.registry.mark_subscribed(id, conn);
                }
                false
            }
            ReplayItem::Frame {
                conn,
                recv_ns,
                text,
            } => {
                self.core.on_frame(conn, &text, crate::worker::now_ns());
                if let Some(feed) = &self.replay {
                    let p = &feed.progress;
                    p.frames.fetch_add(1, Ordering::Relaxed);
                    p.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    p.position_ns.store(recv_ns, Ordering::Relaxed);
                }
                true
            }
            ReplayItem::Gap { conn } => {
                let r = &self.core.registry;
                let lost: Vec<_> = match conn {
                    Some(c) => r.by_connection(c).collect(),
                    None => r.connections().flat_map(|c| r.by_connection(c)).collect(),
                };
                for a in lost {
                    self.core.mark_lost(a);
                }
                false
            }
            ReplayItem::PassEnd { last } => {
                if let Some(feed) = &self.replay {
                    feed.progress.passes.fetch_add(1, Ordering::Relaxed);
                    if last {
                        feed.progress.done.store(true, Ordering::Release);
                    }
                }
                false
            }
        }
    }
}
