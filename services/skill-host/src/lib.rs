//! Mimo's skill-host: runs each configured skill (an MCP server over stdio) in its own
//! process group, performs the MCP handshake, discovers tools, registers them with the
//! registry, each skill under a lease kept alive by heartbeats, and relays tool calls.

mod call_stats;
mod config;
mod deadline;
mod error;
mod framing;
mod group_records;
mod manifest;
mod mcp;
mod pool;
mod process;
mod registered_leases;
mod registrar;
mod rpc;
mod service;
mod skill;
mod skills_file;
mod supervisor;

pub use config::SkillHostConfig;
pub use error::SkillHostError;
pub use group_records::GroupRecordsError;
pub use mcp::original_item;
pub use process::{kill_every_skill_group, RUN_MARKER_VARIABLE};
pub use service::{serve, ServeError, SkillHostService};
pub use skills_file::{
    expand_variables, load_skills_file, parse_skills, SkillSpec, SkillsFileError,
};
