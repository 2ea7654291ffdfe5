//! Volumes and environments read through a real `skiff server` (started from
//! `target/debug/skiff` in a temp data dir on a free port, with no agent): ConfigMap
//! and Secret lookups, TokenRequest, PVC -> PV.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service, ServiceAccount,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::atomic::DATA_DIR;
use super::*;

/// A `skiff server` process and its data dir, killed and removed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skiff_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/skiff")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    async fn start() -> (Server, kube::Client) {
        let bin = skiff_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p skiff` first",
            bin.display()
        );
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("skiff-kubelet-vol-")
                .tempdir()
                .expect("temp dir");
            let log = fs::File::create(dir.path().join("server.log")).expect("log");
            let port = free_port();
            let child = Command::new(&bin)
                .arg("server")
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--https-listen-port", &port.to_string(), "--disable-agent"])
                .args(["--bind-address", "127.0.0.1"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start skiff server");
            let mut server = Server { child, dir };
            if let Some(client) = server.wait_ready(Duration::from_secs(30)).await {
                return (server, client);
            }
            eprintln!(
                "server start failed; log:\n{}",
                fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
            );
        }
        panic!("skiff server did not become ready");
    }

    async fn wait_ready(&mut self, within: Duration) -> Option<kube::Client> {
        let start = Instant::now();
        let kubeconfig = self.dir.path().join("kubeconfig.yaml");
        while start.elapsed() < within {
            if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
            if let Ok(kc) = kube::config::Kubeconfig::read_from(&kubeconfig)
                && let Ok(config) =
                    kube::Config::from_custom_kubeconfig(kc, &Default::default()).await
                && let Ok(client) = kube::Client::try_from(config)
                && Api::<Service>::namespaced(client.clone(), "default")
                    .get("kubernetes")
                    .await
                    .is_ok()
            {
                return Some(client);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

async fn apply<K>(api: &Api<K>, obj: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).expect("object");
    api.create(&PostParams::default(), &o)
        .await
        .expect("create")
}

fn link(p: &Path) -> String {
    fs::read_link(p)
        .expect("readlink")
        .to_string_lossy()
        .into_owned()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

struct PodDir(tempfile::TempDir);

impl Drop for PodDir {
    fn drop(&mut self) {
        let _ = teardown_dir(&self.0.path().join("volumes"));
    }
}

fn pod_dir() -> PodDir {
    PodDir(
        tempfile::Builder::new()
            .prefix("skiff-kubelet-pod-")
            .tempdir()
            .expect("dir"),
    )
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("1"),
            "needs root (CI=1)"
        );
        eprintln!("SKIPPED: needs root for tmpfs mounts");
    }
    root
}

#[tokio::test]
async fn config_map_secret_and_downward_volumes_follow_the_api() {
    if !is_root() {
        return;
    }
    let (_server, client) = Server::start().await;
    let ns = "vol-cm";
    namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    apply(
        &cms,
        json!({"metadata": {"name": "game"}, "data": {"lives": "3", "level": "easy"}}),
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    apply(
        &secrets,
        json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}),
    )
    .await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": "p", "uid": "uid-p", "labels": {"app": "game"}},
        "spec": {
            "containers": [{"name": "app", "resources": {"limits": {"memory": "64Mi"}}}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "game", "defaultMode": 0o640,
                    "items": [{"key": "lives", "path": "conf/lives.txt", "mode": 0o600}, {"key": "level", "path": "level"}]}},
                {"name": "maybe", "configMap": {"name": "absent", "optional": true}},
                {"name": "sec", "secret": {"secretName": "creds"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
                ]}}
            ]
        }
    }))
    .expect("pod");
    let dir = pod_dir();
    let v = PodVolumes::setup(&client, &pod, dir.0.path(), "node-x")
        .await
        .expect("setup");

    let cfg = v.host_path("cfg").expect("cfg").to_path_buf();
    assert_eq!(
        fs::read_to_string(cfg.join("conf/lives.txt")).expect("lives"),
        "3"
    );
    assert_eq!(
        fs::read_to_string(cfg.join("level")).expect("level"),
        "easy"
    );
    let data = cfg.join(link(&cfg.join(DATA_DIR)));
    assert_eq!(mode(&data.join("conf/lives.txt")), 0o600);
    assert_eq!(mode(&data.join("level")), 0o640);
    assert!(
        super::mounts::is_mount_point(&cfg).is_ok_and(|m| !m),
        "configMap on disk"
    );
    let maybe = v.host_path("maybe").expect("maybe");
    assert!(maybe.is_dir());
    let sec = v.host_path("sec").expect("sec");
    assert_eq!(
        fs::read_to_string(sec.join("password")).expect("pw"),
        "hunter2"
    );
    assert_eq!(
        mode(&sec.join(link(&sec.join(DATA_DIR))).join("password")),
        0o644
    );
    assert!(
        super::mounts::is_mount_point(sec).expect("mountinfo"),
        "secret on tmpfs"
    );
    let info = v.host_path("info").expect("info");
    assert_eq!(
        fs::read_to_string(info.join("labels")).expect("labels"),
        "app=\"game\""
    );
    assert_eq!(fs::read_to_string(info.join("mem")).expect("mem"), "64");

    // Unchanged: refresh writes nothing.
    let before = link(&cfg.join(DATA_DIR));
    v.refresh(&client, &pod).await.expect("refresh");
    assert_eq!(link(&cfg.join(DATA_DIR)), before);

    // Changed: swapped in place.
    let mut held = fs::File::open(cfg.join("level")).expect("open old");
    cms.patch(
        "game",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"level": "hard"}})),
    )
    .await
    .expect("patch");
    v.refresh(&client, &pod).await.expect("refresh");
    assert_ne!(link(&cfg.join(DATA_DIR)), before);
    assert_eq!(
        fs::read_to_string(cfg.join("level")).expect("level"),
        "hard"
    );
    let mut old = String::new();
    std::io::Read::read_to_string(&mut held, &mut old).expect("old");
    assert_eq!(old, "easy");

    // A missing key is the kubelet's error, and leaves the volume as it was.
    cms.patch(
        "game",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/data/lives"}]))
                .expect("patch"),
        ),
    )
    .await
    .expect("remove key");
    let err = v.refresh(&client, &pod).await.expect_err("missing key");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: lives"
    );
    assert_eq!(
        fs::read_to_string(cfg.join("conf/lives.txt")).expect("kept"),
        "3"
    );

    // A missing object.
    let mut missing = pod.clone();
    if let Some(vols) = missing.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
        vols.retain(|v| v.name == "cfg");
        vols[0].config_map.as_mut().expect("cm").name = "nope".into();
    }
    let dir2 = pod_dir();
    let err = PodVolumes::setup(&client, &missing, dir2.0.path(), "node-x")
        .await
        .expect_err("missing configmap");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found"
    );

    PodVolumes::teardown(dir.0.path()).await.expect("teardown");
    assert!(!dir.0.path().join("volumes").exists());
}

fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64");
    serde_json::from_slice(&bytes).expect("claims")
}

#[tokio::test]
async fn projected_volume_has_a_pod_bound_token_renewed_near_expiry() {
    if !is_root() {
        return;
    }
    let (_server, client) = Server::start().await;
    let ns = "vol-proj";
    namespace(&client, ns).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    apply(&sas, json!({"metadata": {"name": "builder"}})).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    apply(
        &cms,
        json!({"metadata": {"name": "ca"}, "data": {"ca.crt": "PEM"}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = apply(
        &pods,
        json!({
            "metadata": {"name": "tok", "labels": {"a": "b"}},
            "spec": {
                "serviceAccountName": "builder",
                // Its own projected token volume instead of the automatic one.
                "automountServiceAccountToken": false,
                "containers": [{"name": "app", "image": "busybox"}],
                "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "audience": "vault"}},
                    {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                ]}}]
            }
        }),
    )
    .await;
    let dir = pod_dir();
    let v = PodVolumes::setup(&client, &pod, dir.0.path(), "node-x")
        .await
        .expect("setup");
    let vol = v
        .host_path("kube-api-access")
        .expect("volume")
        .to_path_buf();
    assert!(
        super::mounts::is_mount_point(&vol).expect("mountinfo"),
        "projected on tmpfs"
    );
    assert_eq!(fs::read_to_string(vol.join("ca.crt")).expect("ca"), "PEM");
    assert_eq!(fs::read_to_string(vol.join("namespace")).expect("ns"), ns);
    let token = fs::read_to_string(vol.join("token")).expect("token");
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        3600,
        "default expirationSeconds"
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "tok");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"].as_str(),
        pod.metadata.uid.as_deref()
    );
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "builder");

    // Young token: refresh keeps it.
    v.refresh(&client, &pod).await.expect("refresh");
    assert_eq!(fs::read_to_string(vol.join("token")).expect("token"), token);

    // Past 80% of its lifetime: renewed.
    for t in v.tokens.lock().expect("tokens").values_mut() {
        t.issued = SystemTime::now() - Duration::from_secs(2900);
        t.expires = t.issued + Duration::from_secs(3600);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    v.refresh(&client, &pod).await.expect("refresh");
    let renewed = fs::read_to_string(vol.join("token")).expect("token");
    assert_ne!(renewed, token, "renewed");
    assert_eq!(jwt_claims(&renewed)["aud"], json!(["vault"]));
    PodVolumes::teardown(dir.0.path()).await.expect("teardown");
}

#[tokio::test]
async fn claims_need_a_bound_host_path_volume() {
    let (_server, client) = Server::start().await;
    let ns = "vol-pvc";
    namespace(&client, ns).await;
    let host = tempfile::tempdir().expect("host dir");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = apply(
        &pvcs,
        json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}}
        }),
    )
    .await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": "p", "uid": "uid-pvc"},
        "spec": {
            "containers": [{"name": "app", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
        }
    }))
    .expect("pod");
    let dir = pod_dir();
    let err = PodVolumes::setup(&client, &pod, dir.0.path(), "node-x")
        .await
        .expect_err("unbound");
    assert_eq!(
        err.to_string(),
        format!("error processing PVC {ns}/data: PVC is not bound")
    );

    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv_name = format!("pv-{}", std::process::id());
    apply(
        &pvs,
        json!({
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "hostPath": {"path": host.path().join("vol"), "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": ns, "name": "data", "uid": pvc.metadata.uid}
            }
        }),
    )
    .await;
    let mut bound = pvcs.get("data").await.expect("pvc");
    bound.spec.get_or_insert_default().volume_name = Some(pv_name.clone());
    let bound = pvcs
        .replace("data", &PostParams::default(), &bound)
        .await
        .expect("bind");
    let mut status = bound.clone();
    status.status.get_or_insert_default().phase = Some("Bound".into());
    pvcs.replace_status("data", &PostParams::default(), &status)
        .await
        .expect("status");

    let v = PodVolumes::setup(&client, &pod, dir.0.path(), "node-x")
        .await
        .expect("bound claim");
    let m = v
        .mounts(&pod.spec.as_ref().expect("spec").containers[0])
        .expect("mounts");
    assert_eq!(
        m[0].host_path,
        host.path().join("vol").display().to_string()
    );
    assert!(
        host.path().join("vol").is_dir(),
        "DirectoryOrCreate made it"
    );
    let _ = pvs.delete(&pv_name, &Default::default()).await;
    PodVolumes::teardown(dir.0.path()).await.expect("teardown");
}

#[tokio::test]
async fn container_env_reads_config_and_services_from_the_api() {
    let (_server, client) = Server::start().await;
    let ns = "env-api";
    namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    apply(
        &cms,
        json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast"}}),
    )
    .await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = apply(
        &svcs,
        json!({"metadata": {"name": "web-api"}, "spec": {"ports": [{"name": "http", "port": 8080}]}}),
    )
    .await;
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("cluster ip");
    let kubernetes = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("kubernetes service");
    let api_ip = kubernetes.spec.and_then(|s| s.cluster_ip).expect("api ip");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "app",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "TARGET", "value": "$(WEB_API_SERVICE_HOST):$(WEB_API_SERVICE_PORT_HTTP)"},
                {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}
            ]}]}
    }))
    .expect("pod");
    let mut c = pod.spec.as_ref().expect("spec").containers[0].clone();
    let ctx = env::EnvContext {
        client: &client,
        pod: &pod,
        pod_ip: "10.42.0.9",
        host_ip: "127.0.0.1",
        node_name: "node-x",
    };
    let err = env::container_env(&ctx, &c).await.expect_err("missing key");
    assert_eq!(
        err.to_string(),
        format!("couldn't find key NOPE in ConfigMap {ns}/cfg")
    );
    c.env.as_mut().expect("env").pop();
    let vars: BTreeMap<String, String> = env::container_env(&ctx, &c)
        .await
        .expect("env")
        .into_iter()
        .collect();
    assert_eq!(vars.get("CFG_MODE").map(String::as_str), Some("fast"));
    assert_eq!(vars.get("TARGET"), Some(&format!("{ip}:8080")));
    assert_eq!(vars.get("WEB_API_PORT"), Some(&format!("tcp://{ip}:8080")));
    assert_eq!(vars.get("KUBERNETES_SERVICE_HOST"), Some(&api_ip));
    assert_eq!(
        vars.get("KUBERNETES_SERVICE_PORT").map(String::as_str),
        Some("443")
    );
}
