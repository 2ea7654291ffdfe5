//! Services and cluster DNS across two nodes on one machine (the multi-node set-up of
//! `agent_multinode`: a test bridge, two network namespaces of the test's own, `skiff
//! server` on the host and one `skiff agent` per namespace, each with its service
//! proxy). Names resolve through the cluster DNS (short and full names, headless
//! Services, SRV, PTR, StatefulSet pods' stable names, NXDOMAIN; also asked directly
//! from Rust), virtual IPs spread load over every ready backend on both nodes and
//! follow scaling and rolling updates without failed requests, a Service without
//! endpoints refuses at once, NodePorts answer from the host, ClientIP affinity sticks,
//! a pod reaches itself through its Service, and `skiff agent --cleanup` leaves no
//! chain. Needs root, containerd, runc, CNI plugins and nsenter.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/joined_agent.rs"]
mod joined_agent;
#[path = "support/multinode.rs"]
mod multinode;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use std::os::unix::net::UnixListener;

use joined_agent::{JoinedAgent, eventually};
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

/// Two nodes and a server, with their networks; dropped in this order.
struct Cluster {
    agents: Vec<JoinedAgent>,
    server: Server,
    _routes: HostRoutes,
    net: TestNet,
    names: [String; 2],
    /// Pod addresses are in `10.<100+k>.0.0/16`, Services in `10.<160+k>.0.0/16`.
    k: u8,
    client: kube::Client,
    _claim: UnixListener,
}

impl Cluster {
    async fn start() -> Cluster {
        agent::require_preconditions();
        let id = format!("{:05x}", rand::random::<u32>() & 0x000f_ffff);
        let (k, claim) = agent::claim_test_networks();
        let cluster_cidr = format!("10.{}.0.0/16", 100 + u16::from(k));
        let service_cidr = format!("10.{}.0.0/16", 160 + u16::from(k));
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
        let node_net = format!(
            "{}.0/24",
            net.host_ip().rsplit_once('.').expect("an IPv4 address").0
        );
        // Test pods have no default route; they answer the node network (traffic the
        // service proxy masqueraded to a node's address).
        let extra = [
            "--cluster-cidr",
            &cluster_cidr,
            "--service-cidr",
            &service_cidr,
            "--pod-route",
            &node_net,
        ];
        let (agents, names) = multinode::join_two_agents(&net, &server, &id, "sks", &extra).await;
        let client = server.client().await;
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
        Cluster {
            agents,
            server,
            _routes: routes,
            net,
            names,
            k,
            client,
            _claim: claim,
        }
    }

    /// Runs `cmd` in pod `pod`: its stdout, or stdout and stderr when it failed.
    fn exec(&self, pod: &str, cmd: &[&str]) -> Result<String, String> {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(cmd);
        let out = self.server.kubectl(&args);
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

    async fn cluster_ip(&self, service: &str) -> String {
        Api::<Service>::namespaced(self.client.clone(), "default")
            .get(service)
            .await
            .expect("service")
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("a cluster IP")
    }

    /// Waits until `service` has `n` ready endpoints.
    async fn ready_endpoints(&self, service: &str, n: usize) {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), "default");
        eventually(
            Duration::from_secs(120),
            &format!("{n} ready endpoints of {service}"),
            || async {
                let list = slices
                    .list(
                        &ListParams::default()
                            .labels(&format!("kubernetes.io/service-name={service}")),
                    )
                    .await
                    .ok()?;
                let ready = list
                    .items
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .count();
                (ready == n).then_some(())
            },
        )
        .await;
    }

    /// The page at `url` fetched from pod `pod` (busybox wget needs an explicit port).
    fn fetch(&self, pod: &str, url: &str) -> Result<String, String> {
        self.exec(pod, &["timeout", "5", "wget", "-qO-", url])
            .map(|p| p.trim().to_owned())
    }
}

/// A Deployment `web` of `replicas` busybox httpd pods answering their hostname, a
/// readiness probe, and its Service with the port named `http`.
fn web_yaml(replicas: usize) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe:
          httpGet: {{port: 8080, path: /}}
          periodSeconds: 1
        lifecycle:
          # The endpoint leaves every node's rules before the server stops.
          preStop: {{exec: {{command: [sleep, '2']}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn names_resolve_and_services_answer_across_two_nodes() {
    let c = Cluster::start().await;
    let cluster_dns = format!("10.{}.0.10", 160 + u16::from(c.k));

    // The cluster DNS is published as kube-system/kube-dns at the cluster DNS address.
    let services: Api<Service> = Api::namespaced(c.client.clone(), "kube-system");
    let kube_dns = eventually(Duration::from_secs(30), "the kube-dns Service", || async {
        services.get_opt("kube-dns").await.ok().flatten()
    })
    .await;
    assert_eq!(
        kube_dns.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some(cluster_dns.as_str())
    );

    c.server.apply(&web_yaml(2));
    c.server.apply(&format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-lb}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 8081, targetPort: 8080}}]
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
metadata: {{name: sticky}}
spec:
  selector: {{app: web}}
  sessionAffinity: ClientIP
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nobody}}
spec:
  selector: {{app: nothing-has-this-label}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      nodeName: {b}
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sleep, '3600']
"#,
        b = c.names[1],
    ));
    c.ready_endpoints("web", 2).await;
    eventually(Duration::from_secs(60), "the client pod", || async {
        c.exec("client", &["true"]).ok()
    })
    .await;

    // The test image's busybox is linked statically against glibc, which cannot
    // resolve names without its NSS modules: names are resolved with busybox's own
    // `nslookup`, which sends real DNS queries, and pages fetched by address. busybox's
    // nslookup tries every search domain and exits 1 when any of them is NXDOMAIN, so
    // its answer is read whatever the exit status.
    let lookup = |args: Vec<String>| {
        let c = &c;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = vec!["nslookup"];
            cmd.extend(args);
            c.exec("client", &cmd).unwrap_or_else(|e| e)
        }
    };
    let answer_of = |out: &str, fqdn: &str| -> Option<String> {
        let (_, answer) = out.split_once(&format!("Name:\t{fqdn}"))?;
        answer
            .lines()
            .find_map(|l| l.trim().strip_prefix("Address: "))
            .map(|a| a.trim().to_owned())
    };
    let web_ip = c.cluster_ip("web").await;
    let fqdn = "web.default.svc.cluster.local";
    // The short name through the pod's search path, and the full name.
    let short = eventually(Duration::from_secs(60), "web by its short name", || async {
        answer_of(&lookup(vec!["web".into()]).await, fqdn)
    })
    .await;
    assert_eq!(short, web_ip);
    let full = lookup(vec![fqdn.into()]).await;
    assert_eq!(
        answer_of(&full, fqdn).as_deref(),
        Some(web_ip.as_str()),
        "{full}"
    );
    // SRV for the named port, PTR for the virtual IP.
    let srv = lookup(vec!["-type=SRV".into(), format!("_http._tcp.{fqdn}")]).await;
    assert!(srv.contains(&format!("80 {fqdn}")), "{srv}");
    let ptr = lookup(vec![web_ip.clone()]).await;
    assert!(ptr.contains(&format!("name = {fqdn}")), "{ptr}");
    // A headless Service resolves to its pods' addresses.
    let headless = lookup(vec!["web-headless.default.svc.cluster.local".into()]).await;
    let pod_prefix = format!("Address: 10.{}.", 100 + u16::from(c.k));
    assert_eq!(headless.matches(&pod_prefix).count(), 2, "{headless}");
    // A StatefulSet pod by its stable name.
    let db_ip = eventually(
        Duration::from_secs(90),
        "db-0 by its stable name",
        || async {
            answer_of(
                &lookup(vec!["db-0.db.default.svc.cluster.local".into()]).await,
                "db-0.db.default.svc.cluster.local",
            )
        },
    )
    .await;
    let db_pod = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c.client.clone(), "default")
        .get("db-0")
        .await
        .expect("db-0");
    assert_eq!(Some(db_ip), db_pod.status.and_then(|s| s.pod_ip));
    // A name that does not exist is NXDOMAIN.
    let missing = lookup(vec!["no-such-service.default.svc.cluster.local".into()]).await;
    assert!(missing.contains("NXDOMAIN"), "{missing}");

    // The server's DNS asked directly from Rust, at the address kube-dns forwards to.
    let kube_dns_endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(c.client.clone(), "kube-system");
    let subset = kube_dns_endpoints
        .get("kube-dns")
        .await
        .expect("endpoints")
        .subsets
        .expect("subsets")[0]
        .clone();
    let dns_addr = format!(
        "{}:{}",
        subset.addresses.expect("addresses")[0].ip,
        subset.ports.expect("ports")[0].port
    );
    let answers = dns_query(&dns_addr, fqdn);
    assert_eq!(answers, vec![web_ip.clone()]);

    // Query counts and latency on the server's /metrics; the proxy's sync times and
    // rule counts on each node's.
    let metrics = c.server.kubectl(&["get", "--raw", "/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("skiff_dns_responses_total{rcode=\"NOERROR\"}")
            && metrics.contains("skiff_dns_request_duration_seconds_bucket"),
        "{metrics}"
    );
    let node_metrics = c.server.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/metrics", c.names[0]),
    ]);
    let node_metrics = String::from_utf8_lossy(&node_metrics.stdout);
    assert!(
        node_metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count")
            && node_metrics.contains("kubeproxy_sync_proxy_rules_iptables_total"),
        "{node_metrics}"
    );

    // Both backends answer through the virtual IP, from a pod and from the node.
    let url = format!("http://{web_ip}:80/");
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        match c.fetch("client", &url) {
            Ok(page) => {
                seen.insert(page);
            }
            Err(e) => eprintln!("wget {url}: {e}"),
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "answers came from {seen:?}");
    assert!(seen.iter().all(|p| p.starts_with("web-")), "{seen:?}");
    // From the node: every request answered, by either backend.
    let mut from_node_seen = BTreeSet::new();
    for _ in 0..10 {
        let from_node = std::process::Command::new("ip")
            .args(["netns", "exec", &c.net.namespaces[0]])
            .args(["curl", "-s", "--max-time", "5", &url])
            .output()
            .expect("curl in node A");
        let page = String::from_utf8_lossy(&from_node.stdout).trim().to_owned();
        assert!(page.starts_with("web-"), "from node A: {from_node:?}");
        from_node_seen.insert(page);
    }
    eprintln!("from node A, answers from {from_node_seen:?}");

    // ClientIP affinity: the same backend every time.
    let sticky = format!("http://{}:80/", c.cluster_ip("sticky").await);
    let answers: BTreeSet<String> = (0..10)
        .filter_map(|_| c.fetch("client", &sticky).ok())
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");

    // Hairpin: each web pod reaches the Service, itself included.
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c.client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("web pods");
    let one = pods.items[0].metadata.name.clone().expect("name");
    let mut reached_itself = false;
    for _ in 0..30 {
        let page = c
            .fetch(&one, &url)
            .expect("a web pod through its own Service");
        if page == one {
            reached_itself = true;
            break;
        }
    }
    assert!(reached_itself, "{one} never answered itself");

    // A Service without endpoints refuses at once (busybox's wget crashes on a
    // refused connection, its nc reports it).
    let nobody_ip = c.cluster_ip("nobody").await;
    let started = Instant::now();
    let refused = c
        .exec("client", &["nc", "-w", "10", &nobody_ip, "80"])
        .expect_err("no endpoints");
    let took = started.elapsed();
    assert!(
        refused.contains("Connection refused") && took < Duration::from_secs(8),
        "{refused} after {took:?}"
    );

    // The NodePort answers on node B's address from the host.
    let np = Api::<Service>::namespaced(c.client.clone(), "default")
        .get("web-np")
        .await
        .expect("web-np");
    let node_port = np.spec.and_then(|s| s.ports).expect("ports")[0]
        .node_port
        .expect("a node port");
    let np_url = format!("http://{}:{node_port}/", c.net.node_ip(1));
    let page = eventually(
        Duration::from_secs(30),
        "the NodePort from the host",
        || async { web_page_from_host(&np_url) },
    )
    .await;
    assert!(page.starts_with("web-"));
    for _ in 0..10 {
        assert!(web_page_from_host(&np_url).is_some(), "the NodePort failed");
    }

    // A LoadBalancer Service gets the nodes' addresses as its ingress (the built-in
    // service load balancer), and answers there.
    let lb_ip = eventually(
        Duration::from_secs(60),
        "the LoadBalancer's ingress",
        || async {
            let svc = Api::<Service>::namespaced(c.client.clone(), "default")
                .get("web-lb")
                .await
                .ok()?;
            svc.status?.load_balancer?.ingress?.first()?.ip.clone()
        },
    )
    .await;
    assert!(
        [c.net.node_ip(0), c.net.node_ip(1)].contains(&lb_ip),
        "ingress {lb_ip}"
    );
    let wide = c.server.kubectl(&["get", "service", "web-lb"]);
    assert!(String::from_utf8_lossy(&wide.stdout).contains(&lb_ip));
    let lb_url = format!("http://{lb_ip}:8081/");
    let page = eventually(
        Duration::from_secs(30),
        "the LoadBalancer from the host",
        || async { web_page_from_host(&lb_url) },
    )
    .await;
    assert!(page.starts_with("web-"));

    // `skiff agent --cleanup` on node A (stopped) leaves none of its chains.
    let mut c = c;
    c.agents[0].terminate();
    let out = c.agents[0].run_to_exit(&["--cleanup".into()], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let save = std::process::Command::new("ip")
        .args(["netns", "exec", &c.net.namespaces[0], "iptables-save"])
        .output()
        .expect("iptables-save");
    let rules = String::from_utf8_lossy(&save.stdout);
    assert!(
        !rules.contains("SVC-") && !rules.contains("SERVICES"),
        "{rules}"
    );
}

/// A web pod's page (its name) fetched from the host with curl, if one answered.
fn web_page_from_host(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "3", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.starts_with("web-").then_some(text)
}

/// An A query for `name` sent to `server` over UDP; the addresses answered.
fn dns_query(server: &str, name: &str) -> Vec<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut query = Message::query();
    query.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    query.metadata.recursion_desired = true;
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket
        .send_to(&query.to_vec().expect("encode"), server)
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    let answer = Message::from_vec(&buf[..n]).expect("a DNS message");
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn load_spreads_and_follows_scaling_and_a_rolling_update() {
    let c = Cluster::start().await;
    c.server.apply(&web_yaml(3));
    c.ready_endpoints("web", 3).await;
    eventually(Duration::from_secs(60), "the client pod", || async {
        c.exec("client", &["true"]).ok()
    })
    .await;
    let url = format!("http://{}:80/", c.cluster_ip("web").await);

    // Each of 3 pods answers at least once in 30 requests.
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        if let Ok(page) = c.fetch("client", &url) {
            seen.insert(page);
        }
    }
    assert_eq!(seen.len(), 3, "answers came from {seen:?}");

    // Scaled to 0: refused at once; scaled back: served again.
    c.server
        .kubectl(&["scale", "deployment", "web", "--replicas=0"]);
    c.ready_endpoints("web", 0).await;
    let ip = url
        .trim_start_matches("http://")
        .trim_end_matches(":80/")
        .to_owned();
    let refused = eventually(Duration::from_secs(30), "a refusal", || async {
        c.exec("client", &["nc", "-w", "5", &ip, "80"])
            .err()
            .filter(|e| e.contains("Connection refused"))
    })
    .await;
    assert!(refused.contains("Connection refused"));
    c.server
        .kubectl(&["scale", "deployment", "web", "--replicas=3"]);
    c.ready_endpoints("web", 3).await;
    eventually(Duration::from_secs(30), "served again", || async {
        c.fetch("client", &url).ok()
    })
    .await;

    // A client loops over the virtual IP through a rolling update: no failed request.
    c.server.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: looper}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'while true; do if timeout 5 wget -qO- {url} >/dev/null 2>&1; then echo ok; else echo FAIL; fi; sleep 0.1; done']
"#
    ));
    let logs = || c.server.kubectl(&["logs", "looper"]);
    eventually(Duration::from_secs(60), "the looper succeeding", || async {
        String::from_utf8_lossy(&logs().stdout)
            .contains("ok")
            .then_some(())
    })
    .await;
    let before = String::from_utf8_lossy(&logs().stdout).lines().count();
    let out = c
        .server
        .kubectl(&["set", "env", "deployment/web", "ROLL=1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c
        .server
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the last old pods finish terminating while the client keeps asking.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let log = String::from_utf8_lossy(&logs().stdout).into_owned();
    let during: Vec<&str> = log.lines().skip(before).collect();
    let failed = during.iter().filter(|l| **l == "FAIL").count();
    eprintln!("rolling update: {} requests, {failed} failed", during.len());
    assert!(
        during.len() > 20,
        "the client kept asking: {}",
        during.len()
    );
    assert_eq!(failed, 0, "failed requests during the rolling update");
}

/// From inside a real pod: the `kube-api-access` volume holds the pod's bound token,
/// the cluster CA and the namespace; in the pod's network namespace, the API answers
/// at `https://kubernetes.default.svc` (the `kubernetes` Service's ClusterIP) with a
/// certificate the pod's CA verifies, and with the pod's token refuses until a
/// RoleBinding lets the pod's service account list pods.
///
/// The request is curl's (OpenSSL), run in the pod's network namespace with the
/// files the pod sees: busybox's built-in TLS sends no signature_algorithms extension,
/// which rustls requires (Go's TLS does not).
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_reaches_the_api_through_the_kubernetes_service_with_its_own_token() {
    let c = Cluster::start().await;
    // A command line no other test's process has, to find the container's process.
    let marker = format!("{}", 3_600_000 + rand::random::<u32>() % 1_000_000);
    c.server.apply(&format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader}}
---
apiVersion: v1
kind: Pod
metadata: {{name: api-client}}
spec:
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '{marker}']
"#
    ));
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let namespace = eventually(Duration::from_secs(120), "api-client running", || async {
        c.exec("api-client", &["cat", &format!("{dir}/namespace")])
            .ok()
    })
    .await;
    assert_eq!(namespace, "default");
    let ca = c
        .exec("api-client", &["cat", &format!("{dir}/ca.crt")])
        .expect("the CA in the pod");
    let server_ca = std::fs::read_to_string(c.server.dir.path().join("server/tls/ca.crt"))
        .expect("the server's CA");
    assert_eq!(ca, server_ca, "kube-root-ca.crt holds the cluster CA");
    let token = c
        .exec("api-client", &["cat", &format!("{dir}/token")])
        .expect("the token in the pod");
    let claims = token.split('.').nth(1).expect("a JWT");
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64url claims"),
    )
    .expect("JSON claims");
    assert_eq!(claims["sub"], "system:serviceaccount:default:reader");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "api-client");

    let pgrep = std::process::Command::new("pgrep")
        .args(["-f", &format!("^sleep {marker}$")])
        .output()
        .expect("pgrep");
    let pid = String::from_utf8_lossy(&pgrep.stdout)
        .lines()
        .next()
        .expect("the container's process")
        .trim()
        .to_string();
    let root = format!("/proc/{pid}/root{dir}");
    let api_ip = c.cluster_ip("kubernetes").await;
    let list_pods = || {
        let token = std::fs::read_to_string(format!("{root}/token")).expect("the pod's token");
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", "curl", "-sS", "--max-time", "10"])
            .args(["--cacert", &format!("{root}/ca.crt")])
            .args(["--resolve", &format!("kubernetes.default.svc:443:{api_ip}")])
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .args(["-w", "\n%{http_code}"])
            .arg("https://kubernetes.default.svc/api/v1/namespaces/default/pods")
            .output()
            .expect("curl in the pod's network");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (
            code.trim().to_string(),
            format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (code, refused) = list_pods();
    assert_eq!(code, "403", "{refused}");
    let status: serde_json::Value = serde_json::from_str(&refused).expect("a Status");
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:serviceaccount:default:reader\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );

    let out = c.server.kubectl(&[
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        "--serviceaccount=default:reader",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods = eventually(Duration::from_secs(20), "the pod lists pods", || async {
        let (code, body) = list_pods();
        (code == "200").then_some(body)
    })
    .await;
    let list: serde_json::Value = serde_json::from_str(&pods).expect("a PodList");
    assert_eq!(list["kind"], "PodList");
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|p| p["metadata"]["name"] == "api-client"),
        "{pods}"
    );
}
