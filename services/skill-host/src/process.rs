//! A skill's operating-system process: spawned in its own process group with a parent-death
//! signal, stopped politely then firmly, and never left behind, grandchildren included.

use crate::group_records::GroupRecords;
use crate::skills_file::SkillSpec;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// Environment variable set in every skill's environment to `RUN.N`: this host run's id and
/// the spawn's number. Every process the skill starts inherits it, even one that leaves the
/// process group (`setsid`), so the host can find and end them when the skill stops, and a
/// later run can tell a killed run's leftovers from anyone else's processes.
pub const RUN_MARKER_VARIABLE: &str = "MIMO_SKILL_HOST_RUN";

/// This process's run id, in every marker it hands out.
pub fn run_id() -> &'static str {
    static RUN_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN_ID.get_or_init(|| uuid::Uuid::now_v7().to_string())
}

/// The marker of the next spawn.
fn next_marker() -> String {
    static SPAWNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let spawn = SPAWNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.{spawn}", run_id())
}

/// Process groups of every skill running in this process, for [`kill_every_skill_group`].
static LIVE_GROUPS: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn live_groups() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u32>> {
    LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGKILLs the process group of every skill this process runs, for an exit that cannot
/// wait for a graceful stop (a second Ctrl-C); returns how many groups were signalled.
pub fn kill_every_skill_group() -> usize {
    let groups = live_groups();
    for pid in groups.iter() {
        if let Ok(pid) = i32::try_from(*pid) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    groups.len()
}

/// A running skill process, leader of its own process group.
#[derive(Debug)]
pub struct SkillProcess {
    child: Child,
    pid: u32,
    /// `RUN_MARKER_VARIABLE=RUN.N`, as it appears in the environment of its processes.
    marker: String,
    records: Option<Arc<GroupRecords>>,
    reaped: bool,
}

/// The pipes of a freshly spawned skill.
#[derive(Debug)]
pub struct SkillPipes {
    /// The skill's stdin (our requests).
    pub stdin: ChildStdin,
    /// The skill's stdout (its answers).
    pub stdout: ChildStdout,
    /// The skill's stderr (its logs).
    pub stderr: ChildStderr,
}

impl SkillProcess {
    /// Spawns `spec` in a new process group with piped stdio and SIGKILL as its parent-death
    /// signal, and records the group in `records` until it is reaped.
    pub fn spawn(
        skill: &str,
        spec: &SkillSpec,
        records: Option<Arc<GroupRecords>>,
    ) -> std::io::Result<(Self, SkillPipes)> {
        let mut command = Command::new(&spec.command);
        command
            .args(&spec.args)
            .envs(&spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let marker = next_marker();
        command.env(RUN_MARKER_VARIABLE, &marker);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        set_parent_death_signal(&mut command);
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or_default();
        live_groups().insert(pid);
        if let Some(records) = &records {
            if let Err(error) = records.record(pid, skill) {
                tracing::warn!(skill, pid, %error, "could not record the skill's process group");
            }
        }
        let pipes = SkillPipes {
            stdin: child.stdin.take().expect("stdin is piped"),
            stdout: child.stdout.take().expect("stdout is piped"),
            stderr: child.stderr.take().expect("stderr is piped"),
        };
        let process = Self {
            child,
            pid,
            marker: format!("{RUN_MARKER_VARIABLE}={marker}"),
            records,
            reaped: false,
        };
        Ok((process, pipes))
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit, then ends whatever it left in its group.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        self.end_group();
        status
    }

    /// Stops the process: (its stdin should already be closed) wait `grace`, SIGTERM the
    /// group, wait `grace`, SIGKILL the group; always reaps the process.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            self.end_group();
            return status;
        }
        self.signal_group(Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            self.end_group();
            return status;
        }
        self.signal_group(Signal::SIGKILL);
        let status = self.child.wait().await;
        self.end_group();
        status
    }

    /// SIGKILLs what is left of the group once its leader is reaped, and any process that
    /// left the group but carries this spawn's marker; forgets the record.
    fn end_group(&mut self) {
        self.signal_group(Signal::SIGKILL);
        for pid in
            crate::group_records::processes_marked_by(std::slice::from_ref(&self.marker), false)
        {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.reaped = true;
        live_groups().remove(&self.pid);
        if let Some(records) = &self.records {
            records.forget(self.pid);
        }
    }

    fn signal_group(&self, signal: Signal) {
        let Ok(pid) = i32::try_from(self.pid) else {
            return;
        };
        if pid <= 0 {
            return;
        }
        // ESRCH (no such group) is the normal case once everything has exited.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

impl Drop for SkillProcess {
    /// A process dropped before it was reaped (its task aborted) takes its group with it;
    /// `kill_on_drop` then kills the leader and tokio reaps it.
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
            live_groups().remove(&self.pid);
            if let Some(records) = &self.records {
                records.forget(self.pid);
            }
        }
    }
}

/// Asks the kernel to SIGKILL the skill when the host dies, even by SIGKILL. Linux ties this
/// to the thread that spawned the child: skills are spawned from tokio worker threads, which
/// live as long as the runtime.
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}
