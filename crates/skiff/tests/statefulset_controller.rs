//! End-to-end: the StatefulSet controller against a real server. No node agent runs:
//! tests mark pods Running and Ready with `cluster::set_pod_running`.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

const WAIT: Duration = Duration::from_secs(60);

fn web_yaml(replicas: i32, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: default
spec:
  serviceName: nginx
  replicas: {replicas}
{extra_spec}
  selector:
    matchLabels: {{app: nginx}}
  template:
    metadata:
      labels: {{app: nginx}}
    spec:
      containers:
      - name: nginx
        image: {image}
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
"#
    )
}

async fn pod_names(client: &kube::Client) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels("app=nginx"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

async fn get_pod(client: &kube::Client, name: &str) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.get_opt(name).await.ok().flatten()
}

fn is_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Waits for `name` to exist and marks it Running and Ready.
async fn run_pod(client: &kube::Client, name: &str) -> Pod {
    let pod = cluster::eventually(WAIT, &format!("pod {name}"), || async {
        get_pod(client, name).await
    })
    .await;
    if !is_running(&pod) {
        cluster::set_pod_running(client, "default", name, "10.42.0.9").await;
    }
    pod
}

#[tokio::test]
async fn ordered_ready_creates_each_pod_after_the_previous_is_ready_with_its_claim() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&web_yaml(3, "nginx:1.25", ""));
    let web0 =
        cluster::eventually(WAIT, "web-0", || async { get_pod(&client, "web-0").await }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pod_names(&client).await,
        ["web-0"],
        "web-1 must wait for web-0"
    );
    let spec = web0.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let vol = spec
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == "www")
        .expect("www volume");
    assert_eq!(
        vol.persistent_volume_claim
            .as_ref()
            .expect("pvc")
            .claim_name,
        "www-web-0"
    );
    assert_eq!(web0.labels()["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(web0.labels()["apps.kubernetes.io/pod-index"], "0");
    assert!(web0.labels()["controller-revision-hash"].starts_with("web-"));
    cluster::set_pod_running(&client, "default", "web-0", "10.42.0.10").await;
    run_pod(&client, "web-1").await;
    run_pod(&client, "web-2").await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for n in ["www-web-0", "www-web-1", "www-web-2"] {
        claims
            .get(n)
            .await
            .unwrap_or_else(|e| panic!("claim {n}: {e}"));
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    cluster::eventually(WAIT, "3 ready replicas", || async {
        let st = sets.get("web").await.ok()?.status?;
        (st.ready_replicas == Some(3) && st.current_revision == st.update_revision).then_some(())
    })
    .await;
    let out = s.kubectl_ok(&["get", "statefulset", "web"]);
    assert!(out.contains("3/3"), "{out}");
    let revs = s.kubectl_ok(&["get", "controllerrevisions", "-o", "name"]);
    assert!(revs.contains("controllerrevision.apps/web-"), "{revs}");
}

#[tokio::test]
async fn scaling_down_removes_the_highest_ordinal_first() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&web_yaml(3, "nginx:1.25", ""));
    for n in ["web-0", "web-1", "web-2"] {
        run_pod(&client, n).await;
    }
    s.kubectl_ok(&["scale", "statefulset", "web", "--replicas=1"]);
    cluster::eventually(WAIT, "only web-0 left", || async {
        let names = pod_names(&client).await;
        // Never a hole: while web-2 exists, web-1 does too.
        assert!(
            !names.contains(&"web-2".to_string()) || names.contains(&"web-1".to_string()),
            "{names:?}"
        );
        (names == ["web-0"]).then_some(())
    })
    .await;
    // The controller's events show the order: web-2 went first.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut deletes: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulDelete"))
        .collect();
    deletes.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
    let notes: Vec<String> = deletes.iter().filter_map(|e| e.note.clone()).collect();
    assert_eq!(
        notes,
        [
            "delete Pod web-2 in StatefulSet web successful",
            "delete Pod web-1 in StatefulSet web successful"
        ]
    );
    // Claims are retained by default.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    assert!(claims.get_opt("www-web-2").await.expect("get").is_some());
}

#[tokio::test]
async fn partitioned_rolling_update_replaces_only_ordinals_at_or_above_the_partition() {
    let s = support::TestServer::start();
    let client = s.client().await;
    let strategy =
        "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: 1";
    s.apply(&web_yaml(3, "nginx:1.25", strategy));
    for n in ["web-0", "web-1", "web-2"] {
        run_pod(&client, n).await;
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let old_rev = cluster::eventually(WAIT, "initial revision", || async {
        sets.get("web").await.ok()?.status?.update_revision
    })
    .await;
    s.apply(&web_yaml(3, "nginx:1.26", strategy));
    // web-2 then web-1 come back with the new image; each must be Running to proceed.
    for n in ["web-2", "web-1"] {
        cluster::eventually(WAIT, &format!("{n} updated"), || async {
            let p = get_pod(&client, n).await?;
            let updated = p.spec.as_ref()?.containers[0].image.as_deref() == Some("nginx:1.26");
            if updated && !is_running(&p) {
                cluster::set_pod_running(&client, "default", n, "10.42.0.11").await;
            }
            (updated && p.metadata.deletion_timestamp.is_none()).then_some(())
        })
        .await;
    }
    let st = cluster::eventually(WAIT, "two updated replicas", || async {
        let st = sets.get("web").await.ok()?.status?;
        (st.updated_replicas == Some(2) && st.ready_replicas == Some(3)).then_some(st)
    })
    .await;
    assert_ne!(st.update_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(st.current_revision.as_deref(), Some(old_rev.as_str()));
    let web0 = get_pod(&client, "web-0").await.expect("web-0");
    assert_eq!(
        web0.spec.expect("spec").containers[0].image.as_deref(),
        Some("nginx:1.25")
    );
    assert_eq!(
        web0.metadata.labels.expect("labels")["controller-revision-hash"],
        old_rev
    );
}
