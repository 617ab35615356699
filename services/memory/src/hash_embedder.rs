//! The built-in embedder: signed feature hashing of word stems and character n-grams, with no
//! model to download and the same output on every machine and every run.

use crate::embedder::{normalize, EmbedError, Embedder};
use crate::text::{is_stop_word, stem, words};

/// Dimension of the built-in embedder's vectors. Hash collisions add noise of about
/// `1/sqrt(dimension)` to every similarity (0.022 here); 1024 dimensions let that noise swap
/// close paraphrase matches in the test set, 2048 keeps it well below their margins.
pub const HASH_DIMENSION: usize = 2048;

/// Id stored with every embedding made by [`HashEmbedder`]; any change to its output needs a
/// new id, or stored vectors and fresh queries stop matching.
pub const HASH_EMBEDDER_ID: &str = "builtin-hash-v1";

/// Default search threshold of this embedder. Its cosines count shared words, so a
/// paraphrase that keeps two or three of eight content words scores 0.13 to 0.42 on the test
/// set (`integration-tests/data`), the best unrelated sentence 0.03 to 0.18, and hash noise
/// is about 0.02: 0.1 keeps nearly every real match and drops texts with nothing in common.
pub const HASH_DEFAULT_MIN_SIMILARITY: f32 = 0.1;

/// Weight of a word's stem feature.
const WORD_WEIGHT: f32 = 1.0;
/// Total L2 weight of one word's character n-grams, shared among them: enough for "sunlight"
/// to meet "sun", not so much that "heart" meets "earth".
const NGRAM_WEIGHT: f32 = 0.8;
/// Lengths of the character n-grams taken from each word (with `<` and `>` boundary marks).
const NGRAM_LENGTHS: [usize; 2] = [3, 4];

/// Embeds texts by hashing word stems and character 3/4-grams into signed buckets (FNV-1a),
/// then L2-normalising; texts sharing words or word parts get similar vectors.
#[derive(Debug, Clone, Default)]
pub struct HashEmbedder;

impl HashEmbedder {
    /// Returns the `builtin-hash-v1` embedder with [`HASH_DIMENSION`] dimensions.
    pub fn new() -> Self {
        Self
    }

    /// Returns the unit vector of `text` (the zero vector when it has no words).
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0; HASH_DIMENSION];
        let all_words: Vec<String> = words(text).collect();
        let content_words: Vec<&String> = all_words
            .iter()
            .filter(|word| !is_stop_word(word))
            .collect();
        // A text made only of stop words is still findable by itself.
        let chosen = if content_words.is_empty() {
            all_words.iter().collect()
        } else {
            content_words
        };
        for word in chosen {
            add_feature(&mut vector, b'w', stem(word).as_bytes(), WORD_WEIGHT);
            let marked: Vec<char> = format!("<{word}>").chars().collect();
            let ngrams: Vec<String> = NGRAM_LENGTHS
                .iter()
                .flat_map(|&length| marked.windows(length).map(|window| window.iter().collect()))
                .collect();
            let weight = NGRAM_WEIGHT / (ngrams.len().max(1) as f32).sqrt();
            for ngram in &ngrams {
                add_feature(&mut vector, b'c', ngram.as_bytes(), weight);
            }
        }
        normalize(&mut vector);
        vector
    }
}

#[async_trait::async_trait]
impl Embedder for HashEmbedder {
    fn id(&self) -> &str {
        HASH_EMBEDDER_ID
    }

    fn dimension(&self) -> usize {
        HASH_DIMENSION
    }

    /// Lexical cosines run high for short texts that share most words ("note 139" and
    /// "note 1394" score 0.95), so only texts with the same words count as duplicates.
    fn default_duplicate_threshold(&self) -> f32 {
        0.98
    }

    fn default_min_similarity(&self) -> f32 {
        HASH_DEFAULT_MIN_SIMILARITY
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|text| self.embed_one(text)).collect())
    }
}

/// Adds `weight` to the bucket of `feature` with a sign taken from the same hash, so that
/// collisions cancel on average instead of piling up.
fn add_feature(vector: &mut [f32], kind: u8, feature: &[u8], weight: f32) {
    let hash = mix(fnv1a(kind, feature));
    let bucket = (hash % vector.len() as u64) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    vector[bucket] += sign * weight;
}

/// 64-bit FNV-1a of `kind` followed by `bytes`: stable across Rust releases and platforms.
fn fnv1a(kind: u8, bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    std::iter::once(&kind)
        .chain(bytes)
        .fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

/// MurmurHash3's 64-bit finaliser: spreads FNV-1a's weak low bits (which alone would pick the
/// bucket) over the whole word.
fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests;
