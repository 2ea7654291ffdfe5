//! Exec, attach and port-forward through the node API against a real containerd.
//!
//! WebSocket `v4.channel.k8s.io` (and SPDY) upgrades are relayed to the runtime's
//! streaming server. WebSocket `v5.channel.k8s.io` (kubectl 1.30+, kube-rs) is
//! served by the node API and carried over SPDY to the runtime: stdin, stdout,
//! stderr, the exit status on channel 3, v5's CLOSE ending stdin, terminal resizes,
//! and a normal WebSocket close at the end. Port-forward's
//! `SPDY/3.1+portforward.k8s.io` tunnel carries SPDY in WebSocket messages to the
//! runtime (spoken here by the `spdy` crate, as kubectl would).

mod support_node_api;

use std::time::Duration;

use support_node_api::websocket::{read_channels, read_channels_from, websocket};
use support_node_api::{Harness, connect_tls, require_preconditions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_v4_is_relayed_with_stdin_output_and_the_exit_code() {
    require_preconditions("exec_over_websocket_v4_is_relayed_with_stdin_output_and_the_exit_code");
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

/// The exit code a v4/v5 status names in its `ExitCode` cause.
fn exit_code(status: &serde_json::Value) -> Option<&str> {
    status["details"]["causes"]
        .as_array()?
        .iter()
        .find(|c| c["reason"] == "ExitCode")?["message"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_attach_over_websocket_v5_are_carried_over_the_runtimes_spdy() {
    require_preconditions("exec_and_attach_over_websocket_v5_are_carried_over_the_runtimes_spdy");
    let mut h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let pod = h.run_pod("default", "five").await;
    h.run_container(&pod, "sh", 0, &["sleep", "3600"]).await;
    // For attach: a main process that reads a line. (It waits a moment before
    // answering: containerd 1.6 starts copying an attached stdin just before it
    // adds the attached stdout to the container's output.)
    let reader_pod = h.run_pod("default", "reader").await;
    h.run_container(
        &reader_pod,
        "app",
        0,
        &["sh", "-c", "read line; sleep 0.2; echo got $line"],
    )
    .await;
    let client = Some((
        h.pki.kubelet_client_cert.as_str(),
        h.pki.kubelet_client_key.as_str(),
    ));
    let v5 = |path: String| {
        let pki = &h.pki;
        async move {
            let tls = connect_tls(pki, port, client).await.expect("TLS");
            websocket(tls, &path, &["v5.channel.k8s.io"])
                .await
                .expect("the upgrade is accepted")
        }
    };

    // stdin in, stdout and stderr out, exit code 3 as a status on channel 3, then a
    // normal close.
    let mut ws = v5("/exec/default/five/sh?command=sh&command=-c&command=read+x%3B+echo+got+%24x%3B+echo+oops+%3E%262%3B+exit+3&input=1&output=1&error=1".into()).await;
    assert_eq!(ws.protocol, "v5.channel.k8s.io");
    ws.send(b"\x00hello\n").await;
    let out = read_channels(&mut ws).await;
    assert_eq!(
        out.messages.first(),
        Some(&(1, 0)),
        "an empty stdout message opens the session"
    );
    assert_eq!(out.stdout, "got hello\n");
    assert_eq!(out.stderr, "oops\n");
    let status = out.status.expect("a status message");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(exit_code(&status), Some("3"), "{status}");
    assert_eq!(
        out.messages.last().map(|m| m.0),
        Some(3),
        "the status comes last"
    );
    assert_eq!(
        out.close_code,
        Some(1000),
        "the session ends with a normal close"
    );

    // v5's CLOSE on stdin ends `cat`'s input: it finishes and the session succeeds.
    let mut ws = v5("/exec/default/five/sh?command=cat&input=1&output=1&error=1".into()).await;
    ws.send(b"\x00hello ").await;
    ws.send(b"\x00world").await;
    ws.send(&[255, 0]).await;
    let out = read_channels(&mut ws).await;
    assert_eq!(out.stdout, "hello world");
    assert_eq!(out.status.expect("a status")["status"], "Success");
    assert_eq!(out.close_code, Some(1000));

    // 4 MiB through `cat` while its output streams back: far beyond every window
    // and buffer on the way, so only working back pressure keeps it whole.
    let ws = v5("/exec/default/five/sh?command=cat&input=1&output=1&error=1".into()).await;
    let (mut reader, mut writer) = ws.split();
    let payload: String = (0..4 * 1024 * 1024)
        .map(|i| {
            if i % 100 == 99 {
                '\n'
            } else {
                (b'a' + (i % 26) as u8) as char
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let sending = tokio::spawn({
        let payload = payload.clone();
        async move {
            for chunk in payload.as_bytes().chunks(16 * 1024) {
                let mut message = vec![0u8];
                message.extend_from_slice(chunk);
                writer.send(&message).await;
            }
            writer.send(&[255, 0]).await;
            writer
        }
    });
    let out = read_channels_from(&mut reader).await;
    let mut writer = sending.await.expect("the sender");
    writer.close().await;
    eprintln!(
        "4 MiB echoed through exec v5 -> SPDY in {:?}",
        started.elapsed()
    );
    assert_eq!(out.stdout.len(), payload.len());
    assert!(out.stdout == payload, "the echo differs from the input");
    assert_eq!(out.status.expect("a status")["status"], "Success");

    // With a TTY: no stderr channel, and a size sent on channel 4 reaches the
    // terminal. The runtime applies sizes once the process started, so stty waits.
    let mut ws = v5(
        "/exec/default/five/sh?command=sh&command=-c&command=sleep+1%3B+stty+size&output=1&tty=1"
            .into(),
    )
    .await;
    ws.send(&[&[4u8][..], br#"{"Width":123,"Height":45}"#].concat())
        .await;
    let out = read_channels(&mut ws).await;
    assert_eq!(out.stdout, "45 123\r\n");
    assert!(out.messages.iter().all(|m| m.0 != 2), "{:?}", out.messages);
    assert_eq!(out.status.expect("a status")["status"], "Success");

    // Attach: stdin reaches the container's main process, its output comes back.
    let mut ws = v5("/attach/default/reader/app?input=1&output=1&error=1".into()).await;
    assert_eq!(ws.protocol, "v5.channel.k8s.io");
    ws.send(b"\x00hello-attach\n").await;
    let out = read_channels(&mut ws).await;
    assert_eq!(out.stdout, "got hello-attach\n");
    assert_eq!(out.status.expect("a status")["status"], "Success");
    assert_eq!(out.close_code, Some(1000));

    // A missing container is a 404 before any upgrade.
    let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
    let missing = websocket(
        tls,
        "/exec/default/five/nosuch?command=true&output=1",
        &["v5.channel.k8s.io"],
    )
    .await
    .err()
    .expect("no such container");
    assert_eq!(missing.0, 404, "{}", missing.1);

    let _ = stop.send(true);
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_and_its_spdy_tunnel_reaches_the_pod_and_stats_list_it() {
    require_preconditions(
        "port_forward_over_websocket_and_its_spdy_tunnel_reaches_the_pod_and_stats_list_it",
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

    // The tunnel kubectl 1.31+ asks for: SPDY/3.1 in WebSocket binary messages,
    // spoken here as client-go does (an error and a data stream per connection,
    // named by port and request ID), several connections over one tunnel.
    let tls = connect_tls(&h.pki, port, client).await.expect("TLS");
    let ws = websocket(
        tls,
        "/portForward/default/web?port=8080",
        &["SPDY/3.1+portforward.k8s.io"],
    )
    .await
    .expect("the tunnel is accepted");
    assert_eq!(ws.protocol, "SPDY/3.1+portforward.k8s.io");
    let session = spdy::Session::client(ws.into_tunnel());
    for request in 0..3 {
        let headers = |kind: &str| {
            spdy::Headers::new()
                .with("streamType", kind)
                .with("port", "8080")
                .with("requestID", request.to_string())
        };
        let (mut error_out, mut error_in) = session
            .open_stream(headers("error"))
            .await
            .expect("the error stream")
            .split();
        error_out.shutdown().await.expect("close our side");
        let mut data = session
            .open_stream(headers("data"))
            .await
            .expect("the data stream");
        data.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await
            .expect("the request");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), data.read_to_end(&mut answer))
            .await
            .expect("the answer in time")
            .expect("the answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("200 OK"), "{answer}");
        assert!(answer.contains("hello-from-the-pod"), "{answer}");
        let mut errors = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), error_in.read_to_string(&mut errors))
            .await;
        assert_eq!(errors, "", "no port-forward error");
    }
    session.close().await;

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
