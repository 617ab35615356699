//! What the store and its writer task share: the search index and the row count, both
//! changed only by the writer, after the database change they mirror has committed.

use crate::index::VectorIndex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The index, the row count and the writer's counters.
#[derive(Debug)]
pub(crate) struct SharedState {
    /// Never held across an await.
    index: RwLock<VectorIndex>,
    /// Rows in the table, plus inserts reserved and not yet committed or failed.
    pub(crate) engrams: AtomicUsize,
    /// Changes in the transaction the writer is running now.
    pub(crate) writing: AtomicUsize,
    /// Transactions the writer committed.
    pub(crate) batches: AtomicU64,
    /// Changes refused because the write queue stayed full.
    pub(crate) rejected_writes: AtomicU64,
    /// Access records dropped because the write queue was full.
    pub(crate) dropped_access_records: AtomicU64,
    /// Transactions retried because SQLite was locked.
    pub(crate) busy_retries: AtomicU64,
    /// Engrams forgotten by decay.
    pub(crate) forgotten: AtomicU64,
    /// Bytes of a PostgreSQL engram table, as last read (SQLite's file is measured when
    /// asked).
    pub(crate) database_bytes: AtomicU64,
    /// Other embedders another process was seen storing with (PostgreSQL).
    pub(crate) foreign_embedders: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl SharedState {
    /// State around `index` and a table of `engrams` rows.
    pub(crate) fn new(index: VectorIndex, engrams: usize) -> Self {
        Self {
            index: RwLock::new(index),
            engrams: AtomicUsize::new(engrams),
            writing: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            rejected_writes: AtomicU64::new(0),
            dropped_access_records: AtomicU64::new(0),
            busy_retries: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            database_bytes: AtomicU64::new(0),
            foreign_embedders: Default::default(),
        }
    }

    /// Reads the index.
    pub(crate) fn index_read(&self) -> RwLockReadGuard<'_, VectorIndex> {
        // Index methods never panic half-way through a change, so a poisoned lock is sound.
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the index.
    pub(crate) fn index_write(&self) -> RwLockWriteGuard<'_, VectorIndex> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves a row for an insert unless `limit` rows are held or reserved.
    pub(crate) fn reserve_row(&self, limit: usize) -> bool {
        self.engrams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < limit).then_some(count + 1)
            })
            .is_ok()
    }

    /// Gives back a row reserved by [`Self::reserve_row`] or freed by a delete.
    pub(crate) fn release_row(&self) {
        let _ = self
            .engrams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                Some(count.saturating_sub(1))
            });
    }

    /// Rows held (and reserved).
    pub(crate) fn rows(&self) -> usize {
        self.engrams.load(Ordering::Acquire)
    }
}
