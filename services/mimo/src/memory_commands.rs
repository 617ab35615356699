//! The `mimo memory` commands beyond store/search/get/delete: update, stats, a JSONL import
//! over one StoreStream call, and re-embedding a stopped memory's engrams.

use crate::cli::{CategoryArg, ListOrderArg};
use crate::client::{category_of, status_error};
use crate::output::out;
use crate::settings::Effective;
use anyhow::Context;
use mimo_proto::connect;
use mimo_proto::v1::{
    ConsolidateRequest, DecayRequest, ListOrder, ListRequest, RememberRequest, StatsRequest,
    StoreRequest, UpdateRequest,
};
use std::path::Path;
use std::process::ExitCode;

/// One line of an import file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    content: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    importance: Option<f32>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    embedding: Vec<f32>,
}

/// `mimo memory update`.
pub async fn update(
    settings: &Effective,
    id: String,
    importance: Option<f32>,
    category: Option<CategoryArg>,
    metadata: Option<String>,
    protected: Option<bool>,
) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let engram = memory
        .update(UpdateRequest {
            id,
            importance,
            category: category.map_or(0, |category| category_of(category).into()),
            metadata_json: metadata,
            protected,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    crate::client::print_engram(&engram);
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory list`: one line per engram.
pub async fn list(
    settings: &Effective,
    limit: u32,
    offset: u64,
    order: ListOrderArg,
    category: Option<CategoryArg>,
) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let order = match order {
        ListOrderArg::Newest => ListOrder::NewestFirst,
        ListOrderArg::Oldest => ListOrder::OldestFirst,
        ListOrderArg::Important => ListOrder::MostImportantFirst,
        ListOrderArg::Accessed => ListOrder::RecentlyAccessedFirst,
    };
    let page = memory
        .list(ListRequest {
            offset,
            limit: Some(limit),
            order: order.into(),
            category: category.map_or(0, |category| category_of(category).into()),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    for engram in &page.engrams {
        out!(
            "{}  [{}]  {:.2}  {}",
            engram.id,
            crate::client::category_name(engram),
            engram.importance,
            engram.content
        );
    }
    eprintln!(
        "{} of {} engrams (from {offset})",
        page.engrams.len(),
        page.total
    );
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory remember`: prints the working entry's id.
pub async fn remember(
    settings: &Effective,
    text: String,
    importance: Option<f32>,
    category: CategoryArg,
    ttl_ms: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let entry = memory
        .remember(RememberRequest {
            entry: Some(StoreRequest {
                content: text,
                importance,
                category: category_of(category).into(),
                ..Default::default()
            }),
            ttl_ms,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    out!("{}", entry.id);
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory consolidate`: prints the long-term engrams made.
pub async fn consolidate(settings: &Effective) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let moved = memory
        .consolidate(ConsolidateRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    for engram in &moved.engrams {
        out!("{}  {}", engram.id, engram.content);
    }
    eprintln!("{} working entries kept long-term", moved.engrams.len());
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory decay`: prints what was (or would be) forgotten.
pub async fn decay(
    settings: &Effective,
    dry_run: bool,
    half_life_days: Option<f64>,
    forget_below: Option<f32>,
) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let pass = memory
        .decay(DecayRequest {
            dry_run,
            half_life_days,
            forget_below,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    for engram in &pass.forgotten {
        out!(
            "{}  {:.2}  {}",
            engram.id,
            engram.importance,
            engram.content
        );
    }
    eprintln!(
        "{} of {} unprotected engrams {}",
        pass.count,
        pass.examined,
        if dry_run {
            "would be forgotten (dry run: nothing was)"
        } else {
            "forgotten"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory stats`.
pub async fn stats(settings: &Effective) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let stats = memory
        .stats(StatsRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    out!("engrams:      {}", stats.engrams);
    let mut categories: Vec<_> = stats.by_category.into_iter().collect();
    categories.sort();
    for (category, count) in categories {
        out!("  {category:<12}{count}");
    }
    out!(
        "embedder:     {} ({} dimensions)",
        stats.embedder,
        stats.dimension
    );
    out!(
        "index:        {} vectors, {:.1} MiB, {}",
        stats.index_vectors,
        stats.index_bytes as f64 / (1024.0 * 1024.0),
        if stats.approximate {
            "approximate (HNSW, re-ranked exactly)"
        } else {
            "exact"
        }
    );
    out!("working:      {} entries", stats.working_entries);
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory import FILE`: the file read a line at a time into one StoreStream call, with
/// a progress bar; a bad line (unreadable, or refused by the memory) stops the import there,
/// naming its line number, with every line before it stored.
pub async fn import(settings: &Effective, file: &Path) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    let open = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .with_context(|| format!("cannot read {}", file.display()))
    };
    let total = open()?.lines().count() as u64;
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    let bar = progress_bar(total, "stored");
    // Lines are parsed on a thread of their own, at most 1024 ahead of the memory.
    let (requests, stream) = tokio::sync::mpsc::channel(1024);
    let reader = open()?;
    // The line number of each request sent, to name the line the memory refuses.
    let sent_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let sent = sent_lines.clone();
    let parsing = std::thread::spawn(move || -> anyhow::Result<()> {
        for (index, line) in reader.lines().enumerate() {
            let number = index + 1;
            let line = line.with_context(|| format!("line {number}"))?;
            if line.trim().is_empty() {
                continue;
            }
            sent.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(number as u64);
            let request = serde_json::from_str::<ImportLine>(&line)
                .map_err(anyhow::Error::from)
                .and_then(store_request)
                .with_context(|| format!("line {number}"))?;
            if requests.blocking_send(request).is_err() {
                return Ok(()); // the memory stopped reading: its answer says why
            }
        }
        Ok(())
    });
    let mut answers = memory
        .store_stream(tokio_stream::wrappers::ReceiverStream::new(stream))
        .await
        .map_err(status_error)?
        .into_inner();
    let mut stored = 0_u64;
    let refused = loop {
        match answers.message().await {
            Ok(Some(_)) => {
                stored += 1;
                bar.inc(1);
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    let parsed = parsing
        .join()
        .map_err(|_| anyhow::anyhow!("the line reader panicked"))?;
    if let Some(status) = refused {
        bar.abandon();
        let line = sent_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stored as usize)
            .copied()
            .unwrap_or(stored + 1);
        anyhow::bail!(
            "{} line {line}: {}; the {stored} engrams before it are stored",
            file.display(),
            status.message()
        );
    }
    if let Err(error) = parsed {
        bar.abandon();
        anyhow::bail!(
            "{} {:#}; the {stored} engrams before it are stored",
            file.display(),
            error
        );
    }
    bar.finish();
    out!("stored {stored} engrams from {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// `mimo memory export FILE`: every engram in id order, a page at a time, as import lines.
pub async fn export(
    settings: &Effective,
    file: &Path,
    with_embeddings: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    // A memory of client vectors cannot embed its texts again on import: keep the vectors.
    let with_embeddings = with_embeddings
        || !memory
            .stats(StatsRequest {})
            .await
            .map_err(status_error)?
            .into_inner()
            .embeds_text;
    let partial = file.with_extension("partial");
    let mut out_file = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let bar = progress_bar(0, "exported");
    let mut after_id = String::new();
    let mut written = 0_u64;
    loop {
        let page = memory
            .list(ListRequest {
                limit: Some(1000),
                order: ListOrder::ById.into(),
                after_id: after_id.clone(),
                with_embeddings,
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        bar.set_length(page.total);
        let Some(last) = page.engrams.last() else {
            break;
        };
        after_id = last.id.clone();
        for engram in &page.engrams {
            let metadata: serde_json::Value =
                serde_json::from_str(&engram.metadata_json).unwrap_or_default();
            let mut line = serde_json::json!({
                "content": engram.content,
                "category": crate::client::category_name(engram),
                "importance": engram.importance,
                "metadata": metadata,
                "protected": engram.protected,
            });
            if with_embeddings {
                line["embedding"] = serde_json::json!(engram.embedding);
            }
            writeln!(out_file, "{line}")?;
            written += 1;
        }
        bar.set_position(written);
    }
    out_file.flush()?;
    drop(out_file);
    std::fs::rename(&partial, file).with_context(|| format!("cannot write {}", file.display()))?;
    bar.finish();
    out!("exported {written} engrams to {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// The Store request of an import line.
fn store_request(line: ImportLine) -> anyhow::Result<StoreRequest> {
    let category = match line.category.as_deref() {
        None => 0,
        Some(name) => {
            let arg = <CategoryArg as clap::ValueEnum>::from_str(name, true).map_err(|_| {
                anyhow::anyhow!(
                    "category {name:?} is unknown; use fact, action, observation, plan, episode or procedure"
                )
            })?;
            category_of(arg).into()
        }
    };
    Ok(StoreRequest {
        content: line.content,
        category,
        importance: line.importance,
        metadata_json: line.metadata.map(|m| m.to_string()).unwrap_or_default(),
        embedding: line.embedding,
        protected: line.protected,
        allow_duplicate: false,
    })
}

/// `mimo memory reembed`: opens the database itself (the service must be stopped).
pub async fn reembed(settings: &Effective) -> anyhow::Result<ExitCode> {
    let config = settings.memory.config(&settings.database).await?;
    let bar = progress_bar(0, "re-embedded");
    let report = mimo_memory::reembed(config, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await
    .with_context(|| format!("cannot re-embed {}", settings.database))?;
    bar.finish();
    out!(
        "re-embedded {} engrams; {} had nothing to embed and were left as they were",
        report.reembedded,
        report.skipped
    );
    Ok(if report.skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
