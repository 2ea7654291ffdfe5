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

/// The mount points of every cgroup (v1) and cgroup2 file system.
fn hierarchies() -> io::Result<Vec<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount_point = left.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(unescape(mount_point)))
        })
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

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(code) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

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
