//! One writer per state directory: commands that change state hold an exclusive lock on
//! `<dir>/lock` for as long as they run. A second one stops with the holder's pid and
//! command, or waits for it (`--wait`). The lock is the kernel's (`flock`), so it goes
//! away with its process, however that process ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{dir}` is in use by {holder}")]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of `dir` (created user-only when missing) for `command`, or says
    /// who holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, LockError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = dir.join(LOCK_FILE);
        let err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "another process".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
        // Who holds it, for the message a second command prints.
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        writeln!(
            file,
            "pid {} (`factory {command}`) since {}",
            std::process::id(),
            crate::clock::now()
        )
        .map_err(err)?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid_and_command() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateLock::acquire(dir.path(), "run").unwrap();
        let err = StateLock::acquire(dir.path(), "gc").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("`factory run`"), "{message}");
        drop(held);
        StateLock::acquire(dir.path(), "gc").unwrap();
    }
}
