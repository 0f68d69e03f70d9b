//! [`Unparker`]: how a producer wakes a parked consumer of its ring (the event loop's
//! [`Router`](super::Router) wakes a parked book worker). The worker creates one per thread
//! (`worker::spawn`) and parks on the same flag; the router holds a clone per worker.
//!
//! Protocol (Dekker-style): the worker sets `parked`, issues a `SeqCst` fence, re-checks its
//! ring, then parks; the producer pushes, issues a `SeqCst` fence, then reads `parked`. Either
//! the worker sees the items just pushed, or the producer sees the flag and unparks it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread::Thread;

use crossbeam_utils::CachePadded;

/// Wakes a parked worker; cheap when it is not parked. Cloneable; give one per worker to the
/// [`Router`](super::Router) ([`Router::set_unparkers`](super::Router::set_unparkers)).
#[derive(Debug, Clone)]
pub struct Unparker {
    parked: Arc<CachePadded<AtomicBool>>,
    thread: Thread,
}

impl Unparker {
    /// An unparker for `thread`, which sets `parked` (and fences) before it parks.
    pub fn new(parked: Arc<CachePadded<AtomicBool>>, thread: Thread) -> Unparker {
        Unparker { parked, thread }
    }

    /// Unparks the worker if it is parked (or about to park).
    #[inline]
    pub fn unpark(&self) {
        // Pairs with the fence in `BookWorker::park`: either the worker sees the items just
        // pushed, or this load sees its flag.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            self.thread.unpark();
        }
    }
}
