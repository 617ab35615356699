//! A real etcd (Debian's `etcd-server`, unpacked by `scripts/install-test-deps.sh`) on
//! loopback ports with its data in a temporary folder, killed with its folder on drop.

use crate::servers::{required, test_variables};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer after it was started.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// One single-member etcd cluster.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_address: String,
    peer_url: String,
    _data: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and returns once it serves requests.
    pub async fn start() -> EtcdServer {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let data = tempfile::tempdir().expect("etcd data folder");
        let child = spawn(&data, &client, &peer);
        let mut server = EtcdServer {
            child,
            client_address: client.trim_start_matches("http://").to_string(),
            peer_url: peer,
            _data: data,
        };
        server.wait_until_serving().await;
        server
    }

    /// Kills etcd and starts a new one on the same ports with an empty data folder: as if the
    /// cluster lost its data, or was restored from a backup older than anything since.
    pub async fn replace_with_an_empty_one(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = tempfile::tempdir().expect("etcd data folder");
        self.child = spawn(
            &data,
            &format!("http://{}", self.client_address),
            &self.peer_url,
        );
        self._data = data;
        self.wait_until_serving().await;
    }

    /// Process id of the etcd server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` of the client endpoint.
    pub fn address(&self) -> &str {
        &self.client_address
    }

    async fn wait_until_serving(&mut self) {
        use mimo_etcd::etcdserverpb::{kv_client::KvClient, RangeRequest};
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("etcd status") {
                panic!("etcd exited at start ({status}); see its log in the data folder");
            }
            let endpoint = format!("http://{}", self.client_address);
            if let Ok(mut kv) = KvClient::connect(endpoint).await {
                let probe = RangeRequest {
                    key: b"/probe".to_vec(),
                    ..RangeRequest::default()
                };
                if kv.range(probe).await.is_ok() {
                    return;
                }
            }
            assert!(
                started.elapsed() < START_PATIENCE,
                "etcd did not serve within {START_PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data: &tempfile::TempDir, client: &str, peer: &str) -> Child {
    let binary = required(&test_variables(), "MIMO_TEST_ETCD");
    let log = std::fs::File::create(data.path().join("etcd.log")).expect("etcd log");
    Command::new(&binary)
        .arg("--name=mimo-test")
        .arg(format!("--data-dir={}", data.path().join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=mimo-test={peer}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
