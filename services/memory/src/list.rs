//! The List RPC: engrams in a chosen order, a bounded page at a time, by offset or (in id
//! order) after a given id, which pages through any number of engrams in constant time.

use crate::blob::decode_embedding;
use crate::category;
use crate::database::{engram_from_row, on_connection, Connection, ReadColumns, ENGRAM_COLUMNS};
use crate::error::MemoryError;
use mimo_proto::v1::{ListOrder, ListRequest, ListResponse};
use sqlx::QueryBuilder;

/// Engrams per page when a request names no limit.
const DEFAULT_LIMIT: u32 = 100;
/// Most engrams per page.
const MAX_LIMIT: u32 = 1000;
/// Deepest offset: the database walks every skipped row, so deeper pages use `after_id`.
const MAX_OFFSET: u64 = 1_000_000;

/// Answers `request` on `connection`.
pub(crate) async fn list(
    connection: &mut Connection,
    request: ListRequest,
) -> Result<ListResponse, MemoryError> {
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(MemoryError::OutOfRange {
            field: "limit",
            value: limit.to_string(),
            bounds: format!("1..={MAX_LIMIT}"),
        });
    }
    if request.offset > MAX_OFFSET {
        return Err(MemoryError::OutOfRange {
            field: "offset",
            value: request.offset.to_string(),
            bounds: format!("0..={MAX_OFFSET} (page deeper with LIST_ORDER_BY_ID and after_id)"),
        });
    }
    let order = ListOrder::try_from(request.order).map_err(|_| MemoryError::OutOfRange {
        field: "order",
        value: request.order.to_string(),
        bounds: "0..=5 (a ListOrder value)".to_string(),
    })?;
    if !request.after_id.is_empty() && order != ListOrder::ById {
        return Err(MemoryError::Conflict(
            "after_id pages only in LIST_ORDER_BY_ID order",
        ));
    }
    let category = category::for_search(request.category)?.map(category::stored_name);
    let columns = if request.with_embeddings {
        format!("{ENGRAM_COLUMNS}, embedding")
    } else {
        ENGRAM_COLUMNS.to_string()
    };
    let order_by = match order {
        ListOrder::Unspecified | ListOrder::NewestFirst => " ORDER BY created_at DESC, id DESC",
        ListOrder::OldestFirst => " ORDER BY created_at ASC, id ASC",
        ListOrder::MostImportantFirst => " ORDER BY importance DESC, id ASC",
        ListOrder::RecentlyAccessedFirst => " ORDER BY last_accessed_at DESC, id ASC",
        ListOrder::ById => " ORDER BY id ASC",
    };
    let mut engrams = Vec::new();
    let total = on_connection!(connection, |connection, Db| {
        let mut select =
            QueryBuilder::<Db>::new(format!("SELECT {columns} FROM engrams WHERE 1 = 1"));
        if let Some(category) = category {
            select.push(" AND category = ").push_bind(category);
        }
        if !request.after_id.is_empty() {
            select
                .push(" AND id > ")
                .push_bind(request.after_id.as_str());
        }
        select
            .push(order_by)
            .push(" LIMIT ")
            .push_bind(i64::from(limit))
            .push(" OFFSET ")
            .push_bind(request.offset as i64);
        for row in &select.build().fetch_all(&mut *connection).await? {
            let mut engram = engram_from_row(row)?;
            if request.with_embeddings {
                let blob = row.bytes("embedding")?;
                engram.embedding = decode_embedding(&blob, engram.dimension as usize)?;
            }
            engrams.push(engram);
        }
        let mut count = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM engrams");
        if let Some(category) = category {
            count.push(" WHERE category = ").push_bind(category);
        }
        count
            .build_query_scalar::<i64>()
            .fetch_one(&mut *connection)
            .await?
    });
    let truncated = crate::response_size::fit(&mut engrams);
    Ok(ListResponse {
        engrams,
        total: u64::try_from(total).unwrap_or(0),
        truncated,
    })
}
