//! Many memory processes share one PostgreSQL database, but re-embedding rewrites every
//! vector under them, so it must run alone: each running memory holds a shared advisory
//! lock (on a connection of its own, for as long as it is open) and `reembed` takes the
//! same lock exclusively. Either one is refused while the other holds it.

use crate::error::MemoryError;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// The advisory lock's key: "mimo-mem" in ASCII.
const KEY: i64 = 0x6d69_6d6f_2d6d_656d;

/// Held while the lock is: closing the connection lets go of it.
#[derive(Debug)]
pub(crate) struct AdvisoryLock {
    connection: PgConnection,
}

/// How the lock is taken.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// By a running memory, beside the others.
    Shared,
    /// By a re-embedding, alone.
    Exclusive,
}

impl AdvisoryLock {
    /// Takes the lock of the database at `options`, or says who holds it.
    pub(crate) async fn acquire(
        options: &PgConnectOptions,
        shown_as: &str,
        mode: Mode,
    ) -> Result<Self, MemoryError> {
        let mut connection = options.connect().await?;
        let statement = match mode {
            Mode::Shared => "SELECT pg_try_advisory_lock_shared($1)",
            Mode::Exclusive => "SELECT pg_try_advisory_lock($1)",
        };
        let taken: bool = sqlx::query_scalar(statement)
            .bind(KEY)
            .fetch_one(&mut connection)
            .await?;
        if !taken {
            let _ = connection.close().await;
            return Err(MemoryError::SharedDatabaseBusy {
                database: shown_as.to_string(),
                reason: match mode {
                    Mode::Shared => "a `mimo memory reembed` is rewriting its vectors; start the memory once it is done".to_string(),
                    Mode::Exclusive => "memory processes (or another re-embedding) are running on it; stop every one before re-embedding".to_string(),
                },
            });
        }
        // A running memory whose lock connection was lost (a server restart, a terminated
        // backend) holds no lock but still has its other connections: count those too.
        if matches!(mode, Mode::Exclusive) {
            let others: Vec<(Option<String>, i64)> = sqlx::query_as(
                "SELECT host(client_addr), COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = $1 \
                 AND pid <> pg_backend_pid() GROUP BY host(client_addr)",
            )
            .bind(crate::database::postgres::APPLICATION)
            .fetch_all(&mut connection)
            .await?;
            if !others.is_empty() {
                let _ = connection.close().await;
                let from: Vec<String> = others
                    .iter()
                    .map(|(host, count)| {
                        format!(
                            "{count} from {}",
                            host.as_deref().unwrap_or("a local socket")
                        )
                    })
                    .collect();
                return Err(MemoryError::SharedDatabaseBusy {
                    database: shown_as.to_string(),
                    reason: format!(
                        "memory processes are connected to it ({} connections); stop every one before re-embedding",
                        from.join(", ")
                    ),
                });
            }
        }
        Ok(Self { connection })
    }

    /// Lets go of the lock.
    pub(crate) async fn release(self) {
        let _ = self.connection.close().await;
    }
}
