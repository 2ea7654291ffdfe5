//! Images on the node agent: pods pull from Debian's `docker-registry` on 127.0.0.1
//! (plain HTTP), an htpasswd-protected registry needs the pod's image pull secret
//! (ErrImagePull and ImagePullBackOff without it, Running with it), the registries file
//! adds mirrors and credentials, `docker save` archives import like OCI ones, and
//! `skiff image import|ls|rm` work against the agent's containerd. Needs root,
//! containerd, runc, CNI plugins, docker-registry, skopeo and htpasswd.

#[path = "support/agent.rs"]
mod agent;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent::{AgentServer, container_status, eventually, free_port};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

const REGISTRY: &str = "/usr/bin/docker-registry";
const SKOPEO: &str = "/usr/bin/skopeo";
const HTPASSWD: &str = "/usr/bin/htpasswd";

/// A `docker-registry` on 127.0.0.1 with storage and config of its own; killed and
/// removed on drop.
struct Registry {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry; with `user`, it asks for that user and password (htpasswd,
    /// bcrypt).
    fn start(user: Option<(&str, &str)>) -> Registry {
        for tool in [REGISTRY, SKOPEO, HTPASSWD] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is needed (scripts/setup.sh installs docker-registry, skopeo, apache2-utils)"
            );
        }
        let id = format!("{:08x}", rand::random::<u32>());
        let dir = PathBuf::from(format!("/tmp/skiff-registry-{id}"));
        std::fs::create_dir_all(dir.join("data")).expect("registry dir");
        for _ in 0..5 {
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            );
            if let Some((name, password)) = user {
                let out = Command::new(HTPASSWD)
                    .args(["-Bbn", name, password])
                    .output()
                    .expect("run htpasswd");
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.join("htpasswd"), &out.stdout).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                ));
            }
            std::fs::write(dir.join("config.yml"), config).expect("write config");
            let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
            let child = Command::new(REGISTRY)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let mut registry = Registry {
                dir: dir.clone(),
                port,
                child: Some(child),
            };
            if registry.wait_ready() {
                return registry;
            }
            registry.stop();
        }
        panic!(
            "docker-registry did not start; log:\n{}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:<port>`.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the OCI archive `archive` as `<host>/<repository>` with skopeo.
    fn push(&self, archive: &Path, repository: &str, creds: Option<&str>) {
        let mut command = Command::new(SKOPEO);
        command
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repository}", self.host()));
        if let Some(creds) = creds {
            command.args(["--dest-creds", creds]);
        }
        let out = command.output().expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn waiting_reason(pod: &Pod) -> Option<(String, String)> {
    let waiting = container_status(pod).state?.waiting?;
    Some((waiting.reason?, waiting.message.unwrap_or_default()))
}

fn running(pod: &Pod) -> bool {
    container_status(pod)
        .state
        .is_some_and(|s| s.running.is_some())
}

/// A pod running `sleep` in `image`, with the pull policy and pull secret given.
fn pod_yaml(name: &str, image: &str, policy: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{secrets}  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [\"sleep\", \"3600\"]\n"
    )
}

/// The notes of the events about pod `name`, as `reason: note`.
async fn events_of(client: &kube::Client, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.note.unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn running_pod(pods: &Api<Pod>, name: &str, server: &AgentServer) -> Pod {
    eventually(
        Duration::from_secs(90),
        &format!("{name} Running"),
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            if let Some((reason, message)) = waiting_reason(&pod)
                && reason.starts_with("Err")
                && reason != "ErrImagePull"
            {
                panic!("{name} waits: {reason}: {message}\n{}", server.log());
            }
            running(&pod).then_some(pod)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_pull_from_registries_with_pull_secrets_mirrors_and_back_off() {
    let server = AgentServer::start();
    let open = Registry::start(None);
    let private = Registry::start(Some(("skiff", "s3cret-pw")));
    let build = tempfile::tempdir().expect("temp dir");
    let archive = build.path().join("busybox.tar");
    cri::image::busybox(&archive, "busybox:1", cri::image::Compression::Gzip)
        .expect("build busybox");
    open.push(&archive, "test/busybox:1", None);
    private.push(&archive, "test/busybox:1", Some("skiff:s3cret-pw"));
    let client = server.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // A plain-HTTP registry on 127.0.0.1 needs no configuration.
    let open_image = format!("{}/test/busybox:1", open.host());
    server.apply(&pod_yaml("from-registry", &open_image, "Always", None));
    running_pod(&pods, "from-registry", &server).await;
    let events = events_of(&client, "from-registry").await;
    assert!(
        events.contains(&format!("Pulling: Pulling image \"{open_image}\"")),
        "{events:#?}"
    );
    let pulled = events
        .iter()
        .find(|e| {
            e.starts_with(&format!(
                "Pulled: Successfully pulled image \"{open_image}\" in "
            ))
        })
        .unwrap_or_else(|| panic!("no Pulled event: {events:#?}"));
    assert!(
        pulled.contains(" including waiting). Image size: ") && pulled.ends_with(" bytes."),
        "{pulled}"
    );
    eprintln!("figure: {pulled}");

    // The protected registry refuses a pod without credentials, and the agent backs off.
    let private_image = format!("{}/test/busybox:1", private.host());
    server.apply(&pod_yaml("no-secret", &private_image, "Always", None));
    // The status alternates between ErrImagePull (right after a failed pull) and
    // ImagePullBackOff (while waiting); the back-off carries the pull's error.
    let backoff = eventually(Duration::from_secs(60), "ImagePullBackOff", || async {
        let pod = pods.get_opt("no-secret").await.ok()??;
        waiting_reason(&pod).filter(|(r, _)| r == "ImagePullBackOff")
    })
    .await;
    assert!(
        backoff.1.starts_with(&format!(
            "Back-off pulling image \"{private_image}\": ErrImagePull: rpc error: code = "
        )) && backoff.1.contains("401"),
        "{backoff:?}"
    );
    let events = eventually(Duration::from_secs(30), "the BackOff event", || async {
        let events = events_of(&client, "no-secret").await;
        events
            .contains(&format!(
                "BackOff: Back-off pulling image \"{private_image}\""
            ))
            .then_some(events)
    })
    .await;
    assert!(
        events.contains(&"Failed: Error: ErrImagePull".to_owned()),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "Failed: Failed to pull image \"{private_image}\": "
        ))),
        "{events:#?}"
    );

    // With a dockerconfigjson pull secret naming the registry, the pod runs.
    let config = serde_json::json!({"auths": {private.host(): {"username": "skiff", "password": "s3cret-pw"}}});
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "private-registry",
        "--type=kubernetes.io/dockerconfigjson",
        &format!("--from-literal=.dockerconfigjson={config}"),
    ]);
    server.apply(&pod_yaml(
        "with-secret",
        &private_image,
        "Always",
        Some("private-registry"),
    ));
    running_pod(&pods, "with-secret", &server).await;

    // The registries file: a mirror for a registry that does not exist, and the
    // protected registry's credentials for pods without a secret.
    std::fs::write(
        server.dir.join("agent").join("registries.yaml"),
        format!(
            "mirrors:\n  mirror.skiff.test:\n    endpoint:\n      - \"http://{}\"\nconfigs:\n  \"{}\":\n    auth:\n      username: skiff\n      password: s3cret-pw\n",
            open.host(),
            private.host()
        ),
    )
    .expect("write registries.yaml");
    let hosts = server
        .dir
        .join("agent/containerd/certs.d/mirror.skiff.test/hosts.toml");
    eventually(Duration::from_secs(15), "hosts.toml written", || async {
        hosts.exists().then_some(())
    })
    .await;
    server.apply(&pod_yaml(
        "through-mirror",
        "mirror.skiff.test/test/busybox:1",
        "Always",
        None,
    ));
    server.apply(&pod_yaml("registries-auth", &private_image, "Always", None));
    running_pod(&pods, "through-mirror", &server).await;
    running_pod(&pods, "registries-auth", &server).await;

    server.kubectl_ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
}

/// Runs `skiff image …` on `dir`.
fn skiff_image(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run skiff image")
}

fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_image_imports_lists_and_removes_oci_and_docker_archives() {
    // Without a running agent: one line that says what to do.
    let idle = tempfile::tempdir().expect("temp dir");
    let out = skiff_image(idle.path(), &["ls"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("containerd is not running") && stderr.contains("skiff server"),
        "{stderr}"
    );

    let server = AgentServer::start();
    let client = server.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The server answers before its agent's containerd is up: wait for the node to be
    // Ready (the runtime answered) before talking to containerd.
    agent::ready_node(&client).await;
    let build = tempfile::tempdir().expect("temp dir");
    let tag = format!("{:08x}", rand::random::<u32>());

    // A `docker save` archive imported with the command.
    let docker_name = format!("skiff.test/docker-archive:{tag}");
    let docker_archive = build.path().join("docker.tar");
    let built = cri::image::busybox_archive(
        &docker_archive,
        &docker_name,
        cri::image::Compression::None,
        cri::image::Format::Docker,
    )
    .expect("build a docker archive");
    let started = Instant::now();
    let out = skiff_image(
        &server.dir,
        &["import", docker_archive.to_str().expect("path")],
    );
    let printed = stdout_ok(&out, "skiff image import");
    eprintln!(
        "figure: skiff image import of a docker archive took {:?}",
        started.elapsed()
    );
    assert_eq!(printed.trim(), format!("imported {docker_name}"));

    // A gzip-compressed `docker save` archive dropped into the images directory.
    let dropped_name = format!("skiff.test/dropped:{tag}");
    cri::image::busybox_archive(
        &build.path().join("dropped.tar"),
        &dropped_name,
        cri::image::Compression::None,
        cri::image::Format::Docker,
    )
    .expect("build a docker archive");
    // Compressed as `docker save | gzip` does; written elsewhere, then moved in.
    let gzipped = Command::new("gzip")
        .arg("-c")
        .arg(build.path().join("dropped.tar"))
        .output()
        .expect("run gzip");
    assert!(gzipped.status.success(), "gzip failed");
    std::fs::write(build.path().join("dropped.tar.gz"), &gzipped.stdout).expect("write");
    std::fs::copy(
        build.path().join("dropped.tar.gz"),
        server.dir.join("agent/images/.dropped.tar.gz"),
    )
    .expect("copy the archive");
    std::fs::rename(
        server.dir.join("agent/images/.dropped.tar.gz"),
        server.dir.join("agent/images/dropped.tar.gz"),
    )
    .expect("drop the archive");

    let listed = eventually(Duration::from_secs(20), "both images listed", || async {
        let text = stdout_ok(&skiff_image(&server.dir, &["ls"]), "skiff image ls");
        (text.contains("skiff.test/dropped ") && text.contains("skiff.test/docker-archive "))
            .then_some(text)
    })
    .await;
    let header: Vec<&str> = listed
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"], "{listed}");
    let row: Vec<&str> = listed
        .lines()
        .find(|l| l.starts_with("skiff.test/docker-archive "))
        .expect("row")
        .split_whitespace()
        .collect();
    let id: String = built
        .id
        .trim_start_matches("sha256:")
        .chars()
        .take(13)
        .collect();
    assert_eq!(
        row[..3],
        ["skiff.test/docker-archive", tag.as_str(), id.as_str()],
        "{listed}"
    );
    assert!(row[3].ends_with("MB") || row[3].ends_with("kB"), "{listed}");

    // The imported image runs.
    server.apply(&pod_yaml("imported", &docker_name, "Never", None));
    running_pod(&pods, "imported", &server).await;
    server.kubectl_ok(&["delete", "pod", "imported", "--wait=true", "--timeout=60s"]);

    // Removed by name; a second removal fails with "no such image".
    let out = skiff_image(&server.dir, &["rm", &docker_name, &dropped_name]);
    let printed = stdout_ok(&out, "skiff image rm");
    // Both are the agent's busybox image under other names (the same content gives the
    // same image ID): only the names go.
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            format!("Untagged: {docker_name}"),
            format!("Untagged: {dropped_name}")
        ],
        "{printed}"
    );
    let listed = stdout_ok(&skiff_image(&server.dir, &["ls"]), "skiff image ls");
    assert!(!listed.contains("skiff.test/"), "{listed}");
    assert!(listed.contains("docker.io/library/busybox "), "{listed}");
    let out = skiff_image(&server.dir, &["rm", &docker_name]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("no such image: {docker_name}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
