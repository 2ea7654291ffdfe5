//! `kubectl logs`, `exec`, `attach`, `cp` and `port-forward` through a real API
//! server to the node API, which serves a real container of a private containerd.
//! The pod and its Node are written by the test (no agent runs): the Node's
//! InternalIP and `daemonEndpoints.kubeletEndpoint.Port` point at the node API.
//!
//! kubectl 1.32+ offers WebSocket `v5.channel.k8s.io` for exec/attach/cp and the
//! `SPDY/3.1+portforward.k8s.io` WebSocket tunnel for port-forward, and falls back
//! to SPDY/3.1 when the upgrade is refused. containerd's stream server speaks
//! neither, so the node API serves both itself over SPDY to containerd: kubectl's
//! `-v=6` log shows WebSocket GETs switching protocols, no POST (SPDY) upgrade and
//! no "RemoteCommand fallback". kube-rs (offering v5 and v4) gets v5 and its stdin
//! close.

mod support_node_api;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support_node_api::{Harness, require_preconditions};

fn kubectl(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kubectl-cache"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("kubectl finishes")
}

/// What client-go logs (`-v=4` and up) once it speaks exec/attach v5 over WebSocket.
const V5_LOG: &str = "The subprotocol is v5.channel.k8s.io";
/// What client-go logs once its port-forward tunnel is up.
const TUNNEL_LOG: &str = "negotiated protocol: portforward.k8s.io";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts from kubectl's `-v=6` log that its `subresource` call of pod `pod` was a
/// WebSocket upgrade (a GET switching protocols) that negotiated `negotiated` (as
/// client-go logs it), with no fallback to SPDY (a POST upgrade) after it.
fn assert_websocket_without_fallback(stderr: &str, pod: &str, subresource: &str, negotiated: &str) {
    let path = format!("/api/v1/namespaces/default/pods/{pod}/{subresource}");
    let calls: Vec<&str> = stderr.lines().filter(|l| l.contains(&path)).collect();
    let verb = |l: &str, verb: &str| {
        l.contains(&format!("verb=\"{verb}\"")) || l.contains(&format!("{verb} https://"))
    };
    assert!(
        calls
            .iter()
            .any(|l| verb(l, "GET") && l.contains("101 Switching Protocols")),
        "no WebSocket GET to {path} switched protocols in kubectl's log:\n{stderr}"
    );
    assert!(
        stderr.contains(negotiated),
        "kubectl did not log {negotiated:?}:\n{stderr}"
    );
    assert!(
        !calls.iter().any(|l| verb(l, "POST")),
        "kubectl fell back to a SPDY upgrade:\n{stderr}"
    );
    assert!(
        !stderr.contains("RemoteCommand fallback"),
        "kubectl fell back:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_exec_attach_and_port_forward_reach_the_container() {
    require_preconditions("kubectl_logs_exec_attach_and_port_forward_reach_the_container");
    assert!(
        Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_ok(),
        "kubectl_logs_exec_attach_and_port_forward_reach_the_container needs kubectl"
    );
    let mut h = Harness::start().await;
    let (node_port, stop_node_api) = h.start_node_api().await;

    // The API server, with the test's PKI (its kubelet-client certificate is signed
    // by the CA the node API trusts).
    let config = apiserver::ApiServerConfig {
        port: 0,
        tls_dir: h.dir.join("tls"),
        ..Default::default()
    };
    let server = apiserver::ApiServer::build(config, Arc::new(store::MemoryStore::new()), &h.pki)
        .await
        .expect("the API server builds")
        .spawn()
        .expect("the API server runs");
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    apiserver::write_kubeconfig(
        &h.dir.join("kubeconfig"),
        &url,
        &h.pki.ca_cert,
        &h.pki.admin_cert,
        &h.pki.admin_key,
        0o600,
    )
    .expect("a kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(h.dir.join("kubeconfig")).expect("read");
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client config");
    let client = kube::Client::try_from(client_config).expect("a client");

    // The Node the pod runs on, reached at 127.0.0.1:<node API port>.
    let node_name = format!("node-{}", h.id);
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": node_name}})).expect("node");
    while let Err(e) = nodes.create(&PostParams::default(), &node).await {
        assert!(
            Instant::now() < deadline,
            "the API server becomes ready: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes
        .patch_status(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": node_port}},
            }})),
        )
        .await
        .expect("the node's status");

    // No controller manager runs here: the account its serviceaccount controller
    // would have made (pods are refused without it).
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), "default");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("account"),
        )
        .await
        .expect("the default service account");
    // The pod, bound to the node and Running, and its container in containerd.
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    for (name, node) in [
        ("web", node_name.as_str()),
        ("ticker", node_name.as_str()),
        ("reader", node_name.as_str()),
        ("pending", ""),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            // No kube-root-ca.crt publisher either: no token volume.
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                     "containers": [{"name": "app", "image": "busybox"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("the pod is created");
    }
    for name in ["web", "ticker", "reader"] {
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("the pod's status");
    }
    let pod = h.run_pod("default", "web").await;
    h.run_container(
        &pod,
        "app",
        0,
        &[
            "sh",
            "-c",
            "echo hello-log; mkdir -p /www; echo pf-ok > /www/index.html; exec httpd -f -p 8080 -h /www",
        ],
    )
    .await;

    let dir = h.dir.clone();
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || kubectl(&dir, args, stdin))
    };

    // kubectl logs, with the log written by the container.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(&["logs", "web"], None).await.expect("kubectl");
        if text(&out.stdout) == "hello-log\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl logs: {} {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = run(&["logs", "web", "--timestamps", "--tail=1"], None)
        .await
        .expect("kubectl");
    let line = text(&out.stdout);
    assert!(line.ends_with(" hello-log\n"), "{line}");
    let out = run(&["logs", "web", "-c", "nosuch"], None)
        .await
        .expect("kubectl");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container nosuch is not valid for pod web"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["logs", "nopod"], None).await.expect("kubectl");
    assert!(
        text(&out.stderr).contains("pods \"nopod\" not found"),
        "{}",
        text(&out.stderr)
    );

    // kubectl logs -f streams a running container's lines until it stops.
    let ticker = h.run_pod("default", "ticker").await;
    h.run_container(
        &ticker,
        "app",
        0,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.4; done",
        ],
    )
    .await;
    let started = Instant::now();
    let out = run(&["logs", "-f", "ticker"], None).await.expect("kubectl");
    let expected: String = (1..=6).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text(&out.stdout), expected, "{}", text(&out.stderr));
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "kubectl logs -f waited for the container ({:?})",
        started.elapsed()
    );

    // kubectl attach -i: stdin reaches the container's main process, its output
    // comes back. (The process waits a moment before answering: containerd 1.6
    // starts copying an attached stdin just before it adds the attached stdout to
    // the container's output.)
    let reader = h.run_pod("default", "reader").await;
    h.run_container(
        &reader,
        "app",
        0,
        &["sh", "-c", "read line; sleep 0.2; echo got $line"],
    )
    .await;
    let out = run(&["attach", "-v=6", "-i", "reader"], Some("hello-attach\n"))
        .await
        .expect("kubectl");
    assert!(
        text(&out.stdout).contains("got hello-attach"),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_websocket_without_fallback(&text(&out.stderr), "reader", "attach", V5_LOG);

    // nodes/proxy reaches the node API itself.
    let path = format!("/api/v1/nodes/{node_name}/proxy/healthz");
    let out = tokio::task::spawn_blocking({
        let dir = h.dir.clone();
        move || kubectl(&dir, &["get", "--raw", &path], None)
    })
    .await
    .expect("kubectl");
    assert_eq!(text(&out.stdout), "ok", "{}", text(&out.stderr));

    // kubectl exec: the exit code, stdout, and stdin (with its end: v5's CLOSE)
    // reach the client, over WebSocket with no fallback.
    let out = run(
        &["exec", "-v=6", "web", "--", "sh", "-c", "echo out; exit 3"],
        None,
    )
    .await
    .expect("kubectl");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_websocket_without_fallback(&text(&out.stderr), "web", "exec", V5_LOG);
    let out = run(
        &[
            "exec",
            "-v=6",
            "-i",
            "web",
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ],
        Some("from-stdin\n"),
    )
    .await
    .expect("kubectl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-stdin\ndone\n");
    assert_websocket_without_fallback(&text(&out.stderr), "web", "exec", V5_LOG);
    let out = run(&["exec", "-i", "web", "--", "cat"], Some("data\n"))
        .await
        .expect("kubectl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "data\n");

    // kubectl cp both ways (tar through exec's stdin and stdout): 2 MiB up and back
    // down, byte for byte.
    let original: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let upload = h.dir.join("upload.bin");
    let download = h.dir.join("download.bin");
    std::fs::write(&upload, &original).expect("write the file to copy");
    let started = Instant::now();
    let (up, down) = tokio::task::spawn_blocking({
        let dir = h.dir.clone();
        let (upload, download) = (upload.clone(), download.clone());
        move || {
            let up = kubectl(
                &dir,
                &[
                    "cp",
                    "-v=6",
                    &upload.to_string_lossy(),
                    "default/web:/tmp/upload.bin",
                ],
                None,
            );
            let down = kubectl(
                &dir,
                &[
                    "cp",
                    "-v=6",
                    "default/web:/tmp/upload.bin",
                    &download.to_string_lossy(),
                ],
                None,
            );
            (up, down)
        }
    })
    .await
    .expect("kubectl cp");
    let elapsed = started.elapsed();
    assert!(up.status.success(), "cp up: {}", text(&up.stderr));
    assert!(down.status.success(), "cp down: {}", text(&down.stderr));
    assert_websocket_without_fallback(&text(&up.stderr), "web", "exec", V5_LOG);
    assert_websocket_without_fallback(&text(&down.stderr), "web", "exec", V5_LOG);
    let copied = std::fs::read(&download).expect("the copied-back file");
    assert_eq!(copied.len(), original.len());
    assert!(copied == original, "the file came back changed");
    eprintln!("kubectl cp of 2 MiB up and back down: {elapsed:?}");
    let out = run(&["exec", "pending", "--", "true"], None)
        .await
        .expect("kubectl");
    assert!(
        text(&out.stderr).contains("pod pending does not have a host assigned"),
        "{}",
        text(&out.stderr)
    );

    // A WebSocket client offering v5 and v4 in one header (kube-rs) gets v5 from the
    // node API, end to end through the API server: output and the exit status...
    let params = kube::api::AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut attached = pods
        .exec("web", ["sh", "-c", "echo over-websocket; exit 2"], &params)
        .await
        .expect("exec over WebSocket");
    let mut output = String::new();
    let mut stdout = attached.stdout().expect("stdout");
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut output)
        .await
        .expect("read stdout");
    assert_eq!(output, "over-websocket\n");
    let status = attached
        .take_status()
        .expect("a status channel")
        .await
        .expect("a status");
    let exit_code = status
        .details
        .and_then(|d| d.causes)
        .into_iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message);
    assert_eq!(exit_code.as_deref(), Some("2"));
    // ...and its stdin's end: `cat` only finishes (and its output only arrives)
    // because shutting down the writer sends v5's CLOSE; under v4 kube-rs can only
    // close the whole WebSocket.
    let params = kube::api::AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(false);
    let mut attached = pods
        .exec("web", ["cat"], &params)
        .await
        .expect("exec over WebSocket");
    let mut stdin = attached.stdin().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"via-kube-rs\n")
        .await
        .expect("write stdin");
    tokio::io::AsyncWriteExt::shutdown(&mut stdin)
        .await
        .expect("close stdin");
    let mut output = String::new();
    let mut stdout = attached.stdout().expect("stdout");
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut output),
    )
    .await
    .expect("cat ends once stdin is closed")
    .expect("read stdout");
    assert_eq!(output, "via-kube-rs\n");
    let status = attached
        .take_status()
        .expect("a status channel")
        .await
        .expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    // kubectl port-forward to the pod's httpd over its WebSocket tunnel, and GETs
    // through it (one tunneled SPDY stream pair per connection).
    let local = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(h.dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(h.dir.join("kubectl-cache"))
        .args(["port-forward", "-v=6", "pod/web", &format!("{local}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward runs");
    // Read kubectl's output to its end (it prints a line per connection; a closed
    // pipe would make it fail), handing the first line over.
    let mut stdout = BufReader::new(forward.stdout.take().expect("stdout"));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let read = stdout.read_line(&mut first).map(|_| first);
        let _ = first_tx.send(read);
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    let first = tokio::time::timeout(Duration::from_secs(20), first_rx).await;
    let (answer, second) = tokio::task::spawn_blocking(move || {
        let get = || {
            let mut answer = String::new();
            if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", local)) {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = tcp.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n");
                let _ = tcp.read_to_string(&mut answer);
            }
            answer
        };
        let mut last = String::new();
        for _ in 0..50 {
            last = get();
            if last.contains("pf-ok") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (last, get())
    })
    .await
    .expect("the GET");
    let _ = forward.kill();
    let status = forward.wait();
    let mut stderr = String::new();
    if let Some(mut e) = forward.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        matches!(&first, Ok(Ok(Ok(l))) if l.contains("Forwarding from")),
        "kubectl port-forward: {first:?} {stderr} {status:?}"
    );
    assert!(
        answer.contains("200 OK") && answer.contains("pf-ok"),
        "{answer} {stderr}"
    );
    assert!(
        second.contains("pf-ok"),
        "a second connection: {second} {stderr}"
    );
    assert_websocket_without_fallback(&stderr, "web", "portforward", TUNNEL_LOG);

    let _ = stop_node_api.send(true);
    server.stop().await.expect("the API server stops");
    h.teardown().await;
}
