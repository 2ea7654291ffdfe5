//! The host mounts a pod's volumes need: tmpfs for memory-backed volumes, found
//! again through `/proc/self/mountinfo` to unmount them, also after a crash.

use std::io;
use std::path::Path;

use nix::mount::MsFlags;

pub(crate) use cri::host::mounts_under;

/// Whether `path` is a mount point.
pub(crate) fn is_mount_point(path: &Path) -> io::Result<bool> {
    Ok(cri::host::mounts()?.iter().any(|m| m.point == path))
}

/// Mounts a tmpfs at `path` (of `size` bytes when given) unless one is there.
pub(crate) fn mount_tmpfs(path: &Path, size: Option<i64>) -> Result<(), String> {
    if is_mount_point(path).map_err(|e| format!("reading /proc/self/mountinfo: {e}"))? {
        return Ok(());
    }
    let data = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::empty(),
        data.as_deref(),
    )
    .map_err(|e| format!("mount failed: tmpfs at {}: {e}", path.display()))
}

/// Unmounts `path`, lazily when it is busy.
pub(crate) fn unmount(path: &Path) -> Result<(), String> {
    cri::host::unmount(path).map_err(|e| e.to_string())
}
