//! The store's side of working memory: Remember, the working half of a search, and
//! consolidation of the entries worth keeping into long-term engrams.

use crate::database::now_unix_ms;
use crate::error::MemoryError;
use crate::store::MemoryStore;
use crate::validate::ValidStore;
use crate::working::WorkingEntry;
use mimo_proto::v1::{ConsolidateResponse, Engram, RememberRequest};
use std::time::Duration;
use tokio::time::Instant;

/// The longest time an entry may be held.
const MAX_TTL_MS: u64 = 86_400_000;

impl MemoryStore {
    /// Holds a text in working memory; returns it as held (its id is not a long-term one).
    pub async fn remember(&self, request: RememberRequest) -> Result<Engram, MemoryError> {
        let settings = self.working_settings();
        let ttl = match request.ttl_ms {
            None => settings.ttl,
            Some(ms) if (1..=MAX_TTL_MS).contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(MemoryError::OutOfRange {
                    field: "ttl_ms",
                    value: ms.to_string(),
                    bounds: format!("1..={MAX_TTL_MS}"),
                })
            }
        };
        let mut valid = self.check_store(request.entry.ok_or(MemoryError::EmptyField("entry"))?)?;
        let vector = match valid.embedding.take() {
            Some(vector) => vector,
            None => self.embed("content", &valid.content).await?,
        };
        let category = valid.category;
        let engram = valid.into_engram(self.embedder(), now_unix_ms());
        let entry = WorkingEntry {
            engram: engram.clone(),
            category,
            vector,
            expires: Instant::now() + ttl,
        };
        if let Some(evicted) = self.working().hold(entry, settings.capacity) {
            tracing::debug!(entry = %evicted.engram.id, "working memory full: the entry nearest to expiry leaves");
            if let Err(error) = self.let_go(&evicted).await {
                // Nothing changes: the evicted entry is back, the new one is not held.
                self.working().take(&engram.id);
                self.working().put_back([evicted]);
                return Err(error);
            }
        }
        Ok(engram)
    }

    /// Moves every working entry worth keeping into long-term memory.
    pub async fn consolidate(&self) -> Result<ConsolidateResponse, MemoryError> {
        let entries = self.working().take_worth_keeping(&self.working_settings());
        let mut engrams = Vec::with_capacity(entries.len());
        let mut entries = entries.into_iter();
        while let Some(entry) = entries.next() {
            match self.keep(&entry).await {
                Ok(engram) => engrams.push(engram),
                Err(error) => {
                    // What could not be kept stays in working memory (those kept are stored).
                    self.working()
                        .put_back(std::iter::once(entry).chain(entries));
                    return Err(error);
                }
            }
        }
        let count = engrams.len() as u64;
        crate::response_size::fit(&mut engrams);
        Ok(ConsolidateResponse { engrams, count })
    }

    /// Lets go of every expired entry, consolidating those worth keeping; an entry that
    /// cannot be kept (long-term memory full, say) stays for the next sweep.
    pub async fn sweep_working_memory(&self) -> Result<(), MemoryError> {
        let mut expired = self.working().take_expired(Instant::now()).into_iter();
        while let Some(entry) = expired.next() {
            if let Err(error) = self.let_go(&entry).await {
                self.working()
                    .put_back(std::iter::once(entry).chain(expired));
                return Err(error);
            }
        }
        Ok(())
    }

    /// An entry leaving working memory: kept long-term if worth it, else gone.
    async fn let_go(&self, entry: &WorkingEntry) -> Result<(), MemoryError> {
        if entry.worth_keeping(&self.working_settings()) {
            self.keep(entry).await?;
        } else {
            tracing::debug!(entry = %entry.engram.id, "working entry let go");
        }
        Ok(())
    }

    /// Stores `entry` as a long-term engram (or reinforces its near-duplicate).
    async fn keep(&self, entry: &WorkingEntry) -> Result<Engram, MemoryError> {
        let valid = ValidStore {
            content: entry.engram.content.clone(),
            category: entry.category,
            importance: entry.engram.importance,
            metadata_json: entry.engram.metadata_json.clone(),
            embedding: Some(entry.vector.clone()),
            protected: entry.engram.protected,
            allow_duplicate: false,
            id: uuid::Uuid::now_v7(),
        };
        let (engram, reinforced) = self.store_valid(valid).await?;
        tracing::info!(entry = %entry.engram.id, engram = %engram.id, reinforced, "working entry consolidated");
        Ok(engram)
    }
}
