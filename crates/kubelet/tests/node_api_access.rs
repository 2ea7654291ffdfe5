//! Who may call the node API, and its resource metrics: the API server (and
//! administrators) may; another node, though its certificate is signed by the same
//! cluster CA, is refused with the kubelet's 403 wording. `/metrics/resource` carries
//! the running container's CPU and memory as the kubelet's resource metrics.

mod support_node_api;

use support_node_api::{Harness, get, get_as, require_preconditions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_api_server_and_admins_may_call_the_node_api_and_metrics_are_served() {
    require_preconditions(
        "only_the_api_server_and_admins_may_call_the_node_api_and_metrics_are_served",
    );
    let mut h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let pod = h.run_pod("default", "metrics").await;
    h.run_container(&pod, "app", 0, &["sleep", "3600"]).await;

    // Another node's identity: signed by the cluster CA, but not the API server.
    let (node_cert, node_key) = apiserver::sign_client_cert(
        &h.pki.ca_cert,
        &h.pki.ca_key,
        "system:node:other",
        &["system:nodes"],
    )
    .expect("a node certificate");
    let node = (node_cert.as_str(), node_key.as_str());
    let (code, body) = get_as(&h.pki, port, "/containerLogs/default/metrics/app", node).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body.trim(),
        "Forbidden (user=system:node:other, verb=get, resource=nodes, subresource=proxy)"
    );
    let (code, body) = get_as(&h.pki, port, "/stats/summary", node).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("subresource=stats"), "{body}");
    let (code, body) = get_as(&h.pki, port, "/metrics/resource", node).await;
    assert_eq!(code, 403, "{body}");

    // An administrator (system:masters) may.
    let admin = (h.pki.admin_cert.as_str(), h.pki.admin_key.as_str());
    let (code, body) = get_as(&h.pki, port, "/healthz", admin).await;
    assert_eq!((code, body.as_str()), (200, "ok"));

    // The API server reads the resource metrics: the container's series are there
    // with real, non-zero readings.
    let (code, body) = get(&h.pki, port, "/metrics/resource").await;
    assert_eq!(code, 200, "{body}");
    let sample = |prefix: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
            .split_whitespace()
            .nth(1)
            .expect("a value")
            .parse()
            .expect("a number")
    };
    let series = "{container=\"app\",namespace=\"default\",pod=\"metrics\"}";
    assert!(sample(&format!("container_memory_working_set_bytes{series}")) > 0.0);
    assert!(sample(&format!("container_cpu_usage_seconds_total{series}")) >= 0.0);
    assert!(sample("pod_memory_working_set_bytes{namespace=\"default\",pod=\"metrics\"}") > 0.0);
    assert!(sample("node_memory_working_set_bytes ") > 0.0);
    assert!(sample("node_cpu_usage_seconds_total ") > 0.0);
    assert_eq!(sample("resource_scrape_error "), 0.0);
    assert!(body.contains("# TYPE container_cpu_usage_seconds_total counter"));

    let _ = stop.send(true);
    h.teardown().await;
}
