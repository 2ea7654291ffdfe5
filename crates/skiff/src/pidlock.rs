//! Lock files that keep two processes off one directory and name the holder: the
//! server's data dir and the agent's dir each have one.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// Held for the life of the process; the lock goes with the file descriptor.
#[derive(Debug)]
pub struct PidLock {
    _file: fs::File,
}

impl PidLock {
    /// Takes the lock on `path` and writes this process's pid into it. When another
    /// process holds it, fails with `busy(pid of the holder)` as the message.
    pub fn take(path: &Path, busy: impl FnOnce(&str) -> String) -> anyhow::Result<PidLock> {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(path).unwrap_or_default();
                bail!("{}", busy(pid.trim()));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(PidLock { _file: file })
    }
}
