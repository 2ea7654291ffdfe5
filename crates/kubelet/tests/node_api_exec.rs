//! Exec, attach and port-forward through the node API: the upgrade is relayed to the
//! runtime's streaming server, so a WebSocket `v4.channel.k8s.io` session carries
//! stdin, stdout, stderr and the exit status end to end; a protocol the runtime does
//! not speak (v5) is refused, which is what makes kubectl fall back to SPDY.

mod support_node_api;

use support_node_api::websocket::{read_channels, websocket};
use support_node_api::{Harness, connect_tls, require_preconditions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_carries_stdin_output_and_the_exit_code() {
    require_preconditions("exec_over_websocket_carries_stdin_output_and_the_exit_code");
    let mut h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let pod = h.run_pod("default", "exec").await;
    h.run_container(&pod, "sh", 0, &["sleep", "3600"]).await;
    let client = Some((
        h.pki.kubelet_client_cert.as_str(),
        h.pki.kubelet_client_key.as_str(),
    ));

    // stdin in, stdout and stderr out, exit code 3 in the status channel.
    let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
    let path = "/exec/default/exec/sh?command=sh&command=-c&command=read+x%3B+echo+got+%24x%3B+echo+oops+%3E%262%3B+exit+3&input=1&output=1&error=1";
    let mut ws = websocket(tls, path, &["v4.channel.k8s.io"])
        .await
        .expect("the upgrade is accepted");
    assert_eq!(ws.protocol, "v4.channel.k8s.io");
    ws.send(b"\x00hello\n").await;
    let out = read_channels(&mut ws).await;
    assert_eq!(out.stdout, "got hello\n");
    assert_eq!(out.stderr, "oops\n");
    let status = out.status.expect("a status message");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    let causes = status["details"]["causes"].as_array().expect("causes");
    assert!(
        causes
            .iter()
            .any(|c| c["reason"] == "ExitCode" && c["message"] == "3"),
        "{status}"
    );

    // A successful command ends with a Success status.
    let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
    let mut ws = websocket(
        tls,
        "/exec/default/exec/sh?command=echo&command=hi&output=1",
        &["v4.channel.k8s.io"],
    )
    .await
    .expect("the upgrade is accepted");
    let out = read_channels(&mut ws).await;
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.status.expect("a status")["status"], "Success");

    // WebSocket v5 only (what kubectl 1.32+ offers first) is refused by the runtime.
    let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
    let refused = websocket(
        tls,
        "/exec/default/exec/sh?command=true&output=1",
        &["v5.channel.k8s.io"],
    )
    .await
    .err()
    .expect("v5 is refused");
    assert_ne!(refused.0, 101);
    assert!((400..500).contains(&refused.0), "{refused:?}");

    // Exec into a missing container is a 404 before any upgrade.
    let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
    let missing = websocket(
        tls,
        "/exec/default/exec/nosuch?command=true&output=1",
        &["v4.channel.k8s.io"],
    )
    .await
    .err()
    .expect("no such container");
    assert_eq!(missing.0, 404, "{}", missing.1);

    let _ = stop.send(true);
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_reaches_a_port_inside_the_pod_and_stats_list_it() {
    require_preconditions(
        "port_forward_over_websocket_reaches_a_port_inside_the_pod_and_stats_list_it",
    );
    let mut h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let pod = h.run_pod("default", "web").await;
    h.run_container(
        &pod,
        "httpd",
        0,
        &["sh", "-c", "mkdir -p /www && echo hello-from-the-pod > /www/index.html && httpd -f -p 8080 -h /www"],
    )
    .await;
    let client = Some((
        h.pki.kubelet_client_cert.as_str(),
        h.pki.kubelet_client_key.as_str(),
    ));
    // httpd needs a moment to listen.
    let mut answer = String::new();
    for _ in 0..50 {
        let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
        let mut ws = websocket(
            tls,
            "/portForward/default/web?port=8080",
            &["v4.channel.k8s.io"],
        )
        .await
        .expect("the upgrade is accepted");
        // Channel 0 carries data, channel 1 errors; each starts with the port (LE).
        ws.send(b"\x00GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await;
        answer.clear();
        let deadline = std::time::Duration::from_secs(5);
        while let Ok(Some(message)) = tokio::time::timeout(deadline, ws.recv()).await {
            if message.first() == Some(&0) && message.len() > 3 {
                answer.push_str(&String::from_utf8_lossy(&message[1..]));
            }
            if answer.contains("hello-from-the-pod") {
                break;
            }
        }
        if answer.contains("hello-from-the-pod") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(answer.contains("200 OK"), "{answer}");
    assert!(answer.contains("hello-from-the-pod"), "{answer}");

    // The stats summary lists the running pod and its container with their memory.
    let (code, body) = support_node_api::get(&h.pki, port, "/stats/summary").await;
    assert_eq!(code, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        summary["node"]["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{summary}"
    );
    let pods = summary["pods"].as_array().expect("pods");
    let web = pods
        .iter()
        .find(|p| p["podRef"]["name"] == "web")
        .expect("the pod is listed");
    assert_eq!(web["podRef"]["uid"], pod.uid.as_str());
    assert_eq!(web["containers"][0]["name"], "httpd", "{web}");
    assert!(
        web["containers"][0]["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{web}"
    );
    let _ = stop.send(true);
    h.teardown().await;
}
