//! Several memory processes on one PostgreSQL database: each transaction of a writer tells
//! the others which engrams it changed (`NOTIFY`, delivered when it commits, in commit
//! order), and each process's listener has its writer read those rows again and bring its
//! index in step. Should the listener lose its connection (and so perhaps notices), the
//! index is rebuilt from the table once it is back.

use crate::database::{on_connection, push_id_filter, Connection, Pool, ReadColumns};
use crate::embedder::Embedder;
use crate::error::MemoryError;
use crate::index::{ApproximateSettings, RowFacts, VectorIndex};
use crate::load::{build_index, indexable};
use crate::shared_state::SharedState;
use crate::writer::{key_of, Change, Outcome, Writer};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::QueryBuilder;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The notification channel.
const CHANNEL: &str = "mimo_engrams";
/// Ids in one notice: 36 bytes each and a comma, well under PostgreSQL's 8,000-byte payload.
const IDS_PER_NOTICE: usize = 200;
/// Longest pause between two attempts to listen again.
const MOST_BACKOFF: Duration = Duration::from_secs(30);
/// Time between two readings of the table's size.
const SIZE_EVERY: Duration = Duration::from_secs(10);

/// The writer's side: announces its changes, and rebuilds the index when asked.
#[derive(Clone)]
pub(crate) struct Announcer {
    /// This process's id, so that its listener skips its own notices.
    pub(crate) instance: uuid::Uuid,
    /// Where the index is rebuilt from, and how.
    pub(crate) source: IndexSource,
}

/// What rebuilding the index takes.
#[derive(Clone)]
pub(crate) struct IndexSource {
    pub(crate) read: Pool,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) approximate: Option<ApproximateSettings>,
    pub(crate) int8_scan: bool,
}

impl IndexSource {
    /// Builds the index from the table, streaming its rows; also returns the row count.
    pub(crate) async fn build(&self) -> Result<(VectorIndex, usize), MemoryError> {
        let engrams = crate::database::on_pool!(&self.read, |pool, Db| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM engrams")
                .fetch_one(pool)
                .await?
        });
        let engrams = usize::try_from(engrams).unwrap_or(0);
        let index = build_index(
            &self.read,
            self.embedder.as_ref(),
            self.approximate,
            self.int8_scan,
            engrams,
        )
        .await?;
        Ok((index, engrams))
    }
}

impl Announcer {
    /// Inside the open transaction, notifies the other processes of every engram the
    /// successful `jobs` changed.
    pub(crate) async fn announce(
        &self,
        connection: &mut Connection,
        jobs: &[crate::writer::Job],
        results: &[Result<Outcome, MemoryError>],
    ) -> Result<(), sqlx::Error> {
        let mut ids: Vec<&str> = Vec::new();
        for (job, result) in jobs.iter().zip(results) {
            if result.is_err() {
                continue;
            }
            match &job.change {
                Change::Insert { engram, .. } => ids.push(&engram.id),
                Change::Delete { id } | Change::Reinforce { id, .. } => ids.push(id),
                Change::Update(update) => ids.push(&update.id),
                Change::Touch { ids: touched, .. } => {
                    ids.extend(touched.iter().map(String::as_str))
                }
                Change::Refresh { .. } | Change::Reload => {}
            }
        }
        // An engram touched and updated in one transaction is named once.
        let mut named = std::collections::HashSet::with_capacity(ids.len());
        ids.retain(|id| named.insert(*id));
        for chunk in ids.chunks(IDS_PER_NOTICE) {
            let payload = format!("{} {}", self.instance, chunk.join(","));
            on_connection!(connection, |connection, Db| {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(&payload)
                    .execute(&mut *connection)
                    .await?;
            });
        }
        Ok(())
    }

    /// Rebuilds `state`'s index from the table and puts it in place.
    pub(crate) async fn reload(&self, state: &SharedState) -> Result<(), MemoryError> {
        tracing::info!(
            "rebuilding the search index: other processes' notices may have been missed"
        );
        let (index, _) = self.source.build().await?;
        // The row count also holds the inserts queued now; like a refresh, the rebuild
        // changes it by the engrams it gained or lost.
        let (before, after) = {
            let mut held = state.index_write();
            let before = held.len();
            *held = index;
            (before, held.len())
        };
        let _ = state
            .engrams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                Some((count + after).saturating_sub(before))
            });
        Ok(())
    }
}

/// Rows read again for a [`Change::Refresh`]: each id's facts and vector, or `None` for an
/// engram that is gone (or not searchable here).
#[derive(Debug)]
pub(crate) struct PeerRows(
    Vec<(u128, Option<Searchable>)>,
    /// Other embedders seen among the rows.
    std::collections::BTreeSet<String>,
);

/// A row's facts and vector, as the index holds them.
type Searchable = (RowFacts, Vec<f32>);

/// Reads the rows of `ids` (of `embedder`, `dimension`) as they stand.
pub(crate) async fn read_rows(
    connection: &mut Connection,
    ids: &[String],
    embedder: &str,
    dimension: usize,
) -> Result<PeerRows, MemoryError> {
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    let mut foreign = std::collections::BTreeSet::new();
    on_connection!(connection, |connection, Db| {
        let mut select = QueryBuilder::<Db>::new(
            "SELECT id, category, importance, created_at, last_accessed_at, dimension, \
             embedding, embedder FROM engrams",
        );
        push_id_filter(&mut select, ids);
        for row in select.build().fetch_all(&mut *connection).await? {
            let id = row.text("id")?;
            let theirs = row.text("embedder")?;
            if theirs != embedder {
                foreign.insert(format!(
                    "engrams made by {theirs} ({} dimensions), stored by another memory process",
                    row.integer("dimension")?
                ));
                continue;
            }
            match indexable(&row, dimension) {
                Ok(searchable) => {
                    found.insert(id, searchable);
                }
                Err(error) => {
                    tracing::error!(engram = %id, %error, "engram left out of the search index")
                }
            }
        }
    });
    let mut rows = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    for id in ids {
        // Each id once: a second mention would find its row taken already, and remove it.
        if let Some(key) = key_of(id).filter(|key| seen.insert(*key)) {
            rows.push((key, found.remove(id)));
        }
    }
    Ok(PeerRows(rows, foreign))
}

impl PeerRows {
    /// Brings `index` in step with the rows: new ones added, changed facts taken, gone
    /// ones removed, the row count adjusted.
    pub(crate) fn apply(self, state: &SharedState, index: &mut VectorIndex) {
        if !self.1.is_empty() {
            tracing::error!(found = ?self.1, "another memory process stores engrams of another embedder in this database: searches and stores are refused until they agree");
            state
                .foreign_embedders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(self.1);
        }
        for (key, row) in self.0 {
            match row {
                Some((facts, vector)) => {
                    // A vector never changes while the memory runs (re-embedding needs it
                    // stopped), so a row held already takes just its facts.
                    if !index.update_facts(key, |held| *held = facts) {
                        index.insert(facts, &vector);
                        state.engrams.fetch_add(1, Ordering::AcqRel);
                    }
                }
                None => {
                    if index.remove(key) {
                        state.release_row();
                    }
                }
            }
        }
    }
}

/// What the listener works with.
pub(crate) struct Listening {
    /// A pool of its own, whose one connection the listener keeps.
    pub(crate) listen: PgPool,
    /// Listening already since before the index was built, so that no change between the
    /// two goes unseen.
    pub(crate) listener: PgListener,
    /// The read pool, for the table's size.
    pub(crate) read: PgPool,
    /// This process's id.
    pub(crate) instance: uuid::Uuid,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) writer: Arc<Writer>,
    pub(crate) state: Arc<SharedState>,
    pub(crate) stop: CancellationToken,
}

/// Listens for other processes' notices until `stop`, having the writer refresh what they
/// changed; also keeps the state's database size current.
pub(crate) fn start(listening: Listening) -> JoinHandle<()> {
    let Listening {
        listen,
        listener,
        read,
        instance,
        embedder,
        writer,
        state,
        stop,
    } = listening;
    let sizes = record_sizes(read, state.clone(), stop.clone());
    let notices = async move {
        let mut listener = Some(listener);
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(active) = listener.as_mut() else {
                match listen_on(&listen).await {
                    Ok(new) => {
                        listener = Some(new);
                        backoff = Duration::from_millis(100);
                        // Notices may have gone missing while no one listened.
                        reload(&writer).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot listen for other memory processes' changes");
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MOST_BACKOFF);
                    }
                }
                continue;
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                notice = active.try_recv() => match notice {
                    Ok(Some(notice)) => {
                        if let Some(ids) = foreign_ids(notice.payload(), instance) {
                            let change = Change::Refresh {
                                ids,
                                embedder: embedder.id().to_string(),
                                dimension: embedder.dimension(),
                            };
                            if let Err(error) = writer.apply(change).await {
                                if matches!(error, MemoryError::ShuttingDown) {
                                    break;
                                }
                                tracing::warn!(%error, "another process's changes were not taken into the index; rebuilding it");
                                reload(&writer).await;
                            }
                        }
                    }
                    // Connection lost, and listening again already.
                    Ok(None) => {
                        tracing::warn!("lost the connection for other processes' changes; listening again");
                        reload(&writer).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lost the connection for other processes' changes");
                        listener = None;
                    }
                },
            }
        }
        tracing::debug!("memory peer listener stopped");
    };
    // Apart, so that waiting for a notice is only ever given up to stop.
    tokio::spawn(async move {
        tokio::join!(notices, sizes);
    })
}

/// Reads the table's size into `state` now and every [`SIZE_EVERY`] until `stop`.
async fn record_sizes(read: PgPool, state: Arc<SharedState>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SIZE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => record_size(&read, &state).await,
        }
    }
}

/// A listener on [`CHANNEL`].
pub(crate) async fn listen_on(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Has the writer rebuild the index, after whatever it has queued.
async fn reload(writer: &Writer) {
    if let Err(error) = writer.apply(Change::Reload).await {
        tracing::error!(%error, "the search index was not rebuilt");
    }
}

/// The ids of a notice from another process than `instance`; `None` for this one's own.
fn foreign_ids(payload: &str, instance: uuid::Uuid) -> Option<Vec<String>> {
    let (sender, ids) = payload.split_once(' ')?;
    if sender == instance.to_string() {
        return None;
    }
    Some(ids.split(',').map(str::to_string).collect())
}

/// Reads the engram table's size on disk (with its indexes and TOAST) into `state`.
async fn record_size(pool: &PgPool, state: &SharedState) {
    match sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('engrams')")
        .fetch_one(pool)
        .await
    {
        Ok(bytes) => state
            .database_bytes
            .store(u64::try_from(bytes).unwrap_or(0), Ordering::Relaxed),
        Err(error) => tracing::debug!(%error, "cannot read the engram table's size"),
    }
}
