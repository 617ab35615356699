//! DeleteMatching: every engram matching a filter, found a page at a time in id order and
//! deleted through the writer (a page's deletes commit together).

use crate::category;
use crate::database::{on_connection, ReadColumns};
use crate::error::MemoryError;
use crate::store::MemoryStore;
use futures::future::join_all;
use mimo_proto::v1::{DeleteMatchingRequest, DeleteMatchingResponse};
use sqlx::QueryBuilder;

/// Engrams found and deleted per page.
const PAGE: i64 = 500;

impl MemoryStore {
    /// Deletes (or with `dry_run` counts) every engram matching `request`'s filter.
    pub async fn delete_matching(
        &self,
        request: DeleteMatchingRequest,
    ) -> Result<DeleteMatchingResponse, MemoryError> {
        let category = category::for_search(request.category)?.map(category::stored_name);
        if let Some(below) = request.importance_below {
            if !(0.0..=1.0).contains(&below) {
                return Err(MemoryError::OutOfRange {
                    field: "importance_below",
                    value: below.to_string(),
                    bounds: "0.0..=1.0".to_string(),
                });
            }
        }
        if category.is_none()
            && request.importance_below.is_none()
            && request.created_before_unix_ms.is_none()
        {
            return Err(MemoryError::Conflict(
                "give at least one of category, importance_below, created_before_unix_ms (use Delete for one engram)",
            ));
        }
        let mut deleted = 0_u64;
        let mut after = String::new();
        loop {
            let mut ids: Vec<String> = Vec::new();
            on_connection!(&mut self.read_connection().await?, |connection, Db| {
                let mut select = QueryBuilder::<Db>::new("SELECT id FROM engrams WHERE id > ");
                select.push_bind(after.clone());
                if let Some(category) = category {
                    select.push(" AND category = ").push_bind(category);
                }
                if let Some(below) = request.importance_below {
                    select
                        .push(" AND importance < ")
                        .push_bind(f64::from(below));
                }
                if let Some(before) = request.created_before_unix_ms {
                    select.push(" AND created_at < ").push_bind(before);
                }
                if !request.include_protected {
                    select.push(" AND protected = 0");
                }
                select.push(" ORDER BY id LIMIT ").push_bind(PAGE);
                for row in &select.build().fetch_all(&mut *connection).await? {
                    ids.push(row.text("id")?);
                }
            });
            let Some(last) = ids.last() else {
                break;
            };
            after = last.clone();
            if request.dry_run {
                deleted += ids.len() as u64;
                continue;
            }
            for result in join_all(ids.iter().map(|id| self.delete(id))).await {
                match result {
                    Ok(()) => deleted += 1,
                    Err(MemoryError::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        tracing::info!(
            deleted,
            dry_run = request.dry_run,
            "engrams deleted by filter"
        );
        Ok(DeleteMatchingResponse { deleted })
    }
}
