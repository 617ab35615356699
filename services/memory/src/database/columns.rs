//! Reading an engram's columns from a row of either database.

use crate::category;
use crate::error::MemoryError;
use mimo_proto::v1::Engram;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// Columns of an [`Engram`], in the order [`engram_from_row`] reads them by name.
pub(crate) const ENGRAM_COLUMNS: &str = "id, content, category, importance, metadata, embedder, \
     dimension, created_at, updated_at, last_accessed_at, access_count, protected";

/// The four column types of the engram table, read by name from a SQLite or PostgreSQL row.
pub(crate) trait ReadColumns {
    /// A TEXT column.
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    /// An integer column (every one is read as 64 bits).
    fn integer(&self, column: &str) -> Result<i64, sqlx::Error>;
    /// A floating-point column (REAL in SQLite, DOUBLE PRECISION in PostgreSQL).
    fn real(&self, column: &str) -> Result<f64, sqlx::Error>;
    /// A BLOB (SQLite) or BYTEA (PostgreSQL) column.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R> ReadColumns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn integer(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn real(&self, column: &str) -> Result<f64, sqlx::Error> {
        self.try_get(column)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }
}

/// Returns the engram in `row`, which holds [`ENGRAM_COLUMNS`].
pub(crate) fn engram_from_row(row: &impl ReadColumns) -> Result<Engram, MemoryError> {
    let id = row.text("id")?;
    let stored_category = row.text("category")?;
    let Some(category) = category::from_stored_name(&stored_category) else {
        return Err(MemoryError::MalformedRow {
            id,
            reason: format!("unknown category {stored_category:?}"),
        });
    };
    Ok(Engram {
        content: row.text("content")?,
        category: category as i32,
        importance: row.real("importance")? as f32,
        metadata_json: row.text("metadata")?,
        embedder: row.text("embedder")?,
        dimension: u32::try_from(row.integer("dimension")?).unwrap_or(0),
        created_at_unix_ms: row.integer("created_at")?,
        updated_at_unix_ms: row.integer("updated_at")?,
        last_accessed_at_unix_ms: row.integer("last_accessed_at")?,
        access_count: u64::try_from(row.integer("access_count")?).unwrap_or(0),
        protected: row.integer("protected")? != 0,
        embedding: Vec::new(),
        id,
    })
}
