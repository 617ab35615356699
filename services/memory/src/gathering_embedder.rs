//! Gathering texts for an embedder that works best on many at once: each single text a
//! store or search brings waits in a bounded queue, and whatever is waiting goes to the
//! embedder in one call (up to its batch size), so that concurrent stores share one forward
//! pass or one HTTP request.

use crate::embedder::{EmbedError, Embedder};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Texts waiting at most; a caller beyond it waits for room.
const QUEUE: usize = 4096;
/// Calls to the embedder in flight at once (a model uses every core in one; a server may
/// take a few).
const CALLS_IN_FLIGHT: usize = 2;

/// Why a text got no vector: the embedder's words, and whether it refused for good.
#[derive(Debug, Clone)]
struct Failed {
    message: String,
    refused: bool,
}

impl From<&EmbedError> for Failed {
    fn from(error: &EmbedError) -> Self {
        Self {
            message: error.to_string(),
            refused: !matches!(error, EmbedError::Backend(_)),
        }
    }
}

impl From<Failed> for EmbedError {
    fn from(failed: Failed) -> Self {
        if failed.refused {
            EmbedError::Refused(failed.message)
        } else {
            EmbedError::Backend(failed.message)
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<f32>, Failed>>;

/// Wraps an embedder whose [`Embedder::gathers_texts`] says it gains from batches.
pub(crate) struct GatheringEmbedder {
    inner: Arc<dyn Embedder>,
    queue: mpsc::Sender<(String, Reply)>,
}

impl GatheringEmbedder {
    /// Starts gathering for `inner`, `batch` texts a call at most (on the current runtime;
    /// the task ends when the embedder is dropped).
    pub(crate) fn start(inner: Arc<dyn Embedder>, batch: usize) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(gather(inner.clone(), receiver, batch.max(1)));
        Self { inner, queue }
    }
}

/// Takes what is waiting, up to `batch`, and embeds it in one call.
async fn gather(
    inner: Arc<dyn Embedder>,
    mut receiver: mpsc::Receiver<(String, Reply)>,
    batch: usize,
) {
    let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    let mut waiting = Vec::with_capacity(batch);
    while receiver.recv_many(&mut waiting, batch).await > 0 {
        let Ok(permit) = calls.clone().acquire_owned().await else {
            break;
        };
        let taken = std::mem::replace(&mut waiting, Vec::with_capacity(batch));
        let inner = inner.clone();
        tokio::spawn(async move {
            let (texts, replies): (Vec<String>, Vec<Reply>) = taken.into_iter().unzip();
            match inner.embed(&texts).await {
                Ok(vectors) if vectors.len() == replies.len() => {
                    for (reply, vector) in replies.into_iter().zip(vectors) {
                        let _ = reply.send(Ok(vector));
                    }
                }
                Ok(vectors) => {
                    let failed = Failed {
                        message: format!(
                            "embedder {} returned {} vectors for {} texts",
                            inner.id(),
                            vectors.len(),
                            replies.len()
                        ),
                        refused: true,
                    };
                    for reply in replies {
                        let _ = reply.send(Err(failed.clone()));
                    }
                }
                // One text the embedder refuses must not fail the others gathered with
                // it: each is tried alone.
                Err(_) if texts.len() > 1 => {
                    for (text, reply) in texts.iter().zip(replies) {
                        let alone = inner.embed(std::slice::from_ref(text)).await;
                        let answer = match alone {
                            Ok(mut vectors) if vectors.len() == 1 => Ok(vectors.remove(0)),
                            Ok(vectors) => Err(Failed {
                                message: format!(
                                    "embedder {} returned {} vectors for 1 text",
                                    inner.id(),
                                    vectors.len()
                                ),
                                refused: true,
                            }),
                            Err(error) => Err(Failed::from(&error)),
                        };
                        let _ = reply.send(answer);
                    }
                }
                Err(error) => {
                    let failed = Failed::from(&error);
                    for reply in replies {
                        let _ = reply.send(Err(failed.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

#[async_trait::async_trait]
impl Embedder for GatheringEmbedder {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn default_min_similarity(&self) -> f32 {
        self.inner.default_min_similarity()
    }

    fn default_duplicate_threshold(&self) -> f32 {
        self.inner.default_duplicate_threshold()
    }

    fn embeds_text(&self) -> bool {
        self.inner.embeds_text()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // A batch already (an import page, a re-embedding): straight to the embedder.
        let [text] = texts else {
            return self.inner.embed(texts).await;
        };
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((text.clone(), reply))
            .await
            .map_err(|_| EmbedError::Backend("the embedder has stopped".into()))?;
        let vector = answer
            .await
            .map_err(|_| EmbedError::Backend("the embedder has stopped".into()))?
            .map_err(EmbedError::from)?;
        Ok(vec![vector])
    }
}
