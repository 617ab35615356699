//! Embedders behind HTTP: an Ollama server (`POST /api/embed`) or any OpenAI-compatible
//! one (`POST /v1/embeddings`). Texts go in batches; each request has a timeout, and a
//! failure worth retrying (no connection, a timeout, 429, 5xx) is retried a bounded number
//! of times with backoff; anything else fails at once with what the server said. Answers
//! are read up to a size bound.

use crate::embedder::{EmbedError, Embedder};
use serde::Deserialize;
use std::time::Duration;

/// Bytes of one answer at most (a batch of 64 vectors of 4,096 floats in JSON is ~5 MB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Pause after the first failed attempt; doubled after each further one.
const BACKOFF: Duration = Duration::from_millis(200);
/// The longest vector taken from a server (as for one given on the command line).
const MAX_DIMENSION: usize = 65_536;
/// What the dimension probe embeds.
const PROBE: &str = "dimension probe";

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpApi {
    /// Ollama's `POST /api/embed`.
    Ollama,
    /// OpenAI's `POST /v1/embeddings`, which many servers also speak.
    OpenAi,
}

impl HttpApi {
    fn name(self) -> &'static str {
        match self {
            HttpApi::Ollama => "ollama",
            HttpApi::OpenAi => "openai",
        }
    }
}

/// Where the embedder is and how it is used.
#[derive(Clone)]
pub struct HttpEmbedderConfig {
    /// The API.
    pub api: HttpApi,
    /// The server, e.g. `http://127.0.0.1:11434` or `https://api.openai.com/v1`.
    pub base_url: String,
    /// The model the server embeds with.
    pub model: String,
    /// Sent as `Authorization: Bearer` when given.
    pub api_key: Option<String>,
    /// The model's dimension; asked of the server (one probe) when `None`.
    pub dimension: Option<usize>,
    /// How long one request may take.
    pub timeout: Duration,
    /// Attempts per batch at most.
    pub attempts: u32,
    /// Texts per request at most.
    pub batch: usize,
}

/// Everything but the key.
impl std::fmt::Debug for HttpEmbedderConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HttpEmbedderConfig")
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("dimension", &self.dimension)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("batch", &self.batch)
            .finish()
    }
}

impl HttpEmbedderConfig {
    /// Defaults for `api` and `model` at `base_url`: 30 s a request, 3 attempts, 64 texts a
    /// request.
    pub fn new(api: HttpApi, base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            api,
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dimension: None,
            timeout: Duration::from_secs(30),
            attempts: 3,
            batch: 64,
        }
    }
}

/// An embedder behind HTTP; its id is `API:MODEL` (`ollama:nomic-embed-text`).
#[derive(Debug, Clone)]
pub struct HttpEmbedder {
    config: HttpEmbedderConfig,
    client: reqwest::Client,
    endpoint: String,
    /// The endpoint as logs and errors show it: credentials in it hidden.
    shown: String,
    id: String,
    dimension: usize,
}

impl HttpEmbedder {
    /// An embedder for `config`, asking the server for the model's dimension unless the
    /// config gives it.
    pub async fn connect(config: HttpEmbedderConfig) -> Result<Self, EmbedError> {
        if config.model.trim().is_empty() {
            return Err(EmbedError::Backend(
                "the embedding model's name is empty".into(),
            ));
        }
        if config.api == HttpApi::OpenAi && config.api_key.is_none() {
            tracing::warn!(url = %crate::database::redacted_url(&config.base_url), "no API key for the openai embedder (MIMO_MEMORY_EMBEDDER_API_KEY, OPENAI_API_KEY): fine for a local server, refused by OpenAI's");
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|error| EmbedError::Backend(format!("cannot make an HTTP client: {error}")))?;
        let base = config.base_url.trim_end_matches('/');
        let endpoint = match config.api {
            HttpApi::Ollama => format!("{base}/api/embed"),
            HttpApi::OpenAi if base.ends_with("/v1") => format!("{base}/embeddings"),
            HttpApi::OpenAi => format!("{base}/v1/embeddings"),
        };
        let mut embedder = Self {
            id: format!("{}:{}", config.api.name(), config.model),
            dimension: config.dimension.unwrap_or(0),
            config,
            client,
            shown: crate::database::redacted_url(&endpoint),
            endpoint,
        };
        if embedder.dimension == 0 {
            let probe = embedder.request(&[PROBE.to_string()]).await?;
            embedder.dimension = probe.first().map_or(0, Vec::len);
            if embedder.dimension > MAX_DIMENSION {
                return Err(EmbedError::Backend(format!(
                    "{} answered the dimension probe with {} values; at most {MAX_DIMENSION} are taken",
                    embedder.shown, embedder.dimension
                )));
            }
            if embedder.dimension == 0 {
                return Err(EmbedError::Backend(format!(
                    "{} answered the dimension probe with an empty vector",
                    embedder.shown
                )));
            }
            tracing::info!(embedder = %embedder.id, endpoint = %embedder.shown, dimension = embedder.dimension, "embedder reached");
        }
        Ok(embedder)
    }

    /// One batch, retried while failures are worth retrying.
    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let attempts = self.config.attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.attempt(texts).await {
                Ok(vectors) => return Ok(vectors),
                Err(Failure::Retryable(reason)) if attempt < attempts => {
                    tracing::warn!(embedder = %self.id, attempt, %reason, "embedding request failed; retrying");
                    tokio::time::sleep(BACKOFF * 2_u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                Err(Failure::Retryable(reason)) => {
                    return Err(EmbedError::Backend(format!(
                        "{} failed {attempt} times: {reason}",
                        self.shown
                    )))
                }
                Err(Failure::Final(reason)) => {
                    return Err(EmbedError::Refused(format!("{}: {reason}", self.shown)))
                }
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        let body = serde_json::json!({ "model": self.config.model, "input": texts });
        let mut request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                Failure::Retryable(format!("no answer within {:?}", self.config.timeout))
            } else {
                Failure::Retryable(format!(
                    "cannot reach it ({}); is the {} server running there?",
                    causes(&error),
                    self.config.api.name()
                ))
            }
        })?;
        let status = response.status();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(Failure::Final(format!(
                            "its answer is over {MAX_ANSWER_BYTES} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) if error.is_timeout() => {
                    return Err(Failure::Retryable(format!(
                        "no full answer within {:?}",
                        self.config.timeout
                    )))
                }
                Err(error) => {
                    return Err(Failure::Retryable(format!("its answer broke off: {error}")))
                }
            }
        }
        if !status.is_success() {
            let said = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            let mut reason = format!("HTTP {status}: {}", said.trim());
            if status == reqwest::StatusCode::UNAUTHORIZED && self.config.api_key.is_none() {
                reason.push_str(
                    " (no API key was sent: set MIMO_MEMORY_EMBEDDER_API_KEY, or OPENAI_API_KEY)",
                );
            }
            return Err(
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Failure::Retryable(reason)
                } else {
                    Failure::Final(reason)
                },
            );
        }
        let vectors = match self.config.api {
            HttpApi::Ollama => {
                serde_json::from_slice::<OllamaAnswer>(&bytes).map(|answer| answer.embeddings)
            }
            HttpApi::OpenAi => serde_json::from_slice::<OpenAiAnswer>(&bytes).map(|answer| {
                let mut data = answer.data;
                data.sort_by_key(|item| item.index);
                data.into_iter().map(|item| item.embedding).collect()
            }),
        }
        .map_err(|error| Failure::Final(format!("its answer is not the API's JSON: {error}")))?;
        if vectors.len() != texts.len() {
            return Err(Failure::Final(format!(
                "it returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        Ok(vectors)
    }
}

/// `error` and its sources, innermost last ("error sending request: connection refused").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// A failed attempt.
enum Failure {
    /// Another attempt may succeed.
    Retryable(String),
    /// Another attempt would fail the same way.
    Final(String),
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiVector>,
}

#[derive(Deserialize)]
struct OpenAiVector {
    index: usize,
    embedding: Vec<f32>,
}

#[async_trait::async_trait]
impl Embedder for HttpEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn gathers_texts(&self) -> Option<usize> {
        Some(self.config.batch.max(1))
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.batch.max(1)) {
            vectors.extend(self.request(batch).await?);
        }
        Ok(vectors)
    }
}
