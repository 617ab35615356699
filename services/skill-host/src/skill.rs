//! One skill: its spec, its state as callers see it, and the supervised task that runs its
//! process from spawn through handshake to exit, restarting it with backoff within limits.

use crate::config::SkillHostConfig;
use crate::error::SkillHostError;
use crate::framing::{BoundedLines, Frame};
use crate::group_records::GroupRecords;
use crate::manifest::{Manifest, ManifestStore};
use crate::mcp::{self, ServerInfo};
use crate::process::SkillProcess;
use crate::rpc::{Connection, RpcError};
use crate::skills_file::SkillSpec;
use futures::StreamExt;
use mimo_proto::v1::{SkillState, SkillStatus, Tool};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::process::ChildStderr;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Longest stderr line kept; longer lines are cut.
const MAX_STDERR_LINE: usize = 4096;
/// How long a failure report waits for the skill's last stderr lines once its group is gone.
const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Stderr lines of one run logged in full; after them one in [`STDERR_LOG_SAMPLE`].
const STDERR_LINES_LOGGED: u64 = 200;
/// One stderr line logged in this many once [`STDERR_LINES_LOGGED`] have been.
const STDERR_LOG_SAMPLE: u64 = 1000;
/// Stderr lines quoted in a failure report.
const STDERR_LINES_REPORTED: usize = 3;

#[derive(Debug, Default)]
struct Status {
    state: SkillState,
    pid: u32,
    error: String,
    tools: Vec<Tool>,
    info: ServerInfo,
    last_exit: String,
    restarts: u32,
    connection: Option<Arc<Connection>>,
}

/// A configured skill and what is known of it now.
#[derive(Debug)]
pub struct Skill {
    name: String,
    spec: SkillSpec,
    status: Mutex<Status>,
    /// The state, for callers waiting for the skill to be ready.
    states: watch::Sender<SkillState>,
    /// The catalogue of the last discovery (this run's or a stored one), served while the
    /// skill is idle or starting.
    manifest: Mutex<Option<Manifest>>,
    /// Woken by a call to an idle lazy skill.
    wake: Notify,
    stderr: Mutex<VecDeque<String>>,
    /// Stderr lines seen over every run, to tell this run's lines from earlier ones.
    stderr_seen: std::sync::atomic::AtomicU64,
    last_stderr_at: Mutex<Option<Instant>>,
    stderr_lines_kept: usize,
}

impl Skill {
    /// Returns a skill that has not started yet, knowing the tools of `manifest` if given.
    pub fn new(
        name: &str,
        spec: SkillSpec,
        manifest: Option<Manifest>,
        stderr_lines_kept: usize,
    ) -> Self {
        let status = Status {
            tools: manifest
                .as_ref()
                .map(|m| m.tools.clone())
                .unwrap_or_default(),
            info: manifest
                .as_ref()
                .map(|m| m.info.clone())
                .unwrap_or_default(),
            ..Status::default()
        };
        Self {
            name: name.to_string(),
            spec,
            status: Mutex::new(status),
            states: watch::Sender::new(SkillState::Unspecified),
            manifest: Mutex::new(manifest),
            wake: Notify::new(),
            stderr: Mutex::new(VecDeque::new()),
            stderr_seen: std::sync::atomic::AtomicU64::new(0),
            last_stderr_at: Mutex::new(None),
            stderr_lines_kept,
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stderr_lines(&self) -> MutexGuard<'_, VecDeque<String>> {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The skill's state and details as the API shows them.
    pub fn snapshot(&self) -> SkillStatus {
        let status = self.status();
        SkillStatus {
            name: self.name.clone(),
            state: status.state.into(),
            pid: status.pid,
            error: status.error.clone(),
            tools: status.tools.clone(),
            server_name: status.info.name.clone(),
            server_version: status.info.version.clone(),
            protocol_version: status.info.protocol_version.clone(),
            recent_stderr: self.stderr_lines().iter().cloned().collect(),
            last_exit: status.last_exit.clone(),
            restarts: status.restarts,
            calls_in_flight: status
                .connection
                .as_ref()
                .map_or(0, |c| c.in_flight() as u32),
            calls_waiting: status.connection.as_ref().map_or(0, |c| c.waiting() as u32),
            instances: Vec::new(),
        }
    }

    /// Restarts after failures since the skill was added.
    pub fn restarts(&self) -> u32 {
        self.status().restarts
    }

    /// The skill's state.
    pub fn state(&self) -> SkillState {
        self.status().state
    }

    /// The tool catalogue to register: the live one while the skill is ready, the one of
    /// its last discovery while it is idle, starting or about to restart; none once it has
    /// failed or stopped.
    pub fn catalog(&self) -> Option<Vec<Tool>> {
        let status = self.status();
        match status.state {
            SkillState::Ready => Some(status.tools.clone()),
            SkillState::Failed | SkillState::Stopped => None,
            SkillState::Unspecified
            | SkillState::Starting
            | SkillState::Backoff
            | SkillState::Idle => self.manifest_tools(),
        }
    }

    fn manifest_tools(&self) -> Option<Vec<Tool>> {
        self.manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|manifest| manifest.tools.clone())
    }

    fn has_manifest(&self) -> bool {
        self.manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The connection for a call of `tool`, once the skill is ready: a call to an idle lazy
    /// skill starts it, and a call to a skill that is starting or about to restart waits
    /// for it, until `deadline`.
    pub async fn connection_for_call(
        &self,
        tool: &str,
        deadline: Instant,
    ) -> Result<Arc<Connection>, SkillHostError> {
        let mut states = self.states.subscribe();
        loop {
            let state = *states.borrow_and_update();
            if matches!(
                state,
                SkillState::Ready | SkillState::Failed | SkillState::Stopped
            ) {
                return self.connection_for(tool);
            }
            // Not running yet: a tool the last discovery did not list starts nothing.
            if let Some(tools) = self.manifest_tools() {
                if !tools.iter().any(|t| t.name == tool) {
                    return Err(SkillHostError::ToolNotFound {
                        skill: self.name.clone(),
                        tool: tool.to_string(),
                        tools: tools
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            if state == SkillState::Idle {
                self.wake.notify_waiters();
            }
            match tokio::time::timeout_at(deadline, states.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return self.connection_for(tool),
                Err(_) => {
                    return Err(SkillHostError::NotReadyInTime {
                        skill: self.name.clone(),
                        state: state_word(self.state()),
                    })
                }
            }
        }
    }

    /// The current connection's counters, if the skill is running.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.status().connection.clone()
    }

    /// The connection to use for a call of `tool`, if the skill is ready and has it.
    pub fn connection_for(&self, tool: &str) -> Result<Arc<Connection>, SkillHostError> {
        let status = self.status();
        let connection = match (&status.connection, status.state) {
            (Some(connection), SkillState::Ready) => connection.clone(),
            (_, state) => {
                return Err(SkillHostError::SkillUnavailable {
                    skill: self.name.clone(),
                    state: state_word(state),
                    reason: if status.error.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", status.error)
                    },
                })
            }
        };
        drop(status);
        self.check_tool(tool)?;
        Ok(connection)
    }

    /// Refuses a tool the skill does not list.
    pub fn check_tool(&self, tool: &str) -> Result<(), SkillHostError> {
        let status = self.status();
        if status.tools.iter().any(|t| t.name == tool) {
            return Ok(());
        }
        Err(SkillHostError::ToolNotFound {
            skill: self.name.clone(),
            tool: tool.to_string(),
            tools: status
                .tools
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn set(&self, update: impl FnOnce(&mut Status)) {
        let state = {
            let mut status = self.status();
            update(&mut status);
            status.state
        };
        self.states.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }

    /// Records what discovery found, for later starts and for the registry meanwhile.
    fn remember(&self, manifest: Manifest, runtime: &SkillRuntime) {
        if let Some(store) = &runtime.manifests {
            store.save(&self.name, &self.spec, &manifest);
        }
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = Some(manifest);
    }

    fn fail(&self, error: String) {
        tracing::error!(skill = %self.name, %error, alert = "skill_failed", "skill failed");
        self.set(|s| {
            s.state = SkillState::Failed;
            s.error = error;
            s.connection = None;
            s.pid = 0;
        });
    }

    /// "; last stderr lines: a | b" of this run (whose first line was number `first_line`),
    /// once the skill's stderr has been read to its end (or after [`STDERR_DRAIN_TIMEOUT`]),
    /// so that a failure names what the skill said last.
    async fn stderr_tail(&self, stderr_closed: &CancellationToken, first_line: u64) -> String {
        let _ = tokio::time::timeout(STDERR_DRAIN_TIMEOUT, stderr_closed.cancelled()).await;
        let this_run = self
            .stderr_seen
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(first_line) as usize;
        let lines = self.stderr_lines();
        let quoted = this_run.min(STDERR_LINES_REPORTED).min(lines.len());
        if quoted == 0 {
            return String::new();
        }
        let tail: Vec<&str> = lines
            .iter()
            .skip(lines.len() - quoted)
            .map(String::as_str)
            .collect();
        format!("; last stderr lines: {}", tail.join(" | "))
    }

    fn keep_stderr_line(&self, line: String) {
        self.stderr_seen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self
            .last_stderr_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut lines = self.stderr_lines();
        if lines.len() == self.stderr_lines_kept {
            lines.pop_front();
        }
        if self.stderr_lines_kept > 0 {
            lines.push_back(line);
        }
    }

    fn last_stderr_at(&self) -> Option<Instant> {
        *self
            .last_stderr_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn state_word(state: SkillState) -> &'static str {
    match state {
        SkillState::Unspecified => "not started",
        SkillState::Starting => "still starting",
        SkillState::Ready => "ready",
        SkillState::Failed => "failed",
        SkillState::Stopped => "stopped",
        SkillState::Backoff => "waiting to restart",
        SkillState::Idle => "idle",
    }
}

/// What the host needs to run skills: settings, where to record process groups, and whom
/// to wake when a catalogue changes.
#[derive(Debug, Clone)]
pub struct SkillRuntime {
    /// The host's settings.
    pub config: Arc<SkillHostConfig>,
    /// Records of running process groups, when the host keeps state.
    pub records: Option<Arc<GroupRecords>>,
    /// Stored tool manifests, when the host keeps state.
    pub manifests: Option<ManifestStore>,
    /// Woken at every change the registry should hear of.
    pub catalog_changed: Arc<Notify>,
}

/// How one run of a skill's process ended.
enum RunEnd {
    /// Stopped on purpose.
    Stopped,
    /// A lazy skill stopped after its idle time.
    Idle,
    /// Failed to start or ended on its own; the reason.
    Failed(String),
}

/// Runs the skill until `stop` fires, restarting it with exponential backoff when it fails,
/// at most `max_restarts` times within `restart_window`; past that it stays failed. The
/// process and its group never outlive this task.
pub async fn supervise_skill(skill: Arc<Skill>, runtime: SkillRuntime, stop: CancellationToken) {
    let config = runtime.config.clone();
    let mut recent_restarts: VecDeque<Instant> = VecDeque::new();
    loop {
        if skill.spec.lazy && skill.has_manifest() {
            // Listen before showing Idle, so that no caller's wake-up falls in between; wake-ups
            // go only to a listener (never stored), so a burst of callers starts one run.
            let wake = skill.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            skill.set(|s| {
                s.state = SkillState::Idle;
                s.pid = 0;
                s.connection = None;
            });
            runtime.catalog_changed.notify_one();
            tokio::select! {
                () = stop.cancelled() => {
                    skill.set(|s| s.state = SkillState::Stopped);
                    runtime.catalog_changed.notify_one();
                    return;
                }
                () = &mut wake => {
                    tracing::info!(skill = %skill.name, "lazy skill called; starting it");
                }
            }
        }
        let reason = match run_once(&skill, &runtime, &stop).await {
            RunEnd::Stopped => return,
            RunEnd::Idle => continue,
            RunEnd::Failed(reason) => reason,
        };
        runtime.catalog_changed.notify_one();
        let now = Instant::now();
        while recent_restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > config.restart_window)
        {
            recent_restarts.pop_front();
        }
        if recent_restarts.len() >= config.max_restarts as usize {
            skill.fail(format!(
                "{reason}; not restarted again: {} restarts within {:?} is the limit",
                recent_restarts.len(),
                config.restart_window
            ));
            return;
        }
        let delay = restart_delay(&config, recent_restarts.len());
        tracing::warn!(skill = %skill.name, %reason, delay_ms = delay.as_millis() as u64, "skill failed; restarting");
        skill.set(|s| {
            s.state = SkillState::Backoff;
            s.error = reason;
            s.connection = None;
            s.pid = 0;
        });
        tokio::select! {
            () = stop.cancelled() => {
                skill.set(|s| s.state = SkillState::Stopped);
                return;
            }
            () = tokio::time::sleep(delay) => {}
        }
        recent_restarts.push_back(Instant::now());
        skill.set(|s| s.restarts += 1);
    }
}

/// `restart_backoff` doubled for each restart already made in the window, capped.
fn restart_delay(config: &SkillHostConfig, restarts_in_window: usize) -> Duration {
    let factor = 1u32 << restarts_in_window.min(16);
    config
        .restart_backoff
        .saturating_mul(factor)
        .min(config.restart_backoff_max)
}

/// Spawns the skill, performs the handshake and serves it until it ends or `stop` fires.
async fn run_once(skill: &Arc<Skill>, runtime: &SkillRuntime, stop: &CancellationToken) -> RunEnd {
    let config = &runtime.config;
    let mut io = JoinSet::new();
    if let Some(cwd) = skill.spec.cwd.as_ref().filter(|cwd| !cwd.is_dir()) {
        return RunEnd::Failed(format!(
            "cannot start {:?}: its working directory (cwd) {} is not a folder",
            skill.spec.command,
            cwd.display()
        ));
    }
    let first_stderr_line = skill.stderr_seen.load(std::sync::atomic::Ordering::Relaxed);
    let spawned = SkillProcess::spawn(&skill.name, &skill.spec, runtime.records.clone());
    let (mut process, pipes) = match spawned {
        Ok(spawned) => spawned,
        Err(error) => {
            return RunEnd::Failed(format!("cannot start {:?}: {error}", skill.spec.command))
        }
    };
    let pid = process.pid();
    tracing::info!(skill = %skill.name, pid, command = %skill.spec.command, "skill starting");
    skill.set(|s| {
        s.state = SkillState::Starting;
        s.pid = pid;
        s.last_exit.clear();
    });
    let stderr_closed = CancellationToken::new();
    io.spawn(keep_stderr(
        skill.clone(),
        pipes.stderr,
        stderr_closed.clone().drop_guard(),
    ));
    let connection = Connection::start(
        &skill.name,
        pipes.stdout,
        pipes.stdin,
        config.connection_limits(),
        &mut io,
    );
    let started = Instant::now();
    let hard_deadline = started + config.initialize_timeout_max;
    let handshake = async {
        let info = mcp::initialize(&connection, hard_deadline).await?;
        let tools = mcp::list_tools(&connection, hard_deadline).await?;
        Ok::<_, mcp::McpError>((info, tools))
    };
    let outcome = tokio::select! {
        () = stop.cancelled() => None,
        outcome = handshake => Some(outcome.map_err(|error| ServeEnd::Failed(format!("MCP handshake failed: {error}")))),
        status = process.wait() => Some(Err(ServeEnd::Failed(format!(
            "exited during the MCP handshake ({})", describe_exit(status)
        )))),
        () = start_timeout(skill, config, started) => Some(Err(ServeEnd::Failed(format!(
            "MCP handshake failed: no answer to initialize within {:?} (the start timeout; stderr activity extends it up to {:?})",
            config.initialize_timeout, config.initialize_timeout_max
        )))),
    };
    let failure = match outcome {
        None => None,
        Some(Err(error)) => Some(error),
        Some(Ok((info, tools))) => {
            tracing::info!(skill = %skill.name, pid, server = %info.name, version = %info.version,
                protocol = %info.protocol_version, tools = tools.len(), "skill ready");
            skill.remember(
                Manifest {
                    info: info.clone(),
                    tools: tools.clone(),
                },
                runtime,
            );
            skill.set(|s| {
                s.state = SkillState::Ready;
                s.error.clear();
                s.info = info;
                s.tools = tools;
                s.connection = Some(connection.clone());
            });
            runtime.catalog_changed.notify_one();
            serve_until_exit(skill, &connection, &mut process, runtime, stop).await
        }
    };
    let went_idle = matches!(failure, Some(ServeEnd::Idle));
    let failure = match failure {
        Some(ServeEnd::Failed(reason)) => Some(reason),
        Some(ServeEnd::Idle) | None => None,
    };
    connection.close_stdin();
    let exit = describe_exit(process.stop(config.stop_grace).await);
    skill.set(|s| {
        s.connection = None;
        s.pid = 0;
        s.last_exit = exit.clone();
        if went_idle {
            s.state = SkillState::Idle;
        } else if failure.is_some() {
            // Not ready from this moment on; the supervisor decides between a restart and
            // giving up.
            s.state = SkillState::Backoff;
        }
    });
    let Some(failure) = failure else {
        connection.fail_all_pending(&RpcError::Exited(format!("the skill was stopped; {exit}")));
        if went_idle {
            tracing::info!(skill = %skill.name, pid, %exit, "lazy skill idle; stopped");
            return RunEnd::Idle;
        }
        tracing::info!(skill = %skill.name, pid, %exit, "skill stopped");
        skill.set(|s| s.state = SkillState::Stopped);
        runtime.catalog_changed.notify_one();
        return RunEnd::Stopped;
    };
    let stderr = skill.stderr_tail(&stderr_closed, first_stderr_line).await;
    // A failure seen as the process's exit names the exit status already.
    let report = if failure.contains(&exit) {
        format!("{failure}{stderr}")
    } else {
        format!("{failure} (process {exit}){stderr}")
    };
    connection.fail_all_pending(&RpcError::Exited(format!("{exit}{stderr}")));
    RunEnd::Failed(report)
}

/// Fires when the skill has been silent for `initialize_timeout` since it started or last
/// wrote to stderr, or at `initialize_timeout_max` whatever it wrote.
async fn start_timeout(skill: &Skill, config: &SkillHostConfig, started: Instant) {
    let hard_deadline = started + config.initialize_timeout_max;
    loop {
        let last_activity = skill.last_stderr_at().filter(|at| *at > started);
        let idle_deadline = last_activity.unwrap_or(started) + config.initialize_timeout;
        let deadline = idle_deadline.min(hard_deadline);
        tokio::time::sleep_until(deadline).await;
        let newer = skill.last_stderr_at().filter(|at| *at > started) != last_activity;
        if !newer || Instant::now() >= hard_deadline {
            return;
        }
    }
}

/// Why a ready skill stopped serving.
enum ServeEnd {
    /// A lazy skill had no call for its idle time.
    Idle,
    /// Its process exited or its stdout closed; why.
    Failed(String),
}

/// Serves a ready skill until `stop` (returns `None`), until its process exits or its stdout
/// closes, or, for a lazy skill, until it has been idle for `lazy_idle_timeout`.
async fn serve_until_exit(
    skill: &Skill,
    connection: &Connection,
    process: &mut SkillProcess,
    runtime: &SkillRuntime,
    stop: &CancellationToken,
) -> Option<ServeEnd> {
    let tools_changed = connection.tools_changed();
    let idle_timeout = runtime.config.lazy_idle_timeout;
    loop {
        let idle_check = async {
            if !skill.spec.lazy {
                return std::future::pending().await;
            }
            let idle = connection.idle_for();
            if idle < idle_timeout {
                tokio::time::sleep(idle_timeout - idle).await;
            }
        };
        tokio::select! {
            () = stop.cancelled() => return None,
            status = process.wait() => {
                return Some(ServeEnd::Failed(format!("exited unexpectedly ({})", describe_exit(status))));
            }
            () = connection.closed().cancelled() => {
                return Some(ServeEnd::Failed("closed its stdout while running".to_string()));
            }
            () = idle_check => {
                if connection.idle_for() >= idle_timeout {
                    return Some(ServeEnd::Idle);
                }
            }
            () = tools_changed.notified() => {
                let deadline = Instant::now() + runtime.config.initialize_timeout;
                match mcp::list_tools(connection, deadline).await {
                    Ok(tools) => {
                        let changed = skill.status().tools != tools;
                        if changed {
                            tracing::info!(skill = %skill.name, tools = tools.len(), "skill's tools changed");
                            let info = skill.status().info.clone();
                            skill.remember(Manifest { info, tools: tools.clone() }, runtime);
                            skill.set(|s| s.tools = tools);
                            runtime.catalog_changed.notify_one();
                        }
                    }
                    Err(error) => tracing::warn!(skill = %skill.name, %error, "could not list the skill's changed tools"),
                }
            }
        }
    }
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown exit: {error}"),
    }
}

/// Logs and keeps each stderr line of the skill; `_closed` fires when stderr reaches its end.
async fn keep_stderr(skill: Arc<Skill>, stderr: ChildStderr, _closed: tokio_util::sync::DropGuard) {
    // The bounded framing drops an over-long line and keeps reading: stderr is always drained.
    let mut lines = FramedRead::new(stderr, BoundedLines::new(MAX_STDERR_LINE));
    let mut seen: u64 = 0;
    while let Some(frame) = lines.next().await {
        let line = match frame {
            Ok(Frame::Line(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Frame::Oversized { length, .. }) => {
                format!("(a line of {length} bytes, over the {MAX_STDERR_LINE}-byte limit, was dropped)")
            }
            Err(_) => break,
        };
        seen += 1;
        // A chatty skill must not flood the host's log: the first lines, then a sample.
        if seen <= STDERR_LINES_LOGGED || seen.is_multiple_of(STDERR_LOG_SAMPLE) {
            tracing::info!(skill = %skill.name, stderr = %line, lines = seen, "skill stderr");
        }
        skill.keep_stderr_line(line);
    }
}
