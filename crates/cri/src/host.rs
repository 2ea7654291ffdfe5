//! What containers leave on the host besides cgroups: mounts (overlay roots, shm,
//! tmpfs volumes) and processes (shims) that name a runtime's directories. Used by
//! cleanup after pods, by `skiff killall`, and by tests that must leave nothing.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MntFlags;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The file system type (`overlay`, `tmpfs`, `cgroup`, ...).
    pub fstype: String,
}

/// The mounts in a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// This process's mounts.
pub fn mounts() -> io::Result<Vec<Mount>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Mount points at or below `dir` (lexically), deepest first, each once.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mounts()?
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Unmounts `path`; lazily (detached) when it is busy. Not mounted is success.
pub fn unmount(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => nix::mount::umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| io::Error::other(format!("unmounting {}: {e}", path.display()))),
        Err(e) => Err(io::Error::other(format!(
            "unmounting {}: {e}",
            path.display()
        ))),
    }
}

/// Unmounts everything at or below `dir`, deepest first; returns what was unmounted
/// and the first error (the others are still tried).
pub fn unmount_all_under(dir: &Path) -> (Vec<PathBuf>, Option<io::Error>) {
    let mut done = Vec::new();
    let mut first_error = None;
    match mounts_under(dir) {
        Ok(points) => {
            for p in points {
                match unmount(&p) {
                    Ok(()) => done.push(p),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        Err(e) => first_error = Some(e),
    }
    (done, first_error)
}

/// Processes (other than this one) with a command-line argument inside `dir`:
/// containerd and its shims name their directories and sockets.
pub fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .filter_map(|arg| std::str::from_utf8(arg).ok())
                    .any(|arg| Path::new(arg).starts_with(dir))
            })
        })
        .collect()
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
    fn mountinfo_lines_give_the_point_and_type_with_escapes_undone() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    40 25 0:35 / /sys/fs/cgroup/memory rw shared:17 - cgroup cgroup rw,memory\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![
                Mount {
                    point: "/mnt/a b".into(),
                    fstype: "ext3".into()
                },
                Mount {
                    point: "/sys/fs/cgroup/memory".into(),
                    fstype: "cgroup".into()
                },
            ]
        );
    }

    #[test]
    fn nothing_is_mounted_under_a_fresh_directory() {
        let dir = std::env::temp_dir().join(format!("skiff-host-test-{}", std::process::id()));
        assert_eq!(
            mounts_under(&dir).expect("mountinfo"),
            Vec::<PathBuf>::new()
        );
    }
}
