//! The Ollama and OpenAI-compatible embedders against a real HTTP server on a loopback port
//! that speaks both APIs and embeds with all-MiniLM-L6-v2 (Ollama and OpenAI themselves
//! cannot run on this machine: no model downloads). The server can be told to fail, stall or
//! answer wrongly, to try retries, timeouts and bad answers.

use crate::{search_request, store_request, TestMemory};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use mimo_memory::{Embedder, HttpApi, HttpEmbedder, HttpEmbedderConfig, MiniLmEmbedder};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server behaves and what it saw.
#[derive(Default)]
struct Behaviour {
    /// Requests answered 503 before the next real answer.
    fail_next: AtomicUsize,
    /// Milliseconds each request waits before answering.
    stall_ms: AtomicUsize,
    /// Answers one vector short.
    short: std::sync::atomic::AtomicBool,
    /// Requests received, and the texts in each.
    batches: Mutex<Vec<usize>>,
    /// A request holding a text with this word is refused with 400.
    refuse_word: Mutex<Option<String>>,
}

struct Server {
    url: String,
    behaviour: Arc<Behaviour>,
}

#[derive(Clone)]
struct Shared {
    model: Arc<MiniLmEmbedder>,
    behaviour: Arc<Behaviour>,
}

const KEY: &str = "sk-test-key";

async fn serve() -> Server {
    let folder = std::env::var_os("MIMO_TEST_MINILM_DIR")
        .expect("MIMO_TEST_MINILM_DIR is not set: run scripts/test.sh");
    let model = Arc::new(MiniLmEmbedder::load(std::path::Path::new(&folder)).unwrap());
    let behaviour = Arc::new(Behaviour::default());
    let shared = Shared {
        model,
        behaviour: behaviour.clone(),
    };
    let app = Router::new()
        .route("/api/embed", post(ollama))
        .route("/v1/embeddings", post(openai))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { url, behaviour }
}

/// The texts of a request, after the behaviour's failures and stalls.
async fn texts_of(shared: &Shared, body: &Value) -> Result<Vec<String>, StatusCode> {
    let behaviour = &shared.behaviour;
    let texts: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap();
    behaviour.batches.lock().unwrap().push(texts.len());
    tokio::time::sleep(Duration::from_millis(
        behaviour.stall_ms.load(Ordering::SeqCst) as u64,
    ))
    .await;
    if behaviour
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    if let Some(word) = behaviour.refuse_word.lock().unwrap().as_deref() {
        if texts.iter().any(|text| text.contains(word)) {
            return Err(StatusCode::BAD_REQUEST);
        }
    }
    Ok(texts)
}

async fn vectors_of(shared: &Shared, texts: &[String]) -> Vec<Vec<f32>> {
    let mut vectors = shared.model.embed(texts).await.unwrap();
    if shared.behaviour.short.load(Ordering::SeqCst) {
        vectors.pop();
    }
    vectors
}

async fn ollama(
    State(shared): State<Shared>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    match texts_of(&shared, &body).await {
        Ok(texts) => {
            let vectors = vectors_of(&shared, &texts).await;
            (
                StatusCode::OK,
                Json(json!({ "model": body["model"], "embeddings": vectors })),
            )
        }
        Err(status) => (status, Json(json!({ "error": "overloaded" }))),
    }
}

async fn openai(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}"))
    {
        shared.behaviour.batches.lock().unwrap().push(0);
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": { "message": "Incorrect API key provided" } })),
        );
    }
    match texts_of(&shared, &body).await {
        Ok(texts) => {
            let vectors = vectors_of(&shared, &texts).await;
            // Listed last to first: the client must order them by `index`.
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .rev()
                .map(|(index, embedding)| json!({ "object": "embedding", "index": index, "embedding": embedding }))
                .collect();
            (
                StatusCode::OK,
                Json(json!({ "object": "list", "data": data })),
            )
        }
        Err(status) => (
            status,
            Json(json!({ "error": { "message": "overloaded" } })),
        ),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_on_an_ollama_server_finds_texts_by_meaning() {
    let server = serve().await;
    let embedder = HttpEmbedder::connect(HttpEmbedderConfig::new(
        HttpApi::Ollama,
        &server.url,
        "all-minilm",
    ))
    .await
    .unwrap();
    assert_eq!(
        (embedder.id(), embedder.dimension()),
        ("ollama:all-minilm", 384)
    );
    let memory = TestMemory::open_with(|config| config.with_embedder(Arc::new(embedder)))
        .await
        .unwrap();
    // Concurrent stores: their texts are gathered into shared requests. The server answers
    // slowly, so that the stores still waiting when the first requests go out (two at most
    // are in flight) share the next one, however the machine schedules them.
    server.behaviour.stall_ms.store(300, Ordering::SeqCst);
    let contents = [
        "The cat sat on the mat",
        "Stock markets fell sharply this morning",
        "The train to Berlin leaves at noon",
        "Add two cups of flour to the dough",
    ];
    let stored = futures::future::join_all(
        contents
            .iter()
            .map(|content| memory.store.store(store_request(content))),
    )
    .await;
    server.behaviour.stall_ms.store(0, Ordering::SeqCst);
    let cat = stored[0].as_ref().unwrap().id.clone();
    let hits = memory
        .store
        .search(search_request("a kitten resting on a rug"))
        .await
        .unwrap();
    assert_eq!(hits[0].engram.as_ref().unwrap().id, cat);
    assert_eq!(
        hits[0].engram.as_ref().unwrap().embedder,
        "ollama:all-minilm"
    );
    let requests = server.behaviour.batches.lock().unwrap().clone();
    assert!(
        requests.len() < 1 + contents.len() + 1,
        "the probe, then fewer requests than stores, then the search: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_api_is_batched_ordered_by_index_and_keyed() {
    let server = serve().await;
    let mut config = HttpEmbedderConfig::new(
        HttpApi::OpenAi,
        format!("{}/v1", server.url),
        "text-embedding-3-small",
    );
    config.api_key = Some(KEY.to_string());
    config.batch = 16;
    let embedder = HttpEmbedder::connect(config.clone()).await.unwrap();
    let texts: Vec<String> = (0..40)
        .map(|n| format!("note number {n} about topic {}", n * 31))
        .collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 40);
    let direct = MiniLmEmbedder::load(std::path::Path::new(
        &std::env::var_os("MIMO_TEST_MINILM_DIR").unwrap(),
    ))
    .unwrap()
    .embed(&texts[39..])
    .await
    .unwrap();
    assert!(
        dot(&vectors[39], &direct[0]) > 0.999,
        "the 40th vector is the 40th text's"
    );
    assert_eq!(
        *server.behaviour.batches.lock().unwrap(),
        vec![1, 16, 16, 8],
        "the probe, then batches of at most 16"
    );

    config.api_key = Some("sk-wrong".to_string());
    config.dimension = Some(384);
    let wrong = HttpEmbedder::connect(config).await.unwrap();
    let error = wrong.embed(&texts[..1]).await.unwrap_err().to_string();
    assert!(
        error.contains("401") && error.contains("Incorrect API key"),
        "{error}"
    );
    let requests = server.behaviour.batches.lock().unwrap().len();
    assert_eq!(requests, 5, "a refused key is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloads_are_retried_a_bounded_number_of_times() {
    let server = serve().await;
    let mut config = HttpEmbedderConfig::new(HttpApi::Ollama, &server.url, "all-minilm");
    config.dimension = Some(384);
    config.attempts = 3;
    let embedder = HttpEmbedder::connect(config).await.unwrap();
    let text = vec!["a text to embed".to_string()];

    server.behaviour.fail_next.store(2, Ordering::SeqCst);
    assert_eq!(
        embedder.embed(&text).await.unwrap().len(),
        1,
        "the third attempt succeeds"
    );
    server.behaviour.fail_next.store(5, Ordering::SeqCst);
    let error = embedder.embed(&text).await.unwrap_err().to_string();
    assert!(
        error.contains("failed 3 times") && error.contains("503"),
        "{error}"
    );
    assert_eq!(server.behaviour.batches.lock().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out_and_a_short_answer_is_refused() {
    let server = serve().await;
    let mut config = HttpEmbedderConfig::new(HttpApi::Ollama, &server.url, "all-minilm");
    config.dimension = Some(384);
    config.attempts = 2;
    config.timeout = Duration::from_millis(300);
    let embedder = HttpEmbedder::connect(config).await.unwrap();
    let texts = vec!["one".to_string(), "two".to_string()];

    server.behaviour.stall_ms.store(5_000, Ordering::SeqCst);
    let error = embedder.embed(&texts).await.unwrap_err().to_string();
    assert!(
        error.contains("no answer within 300ms") && error.contains("failed 2 times"),
        "{error}"
    );

    server.behaviour.stall_ms.store(0, Ordering::SeqCst);
    server.behaviour.short.store(true, Ordering::SeqCst);
    let error = embedder.embed(&texts).await.unwrap_err().to_string();
    assert!(error.contains("returned 1 vectors for 2 texts"), "{error}");

    let nowhere = HttpEmbedder::connect(HttpEmbedderConfig {
        attempts: 1,
        ..HttpEmbedderConfig::new(HttpApi::Ollama, "http://127.0.0.1:9", "all-minilm")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(nowhere.contains("cannot reach it"), "{nowhere}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_the_server_refuses_fails_alone_not_the_stores_gathered_with_it() {
    let server = serve().await;
    *server.behaviour.refuse_word.lock().unwrap() = Some("forbidden".into());
    let mut config = HttpEmbedderConfig::new(HttpApi::Ollama, &server.url, "all-minilm");
    config.dimension = Some(384);
    let embedder = HttpEmbedder::connect(config).await.unwrap();
    let memory = TestMemory::open_with(|config| config.with_embedder(Arc::new(embedder)))
        .await
        .unwrap();
    let contents: Vec<String> = (0..12)
        .map(|n| {
            if n == 5 {
                "a forbidden text".to_string()
            } else {
                format!("note {n} on topic {}", n * 13)
            }
        })
        .collect();
    let results = futures::future::join_all(
        contents
            .iter()
            .map(|content| memory.store.store(store_request(content))),
    )
    .await;
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), n != 5, "store {n}: {result:?}");
    }
    let error = results[5].as_ref().unwrap_err().to_string();
    assert!(error.contains("400"), "the server's refusal: {error}");
}
