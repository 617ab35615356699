//! Unit tests of the built-in embedder.

use super::*;

fn cosine(left: &[f32], right: &[f32]) -> f32 {
    left.iter().zip(right).map(|(a, b)| a * b).sum()
}

#[test]
fn fnv1a_matches_the_reference_values() {
    // FNV-1a 64 of "a" and "foobar" (the kind byte is the first byte hashed).
    assert_eq!(fnv1a(b'a', b""), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(b'f', b"oobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn embeddings_are_deterministic_and_normalised() {
    let embedder = HashEmbedder::new();
    let text = "Jupiter is the largest planet in the solar system.";
    let first = embedder.embed_one(text);
    assert_eq!(first, HashEmbedder::new().embed_one(text));
    assert_eq!(first.len(), HASH_DIMENSION);
    let norm = cosine(&first, &first).sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

#[test]
fn output_is_pinned_for_the_embedder_id() {
    // Stored vectors are only comparable with fresh ones while this holds; a change here
    // needs a new `HASH_EMBEDDER_ID`. "tomato": one word feature and eleven 3/4-grams.
    let pinned: [(usize, f32); 12] = [
        (320, 0.1884),
        (390, -0.1884),
        (612, 0.7809),
        (761, 0.1884),
        (1112, -0.1884),
        (1125, 0.1884),
        (1287, 0.1884),
        (1311, -0.1884),
        (1413, -0.1884),
        (1525, -0.1884),
        (1867, 0.1884),
        (2042, -0.1884),
    ];
    let vector = HashEmbedder::new().embed_one("tomato");
    let nonzero: Vec<(usize, f32)> = vector
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, value)| *value != 0.0)
        .collect();
    assert_eq!(nonzero.len(), pinned.len(), "{nonzero:?}");
    for ((bucket, value), (pinned_bucket, pinned_value)) in nonzero.into_iter().zip(pinned) {
        assert_eq!(bucket, pinned_bucket);
        assert!((value - pinned_value).abs() < 1e-4, "{bucket}: {value}");
    }
}

#[test]
fn a_text_without_words_embeds_to_zero() {
    let vector = HashEmbedder::new().embed_one(" ... !!! ");
    assert!(vector.iter().all(|&value| value == 0.0));
}

#[test]
fn stop_words_alone_are_still_embedded() {
    let vector = HashEmbedder::new().embed_one("to be or not to be");
    assert!(vector.iter().any(|&value| value != 0.0));
}

#[test]
fn related_texts_are_closer_than_unrelated_ones() {
    let embedder = HashEmbedder::new();
    let sentence = embedder.embed_one("Tomatoes grow best in full sun.");
    let related = embedder.embed_one("tomato plants like sunshine");
    let unrelated = embedder.embed_one("a marathon is a long race");
    assert!(cosine(&sentence, &related) > cosine(&sentence, &unrelated) + 0.1);
}

#[test]
fn inflected_forms_are_near_each_other() {
    let embedder = HashEmbedder::new();
    let similarity = cosine(
        &embedder.embed_one("planets"),
        &embedder.embed_one("planet"),
    );
    assert!(similarity > 0.8, "{similarity}");
}
