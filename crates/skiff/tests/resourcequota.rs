//! ResourceQuota: the controller reports usage, admission refuses what would exceed
//! a quota with Kubernetes' message, and deletes free the quota again.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::Api;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_limits_pods_and_cpu_and_frees_up_on_delete() {
    let s = TestServer::start();
    let client = s.client().await;
    s.kubectl_ok(&["create", "namespace", "team"]);
    s.apply("apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\n  namespace: team\nspec:\n  hard:\n    pods: \"2\"\n    requests.cpu: \"1\"\n    count/configmaps: \"10\"\n");
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "team");
    let used_of = |name: &'static str| {
        let quotas = quotas.clone();
        async move {
            let q = quotas.get("q").await.ok()?;
            q.status?.used?.get(name).map(|v| v.0.clone())
        }
    };
    cluster::eventually(Duration::from_secs(30), "quota status computed", || {
        used_of("pods")
    })
    .await;
    let pod = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: team\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests: {{cpu: {cpu}}}\n"
        )
    };
    s.apply(&pod("a", "600m"));
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&pod("b", "500m")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods \"b\" is forbidden: exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"),
        "{err}"
    );
    s.apply(&pod("b", "400m"));
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&pod("c", "0")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    let described = s.kubectl_ok(&["describe", "quota", "q", "-n", "team"]);
    assert!(
        described.contains("requests.cpu") && described.contains("1"),
        "{described}"
    );
    s.kubectl_ok(&[
        "delete",
        "pod",
        "a",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    cluster::eventually(
        Duration::from_secs(30),
        "usage drops after the delete",
        || async { (used_of("pods").await? == "1").then_some(()) },
    )
    .await;
    s.apply(&pod("c", "100m"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_quota_counts_and_limits_only_the_pods_in_its_scope() {
    let s = TestServer::start();
    let client = s.client().await;
    s.kubectl_ok(&["create", "namespace", "scoped"]);
    s.apply("apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: best-effort\n  namespace: scoped\nspec:\n  hard:\n    pods: \"1\"\n  scopes: [BestEffort]\n");
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "scoped");
    let used = || async {
        let q = quotas.get("best-effort").await.ok()?;
        q.status?.used?.get("pods").map(|v| v.0.clone())
    };
    cluster::eventually(Duration::from_secs(30), "quota status computed", used).await;
    let pod = |name: &str, resources: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: scoped\nspec:\n  containers:\n  - name: c\n    image: busybox\n{resources}"
        )
    };
    s.apply(&pod("free-1", ""));
    // A second best-effort pod is over the scoped quota…
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&pod("free-2", "")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "exceeded quota: best-effort, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{err}"
    );
    // …while pods with requests are outside its scope.
    let burstable = "    resources:\n      requests: {cpu: 100m}\n";
    s.apply(&pod("paid-1", burstable));
    s.apply(&pod("paid-2", burstable));
    // The controller recounts from the objects: with the best-effort pod gone, the
    // scope holds none (the two pods with requests are not counted).
    s.kubectl_ok(&[
        "delete",
        "pod",
        "free-1",
        "-n",
        "scoped",
        "--grace-period=0",
        "--force",
    ]);
    cluster::eventually(Duration::from_secs(30), "usage of the scope", || async {
        (used().await? == "0").then_some(())
    })
    .await;
    s.apply(&pod("free-2", ""));
}
