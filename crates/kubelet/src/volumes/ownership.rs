//! `fsGroup`: volume files belong to the pod's supplemental group, the way the
//! kubelet's `SetVolumeOwnership` sets them.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::Path;

/// Gives everything under `dir` (not following symlinks) group `gid`, group read
/// (and write unless `read_only`) bits, and setgid plus group search on
/// directories.
pub(crate) fn apply(dir: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let mask = if read_only { 0o440 } else { 0o660 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        lchown(&path, None, Some(gid))?;
        let mut mode = meta.permissions().mode() & 0o7777 | mask;
        if meta.is_dir() {
            mode |= 0o2000 | 0o110;
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Gives `dir` itself group `gid`, setgid and group rwx (an emptyDir: its content
/// is the pod's own).
pub(crate) fn apply_dir(dir: &Path, gid: u32) -> io::Result<()> {
    lchown(dir, None, Some(gid))?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777 | 0o2070;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}
