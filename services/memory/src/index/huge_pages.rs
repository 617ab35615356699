//! Huge pages for the exact buffer. A graph walk reads rows at random, one 4 KiB page each,
//! so at a million rows almost every row read also misses the TLB; backed by 2 MiB pages the
//! whole buffer needs a few hundred TLB entries instead of hundreds of thousands. Linux's
//! `MADV_COLLAPSE` (6.1 and later) turns the buffer's pages into huge pages once, when asked,
//! without making later page faults wait on compaction (which `MADV_HUGEPAGE` would, and
//! which halved ingest when it was tried).
#![allow(unsafe_code)]

/// Asks the kernel to back the whole 2 MiB-aligned stretches of `buffer` with huge pages now
/// (a hint: the contents do not change, and where the kernel cannot, nothing happens but a
/// log line). Takes about as long as copying the buffer.
pub(super) fn collapse(buffer: &[f32]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let started = std::time::Instant::now();
        let address = buffer.as_ptr() as usize;
        let start = address.next_multiple_of(PAGE);
        let end = (address + std::mem::size_of_val(buffer)) / PAGE * PAGE;
        if end <= start {
            return;
        }
        // SAFETY: the range lies inside `buffer`, which is borrowed for the call; MADV_COLLAPSE
        // moves the pages' contents into huge pages without changing them.
        let result =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_COLLAPSE) };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if result == 0 {
            tracing::info!(
                bytes = end - start,
                elapsed_ms,
                "exact vector buffer backed by huge pages"
            );
        } else {
            tracing::info!(
                error = %std::io::Error::last_os_error(),
                elapsed_ms,
                "exact vector buffer left on small pages (huge pages unavailable)"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}
