//! Pod cgroup directories, which nobody else removes.
//!
//! runc creates a pod's cgroup (the sandbox's `cgroup_parent`, kubelet style
//! `/kubepods/<qos>/pod<uid>`) in every mounted hierarchy: each cgroup v1 controller,
//! `name=systemd`, and the unified (v2) one. It removes the containers' cgroups below
//! it, but not the pod's own: the agent must, after RemovePodSandbox.

use std::io;
use std::path::{Path, PathBuf};

/// Removes the cgroup `cgroup` (an absolute cgroup path such as
/// `/kubepods/besteffort/pod<uid>`) and any cgroups below it from every mounted
/// hierarchy. Cgroups that do not exist are fine; one that still has processes fails
/// with `EBUSY` (the others are still tried; the first error is returned).
pub fn remove(cgroup: &str) -> io::Result<()> {
    let relative = cgroup.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|part| part == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a removable cgroup path: {cgroup:?}"),
        ));
    }
    let mut first_error = None;
    for hierarchy in hierarchies()? {
        if let Err(e) = remove_tree(&hierarchy.join(relative)) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Processes in `cgroup` (a path like `/kubepods/burstable/pod<uid>`) or below it,
/// read from the memory hierarchy.
pub fn processes(cgroup: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut dirs = vec![Path::new("/sys/fs/cgroup/memory").join(cgroup.trim_start_matches('/'))];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// The mount points of every cgroup (v1) and cgroup2 file system.
fn hierarchies() -> io::Result<Vec<PathBuf>> {
    Ok(crate::host::mounts()?
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "cgroup" | "cgroup2"))
        .map(|m| m.point)
        .collect())
}

/// Removes `dir` and the cgroup directories below it, deepest first. A cgroup holds
/// only control files besides its children, which rmdir ignores.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_cgroup_and_escapes_upward_are_refused() {
        for bad in ["/", "", "/kubepods/../.."] {
            let error = remove(bad).expect_err("refused");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn a_cgroup_that_does_not_exist_is_already_removed() {
        remove("/skiff-test-no-such-cgroup/pod0").expect("nothing to do");
    }
}
