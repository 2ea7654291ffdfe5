//! `subPath`: a path inside a volume, made and resolved so that neither `..` nor a
//! symlink leads out of the volume.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The host path of `sub` inside `volume`, created as a directory (with the
/// volume's mode) when missing. Errors are for logs; users get a generic message,
/// as the kubelet gives, so as not to reveal the host's layout.
pub(crate) fn resolve(volume: &Path, sub: &str) -> Result<PathBuf, String> {
    let rel = Path::new(sub);
    if rel.is_absolute() {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    let base = fs::canonicalize(volume).map_err(|e| format!("{}: {e}", volume.display()))?;
    let mode = fs::metadata(&base)
        .map_err(|e| format!("{}: {e}", base.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let inside = |p: &Path| -> Result<PathBuf, String> {
        let real = fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if real.starts_with(&base) {
            Ok(real)
        } else {
            Err(format!(
                "subpath {:?} not within volume path {:?}",
                real.display().to_string(),
                base.display().to_string()
            ))
        }
    };
    // Walk down: an existing prefix must resolve inside the volume; the rest is
    // made one directory at a time.
    let mut current = base.clone();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        let next = current.join(name);
        match fs::symlink_metadata(&next) {
            Ok(_) => current = inside(&next)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("{}: {e}", next.display()))?;
                current = inside(&next)?;
            }
            Err(e) => return Err(format!("{}: {e}", next.display())),
        }
    }
    inside(&current)
}
