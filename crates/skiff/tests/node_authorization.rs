//! The Node authorizer against the real binary (`--authorization-mode` defaults to
//! `Node,RBAC`): two node identities, `system:node:a` and `system:node:b` in
//! `system:nodes`, with client certificates signed by the cluster CA as the join flow
//! signs them. No agent runs: the administrator creates the Nodes and a pod bound
//! to node a. Node a reads the secret and configmap its pod uses and asks for a
//! token for its account; node b is refused with kube-apiserver's message, cannot
//! list every secret, and neither node renews the other's Lease. Once the pod is
//! deleted, node a loses its access too.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::TestServer;

/// A kubeconfig for node `name` (`system:node:<name>` in `system:nodes`), signed
/// with the server's CA.
fn node_kubeconfig(s: &TestServer, name: &str) -> PathBuf {
    s.signed_kubeconfig(
        &format!("node-{name}.yaml"),
        &format!("system:node:{name}"),
        &["system:nodes"],
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs kubectl as `kubeconfig` until it succeeds (the authorizer's graph follows
/// the store a moment after a write), then returns its output.
fn eventually_ok(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = s.kubectl_as(kubeconfig, args);
        if o.status.success() {
            return text(&o.stdout);
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} kept failing:\n{}",
            text(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs kubectl as `kubeconfig` until it is refused; returns its stderr.
fn eventually_refused(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = s.kubectl_as(kubeconfig, args);
        if !o.status.success() {
            return text(&o.stderr);
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} kept succeeding:\n{}",
            text(&o.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn refused(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let o = s.kubectl_as(kubeconfig, args);
    assert!(
        !o.status.success(),
        "kubectl {args:?} should be refused:\n{}",
        text(&o.stdout)
    );
    text(&o.stderr)
}

/// A kube-rs client with `kubeconfig`.
async fn client_of(kubeconfig: &PathBuf) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(cfg).expect("kube client")
}

fn lease(name: &str) -> Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": k8s_openapi::jiff::Timestamp::now().to_string()},
    }))
    .expect("a lease")
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret, namespace: team}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Secret
metadata: {name: unused-secret, namespace: team}
stringData: {password: swordfish}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: team}
data: {mode: fast}
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team}
spec:
  nodeName: a
  containers:
  - name: app
    image: busybox
    envFrom:
    - configMapRef: {name: app-config}
    volumeMounts:
    - {name: creds, mountPath: /creds}
  volumes:
  - name: creds
    secret: {secretName: app-secret}
"#;

#[test]
fn a_node_reads_only_what_the_pods_bound_to_it_use_and_renews_only_its_own_lease() {
    let s = TestServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let admin = runtime.block_on(s.client());
    runtime.block_on(async {
        for name in ["a", "b"] {
            cluster::create_node(&admin, name, "4", "8Gi", &[], &[]).await;
        }
    });
    s.apply(OBJECTS);
    // The namespace's default ServiceAccount comes from its controller; the pod's
    // admission waits for it.
    s.apply(POD);
    let (a, b) = (node_kubeconfig(&s, "a"), node_kubeconfig(&s, "b"));

    // Node a reads what its pod uses, also as a list or watch of that one object.
    let out = eventually_ok(
        &s,
        &a,
        &[
            "get",
            "secret",
            "app-secret",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.password}",
        ],
    );
    assert_eq!(out, "aHVudGVyMg==");
    let out = eventually_ok(
        &s,
        &a,
        &[
            "get",
            "configmap",
            "app-config",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.mode}",
        ],
    );
    assert_eq!(out, "fast");
    eventually_ok(
        &s,
        &a,
        &[
            "get",
            "secrets",
            "-n",
            "team",
            "--field-selector",
            "metadata.name=app-secret",
        ],
    );

    // Node b is refused, worded as kube-apiserver words it.
    let err = refused(&s, &b, &["get", "secret", "app-secret", "-n", "team"]);
    assert!(
        err.contains(
            "Error from server (Forbidden): secrets \"app-secret\" is forbidden: User \"system:node:b\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team\": no relationship found between node 'b' and this object"
        ),
        "{err}"
    );
    let err = refused(&s, &b, &["get", "configmap", "app-config", "-n", "team"]);
    assert!(
        err.contains("configmaps \"app-config\" is forbidden: User \"system:node:b\"")
            && err.contains("no relationship found between node 'b' and this object"),
        "{err}"
    );
    // Nor does node a read a secret its pod does not use.
    let err = refused(&s, &a, &["get", "secret", "unused-secret", "-n", "team"]);
    assert!(
        err.contains("no relationship found between node 'a' and this object"),
        "{err}"
    );
    // No node lists every secret, in a namespace or across all.
    let err = refused(&s, &b, &["get", "secrets", "-A"]);
    assert!(
        err.contains(
            "secrets is forbidden: User \"system:node:b\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        ),
        "{err}"
    );
    let err = refused(&s, &a, &["get", "secrets", "-n", "team"]);
    assert!(
        err.contains(
            "secrets is forbidden: User \"system:node:a\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team\""
        ),
        "{err}"
    );

    // A token for the pod's account, bound to the pod (by name and UID, as
    // NodeRestriction requires of nodes): node a only.
    let uid = s.kubectl_ok(&[
        "get",
        "pod",
        "app",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let token = [
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "app",
        "--bound-object-uid",
        uid.trim(),
    ];
    let out = eventually_ok(&s, &a, &token);
    assert_eq!(out.trim().split('.').count(), 3, "a JWT: {out}");
    let err = refused(&s, &b, &token);
    assert!(
        err.contains("serviceaccounts \"default\" is forbidden: User \"system:node:b\" cannot create resource \"serviceaccounts/token\"")
            && err.contains("no relationship found between node 'b' and this object"),
        "{err}"
    );

    // Each node creates and renews its own Lease; neither touches the other's.
    runtime.block_on(async {
        let leases = |c: kube::Client| Api::<Lease>::namespaced(c, "kube-node-lease");
        let (la, lb) = (leases(client_of(&a).await), leases(client_of(&b).await));
        la.create(&PostParams::default(), &lease("a"))
            .await
            .expect("node a creates its lease");
        lb.create(&PostParams::default(), &lease("b"))
            .await
            .expect("node b creates its lease");
        let renew = json!({"spec": {"renewTime": k8s_openapi::jiff::Timestamp::now().to_string()}});
        la.patch("a", &PatchParams::default(), &Patch::Merge(&renew))
            .await
            .expect("node a renews its lease");
        let mut own = la.get("a").await.expect("node a reads its lease");
        own.spec.get_or_insert_default().lease_duration_seconds = Some(40);
        la.replace("a", &PostParams::default(), &own)
            .await
            .expect("node a replaces its lease");
        for refused in [
            la.patch("b", &PatchParams::default(), &Patch::Merge(&renew))
                .await
                .map(|_| ()),
            la.get("b").await.map(|_| ()),
            lb.patch("a", &PatchParams::default(), &Patch::Merge(&renew))
                .await
                .map(|_| ()),
        ] {
            match refused {
                Err(kube::Error::Api(e)) => {
                    assert_eq!(e.code, 403, "{e:?}");
                    assert!(
                        e.message.contains(
                            "can only access node lease with the same name as the requesting node"
                        ),
                        "{e:?}"
                    );
                }
                other => panic!("another node's lease: {other:?}"),
            }
        }
    });

    // The pod goes, and with it node a's access.
    s.kubectl_ok(&[
        "delete",
        "pod",
        "app",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    let err = eventually_refused(&s, &a, &["get", "secret", "app-secret", "-n", "team"]);
    assert!(
        err.contains("no relationship found between node 'a' and this object"),
        "{err}"
    );
    let err = refused(&s, &a, &["get", "configmap", "app-config", "-n", "team"]);
    assert!(
        err.contains("no relationship found between node 'a' and this object"),
        "{err}"
    );
}
