//! The children (sim, engine) as processes stopped on drop.

use super::*;

/// A child process stopped on drop: SIGTERM, a short grace, then SIGKILL.
#[derive(Debug)]
pub(super) struct Guard {
    name: &'static str,
    child: Option<Child>,
}

impl Guard {
    pub(super) fn new(name: &'static str, child: Child) -> Guard {
        Guard {
            name,
            child: Some(child),
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` once the child exited.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait up to `grace`, SIGKILL after. Returns the status (None if killed) and
    /// the time from SIGTERM to exit.
    pub(super) fn stop(&mut self, grace: Duration) -> (Option<ExitStatus>, Duration, bool) {
        let Some(mut child) = self.child.take() else {
            return (None, Duration::ZERO, false);
        };
        if let Ok(Some(s)) = child.try_wait() {
            return (Some(s), Duration::ZERO, false);
        }
        let t = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        while t.elapsed() < grace {
            if let Ok(Some(s)) = child.try_wait() {
                return (Some(s), t.elapsed(), false);
            }
            thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "polypy-loadtest: {} (pid {}) still running {:.1} s after SIGTERM: SIGKILL",
            self.name,
            child.id(),
            grace.as_secs_f64()
        );
        let _ = child.kill();
        let status = child.wait().ok();
        (status, t.elapsed(), true)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Duration::from_secs(5));
        }
    }
}
