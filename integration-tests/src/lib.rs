//! Test support for Mimo's end-to-end tests: a cluster builder that starts any set of
//! services in-process on listeners bound to `127.0.0.1:0`, the real third-party MCP
//! servers the tests use, and polling helpers that wait on conditions, never on sleeps.

pub mod bench_stats;
mod cluster;
mod etcd;
mod otlp_collector;
mod postgres;
mod servers;
mod wait;

pub use cluster::{Cluster, ClusterBuilder};
pub use etcd::EtcdServer;
pub use otlp_collector::{OtlpCollector, ReceivedSpan};
pub use postgres::PostgresServer;
pub use servers::{
    everything_server, filesystem_server, misbehaving_skill_beside_this_program, test_data,
    time_server,
};
pub use wait::wait_until;
