//! Probes run by the node agent against real containers: a failing liveness probe
//! restarts the container (Unhealthy and Killing events, restartCount), an exec
//! readiness probe drives the container's `ready` and the pod's Ready condition both
//! ways, a startup probe holds liveness and readiness back until it passes (and
//! restarts a container that never starts), and a tcpSocket readiness probe waits for
//! the port. Needs root, containerd, runc and CNI plugins.

#[path = "support/agent.rs"]
mod agent;

use std::time::{Duration, Instant};

use agent::{AgentServer, container_status, eventually, phase, pod_where};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

fn running(pod: &Pod) -> bool {
    container_status(pod)
        .state
        .is_some_and(|s| s.running.is_some())
}

/// The status of the pod's condition `type_` ("True"/"False").
fn condition(pod: &Pod, type_: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// The events of the namespace as `kubectl get events` prints them, once `wanted`
/// are all in there.
async fn events_with(server: &AgentServer, wanted: &[&str]) -> String {
    eventually(
        Duration::from_secs(20),
        &format!("events {wanted:?}"),
        || async {
            let out = server.kubectl(&["get", "events", "-n", "default"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            wanted.iter().all(|w| text.contains(w)).then_some(text)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container_with_unhealthy_and_killing_events() {
    let (server, client) = AgentServer::ready().await;
    // httpd serves /index.html for 4 s after each start, then 404s.
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: live, namespace: default}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: busybox
    command: [sh, -c, 'mkdir -p /www; echo ok > /www/index.html; (sleep 4; rm /www/index.html) & exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = pod_where(
        &pods,
        "live",
        "live Running",
        Duration::from_secs(60),
        running,
    )
    .await;
    let first_id = container_status(&first).container_id;
    let since_running = Instant::now();
    let restarted = pod_where(
        &pods,
        "live",
        "the container restarted after failing its liveness probe",
        Duration::from_secs(40),
        |p| container_status(p).restart_count >= 1 && running(p),
    )
    .await;
    eprintln!(
        "timing: liveness failing (after 4 s) to container restarted {:?}",
        since_running.elapsed()
    );
    let c = container_status(&restarted);
    assert_ne!(c.container_id, first_id, "a new container runs");
    assert_eq!(phase(&restarted), "Running");
    let last = c
        .last_state
        .and_then(|s| s.terminated)
        .expect("the killed container is the last state");
    assert_eq!(
        last.exit_code, 137,
        "httpd as PID 1 ignores SIGTERM: {last:?}"
    );
    let events = events_with(
        &server,
        &[
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
            "Container web failed liveness probe, will be restarted",
        ],
    )
    .await;
    for line in events.lines().filter(|l| l.contains("probe")) {
        eprintln!("event: {line}");
    }
    assert!(
        events
            .lines()
            .any(|l| l.contains("Unhealthy") && l.contains("Warning")),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains("Killing") && l.contains("failed liveness probe")),
        "{events}"
    );
    // It keeps going: the new container fails again and is restarted again.
    pod_where(
        &pods,
        "live",
        "a second restart",
        Duration::from_secs(40),
        |p| container_status(p).restart_count >= 2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_readiness_probe_makes_the_pod_ready_and_not_ready_again() {
    let (server, client) = AgentServer::ready().await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: toggle, namespace: default}
spec:
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let unready = pod_where(
        &pods,
        "toggle",
        "toggle Running",
        Duration::from_secs(60),
        running,
    )
    .await;
    // Readiness starts false and stays so while the probe fails.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unready = pods.get("toggle").await.unwrap_or(unready);
    assert!(!container_status(&unready).ready);
    assert_eq!(condition(&unready, "Ready"), "False");
    assert_eq!(condition(&unready, "ContainersReady"), "False");
    let reason = unready
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(reason, "containers with unready status: [c]");

    server.kubectl_ok(&["exec", "toggle", "--", "touch", "/tmp/ready"]);
    let touched = Instant::now();
    let ready = pod_where(
        &pods,
        "toggle",
        "toggle Ready",
        Duration::from_secs(20),
        |p| container_status(p).ready && condition(p, "Ready") == "True",
    )
    .await;
    eprintln!("timing: file created to Ready {:?}", touched.elapsed());
    assert_eq!(condition(&ready, "ContainersReady"), "True");

    server.kubectl_ok(&["exec", "toggle", "--", "rm", "/tmp/ready"]);
    let removed = Instant::now();
    let not_ready = pod_where(
        &pods,
        "toggle",
        "toggle not Ready again",
        Duration::from_secs(20),
        |p| !container_status(p).ready && condition(p, "Ready") == "False",
    )
    .await;
    eprintln!("timing: file removed to not Ready {:?}", removed.elapsed());
    assert!(running(&not_ready), "readiness never restarts a container");
    assert_eq!(container_status(&not_ready).restart_count, 0);
    events_with(
        &server,
        &["Readiness probe failed: cat: can't open '/tmp/ready': No such file or directory"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_probe_holds_liveness_and_readiness_back_and_tcp_readiness_waits_for_the_port() {
    let (server, client) = AgentServer::ready().await;
    // `slow` starts after 5 s; its liveness probe would kill it at the first failure
    // if the startup probe did not hold it back. `never` never starts. `tcp` listens
    // after 3 s.
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slow, namespace: default}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'sleep 5; touch /tmp/started; exec sleep 3600']
    startupProbe:
      exec: {command: [cat, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: [cat, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: ['true']}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: never, namespace: default}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
    startupProbe:
      exec: {command: ['false']}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {name: tcp, namespace: default}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'sleep 3; exec httpd -f -p 9000']
    ports: [{name: listener, containerPort: 9000}]
    readinessProbe:
      tcpSocket: {port: listener}
      periodSeconds: 1
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let starting = pod_where(
        &pods,
        "slow",
        "slow Running",
        Duration::from_secs(60),
        running,
    )
    .await;
    let started_at = Instant::now();
    let c = container_status(&starting);
    if started_at.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            c.started,
            Some(false),
            "not started before the startup probe"
        );
        assert!(!c.ready);
    }
    let started = pod_where(
        &pods,
        "slow",
        "slow started and ready",
        Duration::from_secs(30),
        |p| container_status(p).started == Some(true) && container_status(p).ready,
    )
    .await;
    eprintln!(
        "timing: slow Running to started and ready {:?} (the container needs 5 s)",
        started_at.elapsed()
    );
    assert_eq!(condition(&started, "Ready"), "True");
    assert_eq!(
        container_status(&started).restart_count,
        0,
        "liveness waited for the startup probe"
    );

    let killed = pod_where(
        &pods,
        "never",
        "never restarted after failing its startup probe",
        Duration::from_secs(40),
        |p| container_status(p).restart_count >= 1,
    )
    .await;
    assert!(!container_status(&killed).ready);

    let tcp = pod_where(
        &pods,
        "tcp",
        "tcp ready once it listens",
        Duration::from_secs(40),
        |p| container_status(p).ready && condition(p, "Ready") == "True",
    )
    .await;
    assert_eq!(container_status(&tcp).restart_count, 0);

    let events = events_with(
        &server,
        &[
            "Startup probe failed: cat: can't open '/tmp/started': No such file or directory",
            "Container c failed startup probe, will be restarted",
            "Readiness probe failed: dial tcp ",
        ],
    )
    .await;
    assert!(
        events.contains(":9000: connect: connection refused"),
        "{events}"
    );
    assert!(
        !events.contains("Liveness probe failed"),
        "liveness never ran before the start: {events}"
    );
}
