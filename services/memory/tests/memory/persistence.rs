//! What survives a restart: rows on disk and the index rebuilt from them, minus corrupt rows.

use crate::data::{paraphrases, sentences};
use crate::{database_path, search_request, store_all, store_request, TestMemory};
use mimo_memory::{Embedder, HashEmbedder, MemoryConfig};
use mimo_proto::v1::SearchRequest;
use std::sync::{Arc, Mutex};

fn answers(hits: &[mimo_proto::v1::SearchHit]) -> Vec<(String, f32)> {
    hits.iter()
        .map(|hit| {
            (
                hit.engram
                    .as_ref()
                    .map(|e| e.id.clone())
                    .unwrap_or_default(),
                hit.similarity,
            )
        })
        .collect()
}

#[tokio::test]
async fn data_survives_reopening() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let stored = store_all(&memory.store, &sentences()).await?;
    let mut before = Vec::new();
    for (query, _) in paraphrases() {
        let request = SearchRequest {
            min_similarity: Some(-1.0),
            ..search_request(&query)
        };
        before.push(answers(&memory.store.search(request).await?));
    }
    memory.store.close().await;
    let reopened = mimo_memory::open(MemoryConfig::new(database_path(&memory.directory))).await?;
    let counts = reopened.counts();
    assert_eq!((counts.engrams, counts.index_vectors), (50, 50));
    for engram in &stored {
        assert_eq!(reopened.get(&engram.id).await?.content, engram.content);
    }
    for ((query, _), expected) in paraphrases().into_iter().zip(before) {
        let request = SearchRequest {
            min_similarity: Some(-1.0),
            ..search_request(&query)
        };
        let ids: Vec<String> = answers(&reopened.search(request).await?)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let expected_ids: Vec<String> = expected.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, expected_ids, "{query}");
    }
    Ok(())
}

#[tokio::test]
async fn corrupt_embedding_is_skipped_at_open_and_never_returned() -> anyhow::Result<()> {
    let memory = TestMemory::open().await?;
    let sound = memory
        .store
        .store(store_request(
            "the lighthouse keeper rings the bell at dawn",
        ))
        .await?;
    let corrupt = memory
        .store
        .store(store_request(
            "the lighthouse keeper rings the bell at dusk",
        ))
        .await?;
    memory.store.close().await;
    let dimension = HashEmbedder::new().dimension();
    let blob_length = dimension * 4;
    {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(database_path(&memory.directory));
        let pool = sqlx::SqlitePool::connect_with(options).await?;
        // Three bytes short of its recorded dimension.
        let blob = mimo_memory::encode_embedding(&vec![0.1_f32; dimension]);
        sqlx::query("UPDATE engrams SET embedding = ? WHERE id = ?")
            .bind(&blob[..blob.len() - 3])
            .bind(&corrupt.id)
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let log = CapturedLog::default();
    let reopened = {
        let _guard = tracing::subscriber::set_default(log.subscriber());
        mimo_memory::open(MemoryConfig::new(database_path(&memory.directory))).await?
    };
    let counts = reopened.counts();
    assert_eq!((counts.engrams, counts.index_vectors), (2, 1));
    let logged = log.text();
    let expected = format!(
        "engram={} error=embedding blob is {} bytes",
        corrupt.id,
        blob_length - 3
    );
    assert!(
        logged.contains("ERROR") && logged.contains(&expected),
        "{logged}"
    );
    let hits = reopened
        .search(SearchRequest {
            query: "the lighthouse keeper rings the bell at dusk".into(),
            min_similarity: Some(-1.0),
            ..Default::default()
        })
        .await?;
    let ids: Vec<&str> = hits
        .iter()
        .filter_map(|hit| hit.engram.as_ref())
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, [sound.id.as_str()]);
    // Its text is still there for Get; only its embedding is unusable.
    assert_eq!(reopened.get(&corrupt.id).await?.content, corrupt.content);
    Ok(())
}

/// Log lines written while its subscriber is the default, as text.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'writer> tracing_subscriber::fmt::MakeWriter<'writer> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'writer self) -> Self::Writer {
        self.clone()
    }
}
