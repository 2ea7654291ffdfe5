//! Storage objects in use are protected as in Kubernetes: every claim gets the
//! `kubernetes.io/pvc-protection` finalizer and every volume `kubernetes.io/pv-protection`;
//! a deleted claim stays Terminating while a running pod uses it, and a deleted volume
//! while it is Bound. No node agent: the test plays the kubelet's pod status.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::Api;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_in_use_and_a_bound_volume_outlive_their_deletion_until_released() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "n1", "4", "8Gi", &[], &[]).await;
    s.apply(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: disk}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: /tmp/skiff-storage-protection-test}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: user, namespace: default}
spec:
  nodeName: n1
  containers: [{name: c, image: busybox}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
"#,
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    cluster::eventually(WAIT, "the claim bound", || async {
        let c = claims.get("data").await.ok()?;
        (c.status?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await;
    let claim = claims.get("data").await.expect("claim");
    assert_eq!(
        claim.metadata.finalizers.as_deref(),
        Some(&["kubernetes.io/pvc-protection".to_owned()][..])
    );
    let volume = volumes.get("disk").await.expect("volume");
    assert_eq!(
        volume.metadata.finalizers.as_deref(),
        Some(&["kubernetes.io/pv-protection".to_owned()][..])
    );
    cluster::set_pod_running(&client, "default", "user", "10.42.0.9").await;

    // Deleting the claim while the pod runs: it stays, Terminating.
    s.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
    // Also the bound volume: it stays while Bound.
    s.kubectl_ok(&["delete", "pv", "disk", "--wait=false"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let claim = claims.get("data").await.expect("the claim is kept");
    assert!(claim.metadata.deletion_timestamp.is_some());
    let listed = s.kubectl_ok(&["get", "pvc", "data"]);
    assert!(listed.contains("Terminating"), "{listed}");
    assert!(volumes.get_opt("disk").await.expect("get").is_some());

    // The pod finishes: the claim goes, then the volume (Released, no longer Bound).
    cluster::set_pod_finished(&client, "default", "user", 0).await;
    cluster::eventually(WAIT, "the claim gone", || async {
        claims.get_opt("data").await.ok()?.is_none().then_some(())
    })
    .await;
    cluster::eventually(WAIT, "the volume gone", || async {
        volumes.get_opt("disk").await.ok()?.is_none().then_some(())
    })
    .await;
}
