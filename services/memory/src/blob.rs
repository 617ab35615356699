//! The stored form of an embedding: `dimension` little-endian f32 values, nothing else.

use crate::error::MemoryError;

/// Returns the little-endian bytes of `vector`, 4 per value.
pub fn encode_embedding(vector: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for value in vector {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Returns the vector stored in `blob`, or [`MemoryError::CorruptEmbedding`] unless the blob
/// is exactly `dimension * 4` bytes long.
pub fn decode_embedding(blob: &[u8], dimension: usize) -> Result<Vec<f32>, MemoryError> {
    if dimension.checked_mul(4) != Some(blob.len()) {
        return Err(MemoryError::CorruptEmbedding {
            bytes: blob.len(),
            dimension,
        });
    }
    Ok(blob
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_little_endian_f32() {
        assert_eq!(encode_embedding(&[1.0]), vec![0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(encode_embedding(&[]), Vec::<u8>::new());
    }

    #[test]
    fn decode_returns_what_encode_wrote() {
        let vector = vec![0.5, -0.25, f32::MIN_POSITIVE, 1.0e-7, -3.0];
        let decoded = decode_embedding(&encode_embedding(&vector), vector.len()).unwrap();
        assert_eq!(decoded, vector);
    }

    #[test]
    fn decode_rejects_a_blob_of_the_wrong_length() {
        let blob = encode_embedding(&[1.0, 2.0, 3.0]);
        for (bytes, dimension) in [(&blob[..], 4), (&blob[..11], 3), (&blob[..0], 1)] {
            let error = decode_embedding(bytes, dimension).unwrap_err();
            assert!(
                matches!(error, MemoryError::CorruptEmbedding { bytes: length, dimension: d } if length == bytes.len() && d == dimension),
                "{error}"
            );
        }
    }
}
