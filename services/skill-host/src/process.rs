//! A skill's operating-system process: spawned in its own process group, stopped politely
//! then firmly, and never left behind, grandchildren included.

use crate::skills_file::SkillSpec;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// A running skill process, leader of its own process group.
#[derive(Debug)]
pub struct SkillProcess {
    child: Child,
    pid: u32,
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
    /// Spawns `spec` in a new process group with piped stdio.
    pub fn spawn(spec: &SkillSpec) -> std::io::Result<(Self, SkillPipes)> {
        let mut command = Command::new(&spec.command);
        command
            .args(&spec.args)
            .envs(&spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or_default();
        let pipes = SkillPipes {
            stdin: child.stdin.take().expect("stdin is piped"),
            stdout: child.stdout.take().expect("stdout is piped"),
            stderr: child.stderr.take().expect("stderr is piped"),
        };
        Ok((Self { child, pid }, pipes))
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit, then ends whatever it left in its group.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        self.signal_group(Signal::SIGKILL);
        status
    }

    /// Stops the process: (its stdin should already be closed) wait `grace`, SIGTERM the
    /// group, wait `grace`, SIGKILL the group; always reaps the process.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            self.signal_group(Signal::SIGKILL);
            return status;
        }
        self.signal_group(Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            self.signal_group(Signal::SIGKILL);
            return status;
        }
        self.signal_group(Signal::SIGKILL);
        self.child.wait().await
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
