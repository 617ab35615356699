//! The one writer: every change to the engram table goes through this task, which gathers
//! the changes waiting for it into one transaction (`BEGIN IMMEDIATE` in SQLite), retries a
//! locked database (or, in PostgreSQL, a conflict with another process) a bounded number of
//! times, and updates the search index once a batch commits. Callers wait for their change's
//! commit, so an acknowledged change is durable and searchable. With PostgreSQL, other
//! memory processes' changes reach the index through this task too (`Change::Refresh`), so
//! that the index changes in one order only.

use crate::blob::encode_embedding;
use crate::category;
use crate::database::{
    engram_from_row, is_retryable, on_connection, Connection, Pool, ENGRAM_COLUMNS,
};
use crate::error::MemoryError;
use crate::index::RowFacts;
use crate::peer_changes::{Announcer, PeerRows};
use crate::shared_state::SharedState;
use crate::validate::ValidUpdate;
use mimo_proto::v1::{Category, Engram};
use sqlx::QueryBuilder;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a change waits for room in a full queue before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Attempts at one transaction while the database reports a lock or conflict.
const BUSY_ATTEMPTS: u32 = 5;
/// Rows in one multi-row INSERT (13 parameters each, well under SQLite's 32,766 and
/// PostgreSQL's 65,535).
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
    /// Another memory process changed these engrams (PostgreSQL): read them again and
    /// bring the index in step.
    Refresh {
        ids: Vec<String>,
        /// The index's embedder: rows of another are not searchable here.
        embedder: String,
        dimension: usize,
    },
    /// Notices from other processes may have been missed (PostgreSQL): rebuild the index
    /// from the table.
    Reload,
}

/// What a committed change did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Done,
    /// The engram as it stands after an update.
    Updated(Engram),
    /// The rows of a [`Change::Refresh`] as they stand.
    Refreshed(PeerRows),
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

/// A change and who waits for its result.
pub(crate) struct Job {
    pub(crate) change: Change,
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
    /// most, `queue` changes waiting at most, `max_engrams` rows at most; `announcer` tells
    /// other processes what each transaction changed (PostgreSQL) and rebuilds the index.
    pub(crate) fn start(
        pool: Pool,
        state: Arc<SharedState>,
        limits: WriterLimits,
        announcer: Option<Announcer>,
    ) -> Self {
        let WriterLimits {
            queue,
            batch,
            max_engrams,
        } = limits;
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let task = tokio::spawn(run(
            Context {
                pool,
                state: state.clone(),
                announcer,
                commit_unknown: Default::default(),
            },
            receiver,
            batch.max(1),
        ));
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

/// What the writer task works with.
struct Context {
    pool: Pool,
    state: Arc<SharedState>,
    announcer: Option<Announcer>,
    /// A COMMIT was sent and its answer lost (the connection broke): whether it took effect
    /// is unknown, so the index is rebuilt from the table.
    commit_unknown: std::sync::atomic::AtomicBool,
}

/// Takes whatever is queued (up to `batch`), commits it as one transaction, and repeats until
/// every sender is gone. A [`Change::Reload`] ends the batch before it and runs alone.
async fn run(context: Context, mut receiver: mpsc::Receiver<Job>, batch: usize) {
    let state = &context.state;
    let mut jobs = Vec::with_capacity(batch);
    while receiver.recv_many(&mut jobs, batch).await > 0 {
        let mut queued = std::mem::take(&mut jobs);
        while !queued.is_empty() {
            let reload = queued
                .iter()
                .position(|job| matches!(job.change, Change::Reload));
            let rest = match reload {
                Some(0) => {
                    let rest = queued.split_off(1);
                    let job = queued.pop().expect("the reload job");
                    reload_index(&context, job).await;
                    queued = rest;
                    continue;
                }
                Some(at) => queued.split_off(at),
                None => Vec::new(),
            };
            state.writing.store(queued.len(), Ordering::Relaxed);
            commit(&context, &mut queued).await;
            state.writing.store(0, Ordering::Relaxed);
            queued = rest;
        }
        jobs = queued;
    }
    tracing::debug!("memory writer stopped");
}

/// Rebuilds the index from the table, with no change of this process in flight.
async fn reload_index(context: &Context, job: Job) {
    let result = match &context.announcer {
        Some(announcer) => announcer.reload(&context.state).await,
        None => Ok(()),
    };
    if let Err(error) = &result {
        tracing::error!(%error, "the search index could not be rebuilt; it may miss other processes' changes");
    }
    if let Some(reply) = job.reply {
        let _ = reply.send(result.map(|()| Outcome::Done));
    }
}

/// Applies `jobs` in one transaction and answers each once it has committed (or failed).
async fn commit(context: &Context, jobs: &mut Vec<Job>) {
    let state = &context.state;
    let mut attempt = 1;
    let results = loop {
        match transaction(context, jobs).await {
            Ok(results) => break Ok(results),
            Err(error) if is_retryable(&error) && attempt < BUSY_ATTEMPTS => {
                state.busy_retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(attempt, %error, "memory database locked; retrying the batch");
                tokio::time::sleep(BUSY_BACKOFF * 2_u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            Err(error) if is_retryable(&error) => {
                break Err(MemoryError::Busy { attempts: attempt })
            }
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
                let results = mirror_in_index(&shared, &batch, results);
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
            if context.commit_unknown.swap(false, Ordering::AcqRel) {
                if let Some(announcer) = &context.announcer {
                    tracing::warn!("the batch's commit may have taken effect: rebuilding the index from the table");
                    if let Err(error) = announcer.reload(state).await {
                        tracing::error!(%error, "the search index could not be rebuilt");
                    }
                }
            }
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

/// Runs every job inside one write transaction; a job's own failure (a missing id, a
/// refused row) is its result and does not undo the others. Returns the jobs' results once
/// committed.
async fn transaction(
    context: &Context,
    jobs: &[Job],
) -> Result<Vec<Result<Outcome, MemoryError>>, sqlx::Error> {
    let mut connection = context.pool.acquire().await?;
    connection.begin_write().await?;
    match changes_in_transaction(&mut connection, context, jobs).await {
        Ok(results) => match connection.run("COMMIT").await {
            Ok(()) => Ok(results),
            Err(error) => {
                if !matches!(error, sqlx::Error::Database(_)) {
                    context.commit_unknown.store(true, Ordering::Release);
                }
                let _ = connection.run("ROLLBACK").await;
                Err(error)
            }
        },
        Err(error) => {
            let _ = connection.run("ROLLBACK").await;
            Err(error)
        }
    }
}

/// The statements of [`transaction`] between its begin and its commit; an error is a lock
/// or conflict (or a lost connection), for which the whole batch is rolled back.
async fn changes_in_transaction(
    connection: &mut Connection,
    context: &Context,
    jobs: &[Job],
) -> Result<Vec<Result<Outcome, MemoryError>>, sqlx::Error> {
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
            let changes = jobs[next..next + inserts].iter().map(|job| &job.change);
            connection.open_savepoint().await?;
            let inserted = insert_rows(connection, changes).await;
            connection.close_savepoint(inserted.is_ok()).await?;
            match inserted {
                Ok(()) => {
                    results.extend((0..inserts).map(|_| Ok(Outcome::Done)));
                    next += inserts;
                    continue;
                }
                Err(error) if is_retryable(&error) || !is_statement_error(&error) => {
                    return Err(error)
                }
                Err(error) => {
                    tracing::debug!(%error, rows = inserts, "a batched insert failed; inserting one by one");
                }
            }
        }
        let stop = next + inserts.max(1);
        for job in &jobs[next..stop] {
            connection.open_savepoint().await?;
            let executed = execute(connection, &job.change).await;
            connection.close_savepoint(executed.is_ok()).await?;
            match executed {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(MemoryError::Database(error))
                    if is_retryable(&error) || !is_statement_error(&error) =>
                {
                    return Err(error)
                }
                Err(error) => results.push(Err(error)),
            }
        }
        next = stop;
    }
    if let Some(announcer) = &context.announcer {
        announcer.announce(connection, jobs, &results).await?;
    }
    Ok(results)
}

/// Whether `error` is one statement's refusal (a constraint, a bad value), after which the
/// transaction can go on, rather than a lost connection or a broken protocol.
fn is_statement_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. }
    )
}

/// The columns every insert writes, in the order [`insert_rows`] binds them.
const INSERT_COLUMNS: &str = "INSERT INTO engrams (id, content, category, importance, protected, \
     embedding, embedder, dimension, created_at, updated_at, last_accessed_at, access_count, \
     metadata) ";

/// Inserts `changes`, all of them [`Change::Insert`], with one statement.
async fn insert_rows<'a>(
    connection: &mut Connection,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<(), sqlx::Error> {
    on_connection!(connection, |connection, Db| {
        let mut query = QueryBuilder::<Db>::new(INSERT_COLUMNS);
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
    });
    Ok(())
}

/// Applies one change inside the open transaction.
async fn execute(connection: &mut Connection, change: &Change) -> Result<Outcome, MemoryError> {
    match change {
        Change::Insert { .. } => {
            insert_rows(connection, [change]).await?;
            Ok(Outcome::Done)
        }
        Change::Delete { id } => {
            let deleted = on_connection!(connection, |connection, Db| {
                sqlx::query("DELETE FROM engrams WHERE id = $1")
                    .bind(id)
                    .execute(&mut *connection)
                    .await?
                    .rows_affected()
            });
            if deleted == 0 {
                return Err(MemoryError::NotFound(id.clone()));
            }
            Ok(Outcome::Done)
        }
        Change::Update(update) => {
            let engram = on_connection!(connection, |connection, Db| {
                let mut query = QueryBuilder::<Db>::new("UPDATE engrams SET updated_at = ");
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
                match query.build().fetch_optional(&mut *connection).await? {
                    Some(row) => Some(engram_from_row(&row)?),
                    None => None,
                }
            });
            let engram = engram.ok_or_else(|| MemoryError::NotFound(update.id.clone()))?;
            Ok(Outcome::Updated(engram))
        }
        Change::Reinforce {
            id,
            importance,
            now,
        } => {
            let engram = on_connection!(connection, |connection, Db| {
                let row = sqlx::query(&format!(
                    "UPDATE engrams SET importance = CASE WHEN importance < $1 THEN $1 \
                     ELSE importance END, access_count = access_count + 1, \
                     last_accessed_at = $2, updated_at = $2 WHERE id = $3 \
                     RETURNING {ENGRAM_COLUMNS}"
                ))
                .bind(f64::from(*importance))
                .bind(*now)
                .bind(id)
                .fetch_optional(&mut *connection)
                .await?;
                match row {
                    Some(row) => Some(engram_from_row(&row)?),
                    None => None,
                }
            });
            let engram = engram.ok_or_else(|| MemoryError::NotFound(id.clone()))?;
            Ok(Outcome::Updated(engram))
        }
        Change::Touch { ids, now } => {
            on_connection!(connection, |connection, Db| {
                let mut query = QueryBuilder::<Db>::new("UPDATE engrams SET last_accessed_at = ");
                query
                    .push_bind(*now)
                    .push(", access_count = access_count + 1");
                crate::database::push_id_filter(&mut query, ids);
                query.build().execute(&mut *connection).await?;
            });
            Ok(Outcome::Done)
        }
        Change::Refresh {
            ids,
            embedder,
            dimension,
        } => Ok(Outcome::Refreshed(
            crate::peer_changes::read_rows(connection, ids, embedder, *dimension).await?,
        )),
        // Run by `reload_index`, never inside a transaction.
        Change::Reload => Ok(Outcome::Done),
    }
}

/// Brings the index in step with the committed `jobs`, under one write lock; returns their
/// results, a refresh's rows taken out.
fn mirror_in_index(
    state: &SharedState,
    jobs: &[Job],
    results: Vec<Result<Outcome, MemoryError>>,
) -> Vec<Result<Outcome, MemoryError>> {
    let mut index = state.index_write();
    let mut answers = Vec::with_capacity(results.len());
    for (job, result) in jobs.iter().zip(results) {
        match (&job.change, &result) {
            (
                Change::Insert {
                    engram,
                    category,
                    vector,
                    ..
                },
                Ok(_),
            ) => {
                if let Some(key) = key_of(&engram.id) {
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
            }
            (Change::Insert { .. }, Err(_)) => state.release_row(),
            (Change::Delete { id }, Ok(_)) => {
                // The count follows the index: a row another process stored and this one
                // has not indexed yet was never counted here.
                let removed = key_of(id).is_some_and(|key| index.remove(key));
                if removed {
                    state.release_row();
                }
            }
            (Change::Update(_) | Change::Reinforce { .. }, Ok(Outcome::Updated(engram))) => {
                if let Some(key) = key_of(&engram.id) {
                    let category = Category::try_from(engram.category).unwrap_or(Category::Fact);
                    index.update_facts(key, |facts| {
                        facts.importance = engram.importance;
                        facts.category = category;
                        facts.accessed_at = engram.last_accessed_at_unix_ms;
                    });
                }
            }
            (Change::Touch { ids, now }, Ok(_)) => {
                for key in ids.iter().filter_map(|id| key_of(id)) {
                    index.update_facts(key, |facts| facts.accessed_at = *now);
                }
            }
            (Change::Refresh { .. }, Ok(Outcome::Refreshed(_))) => {
                let Ok(Outcome::Refreshed(rows)) = result else {
                    unreachable!("matched just above");
                };
                rows.apply(state, &mut index);
                answers.push(Ok(Outcome::Done));
                continue;
            }
            _ => {}
        }
        answers.push(result);
    }
    answers
}

/// The index key of an engram id (a UUID); `None` for an id that is not one.
pub(crate) fn key_of(id: &str) -> Option<u128> {
    uuid::Uuid::parse_str(id).ok().map(|uuid| uuid.as_u128())
}
