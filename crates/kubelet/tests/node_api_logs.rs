//! The node API serves container logs from the CRI log files as the kubelet does:
//! whole, tailed, with timestamps, limited, since a time, followed until the
//! container stops, and the previous instance's; only to certified clients.

mod support_node_api;

use std::time::Duration;

use http_body_util::BodyExt;
use support_node_api::{Harness, connect_tls, get, get_streaming, require_preconditions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_served_with_tail_timestamps_limit_and_previous() {
    require_preconditions("logs_are_served_with_tail_timestamps_limit_and_previous");
    let mut h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let pod = h.run_pod("default", "logs").await;
    // Instance 0 crashed; instance 1 writes three lines (one to stderr) and a line
    // longer than containerd's 16 KiB record, which it splits into partial records.
    let first = h
        .run_container(
            &pod,
            "app",
            0,
            &["sh", "-c", "echo from-the-first-run; exit 1"],
        )
        .await;
    h.wait_exited(&first).await;
    let second = h
        .run_container(
            &pod,
            "app",
            1,
            &[
                "sh",
                "-c",
                "echo one; echo two >&2; sleep 0.3; echo three; head -c 40000 /dev/zero | tr '\\0' a; echo; echo last",
            ],
        )
        .await;
    h.wait_exited(&second).await;
    let base = "/containerLogs/default/logs/app";

    let (code, body) = get(&h.pki, port, base).await;
    assert_eq!(code, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 5, "{:?}", &body[..body.len().min(200)]);
    let mut first = lines[..3].to_vec();
    first.sort();
    assert_eq!(first, ["one", "three", "two"]);
    assert_eq!(lines[3], "a".repeat(40000), "the long line is joined whole");
    assert_eq!(lines[4], "last");

    let (_, body) = get(&h.pki, port, &format!("{base}?tailLines=1")).await;
    assert_eq!(body, "last\n");

    let (_, body) = get(&h.pki, port, &format!("{base}?tailLines=1&timestamps=true")).await;
    let (stamp, line) = body.trim_end().split_once(' ').expect("a timestamp first");
    let stamp: jiff::Timestamp = stamp.parse().expect("an RFC 3339 timestamp");
    assert_eq!(line, "last");
    let age = jiff::Timestamp::now().duration_since(stamp);
    assert!(age.as_secs() < 60, "the timestamp is recent: {stamp}");

    let (_, body) = get(&h.pki, port, &format!("{base}?limitBytes=5")).await;
    assert_eq!(body.len(), 5);

    let since = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(5))
        .expect("a time");
    let (code, body) = get(&h.pki, port, &format!("{base}?sinceTime={since}")).await;
    assert_eq!(
        (code, body.as_str()),
        (200, ""),
        "nothing is newer than the future"
    );
    let (_, body) = get(&h.pki, port, &format!("{base}?sinceSeconds=60&tailLines=1")).await;
    assert_eq!(body, "last\n");

    let (code, body) = get(&h.pki, port, &format!("{base}?previous=true")).await;
    assert_eq!((code, body.as_str()), (200, "from-the-first-run\n"));

    let (code, body) = get(&h.pki, port, "/containerLogs/default/logs/nosuch").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(&h.pki, port, "/containerLogs/default/nopod/app").await;
    assert_eq!(code, 404, "{body}");
    let (code, _) = get(&h.pki, port, &format!("{base}?tailLines=x")).await;
    assert_eq!(code, 400);
    let (code, body) = get(&h.pki, port, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok"));

    let _ = stop.send(true);
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_streams_new_lines_until_the_container_stops() {
    require_preconditions("a_followed_log_streams_new_lines_until_the_container_stops");
    let mut h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let pod = h.run_pod("default", "follow").await;
    h.run_container(
        &pod,
        "ticker",
        0,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done",
        ],
    )
    .await;
    let (code, mut body) = get_streaming(
        &h.pki,
        port,
        "/containerLogs/default/follow/ticker?follow=true",
    )
    .await;
    assert_eq!(code, 200);
    let mut received = String::new();
    let mut chunks = 0;
    let read_all = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the log streams").into_data() {
                chunks += 1;
                received.push_str(&String::from_utf8_lossy(&data));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the stream ends when the container stops");
    let expected: String = (1..=6).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(received, expected);
    assert!(
        chunks >= 3,
        "lines arrived as they were written ({chunks} chunks)"
    );

    let _ = stop.send(true);
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_refuses_clients_without_a_certificate_of_the_cluster_ca() {
    require_preconditions("the_node_api_refuses_clients_without_a_certificate_of_the_cluster_ca");
    let h = Harness::start().await;
    let (port, stop) = h.start_node_api().await;
    let anonymous = async {
        let mut tls = connect_tls(&h.pki, port, None).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        Ok(n)
    };
    assert!(
        anonymous.await.is_err(),
        "a client without a certificate is refused"
    );
    // A certificate of another CA is refused too.
    let other = apiserver::Pki::load_or_create(&apiserver::PkiConfig {
        dir: h.dir.join("other-ca"),
        sans: vec![],
    })
    .expect("another PKI");
    let result = connect_tls(
        &h.pki,
        port,
        Some((&other.kubelet_client_cert, &other.kubelet_client_key)),
    )
    .await;
    let refused = match result {
        Err(_) => true,
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tls
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            !matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
        }
    };
    assert!(refused, "a certificate of another CA is refused");
    let (code, _) = get(&h.pki, port, "/healthz").await;
    assert_eq!(code, 200);
    let _ = stop.send(true);
    h.teardown().await;
}
