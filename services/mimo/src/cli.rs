//! The command line: what each `mimo` command and flag means.

use crate::settings::Settings;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Mimo: skills (MCP servers run as supervised subprocesses) and long-term memory for AI
/// agents, served over gRPC.
///
/// Settings come from flags, then MIMO_* environment variables, then the TOML file given
/// with --config (keys are the flag names with underscores), then built-in defaults.
#[derive(Debug, Parser)]
#[command(
    name = "mimo",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// TOML settings file
    #[arg(long, env = "MIMO_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Print the effective settings as TOML and exit
    #[arg(long, global = true)]
    pub print_config: bool,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all four services in this process, on loopback, with data under ./data
    Up {
        /// Once every port is bound, write the services' addresses to this file as JSON
        /// ({"registry": "127.0.0.1:50051", ...}); useful with ports given as :0
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Run the registry service alone
    Registry,
    /// Run the skill-host service alone (it registers with --registry-address)
    SkillHost,
    /// Run the memory service alone, or talk to a running one (store, search, list, import, remember, decay, ...)
    #[command(args_conflicts_with_subcommands = true)]
    Memory {
        #[command(subcommand)]
        action: Option<MemoryAction>,
    },
    /// Run the telemetry service alone
    Telemetry,
    /// List or call the tools of every live skill
    Tools {
        #[command(subcommand)]
        action: ToolsAction,
    },
    /// List, add, remove, restart or reload the skills of a skill-host
    Skills {
        #[command(subcommand)]
        action: SkillsAction,
    },
    /// Serve every live skill's tools and long-term memory as one MCP server, over stdio (for Claude Desktop, VS Code, Cursor) or, with --http, over streamable HTTP
    Mcp(McpArgs),
    /// Show every service instance's latest resource report
    Status,
    /// A live view of every instance's resources and the alerts, refreshed until Ctrl-C
    Top {
        /// Milliseconds between two refreshes
        #[arg(long, default_value_t = 2000)]
        interval_ms: u64,
        /// Stop after this many refreshes (0: never)
        #[arg(long, default_value_t = 0, hide = true)]
        iterations: u64,
    },
    /// Check services' standard gRPC health (as probes do): exit 0 only if every one answers SERVING
    Health {
        /// Addresses to check (HOST:PORT); without any, the four configured service addresses
        addresses: Vec<String>,
        /// Ask about this service (e.g. mimo.v1.Memory) instead of the server as a whole
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Make TLS certificates for trying out mutual TLS
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
}

/// Certificate commands.
#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// Make a local CA and, signed by it, a certificate for the services and one for clients (not for production: the CA key sits beside them)
    Dev(CertsDevArgs),
}

/// What `mimo certs dev` makes.
#[derive(Debug, clap::Args)]
pub struct CertsDevArgs {
    /// Folder to write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem and client-key.pem into (made if missing; existing files are not overwritten)
    #[arg(long, default_value = "./certs")]
    pub out: std::path::PathBuf,
    /// Host names and IP addresses the services' certificate is valid for, besides localhost, 127.0.0.1 and ::1 (repeat or comma-separate)
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Days the certificates are valid
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// How `mimo mcp` serves.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Serve streamable HTTP on this address (e.g. 127.0.0.1:8765) at /mcp instead of stdio
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// API keys clients must send as `Authorization: Bearer KEY` over HTTP: a file, one key a line (KEY, or NAME KEY); required on a non-loopback address
    #[arg(long, value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
    /// Requests per second each API key may make over HTTP, on average
    #[arg(long, default_value_t = 50.0)]
    pub rate_limit: f64,
    /// Requests each API key may make at once after a quiet spell
    #[arg(long, default_value_t = 100)]
    pub rate_burst: u32,
    /// Largest HTTP request body, in bytes
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// A browser origin allowed to call over HTTP (scheme://host:port); repeat for more. Requests from any other origin are refused
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// A Host header value allowed over HTTP besides loopback names and the listening address (the name clients reach this host by); repeat for more
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// Offer no memory tools (only the skills' tools)
    #[arg(long)]
    pub no_memory: bool,
    /// Longest a tool call may take, in milliseconds, before it is given up and the skill's call cancelled
    #[arg(long, default_value_t = 300_000)]
    pub call_timeout_ms: u64,
}

/// Tool commands.
#[derive(Debug, Subcommand)]
pub enum ToolsAction {
    /// List live tools (name, skill, description)
    List {
        /// Only tools of this skill
        #[arg(long)]
        skill: Option<String>,
        /// Print each tool with its input schema as JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Call a tool by the name `tools list` shows
    Call {
        /// Tool name, e.g. time_get_current_time
        name: String,
        /// Arguments as a JSON object
        #[arg(long, default_value = "{}")]
        args: String,
        /// Give up after this many milliseconds
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
        /// Print the whole result as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Skill commands, sent to the skill-host at --skill-host-address.
#[derive(Debug, Subcommand)]
pub enum SkillsAction {
    /// List the host's skills: state, pid, restarts, tools, and why a skill failed
    List {
        /// Print each skill's whole status as JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Show one skill, with its recent stderr lines
    Show {
        /// Skill name
        name: String,
    },
    /// Start a new skill from an entry in the skills-file format
    Add {
        /// Skill name
        name: String,
        /// The entry as JSON, e.g. '{"command": "npx", "args": ["-y", "pkg"]}'
        #[arg(long)]
        entry: String,
    },
    /// Stop a skill (its whole process group) and remove it
    Remove {
        /// Skill name
        name: String,
    },
    /// Stop a skill and start it again
    Restart {
        /// Skill name
        name: String,
    },
    /// Read the host's skills file again and apply only the difference
    Reload,
}

/// Memory client commands.
#[derive(Debug, Subcommand)]
pub enum MemoryAction {
    /// Remember a text
    Store {
        /// The text to remember
        text: String,
        /// Kind of memory
        #[arg(long, value_enum, default_value_t = CategoryArg::Fact)]
        category: CategoryArg,
        /// Importance from 0 to 1
        #[arg(long)]
        importance: Option<f32>,
        /// Metadata as a JSON object
        #[arg(long)]
        metadata: Option<String>,
        /// Never forget this engram by decay
        #[arg(long)]
        protected: bool,
        /// Store it even if a nearly identical engram of its category exists (which it would otherwise reinforce)
        #[arg(long)]
        allow_duplicate: bool,
    },
    /// Find remembered texts by meaning
    Search {
        /// What to look for
        query: String,
        /// Most hits to return (1..=1000)
        #[arg(long)]
        limit: Option<u32>,
        /// Least cosine similarity of a hit (-1..=1) [default: the embedder's, 0.1 for the built-in one]
        #[arg(long, allow_negative_numbers = true)]
        min_similarity: Option<f32>,
        /// Only this kind of memory
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
        /// Only engrams at least this important (0..=1)
        #[arg(long)]
        min_importance: Option<f32>,
        /// Rank by similarity, recency and importance together, not similarity alone
        #[arg(long)]
        hybrid: bool,
        /// Search working memory (short-term entries) too; their lines are marked [working]
        #[arg(long)]
        include_working: bool,
    },
    /// Forget every engram matching a filter (protected ones only with --include-protected)
    DeleteMatching {
        /// Only this kind of memory
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
        /// Only engrams less important than this (0..=1)
        #[arg(long)]
        importance_below: Option<f32>,
        /// Only engrams created before this time (ms since the Unix epoch)
        #[arg(long)]
        created_before_ms: Option<i64>,
        /// Protected engrams too
        #[arg(long)]
        include_protected: bool,
        /// Count them; delete nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Change an engram's importance, category, metadata or protection
    Update {
        /// Engram id
        id: String,
        /// New importance from 0 to 1
        #[arg(long)]
        importance: Option<f32>,
        /// New kind of memory
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
        /// New metadata as a JSON object
        #[arg(long)]
        metadata: Option<String>,
        /// Protect it from decay (true) or not (false)
        #[arg(long)]
        protected: Option<bool>,
    },
    /// Counts by category, index size and the embedder
    Stats,
    /// List engrams, newest first (or in another order)
    List {
        /// Engrams to show (1..=1000)
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Engrams of the order to skip
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// The order
        #[arg(long, value_enum, default_value_t = ListOrderArg::Newest)]
        order: ListOrderArg,
        /// Only this kind of memory
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
    },
    /// Hold a text in working memory (short-term) for a while
    Remember {
        /// The text
        text: String,
        /// Importance from 0 to 1 (important entries are kept long-term when they expire)
        #[arg(long)]
        importance: Option<f32>,
        /// Kind of memory
        #[arg(long, value_enum, default_value_t = CategoryArg::Fact)]
        category: CategoryArg,
        /// Milliseconds to hold it [default: the memory's, 10 minutes]
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Move every working-memory entry worth keeping into long-term memory now
    Consolidate,
    /// Forget unprotected engrams whose importance has faded with age (or list them with --dry-run)
    Decay {
        /// List what would be forgotten; forget nothing
        #[arg(long)]
        dry_run: bool,
        /// Days for an unused engram's importance to halve [default: the memory's, 30]
        #[arg(long)]
        half_life_days: Option<f64>,
        /// Forget below this faded importance (0..=1) [default: the memory's, 0.05]
        #[arg(long)]
        forget_below: Option<f32>,
    },
    /// Store every line of a JSONL file, with a progress bar
    ///
    /// Each line is one JSON object: {"content": ..., "category": "fact", "importance": 0.5,
    /// "metadata": {...}, "protected": false, "embedding": [...]} (all but content optional).
    /// Lines are stored as given: no near-duplicate is merged, so importing a file twice
    /// stores it twice. Blank lines are skipped.
    Import {
        /// The JSONL file
        file: std::path::PathBuf,
    },
    /// Write every engram to a JSONL file that `mimo memory import` reads, with a progress bar
    Export {
        /// The JSONL file to write
        file: std::path::PathBuf,
        /// Include each engram's embedding [default: only for a memory of client vectors, which cannot embed the texts again]
        #[arg(long)]
        with_embeddings: bool,
    },
    /// Re-embed every engram made by another embedder with the configured one (run with the memory service stopped), with a progress bar
    Reembed,
    /// Show one engram
    Get {
        /// Engram id
        id: String,
    },
    /// Forget one engram
    Delete {
        /// Engram id
        id: String,
    },
}

/// List orders as written on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListOrderArg {
    /// Newest first
    Newest,
    /// Oldest first
    Oldest,
    /// Most important first
    Important,
    /// Most recently accessed first
    Accessed,
}

/// Engram categories as written on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CategoryArg {
    /// Something true about the world or the user
    Fact,
    /// Something done
    Action,
    /// Something seen
    Observation,
    /// Something intended
    Plan,
    /// Something that happened
    Episode,
    /// How to do something
    Procedure,
}
