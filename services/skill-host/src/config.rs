//! Skill-host settings, validated before anything starts.

use crate::skills_file::SkillSpec;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything a skill-host needs to run.
#[derive(Debug, Clone)]
pub struct SkillHostConfig {
    /// The skills to run, by name.
    pub skills: BTreeMap<String, SkillSpec>,
    /// Registry to register skills with; `None` runs the host without registering.
    pub registry_address: Option<String>,
    /// Address other hosts and clients use to reach this host; by default the listener's.
    pub advertise_address: Option<String>,
    /// TTL of the host's registry lease; heartbeats go every third of it.
    pub lease_ttl: Duration,
    /// Longest a skill may take to finish `initialize` and `tools/list`.
    pub initialize_timeout: Duration,
    /// Deadline of a tool call whose caller set none.
    pub default_call_timeout: Duration,
    /// Longest deadline a caller may set.
    pub max_call_timeout: Duration,
    /// Calls in flight to one skill at once; more wait for a place until their deadline.
    pub max_in_flight_per_skill: usize,
    /// Grace period at each step of stopping a skill (stdin closed, then SIGTERM).
    pub stop_grace: Duration,
    /// Lines of each skill's stderr kept for status.
    pub stderr_lines_kept: usize,
}

impl Default for SkillHostConfig {
    fn default() -> Self {
        Self {
            skills: BTreeMap::new(),
            registry_address: None,
            advertise_address: None,
            lease_ttl: Duration::from_secs(10),
            initialize_timeout: Duration::from_secs(30),
            default_call_timeout: Duration::from_secs(60),
            max_call_timeout: Duration::from_secs(3600),
            max_in_flight_per_skill: 64,
            stop_grace: Duration::from_secs(2),
            stderr_lines_kept: 50,
        }
    }
}
