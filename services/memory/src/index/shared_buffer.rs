//! The exact buffer as a shared-buffer HNSW graph sees it. The graph's nodes hold, as their
//! one-value "vector", the bits of their slot number; its custom metric turns a node code back
//! into the buffer's row (or, for the query's code, the query of the search running on this
//! thread) and returns 1 - the dot product. Raw pointers are needed because the metric is
//! called from USearch's C++ with no Rust borrow to hand; they are kept valid by the index,
//! which registers its buffer after every change of the allocation and changes it only while
//! it is borrowed mutably (so while no search or build runs).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// How many values at the start of a row a prefetch asks for: four 64-byte cache lines.
/// Asking for whole rows (24 lines at 384-d) stalls on the prefetch instructions themselves;
/// at 200k x 384, four lines gave the lowest latency of 1, 4 and all (BENCHMARKS.md).
const PREFETCHED_VALUES: usize = 4 * 16;

/// The exact buffer as a shared-buffer graph's metric sees it: its address and length in
/// slots, set by the index after every change of its allocation (while no search runs,
/// since changes take the index mutably).
pub(super) struct SharedBuffer {
    base: AtomicPtr<f32>,
    slots: AtomicUsize,
    dimension: usize,
}

/// The node "vector" a query stands for: a slot number never has the sign bit.
pub(super) const QUERY_CODE: u32 = 1 << 31;

thread_local! {
    /// The query of the search running on this thread (a shared-buffer graph searches on
    /// the calling thread): its address and length.
    static QUERY: Cell<(*const f32, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

impl SharedBuffer {
    /// A buffer of `dimension`-long rows, registered empty.
    pub(super) fn new(dimension: usize) -> Self {
        Self {
            base: AtomicPtr::new(std::ptr::null_mut()),
            slots: AtomicUsize::new(0),
            dimension,
        }
    }

    /// Registers the buffer's current allocation.
    pub(super) fn track(&self, vectors: &[f32]) {
        self.base
            .store(vectors.as_ptr().cast_mut(), Ordering::Release);
        self.slots
            .store(vectors.len() / self.dimension, Ordering::Release);
    }

    /// The f32 values a node code stands for, or `None` for a slot outside the buffer.
    ///
    /// # Safety
    /// `code` points at a node code the graph holds or was given, and the buffer last
    /// registered with [`SharedBuffer::track`] is still allocated.
    unsafe fn resolve(&self, code: *const f32) -> Option<&[f32]> {
        // SAFETY: the graph hands the metric pointers to one-value node codes.
        let bits = unsafe { code.read_unaligned() }.to_bits();
        if bits & QUERY_CODE != 0 {
            let (query, length) = QUERY.get();
            // SAFETY: set by `QueryGuard::set` for the length of the search, from a live slice.
            return (!query.is_null() && length == self.dimension)
                .then(|| unsafe { std::slice::from_raw_parts(query, length) });
        }
        let slot = bits as usize;
        if slot >= self.slots.load(Ordering::Acquire) {
            return None;
        }
        let base = self.base.load(Ordering::Acquire);
        // SAFETY: `slot` is inside the registered buffer, which is still allocated.
        Some(unsafe { std::slice::from_raw_parts(base.add(slot * self.dimension), self.dimension) })
    }

    /// Asks the CPU to fetch the start of the rows of the node codes at `codes` (as many as
    /// `count`), which the graph is about to measure: the walk then finds them in the cache
    /// instead of waiting on each 1.5 KB row in turn (the hardware prefetcher streams the rest
    /// of a row once its first lines are asked for).
    ///
    /// # Safety
    /// As for [`SharedBuffer::resolve`], for each of the `count` pointers at `codes`.
    unsafe fn prefetch(&self, codes: *const *const u8, count: usize) {
        // SAFETY: the graph hands over `count` pointers to node codes it holds.
        let codes = unsafe { std::slice::from_raw_parts(codes, count) };
        for &code in codes {
            // SAFETY: as above.
            if let Some(row) = unsafe { self.resolve(code.cast()) } {
                super::prefetch(&row[..PREFETCHED_VALUES.min(row.len())]);
            }
        }
    }

    /// The graph's distance between two node codes: 1 - cosine (the vectors are unit
    /// length); the farthest for a code that resolves to nothing.
    pub(super) fn distance(&self, left: *const f32, right: *const f32) -> f32 {
        // SAFETY: see `resolve`; the graph only compares codes it holds or was given.
        match unsafe { (self.resolve(left), self.resolve(right)) } {
            (Some(left), Some(right)) => {
                let distance = 1.0 - super::dot(left, right);
                if distance.is_nan() {
                    2.0
                } else {
                    distance
                }
            }
            _ => 2.0,
        }
    }
}

/// The node code of `slot` (its bits as an f32's, copied as they are), or `None` past 2^31.
pub(super) fn slot_code(slot: usize) -> Option<[f32; 1]> {
    u32::try_from(slot)
        .ok()
        .filter(|&bits| bits & QUERY_CODE == 0)
        .map(|bits| [f32::from_bits(bits)])
}

/// Clears the thread's query when a search ends, however it ends.
pub(super) struct QueryGuard;

impl QueryGuard {
    /// Makes `query` the thread's query until the guard is dropped.
    pub(super) fn set(query: &[f32]) -> Self {
        QUERY.set((query.as_ptr(), query.len()));
        Self
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        QUERY.set((std::ptr::null(), 0));
    }
}

/// Makes `graph`, before it is first used, fetch ahead the rows of the neighbours it is about
/// to measure, from `buffer`, which must outlive it.
pub(super) fn prefetch_rows_of(graph: &usearch::Index, buffer: &std::sync::Arc<SharedBuffer>) {
    let state = std::sync::Arc::as_ptr(buffer) as usize;
    // SAFETY: the caller keeps the buffer alive as long as the graph, and nothing searches or
    // builds the graph yet.
    unsafe { graph.change_prefetch(Some(prefetch_rows), state) };
}

/// The graph's prefetch hook: `state` is the address of the graph's [`SharedBuffer`].
extern "C" fn prefetch_rows(codes: *const *const u8, count: usize, state: usize) {
    let buffer = state as *const SharedBuffer;
    // SAFETY: the graph is given the address of a buffer it keeps alive (`Approximate` holds
    // the `Arc` for as long as the graph), and hands over node codes it holds.
    unsafe { (*buffer).prefetch(codes, count) }
}
