//! One memory process per SQLite file: an exclusive lock on `<database>.lock` (which names
//! the holder's pid) and one on the database file itself (which catches another name of the
//! same file, a hard link), held for as long as the store is open. A second process opening
//! the same file is refused instead of sharing it while its in-memory index goes stale.
//!
//! The database file's lock is a BSD `flock`, independent of SQLite's POSIX locks; its
//! handle is closed only after the store's connections (closing any handle of a file drops
//! the process's POSIX locks on it).

use crate::error::MemoryError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while the store is open; the lock goes with the file handle.
#[derive(Debug)]
pub(crate) struct InstanceLock {
    _file: File,
    _database: File,
}

/// The lock file beside `database`.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The path of `database` with every symbolic link resolved, so that two names of one file
/// share one lock (a hard link is still another name: its lock is its own).
fn resolved(database: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(database) {
        return real;
    }
    match (database.parent(), database.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .map_or_else(|_| database.to_path_buf(), |real| real.join(name)),
        _ => database.to_path_buf(),
    }
}

/// Takes the lock of `database`, or says which process holds it.
pub(crate) fn acquire(database: &Path) -> Result<InstanceLock, MemoryError> {
    let path = lock_path(&resolved(database));
    let lock_error = |source| MemoryError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(lock_error)?;
            file.rewind().map_err(lock_error)?;
            write!(file, "{}", std::process::id()).map_err(lock_error)?;
            let database_file = lock_database_file(database)?;
            Ok(InstanceLock {
                _file: file,
                _database: database_file,
            })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(MemoryError::InUse {
                database: database.to_path_buf(),
                holder: holder.trim().to_string(),
            })
        }
        Err(TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

/// Locks the database file itself (creating it empty when missing, which SQLite takes as a
/// new database).
fn lock_database_file(database: &Path) -> Result<File, MemoryError> {
    let lock_error = |source| MemoryError::Lock {
        path: database.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(database)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(MemoryError::InUse {
            database: database.to_path_buf(),
            holder: "unknown: it opened this file under another name".to_string(),
        }),
        Err(TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hard_link_to_the_database_shares_its_lock() {
        let folder = tempfile::tempdir().unwrap();
        let database = folder.path().join("memory.sqlite");
        std::fs::write(&database, b"").unwrap();
        let link = folder.path().join("hard.sqlite");
        std::fs::hard_link(&database, &link).unwrap();
        let held = super::acquire(&database).unwrap();
        assert!(matches!(
            super::acquire(&link),
            Err(crate::error::MemoryError::InUse { holder, .. }) if holder.starts_with("unknown")
        ));
        drop(held);
        super::acquire(&link).expect("free once the first lets go");
    }

    #[test]
    fn a_symbolic_link_to_the_database_shares_its_lock() {
        let folder = tempfile::tempdir().unwrap();
        let database = folder.path().join("memory.sqlite");
        std::fs::write(&database, b"").unwrap();
        let link = folder.path().join("link.sqlite");
        std::os::unix::fs::symlink(&database, &link).unwrap();
        let _held = super::acquire(&database).unwrap();
        assert!(matches!(
            super::acquire(&link),
            Err(crate::error::MemoryError::InUse { .. })
        ));
    }

    use super::*;

    #[test]
    fn a_second_opener_is_refused_with_the_holders_pid_until_the_first_lets_go() {
        let folder = tempfile::tempdir().unwrap();
        let database = folder.path().join("memory.sqlite");
        let first = acquire(&database).unwrap();
        match acquire(&database) {
            Err(MemoryError::InUse { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string());
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        acquire(&database).expect("free once the first holder is gone");
    }
}
