//! The shared test data: 50 sentences and paraphrased queries that must find them.

use std::path::PathBuf;

fn data_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../integration-tests/data")
        .join(name)
}

/// The lines of `integration-tests/data/sentences.txt`.
pub fn sentences() -> Vec<String> {
    let text = std::fs::read_to_string(data_file("sentences.txt")).expect("sentences.txt");
    let sentences: Vec<String> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(sentences.len(), 50, "sentences.txt holds 50 sentences");
    sentences
}

/// The (query, 0-based sentence index) pairs of `integration-tests/data/paraphrases.tsv`.
pub fn paraphrases() -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(data_file("paraphrases.tsv")).expect("paraphrases.tsv");
    let pairs: Vec<(String, usize)> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (query, line_number) = line.split_once('\t').expect("query<TAB>line number");
            let line_number: usize = line_number.trim().parse().expect("a 1-based line number");
            (query.to_string(), line_number - 1)
        })
        .collect();
    assert!(pairs.len() >= 10, "at least 10 paraphrases");
    pairs
}

#[test]
fn no_paraphrase_is_a_substring_of_its_sentence() {
    let sentences = sentences();
    for (query, index) in paraphrases() {
        let sentence = sentences[index].to_lowercase();
        assert!(
            !sentence.contains(&query.to_lowercase()),
            "{query:?} is part of {sentence:?}"
        );
    }
}
