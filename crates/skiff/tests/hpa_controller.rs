//! HorizontalPodAutoscaler without a metrics API: it keeps the target within
//! min/max replicas through the scale subresource and reports that metrics are
//! unavailable, as Kubernetes does without metrics-server.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_raises_replicas_to_its_minimum_and_reports_missing_metrics() {
    let s = TestServer::start();
    let client = s.client().await;
    s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=1",
    ]);
    s.kubectl_ok(&[
        "autoscale",
        "deployment",
        "web",
        "--min=3",
        "--max=5",
        "--cpu-percent=70",
    ]);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    cluster::eventually(
        Duration::from_secs(60),
        "deployment scaled to the HPA minimum",
        || {
            let d = deploys.clone();
            async move { (d.get("web").await.ok()?.spec?.replicas? == 3).then_some(()) }
        },
    )
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa = cluster::eventually(Duration::from_secs(60), "HPA status written", || {
        let h = hpas.clone();
        async move {
            let hpa = h.get("web").await.ok()?;
            let conds = hpa.status.as_ref()?.conditions.clone()?;
            conds
                .iter()
                .any(|c| c.type_ == "ScalingActive")
                .then_some(hpa)
        }
    })
    .await;
    let conds = hpa.status.and_then(|s| s.conditions).unwrap_or_default();
    let active = conds
        .iter()
        .find(|c| c.type_ == "ScalingActive")
        .expect("ScalingActive");
    assert_eq!(active.status, "False");
    assert_eq!(active.reason.as_deref(), Some("FailedGetResourceMetric"));
    let table = s.kubectl_ok(&["get", "hpa", "web"]);
    assert!(table.contains("cpu: <unknown>/70%"), "{table}");
    let described = s.kubectl_ok(&["describe", "hpa", "web"]);
    assert!(
        described.contains("SuccessfulRescale")
            && described
                .contains("New size: 3; reason: Current number of replicas below Spec.MinReplicas"),
        "{described}"
    );
}
