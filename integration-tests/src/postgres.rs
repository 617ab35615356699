//! A real PostgreSQL server (the machine's, or Debian's package unpacked by
//! `scripts/install-test-deps.sh`) on a loopback port, its cluster in a temporary folder,
//! stopped with its folder on drop. PostgreSQL refuses to run as root: under root the
//! server runs as `nobody`.

use crate::servers::{required, test_variables};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections after it was started.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// How long a stopped server may take to exit before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(20);
/// The user owning the server's files and process when the tests run as root.
const NOBODY: u32 = 65534;
/// The cluster's superuser, with trust authentication on loopback.
const USER: &str = "mimo";

/// One PostgreSQL cluster.
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    folder: tempfile::TempDir,
    databases: u32,
}

impl PostgresServer {
    /// Creates a cluster and starts its server; returns once it accepts connections.
    pub async fn start() -> PostgresServer {
        let folder = tempfile::tempdir().expect("postgres folder");
        let as_root = nix::unistd::geteuid().is_root();
        if as_root {
            std::os::unix::fs::chown(folder.path(), Some(NOBODY), Some(NOBODY))
                .expect("hand the folder to nobody");
        }
        let data = folder.path().join("data");
        let output = server_command("initdb", as_root)
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = PostgresServer {
            child: None,
            port: free_port(),
            folder,
            databases: 0,
        };
        server.resume().await;
        server
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub async fn create_database(&mut self) -> String {
        use sqlx::Connection;
        self.databases += 1;
        let name = format!("memory_{}", self.databases);
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the postgres database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a database");
        admin.close().await.expect("close");
        self.url(&name)
    }

    /// Stops the server (a fast shutdown: connections are cut), keeping its data.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    /// Starts the server again on the same port and data; returns once it accepts
    /// connections.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "the server runs already");
        let log = std::fs::File::create(self.folder.path().join("postgres.log")).expect("log");
        let child = server_command("postgres", nix::unistd::geteuid().is_root())
            .arg("-D")
            .arg(self.folder.path().join("data"))
            .arg("-k")
            .arg(self.folder.path())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        self.child = Some(child);
        self.wait_until_serving().await;
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("postgres.log")).unwrap_or_default()
    }

    async fn wait_until_serving(&mut self) {
        use sqlx::Connection;
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().expect("postgres status") {
                panic!("postgres exited at start ({status}): {}", self.log());
            }
            if let Ok(connection) = sqlx::PgConnection::connect(&self.url("postgres")).await {
                let _ = connection.close().await;
                return;
            }
            assert!(
                started.elapsed() < START_PATIENCE,
                "postgres did not accept connections within {START_PATIENCE:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.pause();
    }
}

/// The server program `name`, run as `nobody` when the tests run as root.
fn server_command(name: &str, as_root: bool) -> Command {
    let folder = PathBuf::from(required(&test_variables(), "MIMO_TEST_POSTGRES_BIN"));
    let mut command = Command::new(Path::new(&folder).join(name));
    if as_root {
        command.uid(NOBODY).gid(NOBODY);
    }
    command
}

/// Asks the server for a fast shutdown (SIGINT), and kills it should it not exit in time.
fn stop(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
    let started = Instant::now();
    while started.elapsed() < STOP_PATIENCE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
