//! The exact buffer as a shared-buffer HNSW graph holds it: by reference. Each node's vector
//! is the address of its row in the index's exact f32 buffer (USearch, patched, keeps the
//! address instead of a copy), so the graph measures exact distances with its own SIMD
//! kernels and no second copy exists. The addresses stay valid because the buffer only
//! grows, and every time its allocation moves the graph's addresses are moved with it
//! ([`TrackedBuffer::track`]) before the graph is next used: the index changes the buffer only
//! while it is borrowed mutably, so while no search or build runs.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// How much of the start of each row in a batch is asked for before the batch is measured:
/// four 64-byte cache lines (the hardware prefetcher streams the rest). Whole rows (24 lines
/// at 384-d) stall on the prefetch instructions themselves; at 200k x 384, 0, 1, 2, 4 and 8
/// lines were within the noise of each other, 4 as good as any.
const PREFETCHED_BYTES: usize = 4 * 64;

/// Where the buffer a graph holds rows of lies now: its address and length in bytes.
#[derive(Debug, Default)]
pub(super) struct TrackedBuffer {
    base: AtomicUsize,
    bytes: AtomicUsize,
}

impl TrackedBuffer {
    /// Registers the buffer's current allocation; if it moved since the last call, points the
    /// rows `graph` holds at their new place.
    ///
    /// # Safety
    /// `vectors` holds what the previously registered buffer held (it is the same buffer,
    /// moved or grown), and no search or insertion of `graph` runs meanwhile.
    pub(super) unsafe fn track(&self, graph: &usearch::Index, vectors: &[f32]) {
        let base = vectors.as_ptr() as usize;
        let old = self.base.swap(base, Ordering::AcqRel);
        let old_bytes = self
            .bytes
            .swap(std::mem::size_of_val(vectors), Ordering::AcqRel);
        if old != 0 && old != base {
            // SAFETY: the caller promises that nothing uses the graph now and that the new
            // buffer holds the old one's rows at the same offsets.
            unsafe { graph.rebase_vectors(old as *const u8, old_bytes, base as *const u8) };
        }
    }

    /// Whether `row` lies inside the buffer registered last.
    pub(super) fn holds(&self, row: &[f32]) -> bool {
        let base = self.base.load(Ordering::Acquire);
        let bytes = self.bytes.load(Ordering::Acquire);
        let start = row.as_ptr() as usize;
        base != 0 && start >= base && start + std::mem::size_of_val(row) <= base + bytes
    }
}

/// Makes `graph` measure its f32 rows of `dimension` values with the index's own dot
/// product: 1 - the dot product, the cosine distance of unit vectors (USearch's built-in
/// inner product sums in f64, slower here).
pub(super) fn measure_rows_with_own_dot(graph: &mut usearch::Index, dimension: usize) {
    graph.change_metric::<f32>(Box::new(move |left, right| {
        // SAFETY: the graph compares rows it holds and queries it was given, all of
        // `dimension` f32 values.
        let (left, right) = unsafe {
            (
                std::slice::from_raw_parts(left, dimension),
                std::slice::from_raw_parts(right, dimension),
            )
        };
        1.0 - super::dot(left, right)
    }));
}

/// Makes `graph`, before it is first used, measure the unvisited neighbours of each node it
/// walks through together (its rows of `dimension` values fetched side by side, four dot
/// products interleaved) instead of one after another.
pub(super) fn measure_rows_in_batches(graph: &usearch::Index, dimension: usize) {
    // SAFETY: the state is a plain number, and nothing searches or builds the graph yet.
    unsafe { graph.change_measure_batch(Some(measure_rows), dimension) };
}

/// Most rows measured in one call (the graph hands over at most 64).
const MOST_ROWS: usize = 64;

/// The graph's batch measure: the distances (1 - the dot product) from the query at `query`
/// to the `count` rows at `rows`, into `distances`; `dimension` values each.
extern "C" fn measure_rows(
    query: *const u8,
    rows: *const *const u8,
    count: usize,
    distances: *mut f32,
    dimension: usize,
) {
    // SAFETY: the graph hands over the query it was given and `count` addresses of rows it
    // holds, all of `dimension` f32 values, and room for `count` distances.
    let (query, rows, distances) = unsafe {
        (
            std::slice::from_raw_parts(query.cast::<f32>(), dimension),
            std::slice::from_raw_parts(rows, count),
            std::slice::from_raw_parts_mut(distances, count),
        )
    };
    for (rows, distances) in rows.chunks(MOST_ROWS).zip(distances.chunks_mut(MOST_ROWS)) {
        for &row in rows {
            super::simd::prefetch_bytes(row, PREFETCHED_BYTES);
        }
        let mut slices: [&[f32]; MOST_ROWS] = [&[]; MOST_ROWS];
        for (slice, &row) in slices.iter_mut().zip(rows) {
            // SAFETY: as above.
            *slice = unsafe { std::slice::from_raw_parts(row.cast::<f32>(), dimension) };
        }
        super::simd::dots(query, &slices[..rows.len()], distances);
        for distance in distances.iter_mut() {
            *distance = 1.0 - *distance;
        }
    }
}
