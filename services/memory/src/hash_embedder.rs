//! The built-in embedder: signed feature hashing of word stems and character n-grams, with no
//! model to download and the same output on every machine and every run.

use crate::embedder::{normalize, EmbedError, Embedder};
use crate::text::{is_stop_word, stem, words};

/// Dimension of the built-in embedder's vectors.
pub const HASH_DIMENSION: usize = 1024;

/// Weight of a word's stem feature.
const WORD_WEIGHT: f32 = 1.0;
/// Total L2 weight of one word's character n-grams, shared among them.
const NGRAM_WEIGHT: f32 = 0.8;
/// Lengths of the character n-grams taken from each word (with `<` and `>` boundary marks).
const NGRAM_LENGTHS: [usize; 2] = [3, 4];

/// Embeds texts by hashing word stems and character 3/4-grams into signed buckets (FNV-1a),
/// then L2-normalising; texts sharing words or word parts get similar vectors.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimension: usize,
}

impl HashEmbedder {
    /// Returns the `builtin-hash-v1` embedder with [`HASH_DIMENSION`] dimensions.
    pub fn new() -> Self {
        Self {
            dimension: HASH_DIMENSION,
        }
    }

    /// Returns the unit vector of `text` (the zero vector when it has no words).
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0; self.dimension];
        let all_words: Vec<String> = words(text).collect();
        let content_words: Vec<&String> = all_words
            .iter()
            .filter(|word| !is_stop_word(word))
            .collect();
        // A text made only of stop words is still findable by itself.
        let chosen: Vec<&String> = if content_words.is_empty() {
            all_words.iter().collect()
        } else {
            content_words
        };
        for word in chosen {
            self.add_feature(&mut vector, b'w', stem(word).as_bytes(), WORD_WEIGHT);
            let marked: Vec<char> = format!("<{word}>").chars().collect();
            let ngrams: Vec<String> = NGRAM_LENGTHS
                .iter()
                .flat_map(|&length| marked.windows(length).map(|window| window.iter().collect()))
                .collect();
            let weight = NGRAM_WEIGHT / (ngrams.len().max(1) as f32).sqrt();
            for ngram in &ngrams {
                self.add_feature(&mut vector, b'c', ngram.as_bytes(), weight);
            }
        }
        normalize(&mut vector);
        vector
    }

    fn add_feature(&self, vector: &mut [f32], kind: u8, feature: &[u8], weight: f32) {
        let hash = fnv1a(kind, feature);
        let bucket = (hash % self.dimension as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[bucket] += sign * weight;
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Embedder for HashEmbedder {
    fn id(&self) -> &str {
        "builtin-hash-v1"
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|text| self.embed_one(text)).collect())
    }
}

const SALT: &str = "h";
/// 64-bit FNV-1a of `kind` followed by `bytes`: stable across Rust releases and platforms.
fn fnv1a(kind: u8, bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    std::iter::once(&kind)
        .chain(bytes)
        .chain(SALT.as_bytes())
        .fold(OFFSET_BASIS, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(left: &[f32], right: &[f32]) -> f32 {
        left.iter().zip(right).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // FNV-1a 64 of "" and "a" (the kind byte is the first byte hashed).
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
        assert!(cosine(&sentence, &related) > cosine(&sentence, &unrelated) + 0.2);
    }
}
#[cfg(test)]
mod debug_tmp {
    use super::*;
    #[test]
    fn debug_tmp() {
        for dimension in [512, 1024, 2048, 4096, 1 << 20] {
            let e = HashEmbedder { dimension };
            eprintln!("dimension {dimension}");
            let c = |a: &str, b: &str| {
                let x = e.embed_one(a);
                let y = e.embed_one(b);
                x.iter().zip(&y).map(|(p, q)| p * q).sum::<f32>()
            };
            for (a, b) in [
                ("tomato", "tomatoes"),
                (
                    "Tomato vines thrive with lots of sunshine and a thorough soak every few days",
                    "Tomatoes grow best in full sun and need regular, deep watering.",
                ),
                ("tomato vines", "tomatoes grow"),
            ] {
                eprintln!("{a:?} {b:?} {}", c(a, b));
            }
        }
        let e = HashEmbedder::new();
        eprintln!(
            "{:?} {}",
            crate::text::words("Tomato vines thrive")
                .filter(|w| !crate::text::is_stop_word(w))
                .map(|w| crate::text::stem(&w))
                .collect::<Vec<_>>(),
            e.dimension
        );
    }
}
