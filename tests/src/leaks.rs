//! What a process holds that a leak would grow: open file descriptors and live Tokio tasks.
//! Tests take a [`Level`] before traffic and wait until the process is back to it afterwards.
//! nextest runs every test in its own process, so the counts are the test's own.

use std::time::Duration;

/// Open descriptors and live tasks at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub fds: usize,
    pub tasks: usize,
}

impl Level {
    /// This process's open descriptors (`/proc/self/fd`) and the current runtime's live tasks.
    pub fn now() -> Self {
        Self { fds: open_fds(), tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks() }
    }

    /// Waits (up to `timeout`) until descriptors and tasks are back to this level or below.
    pub async fn wait_back(self, what: &str, timeout: Duration) {
        crate::eventually(&format!("{what}: back to {self:?}"), timeout, || {
            let now = Level::now();
            async move { now.fds <= self.fds && now.tasks <= self.tasks }
        })
        .await;
    }
}

/// Entries of `/proc/self/fd` (the read itself holds one while listing: not counted).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count().saturating_sub(1))
}
