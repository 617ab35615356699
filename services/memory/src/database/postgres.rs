//! PostgreSQL's pools: one write connection (this process's writer task) and a read pool.
//! Other memory processes may share the database; see `peer_changes` for how their
//! changes reach this one's index.

use super::{Pool, Pools, ACQUIRE_TIMEOUT};
use crate::config::MemoryConfig;
use crate::error::MemoryError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;

/// Connects to the database at `url` and migrates it (the migrator takes an advisory lock,
/// so processes starting together migrate one at a time).
pub(super) async fn connect(url: &str, config: &MemoryConfig) -> Result<Pools, MemoryError> {
    let options = options(url)?;
    let write = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("migrations/postgres").run(&write).await?;
    let read = PgPoolOptions::new()
        .max_connections(config.read_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    Ok(Pools {
        write: Pool::Postgres(write),
        read: Pool::Postgres(read),
        checkpoint: None,
    })
}

/// The connection options of `url`, naming the application in `pg_stat_activity`, with
/// bounds on waiting: a statement waits at most 5 s for a row another process has locked (then
/// the writer retries, and answers UNAVAILABLE after its last attempt), runs at most 60 s, and
/// a transaction left idle (its process frozen) is ended by the server after 60 s.
pub(crate) fn options(url: &str) -> Result<PgConnectOptions, MemoryError> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name(APPLICATION)
        .options([
            ("lock_timeout", "5s"),
            ("statement_timeout", "60s"),
            ("idle_in_transaction_session_timeout", "60s"),
        ]))
}

/// The `application_name` of every memory service's connections.
pub(crate) const APPLICATION: &str = "mimo-memory";

/// A pool of one connection for the listener of other processes' changes.
pub(crate) async fn listen_pool(url: &str) -> Result<sqlx::postgres::PgPool, MemoryError> {
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options(url)?)
        .await?)
}
