//! Services and cluster DNS across two nodes on one machine (the multi-node set-up of
//! `agent_multinode`: a test bridge, two network namespaces of the test's own, `skiff
//! server` on the host and one `skiff agent` per namespace, each with its service
//! proxy). A client pod on node A reaches a Deployment spread over both nodes by the
//! Service's short name and its full name through the cluster DNS, the answers come
//! from both backends, a Service without endpoints refuses at once, a NodePort answers
//! on a node's address from the host, and a headless Service resolves to its pods.
//! Needs root, containerd, runc, CNI plugins and nsenter.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/joined_agent.rs"]
mod joined_agent;
#[path = "support/multinode.rs"]
mod multinode;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use joined_agent::{JoinedAgent, eventually, node_ready};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use multinode::{Server, TestNet, ip, pod_cidr};

/// Routes on the host to the nodes' pod networks (what the server's own agent would
/// program): replies from the server's cluster DNS find the pods. Removed on drop.
struct HostRoutes(Vec<String>);

impl Drop for HostRoutes {
    fn drop(&mut self) {
        for cidr in &self.0 {
            let _ = ip(&["route", "del", cidr]);
        }
    }
}

/// Runs `cmd` in the client pod; its stdout, or None when it failed.
fn in_client(server: &Server, cmd: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", "client", "--"];
    args.extend_from_slice(cmd);
    let out = server.kubectl(&args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn services_and_cluster_dns_work_across_two_nodes() {
    agent::require_preconditions();
    let id = format!("{:05x}", rand::random::<u32>() & 0x000f_ffff);
    let (k, _claim) = agent::claim_test_networks();
    let cluster_cidr = format!("10.{}.0.0/16", 100 + u16::from(k));
    let service_cidr = format!("10.{}.0.0/16", 160 + u16::from(k));
    let cluster_dns = format!("10.{}.0.10", 160 + u16::from(k));
    let net = TestNet::create(&id);
    let server = Server::start_with(
        &net.host_ip(),
        &[
            "--cluster-cidr",
            &cluster_cidr,
            "--service-cidr",
            &service_cidr,
            "--cluster-dns-port",
            "0",
        ],
    );
    let token = server.token();
    let names = [format!("sk-{id}-a"), format!("sk-{id}-b")];
    let mut agents: Vec<JoinedAgent> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let flags: Vec<String> = [
            "--server",
            &server.url,
            "--token",
            &token,
            "--node-name",
            name,
            "--node-ip",
            &net.node_ip(i),
            "--cluster-cidr",
            &cluster_cidr,
            "--service-cidr",
            &service_cidr,
            "--cni-bridge",
            &format!("sks{id}{}", ["a", "b"][i]),
            "--no-egress-masquerade",
            "--node-status-interval",
            "2s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut agent = JoinedAgent::new(Some(&net.namespaces[i]), &flags);
        agent.start();
        agents.push(agent);
    }
    let client = server.client().await;
    for (i, name) in names.iter().enumerate() {
        eventually(
            Duration::from_secs(120),
            &format!("node {name} Ready"),
            || async {
                assert!(
                    agents[i].running(),
                    "agent {name} exited:\n{}",
                    agents[i].log()
                );
                node_ready(&client, name).await.then_some(())
            },
        )
        .await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let mut routes = HostRoutes(Vec::new());
    for (i, name) in names.iter().enumerate() {
        let cidr = pod_cidr(&nodes.get(name).await.expect("node"));
        let out = ip(&["route", "add", &cidr, "via", &net.node_ip(i)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        routes.0.push(cidr);
    }

    // The cluster DNS is published as kube-system/kube-dns at the cluster DNS address.
    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let kube_dns = eventually(Duration::from_secs(30), "the kube-dns Service", || async {
        services.get_opt("kube-dns").await.ok().flatten()
    })
    .await;
    assert_eq!(
        kube_dns.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some(cluster_dns.as_str())
    );

    server.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nobody}}
spec:
  selector: {{app: nothing-has-this-label}}
  ports: [{{port: 80}}]
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
    ));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    eventually(
        Duration::from_secs(120),
        "two ready web endpoints",
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let ready = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            (ready == 2).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(60), "the client pod", || async {
        in_client(&server, &["true"]).ok()
    })
    .await;

    // The test image's busybox is linked statically against glibc, which cannot
    // resolve names without its NSS modules (and crashes looking up the `http`
    // service port): names are resolved with busybox's own `nslookup`, which sends
    // real DNS queries, and pages fetched by address with an explicit port.
    // busybox's nslookup tries every search domain and exits 1 when any of them is
    // NXDOMAIN, so its answer section is read whatever the exit status.
    let resolve = |name: &'static str| {
        let server = &server;
        async move {
            let out = in_client(server, &["nslookup", name]).unwrap_or_else(|e| e);
            let fqdn = "web.default.svc.cluster.local";
            let (_, answer) = out.split_once(&format!("Name:\t{fqdn}"))?;
            let address = answer
                .lines()
                .find_map(|l| l.trim().strip_prefix("Address: "))
                .map(|a| a.trim().to_owned());
            if address.is_none() {
                eprintln!("nslookup {name}: {out}");
            }
            address
        }
    };
    let web_ip = Api::<Service>::namespaced(client.clone(), "default")
        .get("web")
        .await
        .expect("web")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a cluster IP");
    // The short name through the pod's search path, and the full name.
    let short = eventually(Duration::from_secs(60), "web by its short name", || {
        resolve("web")
    })
    .await;
    assert_eq!(short, web_ip);
    let full = resolve("web.default.svc.cluster.local").await;
    assert_eq!(full.as_deref(), Some(web_ip.as_str()));
    // Both backends answer through the virtual IP.
    let url = format!("http://{web_ip}:80/");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 && Instant::now() < deadline {
        match in_client(&server, &["timeout", "5", "wget", "-qO-", &url]) {
            Ok(page) => {
                seen.insert(page.trim().to_owned());
            }
            Err(e) => eprintln!("wget {url}: {e}"),
        }
    }
    assert_eq!(seen.len(), 2, "answers came from {seen:?}");
    assert!(seen.iter().all(|p| p.starts_with("web-")), "{seen:?}");

    // A headless Service resolves to its pods' addresses.
    let lookup = in_client(
        &server,
        &["nslookup", "web-headless.default.svc.cluster.local"],
    )
    .expect("nslookup");
    let pod_ips = lookup
        .lines()
        .filter(|l| l.starts_with("Address") && l.contains(&format!("10.{}.", 100 + u16::from(k))))
        .count();
    assert_eq!(pod_ips, 2, "{lookup}");
    // A name that does not exist is NXDOMAIN.
    let missing = in_client(
        &server,
        &["nslookup", "no-such-service.default.svc.cluster.local"],
    )
    .expect_err("no such name");
    assert!(missing.contains("NXDOMAIN"), "{missing}");

    // A Service without endpoints refuses at once (busybox's wget crashes on a
    // refused connection, its nc reports it).
    let nobody_ip = Api::<Service>::namespaced(client.clone(), "default")
        .get("nobody")
        .await
        .expect("nobody")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a cluster IP");
    let started = Instant::now();
    let refused =
        in_client(&server, &["nc", "-w", "10", &nobody_ip, "80"]).expect_err("no endpoints");
    let took = started.elapsed();
    assert!(
        refused.contains("Connection refused") && took < Duration::from_secs(8),
        "{refused} after {took:?}"
    );

    // The NodePort answers on node B's address from the host.
    let np = Api::<Service>::namespaced(client.clone(), "default")
        .get("web-np")
        .await
        .expect("web-np");
    let node_port = np.spec.and_then(|s| s.ports).expect("ports")[0]
        .node_port
        .expect("a node port");
    let url = format!("http://{}:{node_port}/", net.node_ip(1));
    let page = eventually(
        Duration::from_secs(30),
        "the NodePort from the host",
        || async {
            let out = std::process::Command::new("curl")
                .args(["-s", "--max-time", "3", &url])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.starts_with("web-").then_some(text)
        },
    )
    .await;
    assert!(page.starts_with("web-"));

    // Teardown order: agents (killall in their namespaces), server, routes, network.
    drop(agents);
    drop(server);
    drop(routes);
    drop(net);
}
