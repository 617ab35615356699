//! Records of the process groups a host run has started, kept on disk so that the next run
//! can end what a killed run left behind. Each skill's environment carries the run's id
//! ([`RUN_MARKER_VARIABLE`]), so leftovers are told apart from unrelated processes that
//! happen to reuse an id, and grandchildren that left the group are found too.

use crate::process::RUN_MARKER_VARIABLE;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The process-group records of this host run, under a state folder it holds locked.
#[derive(Debug)]
pub struct GroupRecords {
    folder: PathBuf,
    run_id: String,
    _lock: File,
}

/// What [`GroupRecords::end_leftovers`] found of earlier runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Records of earlier runs read.
    pub records: usize,
    /// Processes of earlier runs still alive, now sent SIGKILL.
    pub killed: Vec<u32>,
}

/// Why the state folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupRecordsError {
    /// The folder or its lock file could not be made.
    #[error("cannot use skill-host state folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another running skill-host holds the folder.
    #[error("skill-host state folder {0} is in use by another running skill-host; give each host its own")]
    InUse(PathBuf),
}

impl GroupRecords {
    /// Locks `state_dir` for this run (creating it) and returns an empty record set.
    pub fn open(state_dir: &Path) -> Result<Self, GroupRecordsError> {
        let io_error = |source| GroupRecordsError::Io {
            path: state_dir.to_path_buf(),
            source,
        };
        let folder = state_dir.join("process-groups");
        fs::create_dir_all(&folder).map_err(io_error)?;
        let lock = File::create(state_dir.join("skill-host.lock")).map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(GroupRecordsError::InUse(state_dir.to_path_buf()))
            }
            Err(fs::TryLockError::Error(error)) => return Err(io_error(error)),
        }
        Ok(Self {
            folder,
            run_id: crate::process::run_id().to_string(),
            _lock: lock,
        })
    }

    /// Records that `pid` leads the process group of `skill`.
    pub fn record(&self, pid: u32, skill: &str) -> io::Result<()> {
        fs::write(
            self.folder.join(pid.to_string()),
            format!("{}\n{skill}\n", self.run_id),
        )
    }

    /// Forgets the group of `pid` once it is gone.
    pub fn forget(&self, pid: u32) {
        let _ = fs::remove_file(self.folder.join(pid.to_string()));
    }

    /// Ends every live process that an earlier run started (found by the run ids in its
    /// records) and removes those records.
    pub fn end_leftovers(&self) -> Leftovers {
        let mut leftovers = Leftovers::default();
        let Ok(entries) = fs::read_dir(&self.folder) else {
            return leftovers;
        };
        let mut old_runs = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(text) = fs::read_to_string(&path) {
                if let Some(run) = text.lines().next().filter(|run| *run != self.run_id) {
                    old_runs.push(format!("{RUN_MARKER_VARIABLE}={run}."));
                    leftovers.records += 1;
                    let _ = fs::remove_file(&path);
                }
            }
        }
        if old_runs.is_empty() {
            return leftovers;
        }
        old_runs.sort();
        old_runs.dedup();
        leftovers.killed = processes_marked_by(&old_runs, true);
        for pid in &leftovers.killed {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        leftovers
    }
}

/// The processes whose environment holds one of `markers` (`NAME=value` entries), or, with
/// `prefix`, an entry that starts with one.
pub(crate) fn processes_marked_by(markers: &[String], prefix: bool) -> Vec<u32> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let own = std::process::id();
    processes
        .flatten()
        .filter(|process| process.pid as u32 != own)
        .filter(|process| {
            process.environ().is_ok_and(|environment| {
                environment.iter().any(|(name, value)| {
                    let entry = format!("{}={}", name.to_string_lossy(), value.to_string_lossy());
                    markers.iter().any(|marker| {
                        if prefix {
                            entry.starts_with(marker.as_str())
                        } else {
                            entry == *marker
                        }
                    })
                })
            })
        })
        .map(|process| process.pid as u32)
        .collect()
}
