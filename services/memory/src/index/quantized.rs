//! The int8 copy of the index's vectors: each vector scaled so that its largest component is
//! 127 and rounded, with its scale kept, so that a scan reads a quarter of the bytes. Its
//! similarities are estimates; the index re-ranks the best of them by their exact f32 ones.

use super::simd::dot_i8;

/// Codes and scales, slot for slot with the index's f32 buffer.
#[derive(Debug, Default)]
pub(crate) struct Quantized {
    dimension: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl Quantized {
    /// An empty copy for `dimension`-long vectors.
    pub(crate) fn new(dimension: usize) -> Self {
        Self {
            dimension,
            codes: Vec::new(),
            scales: Vec::new(),
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.codes.capacity() + self.scales.capacity() * 4
    }

    /// Makes room for `additional` more slots, exactly.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.codes.reserve_exact(additional * self.dimension);
        self.scales.reserve_exact(additional);
    }

    /// Sets `slot`'s codes from `vector` (adding the slot when it is the next one).
    pub(crate) fn put(&mut self, slot: usize, vector: &[f32]) {
        if slot == self.scales.len() {
            self.scales.push(0.0);
            self.codes.resize(self.codes.len() + self.dimension, 0);
        }
        let start = slot * self.dimension;
        self.scales[slot] = quantize(vector, &mut self.codes[start..start + self.dimension]);
    }

    /// The estimated dot product of `slot` with a query quantized to `query` at `scale`.
    pub(crate) fn estimate(&self, slot: usize, query: &[i8], scale: f32) -> f32 {
        let start = slot * self.dimension;
        dot_i8(query, &self.codes[start..start + self.dimension]) as f32 * scale * self.scales[slot]
    }
}

/// Writes `vector`'s codes to `codes`; returns the scale that turns a code back into a value.
pub(crate) fn quantize(vector: &[f32], codes: &mut [i8]) -> f32 {
    let largest = vector.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
    if largest == 0.0 {
        codes.iter_mut().for_each(|code| *code = 0);
        return 0.0;
    }
    let scale = largest / 127.0;
    for (code, value) in codes.iter_mut().zip(vector) {
        *code = (value / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}
