//! Dot products of f32 vectors, with AVX2 + FMA where the CPU has them (checked once, at run
//! time, so one binary serves every x86-64 machine) and a portable eight-lane loop elsewhere
//! that the compiler vectorises with the baseline instruction set.

/// Returns the dot product of `left` and `right`, which have one length.
pub(crate) fn dot(left: &[f32], right: &[f32]) -> f32 {
    debug_assert_eq!(left.len(), right.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            return x86::dot_avx512(left, right);
        }
        if has_avx2_fma() {
            return x86::dot_avx2_fma(left, right);
        }
    }
    dot_portable(left, right)
}

/// Writes the dot product of `query` with each of `rows` (all of its length) to `out`,
/// several rows at a time with their loads interleaved (eight with AVX-512, four otherwise),
/// so that the memory of rows read at random is fetched at once rather than one row after
/// another.
pub(crate) fn dots(query: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    debug_assert_eq!(rows.len(), out.len());
    debug_assert!(rows.iter().all(|row| row.len() == query.len()));
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            return dots_in_groups(query, rows, out, x86::dots_avx512::<8>);
        }
        if has_avx2_fma() {
            return dots_in_groups(query, rows, out, x86::dots_avx2_fma::<4>);
        }
    }
    dots_in_groups(query, rows, out, |query, group: [&[f32]; 1]| {
        [dot_portable(query, group[0])]
    });
}

/// [`dots`] by groups of `N` rows, each measured by `measure`; the last group is filled up
/// with its last row repeated (in the cache by then: the loads of the others still overlap).
fn dots_in_groups<const N: usize>(
    query: &[f32],
    rows: &[&[f32]],
    out: &mut [f32],
    measure: impl Fn(&[f32], [&[f32]; N]) -> [f32; N],
) {
    for (group, out) in rows.chunks(N).zip(out.chunks_mut(N)) {
        let last = group[group.len() - 1];
        let group = std::array::from_fn(|at| group.get(at).copied().unwrap_or(last));
        let products = measure(query, group);
        out.copy_from_slice(&products[..out.len()]);
    }
}

/// Asks the CPU to fetch every cache line of `row` into its caches (a hint: no effect on
/// results; nothing on other architectures).
pub(crate) fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(row);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Asks the CPU to fetch the `bytes` bytes from `start` into its caches, a 64-byte line at
/// a time (a hint: it reads nothing, so any address will do; nothing on other
/// architectures).
pub(crate) fn prefetch_bytes(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch_bytes(start, bytes);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Returns the dot product of two int8 vectors of one length, exactly (in i32).
pub(crate) fn dot_i8(left: &[i8], right: &[i8]) -> i32 {
    debug_assert_eq!(left.len(), right.len());
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            return x86::dot_i8_avx2(left, right);
        }
    }
    dot_i8_portable(left, right)
}

/// The plain loop (the compiler vectorises it with the baseline instruction set).
fn dot_i8_portable(left: &[i8], right: &[i8]) -> i32 {
    left.iter()
        .zip(right)
        .map(|(a, b)| i32::from(*a) * i32::from(*b))
        .sum()
}

/// Whether this CPU runs AVX2 and FMA instructions (cached by the standard library).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs AVX-512 (foundation) instructions (cached by the standard library).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Eight independent sums, so that the compiler can keep them in vector registers.
fn dot_portable(left: &[f32], right: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0_f32; LANES];
    let mut left_chunks = left.chunks_exact(LANES);
    let mut right_chunks = right.chunks_exact(LANES);
    for (a, b) in left_chunks.by_ref().zip(right_chunks.by_ref()) {
        for lane in 0..LANES {
            sums[lane] += a[lane] * b[lane];
        }
    }
    let tail: f32 = left_chunks
        .remainder()
        .iter()
        .zip(right_chunks.remainder())
        .map(|(a, b)| a * b)
        .sum();
    sums.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m512, __mmask16, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_maskz_loadu_ps, _mm512_reduce_add_ps, _mm512_setzero_ps, _mm_add_ps, _mm_add_ss,
        _mm_cvtss_f32, _mm_movehl_ps, _mm_prefetch, _mm_shuffle_ps, _MM_HINT_T0,
    };

    /// The AVX-512 dot product; call only after [`super::has_avx512`] said yes.
    pub(super) fn dot_avx512(left: &[f32], right: &[f32]) -> f32 {
        // SAFETY: the caller checked at run time that the CPU has AVX-512F.
        unsafe { dot_512(left, right) }
    }

    /// Four 16-lane accumulators (64 values a step), unaligned loads, the tail masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn dot_512(left: &[f32], right: &[f32]) -> f32 {
        let length = left.len().min(right.len());
        let (a, b) = (left.as_ptr(), right.as_ptr());
        let mut sums: [__m512; 4] = [_mm512_setzero_ps(); 4];
        let mut offset = 0;
        while offset + 64 <= length {
            for (lane, sum) in sums.iter_mut().enumerate() {
                let at = offset + lane * 16;
                // SAFETY: `at + 16 <= length`, so both loads stay inside the slices.
                let (x, y) = unsafe { (_mm512_loadu_ps(a.add(at)), _mm512_loadu_ps(b.add(at))) };
                *sum = _mm512_fmadd_ps(x, y, *sum);
            }
            offset += 64;
        }
        while offset < length {
            let mask = tail_mask(length - offset);
            // SAFETY: the mask loads only the lanes before `length`.
            let (x, y) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, a.add(offset)),
                    _mm512_maskz_loadu_ps(mask, b.add(offset)),
                )
            };
            sums[0] = _mm512_fmadd_ps(x, y, sums[0]);
            offset += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(sums[0], sums[1]),
            _mm512_add_ps(sums[2], sums[3]),
        ))
    }

    /// The lanes of a 16-lane step that lie before the end, `left` values away.
    fn tail_mask(left: usize) -> __mmask16 {
        if left >= 16 {
            u16::MAX
        } else {
            (1_u16 << left) - 1
        }
    }

    /// `N` AVX-512 dot products with one query; call only after [`super::has_avx512`] said
    /// yes.
    pub(super) fn dots_avx512<const N: usize>(query: &[f32], rows: [&[f32]; N]) -> [f32; N] {
        // SAFETY: the caller checked at run time that the CPU has AVX-512F.
        unsafe { dots_512(query, rows) }
    }

    /// One accumulator per row; each step loads 16 query values once and 16 of each row.
    #[target_feature(enable = "avx512f")]
    unsafe fn dots_512<const N: usize>(query: &[f32], rows: [&[f32]; N]) -> [f32; N] {
        let length = rows
            .iter()
            .fold(query.len(), |length, row| length.min(row.len()));
        let q = query.as_ptr();
        let r = rows.map(<[f32]>::as_ptr);
        let mut sums: [__m512; N] = [_mm512_setzero_ps(); N];
        let mut offset = 0;
        while offset < length {
            let mask = tail_mask(length - offset);
            // SAFETY: the mask loads only the lanes before `length`, inside every slice.
            let x = unsafe { _mm512_maskz_loadu_ps(mask, q.add(offset)) };
            for (sum, row) in sums.iter_mut().zip(r) {
                // SAFETY: as above.
                let y = unsafe { _mm512_maskz_loadu_ps(mask, row.add(offset)) };
                *sum = _mm512_fmadd_ps(x, y, *sum);
            }
            offset += 16;
        }
        sums.map(|sum| _mm512_reduce_add_ps(sum))
    }

    /// `N` AVX2 + FMA dot products with one query; call only after [`super::has_avx2_fma`]
    /// said yes.
    pub(super) fn dots_avx2_fma<const N: usize>(query: &[f32], rows: [&[f32]; N]) -> [f32; N] {
        // SAFETY: the caller checked at run time that the CPU has AVX2 and FMA.
        unsafe { dots_avx2(query, rows) }
    }

    /// One accumulator per row, eight values a step, then the tail in scalars.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_avx2<const N: usize>(query: &[f32], rows: [&[f32]; N]) -> [f32; N] {
        let length = rows
            .iter()
            .fold(query.len(), |length, row| length.min(row.len()));
        let q = query.as_ptr();
        let r = rows.map(<[f32]>::as_ptr);
        let mut sums: [__m256; N] = [_mm256_setzero_ps(); N];
        let mut offset = 0;
        while offset + 8 <= length {
            // SAFETY: `offset + 8 <= length`, inside every slice.
            let x = unsafe { _mm256_loadu_ps(q.add(offset)) };
            for (sum, row) in sums.iter_mut().zip(r) {
                // SAFETY: as above.
                let y = unsafe { _mm256_loadu_ps(row.add(offset)) };
                *sum = _mm256_fmadd_ps(x, y, *sum);
            }
            offset += 8;
        }
        let zero = _mm256_setzero_ps();
        let mut totals = [0.0_f32; N];
        for ((total, sum), row) in totals.iter_mut().zip(sums).zip(rows) {
            let tail: f32 = query[offset..length]
                .iter()
                .zip(&row[offset..length])
                .map(|(x, y)| x * y)
                .sum();
            *total = sum_lanes([sum, zero, zero, zero]) + tail;
        }
        totals
    }

    /// The AVX2 + FMA dot product; call only after [`super::has_avx2_fma`] said yes.
    pub(super) fn dot_avx2_fma(left: &[f32], right: &[f32]) -> f32 {
        // SAFETY: the caller checked at run time that the CPU has AVX2 and FMA.
        unsafe { dot(left, right) }
    }

    /// Four 8-lane accumulators (32 values a step), unaligned loads, then the tail in scalars.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(left: &[f32], right: &[f32]) -> f32 {
        let length = left.len().min(right.len());
        let (a, b) = (left.as_ptr(), right.as_ptr());
        let mut sums: [__m256; 4] = [_mm256_setzero_ps(); 4];
        let mut offset = 0;
        while offset + 32 <= length {
            for (lane, sum) in sums.iter_mut().enumerate() {
                let at = offset + lane * 8;
                // SAFETY: `at + 8 <= length`, so both loads stay inside the slices.
                let (x, y) = unsafe { (_mm256_loadu_ps(a.add(at)), _mm256_loadu_ps(b.add(at))) };
                *sum = _mm256_fmadd_ps(x, y, *sum);
            }
            offset += 32;
        }
        while offset + 8 <= length {
            // SAFETY: `offset + 8 <= length`.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.add(offset)),
                    _mm256_loadu_ps(b.add(offset)),
                )
            };
            sums[0] = _mm256_fmadd_ps(x, y, sums[0]);
            offset += 8;
        }
        let total = sum_lanes(sums);
        let tail: f32 = left[offset..length]
            .iter()
            .zip(&right[offset..length])
            .map(|(x, y)| x * y)
            .sum();
        total + tail
    }

    /// Prefetches each 64-byte line of `row` (SSE, part of x86-64's baseline).
    pub(super) fn prefetch(row: &[f32]) {
        for line in row.chunks(16) {
            // SAFETY: a prefetch is a hint, never a load; the address is inside `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }

    /// Prefetches the 64-byte lines from `start` to `start + bytes` (SSE, part of x86-64's
    /// baseline).
    pub(super) fn prefetch_bytes(start: *const u8, bytes: usize) {
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch is a hint, never a load, and faults on no address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast()) };
        }
    }

    /// The AVX2 int8 dot product; call only after [`super::has_avx2_fma`] said yes.
    pub(super) fn dot_i8_avx2(left: &[i8], right: &[i8]) -> i32 {
        // SAFETY: the caller checked at run time that the CPU has AVX2.
        unsafe { dot_i8(left, right) }
    }

    /// 32 bytes a step: each half widened to 16 i16 lanes, multiplied and summed in pairs
    /// into i32 lanes (no overflow: |a*b| <= 16129, two per lane, 2^31 / 32258 steps).
    #[target_feature(enable = "avx2")]
    unsafe fn dot_i8(left: &[i8], right: &[i8]) -> i32 {
        use std::arch::x86_64::{
            __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepi8_epi16,
            _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_setzero_si256,
            _mm256_storeu_si256,
        };
        let length = left.len().min(right.len());
        let (a, b) = (left.as_ptr(), right.as_ptr());
        let mut sum = _mm256_setzero_si256();
        let mut offset = 0;
        while offset + 32 <= length {
            // SAFETY: `offset + 32 <= length`, so both loads stay inside the slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_si256(a.add(offset).cast::<__m256i>()),
                    _mm256_loadu_si256(b.add(offset).cast::<__m256i>()),
                )
            };
            let x_low = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x));
            let y_low = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(y));
            let x_high = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1));
            let y_high = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(y, 1));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(x_low, y_low));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(x_high, y_high));
            offset += 32;
        }
        let mut lanes = [0_i32; 8];
        // SAFETY: `lanes` is 32 bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), sum) };
        let tail: i32 = left[offset..length]
            .iter()
            .zip(&right[offset..length])
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        lanes.iter().sum::<i32>() + tail
    }

    /// Adds the four accumulators and then the eight lanes of the result.
    #[target_feature(enable = "avx2,fma")]
    fn sum_lanes(sums: [__m256; 4]) -> f32 {
        use std::arch::x86_64::_mm256_add_ps;
        let all = _mm256_add_ps(
            _mm256_add_ps(sums[0], sums[1]),
            _mm256_add_ps(sums[2], sums[3]),
        );
        let low = _mm256_castps256_ps128(all);
        let high = _mm256_extractf128_ps(all, 1);
        let four = _mm_add_ps(low, high);
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        let one = _mm_add_ss(two, _mm_shuffle_ps(two, two, 0b01));
        _mm_cvtss_f32(one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_int8_paths_agree_exactly_at_every_length() {
        for length in 0..130 {
            let left: Vec<i8> = (0..length).map(|i| (i * 37 % 255 - 127) as i8).collect();
            let right: Vec<i8> = (0..length).map(|i| (i * 91 % 255 - 127) as i8).collect();
            let expected: i32 = left
                .iter()
                .zip(&right)
                .map(|(a, b)| i32::from(*a) * i32::from(*b))
                .sum();
            assert_eq!(dot_i8(&left, &right), expected, "length {length}");
            assert_eq!(dot_i8_portable(&left, &right), expected);
        }
        let extremes = vec![-128_i8; 4096];
        assert_eq!(dot_i8(&extremes, &extremes), 4096 * 128 * 128);
    }

    fn reference(left: &[f32], right: &[f32]) -> f64 {
        left.iter()
            .zip(right)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    #[test]
    fn every_path_agrees_with_a_double_precision_sum_at_every_length() {
        for length in 0..100 {
            let left: Vec<f32> = (0..length)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let right: Vec<f32> = (0..length)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let expected = reference(&left, &right);
            let mut paths = vec![
                ("dispatched", dot(&left, &right)),
                ("portable", dot_portable(&left, &right)),
            ];
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2_fma() {
                    paths.push(("avx2", x86::dot_avx2_fma(&left, &right)));
                }
                if has_avx512() {
                    paths.push(("avx512", x86::dot_avx512(&left, &right)));
                }
            }
            for (name, got) in paths {
                assert!(
                    (f64::from(got) - expected).abs() < 1e-3,
                    "{name} at length {length}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn batches_of_rows_agree_with_one_dot_at_a_time_on_every_path() {
        for length in [0, 1, 7, 8, 15, 16, 17, 33, 100, 384] {
            let query: Vec<f32> = (0..length)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let rows: Vec<Vec<f32>> = (0..9)
                .map(|r| {
                    (0..length)
                        .map(|i| (((i + r) * 5 % 11) as f32 - 5.0) / 3.0)
                        .collect()
                })
                .collect();
            for count in 0..=rows.len() {
                let batch: Vec<&[f32]> = rows[..count].iter().map(Vec::as_slice).collect();
                let mut out = vec![f32::NAN; count];
                dots(&query, &batch, &mut out);
                for (row, got) in batch.iter().zip(&out) {
                    let expected = reference(&query, row);
                    assert!(
                        (f64::from(*got) - expected).abs() < 1e-3,
                        "batch of {count} at length {length}: {got} vs {expected}"
                    );
                }
            }
            if rows.len() >= 4 && length > 0 {
                let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
                let expected = four.map(|row| reference(&query, row));
                let mut paths = vec![("portable", four.map(|row| dot_portable(&query, row)))];
                #[cfg(target_arch = "x86_64")]
                {
                    if has_avx2_fma() {
                        paths.push(("avx2", x86::dots_avx2_fma(&query, four)));
                    }
                    if has_avx512() {
                        paths.push(("avx512", x86::dots_avx512(&query, four)));
                    }
                }
                for (name, got) in paths {
                    for (got, expected) in got.iter().zip(expected) {
                        assert!(
                            (f64::from(*got) - expected).abs() < 1e-3,
                            "{name} at length {length}: {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }
}
