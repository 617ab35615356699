//! How long callers wait for a pooled read connection: every request-path read acquires
//! through [`timed_read`], which records the wait, so that telemetry can show a pool too
//! small for its load.

use crate::database::{Connection, Pool};
use crate::error::MemoryError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Waits for read connections, since start and since the last report.
#[derive(Debug, Default)]
pub(crate) struct PoolWaits {
    acquisitions: AtomicU64,
    total_micros: AtomicU64,
    /// Longest wait since the last [`PoolWaits::take_longest_micros`].
    longest_micros: AtomicU64,
}

impl PoolWaits {
    fn record(&self, micros: u64) {
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
        self.total_micros.fetch_add(micros, Ordering::Relaxed);
        self.longest_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Connections acquired since start.
    pub(crate) fn acquisitions(&self) -> u64 {
        self.acquisitions.load(Ordering::Relaxed)
    }

    /// Microseconds waited in all, since start.
    pub(crate) fn total_micros(&self) -> u64 {
        self.total_micros.load(Ordering::Relaxed)
    }

    /// The longest wait since the last call, which starts a new period.
    pub(crate) fn take_longest_micros(&self) -> u64 {
        self.longest_micros.swap(0, Ordering::Relaxed)
    }
}

/// A read connection from `pool`, its wait recorded in `waits`.
pub(crate) async fn timed_read(pool: &Pool, waits: &PoolWaits) -> Result<Connection, MemoryError> {
    let started = Instant::now();
    let connection = pool.acquire().await?;
    waits.record(started.elapsed().as_micros() as u64);
    Ok(connection)
}
