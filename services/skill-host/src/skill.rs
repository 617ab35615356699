//! One skill: its spec, its state as callers see it, and the task that runs its process
//! from spawn through handshake to exit.

use crate::config::SkillHostConfig;
use crate::error::SkillHostError;
use crate::mcp::{self, ServerInfo};
use crate::process::SkillProcess;
use crate::rpc::{truncate, Connection};
use crate::skills_file::SkillSpec;
use futures::StreamExt;
use mimo_proto::v1::{SkillState, SkillStatus, Tool};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::process::ChildStderr;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

/// Longest stderr line kept; longer lines are cut.
const MAX_STDERR_LINE: usize = 4096;

/// How long a failure report waits for the skill's last stderr lines once its group is gone.
const STDERR_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Default)]
struct Status {
    state: SkillState,
    pid: u32,
    error: String,
    tools: Vec<Tool>,
    info: ServerInfo,
    last_exit: String,
    connection: Option<Arc<Connection>>,
}

/// The host's skills by name.
pub type SkillTable = std::collections::BTreeMap<String, Arc<Skill>>;

/// A configured skill and what is known of it now.
#[derive(Debug)]
pub struct Skill {
    name: String,
    spec: SkillSpec,
    status: Mutex<Status>,
    stderr: Mutex<VecDeque<String>>,
    stderr_lines_kept: usize,
}

impl Skill {
    /// Returns a skill that has not started yet.
    pub fn new(name: &str, spec: SkillSpec, stderr_lines_kept: usize) -> Self {
        Self {
            name: name.to_string(),
            spec,
            status: Mutex::new(Status::default()),
            stderr: Mutex::new(VecDeque::new()),
            stderr_lines_kept,
        }
    }

    /// The skill's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
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
            recent_stderr: self
                .stderr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
            last_exit: status.last_exit.clone(),
        }
    }

    /// The skill's state.
    pub fn state(&self) -> SkillState {
        self.status().state
    }

    /// The tool catalogue while the skill is ready.
    pub fn catalog(&self) -> Option<Vec<Tool>> {
        let status = self.status();
        (status.state == SkillState::Ready).then(|| status.tools.clone())
    }

    /// Answers the skill sent after their caller gave up, since it last started.
    pub fn late_answers(&self) -> u64 {
        self.status().connection.as_ref().map_or(0, |c| {
            c.counters()
                .late_answers
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Calls in flight to this skill now.
    pub fn in_flight(&self) -> usize {
        self.status()
            .connection
            .as_ref()
            .map_or(0, |c| c.in_flight())
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
        if !status.tools.iter().any(|t| t.name == tool) {
            return Err(SkillHostError::ToolNotFound {
                skill: self.name.clone(),
                tool: tool.to_string(),
                tools: status
                    .tools
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(connection)
    }

    fn set(&self, update: impl FnOnce(&mut Status)) {
        update(&mut self.status());
    }

    fn fail(&self, error: String) {
        tracing::error!(skill = %self.name, %error, "skill failed");
        self.set(|s| {
            s.state = SkillState::Failed;
            s.error = error;
            s.connection = None;
            s.pid = 0;
        });
    }

    fn last_stderr_line(&self) -> Option<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .back()
            .cloned()
    }

    fn keep_stderr_line(&self, line: String) {
        let mut lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == self.stderr_lines_kept {
            lines.pop_front();
        }
        if self.stderr_lines_kept > 0 {
            lines.push_back(line);
        }
    }
}

fn state_word(state: SkillState) -> &'static str {
    match state {
        SkillState::Unspecified => "not started",
        SkillState::Starting => "still starting",
        SkillState::Ready => "ready",
        SkillState::Failed => "failed",
        SkillState::Stopped => "stopped",
    }
}

/// Runs the skill until it exits or `shutdown` fires: spawn, handshake, discover tools,
/// serve, follow `tools/list_changed`; `catalog_changed` is woken at every change that
/// the registry should hear of. The process and its group never outlive this task.
pub async fn run_skill(
    skill: Arc<Skill>,
    config: Arc<SkillHostConfig>,
    catalog_changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut io = JoinSet::new();
    let (mut process, pipes) = match SkillProcess::spawn(&skill.spec) {
        Ok(spawned) => spawned,
        Err(error) => {
            skill.fail(format!("cannot start {:?}: {error}", skill.spec.command));
            return;
        }
    };
    let pid = process.pid();
    tracing::info!(skill = %skill.name, pid, command = %skill.spec.command, "skill starting");
    skill.set(|s| {
        s.state = SkillState::Starting;
        s.pid = pid;
        s.error.clear();
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
        config.max_in_flight_per_skill,
        &mut io,
    );
    let deadline = Instant::now() + config.initialize_timeout;
    let handshake = async {
        let info = mcp::initialize(&connection, deadline).await?;
        let tools = mcp::list_tools(&connection, deadline).await?;
        Ok::<_, mcp::McpError>((info, tools))
    };
    let outcome = tokio::select! {
        () = shutdown.cancelled() => None,
        outcome = handshake => Some(outcome),
    };
    match outcome {
        None => {}
        Some(Ok((info, tools))) => {
            tracing::info!(skill = %skill.name, pid, server = %info.name, version = %info.version,
                protocol = %info.protocol_version, tools = tools.len(), "skill ready");
            skill.set(|s| {
                s.state = SkillState::Ready;
                s.info = info;
                s.tools = tools;
                s.connection = Some(connection.clone());
            });
            catalog_changed.notify_one();
            if let Some(exit) = serve_until_exit(
                &skill,
                &connection,
                &mut process,
                &config,
                &catalog_changed,
                &shutdown,
            )
            .await
            {
                let stderr = last_stderr_words(&skill, &stderr_closed).await;
                skill.set(|s| s.last_exit = exit.clone());
                skill.fail(format!("exited unexpectedly ({exit}){stderr}"));
                catalog_changed.notify_one();
                return;
            }
        }
        Some(Err(error)) => {
            connection.close_stdin();
            let exit = describe_exit(process.stop(config.stop_grace).await);
            let stderr = last_stderr_words(&skill, &stderr_closed).await;
            skill.set(|s| s.last_exit = exit.clone());
            skill.fail(format!(
                "MCP handshake failed: {error} (process {exit}){stderr}"
            ));
            return;
        }
    }
    connection.close_stdin();
    let exit = describe_exit(process.stop(config.stop_grace).await);
    tracing::info!(skill = %skill.name, pid, %exit, "skill stopped");
    skill.set(|s| {
        s.state = SkillState::Stopped;
        s.connection = None;
        s.pid = 0;
        s.last_exit = exit;
    });
    catalog_changed.notify_one();
}

/// Serves a ready skill until shutdown (returns `None`) or until its process exits
/// (returns the exit description).
async fn serve_until_exit(
    skill: &Skill,
    connection: &Connection,
    process: &mut SkillProcess,
    config: &SkillHostConfig,
    catalog_changed: &Notify,
    shutdown: &CancellationToken,
) -> Option<String> {
    let tools_changed = connection.tools_changed();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            status = process.wait() => return Some(describe_exit(status)),
            () = tools_changed.notified() => {
                let deadline = Instant::now() + config.initialize_timeout;
                match mcp::list_tools(connection, deadline).await {
                    Ok(tools) => {
                        let changed = skill.status().tools != tools;
                        if changed {
                            tracing::info!(skill = %skill.name, tools = tools.len(), "skill's tools changed");
                            skill.set(|s| s.tools = tools);
                            catalog_changed.notify_one();
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

/// "; last stderr line: ..." once the skill's stderr has been read to its end (or after
/// [`STDERR_DRAIN_TIMEOUT`]), so that a failure names what the skill said last.
async fn last_stderr_words(skill: &Skill, stderr_closed: &CancellationToken) -> String {
    let _ = tokio::time::timeout(STDERR_DRAIN_TIMEOUT, stderr_closed.cancelled()).await;
    skill
        .last_stderr_line()
        .map(|line| format!("; last stderr line: {line}"))
        .unwrap_or_default()
}

/// Logs and keeps each stderr line of the skill; `_closed` fires when stderr reaches its end.
async fn keep_stderr(skill: Arc<Skill>, stderr: ChildStderr, _closed: tokio_util::sync::DropGuard) {
    let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_STDERR_LINE));
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => {
                let line = truncate(&line, MAX_STDERR_LINE).to_string();
                tracing::info!(skill = %skill.name, stderr = %line, "skill stderr");
                skill.keep_stderr_line(line);
            }
            Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded) => {
                skill
                    .keep_stderr_line(format!("(a line over {MAX_STDERR_LINE} bytes was dropped)"));
            }
            Err(tokio_util::codec::LinesCodecError::Io(_)) => break,
        }
    }
}
