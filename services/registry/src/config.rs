//! Registry settings and their validation.

use crate::etcd_store::EtcdConfig;
use std::time::Duration;

/// Limits and bounds the registry enforces.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Shortest TTL a lease may be granted with.
    pub min_ttl: Duration,
    /// Longest TTL a lease may be granted with.
    pub max_ttl: Duration,
    /// Most leases alive at once.
    pub max_leases: usize,
    /// Most skills registered at once, over all leases.
    pub max_skills: usize,
    /// Most tools registered at once, over all skills.
    pub max_tools: usize,
    /// Changes kept for watchers to resume from.
    pub watch_history: usize,
    /// Bytes (encoded) the kept changes may take, whatever their number.
    pub watch_history_bytes: usize,
    /// Largest catalogue one skill may register, in bytes of its encoded tools (etcd
    /// refuses requests over about 1.5 MiB, so the default fits both stores).
    pub max_catalogue_bytes: usize,
    /// Most Watch streams open at once.
    pub max_watchers: usize,
    /// Keep leases and registrations in this etcd cluster; in this process's memory when
    /// `None`.
    pub etcd: Option<EtcdConfig>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            max_leases: 10_000,
            max_skills: 10_000,
            max_tools: 10_000,
            watch_history: 10_000,
            watch_history_bytes: 64 * 1024 * 1024,
            max_catalogue_bytes: 1024 * 1024,
            max_watchers: 1_000,
            etcd: None,
        }
    }
}
