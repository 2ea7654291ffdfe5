//! Network namespaces of the bench's own, and threads that run inside them.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context as _, anyhow, bail, ensure};

/// `ip`, as Debian installs it.
pub(super) const IP: &str = "/usr/sbin/ip";

/// The network namespaces of this run, so that a signal can remove them too.
#[derive(Default)]
pub(super) struct Namespaces {
    state: Mutex<NamespacesState>,
}

#[derive(Default)]
struct NamespacesState {
    /// Set by [`Namespaces::close`]: no namespace may be added after it.
    closed: bool,
    names: BTreeSet<String>,
}

impl Namespaces {
    /// Creates the namespace `name` with `lo` up; removed when the guard drops.
    pub(super) fn add(&self, name: &str) -> anyhow::Result<Netns<'_>> {
        {
            let mut state = self.lock();
            if state.closed {
                bail!("the bench is stopping: not creating namespace {name}");
            }
            // Registered first: a signal during creation removes it too.
            state.names.insert(name.to_owned());
            if let Err(e) = run_tool(IP, &["netns", "add", name]) {
                state.names.remove(name);
                delete_netns(name);
                return Err(e);
            }
        }
        let ns = Netns {
            name: name.to_owned(),
            registry: self,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn remove(&self, name: &str) {
        if self.lock().names.remove(name) {
            delete_netns(name);
        }
    }

    /// Removes every namespace still there; no new one can be added afterwards.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for name in std::mem::take(&mut state.names) {
            delete_netns(&name);
        }
    }

    fn lock(&self) -> MutexGuard<'_, NamespacesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn delete_netns(name: &str) {
    let deleted = Command::new(IP)
        .args(["netns", "del", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !deleted.is_ok_and(|s| s.success()) && Path::new("/run/netns").join(name).exists() {
        eprintln!("warning: could not remove network namespace {name}: run `ip netns del {name}`");
    }
}

/// A network namespace of this run; deleted (with its links and rules) on drop.
pub(super) struct Netns<'r> {
    pub(super) name: String,
    registry: &'r Namespaces,
}

impl Netns<'_> {
    pub(super) fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS...`.
    pub(super) fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_tool(IP, &all)
    }

    /// `ip netns exec NAME PROGRAM ARGS...` (for set-up, not measured).
    pub(super) fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run_tool(IP, &all)
    }

    /// Runs `f` on a thread that has entered this namespace; programs it starts
    /// run in the namespace too.
    pub(super) fn inside<T: Send>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send,
    ) -> anyhow::Result<T> {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    enter(&path)?;
                    f()
                })
                .join()
                .map_err(|_| anyhow!("the thread in namespace {} panicked", self.name))?
        })
    }
}

impl Drop for Netns<'_> {
    fn drop(&mut self) {
        self.registry.remove(&self.name);
    }
}

/// Moves the calling thread into the network namespace at `path` and checks that
/// it is there, so that nothing meant for the namespace reaches the host.
pub(super) fn enter(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering {}", path.display()))?;
    let want = file.metadata()?;
    let now = std::fs::metadata("/proc/thread-self/ns/net")?;
    ensure!(
        (want.dev(), want.ino()) == (now.dev(), now.ino()),
        "the thread is not in {} after setns",
        path.display()
    );
    Ok(())
}

/// Runs a program to completion; its stdout, or an error with its stderr.
pub(super) fn run_tool(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
