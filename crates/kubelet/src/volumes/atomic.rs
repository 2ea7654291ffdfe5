//! Atomic projection of a set of files into a volume directory, the way the
//! kubelet's `AtomicWriter` does it, so a reader never sees half an update:
//!
//! ```text
//! <dir>/key            -> ..data/key                 (one per top-level name)
//! <dir>/..data         -> ..2026_11_26_10_00_00.1234  (swapped with rename(2))
//! <dir>/..2026_11_26_10_00_00.1234/key                (the real files)
//! ```
//!
//! A new timestamped directory is written completely, a `..data_tmp` symlink to it is
//! renamed over `..data`, then user-visible links are added or removed and the old
//! directory deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// The symlink to the current timestamped directory.
pub(crate) const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_FILE_NAME: usize = 255;
const MAX_PATH: usize = 4096;

/// One file of a projection: its content and mode bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    /// The bytes.
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// The files of a projection by relative path.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// `path.Clean` for relative paths: no empty or `.` components, no trailing slash.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The kubelet's checks of a payload path.
fn validate(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("invalid path: must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH} characters"
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// Every regular file under `dir`, as relative paths.
fn files_under(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), r));
            } else {
                out.insert(r);
            }
        }
    }
    Ok(out)
}

fn first_component(p: &str) -> &str {
    p.split('/').next().unwrap_or(p)
}

fn io_err(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Whether the current projection under `dir` differs from `payload` (content,
/// mode, or a file that would be removed).
fn changed(
    current: Option<&Path>,
    payload: &Payload,
    fs_group: Option<u32>,
) -> Result<bool, String> {
    let Some(current) = current else {
        return Ok(true);
    };
    let existing = match files_under(current) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(io_err("reading", current, e)),
    };
    if existing.iter().any(|p| !payload.contains_key(p)) {
        return Ok(true);
    }
    for (path, file) in payload {
        let p = current.join(path);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            return Ok(true);
        };
        let mode = if fs_group.is_some() {
            file.mode | 0o440
        } else {
            file.mode
        };
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != mode {
            return Ok(true);
        }
        match fs::read(&p) {
            Ok(data) if data == file.data => {}
            _ => return Ok(true),
        }
    }
    Ok(false)
}

/// A new `..<UTC timestamp>.<random>` directory in `dir`, mode 0755.
fn new_timestamped_dir(dir: &Path) -> Result<(String, PathBuf), String> {
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.")
        .to_string();
    for _ in 0..16 {
        let rand = uuid::Uuid::new_v4().as_u128() % 1_000_000_000;
        let name = format!("{stamp}{rand:09}");
        let path = dir.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| io_err("setting mode of", &path, e))?;
                return Ok((name, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &path, e)),
        }
    }
    Err(format!(
        "could not create a timestamped directory in {}",
        dir.display()
    ))
}

/// Writes `payload` into `dir` atomically; a no-op when nothing changed. `fs_group`
/// is applied to the new files before they become visible. Returns whether it wrote.
pub(crate) fn write(dir: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<bool, String> {
    let mut cleaned = Payload::new();
    for (path, file) in payload {
        validate(path)?;
        let c = clean(path);
        validate(&c)?;
        cleaned.insert(c, file.clone());
    }
    let payload = cleaned;

    let data_link = dir.join(DATA_DIR);
    let old_name = fs::read_link(&data_link)
        .ok()
        .map(|t| t.to_string_lossy().into_owned());
    let old_dir = old_name.as_ref().map(|n| dir.join(n));
    let old_files = match &old_dir {
        Some(d) => files_under(d).unwrap_or_default(),
        None => BTreeSet::new(),
    };

    let wrote = changed(old_dir.as_deref(), &payload, fs_group)?;
    if wrote {
        let (ts_name, ts_dir) = new_timestamped_dir(dir)?;
        let result = write_files(&ts_dir, &payload, fs_group).and_then(|()| {
            let tmp = dir.join(DATA_DIR_TMP);
            match fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &tmp, e)),
            }
            symlink(&ts_name, &tmp).map_err(|e| io_err("creating symlink", &tmp, e))?;
            fs::rename(&tmp, &data_link).map_err(|e| io_err("renaming", &tmp, e))
        });
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&ts_dir);
            return Err(e);
        }
    }

    // User-visible names: a link per top-level component.
    let wanted: BTreeSet<&str> = payload.keys().map(|p| first_component(p)).collect();
    for name in &wanted {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)
                .map_err(|e| io_err("creating symlink", &link, e))?;
        }
    }
    let stale: BTreeSet<&str> = old_files
        .iter()
        .map(|p| first_component(p))
        .filter(|n| !wanted.contains(n))
        .collect();
    for name in stale {
        let link = dir.join(name);
        let into_data = fs::read_link(&link)
            .map(|t| t.starts_with(DATA_DIR))
            .unwrap_or(false);
        if into_data {
            fs::remove_file(&link).map_err(|e| io_err("removing", &link, e))?;
        }
    }

    if wrote {
        // The previous directory, and any left by an interrupted earlier write.
        let current = fs::read_link(&data_link).ok();
        let entries = fs::read_dir(dir).map_err(|e| io_err("reading", dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let timestamped = name.starts_with("..") && name != DATA_DIR && name != DATA_DIR_TMP;
            let is_current = current.as_deref() == Some(Path::new(name.as_ref()));
            if timestamped && !is_current && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(wrote)
}

fn write_files(ts_dir: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<(), String> {
    for (path, file) in payload {
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent()
            && parent != ts_dir
        {
            fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
        }
        fs::write(&target, &file.data).map_err(|e| io_err("writing", &target, e))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))
            .map_err(|e| io_err("setting mode of", &target, e))?;
    }
    if let Some(gid) = fs_group {
        super::ownership::apply(ts_dir, gid, true)
            .map_err(|e| io_err("changing group of", ts_dir, e))?;
    }
    Ok(())
}
