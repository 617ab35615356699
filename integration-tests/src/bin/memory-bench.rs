//! Benchmark of Mimo's memory: exact top-10 search over 384-d vectors at several sizes, by
//! the index alone and through the store (SQLite fetch and access record included); the old
//! approach (every row loaded and decoded in application code) as the baseline; ingest rates;
//! resident memory per million vectors. It writes the vectors, queries and exact answers to
//! `--dir`, where `scripts/bench/vector_peers.py` runs faiss, hnswlib and sqlite-vec on the
//! same data. One JSON object per line on stdout; progress on stderr.
//!
//! Usage: memory-bench --dir DIR [--sizes 10000,100000,1000000] [--queries 200]

use clap::Parser;
use mimo_integration_tests::bench_stats::{anon_huge_page_bytes, percentile, resident_bytes};
use mimo_memory::{
    ApproximateSettings, ExternalEmbedder, Filter, GraphVectors, IndexQuery, MemoryConfig,
    MemoryStore, RowFacts, Scoring, VectorIndex,
};
use mimo_proto::v1::{Category, SearchRequest, StoreRequest};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Parser)]
struct Args {
    /// Folder for the data files shared with the Python peers.
    #[arg(long)]
    dir: PathBuf,
    /// Index sizes, in vectors.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<usize>,
    /// Vector dimension.
    #[arg(long, default_value_t = 384)]
    dimension: usize,
    /// Queries timed per size.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Queries timed with the old approach (it reads the whole table each time).
    #[arg(long, default_value_t = 10)]
    old_queries: usize,
    /// Texts stored with the built-in embedder for its ingest rate.
    #[arg(long, default_value_t = 50_000)]
    texts: usize,
    /// all-MiniLM-L6-v2's model folder, for its ingest rate beside the built-in embedder's.
    #[arg(long)]
    minilm: Option<PathBuf>,
    /// Texts stored with all-MiniLM-L6-v2 for its ingest rate.
    #[arg(long, default_value_t = 5_000)]
    minilm_texts: usize,
    /// Concurrent stores while ingesting client vectors.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Leave out the HNSW graph (its build takes minutes at a million vectors).
    #[arg(long)]
    skip_approximate: bool,
    /// Leave out the store, the old approach and the ingest rates: the index alone.
    #[arg(long)]
    index_only: bool,
    /// A text file, one passage a line: embed its lines with `--minilm` and report each kind
    /// of graph's recall@10 on those real embeddings (its last `--queries` lines are the
    /// queries), then stop.
    #[arg(long, requires = "minilm")]
    recall_texts: Option<PathBuf>,
    /// What the HNSW graph compares: shared (the exact f32 buffer) or int8 (its own copies).
    #[arg(long, default_value = "shared", value_parser = ["shared", "int8"])]
    graph: String,
    /// Candidates kept while inserting into the HNSW graph (ef_construction); the service's
    /// default when not given.
    #[arg(long)]
    expansion_add: Option<usize>,
}

const TOP: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    if let (Some(texts), Some(folder)) = (&args.recall_texts, &args.minilm) {
        return recall_on_texts(&args, texts, folder).await;
    }
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    progress(format!(
        "generating {largest} + {} vectors of {} dimensions",
        args.queries, args.dimension
    ));
    let base = clustered_vectors(largest, args.dimension, 1);
    let queries = clustered_vectors(args.queries, args.dimension, 2);
    write_f32(&args.dir.join("base.f32"), &base)?;
    write_f32(&args.dir.join("queries.f32"), &queries)?;
    // Ingest by text first, while the page cache and the disk are not yet busy with the
    // million-row files written below (which halved its rate when it ran last).
    if !args.index_only {
        text_ingest("builtin embedder", args.texts, None).await?;
        if let Some(folder) = &args.minilm {
            let model = mimo_memory::MiniLmEmbedder::load(folder)?;
            text_ingest("all-MiniLM-L6-v2", args.minilm_texts, Some(Arc::new(model))).await?;
        }
    }
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    for size in sizes {
        let vectors = &base[..size * args.dimension];
        let truth = index_alone(&args, size, vectors, &queries)?;
        write_truth(&args.dir.join(format!("truth_{size}.u32")), &truth)?;
        if !args.index_only {
            through_the_store(&args, size, vectors, &queries, &truth).await?;
        }
    }
    Ok(())
}

/// Times exact top-10 searches on a bare [`VectorIndex`]; returns the answers (row numbers).
fn index_alone(
    args: &Args,
    size: usize,
    vectors: &[f32],
    queries: &[f32],
) -> anyhow::Result<Vec<Vec<u32>>> {
    progress(format!("index alone: {size} vectors"));
    let before = resident_bytes().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut index = VectorIndex::new(args.dimension);
    index.reserve(size);
    for (row, vector) in vectors.chunks_exact(args.dimension).enumerate() {
        index.insert(facts(row as u128), vector);
    }
    let build = started.elapsed();
    let resident = resident_bytes()
        .map_err(anyhow::Error::msg)?
        .saturating_sub(before);
    let mut truth: Vec<Vec<u32>> = Vec::with_capacity(args.queries);
    let latencies = timed(queries, args.dimension, |query| {
        let hits = index.search(&exact(query));
        truth.push(hits.iter().map(|hit| hit.key as u32).collect());
    });
    emit(
        "mimo-index (exact)",
        size,
        &latencies,
        json!({
            "build_s": build.as_secs_f64(),
            "resident_bytes_per_million": resident as f64 * 1e6 / size as f64,
            "index_bytes_per_million": index.bytes() as f64 * 1e6 / size as f64,
            "threads": rayon_threads(),
        }),
    );
    // The first rounds warmed caches; keep only the answers of the timed rounds.
    let truth = truth.split_off(truth.len() - args.queries);
    int8_scan(args, size, &mut index, queries, &truth);
    if !args.skip_approximate {
        approximate(args, size, &mut index, queries, &truth, before);
    }
    Ok(truth)
}

/// Embeds the lines of `texts` with all-MiniLM-L6-v2 and reports, for each kind of graph at
/// the default settings, recall@10 against the exact answers and the latencies.
async fn recall_on_texts(args: &Args, texts: &Path, folder: &Path) -> anyhow::Result<()> {
    use mimo_memory::Embedder;
    let lines: Vec<String> = std::fs::read_to_string(texts)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(lines.len() > args.queries, "{} lines: too few", lines.len());
    let model = mimo_memory::MiniLmEmbedder::load(folder)?;
    let mut vectors = Vec::with_capacity(lines.len() * model.dimension());
    for (done, batch) in lines.chunks(256).enumerate() {
        for vector in model.embed(batch).await? {
            vectors.extend(vector);
        }
        if done % 10 == 0 {
            progress(format!("embedded {} of {} lines", done * 256, lines.len()));
        }
    }
    let dimension = model.dimension();
    let rows = lines.len() - args.queries;
    let (base, queries) = vectors.split_at(rows * dimension);
    let build = |vectors: Option<GraphVectors>| {
        let mut index = VectorIndex::new(dimension);
        for (row, vector) in base.chunks_exact(dimension).enumerate() {
            index.insert(facts(row as u128), vector);
        }
        if let Some(vectors) = vectors {
            index.enable_approximate(ApproximateSettings {
                min_vectors: 1,
                vectors,
                ..ApproximateSettings::default()
            });
        }
        index
    };
    let exact_index = build(None);
    let truth: Vec<Vec<u32>> = queries
        .chunks_exact(dimension)
        .map(|query| {
            let hits = exact_index.search(&exact(query));
            hits.iter().map(|hit| hit.key as u32).collect()
        })
        .collect();
    for (name, vectors) in [
        ("int8", GraphVectors::Int8Copy),
        ("shared", GraphVectors::SharedBuffer),
    ] {
        let index = build(Some(vectors));
        let mut answers = Vec::new();
        let latencies = timed(queries, dimension, |query| {
            let hits = index.search(&exact(query));
            answers.push(hits.iter().map(|hit| hit.key as u32).collect());
        });
        let answers = &answers[answers.len() - truth.len()..];
        emit(
            &format!("mimo-index (HNSW, {name} codes) on all-MiniLM-L6-v2 embeddings"),
            rows,
            &latencies,
            json!({ "recall_at_10": recall(answers, &truth), "ef": ApproximateSettings::default().expansion_search }),
        );
    }
    Ok(())
}

/// Times searches that scan an int8 copy and re-rank exactly; reports their recall@10.
fn int8_scan(
    args: &Args,
    size: usize,
    index: &mut VectorIndex,
    queries: &[f32],
    truth: &[Vec<u32>],
) {
    progress(format!("int8 scan: {size} vectors"));
    index.enable_int8();
    let mut answers: Vec<Vec<u32>> = Vec::new();
    let latencies = timed(queries, args.dimension, |query| {
        let hits = index.search(&exact(query));
        answers.push(hits.iter().map(|hit| hit.key as u32).collect());
    });
    let answers = &answers[answers.len() - truth.len()..];
    emit(
        "mimo-index (int8 scan, exact re-rank)",
        size,
        &latencies,
        json!({
            "recall_at_10": recall(answers, truth),
            "index_bytes_per_million": index.bytes() as f64 * 1e6 / size as f64,
            "threads": rayon_threads(),
        }),
    );
    index.disable_int8();
}

/// The share of the exact answers' rows that `answers` found.
fn recall(answers: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    let found: usize = answers
        .iter()
        .zip(truth)
        .map(|(got, expected)| got.iter().filter(|row| expected.contains(row)).count())
        .sum();
    found as f64 / (truth.len() * TOP) as f64
}

/// Recall@10 at which a breadth sweep stops: the equal-recall comparison with hnswlib looks
/// at 0.95, 0.97 and 0.99.
const SWEEP_UNTIL_RECALL: f64 = 0.995;

/// The breadths (ef) swept, the same as hnswlib's in `scripts/bench/vector_peers.py`: steps
/// of 1.25x or less, so that both are compared at close recalls.
const EF_GRID: [usize; 19] = [
    16, 20, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
];

/// Builds the HNSW graph over `index` and raises its search breadth until recall@10 against
/// the exact answers reaches 0.995 (or ef 512), printing each breadth as a sweep line; reports
/// the first breadth reaching 0.95 as the graph's figures.
fn approximate(
    args: &Args,
    size: usize,
    index: &mut VectorIndex,
    queries: &[f32],
    truth: &[Vec<u32>],
    resident_before: u64,
) {
    progress(format!("approximate index: building over {size} vectors"));
    let settings = ApproximateSettings {
        min_vectors: 1,
        vectors: if args.graph == "int8" {
            GraphVectors::Int8Copy
        } else {
            GraphVectors::SharedBuffer
        },
        expansion_add: args
            .expansion_add
            .unwrap_or(ApproximateSettings::default().expansion_add),
        ..ApproximateSettings::default()
    };
    let started = Instant::now();
    index.enable_approximate(settings);
    let build = started.elapsed();
    let resident = resident_bytes()
        .unwrap_or(0)
        .saturating_sub(resident_before);
    let mut reported = false;
    for expansion in EF_GRID {
        index.set_expansion_search(expansion);
        let mut answers: Vec<Vec<u32>> = Vec::new();
        let latencies = timed(queries, args.dimension, |query| {
            let hits = index.search(&exact(query));
            answers.push(hits.iter().map(|hit| hit.key as u32).collect());
        });
        let answers = &answers[answers.len() - truth.len()..];
        let recall = recall(answers, truth);
        let mut sorted = latencies.clone();
        sorted.sort();
        progress(format!(
            "  ef {expansion}: recall@10 {recall:.3}, p50 {:.3} ms",
            percentile(&sorted, 0.5).as_secs_f64() * 1e3
        ));
        emit(
            &format!("Mimo HNSW ({} graph)", args.graph),
            size,
            &latencies,
            json!({ "sweep": true, "recall_at_10": recall, "ef": expansion }),
        );
        if !reported && (recall >= 0.95 || expansion == 512) {
            emit(
                &format!(
                    "mimo-index (HNSW, {} graph, M={} ef_add={}, exact re-rank)",
                    args.graph, settings.connectivity, settings.expansion_add
                ),
                size,
                &latencies,
                json!({
                    "recall_at_10": recall,
                    "ef": expansion,
                    "build_s": build.as_secs_f64(),
                    "resident_bytes_per_million": resident as f64 * 1e6 / size as f64,
                    "index_bytes_per_million": index.bytes() as f64 * 1e6 / size as f64,
                    "huge_page_bytes": anon_huge_page_bytes(),
                }),
            );
            reported = true;
        }
        if recall >= SWEEP_UNTIL_RECALL {
            return;
        }
    }
}

/// Ingests `vectors` through a [`MemoryStore`] on a real SQLite file, then times searches by
/// query vector through it and through the old approach on the same file.
async fn through_the_store(
    args: &Args,
    size: usize,
    vectors: &[f32],
    queries: &[f32],
    truth: &[Vec<u32>],
) -> anyhow::Result<()> {
    let folder = tempfile::tempdir_in(&args.dir)?;
    let database = folder.path().join("memory.sqlite");
    let mut config = MemoryConfig::new(&database).with_embedder(Arc::new(ExternalEmbedder::new(
        "bench-vectors",
        args.dimension,
    )));
    config.max_engrams = size + 1;
    // Exact: the store's figures are the exact path with SQLite around it.
    config.approximate = None;
    let store = mimo_memory::open(config).await?;
    progress(format!("store: ingesting {size} client vectors"));
    let rate = ingest_vectors(&store, vectors, args.dimension, args.concurrency).await?;
    emit_rate("mimo-store ingest, client vectors", size, rate);

    let dimension = args.dimension;
    let mut recall_hits = 0;
    let mut answers = Vec::new();
    let latencies = timed_async(
        queries,
        dimension,
        |query| {
            let store = store.clone();
            let query = query.to_vec();
            async move {
                store
                    .search(SearchRequest {
                        query_vector: query,
                        limit: Some(TOP as u32),
                        min_similarity: Some(-1.0),
                        ..Default::default()
                    })
                    .await
            }
        },
        &mut answers,
    )
    .await?;
    for (hits, expected) in answers.iter().rev().zip(truth.iter().rev()) {
        let rows: Vec<u32> = hits
            .iter()
            .filter_map(|hit| {
                hit.engram
                    .as_ref()?
                    .content
                    .strip_prefix("vector ")?
                    .parse()
                    .ok()
            })
            .collect();
        recall_hits += rows.iter().filter(|row| expected.contains(row)).count();
    }
    emit(
        "mimo-store (exact, with SQLite)",
        size,
        &latencies,
        json!({ "recall_at_10": recall_hits as f64 / (truth.len() * TOP) as f64 }),
    );
    store.close().await;

    progress(format!(
        "old approach: {size} rows, {} queries",
        args.old_queries
    ));
    let old = old_approach(&database, dimension, queries, args.old_queries).await?;
    emit(
        "old approach (load and decode every row)",
        size,
        &old,
        json!({}),
    );
    Ok(())
}

/// Stores every vector with `concurrency` stores in flight; returns engrams per second.
async fn ingest_vectors(
    store: &MemoryStore,
    vectors: &[f32],
    dimension: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let vectors: Arc<Vec<f32>> = Arc::new(vectors.to_vec());
    let count = vectors.len() / dimension;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (store, vectors, next) = (store.clone(), vectors.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let row = next.fetch_add(1, Ordering::Relaxed);
                if row >= count {
                    return Ok::<_, mimo_memory::MemoryError>(());
                }
                if row > 0 && row.is_multiple_of(200_000) {
                    progress(format!("  stored {row}"));
                }
                // As StoreStream stores: no near-duplicate check (a bulk load).
                store
                    .store(StoreRequest {
                        content: format!("vector {row}"),
                        embedding: vectors[row * dimension..(row + 1) * dimension].to_vec(),
                        allow_duplicate: true,
                        ..Default::default()
                    })
                    .await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The system this project replaces: every search reads every row, decodes each embedding
/// in application code and sorts all the scores.
async fn old_approach(
    database: &Path,
    dimension: usize,
    queries: &[f32],
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    use sqlx::Row;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(database)
                .read_only(true),
        )
        .await?;
    let mut latencies = Vec::with_capacity(count);
    for query in queries.chunks_exact(dimension).take(count.max(1)) {
        let started = Instant::now();
        let rows = sqlx::query("SELECT id, embedding FROM engrams")
            .fetch_all(&pool)
            .await?;
        let mut scored: Vec<(f32, String)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let blob: Vec<u8> = row.try_get("embedding")?;
            let vector = mimo_memory::decode_embedding(&blob, dimension)?;
            let score: f32 = vector.iter().zip(query).map(|(a, b)| a * b).sum();
            scored.push((score, row.try_get("id")?));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(TOP);
        std::hint::black_box(&scored);
        latencies.push(started.elapsed());
    }
    pool.close().await;
    Ok(latencies)
}

/// Stores `texts` generated sentences with `embedder` (the built-in one when `None`) over a
/// StoreStream call on a loopback gRPC server; reports engrams per second.
async fn text_ingest(
    name: &str,
    texts: usize,
    embedder: Option<Arc<dyn mimo_memory::Embedder>>,
) -> anyhow::Result<()> {
    progress(format!("{name}: streaming {texts} texts over gRPC"));
    let folder = tempfile::tempdir()?;
    let mut config = MemoryConfig::new(folder.path().join("memory.sqlite"));
    if let Some(embedder) = embedder {
        config = config.with_embedder(embedder);
    }
    config.max_engrams = texts + 1;
    let store = mimo_memory::open(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(mimo_memory::serve(
        store.clone(),
        mimo_reporter::ReporterConfig {
            telemetry_address: None,
            interval: Duration::from_secs(10),
        },
        listener,
        shutdown.clone(),
    ));
    let mut client = mimo_proto::connect::memory(mimo_proto::connect::channel(&address).await?);
    let requests = (0..texts).map(|number| StoreRequest {
        content: sentence(number as u64),
        category: Category::Observation as i32,
        ..Default::default()
    });
    let started = Instant::now();
    let mut answers = client
        .store_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut acknowledged = 0;
    while let Some(answer) = answers.message().await? {
        acknowledged += usize::from(answer.engram.is_some());
    }
    let rate = acknowledged as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        acknowledged == texts,
        "{acknowledged} of {texts} acknowledged"
    );
    emit_rate(
        &format!("mimo StoreStream ingest, {name} (gRPC)"),
        texts,
        rate,
    );
    drop(client);
    shutdown.cancel();
    server.await??;
    store.close().await;
    Ok(())
}

/// A sentence of twelve words from a fixed vocabulary, different for every `seed`.
fn sentence(seed: u64) -> String {
    const WORDS: [&str; 32] = [
        "river", "mountain", "garden", "engine", "market", "letter", "window", "harbor", "station",
        "kitchen", "forest", "bridge", "meeting", "project", "invoice", "deploy", "server",
        "memory", "planet", "orchard", "violin", "ticket", "weather", "journey", "library",
        "message", "battery", "castle", "doctor", "recipe", "camera", "festival",
    ];
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let words: Vec<&str> = (0..12)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            WORDS[(state % WORDS.len() as u64) as usize]
        })
        .collect();
    format!("{} (note {seed})", words.join(" "))
}

/// Facts of a benchmark row: only the key matters.
fn facts(key: u128) -> RowFacts {
    RowFacts {
        key,
        category: Category::Fact,
        importance: 0.5,
        created_at: 0,
        accessed_at: 0,
    }
}

fn exact(vector: &[f32]) -> IndexQuery<'_> {
    IndexQuery {
        vector,
        limit: TOP,
        min_similarity: -1.0,
        filter: Filter::default(),
        scoring: Scoring::Semantic,
    }
}

/// Runs `search` once per query after a warm-up round of ten; returns the timed latencies.
fn timed(queries: &[f32], dimension: usize, mut search: impl FnMut(&[f32])) -> Vec<Duration> {
    for query in queries.chunks_exact(dimension).take(10) {
        search(query);
    }
    queries
        .chunks_exact(dimension)
        .map(|query| {
            let started = Instant::now();
            search(query);
            started.elapsed()
        })
        .collect()
}

/// [`timed`] for an async search; the answers of every round go to `answers`.
async fn timed_async<F, Fut, T>(
    queries: &[f32],
    dimension: usize,
    mut search: F,
    answers: &mut Vec<T>,
) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(&[f32]) -> Fut,
    Fut: std::future::Future<Output = Result<T, mimo_memory::MemoryError>>,
{
    for query in queries.chunks_exact(dimension).take(10) {
        search(query).await?;
    }
    let mut latencies = Vec::new();
    for query in queries.chunks_exact(dimension) {
        let started = Instant::now();
        let answer = search(query).await?;
        latencies.push(started.elapsed());
        answers.push(answer);
    }
    Ok(latencies)
}

/// `count` unit vectors around 1024 random centres (like embeddings, which cluster by topic).
fn clustered_vectors(count: usize, dimension: usize, seed: u64) -> Vec<f32> {
    let mut centres_noise = Gaussian::new(42);
    let centres: Vec<Vec<f32>> = (0..1024)
        .map(|_| unit((0..dimension).map(|_| centres_noise.next()).collect()))
        .collect();
    let mut noise = Gaussian::new(seed);
    let spread = 0.8 / (dimension as f32).sqrt();
    let mut out = Vec::with_capacity(count * dimension);
    for _ in 0..count {
        let centre = &centres[(noise.next_u64() % centres.len() as u64) as usize];
        let vector: Vec<f32> = centre.iter().map(|c| c + spread * noise.next()).collect();
        out.extend(unit(vector));
    }
    out
}

fn unit(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

/// Standard normal values by Box-Muller over xorshift64*.
struct Gaussian {
    state: u64,
}

impl Gaussian {
    fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next(&mut self) -> f32 {
        let uniform = |value: u64| ((value >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let (u1, u2) = (uniform(self.next_u64()), uniform(self.next_u64()));
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

fn write_f32(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for value in values {
        file.write_all(&value.to_le_bytes())?;
    }
    file.flush()?;
    Ok(())
}

fn write_truth(path: &Path, truth: &[Vec<u32>]) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for answer in truth {
        anyhow::ensure!(
            answer.len() == TOP,
            "an exact answer has {} rows",
            answer.len()
        );
        for row in answer {
            file.write_all(&row.to_le_bytes())?;
        }
    }
    file.flush()?;
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn emit(system: &str, size: usize, latencies: &[Duration], extra: serde_json::Value) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let total: Duration = sorted.iter().sum();
    let mut line = json!({
        "system": system,
        "size": size,
        "queries": sorted.len(),
        "p50_ms": percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        "p99_ms": percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        "qps": sorted.len() as f64 / total.as_secs_f64(),
    });
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
        line.extend(extra);
    }
    println!("{line}");
}

fn emit_rate(system: &str, size: usize, per_second: f64) {
    println!(
        "{}",
        json!({ "system": system, "size": size, "per_second": per_second })
    );
}

fn progress(message: String) {
    eprintln!("memory-bench: {message}");
}
