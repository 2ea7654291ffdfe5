//! The node agent runs real pods: `skiff server` registers its machine as a Ready
//! node, Deployment pods run busybox in containerd with pod IPs that answer from the
//! host, crashing containers back off, finished pods succeed, deleted pods get their
//! SIGTERM and grace period, init containers run in order, and a restart of the
//! server does not restart containers. Needs root, containerd, runc and CNI plugins.

#[path = "support/agent.rs"]
mod agent;

use std::time::{Duration, Instant};

use agent::{
    AgentServer, NODE, container_status, eventually, http_get, phase, pod_where, ready_node,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// Whether `ip` is inside the IPv4 `cidr`.
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (Some((base, len)), Ok(ip)) = (cidr.split_once('/'), ip.parse::<std::net::Ipv4Addr>())
    else {
        return false;
    };
    let (Ok(base), Ok(len)) = (base.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(base) & mask
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_registers_ready_and_deployment_pods_answer_http_from_the_host() {
    let server = AgentServer::start();
    let client = server.client().await;
    let started = Instant::now();
    let node = ready_node(&client).await;
    eprintln!("timing: server start to node Ready {:?}", started.elapsed());

    let spec = node.spec.clone().unwrap_or_default();
    let pod_cidr = spec.pod_cidr.expect("the node has a pod CIDR");
    assert!(
        pod_cidr.starts_with(server.cluster_cidr.trim_end_matches("0.0/16")),
        "{pod_cidr} is not in {}",
        server.cluster_cidr
    );
    let status = node.status.clone().unwrap_or_default();
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
        "{addresses:?}"
    );
    let info = status.node_info.expect("nodeInfo");
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
    assert!(info.kubelet_version.starts_with("v1.33."));
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("kubernetes.io/hostname").map(String::as_str),
        Some(NODE)
    );
    // The server gives its own node the control-plane role (a node may not).
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let labels = nodes
            .get(NODE)
            .await
            .expect("the node")
            .metadata
            .labels
            .unwrap_or_default();
        if labels.contains_key("node-role.kubernetes.io/control-plane") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no control-plane role: {labels:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let capacity = status.capacity.unwrap_or_default();
    for key in ["cpu", "memory", "ephemeral-storage", "pods"] {
        assert!(capacity.contains_key(key), "capacity {key} missing");
    }
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .unwrap_or_default();
    assert!(port > 0, "the node API port is published");

    server.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080}]
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let running = eventually(
        Duration::from_secs(60),
        "2 web pods Running and ready",
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| phase(p) == "Running" && container_status(p).ready)
                .collect();
            (running.len() == 2).then_some(running)
        },
    )
    .await;
    eprintln!(
        "timing: deployment created to 2 pods Running {:?}",
        started.elapsed()
    );

    for pod in &running {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let ip = status.pod_ip.clone().unwrap_or_default();
        assert!(in_cidr(&ip, &pod_cidr), "pod IP {ip} outside {pod_cidr}");
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        let c = container_status(pod);
        assert!(
            c.container_id
                .unwrap_or_default()
                .starts_with("containerd://")
        );
        assert!(c.state.and_then(|s| s.running).is_some());
        let response = eventually(Duration::from_secs(20), "an HTTP answer", || {
            let ip = ip.clone();
            async move { http_get(&ip, 8080).await }
        })
        .await;
        assert!(response.starts_with("HTTP/1."), "{response}");
        assert!(
            response.contains(&format!("hello from {name}")),
            "{name} answered {response}"
        );
    }

    // kubectl shows the pods' IPs and node.
    let wide = server.kubectl_ok(&["get", "pods", "-o", "wide", "-l", "app=web"]);
    for pod in &running {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let line = wide
            .lines()
            .find(|l| l.contains(&ip))
            .unwrap_or_else(|| panic!("{ip} not shown:\n{wide}"));
        assert!(line.contains(NODE) && line.contains("Running"), "{line}");
    }
    let events = server.kubectl_ok(&["get", "events", "-n", "default"]);
    assert!(events.contains("Started container httpd"), "{events}");
    assert!(
        events.contains("Container image \"busybox\" already present on machine"),
        "{events}"
    );

    // Logs, exec (exit code, stdin) and port-forward go API server -> node API ->
    // containerd.
    let first = running[0].metadata.name.clone().unwrap_or_default();
    logs_exec_and_port_forward(&server, &first).await;
}

/// `kubectl logs`, `exec` and `port-forward` against pod `name` (busybox httpd on
/// 8080 serving "hello from <name>").
async fn logs_exec_and_port_forward(server: &AgentServer, name: &str) {
    let out = server.kubectl_ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-log > /proc/1/fd/1",
    ]);
    assert_eq!(out.trim(), "to-stdout");
    let logs = eventually(
        Duration::from_secs(10),
        "the line in kubectl logs",
        || async {
            let out = server.kubectl(&["logs", name]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("to-log").then_some(text)
        },
    )
    .await;
    assert!(logs.contains("to-log"), "{logs}");
    let failed = server.kubectl(&["exec", name, "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        failed.status.code(),
        Some(3),
        "kubectl exec passes the exit code"
    );
    let echoed = server.kubectl_stdin(&["exec", "-i", name, "--", "cat"], Some("piped-in\n"));
    assert!(echoed.status.success());
    assert_eq!(String::from_utf8_lossy(&echoed.stdout).trim(), "piped-in");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let kubeconfig = server.kubeconfig();
    let home = kubeconfig.parent().expect("data dir").to_path_buf();
    let mut forward = std::process::Command::new("/usr/bin/kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &home)
        .args([
            "port-forward",
            &format!("pod/{name}"),
            &format!("{port}:8080"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let answer = eventually(
        Duration::from_secs(20),
        "an answer through port-forward",
        || http_get("127.0.0.1", port),
    )
    .await;
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(answer.contains(&format!("hello from {name}")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_backs_off_and_a_finished_pod_succeeds() {
    let (server, client) = AgentServer::ready().await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: default}
spec:
  restartPolicy: Always
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'echo failing; exit 1']}
---
apiVersion: v1
kind: Pod
metadata: {name: once, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'echo done > /dev/termination-log; exit 0']}
---
apiVersion: v1
kind: Pod
metadata: {name: hog, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    # tail keeps the current line; /dev/zero has no newline, so it grows until killed.
    command: [tail, /dev/zero]
    resources: {limits: {memory: 32Mi}}
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let crashing = pod_where(
        &pods,
        "crasher",
        "crasher in CrashLoopBackOff after 2 restarts",
        Duration::from_secs(60),
        |p| {
            let c = container_status(p);
            let waiting = c
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone());
            c.restart_count >= 2 && waiting.as_deref() == Some("CrashLoopBackOff")
        },
    )
    .await;
    let c = container_status(&crashing);
    let last = c
        .last_state
        .and_then(|s| s.terminated)
        .expect("the last state is terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(phase(&crashing), "Running");
    let first = c.restart_count;
    pod_where(
        &pods,
        "crasher",
        "the restart count to grow",
        Duration::from_secs(30),
        |p| container_status(p).restart_count > first,
    )
    .await;
    let events = server.kubectl_ok(&["get", "events", "-n", "default"]);
    assert!(
        events.contains("Back-off restarting failed container c in pod crasher_default("),
        "{events}"
    );

    let done = pod_where(
        &pods,
        "once",
        "once Succeeded",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )
    .await;
    let c = container_status(&done);
    let terminated = c.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    assert_eq!(terminated.message.as_deref(), Some("done\n"));
    assert_eq!(c.restart_count, 0);

    // Over its memory limit: killed by the kernel, reported as OOMKilled.
    let hog = pod_where(&pods, "hog", "hog Failed", Duration::from_secs(60), |p| {
        phase(p) == "Failed"
    })
    .await;
    let c = container_status(&hog);
    let terminated = c.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    let listed = server.kubectl_ok(&["get", "pod", "hog"]);
    assert!(listed.contains("OOMKilled"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_gets_sigterm_and_disappears_and_a_restart_keeps_containers() {
    let mut server = AgentServer::start();
    let client = server.client().await;
    ready_node(&client).await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: graceful, namespace: default}
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "echo got SIGTERM; exit 0" TERM; while true; do sleep 0.2; done']
---
apiVersion: v1
kind: Pod
metadata: {name: steady, namespace: default}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, '3600']}
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["graceful", "steady"] {
        pod_where(&pods, name, "Running", Duration::from_secs(60), |p| {
            phase(p) == "Running"
        })
        .await;
    }

    // Deleting: the trap answers SIGTERM long before the 60 s grace period ends.
    let started = Instant::now();
    server.kubectl_ok(&["delete", "pod", "graceful", "--wait=false"]);
    eventually(
        Duration::from_secs(30),
        "the deleted pod to disappear",
        || async { pods.get_opt("graceful").await.ok()?.is_none().then_some(()) },
    )
    .await;
    let took = started.elapsed();
    eprintln!("timing: delete to pod gone {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "SIGTERM was not honoured: {took:?}"
    );
    let events = server.kubectl_ok(&["get", "events", "-n", "default"]);
    assert!(events.contains("Stopping container c"), "{events}");

    // A restart of the server (and its agent) adopts the running container.
    let before = container_status(&pods.get("steady").await.expect("steady"));
    server.restart();
    let client = server.client().await;
    ready_node(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Let the agent look at the pod a few times.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = pod_where(
        &pods,
        "steady",
        "steady Running",
        Duration::from_secs(30),
        |p| phase(p) == "Running",
    )
    .await;
    let after = container_status(&after);
    assert_eq!(
        after.container_id, before.container_id,
        "the container was replaced"
    );
    assert_eq!(after.restart_count, 0);
    assert!(after.ready);
}

/// Records the request lines of HTTP requests to 127.0.0.1:`port` and answers 200.
fn record_requests(
    listener: tokio::net::TcpListener,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(line) = text.lines().next() {
                    record.lock().expect("lock").push(line.to_owned());
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_start_and_pre_stop_hooks_run_exec_and_http_get_before_sigterm() {
    let (server, client) = AgentServer::ready().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a hook target on loopback");
    let port = listener.local_addr().expect("address").port();
    let seen = record_requests(listener);
    let shared = server.dir.join("hooks");
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks, namespace: default}}
spec:
  terminationGracePeriodSeconds: 60
  volumes: [{{name: h, hostPath: {{path: "{shared}", type: DirectoryOrCreate}}}}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'trap "echo term >> /h/log; exit 0" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{{name: h, mountPath: /h}}]
    lifecycle:
      postStart:
        httpGet: {{host: 127.0.0.1, port: {port}, path: /post-start}}
      preStop:
        exec: {{command: [sh, -c, 'echo pre-stop >> /h/log']}}
  - name: web
    image: busybox
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
    lifecycle:
      preStop:
        httpGet: {{host: 127.0.0.1, port: {port}, path: /pre-stop}}
"#,
        shared = shared.display()
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod_where(
        &pods,
        "hooks",
        "hooks Running",
        Duration::from_secs(60),
        |p| phase(p) == "Running",
    )
    .await;
    let requests = || seen.lock().expect("lock").clone();
    assert!(
        requests().contains(&"GET /post-start HTTP/1.1".to_owned()),
        "the postStart httpGet ran before the pod was Running: {:?}",
        requests()
    );
    assert!(!requests().iter().any(|r| r.contains("/pre-stop")));

    server.kubectl_ok(&["delete", "pod", "hooks", "--wait=false"]);
    eventually(
        Duration::from_secs(40),
        "the deleted pod to disappear",
        || async { pods.get_opt("hooks").await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(
        requests().contains(&"GET /pre-stop HTTP/1.1".to_owned()),
        "{:?}",
        requests()
    );
    // The exec preStop hook ran to its end before the container got SIGTERM.
    let log = std::fs::read_to_string(shared.join("log")).expect("the hooks' log");
    assert_eq!(log, "pre-stop\nterm\n");
    let events = server.kubectl_ok(&["get", "events", "-n", "default"]);
    assert!(!events.contains("FailedPreStopHook"), "{events}");
    assert!(!events.contains("FailedPostStartHook"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_past_its_active_deadline_fails_and_its_containers_stop() {
    let (server, client) = AgentServer::ready().await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: deadline, namespace: default}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sleep, '3600']}
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod_where(&pods, "deadline", "Running", Duration::from_secs(60), |p| {
        phase(p) == "Running"
    })
    .await;
    let failed = pod_where(
        &pods,
        "deadline",
        "Failed with its container terminated",
        Duration::from_secs(40),
        |p| {
            phase(p) == "Failed"
                && container_status(p)
                    .state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
        },
    )
    .await;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "False");
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.name=deadline",
    ]);
    assert!(
        events.contains("DeadlineExceeded")
            && events.contains("Pod was active on the node longer than the specified deadline"),
        "{events}"
    );
    // It stays failed: the container is not restarted (restartPolicy Always).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = pods.get("deadline").await.expect("the pod");
    assert_eq!(phase(&later), "Failed");
    assert_eq!(container_status(&later).restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_main_container() {
    let (server, client) = AgentServer::ready().await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ordered, namespace: default}
spec:
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - {name: first, image: busybox, command: [sh, -c, 'echo first >> /shared/order; sleep 1'], volumeMounts: [{name: shared, mountPath: /shared}]}
  - {name: second, image: busybox, command: [sh, -c, 'echo second >> /shared/order; sleep 1'], volumeMounts: [{name: shared, mountPath: /shared}]}
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo main >> /shared/order; cat /shared/order > /dev/termination-log']
    volumeMounts: [{name: shared, mountPath: /shared}]
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pending = pod_where(
        &pods,
        "ordered",
        "ordered initializing",
        Duration::from_secs(60),
        |p| {
            phase(p) == "Pending"
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "Initialized"
                                && c.status == "False"
                                && c.reason.as_deref() == Some("ContainersNotInitialized")
                        })
                    })
        },
    )
    .await;
    assert_eq!(phase(&pending), "Pending");
    let done = pod_where(
        &pods,
        "ordered",
        "ordered Succeeded",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )
    .await;
    let status = done.status.clone().unwrap_or_default();
    let inits = status.init_container_statuses.unwrap_or_default();
    let finished = |i: usize| {
        inits[i]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("init container terminated")
    };
    let (first, second) = (finished(0), finished(1));
    assert_eq!((first.exit_code, second.exit_code), (0, 0));
    assert!(first.finished_at.as_ref().map(|t| t.0) <= second.started_at.as_ref().map(|t| t.0));
    let main = container_status(&done)
        .state
        .and_then(|s| s.terminated)
        .expect("main terminated");
    assert!(second.finished_at.as_ref().map(|t| t.0) <= main.started_at.as_ref().map(|t| t.0));
    assert_eq!(main.message.as_deref(), Some("first\nsecond\nmain\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_pod_listens_on_the_node_address() {
    let (server, client) = AgentServer::ready().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hostnet, namespace: default}}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'mkdir -p /www && echo "host network" > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www']
"#
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pod_where(
        &pods,
        "hostnet",
        "hostnet Running",
        Duration::from_secs(60),
        |p| phase(p) == "Running",
    )
    .await;
    let status = pod.status.unwrap_or_default();
    assert_eq!(
        status.pod_ip.as_deref(),
        Some("127.0.0.1"),
        "the pod IP is the node's"
    );
    let answer = eventually(
        Duration::from_secs(20),
        "an answer on the host port",
        || http_get("127.0.0.1", port),
    )
    .await;
    assert!(answer.contains("host network"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_keeps_running_beside_the_main_container_and_post_start_runs() {
    let (server, client) = AgentServer::ready().await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: sidecar, namespace: default}
spec:
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: helper
    image: busybox
    restartPolicy: Always
    command: [sh, -c, 'while true; do date > /shared/helper; sleep 1; done']
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'while true; do sleep 1; done']
    volumeMounts: [{name: shared, mountPath: /shared}]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, 'echo hooked > /shared/post-start']}
"#,
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pod_where(
        &pods,
        "sidecar",
        "sidecar pod Running and ready",
        Duration::from_secs(60),
        |p| phase(p) == "Running" && container_status(p).ready,
    )
    .await;
    let status = pod.status.unwrap_or_default();
    let helper = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == "helper")
        .expect("the sidecar's status");
    assert!(
        helper.state.and_then(|s| s.running).is_some(),
        "the sidecar is still running"
    );
    assert_eq!(helper.started, Some(true));
    // The main container sees what the sidecar and its postStart hook wrote.
    let out = eventually(Duration::from_secs(10), "both files", || async {
        let out = server.kubectl(&[
            "exec",
            "sidecar",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "cat /shared/post-start && test -s /shared/helper && echo helper-ok",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("helper-ok").then_some(text)
    })
    .await;
    assert!(out.contains("hooked"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_containerd_is_restarted_and_pods_keep_running() {
    let (server, client) = AgentServer::ready().await;
    let pod_yaml = |name: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  containers:
  - {{name: c, image: busybox, command: [sh, -c, 'while true; do sleep 1; done']}}
"#
        )
    };
    server.apply(&pod_yaml("before"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = |p: &Pod| phase(p) == "Running" && container_status(p).ready;
    let before = pod_where(
        &pods,
        "before",
        "before Running",
        Duration::from_secs(60),
        running,
    )
    .await;
    let id = container_status(&before)
        .container_id
        .expect("container id");

    // SIGKILL the agent's containerd (its command line names its config).
    let config = server
        .dir
        .join("agent")
        .join("containerd")
        .join("config.toml");
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"containerd"))
                    && args
                        .iter()
                        .any(|a| *a == config.as_os_str().as_encoded_bytes())
            })
        })
        .collect();
    assert_eq!(pids.len(), 1, "one containerd for this agent: {pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill containerd");

    // The agent restarts it; the old pod keeps its container, a new pod starts.
    server.apply(&pod_yaml("after"));
    pod_where(
        &pods,
        "after",
        "after Running",
        Duration::from_secs(60),
        running,
    )
    .await;
    let again = pods.get("before").await.expect("before");
    assert!(running(&again), "the old pod is still Running and ready");
    let c = container_status(&again);
    assert_eq!(c.container_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_forwards_to_the_pod() {
    let (server, client) = AgentServer::ready().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    server.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hostport, namespace: default}}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'mkdir -p /www && echo "via host port" > /www/index.html && exec httpd -f -p 8080 -h /www']
    ports: [{{containerPort: 8080, hostPort: {port}}}]
"#
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod_where(
        &pods,
        "hostport",
        "hostport Running",
        Duration::from_secs(60),
        |p| phase(p) == "Running",
    )
    .await;
    let answer = eventually(
        Duration::from_secs(20),
        "an answer on the host port",
        || http_get("127.0.0.1", port),
    )
    .await;
    assert!(answer.contains("via host port"), "{answer}");
}

/// Volumes are mounted while the sandbox starts; when one cannot be mounted the pod
/// keeps no sandbox (no IP, ContainerCreating, a FailedMount event) until it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_missing_config_map_waits_without_a_sandbox_until_it_exists() {
    let (server, client) = AgentServer::ready().await;
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: needs-config, namespace: default}
spec:
  restartPolicy: Never
  volumes: [{name: cfg, configMap: {name: later}}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'cat /cfg/greeting > /dev/termination-log']
    volumeMounts: [{name: cfg, mountPath: /cfg}]
"#,
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let failed = eventually(Duration::from_secs(60), "a FailedMount event", || async {
        events
            .list(&ListParams::default().fields("involvedObject.name=needs-config"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedMount"))
    })
    .await;
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("later"),
        "{failed:?}"
    );
    // Give the agent a few more attempts, then look: still no sandbox.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let waiting = pods.get("needs-config").await.expect("the pod");
    assert_eq!(phase(&waiting), "Pending");
    let status = waiting.status.clone().unwrap_or_default();
    assert_eq!(status.pod_ip, None, "no sandbox, so no pod IP");
    assert_eq!(
        container_status(&waiting)
            .state
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref(),
        Some("ContainerCreating")
    );
    server.apply(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: later, namespace: default}
data: {greeting: hello}
"#,
    );
    let done = pod_where(
        &pods,
        "needs-config",
        "needs-config Succeeded",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )
    .await;
    let message = container_status(&done)
        .state
        .and_then(|s| s.terminated)
        .and_then(|t| t.message);
    assert_eq!(message.as_deref(), Some("hello"));
}
