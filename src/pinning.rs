//! Thread placement: pin the calling thread to one core, or not.
//!
//! Called by each book worker at the start of its own thread. Two traps, from
//! `docs/machine-reference.md` §3: `core_affinity::get_core_ids()` lists only the cores the
//! *calling* thread may already run on (a thread spawned by a pinned thread inherits its mask),
//! so the `CoreId` is built directly from the index; and `set_for_current` reports failure
//! only through its returned bool, which is checked here.
//!
//! Policy: the brief for the book workers is to log one warning and run unpinned when pinning
//! fails (a container without the core, a restricted cpuset); [`pin_current_thread`] returns
//! the error so callers that want a failed pin to be fatal can do so.

/// Where a thread runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CorePlacement {
    /// Wherever the OS schedules it.
    #[default]
    Unpinned,
    /// Only on this core (OS index).
    Core(usize),
}

/// Why a thread could not be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The index is beyond what a CPU set can name. Fix the configuration.
    #[error("core {core} is out of range (max {max})")]
    OutOfRange {
        /// The requested core.
        core: usize,
        /// Largest valid index.
        max: usize,
    },
    /// The OS refused (no such core, or not in this process's cpuset). Fix the configuration
    /// or run unpinned.
    #[error("the OS refused to pin to core {core}")]
    Refused {
        /// The requested core.
        core: usize,
    },
}

/// Largest core index a Linux `cpu_set_t` can hold (`CPU_SETSIZE` - 1); `libc::CPU_SET`
/// panics beyond it, so it is checked first.
const MAX_CORE: usize = 1023;

/// Pins the calling thread.
///
/// # Errors
/// [`PinError::OutOfRange`] for an index no CPU set can hold, [`PinError::Refused`] when the
/// OS rejects the core. The thread's affinity is unchanged on error.
pub fn pin_current_thread(placement: CorePlacement) -> Result<(), PinError> {
    match placement {
        CorePlacement::Unpinned => Ok(()),
        CorePlacement::Core(core) if core > MAX_CORE => Err(PinError::OutOfRange {
            core,
            max: MAX_CORE,
        }),
        CorePlacement::Core(core) => {
            if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                Ok(())
            } else {
                Err(PinError::Refused { core })
            }
        }
    }
}

/// Cores the machine reports (`available_parallelism`, at least 1).
pub fn core_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Default number of book workers: one per core except the one the event loop keeps
/// (`cores − 1`, at least 1). On the 2-core reference machine a second worker sharing the
/// event loop's core doubled wire → book latency (docs/loadtest.md, 2026-12-03: p50 16.9 →
/// 8.1 µs, p99 93 → 49 µs at 20k msgs/s), while the pipeline is decode-bound either way.
pub fn default_workers() -> usize {
    core_count().saturating_sub(1).max(1)
}

/// Placements for `workers` worker threads on a machine with `cores` cores: worker `i` goes
/// to core `(i + 1) % cores`, leaving core 0 to the event loop until the workers outnumber
/// the other cores (then they wrap around and share). One core: everything unpinned.
pub fn spread_placements(workers: usize, cores: usize) -> Vec<CorePlacement> {
    if cores <= 1 {
        return vec![CorePlacement::Unpinned; workers];
    }
    (0..workers)
        .map(|i| CorePlacement::Core((i + 1) % cores))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_leaves_core_zero_first() {
        use CorePlacement::*;
        assert_eq!(spread_placements(2, 4), vec![Core(1), Core(2)]);
        assert_eq!(spread_placements(2, 2), vec![Core(1), Core(0)]);
        assert_eq!(spread_placements(2, 1), vec![Unpinned, Unpinned]);
    }

    #[test]
    fn impossible_cores_are_errors_not_panics() {
        let r = std::thread::spawn(|| {
            (
                pin_current_thread(CorePlacement::Core(5000)),
                pin_current_thread(CorePlacement::Core(999)),
                pin_current_thread(CorePlacement::Unpinned),
            )
        })
        .join()
        .unwrap();
        assert_eq!(
            r.0,
            Err(PinError::OutOfRange {
                core: 5000,
                max: MAX_CORE
            })
        );
        assert_eq!(r.1, Err(PinError::Refused { core: 999 }));
        assert_eq!(r.2, Ok(()));
    }
}
