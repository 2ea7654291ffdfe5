//! hostPath type checks, with the kubelet's messages.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Checks (and for the `...OrCreate` types creates) `path` as `type_` asks.
pub(crate) fn check(path: &str, type_: Option<&str>) -> Result<(), String> {
    if path.split('/').any(|c| c == "..") {
        return Err(format!("invalid HostPath `{path}`: must not contain '..'"));
    }
    let p = Path::new(path);
    let meta = || fs::metadata(p).ok();
    match type_.unwrap_or_default() {
        "" => Ok(()),
        t @ ("DirectoryOrCreate" | "Directory") => {
            if t == "DirectoryOrCreate" && meta().is_none() {
                return fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(p)
                    .map_err(|e| format!("mkdir {path}: {e}"));
            }
            if meta().is_some_and(|m| m.is_dir()) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {path} is not a directory"
                ))
            }
        }
        t @ ("FileOrCreate" | "File") => {
            if t == "FileOrCreate" && meta().is_none() {
                return fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(p)
                    .map(drop)
                    .map_err(|e| format!("open {path}: {e}"));
            }
            if meta().is_some_and(|m| m.is_file()) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {path} is not a file"))
            }
        }
        "Socket" => type_is(p, FileTypeExt::is_socket)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a socket file")),
        "CharDevice" => type_is(p, FileTypeExt::is_char_device)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a character device")),
        "BlockDevice" => type_is(p, FileTypeExt::is_block_device)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a block device")),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn type_is(p: &Path, f: fn(&fs::FileType) -> bool) -> bool {
    fs::metadata(p).is_ok_and(|m| f(&m.file_type()))
}
