//! The one writer: every change to the engram table goes through this task, which gathers
//! the changes waiting for it into one `BEGIN IMMEDIATE` transaction, retries a locked
//! database a bounded number of times, and updates the search index once a batch commits.
//! Callers wait for their change's commit, so an acknowledged change is durable and searchable.

use crate::blob::encode_embedding;
use crate::category;
use crate::database::{engram_from_row, ENGRAM_COLUMNS};
use crate::error::MemoryError;
use crate::index::RowFacts;
use crate::shared_state::SharedState;
use crate::validate::ValidUpdate;
use mimo_proto::v1::{Category, Engram};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{QueryBuilder, Sqlite};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a change waits for room in a full queue before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Attempts at one transaction while SQLite reports the file locked.
const BUSY_ATTEMPTS: u32 = 5;
/// Rows in one multi-row INSERT (13 parameters each, well under SQLite's 32,766).
const ROWS_PER_INSERT: usize = 256;
/// Pause after the first locked attempt; doubled after each further one.
const BUSY_BACKOFF: Duration = Duration::from_millis(50);

/// One change to the table.
#[derive(Debug)]
pub(crate) enum Change {
    /// A new engram.
    Insert {
        engram: Engram,
        category: Category,
        protected: bool,
        vector: Vec<f32>,
    },
    /// Removes an engram.
    Delete { id: String },
    /// Changes an engram's importance, category, metadata or protection.
    Update(ValidUpdate),
    /// Reinforces a near-duplicate of a new store: importance raised to at least
    /// `importance`, one more access at `now`.
    Reinforce {
        id: String,
        importance: f32,
        now: i64,
    },
    /// Records that the engrams were returned by a search at `now` (unix ms).
    Touch { ids: Vec<String>, now: i64 },
}

/// What a committed change did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Done,
    /// The engram as it stands after an update.
    Updated(Engram),
}

/// The writer's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    /// Changes waiting at most.
    pub(crate) queue: usize,
    /// Changes in one transaction at most.
    pub(crate) batch: usize,
    /// Rows in the table at most.
    pub(crate) max_engrams: usize,
}

type Reply = oneshot::Sender<Result<Outcome, MemoryError>>;

struct Job {
    change: Change,
    reply: Option<Reply>,
}

/// A handle to the writer task; [`Writer::close`] lets it finish what is queued and stop.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    limit: usize,
    max_engrams: usize,
    state: Arc<SharedState>,
}

impl Writer {
    /// Starts the writer over `pool` (of one connection), `batch` changes a transaction at
    /// most, `queue` changes waiting at most, `max_engrams` rows at most.
    pub(crate) fn start(pool: SqlitePool, state: Arc<SharedState>, limits: WriterLimits) -> Self {
        let WriterLimits {
            queue,
            batch,
            max_engrams,
        } = limits;
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let task = tokio::spawn(run(pool, state.clone(), receiver, batch.max(1)));
        Self {
            queue: Mutex::new(Some(sender)),
            task: Mutex::new(Some(task)),
            limit: queue.max(1),
            max_engrams,
            state,
        }
    }

    /// Queues `change` and waits for its commit (or its error). The change goes ahead even if
    /// the caller stops waiting, so the table and the index never disagree. An insert
    /// reserves its row as it enters the queue (no await in between, so a caller that goes
    /// away cannot leak it), and is refused when the memory is full.
    pub(crate) async fn apply(&self, change: Change) -> Result<Outcome, MemoryError> {
        let permit = self.reserve().await?;
        if matches!(change, Change::Insert { .. }) && !self.state.reserve_row(self.max_engrams) {
            return Err(MemoryError::CapacityReached {
                limit: self.max_engrams,
            });
        }
        let (reply, answer) = oneshot::channel();
        permit.send(Job {
            change,
            reply: Some(reply),
        });
        answer.await.unwrap_or(Err(MemoryError::ShuttingDown))
    }

    /// A place in the queue, waiting at most [`QUEUE_WAIT`] for one.
    async fn reserve(&self) -> Result<mpsc::OwnedPermit<Job>, MemoryError> {
        let sender = self.sender()?;
        match tokio::time::timeout(QUEUE_WAIT, sender.reserve_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(MemoryError::ShuttingDown),
            Err(_) => {
                self.state.rejected_writes.fetch_add(1, Ordering::Relaxed);
                Err(MemoryError::WriteQueueFull { limit: self.limit })
            }
        }
    }

    /// Queues `change` if there is room right now, without waiting for its commit; returns
    /// whether it was queued.
    pub(crate) fn offer(&self, change: Change) -> bool {
        let Ok(sender) = self.sender() else {
            return false;
        };
        sender
            .try_send(Job {
                change,
                reply: None,
            })
            .is_ok()
    }

    /// Changes waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.sender()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }

    /// Stops taking changes and waits for the queued ones to commit.
    pub(crate) async fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, MemoryError> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(MemoryError::ShuttingDown)
    }
}

/// Takes whatever is queued (up to `batch`), commits it as one transaction, and repeats until
/// every sender is gone.
async fn run(
    pool: SqlitePool,
    state: Arc<SharedState>,
    mut receiver: mpsc::Receiver<Job>,
    batch: usize,
) {
    let mut jobs = Vec::with_capacity(batch);
    while receiver.recv_many(&mut jobs, batch).await > 0 {
        state.writing.store(jobs.len(), Ordering::Relaxed);
        commit(&pool, &state, &mut jobs).await;
        state.writing.store(0, Ordering::Relaxed);
        jobs.clear();
    }
    tracing::debug!("memory writer stopped");
}

/// Applies `jobs` in one transaction and answers each once it has committed (or failed).
async fn commit(pool: &SqlitePool, state: &Arc<SharedState>, jobs: &mut Vec<Job>) {
    let mut attempt = 1;
    let results = loop {
        match transaction(pool, jobs).await {
            Ok(results) => break Ok(results),
            Err(error) if is_busy(&error) && attempt < BUSY_ATTEMPTS => {
                state.busy_retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(attempt, %error, "memory database locked; retrying the batch");
                tokio::time::sleep(BUSY_BACKOFF * 2_u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            Err(error) if is_busy(&error) => break Err(MemoryError::Busy { attempts: attempt }),
            Err(error) => break Err(MemoryError::Database(error)),
        }
    };
    match results {
        Ok(results) => {
            state.batches.fetch_add(1, Ordering::Relaxed);
            // On the blocking pool: a batch that takes the index past its graph's size
            // builds the graph, which takes seconds.
            let batch = std::mem::take(jobs);
            let shared = state.clone();
            let (batch, results) = match tokio::task::spawn_blocking(move || {
                mirror_in_index(&shared, &batch, &results);
                (batch, results)
            })
            .await
            {
                Ok(done) => done,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => return, // the runtime is going away; callers see ShuttingDown
            };
            *jobs = batch;
            for (job, result) in jobs.drain(..).zip(results) {
                if let Some(reply) = job.reply {
                    let _ = reply.send(result);
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, changes = jobs.len(), "memory batch failed");
            let message = error.to_string();
            for job in jobs.drain(..) {
                if matches!(job.change, Change::Insert { .. }) {
                    state.release_row();
                }
                if let Some(reply) = job.reply {
                    let _ = reply.send(Err(batch_error(&error, &message)));
                }
            }
        }
    }
}

/// The error each change of a failed batch gets.
fn batch_error(error: &MemoryError, message: &str) -> MemoryError {
    match error {
        MemoryError::Busy { attempts } => MemoryError::Busy {
            attempts: *attempts,
        },
        _ => MemoryError::Database(sqlx::Error::Protocol(message.to_string())),
    }
}

/// Runs every job inside `BEGIN IMMEDIATE` .. `COMMIT`; a job's own failure (a missing id)
/// is its result and does not undo the others. Returns the jobs' results once committed.
async fn transaction(
    pool: &SqlitePool,
    jobs: &[Job],
) -> Result<Vec<Result<Outcome, MemoryError>>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut next = 0;
    while next < jobs.len() {
        // Consecutive inserts go in as one statement; should it fail, one by one, so that
        // each insert gets its own answer.
        let inserts = jobs[next..]
            .iter()
            .take(ROWS_PER_INSERT)
            .take_while(|job| matches!(job.change, Change::Insert { .. }))
            .count();
        if inserts > 1 {
            match insert_rows(
                &mut connection,
                jobs[next..next + inserts].iter().map(|job| &job.change),
            )
            .await
            {
                Ok(()) => {
                    results.extend((0..inserts).map(|_| Ok(Outcome::Done)));
                    next += inserts;
                    continue;
                }
                Err(error) if is_busy(&error) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                    return Err(error);
                }
                Err(error) => {
                    tracing::debug!(%error, rows = inserts, "a batched insert failed; inserting one by one");
                }
            }
        }
        let stop = next + inserts.max(1);
        for job in &jobs[next..stop] {
            match execute(&mut connection, &job.change).await {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(MemoryError::Database(error)) if is_busy(&error) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                    return Err(error);
                }
                Err(error) => results.push(Err(error)),
            }
        }
        next = stop;
    }
    if let Err(error) = sqlx::query("COMMIT").execute(&mut *connection).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
        return Err(error);
    }
    Ok(results)
}

/// The columns every insert writes, in the order [`insert_rows`] binds them.
const INSERT_COLUMNS: &str = "INSERT INTO engrams (id, content, category, importance, protected, \
     embedding, embedder, dimension, created_at, updated_at, last_accessed_at, access_count, \
     metadata) ";

/// Inserts `changes`, all of them [`Change::Insert`], with one statement.
async fn insert_rows<'a>(
    connection: &mut SqliteConnection,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<(), sqlx::Error> {
    let mut query = QueryBuilder::<Sqlite>::new(INSERT_COLUMNS);
    query.push_values(changes, |mut row, change| {
        if let Change::Insert {
            engram,
            category,
            protected,
            vector,
        } = change
        {
            row.push_bind(engram.id.as_str())
                .push_bind(engram.content.as_str())
                .push_bind(category::stored_name(*category))
                .push_bind(f64::from(engram.importance))
                .push_bind(i64::from(*protected))
                .push_bind(encode_embedding(vector))
                .push_bind(engram.embedder.as_str())
                .push_bind(i64::from(engram.dimension))
                .push_bind(engram.created_at_unix_ms)
                .push_bind(engram.updated_at_unix_ms)
                .push_bind(engram.last_accessed_at_unix_ms)
                .push_bind(0_i64)
                .push_bind(engram.metadata_json.as_str());
        }
    });
    query.build().execute(&mut *connection).await?;
    Ok(())
}

/// Applies one change inside the open transaction.
async fn execute(
    connection: &mut SqliteConnection,
    change: &Change,
) -> Result<Outcome, MemoryError> {
    match change {
        Change::Insert { .. } => {
            insert_rows(connection, [change]).await?;
            Ok(Outcome::Done)
        }
        Change::Delete { id } => {
            let deleted = sqlx::query("DELETE FROM engrams WHERE id = ?")
                .bind(id)
                .execute(&mut *connection)
                .await?;
            if deleted.rows_affected() == 0 {
                return Err(MemoryError::NotFound(id.clone()));
            }
            Ok(Outcome::Done)
        }
        Change::Update(update) => {
            let mut query = QueryBuilder::<Sqlite>::new("UPDATE engrams SET updated_at = ");
            query.push_bind(crate::database::now_unix_ms());
            if let Some(importance) = update.importance {
                query
                    .push(", importance = ")
                    .push_bind(f64::from(importance));
            }
            if let Some(category) = update.category {
                query
                    .push(", category = ")
                    .push_bind(category::stored_name(category));
            }
            if let Some(metadata) = &update.metadata_json {
                query.push(", metadata = ").push_bind(metadata.as_str());
            }
            if let Some(protected) = update.protected {
                query.push(", protected = ").push_bind(i64::from(protected));
            }
            query
                .push(" WHERE id = ")
                .push_bind(update.id.as_str())
                .push(format!(" RETURNING {ENGRAM_COLUMNS}"));
            let row = query
                .build()
                .fetch_optional(&mut *connection)
                .await?
                .ok_or_else(|| MemoryError::NotFound(update.id.clone()))?;
            Ok(Outcome::Updated(engram_from_row(&row)?))
        }
        Change::Reinforce {
            id,
            importance,
            now,
        } => {
            let row = sqlx::query(&format!(
                "UPDATE engrams SET importance = MAX(importance, ?), access_count = access_count + 1, \
                 last_accessed_at = ?, updated_at = ? WHERE id = ? RETURNING {ENGRAM_COLUMNS}"
            ))
            .bind(f64::from(*importance))
            .bind(*now)
            .bind(*now)
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| MemoryError::NotFound(id.clone()))?;
            Ok(Outcome::Updated(engram_from_row(&row)?))
        }
        Change::Touch { ids, now } => {
            let mut query = QueryBuilder::<Sqlite>::new("UPDATE engrams SET last_accessed_at = ");
            query
                .push_bind(*now)
                .push(", access_count = access_count + 1");
            crate::database::push_id_filter(&mut query, ids);
            query.build().execute(&mut *connection).await?;
            Ok(Outcome::Done)
        }
    }
}

/// Brings the index in step with the committed `jobs`, under one write lock.
fn mirror_in_index(state: &SharedState, jobs: &[Job], results: &[Result<Outcome, MemoryError>]) {
    let mut index = state.index_write();
    for (job, result) in jobs.iter().zip(results) {
        match (&job.change, result) {
            (
                Change::Insert {
                    engram,
                    category,
                    vector,
                    ..
                },
                Ok(_),
            ) => {
                let Some(key) = key_of(&engram.id) else {
                    continue;
                };
                index.insert(
                    RowFacts {
                        key,
                        category: *category,
                        importance: engram.importance,
                        created_at: engram.created_at_unix_ms,
                        accessed_at: engram.last_accessed_at_unix_ms,
                    },
                    vector,
                );
            }
            (Change::Insert { .. }, Err(_)) => state.release_row(),
            (Change::Delete { id }, Ok(_)) => {
                state.release_row();
                if let Some(key) = key_of(id) {
                    index.remove(key);
                }
            }
            (Change::Update(_) | Change::Reinforce { .. }, Ok(Outcome::Updated(engram))) => {
                let Some(key) = key_of(&engram.id) else {
                    continue;
                };
                let category = Category::try_from(engram.category).unwrap_or(Category::Fact);
                index.update_facts(key, |facts| {
                    facts.importance = engram.importance;
                    facts.category = category;
                    facts.accessed_at = engram.last_accessed_at_unix_ms;
                });
            }
            (Change::Touch { ids, now }, Ok(_)) => {
                for key in ids.iter().filter_map(|id| key_of(id)) {
                    index.update_facts(key, |facts| facts.accessed_at = *now);
                }
            }
            _ => {}
        }
    }
}

/// The index key of an engram id (a UUID); `None` for an id that is not one.
pub(crate) fn key_of(id: &str) -> Option<u128> {
    uuid::Uuid::parse_str(id).ok().map(|uuid| uuid.as_u128())
}

/// Whether SQLite refused for a lock held elsewhere (SQLITE_BUSY or SQLITE_LOCKED, with
/// their extended codes).
fn is_busy(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    database
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}
