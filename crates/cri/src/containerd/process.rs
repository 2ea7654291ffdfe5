//! Signals and `/proc` look-ups for the containerd process, by pid.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often a stopping process is looked at.
const POLL: Duration = Duration::from_millis(20);

/// Whether `pid` is a live (not zombie) process whose command line mentions `config`,
/// i.e. a containerd started with our config file.
pub(crate) fn is_ours(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let config = config.as_os_str().as_encoded_bytes();
    let mentions_config = cmdline.split(|b| *b == 0).any(|arg| arg == config);
    mentions_config && is_alive(pid)
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any byte.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid`; a process that is already gone is fine.
pub(crate) fn signal(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if let Err(errno) = kill(Pid::from_raw(raw), signal) {
        tracing::debug!(pid, ?signal, %errno, "signalling containerd failed");
    }
}

/// Stops our containerd `pid` from any thread, without async: SIGTERM, up to `grace`
/// for it to exit, then SIGKILL. Used by `Drop` and to replace a containerd left
/// behind by an agent that died. Only signals `pid` while it is still ours.
pub(crate) fn terminate_blocking(pid: u32, config: &Path, grace: Duration) {
    if !is_ours(pid, config) {
        return;
    }
    signal(pid, Signal::SIGTERM);
    if wait_gone(pid, grace) {
        return;
    }
    if is_ours(pid, config) {
        tracing::warn!(pid, "containerd ignored SIGTERM; killing it");
        signal(pid, Signal::SIGKILL);
        wait_gone(pid, Duration::from_secs(5));
    }
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(POLL);
    }
    !is_alive(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_but_not_a_containerd() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(!is_ours(me, Path::new("/nonexistent/config.toml")));
    }

    #[test]
    fn a_pid_that_does_not_exist_is_not_alive() {
        // Above the kernel's maximum pid (4194304).
        assert!(!is_alive(4_194_305));
    }
}
