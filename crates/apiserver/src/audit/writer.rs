//! The audit log backend: events go through a bounded queue to a thread of their
//! own that renders them and appends JSON lines to the log (or standard output), so
//! a slow disk never holds up a request. When the queue is full the event is
//! dropped, counted, and a warning says so. The file rotates like kube-apiserver's
//! (lumberjack): past `--audit-log-maxsize` MB it is renamed to
//! `<name>-<UTC time>.<ext>`, and backups beyond `--audit-log-maxbackup` or older
//! than `--audit-log-maxage` days are removed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use super::event::Event;

/// Events waiting to be written before new ones are dropped (kube-apiserver's
/// batch buffer size).
const QUEUE_EVENTS: usize = 10_000;
/// Body bytes waiting to be written before new events are dropped.
const QUEUE_BYTES: usize = 64 << 20;
/// At most one warning per kind this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Standard output (`--audit-log-path -`).
    Stdout,
    /// A file, created with mode 0600 if missing, appended to.
    File(PathBuf),
}

impl Target {
    /// `-` is standard output, anything else a file.
    pub(crate) fn from_path(path: &Path) -> Self {
        if path == Path::new("-") {
            Target::Stdout
        } else {
            Target::File(path.to_path_buf())
        }
    }
}

/// When a log file is rotated and which backups are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// Rotate before the file would grow past this; 0: never.
    pub max_bytes: u64,
    /// Backups kept; 0: all.
    pub max_backups: usize,
    /// Backups older than this are removed; zero: none for age.
    pub max_age: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    queued_bytes: AtomicUsize,
    /// Seconds since `epoch` before which no warning is logged again.
    quiet_until: AtomicU64,
    write_quiet_until: AtomicU64,
    epoch: Option<std::time::Instant>,
}

impl Shared {
    /// True at most once per [`WARN_EVERY`] for the given gate.
    fn may_warn(&self, gate: &AtomicU64) -> bool {
        let now = self.epoch.map_or(0, |e| e.elapsed().as_secs()) + 1;
        let until = gate.load(Ordering::Relaxed);
        now >= until
            && gate
                .compare_exchange(
                    until,
                    now + WARN_EVERY.as_secs(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// The sending side; cheap to clone, one per request that is audited.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    tx: SyncSender<Event>,
    shared: Arc<Shared>,
}

impl Sink {
    /// Opens the target and starts the writer thread; it ends when every `Sink`
    /// is gone and the queue is written out.
    pub(crate) fn start(target: Target, rotation: Rotation) -> io::Result<Self> {
        let out = match &target {
            Target::Stdout => Out::Stdout,
            Target::File(path) => Out::File(LogFile::open(path, rotation)?),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_EVENTS);
        let shared = Arc::new(Shared {
            epoch: Some(std::time::Instant::now()),
            ..Shared::default()
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(rx, out, &thread_shared))?;
        Ok(Self { tx, shared })
    }

    /// Queues an event; drops it (and counts it) when the writer is behind.
    pub(crate) fn send(&self, event: Event) {
        let weight = event.weight();
        let queued = self
            .shared
            .queued_bytes
            .fetch_add(weight, Ordering::Relaxed);
        let full = queued + weight > QUEUE_BYTES && queued > 0;
        let sent = !full
            && match self.tx.try_send(event) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            };
        if !sent {
            self.shared
                .queued_bytes
                .fetch_sub(weight, Ordering::Relaxed);
            let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.shared.may_warn(&self.shared.quiet_until) {
                tracing::warn!(
                    dropped_total = dropped,
                    "audit events dropped: the audit log writer cannot keep up"
                );
            }
        }
    }

    /// Events dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

enum Out {
    Stdout,
    File(LogFile),
}

fn write_loop(rx: Receiver<Event>, mut out: Out, shared: &Shared) {
    let mut batch: Vec<u8> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(event) = next {
            let line = event.render();
            shared
                .queued_bytes
                .fetch_sub(event.weight(), Ordering::Relaxed);
            drop(event);
            let r = match &mut out {
                Out::Stdout => {
                    batch.extend_from_slice(&line);
                    Ok(())
                }
                Out::File(f) => f.write_line(&line),
            };
            report(r, shared);
            next = rx.try_recv().ok();
        }
        // The queue is empty: put what was written where readers see it.
        let r = match &mut out {
            Out::Stdout => {
                let mut stdout = io::stdout().lock();
                let r = stdout.write_all(&batch).and_then(|()| stdout.flush());
                batch.clear();
                r
            }
            Out::File(f) => f.flush(),
        };
        report(r, shared);
    }
}

fn report(r: io::Result<()>, shared: &Shared) {
    if let Err(e) = r
        && shared.may_warn(&shared.write_quiet_until)
    {
        tracing::warn!(error = %e, "writing the audit log failed");
    }
}

/// An append-only log file that rotates by size.
struct LogFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    rotation: Rotation,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl LogFile {
    fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(with_path)?;
        }
        let file = open_append(path).map_err(with_path)?;
        let size = file.metadata().map_err(with_path)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(64 << 10, file),
            size,
            rotation,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if self.rotation.max_bytes > 0 && self.size > 0 && self.size + len > self.rotation.max_bytes
        {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Renames the file to a timestamped backup, starts a new one, prunes backups.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let mut at = jiff::Timestamp::now();
        let mut backup = backup_path(&self.path, at);
        while backup.exists() {
            at += jiff::SignedDuration::from_millis(1);
            backup = backup_path(&self.path, at);
        }
        std::fs::rename(&self.path, &backup)?;
        self.file = BufWriter::with_capacity(64 << 10, open_append(&self.path)?);
        self.size = 0;
        self.prune(jiff::Timestamp::now());
        Ok(())
    }

    /// Removes backups beyond the count and age limits.
    fn prune(&self, now: jiff::Timestamp) {
        let mut backups = backups(&self.path);
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        let age = self.rotation.max_age;
        for (i, (at, path)) in backups.iter().enumerate() {
            let too_many = self.rotation.max_backups > 0 && i >= self.rotation.max_backups;
            let too_old = !age.is_zero()
                && jiff::SignedDuration::try_from(age)
                    .is_ok_and(|age| now.duration_since(*at) > age);
            if (too_many || too_old)
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(error = %e, path = %path.display(), "removing an old audit log");
            }
        }
    }
}

const BACKUP_TIME: &str = "%Y-%m-%dT%H-%M-%S%.3f";

/// `dir/audit.log` → (`audit`, `.log`), as Go's `filepath.Ext` splits names.
fn split_name(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) => (name[..i].to_string(), name[i..].to_string()),
        None => (name, String::new()),
    }
}

fn backup_path(path: &Path, at: jiff::Timestamp) -> PathBuf {
    let (stem, ext) = split_name(path);
    path.with_file_name(format!("{stem}-{}{ext}", at.strftime(BACKUP_TIME)))
}

/// The backups of `path` with the times their names carry.
fn backups(path: &Path) -> Vec<(jiff::Timestamp, PathBuf)> {
    let (stem, ext) = split_name(path);
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let time = name
                .strip_prefix(&format!("{stem}-"))?
                .strip_suffix(ext.as_str())?;
            let at = jiff::civil::DateTime::strptime(BACKUP_TIME, time)
                .ok()?
                .to_zoned(jiff::tz::TimeZone::UTC)
                .ok()?
                .timestamp();
            Some((at, e.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Event, RequestFacts};
    use crate::audit::policy::{Level, Stage};

    fn event() -> Event {
        Event {
            request: Arc::new(RequestFacts {
                audit_id: "id".into(),
                level: Level::Metadata,
                request_uri: "/api/v1/namespaces".into(),
                verb: "list".into(),
                user: None,
                source_ips: Vec::new(),
                user_agent: String::new(),
                object_ref: None,
                received: jiff::Timestamp::now(),
                omit_managed_fields: false,
            }),
            stage: Stage::ResponseComplete,
            at: jiff::Timestamp::now(),
            impersonated: None,
            outcome: None,
            request_body: None,
            response_body: None,
            annotations: Vec::new(),
        }
    }

    fn rotation(max_bytes: u64, max_backups: usize, max_age: Duration) -> Rotation {
        Rotation {
            max_bytes,
            max_backups,
            max_age,
        }
    }

    #[test]
    fn a_full_file_is_renamed_to_a_timestamped_backup_and_a_new_one_started() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs/audit.log");
        let mut f = LogFile::open(&path, rotation(100, 0, Duration::ZERO)).expect("opens");
        let line = [b'x'; 59];
        for _ in 0..5 {
            f.write_line(&line).expect("writes");
        }
        f.flush().expect("flushes");
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 59);
        let found = backups(&path);
        assert_eq!(found.len(), 4, "each line past 100 bytes rotated once");
        for (_, p) in &found {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            assert!(
                name.starts_with("audit-") && name.ends_with(".log"),
                "{name}"
            );
            assert_eq!(std::fs::metadata(p).expect("backup").len(), 59);
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("log").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn backups_beyond_the_count_or_the_age_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40);
        std::fs::write(backup_path(&path, old), "old\n").expect("an old backup");
        std::fs::write(dir.path().join("unrelated.log"), "keep\n").expect("another file");
        let mut f =
            LogFile::open(&path, rotation(10, 2, Duration::from_secs(30 * 86400))).expect("opens");
        for _ in 0..6 {
            f.write_line(b"0123456789\n").expect("writes");
        }
        let found = backups(&path);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found.iter().all(|(at, _)| *at > old),
            "the 40-day-old one is gone"
        );
        assert!(dir.path().join("unrelated.log").exists());
    }

    #[test]
    fn events_reach_the_file_once_the_queue_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let sink = Sink::start(Target::File(path.clone()), rotation(0, 0, Duration::ZERO))
            .expect("starts");
        for _ in 0..3 {
            sink.send(event());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 3 {
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
                    assert_eq!(v["kind"], "Event");
                }
                break;
            }
            assert!(std::time::Instant::now() < deadline, "got {text:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn a_writer_that_cannot_keep_up_drops_and_counts() {
        // A sink whose receiver is gone behaves like one that is always full.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        drop(rx);
        let sink = Sink {
            tx,
            shared: Arc::new(Shared::default()),
        };
        sink.send(event());
        sink.send(event());
        assert_eq!(sink.dropped(), 2);
    }

    #[test]
    fn a_dash_is_standard_output() {
        assert_eq!(Target::from_path(Path::new("-")), Target::Stdout);
        assert_eq!(
            Target::from_path(Path::new("./-")),
            Target::File(PathBuf::from("./-"))
        );
    }

    #[test]
    fn an_unwritable_path_fails_at_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("plain");
        std::fs::write(&file, "").expect("a file");
        let err = Sink::start(
            Target::File(file.join("audit.log")),
            rotation(0, 0, Duration::ZERO),
        )
        .expect_err("a file is not a directory");
        assert!(err.to_string().contains("plain"), "{err}");
    }
}
