//! Volumes on a temp dir, as root: atomic projection and its swap, tmpfs sizes,
//! subPath confinement, teardown. API-backed volumes are tested in
//! `api_tests` against a real `skiff server`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::json;

use super::atomic::{DATA_DIR, FileProjection, Payload, write};
use super::*;

/// Root is needed for tmpfs; without it the test says so and passes, except
/// under CI=1 where it fails.
fn require_root(test: &str) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_default();
    if euid == "0" {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("1"),
        "{test} needs root (CI=1 is set)"
    );
    eprintln!("SKIPPED {test}: needs root for tmpfs mounts");
    false
}

/// Removes mounts and files of a test pod dir, also when the test fails.
struct PodDirGuard(tempfile::TempDir);

impl Drop for PodDirGuard {
    fn drop(&mut self) {
        let _ = teardown_dir(&self.0.path().join("volumes"));
    }
}

fn pod_dir() -> PodDirGuard {
    PodDirGuard(
        tempfile::Builder::new()
            .prefix("skiff-volumes-")
            .tempdir()
            .expect("temp dir"),
    )
}

/// A client for tests that must not reach an API server (nothing listens there).
fn offline_client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
    kube::Client::try_from(config).expect("client")
}

fn payload(files: &[(&str, &str, u32)]) -> Payload {
    files
        .iter()
        .map(|(p, d, m)| {
            (
                p.to_string(),
                FileProjection {
                    data: d.as_bytes().to_vec(),
                    mode: *m,
                },
            )
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn link(p: &Path) -> String {
    fs::read_link(p)
        .expect("readlink")
        .to_string_lossy()
        .into_owned()
}

/// (mount point, fstype, super options) of the mount at `path`.
fn mount_entry(path: &Path) -> Option<(String, String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mp = left.split(' ').nth(4)?;
        if Path::new(mp) != path {
            return None;
        }
        let mut r = right.split(' ');
        let fstype = r.next()?.to_string();
        let _source = r.next()?;
        Some((mp.to_string(), fstype, r.next()?.to_string()))
    })
}

fn test_pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "vol-test", "uid": "uid-vol"},
        "spec": spec
    }))
    .expect("pod")
}

#[test]
fn projection_writes_items_with_modes_behind_the_data_link() {
    let dir = tempfile::tempdir().expect("dir");
    let p = payload(&[
        ("game.properties", "lives=3", 0o644),
        ("ui/colors", "blue", 0o400),
    ]);
    assert!(write(dir.path(), &p, None).expect("write"));

    let data = link(&dir.path().join(DATA_DIR));
    assert!(data.starts_with("..20"), "timestamped dir: {data}");
    assert_eq!(
        link(&dir.path().join("game.properties")),
        "..data/game.properties"
    );
    assert_eq!(link(&dir.path().join("ui")), "..data/ui");
    assert_eq!(
        fs::read_to_string(dir.path().join("game.properties")).expect("read"),
        "lives=3"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("ui/colors")).expect("read"),
        "blue"
    );
    assert_eq!(mode(&dir.path().join(&data).join("game.properties")), 0o644);
    assert_eq!(mode(&dir.path().join(&data).join("ui/colors")), 0o400);
    assert_eq!(mode(&dir.path().join(&data)), 0o755);

    // The same payload again writes nothing.
    assert!(!write(dir.path(), &p, None).expect("rewrite"));
    assert_eq!(link(&dir.path().join(DATA_DIR)), data);
    // A mode change alone is a change.
    let p2 = payload(&[
        ("game.properties", "lives=3", 0o600),
        ("ui/colors", "blue", 0o400),
    ]);
    assert!(write(dir.path(), &p2, None).expect("mode change"));
}

#[test]
fn refresh_swaps_atomically_and_removes_what_is_gone() {
    let dir = tempfile::tempdir().expect("dir");
    let v1 = payload(&[
        ("a", "one", 0o644),
        ("b", "one", 0o644),
        ("gone", "x", 0o644),
    ]);
    write(dir.path(), &v1, None).expect("v1");
    let old_ts = link(&dir.path().join(DATA_DIR));
    // A reader holding the old file keeps reading the old content after the swap.
    let mut held = fs::File::open(dir.path().join("a")).expect("open a");

    // Concurrent readers: the data link always resolves, and the two files read
    // through one resolution of it are always from the same version.
    let stop = Arc::new(AtomicBool::new(false));
    let torn = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, torn, reads) = (stop.clone(), torn.clone(), reads.clone());
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(ts) = fs::read_link(d.join(DATA_DIR)) else {
                        torn.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let a = fs::read_to_string(d.join(&ts).join("a"));
                    let b = fs::read_to_string(d.join(&ts).join("b"));
                    match (a, b) {
                        (Ok(a), Ok(b)) if a == b => {}
                        // The old dir was removed between readlink and open: no torn
                        // state was seen, the reader resolves again.
                        (Err(_), _) | (_, Err(_)) => {}
                        _ => {
                            torn.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..50 {
        let v = if i % 2 == 0 { "two" } else { "three" };
        write(
            dir.path(),
            &payload(&[("a", v, 0o644), ("b", v, 0o644)]),
            None,
        )
        .expect("swap");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    assert_eq!(
        torn.load(Ordering::Relaxed),
        0,
        "a reader saw a partial state"
    );
    assert!(reads.load(Ordering::Relaxed) > 0);

    let mut old = String::new();
    std::io::Read::read_to_string(&mut held, &mut old).expect("read held");
    assert_eq!(old, "one", "an open file keeps its old content");
    assert_ne!(link(&dir.path().join(DATA_DIR)), old_ts);
    assert!(
        !dir.path().join(&old_ts).exists(),
        "old timestamped dir removed"
    );
    assert!(
        fs::symlink_metadata(dir.path().join("gone")).is_err(),
        "removed key's link"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("a")).expect("a"),
        "three"
    );
    let timestamped: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("..2"))
        .collect();
    assert_eq!(timestamped.len(), 1, "exactly one timestamped dir remains");
}

#[test]
fn projection_refuses_escaping_paths() {
    let dir = tempfile::tempdir().expect("dir");
    for bad in ["../x", "a/../../x", "/etc/passwd", "..data/x", "..hidden"] {
        let err = write(dir.path(), &payload(&[(bad, "x", 0o644)]), None).expect_err(bad);
        assert!(err.starts_with("invalid path"), "{bad}: {err}");
    }
}

#[test]
fn host_path_types_are_checked_with_the_kubelets_messages() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().display().to_string();
    let created = format!("{d}/new/deeper");
    host_path::check(&created, Some("DirectoryOrCreate")).expect("created");
    assert!(Path::new(&created).is_dir());
    assert_eq!(mode(Path::new(&created)), 0o755);
    let file = format!("{d}/file");
    host_path::check(&file, Some("FileOrCreate")).expect("file created");
    assert_eq!(mode(Path::new(&file)), 0o644);
    host_path::check(&file, Some("File")).expect("is a file");
    assert_eq!(
        host_path::check(&file, Some("Directory")).expect_err("not a dir"),
        format!("hostPath type check failed: {file} is not a directory")
    );
    assert_eq!(
        host_path::check(&d, Some("File")).expect_err("not a file"),
        format!("hostPath type check failed: {d} is not a file")
    );
    assert_eq!(
        host_path::check(&file, Some("Socket")).expect_err("not a socket"),
        format!("hostPath type check failed: {file} is not a socket file")
    );
    assert_eq!(
        host_path::check(&file, Some("CharDevice")).expect_err("not a char dev"),
        format!("hostPath type check failed: {file} is not a character device")
    );
    host_path::check("/dev/null", Some("CharDevice")).expect("/dev/null");
    assert_eq!(
        host_path::check(&file, Some("BlockDevice")).expect_err("not a block dev"),
        format!("hostPath type check failed: {file} is not a block device")
    );
    let sock = format!("{d}/s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("socket");
    host_path::check(&sock, Some("Socket")).expect("socket");
    assert!(host_path::check(&format!("{d}/missing"), Some("Directory")).is_err());
    host_path::check(&format!("{d}/missing"), None).expect("no type: no check");
    assert_eq!(
        host_path::check(&format!("{d}/x/../y"), None).expect_err("backsteps"),
        format!("invalid HostPath `{d}/x/../y`: must not contain '..'")
    );
    assert_eq!(
        host_path::check(&file, Some("Weird")).expect_err("bad type"),
        "Weird is an invalid volume type"
    );
    // FileOrCreate does not create parent directories.
    assert!(host_path::check(&format!("{d}/nope/f"), Some("FileOrCreate")).is_err());
}

fn volumes_with(dir: &Path, entries: &[(&str, Kind, bool)]) -> PodVolumes {
    let volumes = entries
        .iter()
        .map(|(name, kind, ro)| {
            let path = dir.join(name);
            fs::create_dir_all(&path).expect("volume dir");
            (
                name.to_string(),
                HostVolume {
                    kind: *kind,
                    path,
                    read_only: *ro,
                },
            )
        })
        .collect();
    PodVolumes {
        volumes,
        node_name: "node".into(),
        tokens: Mutex::new(BTreeMap::new()),
        writing: tokio::sync::Mutex::new(()),
    }
}

fn container(mounts: serde_json::Value) -> Container {
    serde_json::from_value(json!({"name": "app", "volumeMounts": mounts})).expect("container")
}

#[test]
fn mounts_map_read_only_and_propagation() {
    let dir = tempfile::tempdir().expect("dir");
    let v = volumes_with(
        dir.path(),
        &[
            ("data", Kind::EmptyDir, false),
            ("cfg", Kind::ConfigMap, true),
        ],
    );
    let m = v
        .mounts(&container(json!([
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/ro", "readOnly": true, "recursiveReadOnly": "Enabled"},
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "data", "mountPath": "/h2c", "mountPropagation": "HostToContainer"},
            {"name": "data", "mountPath": "/bi", "mountPropagation": "Bidirectional"}
        ])))
        .expect("mounts");
    assert_eq!(m.len(), 5);
    assert_eq!(m[0].container_path, "/data");
    assert_eq!(
        m[0].host_path,
        dir.path().join("data").display().to_string()
    );
    assert!(!m[0].readonly);
    assert!(m[1].readonly && m[1].recursive_read_only);
    assert!(m[2].readonly, "configMap volumes are read-only");
    use cri::v1::MountPropagation as P;
    assert_eq!(m[0].propagation, P::PropagationPrivate as i32);
    assert_eq!(m[3].propagation, P::PropagationHostToContainer as i32);
    assert_eq!(m[4].propagation, P::PropagationBidirectional as i32);

    let err = v
        .mounts(&container(json!([{"name": "nope", "mountPath": "/x"}])))
        .expect_err("unknown volume");
    assert_eq!(
        err.to_string(),
        "cannot find volume \"nope\" to mount into container \"app\""
    );
}

#[test]
fn sub_paths_stay_inside_the_volume() {
    let dir = tempfile::tempdir().expect("dir");
    let v = volumes_with(dir.path(), &[("data", Kind::EmptyDir, false)]);
    let vol = dir.path().join("data");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).expect("outside");
    symlink(&outside, vol.join("evil")).expect("symlink out");
    symlink("../outside", vol.join("sneaky")).expect("relative symlink out");
    fs::create_dir_all(vol.join("real")).expect("real");
    symlink("real", vol.join("fine")).expect("symlink in");

    let one = |sub: &str| {
        v.mounts(&container(
            json!([{"name": "data", "mountPath": "/m", "subPath": sub}]),
        ))
    };
    let m = one("a/b").expect("nested subPath is made");
    assert_eq!(m[0].host_path, vol.join("a/b").display().to_string());
    assert!(vol.join("a/b").is_dir());
    let m = one("fine").expect("a symlink inside is fine");
    assert_eq!(m[0].host_path, vol.join("real").display().to_string());
    for bad in [
        "evil",
        "evil/x",
        "sneaky",
        "../outside",
        "a/../../outside",
        "/etc",
    ] {
        let err = one(bad).expect_err(bad);
        assert_eq!(
            err.to_string(),
            "failed to prepare subPath for volumeMount \"data\" of container \"app\"",
            "{bad}"
        );
    }
    assert!(!outside.join("x").exists(), "nothing was made outside");

    let env = vec![("POD".to_string(), "p-1".to_string())];
    let expr =
        container(json!([{"name": "data", "mountPath": "/m", "subPathExpr": "logs/$(POD)"}]));
    let m = v.mounts_with_env(&expr, &env).expect("expr");
    assert_eq!(m[0].host_path, vol.join("logs/p-1").display().to_string());
    let missing = container(json!([{"name": "data", "mountPath": "/m", "subPathExpr": "$(NOPE)"}]));
    assert_eq!(
        v.mounts_with_env(&missing, &env)
            .expect_err("missing")
            .to_string(),
        "missing value for NOPE"
    );
}

#[tokio::test]
async fn memory_empty_dir_is_a_sized_tmpfs_and_teardown_removes_everything() {
    if !require_root("memory_empty_dir_is_a_sized_tmpfs_and_teardown_removes_everything") {
        return;
    }
    let guard = pod_dir();
    let pod = test_pod(json!({
        "containers": [{"name": "app"}],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}
        ]
    }));
    let client = offline_client();
    let v = PodVolumes::setup(&client, &pod, guard.0.path(), "node")
        .await
        .expect("setup");
    let root = fs::canonicalize(guard.0.path())
        .expect("canon")
        .join("volumes");
    let scratch = root.join("kubernetes.io~empty-dir/scratch");
    let cache = root.join("kubernetes.io~empty-dir/cache");
    assert_eq!(v.host_path("scratch"), Some(scratch.as_path()));
    assert_eq!(mode(&scratch), 0o777);
    assert!(mount_entry(&scratch).is_none(), "disk emptyDir is no mount");
    let (_, fstype, opts) = mount_entry(&cache).expect("cache is a mount");
    assert_eq!(fstype, "tmpfs");
    assert!(opts.split(',').any(|o| o == "size=8192k"), "{opts}");
    fs::write(cache.join("f"), "kept").expect("write into tmpfs");

    // Setting up again (agent restart) keeps the mount and its content.
    PodVolumes::setup(&client, &pod, guard.0.path(), "node")
        .await
        .expect("setup again");
    assert_eq!(fs::read_to_string(cache.join("f")).expect("read"), "kept");
    let count = fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(&*cache.to_string_lossy()))
        .count();
    assert_eq!(count, 1, "no second tmpfs on top");

    PodVolumes::teardown(guard.0.path())
        .await
        .expect("teardown");
    assert!(mount_entry(&cache).is_none(), "unmounted");
    assert!(!root.exists(), "volumes dir removed");
    PodVolumes::teardown(guard.0.path())
        .await
        .expect("teardown twice");
}

#[tokio::test]
async fn teardown_after_a_crash_finds_mounts_from_mountinfo() {
    if !require_root("teardown_after_a_crash_finds_mounts_from_mountinfo") {
        return;
    }
    let guard = pod_dir();
    let a = guard.0.path().join("volumes/kubernetes.io~secret/s a");
    let b = guard
        .0
        .path()
        .join("volumes/kubernetes.io~empty-dir/m/inner");
    fs::create_dir_all(&a).expect("a");
    fs::create_dir_all(guard.0.path().join("volumes/kubernetes.io~empty-dir/m")).expect("m");
    mounts::mount_tmpfs(
        &guard.0.path().join("volumes/kubernetes.io~empty-dir/m"),
        None,
    )
    .expect("mount m");
    fs::create_dir_all(&b).expect("b");
    mounts::mount_tmpfs(&a, Some(1 << 20)).expect("mount a (name with a space)");
    mounts::mount_tmpfs(&b, None).expect("nested mount");
    // No PodVolumes in memory: teardown works from the dir alone.
    PodVolumes::teardown(guard.0.path())
        .await
        .expect("teardown");
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !text.contains(&*guard.0.path().to_string_lossy()),
        "mounts left:\n{text}"
    );
    assert!(!guard.0.path().join("volumes").exists());
}

#[test]
fn mountinfo_escapes_are_decoded() {
    let line = "36 35 98:0 / /a\\040b/c\\134d rw,noatime master:1 - tmpfs tmpfs rw,size=1024k";
    assert_eq!(
        cri::host::parse_mountinfo(line)
            .into_iter()
            .map(|m| m.point)
            .collect::<Vec<_>>(),
        vec![std::path::PathBuf::from("/a b/c\\d")]
    );
}

#[test]
fn tmpfs_size_is_the_smallest_of_node_pod_and_volume() {
    let alloc: Allocatable = BTreeMap::from([(
        "memory".to_string(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
    )]);
    let limited = test_pod(json!({"containers": [
        {"name": "a", "resources": {"limits": {"memory": "64Mi"}}},
        {"name": "b", "resources": {"limits": {"memory": "64Mi"}}}
    ]}));
    let unlimited = test_pod(json!({"containers": [{"name": "a"}]}));
    assert_eq!(tmpfs_size(Some(&alloc), &limited, None), Some(128 << 20));
    assert_eq!(
        tmpfs_size(Some(&alloc), &limited, Some(8 << 20)),
        Some(8 << 20)
    );
    assert_eq!(tmpfs_size(Some(&alloc), &unlimited, None), Some(1 << 30));
    assert_eq!(
        tmpfs_size(Some(&alloc), &unlimited, Some(2 << 30)),
        Some(1 << 30)
    );
    assert_eq!(tmpfs_size(None, &unlimited, Some(8 << 20)), Some(8 << 20));
    assert_eq!(tmpfs_size(None, &unlimited, None), None);
}

#[test]
fn token_renewal_after_eighty_percent() {
    use std::time::{Duration, SystemTime};
    let issued = SystemTime::now();
    let t = Token {
        token: "t".into(),
        issued,
        expires: issued + Duration::from_secs(3600),
    };
    assert!(!t.needs_renewal(issued + Duration::from_secs(2879)));
    assert!(t.needs_renewal(issued + Duration::from_secs(2880)));
}
