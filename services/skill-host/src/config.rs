//! Skill-host settings, validated before anything starts.

use crate::rpc::ConnectionLimits;
use crate::skills_file::SkillSpec;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a skill-host needs to run.
#[derive(Debug, Clone)]
pub struct SkillHostConfig {
    /// The skills to run at start, by name.
    pub skills: BTreeMap<String, SkillSpec>,
    /// The skills file they came from, read again on SIGHUP and by `ReloadSkills`.
    pub skills_file: Option<PathBuf>,
    /// Registry to register skills with (`HOST:PORT`, or several replicas comma-separated,
    /// tried in turn); `None` runs the host without registering.
    pub registry_address: Option<String>,
    /// Address other hosts and clients use to reach this host; by default the listener's.
    pub advertise_address: Option<String>,
    /// TTL of the host's registry lease; heartbeats go every third of it.
    pub lease_ttl: Duration,
    /// Longest a skill may take to finish `initialize` and `tools/list` while silent; each
    /// stderr line during start (a launcher downloading, say) restarts this clock.
    pub initialize_timeout: Duration,
    /// Longest a start may take however much the skill writes to stderr.
    pub initialize_timeout_max: Duration,
    /// Deadline of a tool call whose caller set none.
    pub default_call_timeout: Duration,
    /// Longest deadline a caller may set.
    pub max_call_timeout: Duration,
    /// Calls in flight to one skill at once; more wait for a place until their deadline.
    pub max_in_flight_per_skill: usize,
    /// Calls waiting for a place in flight, per skill; one more fails with RESOURCE_EXHAUSTED.
    pub max_waiting_per_skill: usize,
    /// Longest JSON-RPC message read from a skill (one stdout line).
    pub max_message_bytes: usize,
    /// Restarts allowed within [`SkillHostConfig::restart_window`]; past them the skill fails.
    pub max_restarts: u32,
    /// The window over which restarts are counted.
    pub restart_window: Duration,
    /// Wait before the first restart; doubled at each further one.
    pub restart_backoff: Duration,
    /// Longest wait before a restart.
    pub restart_backoff_max: Duration,
    /// How long a lazy skill may go without a call before it is stopped.
    pub lazy_idle_timeout: Duration,
    /// Most skills on this host; adding one more answers RESOURCE_EXHAUSTED.
    pub max_skills: usize,
    /// Folder for what outlives a run (the process groups of running skills); `None` keeps
    /// nothing, so a killed host's skills cannot be found by the next run.
    pub state_dir: Option<PathBuf>,
    /// After shutdown begins, how long calls in flight may run before their skills are
    /// stopped (which fails the calls still open with UNAVAILABLE).
    pub drain_timeout: Duration,
    /// Grace period at each step of stopping a skill (stdin closed, then SIGTERM).
    pub stop_grace: Duration,
    /// Lines of each skill's stderr kept for status.
    pub stderr_lines_kept: usize,
}

impl Default for SkillHostConfig {
    fn default() -> Self {
        Self {
            skills: BTreeMap::new(),
            skills_file: None,
            registry_address: None,
            advertise_address: None,
            lease_ttl: Duration::from_secs(10),
            initialize_timeout: Duration::from_secs(30),
            initialize_timeout_max: Duration::from_secs(300),
            default_call_timeout: Duration::from_secs(60),
            max_call_timeout: Duration::from_secs(3600),
            max_in_flight_per_skill: 64,
            max_waiting_per_skill: 256,
            max_message_bytes: mimo_proto::MAX_MESSAGE_BYTES,
            max_restarts: 3,
            restart_window: Duration::from_secs(30),
            restart_backoff: Duration::from_millis(250),
            restart_backoff_max: Duration::from_secs(10),
            lazy_idle_timeout: Duration::from_secs(300),
            max_skills: 100,
            state_dir: None,
            drain_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(2),
            stderr_lines_kept: 50,
        }
    }
}

impl SkillHostConfig {
    /// The bounds of each skill's JSON-RPC connection.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            in_flight: self.max_in_flight_per_skill,
            waiting: self.max_waiting_per_skill,
            max_line_bytes: self.max_message_bytes,
        }
    }
}
