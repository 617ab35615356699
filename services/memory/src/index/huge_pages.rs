//! Huge pages for the memory a graph walk reads at random: the exact buffer's rows, and the
//! graph's own node table, links and table of row addresses. Each step of a walk reads a few
//! of these at random, one 4 KiB page each, so at a million rows almost every read also
//! misses the TLB; backed by 2 MiB pages they need a few hundred TLB entries instead of
//! hundreds of thousands. Linux's `MADV_COLLAPSE` (6.1 and later) turns a range's pages into
//! huge pages once, when asked, without making later page faults wait on compaction (which
//! `MADV_HUGEPAGE` would, and which halved ingest when it was tried).
#![allow(unsafe_code)]

/// Asks the kernel to back the whole 2 MiB-aligned stretches of each of `regions` (start
/// address, length in bytes: memory this process allocated) with huge pages now, and logs
/// how much it could, under `what`. A hint: contents do not change, and where the kernel
/// cannot, nothing happens but the log line. Takes about as long as copying the memory.
pub(super) fn collapse(what: &str, regions: impl IntoIterator<Item = (usize, usize)>) {
    let started = std::time::Instant::now();
    let (mut collapsed_bytes, mut left_bytes, mut error) = (0_usize, 0_usize, None);
    for (start, bytes) in regions {
        match collapse_region(start, bytes) {
            Ok(()) => collapsed_bytes += bytes,
            Err(failed) => {
                left_bytes += bytes;
                error = Some(failed);
            }
        }
    }
    tracing::info!(
        what,
        collapsed_bytes,
        left_bytes,
        error = error.map(|error| error.to_string()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "memory backed by huge pages where the kernel could"
    );
}

/// Asks the kernel to back the whole 2 MiB-aligned stretches of the `bytes` bytes from
/// address `start` with huge pages now. `start` must be memory this process allocated; it
/// is neither read nor written here, and its contents do not change.
fn collapse_region(start: usize, bytes: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let first = start.next_multiple_of(PAGE);
        let end = (start + bytes) / PAGE * PAGE;
        if end <= first {
            return Ok(());
        }
        // SAFETY: the range lies inside memory the caller allocated; MADV_COLLAPSE moves the
        // pages' contents into huge pages without changing them.
        let result =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_COLLAPSE) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (start, bytes);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}
