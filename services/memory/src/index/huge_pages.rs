//! Transparent huge pages for the vector buffer: a graph walk and a re-rank read rows at
//! random across gigabytes, and with 4 KiB pages nearly every row read is also a TLB miss.
//! Linux gives huge pages to a region only when asked (`madvise`, this machine's default
//! mode); the advice is a hint, so a refusal changes nothing but speed.
#![allow(unsafe_code)]

/// Asks for huge pages over the whole allocation of `buffer` (its capacity, not only its
/// length); call after each reallocation.
pub(crate) fn advise(buffer: &Vec<f32>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        const PAGE: usize = 4096;
        let start = buffer.as_ptr() as usize;
        let end = start + buffer.capacity() * std::mem::size_of::<f32>();
        let aligned_start = start.next_multiple_of(PAGE);
        let aligned_end = end / PAGE * PAGE;
        if aligned_end < aligned_start + HUGE_PAGE {
            return;
        }
        let Some(address) = std::ptr::NonNull::new(aligned_start as *mut std::ffi::c_void) else {
            return;
        };
        // SAFETY: the range lies inside `buffer`'s live allocation, and MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never their contents.
        let advised = unsafe {
            nix::sys::mman::madvise(
                address,
                aligned_end - aligned_start,
                nix::sys::mman::MmapAdvise::MADV_HUGEPAGE,
            )
        };
        if let Err(error) = advised {
            tracing::debug!(%error, "no huge pages for the vector buffer");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}
