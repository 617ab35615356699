//! The memory's errors and their one mapping to gRPC status codes.

use crate::embedder::EmbedError;
use std::path::PathBuf;
use tonic::{Code, Status};

/// Everything a memory operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A required text field is empty (after trimming).
    #[error("{0} is empty")]
    EmptyField(&'static str),
    /// A text field is longer than its limit.
    #[error("{field} is {bytes} bytes; the limit is {limit}")]
    TooLarge {
        /// Name of the request field.
        field: &'static str,
        /// Its size in bytes.
        bytes: usize,
        /// The largest size allowed.
        limit: usize,
    },
    /// A number is outside its allowed range (or not finite).
    #[error("{field} is {value}; it must lie within {bounds}")]
    OutOfRange {
        /// Name of the request field.
        field: &'static str,
        /// The value as given.
        value: String,
        /// The allowed range, e.g. `1..=1000`.
        bounds: String,
    },
    /// Request fields that disagree with each other, said in full.
    #[error("{0}")]
    Inconsistent(String),
    /// Two request fields exclude each other, or none of several was given.
    #[error("{0}")]
    Conflict(&'static str),
    /// A vector has another length than the memory's dimension.
    #[error(
        "{field} has {given} values; this memory's embedder makes {dimension}-dimensional vectors"
    )]
    WrongDimension {
        /// Name of the request field.
        field: &'static str,
        /// Values given.
        given: usize,
        /// The memory's dimension.
        dimension: usize,
    },
    /// A vector holds NaN or infinity, or has no direction.
    #[error("{field} cannot be used: {reason}")]
    BadVector {
        /// Name of the request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The memory's embedder takes no texts: clients bring their own vectors.
    #[error("this memory's embedder {embedder} embeds no text: send {field} with a vector of {dimension} values")]
    VectorsRequired {
        /// The field that needs a vector (`embedding` or `query_vector`).
        field: &'static str,
        /// Id of the memory's embedder.
        embedder: String,
        /// The memory's dimension.
        dimension: usize,
    },
    /// The stored engrams were embedded by another embedder than the configured one.
    #[error("this memory holds {found}, but its embedder is {configured}: their vectors cannot be compared; {remedy}")]
    EmbedderMismatch {
        /// The other embedders and their counts.
        found: String,
        /// The configured embedder.
        configured: String,
        /// What the operator can do.
        remedy: &'static str,
    },
    /// The write queue is full: the writer is behind.
    #[error("the memory's write queue holds {limit} pending changes, its limit; retry shortly")]
    WriteQueueFull {
        /// The queue's bound.
        limit: usize,
    },
    /// The database stayed locked (SQLite: by another program on the file; PostgreSQL: in
    /// conflict with another writer) through every retry.
    #[error("the memory database stayed locked through {attempts} attempts; retry shortly")]
    Busy {
        /// Attempts made.
        attempts: u32,
    },
    /// `metadata_json` is neither empty nor a JSON object.
    #[error("metadata_json must be empty or a JSON object: {0}")]
    InvalidMetadata(String),
    /// The category number is not one of the `Category` enum's values.
    #[error("category {0} is unknown")]
    UnknownCategory(i32),
    /// The text gives the embedder nothing to go on (no words, for the built-in one), so it
    /// could never be found.
    #[error("{field} has nothing the embedder {embedder} can index (its vector is all zeros); give text with words")]
    NothingToEmbed {
        /// Name of the request field.
        field: &'static str,
        /// Id of the embedder.
        embedder: String,
    },
    /// No engram has this id.
    #[error("engram {0} not found")]
    NotFound(String),
    /// The memory already holds as many engrams as it may.
    #[error("memory holds {limit} engrams, its limit; delete some before storing more")]
    CapacityReached {
        /// The most engrams the memory holds.
        limit: usize,
    },
    /// The embedder could not embed a text.
    #[error("embedder failed: {0}")]
    Embedder(#[from] EmbedError),
    /// A stored embedding blob does not match its dimension.
    #[error("embedding blob is {bytes} bytes; dimension {dimension} needs {}", dimension * 4)]
    CorruptEmbedding {
        /// Length of the blob.
        bytes: usize,
        /// Dimension recorded for it.
        dimension: usize,
    },
    /// A stored row holds a value the schema does not allow.
    #[error("stored engram {id} is malformed: {reason}")]
    MalformedRow {
        /// Id of the row.
        id: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The runtime is shutting down and cancelled the change.
    #[error("memory is shutting down")]
    ShuttingDown,
    /// Another process has the database open.
    #[error("the memory database {} is in use by another Mimo memory process (pid {holder}); stop that one, or give this one another --database", database.display())]
    InUse {
        /// The database file.
        database: PathBuf,
        /// The holder's pid, as it wrote it.
        holder: String,
    },
    /// A shared (PostgreSQL) database is held by what this process cannot run beside.
    #[error("the memory database {database} is in use: {reason}")]
    SharedDatabaseBusy {
        /// The database, its password hidden.
        database: String,
        /// Who holds it and what to do.
        reason: String,
    },
    /// The instance lock file could not be used.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The database's directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl From<MemoryError> for Status {
    fn from(error: MemoryError) -> Self {
        let code = match &error {
            MemoryError::EmptyField(_)
            | MemoryError::TooLarge { .. }
            | MemoryError::OutOfRange { .. }
            | MemoryError::InvalidMetadata(_)
            | MemoryError::NothingToEmbed { .. }
            | MemoryError::Conflict(_)
            | MemoryError::Inconsistent(_)
            | MemoryError::WrongDimension { .. }
            | MemoryError::BadVector { .. }
            | MemoryError::UnknownCategory(_) => Code::InvalidArgument,
            MemoryError::VectorsRequired { .. } | MemoryError::EmbedderMismatch { .. } => {
                Code::FailedPrecondition
            }
            MemoryError::WriteQueueFull { .. } => Code::ResourceExhausted,
            MemoryError::Busy { .. } => Code::Unavailable,
            MemoryError::NotFound(_) => Code::NotFound,
            MemoryError::CapacityReached { .. } => Code::ResourceExhausted,
            MemoryError::ShuttingDown => Code::Unavailable,
            // What the embedder said goes to the caller: an operator reading a client's
            // error should not need the service's log to see a model server is down.
            MemoryError::Embedder(EmbedError::Backend(_)) => {
                tracing::error!(error = %error, "embedding failed");
                Code::Unavailable
            }
            MemoryError::Embedder(EmbedError::Refused(_)) => {
                tracing::error!(error = %error, "embedding refused");
                Code::FailedPrecondition
            }
            // Vectors of the wrong count or length: the embedder's configuration is wrong,
            // and retrying will not help.
            MemoryError::Embedder(_) => {
                tracing::error!(error = %error, "embedding failed");
                Code::FailedPrecondition
            }
            MemoryError::CorruptEmbedding { .. }
            | MemoryError::MalformedRow { .. }
            | MemoryError::Database(_)
            | MemoryError::Migration(_)
            | MemoryError::CreateDirectory { .. }
            | MemoryError::InUse { .. }
            | MemoryError::SharedDatabaseBusy { .. }
            | MemoryError::Lock { .. } => {
                tracing::error!(error = %error, "memory database failed");
                return Status::unavailable("the memory database is unavailable; retry later");
            }
        };
        Status::new(code, error.to_string())
    }
}
