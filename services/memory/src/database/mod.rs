//! The database side: SQLite or PostgreSQL pools, migrations, the macros that run one query
//! text on either, and turning rows into engrams.
//!
//! Every query is written once, with `$1`-style parameters (SQLite reads them as numbered
//! ones) or through a `QueryBuilder`, and compiled for both databases by [`on_pool!`] and
//! [`on_connection!`], which give the body the concrete pool or connection and name the
//! database type.

mod columns;
mod location;
pub(crate) mod postgres;
mod sqlite;

pub(crate) use columns::{engram_from_row, ReadColumns, ENGRAM_COLUMNS};
pub(crate) use location::redacted as redacted_url;
pub use location::MemoryDatabase;

use crate::config::MemoryConfig;
use crate::error::MemoryError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, QueryBuilder, Sqlite};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of connections to one of the two databases.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection taken from a [`Pool`].
#[derive(Debug)]
pub(crate) enum Connection {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// Runs `$body` with `$pool` bound to the concrete pool (`&SqlitePool` or `&PgPool`) and
/// `$db` naming its database type.
macro_rules! on_pool {
    ($target:expr, |$pool:ident, $db:ident| $body:expr) => {
        match $target {
            $crate::database::Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Sqlite;
                $body
            }
            $crate::database::Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Postgres;
                $body
            }
        }
    };
}

/// Runs `$body` with `$connection` bound to the concrete connection (`&mut
/// SqliteConnection` or `&mut PgConnection`) of `$target` (a `&mut Connection`) and `$db`
/// naming its database type.
macro_rules! on_connection {
    ($target:expr, |$connection:ident, $db:ident| $body:expr) => {
        match $target {
            $crate::database::Connection::Sqlite(pooled) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Sqlite;
                let $connection: &mut ::sqlx::sqlite::SqliteConnection = &mut **pooled;
                $body
            }
            $crate::database::Connection::Postgres(pooled) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Postgres;
                let $connection: &mut ::sqlx::postgres::PgConnection = &mut **pooled;
                $body
            }
        }
    };
}

pub(crate) use {on_connection, on_pool};

impl Pool {
    /// A connection from the pool.
    pub(crate) async fn acquire(&self) -> Result<Connection, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(pool) => Connection::Sqlite(pool.acquire().await?),
            Pool::Postgres(pool) => Connection::Postgres(pool.acquire().await?),
        })
    }

    /// Connections open now.
    pub(crate) fn size(&self) -> u32 {
        on_pool!(self, |pool, Db| pool.size())
    }

    /// Connections open and idle now.
    pub(crate) fn num_idle(&self) -> usize {
        on_pool!(self, |pool, Db| pool.num_idle())
    }

    /// Closes every connection, waiting for those in use to come back.
    pub(crate) async fn close(&self) {
        on_pool!(self, |pool, Db| pool.close().await)
    }
}

impl Connection {
    /// Opens a transaction that holds the write lock from its start (SQLite's `BEGIN
    /// IMMEDIATE`: it never fails half-way for a lock another writer took), or a plain one
    /// (PostgreSQL locks rows as it goes).
    pub(crate) async fn begin_write(&mut self) -> Result<(), sqlx::Error> {
        let statement = match self {
            Connection::Sqlite(_) => "BEGIN IMMEDIATE",
            Connection::Postgres(_) => "BEGIN",
        };
        self.run(statement).await
    }

    /// Runs `statement`, which takes no parameters.
    pub(crate) async fn run(&mut self, statement: &str) -> Result<(), sqlx::Error> {
        on_connection!(self, |connection, Db| sqlx::query(statement)
            .execute(&mut *connection)
            .await
            .map(drop))
    }

    /// Marks a point the transaction can return to should the next statement fail: in
    /// PostgreSQL a failed statement spoils the whole transaction unless it is rolled back
    /// to a savepoint; SQLite undoes just the failed statement by itself, so nothing is done.
    pub(crate) async fn open_savepoint(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Connection::Sqlite(_) => Ok(()),
            Connection::Postgres(_) => self.run("SAVEPOINT change").await,
        }
    }

    /// Ends the savepoint of [`Connection::open_savepoint`]: kept when the statement
    /// `succeeded`, rolled back to otherwise.
    pub(crate) async fn close_savepoint(&mut self, succeeded: bool) -> Result<(), sqlx::Error> {
        match (&self, succeeded) {
            (Connection::Sqlite(_), _) => Ok(()),
            (Connection::Postgres(_), true) => self.run("RELEASE SAVEPOINT change").await,
            (Connection::Postgres(_), false) => self.run("ROLLBACK TO SAVEPOINT change").await,
        }
    }
}

/// The pools: the writer task owns the single write connection, so writes never meet a
/// lock from this process; reads run concurrently beside them; SQLite's checkpointer copies
/// the WAL back into the database on a connection of its own, so that the writer does not
/// stop to do it.
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    pub(crate) write: Pool,
    pub(crate) read: Pool,
    /// SQLite's checkpoint connection (none for PostgreSQL).
    pub(crate) checkpoint: Option<SqlitePool>,
}

impl Pools {
    /// Closes every pool.
    pub(crate) async fn close(&self) {
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.close().await;
        }
        self.write.close().await;
        self.read.close().await;
    }
}

/// Opens (creating if missing) the database of `config` (for SQLite, in a folder that
/// exists), brings its schema up to date, and returns its pools.
pub(crate) async fn connect(config: &MemoryConfig) -> Result<Pools, MemoryError> {
    match &config.database {
        MemoryDatabase::Sqlite(path) => sqlite::connect(path, config).await,
        MemoryDatabase::Postgres(url) => postgres::connect(url, config).await,
    }
}

/// Whether `error` is a conflict with another writer worth retrying: SQLite's file locked
/// elsewhere (SQLITE_BUSY, SQLITE_LOCKED and their extended codes), PostgreSQL's
/// serialization failure, deadlock or lock not available.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    if database
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        return database
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6));
    }
    if let Some(postgres) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(postgres.code(), "40001" | "40P01" | "55P03");
    }
    false
}

/// Milliseconds since the Unix epoch by the wall clock (a timestamp, never a deadline).
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Appends ` WHERE id IN (..)` binding `ids`; a primary-key lookup, never a scan.
pub(crate) fn push_id_filter<'args, Db>(builder: &mut QueryBuilder<'args, Db>, ids: &'args [String])
where
    Db: sqlx::Database,
    &'args str: sqlx::Encode<'args, Db> + sqlx::Type<Db>,
{
    builder.push(" WHERE id IN (");
    let mut separated = builder.separated(", ");
    for id in ids {
        separated.push_bind(id.as_str());
    }
    separated.push_unseparated(")");
}
