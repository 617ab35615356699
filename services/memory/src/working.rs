//! Working memory: short-term entries held in this process for a time-to-live, at most a
//! capacity of them (the entry nearest to expiry makes room for a new one), searched beside
//! long-term memory on request. An entry that leaves (expired or evicted) is consolidated into
//! a long-term engram when it proved worth keeping (important enough, or accessed often
//! enough), and let go otherwise.

use crate::index::{dot, IndexQuery, RowFacts};
use mimo_proto::v1::{Category, Engram};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How much working memory holds, how long, and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkingSettings {
    /// Entries held at most.
    pub capacity: usize,
    /// How long an entry is held when the request names no time.
    pub ttl: Duration,
    /// Entries at least this important are consolidated when they leave.
    pub keep_importance: f32,
    /// Entries returned by this many searches are consolidated when they leave.
    pub keep_accesses: u64,
}

impl Default for WorkingSettings {
    fn default() -> Self {
        Self {
            capacity: 1000,
            ttl: Duration::from_secs(600),
            keep_importance: 0.7,
            keep_accesses: 2,
        }
    }
}

/// One entry: its engram form, its vector, when it expires.
#[derive(Debug, Clone)]
pub(crate) struct WorkingEntry {
    pub(crate) engram: Engram,
    pub(crate) category: Category,
    pub(crate) vector: Vec<f32>,
    pub(crate) expires: Instant,
}

impl WorkingEntry {
    /// Whether it proved worth a long-term engram.
    pub(crate) fn worth_keeping(&self, settings: &WorkingSettings) -> bool {
        self.engram.importance >= settings.keep_importance
            || self.engram.access_count >= settings.keep_accesses
    }
}

/// The entries, by id.
#[derive(Debug, Default)]
pub(crate) struct WorkingMemory {
    entries: Mutex<HashMap<String, WorkingEntry>>,
}

impl WorkingMemory {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkingEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }

    /// Holds `entry`; returns the entry it evicted to stay within `capacity`.
    pub(crate) fn hold(&self, entry: WorkingEntry, capacity: usize) -> Option<WorkingEntry> {
        let mut entries = self.entries();
        let evicted = if entries.len() >= capacity.max(1) {
            let nearest = entries
                .iter()
                .min_by_key(|(id, held)| (held.expires, (*id).clone()))
                .map(|(id, _)| id.clone());
            nearest.and_then(|id| entries.remove(&id))
        } else {
            None
        };
        entries.insert(entry.engram.id.clone(), entry);
        evicted
    }

    /// Puts entries taken out back, whatever the capacity (they were held a moment ago).
    pub(crate) fn put_back(&self, entries: impl IntoIterator<Item = WorkingEntry>) {
        let mut held = self.entries();
        for entry in entries {
            held.insert(entry.engram.id.clone(), entry);
        }
    }

    /// Takes out the entry with `id`, if held.
    pub(crate) fn take(&self, id: &str) -> Option<WorkingEntry> {
        self.entries().remove(id)
    }

    /// The unexpired entries passing `query`, best first, at most `query.limit`, each
    /// counted as accessed at `now_ms`: (similarity, score, engram).
    pub(crate) fn search(
        &self,
        query: &IndexQuery<'_>,
        now: Instant,
        now_ms: i64,
    ) -> Vec<(f32, f32, Engram)> {
        let mut entries = self.entries();
        let mut found: Vec<(f32, f32, String)> = Vec::new();
        for (id, entry) in entries.iter() {
            if entry.expires <= now || entry.vector.len() != query.vector.len() {
                continue;
            }
            let facts = RowFacts {
                key: 0,
                category: entry.category,
                importance: entry.engram.importance,
                created_at: entry.engram.created_at_unix_ms,
                accessed_at: entry.engram.last_accessed_at_unix_ms,
            };
            if !query.filter.admits(&facts) {
                continue;
            }
            let similarity = dot(query.vector, &entry.vector);
            if similarity.is_nan() || similarity < query.min_similarity {
                continue;
            }
            found.push((
                similarity,
                query.scoring.score(similarity, &facts),
                id.clone(),
            ));
        }
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
        found.truncate(query.limit);
        found
            .into_iter()
            .filter_map(|(similarity, score, id)| {
                let entry = entries.get_mut(&id)?;
                entry.engram.access_count += 1;
                entry.engram.last_accessed_at_unix_ms = now_ms;
                Some((similarity.clamp(-1.0, 1.0), score, entry.engram.clone()))
            })
            .collect()
    }

    /// Takes out every entry expired by `now`.
    pub(crate) fn take_expired(&self, now: Instant) -> Vec<WorkingEntry> {
        let mut entries = self.entries();
        let expired: Vec<String> = entries
            .iter()
            .filter(|(_, entry)| entry.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| entries.remove(&id))
            .collect()
    }

    /// Takes out every entry worth keeping.
    pub(crate) fn take_worth_keeping(&self, settings: &WorkingSettings) -> Vec<WorkingEntry> {
        let mut entries = self.entries();
        let keep: Vec<String> = entries
            .iter()
            .filter(|(_, entry)| entry.worth_keeping(settings))
            .map(|(id, _)| id.clone())
            .collect();
        keep.into_iter()
            .filter_map(|id| entries.remove(&id))
            .collect()
    }
}
