//! Pod-to-pod across two nodes on one machine: two network namespaces of the test's
//! own on a test bridge, `skiff server` on the host listening on the bridge, and one
//! `skiff agent --server --token` in each namespace. Each agent programs a host-gw
//! route to the other node's pod CIDR through its InternalIP, so a pod on node A
//! fetches a page from a pod on node B over HTTP (through `kubectl exec`, which also
//! goes through node A's API across namespaces); when node B goes away, node A's
//! route to it does too. Everything is removed afterwards, also on failure. Needs
//! root, containerd, runc, CNI plugins and nsenter.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/joined_agent.rs"]
mod joined_agent;
#[path = "support/multinode.rs"]
mod multinode;

use std::time::Duration;

use joined_agent::eventually;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use multinode::{Server, TestNet, pod_cidr, running_pod_ip};

#[tokio::test(flavor = "multi_thread")]
async fn pods_on_two_nodes_reach_each_other_through_host_gw_routes() {
    agent::require_preconditions();
    assert!(
        std::path::Path::new("/usr/bin/nsenter").exists(),
        "the multi-node test needs nsenter"
    );
    let id = format!("{:05x}", rand::random::<u32>() & 0x000f_ffff);
    // Dropped last: the namespaces go once the agents in them are cleaned up.
    let net = TestNet::create(&id);
    let server = Server::start(&net.host_ip());
    let (agents, names) = multinode::join_two_agents(&net, &server, &id, "skp", &[]).await;
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_b = nodes.get(&names[1]).await.expect("node b");
    let cidr_b = pod_cidr(&node_b);
    let cidr_a = pod_cidr(&nodes.get(&names[0]).await.expect("node a"));

    // Each namespace routes the other node's pods through its InternalIP.
    eventually(
        Duration::from_secs(30),
        "host-gw routes in both namespaces",
        || async {
            let a = net.routes(0, &cidr_b);
            let b = net.routes(1, &cidr_a);
            (a.contains(&format!("via {}", net.node_ip(1)))
                && b.contains(&format!("via {}", net.node_ip(0))))
            .then_some(())
        },
    )
    .await;
    let state = std::fs::read_to_string(agents[0].dir.join("agent/network.json")).expect("state");
    assert!(state.contains(&cidr_b), "node A records its route: {state}");

    server.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: {b}
  containers:
  - name: httpd
    image: busybox
    command: [sh, -c, 'mkdir -p /www && echo hello from node b > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {a}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
"#,
        a = names[0],
        b = names[1],
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let web_ip = running_pod_ip(&pods, "web").await;
    running_pod_ip(&pods, "client").await;
    assert!(
        kubelet_cidr_contains(&cidr_b, &web_ip),
        "{web_ip} in {cidr_b}"
    );

    // Pod A -> pod B over HTTP, asked through node A's API.
    let url = format!("http://{web_ip}:8080/");
    let page = eventually(
        Duration::from_secs(30),
        "pod A to fetch pod B's page",
        || async {
            let out =
                server.kubectl(&["exec", "client", "--", "timeout", "5", "wget", "-qO-", &url]);
            if out.status.success() {
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                eprintln!("wget: {}", String::from_utf8_lossy(&out.stderr));
                None
            }
        },
    )
    .await;
    assert_eq!(page.trim(), "hello from node b");

    // Node B goes away: node A's route to it goes too.
    let out = server.kubectl(&["delete", "node", &names[1], "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        Duration::from_secs(30),
        "node A's route to node B removed",
        || async { net.routes(0, &cidr_b).trim().is_empty().then_some(()) },
    )
    .await;
    let state = std::fs::read_to_string(agents[0].dir.join("agent/network.json")).expect("state");
    assert!(
        !state.contains(&cidr_b),
        "the record goes with the route: {state}"
    );

    // Teardown order: agents (killall in their namespaces), server, then the network.
    drop(agents);
    drop(server);
    drop(net);
}

/// Whether `ip` is inside the IPv4 `cidr`.
fn kubelet_cidr_contains(cidr: &str, ip: &str) -> bool {
    let (base, len) = cidr.split_once('/').expect("cidr");
    let base: std::net::Ipv4Addr = base.parse().expect("base");
    let ip: std::net::Ipv4Addr = ip.parse().expect("ip");
    let len: u32 = len.parse().expect("len");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(base) & mask == u32::from(ip) & mask
}
