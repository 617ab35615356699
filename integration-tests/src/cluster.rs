//! Starts Mimo's services in-process, each on its own `127.0.0.1:0` listener (bound first,
//! then handed over), and stops them in order: skill-host first, then the rest.

use crate::etcd::EtcdServer;
use mimo_proto::connect;
use mimo_proto::connect::Channel;
use mimo_proto::v1::memory_client::MemoryClient;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::telemetry_client::TelemetryClient;
use mimo_reporter::ReporterConfig;
use mimo_skill_host::{SkillHostConfig, SkillSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type ServeHandle = JoinHandle<Result<(), String>>;
/// A change to the skill-host's settings, applied before it starts.
type ConfigureSkillHost = Box<dyn FnOnce(&mut SkillHostConfig) + Send>;
type SkillHostHandle = JoinHandle<Result<(), mimo_skill_host::ServeError>>;

/// Chooses the skills and timings of a test cluster.
pub struct ClusterBuilder {
    skills: BTreeMap<String, SkillSpec>,
    report_interval: Duration,
    lease_ttl: Duration,
    default_call_timeout: Duration,
    configure_skill_host: Option<ConfigureSkillHost>,
    registry_etcd: Option<Arc<EtcdServer>>,
    registry_max_leases: Option<usize>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            skills: BTreeMap::new(),
            report_interval: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(3),
            default_call_timeout: SkillHostConfig::default().default_call_timeout,
            configure_skill_host: None,
            registry_etcd: None,
            registry_max_leases: None,
        }
    }
}

impl ClusterBuilder {
    /// Adds a skill to the skill-host.
    pub fn skill(mut self, name: &str, spec: SkillSpec) -> Self {
        self.skills.insert(name.to_string(), spec);
        self
    }

    /// Sets the skill-host's lease TTL.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets the deadline the skill-host gives calls whose caller set none.
    pub fn default_call_timeout(mut self, timeout: Duration) -> Self {
        self.default_call_timeout = timeout;
        self
    }

    /// Keeps the registry's state in a fresh etcd started for this cluster, not in memory.
    pub async fn registry_on_etcd(mut self) -> Self {
        self.registry_etcd = Some(Arc::new(EtcdServer::start().await));
        self
    }

    /// Bounds the registry's leases.
    pub fn registry_max_leases(mut self, limit: usize) -> Self {
        self.registry_max_leases = Some(limit);
        self
    }

    /// Changes the skill-host's settings (limits, restart policy) before it starts.
    pub fn configure_skill_host(
        mut self,
        configure: impl FnOnce(&mut SkillHostConfig) + Send + 'static,
    ) -> Self {
        self.configure_skill_host = Some(Box::new(configure));
        self
    }

    /// Starts registry, telemetry, memory (on a fresh SQLite file) and the skill-host.
    /// `MIMO_TEST_LOG` (a `tracing` filter such as `info`) shows the services' logs.
    pub async fn start(self) -> Cluster {
        init_test_logging();
        let data = tempfile::tempdir().expect("temporary data folder");
        let registry_listener = bind().await;
        let telemetry_listener = bind().await;
        let memory_listener = bind().await;
        let skill_host_listener = bind().await;
        let address = |listener: &TcpListener| listener.local_addr().expect("bound").to_string();
        let registry = address(&registry_listener);
        let telemetry = address(&telemetry_listener);
        let memory = address(&memory_listener);
        let skill_host = address(&skill_host_listener);
        let reporting = ReporterConfig {
            telemetry_address: Some(telemetry.clone()),
            interval: self.report_interval,
        };
        let others_shutdown = CancellationToken::new();
        let skill_host_shutdown = CancellationToken::new();
        let store = mimo_memory::open(mimo_memory::MemoryConfig::new(
            data.path().join("memory.sqlite"),
        ))
        .await
        .expect("open memory database");
        let others = vec![
            (
                "registry",
                tokio::spawn(as_text(mimo_registry::serve(
                    mimo_registry::RegistryConfig {
                        etcd: self.registry_etcd.as_ref().map(|etcd| {
                            mimo_registry::EtcdConfig::parse(&format!("etcd://{}", etcd.address()))
                                .expect("etcd address")
                        }),
                        max_leases: self
                            .registry_max_leases
                            .unwrap_or(mimo_registry::RegistryConfig::default().max_leases),
                        ..mimo_registry::RegistryConfig::default()
                    },
                    reporting.clone(),
                    registry_listener,
                    others_shutdown.clone(),
                ))),
            ),
            (
                "telemetry",
                tokio::spawn(as_text(mimo_telemetry::serve(
                    Default::default(),
                    reporting.clone(),
                    telemetry_listener,
                    others_shutdown.clone(),
                ))),
            ),
            (
                "memory",
                tokio::spawn(as_text(mimo_memory::serve(
                    store,
                    reporting.clone(),
                    memory_listener,
                    others_shutdown.clone(),
                ))),
            ),
        ];
        let mut config = SkillHostConfig {
            skills: self.skills,
            registry_address: Some(registry.clone()),
            lease_ttl: self.lease_ttl,
            default_call_timeout: self.default_call_timeout,
            state_dir: Some(data.path().join("skill-host")),
            ..SkillHostConfig::default()
        };
        if let Some(configure) = self.configure_skill_host {
            configure(&mut config);
        }
        let skill_host_task = tokio::spawn(mimo_skill_host::serve(
            config,
            reporting,
            skill_host_listener,
            skill_host_shutdown.clone(),
        ));
        Cluster {
            registry,
            telemetry,
            memory,
            skill_host,
            skill_host_task: Some(skill_host_task),
            skill_host_shutdown,
            others,
            others_shutdown,
            _etcd: self.registry_etcd,
            _data: data,
        }
    }
}

/// A service's `serve` future with its error as text, so that every service fits one list.
async fn as_text<E: std::fmt::Display>(
    serve: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    serve.await.map_err(|error| error.to_string())
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// A running set of services; [`Cluster::stop`] ends them and checks they ended cleanly.
#[derive(Debug)]
pub struct Cluster {
    /// Registry address.
    pub registry: String,
    /// Telemetry address.
    pub telemetry: String,
    /// Memory address.
    pub memory: String,
    /// Skill-host address.
    pub skill_host: String,
    skill_host_task: Option<SkillHostHandle>,
    skill_host_shutdown: CancellationToken,
    others: Vec<(&'static str, ServeHandle)>,
    others_shutdown: CancellationToken,
    /// Outlives the registry that uses it.
    _etcd: Option<Arc<EtcdServer>>,
    _data: tempfile::TempDir,
}

async fn channel(address: &str) -> Channel {
    connect::channel(address).await.expect("connect")
}

impl Cluster {
    /// A registry client.
    pub async fn registry(&self) -> RegistryClient<Channel> {
        connect::registry(channel(&self.registry).await)
    }

    /// The skill-host's address.
    pub fn skill_host_address(&self) -> &str {
        &self.skill_host
    }

    /// A skill-host client.
    pub async fn skill_host(&self) -> SkillHostClient<Channel> {
        connect::skill_host(channel(&self.skill_host).await)
    }

    /// A memory client.
    pub async fn memory(&self) -> MemoryClient<Channel> {
        connect::memory(channel(&self.memory).await)
    }

    /// A telemetry client.
    pub async fn telemetry(&self) -> TelemetryClient<Channel> {
        connect::telemetry(channel(&self.telemetry).await)
    }

    /// Stops the skill-host (which revokes its lease and ends its skills) and waits for it.
    pub async fn stop_skill_host(&mut self) {
        self.skill_host_shutdown.cancel();
        if let Some(task) = self.skill_host_task.take() {
            let result = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("skill-host stops within 60 s")
                .expect("skill-host task did not panic");
            result.expect("skill-host served without error");
        }
    }

    /// Stops every service and checks that each one ended without error.
    pub async fn stop(mut self) {
        self.stop_skill_host().await;
        self.others_shutdown.cancel();
        for (name, task) in std::mem::take(&mut self.others) {
            let result = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .unwrap_or_else(|_| panic!("{name} stops within 30 s"))
                .unwrap_or_else(|_| panic!("{name} task did not panic"));
            result.unwrap_or_else(|e| panic!("{name} served without error: {e}"));
        }
    }
}

/// Sends the services' logs to the test output when `MIMO_TEST_LOG` is set; once per process.
pub fn init_test_logging() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("MIMO_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}
