//! kubectl drives Skiff: the default namespaces exist, a multi-kind manifest applies,
//! `get -o wide` prints Kubernetes' columns, describe works, re-apply is unchanged,
//! delete and wait finish.

#[path = "support/server.rs"]
mod support;

use support::TestServer;

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: demo
data:
  a: "1"
  b: "2"
---
apiVersion: v1
kind: Secret
metadata:
  name: sec
  namespace: demo
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"#;

#[test]
fn fresh_server_has_the_system_namespaces() {
    let s = TestServer::start();
    let out = s.kubectl_ok(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            out.contains(&format!("namespace/{ns}")),
            "missing {ns} in {out}"
        );
    }
    let svc = s.kubectl_ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(svc, "10.43.0.1");
}

#[test]
fn applied_manifest_is_listed_with_kubernetes_columns() {
    let s = TestServer::start();
    let out = s.apply(APP);
    for line in [
        "namespace/demo created",
        "configmap/cfg created",
        "secret/sec created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{line:?} not in {out}");
    }
    let wide = s.kubectl_ok(&["get", "deploy,svc,cm", "-A", "-o", "wide"]);
    assert!(wide.contains("NAMESPACE   NAME                  READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES       SELECTOR"), "{wide}");
    assert!(wide.contains("deployment.apps/web   0/3"), "{wide}");
    assert!(wide.contains("TYPE        CLUSTER-IP"), "{wide}");
    assert!(wide.contains("NodePort"), "{wide}");
    assert!(
        wide.contains("80:3"),
        "node port shown as 80:3xxxx/TCP: {wide}"
    );
    let fields = |name: &str| -> Vec<String> {
        wide.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .map(|l| l.split_whitespace().take(3).map(String::from).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        fields("configmap/cfg"),
        ["demo", "configmap/cfg", "2"],
        "{wide}"
    );
    // Every namespace gets the cluster CA, as in Kubernetes.
    assert!(
        wide.lines()
            .any(|l| l.starts_with("demo ") && l.contains("configmap/kube-root-ca.crt")),
        "{wide}"
    );

    // Defaults Kubernetes users see.
    let strategy = s.kubectl_ok(&["get", "deploy", "-n", "demo", "web", "-o", "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.template.spec.containers[0].terminationMessagePath} {.spec.template.spec.containers[0].imagePullPolicy}"]);
    assert_eq!(strategy, "25% 10 /dev/termination-log IfNotPresent");
    let secret = s.kubectl_ok(&[
        "get",
        "secret",
        "-n",
        "demo",
        "sec",
        "-o",
        "jsonpath={.data.password} {.type}",
    ]);
    assert_eq!(secret, "aHVudGVyMg== Opaque");

    let described = s.kubectl_ok(&["describe", "deploy", "-n", "demo", "web"]);
    assert!(
        described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{described}"
    );
    let squeezed: String = described.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains("Port: 80/TCP"), "{described}");

    let again = s.apply(APP);
    assert!(again.contains("configmap/cfg unchanged"), "{again}");
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
}

#[test]
fn delete_and_wait_for_deletion_finish() {
    let s = TestServer::start();
    s.apply(APP);
    let out = s.kubectl_ok(&["delete", "cm", "-n", "demo", "cfg"]);
    assert_eq!(out.trim(), "configmap \"cfg\" deleted");
    let err = s.kubectl_err(&["get", "cm", "-n", "demo", "cfg"]);
    assert!(
        err.contains("Error from server (NotFound): configmaps \"cfg\" not found"),
        "{err}"
    );
    // Deleting a namespace removes what is in it, and kubectl waits for it.
    s.kubectl_ok(&["delete", "ns", "demo", "--timeout=30s"]);
    let err = s.kubectl_err(&["get", "deploy", "-n", "demo", "web"]);
    assert!(err.contains("NotFound"), "{err}");
    let err = s.kubectl_err(&["get", "ns", "demo"]);
    assert!(err.contains("namespaces \"demo\" not found"), "{err}");
}

#[test]
fn wait_for_a_condition_and_for_delete() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "configmap", "w", "--from-literal=k=v"]);
    let out = s.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.data.k}=v",
        "cm/w",
        "--timeout=10s",
    ]);
    assert!(out.contains("configmap/w condition met"), "{out}");
    let waiter = std::thread::spawn({
        let kc = s.kubeconfig();
        let cache = s.data_dir().join("kube-cache-wait");
        move || {
            std::process::Command::new("/usr/bin/kubectl")
                .env("KUBECONFIG", kc)
                .arg("--cache-dir")
                .arg(cache)
                .args(["wait", "--for=delete", "cm/w", "--timeout=20s"])
                .output()
                .expect("kubectl wait")
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    s.kubectl_ok(&["delete", "cm", "w"]);
    let out = waiter.join().expect("waiter thread");
    assert!(
        out.status.success(),
        "wait --for=delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn api_resources_versions_and_explain_work() {
    let s = TestServer::start();
    let res = s.kubectl_ok(&["api-resources"]);
    assert!(
        res.contains("deployments                 deploy") || res.contains("deployments "),
        "{res}"
    );
    let versions = s.kubectl_ok(&["api-versions"]);
    for gv in ["apps/v1", "batch/v1", "v1", "rbac.authorization.k8s.io/v1"] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing in {versions}"
        );
    }
    let v = s.kubectl_ok(&["version", "-o", "json"]);
    assert!(v.contains("\"minor\": \"33\""), "{v}");
    let explain = s.kubectl_ok(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("KIND:       Deployment"), "{explain}");
    assert!(explain.contains("rollingUpdate"), "{explain}");
}

#[test]
fn kubectl_create_subcommands_send_protobuf_and_work() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "pb"]);
    s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "pb",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=80",
    ]);
    assert_eq!(
        s.kubectl_ok(&["get", "deploy", "-n", "pb", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.selector.matchLabels.app}"]),
        "3 80 web"
    );
    s.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "-n",
        "pb",
        "--port=8080",
        "--target-port=80",
    ]);
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "svc",
            "-n",
            "pb",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.selector.app}"
        ]),
        "8080 80 web"
    );
    s.kubectl_ok(&[
        "create",
        "service",
        "nodeport",
        "np",
        "-n",
        "pb",
        "--tcp=80:8080",
        "--node-port=30123",
    ]);
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "svc",
            "-n",
            "pb",
            "np",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].nodePort}"
        ]),
        "NodePort 30123"
    );
    s.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "pb",
        "--from-literal=user=admin",
    ]);
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "secret",
            "-n",
            "pb",
            "creds",
            "-o",
            "jsonpath={.data.user}"
        ]),
        "YWRtaW4="
    );
    s.kubectl_ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "pb",
        "--from-literal=a=1",
    ]);
    s.kubectl_ok(&[
        "create",
        "job",
        "once",
        "-n",
        "pb",
        "--image=busybox",
        "--",
        "true",
    ]);
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "job",
            "-n",
            "pb",
            "once",
            "-o",
            "jsonpath={.spec.template.spec.restartPolicy} {.spec.backoffLimit}"
        ]),
        "Never 6"
    );
    s.kubectl_ok(&[
        "run",
        "solo",
        "-n",
        "pb",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sleep",
        "1",
    ]);
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "pod",
            "-n",
            "pb",
            "solo",
            "-o",
            "jsonpath={.status.phase} {.spec.restartPolicy}"
        ]),
        "Pending Never"
    );
    let all = s.kubectl_ok(&["get", "all", "-n", "pb", "-o", "name"]);
    for want in [
        "pod/solo",
        "service/web",
        "service/np",
        "deployment.apps/web",
        "job.batch/once",
    ] {
        assert!(
            all.lines().any(|l| l == want),
            "{want} missing from get all:\n{all}"
        );
    }
}
