//! The size bound of an answer: a response that lists engrams stops listing at 8 MiB (half
//! of gRPC's message limit, leaving room for the rest), so that no limit a request may ask
//! for makes its answer unsendable after the work is done.

use prost::Message;

/// Bytes of listed engrams (or hits) one answer carries at most.
pub(crate) const MAX_LISTED_BYTES: usize = 8 * 1024 * 1024;

/// Keeps the leading items of `items` whose encoded sizes fit the bound (always the first);
/// returns whether any were left out.
pub(crate) fn fit<T: Message>(items: &mut Vec<T>) -> bool {
    let mut bytes = 0_usize;
    let keep = items
        .iter()
        .position(|item| {
            bytes += item.encoded_len() + 8;
            bytes > MAX_LISTED_BYTES
        })
        .map_or(items.len(), |first_over| first_over.max(1));
    let truncated = keep < items.len();
    items.truncate(keep);
    truncated
}
