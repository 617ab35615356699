//! Mimo's registry: skills and their tools held under leases kept alive by heartbeats.
//!
//! A lease lives for its TTL unless refreshed; when it expires or is revoked, every skill and
//! tool attached to it is removed in one step. Expiry is driven by a deadline-ordered index,
//! never by scanning tables or polling hosts.

mod catalog;
mod config;
mod endpoint;
mod error;
mod etcd_store;
mod keep_alive;
mod leases;
mod naming;
mod service;
mod small_map;
mod state;
mod stream_out;
mod watch;
mod watcher;

pub use config::RegistryConfig;
pub use error::RegistryError;
pub use etcd_store::{EtcdConfig, EtcdStore, DEFAULT_PREFIX};
pub use naming::{disambiguated_tool_name, public_tool_name};
pub use service::{serve, Backend, RegistryService, ServeError};
pub use state::{RegistryCounters, RegistryState, Subscription, ToolPage, MAX_PAGE_SIZE};
pub use watch::{Change, Compacted};
