//! RBAC against the real binary: users (client certificates signed by the cluster
//! CA, static tokens, service account tokens) are refused with kube-apiserver's
//! 403 until a binding grants them; `kubectl auth can-i` (also `--list`) and `kubectl
//! auth whoami` answer from the same authorizer; nobody grants what they do not hold
//! unless they may `escalate` or `bind`; aggregated roles follow the roles they
//! select; the default roles come back at a restart; the scheduler, controller
//! manager and cluster DNS run with their own least-privileged identities.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Options, TestServer};

/// A kubeconfig for `user` in `groups` with a client certificate signed by the
/// server's CA, as an administrator would make one.
fn user_kubeconfig(s: &TestServer, user: &str, groups: &[&str]) -> PathBuf {
    s.signed_kubeconfig(
        &format!("user-{}.yaml", user.replace(':', "-")),
        user,
        groups,
    )
}

/// A kubeconfig with only the cluster CA and a bearer token.
fn token_kubeconfig(s: &TestServer, name: &str, token: &str) -> PathBuf {
    let path = s.data_dir().join(format!("token-{name}.yaml"));
    let ca = s.data_dir().join("server/tls/ca.crt");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n",
            s.port,
            ca.display()
        ),
    )
    .expect("write the token kubeconfig");
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let o = s.kubectl_as(kubeconfig, args);
    assert!(
        o.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn refused(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let o = s.kubectl_as(kubeconfig, args);
    assert!(
        !o.status.success(),
        "kubectl {args:?} should be refused:\n{}",
        stdout(&o)
    );
    stderr(&o)
}

/// `kubectl auth can-i ARGS` as `kubeconfig`: (the answer, whether it exited 0).
fn can_i(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> (String, bool) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let o = s.kubectl_as(kubeconfig, &all);
    (stdout(&o).trim().to_string(), o.status.success())
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_certificate_user_is_forbidden_with_kubernetes_message_until_bound_to_view_then_edit() {
    let s = TestServer::start();
    let dana = user_kubeconfig(&s, "dana", &["qa"]);

    let err = refused(&s, &dana, &["get", "pods", "-n", "default"]);
    assert!(
        err.contains(
            "Error from server (Forbidden): pods is forbidden: User \"dana\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    let err = refused(&s, &dana, &["get", "nodes"]);
    assert!(
        err.contains("nodes is forbidden: User \"dana\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"),
        "{err}"
    );
    let err = refused(&s, &dana, &["get", "deployment", "web", "-n", "default"]);
    assert!(
        err.contains("deployments.apps \"web\" is forbidden: User \"dana\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"default\""),
        "{err}"
    );

    // The Status is Kubernetes': 403, reason Forbidden, the resource in details.
    let tls = s.data_dir().join("server/tls");
    let ca = std::fs::read_to_string(tls.join("ca.crt")).expect("ca");
    let ca_key = std::fs::read_to_string(tls.join("ca.key")).expect("ca key");
    let (cert, key) = apiserver::sign_client_cert(&ca, &ca_key, "dana", &["qa"]).expect("cert");
    let (cert_path, key_path) = (s.data_dir().join("dana.crt"), s.data_dir().join("dana.key"));
    std::fs::write(&cert_path, cert).expect("cert file");
    std::fs::write(&key_path, key).expect("key file");
    let (code, body) = s.curl(
        "/api/v1/namespaces/default/secrets",
        &[
            "--cert",
            cert_path.to_str().expect("utf8"),
            "--key",
            key_path.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"]["kind"], "secrets");
    assert_eq!(
        status["message"],
        "secrets is forbidden: User \"dana\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );

    // view: read, but neither write nor read secrets.
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "dana-view",
        "--clusterrole=view",
        "--user=dana",
        "-n",
        "default",
    ]);
    ok(&s, &dana, &["get", "pods", "-n", "default"]);
    ok(&s, &dana, &["get", "ns", "default"]);
    let err = refused(&s, &dana, &["get", "secrets", "-n", "default"]);
    assert!(err.contains("cannot list resource \"secrets\""), "{err}");
    let err = refused(&s, &dana, &["create", "configmap", "c1", "-n", "default"]);
    assert!(
        err.contains("configmaps is forbidden: User \"dana\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    // Only in that namespace.
    refused(&s, &dana, &["get", "pods", "-n", "kube-system"]);

    // edit (a group binding): write and read secrets.
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "qa-edit",
        "--clusterrole=edit",
        "--group=qa",
        "-n",
        "default",
    ]);
    ok(&s, &dana, &["create", "configmap", "c1", "-n", "default"]);
    ok(&s, &dana, &["get", "secrets", "-n", "default"]);
    // edit does not manage RBAC.
    let err = refused(
        &s,
        &dana,
        &[
            "create",
            "role",
            "r",
            "--verb=get",
            "--resource=pods",
            "-n",
            "default",
        ],
    );
    assert!(err.contains("cannot create resource \"roles\""), "{err}");

    // Unbound again, refused again.
    s.kubectl_ok(&[
        "delete",
        "rolebinding",
        "qa-edit",
        "dana-view",
        "-n",
        "default",
    ]);
    refused(&s, &dana, &["get", "pods", "-n", "default"]);
}

#[test]
fn kubectl_auth_can_i_answers_yes_and_no_and_lists_the_rules() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "erin-token,erin,2001,\"ops\"\n").expect("tokens");
    let s = TestServer::start_with(Options {
        args: vec!["--token-auth-file".into(), tokens.display().to_string()],
    });
    let erin = token_kubeconfig(&s, "erin", "erin-token");

    assert_eq!(
        can_i(&s, &erin, &["list", "pods", "-n", "default"]),
        ("no".into(), false)
    );
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "erin-view",
        "--clusterrole=view",
        "--user=erin",
        "-n",
        "default",
    ]);
    assert_eq!(
        can_i(&s, &erin, &["list", "pods", "-n", "default"]),
        ("yes".into(), true)
    );
    assert_eq!(
        can_i(&s, &erin, &["get", "pods/log", "-n", "default"]),
        ("yes".into(), true)
    );
    assert_eq!(
        can_i(&s, &erin, &["delete", "pods", "-n", "default"]),
        ("no".into(), false)
    );
    assert_eq!(
        can_i(&s, &erin, &["list", "pods", "-n", "kube-system"]),
        ("no".into(), false)
    );
    assert_eq!(can_i(&s, &erin, &["get", "/healthz"]), ("yes".into(), true));
    assert_eq!(can_i(&s, &erin, &["get", "/metrics"]), ("no".into(), false));

    // --list: the rules erin holds in the namespace, in kubectl's table.
    let list = ok(&s, &erin, &["auth", "can-i", "--list", "-n", "default"]);
    let row = |resource: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(resource))
            .unwrap_or_else(|| panic!("no {resource} row in\n{list}"))
            .to_string()
    };
    assert!(list.starts_with("Resources"), "{list}");
    assert!(row("pods").ends_with("[get list watch]"), "{list}");
    assert!(
        row("deployments.apps").ends_with("[get list watch]"),
        "{list}"
    );
    assert!(
        row("selfsubjectaccessreviews.authorization.k8s.io").ends_with("[create]"),
        "{list}"
    );
    assert!(list.contains("[/healthz]"), "{list}");
    assert!(
        !list.contains("secrets"),
        "view does not read secrets:\n{list}"
    );

    // The administrator (system:masters) may do anything.
    assert_eq!(s.kubectl_ok(&["auth", "can-i", "*", "*"]).trim(), "yes");
}

#[test]
fn kubectl_auth_whoami_names_the_user_and_groups() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "frank-token,frank,3001,\"dev,ops\"\n").expect("tokens");
    let s = TestServer::start_with(Options {
        args: vec!["--token-auth-file".into(), tokens.display().to_string()],
    });
    let frank = token_kubeconfig(&s, "frank", "frank-token");
    let out = ok(&s, &frank, &["auth", "whoami"]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], vec!["ATTRIBUTE", "VALUE"], "{out}");
    assert!(lines.contains(&vec!["Username", "frank"]), "{out}");
    assert!(lines.contains(&vec!["UID", "3001"]), "{out}");
    assert!(
        lines.contains(&vec!["Groups", "[dev", "ops", "system:authenticated]"]),
        "{out}"
    );

    let gina = user_kubeconfig(&s, "gina", &["team-a"]);
    let out = ok(&s, &gina, &["auth", "whoami", "-o", "json"]);
    let review: Value = serde_json::from_str(&out).expect("a SelfSubjectReview");
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"]["username"], "gina");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["team-a", "system:authenticated"])
    );

    let admin = s.kubectl_ok(&["auth", "whoami"]);
    assert!(
        admin.contains("system:admin") && admin.contains("system:masters"),
        "{admin}"
    );
}

#[test]
fn a_user_who_may_only_create_roles_cannot_grant_more_until_given_escalate_or_bind() {
    let s = TestServer::start();
    let hank = user_kubeconfig(&s, "hank", &[]);
    s.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-maker, namespace: default}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "get", "list"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: hank-role-maker, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-maker}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: hank}]
"#,
    );

    // What hank holds he may hand on.
    ok(
        &s,
        &hank,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "default",
        ],
    );
    // More he may not.
    let err = refused(
        &s,
        &hank,
        &[
            "create",
            "role",
            "secret-reader",
            "--verb=get",
            "--resource=secrets",
            "-n",
            "default",
        ],
    );
    assert!(
        err.contains(
            "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"hank\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        ),
        "{err}"
    );
    // Nor bind a role holding more than he does.
    let err = refused(
        &s,
        &hank,
        &[
            "create",
            "rolebinding",
            "hank-edit",
            "--clusterrole=edit",
            "--user=hank",
            "-n",
            "default",
        ],
    );
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"hank-edit\" is forbidden: user \"hank\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{err}"
    );
    // Binding a role he holds all of is fine.
    ok(
        &s,
        &hank,
        &[
            "create",
            "rolebinding",
            "others-read",
            "--role=pod-reader",
            "--user=ivy",
            "-n",
            "default",
        ],
    );

    // With `escalate` on roles he may write any rules into them.
    s.kubectl_ok(&[
        "create",
        "role",
        "escalator",
        "--verb=escalate",
        "--resource=roles",
        "-n",
        "default",
    ]);
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "hank-escalate",
        "--role=escalator",
        "--user=hank",
        "-n",
        "default",
    ]);
    ok(
        &s,
        &hank,
        &[
            "create",
            "role",
            "secret-reader",
            "--verb=get",
            "--resource=secrets",
            "-n",
            "default",
        ],
    );
    // With `bind` on the edit ClusterRole he may bind it.
    s.kubectl_ok(&[
        "create",
        "role",
        "edit-binder",
        "--verb=bind",
        "--resource=clusterroles",
        "--resource-name=edit",
        "-n",
        "default",
    ]);
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "hank-bind",
        "--role=edit-binder",
        "--user=hank",
        "-n",
        "default",
    ]);
    ok(
        &s,
        &hank,
        &[
            "create",
            "rolebinding",
            "ivy-edit",
            "--clusterrole=edit",
            "--user=ivy",
            "-n",
            "default",
        ],
    );
}

#[test]
fn aggregated_view_picks_up_a_new_cluster_role_labelled_aggregate_to_view() {
    let s = TestServer::start();
    let jo = user_kubeconfig(&s, "jo", &[]);
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "jo-view",
        "--clusterrole=view",
        "--user=jo",
    ]);
    assert_eq!(can_i(&s, &jo, &["get", "secrets", "-n", "default"]).0, "no");
    s.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: secret-peeker
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
"#,
    );
    // The authorizer sees the aggregation at once.
    assert_eq!(
        can_i(&s, &jo, &["get", "secrets", "-n", "default"]),
        ("yes".into(), true)
    );
    assert_eq!(
        can_i(&s, &jo, &["list", "secrets", "-n", "default"]).0,
        "no"
    );
    // The stored view, edit and admin roles show the rule, as Kubernetes' controller writes it.
    for role in ["view", "edit", "admin"] {
        eventually(
            &format!("{role} shows the aggregated rule"),
            Duration::from_secs(10),
            || {
                let out = s.kubectl_ok(&["get", "clusterrole", role, "-o", "json"]);
                let obj: Value = serde_json::from_str(&out).expect("json");
                obj["rules"].as_array().is_some_and(|rules| {
                    rules.iter().any(|r| {
                        r["resources"] == serde_json::json!(["secrets"])
                            && r["verbs"] == serde_json::json!(["get"])
                    })
                })
            },
        );
    }
    s.kubectl_ok(&["delete", "clusterrole", "secret-peeker"]);
    assert_eq!(can_i(&s, &jo, &["get", "secrets", "-n", "default"]).0, "no");
}

#[test]
fn a_service_account_token_is_forbidden_until_bound() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "team-sa"]);
    s.kubectl_ok(&["create", "serviceaccount", "app", "-n", "team-sa"]);
    let token = s.kubectl_ok(&["create", "token", "app", "-n", "team-sa"]);
    let auth = format!("Authorization: Bearer {}", token.trim());
    let (code, body) = s.curl("/api/v1/namespaces/team-sa/pods", &["-H", &auth]);
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:serviceaccount:team-sa:app\" cannot list resource \"pods\" in API group \"\" in the namespace \"team-sa\""
    );
    // Discovery is open to every authenticated user.
    assert_eq!(s.curl("/apis", &["-H", &auth]).0, 200);

    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "app-view",
        "--clusterrole=view",
        "--serviceaccount=team-sa:app",
        "-n",
        "team-sa",
    ]);
    let (code, body) = s.curl("/api/v1/namespaces/team-sa/pods", &["-H", &auth]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        s.curl("/api/v1/namespaces/default/pods", &["-H", &auth]).0,
        403
    );

    // A binding to the namespace's service account group works as well.
    s.kubectl_ok(&["delete", "rolebinding", "app-view", "-n", "team-sa"]);
    assert_eq!(
        s.curl("/api/v1/namespaces/team-sa/pods", &["-H", &auth]).0,
        403
    );
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "all-sa-view",
        "--clusterrole=view",
        "--group=system:serviceaccounts:team-sa",
        "-n",
        "team-sa",
    ]);
    assert_eq!(
        s.curl("/api/v1/namespaces/team-sa/pods", &["-H", &auth]).0,
        200
    );
}

#[test]
fn default_roles_exist_and_come_back_at_a_restart_unless_autoupdate_is_off() {
    let mut s = TestServer::start();
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node",
        "system:node-proxier",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:kube-dns",
    ] {
        let out = s.kubectl_ok(&["get", "clusterrole", role, "-o", "json"]);
        let obj: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            obj["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], "true",
            "{role}"
        );
    }
    let masters = s.kubectl_ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "json"]);
    let masters: Value = serde_json::from_str(&masters).expect("json");
    assert_eq!(masters["roleRef"]["name"], "cluster-admin");
    assert_eq!(masters["subjects"][0]["name"], "system:masters");
    let public = s.kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "system:public-info-viewer",
        "-o",
        "json",
    ]);
    assert!(public.contains("system:unauthenticated"), "{public}");

    // A deleted default role and a trimmed one are restored at the next start; one
    // marked autoupdate=false is left as it is.
    s.kubectl_ok(&["delete", "clusterrole", "system:kube-dns"]);
    s.kubectl_ok(&[
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/rules", "value": []}]"#,
    ]);
    s.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:auth-delegator",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    s.kubectl_ok(&[
        "patch",
        "clusterrole",
        "system:auth-delegator",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/rules", "value": []}]"#,
    ]);
    assert_eq!(s.terminate(), Some(0), "{}", s.log());
    s.spawn_and_wait();
    s.kubectl_ok(&["get", "clusterrole", "system:kube-dns"]);
    let basic = s.kubectl_ok(&["get", "clusterrole", "system:basic-user", "-o", "json"]);
    assert!(basic.contains("selfsubjectaccessreviews"), "{basic}");
    let delegator = s.kubectl_ok(&["get", "clusterrole", "system:auth-delegator", "-o", "json"]);
    assert!(!delegator.contains("tokenreviews"), "{delegator}");
}

/// A SubjectAccessReview by the administrator: may `user` do `verb` on `resource`?
fn review(
    s: &TestServer,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
) -> Value {
    let sar = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": groups,
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": "default"},
        },
    });
    // kubectl validates kinds without a PATCH operation against OpenAPI v2 in
    // protobuf, which Skiff does not serve: the server validates instead.
    let out = s.kubectl_stdin(
        &["create", "--validate=false", "-f", "-", "-o", "json"],
        Some(&sar.to_string()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Value>(&out.stdout).expect("json")["status"].clone()
}

#[test]
fn the_control_plane_components_run_with_their_own_least_privileged_identities() {
    let s = TestServer::start();
    let cred = s.data_dir().join("server/cred");
    for (file, user) in [
        ("scheduler.kubeconfig", "system:kube-scheduler"),
        ("controller.kubeconfig", "system:kube-controller-manager"),
        ("dns.kubeconfig", "system:kube-dns"),
    ] {
        let path = cred.join(file);
        let out = s.kubectl_as(&path, &["auth", "whoami", "-o", "json"]);
        let who: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
        assert_eq!(who["status"]["userInfo"]["username"], user, "{file}");
        let groups = who["status"]["userInfo"]["groups"].to_string();
        assert!(!groups.contains("system:masters"), "{file}: {groups}");
    }
    let scheduler = |verb: &str, group: &str, resource: &str| {
        review(
            &s,
            "system:kube-scheduler",
            &["system:authenticated"],
            verb,
            group,
            resource,
        )
    };
    let binding = scheduler("create", "", "pods/binding");
    assert_eq!(binding["allowed"], true, "{binding}");
    assert!(
        binding["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ClusterRoleBinding \"system:kube-scheduler\"")),
        "{binding}"
    );
    assert_eq!(scheduler("list", "", "secrets")["allowed"], false);
    assert_eq!(scheduler("create", "", "pods")["allowed"], false);
    let cm = |verb: &str, group: &str, resource: &str| {
        review(
            &s,
            "system:kube-controller-manager",
            &["system:authenticated"],
            verb,
            group,
            resource,
        )
    };
    assert_eq!(cm("create", "", "pods")["allowed"], true);
    assert_eq!(cm("update", "apps", "deployments/status")["allowed"], true);
    assert_eq!(
        cm("create", "rbac.authorization.k8s.io", "clusterrolebindings")["allowed"],
        false
    );
    let dns = |verb: &str, group: &str, resource: &str| {
        review(
            &s,
            "system:kube-dns",
            &["system:authenticated"],
            verb,
            group,
            resource,
        )
    };
    assert_eq!(
        dns("watch", "discovery.k8s.io", "endpointslices")["allowed"],
        true
    );
    assert_eq!(dns("list", "", "secrets")["allowed"], false);
    assert_eq!(
        dns("create", "", "services")["allowed"],
        false,
        "only in kube-system"
    );

    // The components work as those users: a deployment rolls out and its pods are
    // scheduled onto a node.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = s.client().await;
        cluster::create_node(&client, "rbac-node", "4", "8Gi", &[], &[]).await;
    });
    s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
    ]);
    eventually(
        "two pods scheduled onto the node",
        Duration::from_secs(30),
        || {
            let out = s.kubectl_ok(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
            ]);
            out.lines().filter(|l| *l == "rbac-node").count() == 2
        },
    );
}

#[test]
fn always_allow_mode_lets_every_authenticated_user_in() {
    let s = TestServer::start_with(Options {
        args: vec!["--authorization-mode".into(), "AlwaysAllow".into()],
    });
    let kim = user_kubeconfig(&s, "kim", &[]);
    ok(&s, &kim, &["get", "secrets", "-n", "kube-system"]);
    assert_eq!(can_i(&s, &kim, &["delete", "nodes"]), ("yes".into(), true));
}

#[test]
fn skiff_kubeconfig_create_makes_a_user_that_rbac_grants_through_its_group() {
    let s = TestServer::start();
    let path = s.data_dir().join("carol.yaml");
    let made = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["kubeconfig", "create", "--user", "carol"])
        .args(["--group", "devs", "--group", "ops"])
        .arg("--data-dir")
        .arg(s.data_dir())
        .arg("-o")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run skiff kubeconfig create");
    assert!(made.status.success(), "{}", stderr(&made));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path)
            .expect("the kubeconfig")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the kubeconfig holds a private key");

    let out = ok(&s, &path, &["auth", "whoami", "-o", "json"]);
    let review: Value = serde_json::from_str(&out).expect("a SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"]["username"], "carol");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "ops", "system:authenticated"])
    );
    let err = refused(&s, &path, &["get", "pods", "-n", "default"]);
    assert!(err.contains("User \"carol\" cannot list"), "{err}");

    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
    ]);
    eventually("carol may list pods", Duration::from_secs(10), || {
        s.kubectl_as(&path, &["get", "pods", "-n", "default"])
            .status
            .success()
    });

    // Printed to standard output when no file is named; bad input is one line.
    let printed = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["kubeconfig", "create", "--user", "dave", "--data-dir"])
        .arg(s.data_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run skiff kubeconfig create");
    assert!(printed.status.success(), "{}", stderr(&printed));
    let yaml: serde_yaml::Value =
        serde_yaml::from_slice(&printed.stdout).expect("a kubeconfig on stdout");
    assert_eq!(
        yaml["clusters"][0]["cluster"]["server"].as_str(),
        Some(format!("https://127.0.0.1:{}", s.port).as_str())
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["kubeconfig", "create", "--user", " ", "--data-dir"])
        .arg(s.data_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run skiff kubeconfig create");
    assert!(!bad.status.success());
    assert_eq!(
        stderr(&bad).trim(),
        "error: --user must not be empty",
        "one clear line"
    );
}

#[test]
fn token_review_names_the_service_account_behind_a_token_for_the_audiences_it_holds() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "serviceaccount", "reviewed"]);
    let token = s.kubectl_ok(&["create", "token", "reviewed"]);
    let vault_token = s.kubectl_ok(&["create", "token", "reviewed", "--audience", "vault"]);
    let review = |token: &str, audiences: &[&str]| -> (bool, Value) {
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token.trim(), "audiences": audiences},
        });
        let path = s.data_dir().join("review.json");
        std::fs::write(&path, body.to_string()).expect("write the review");
        let out = s.kubectl(&[
            "create",
            "--raw",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
        let text = if out.status.success() {
            stdout(&out)
        } else {
            stderr(&out)
        };
        (
            out.status.success(),
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    };

    let (ok, answer) = review(&token, &[]);
    assert!(ok, "{answer}");
    assert_eq!(answer["kind"], "TokenReview");
    let status = &answer["status"];
    assert_eq!(status["authenticated"], true, "{answer}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:reviewed"
    );
    let groups = status["user"]["groups"].as_array().expect("groups");
    assert!(groups.contains(&Value::from("system:serviceaccounts:default")));

    // A token for another audience is not one for the API server, and the other way.
    let (_, wrong) = review(&vault_token, &[]);
    assert_eq!(wrong["status"]["authenticated"], false, "{wrong}");
    let (_, right) = review(&vault_token, &["vault"]);
    assert_eq!(right["status"]["authenticated"], true, "{right}");
    assert_eq!(right["status"]["audiences"], serde_json::json!(["vault"]));

    let (_, garbage) = review("not-a-token", &[]);
    assert_eq!(garbage["status"]["authenticated"], false);
    assert!(
        garbage["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid bearer token")),
        "{garbage}"
    );
    let (ok, empty) = review("", &[]);
    assert!(!ok, "an empty token is a bad request");
    assert!(empty.to_string().contains("token is required"), "{empty}");

    // Deleting the account invalidates its tokens.
    s.kubectl_ok(&["delete", "serviceaccount", "reviewed"]);
    let (_, after) = review(&token, &[]);
    assert_eq!(after["status"]["authenticated"], false, "{after}");
}

#[test]
fn a_data_dir_from_before_the_node_authorizer_loses_the_blanket_node_grants() {
    // What earlier versions stored: system:nodes bound to system:node, and a role
    // letting nodes read every service account.
    let mut s = TestServer::start_with(Options {
        args: vec!["--authorization-mode".into(), "RBAC".into()],
    });
    s.kubectl_ok(&[
        "patch",
        "clusterrolebinding",
        "system:node",
        "--type=merge",
        "-p",
        r#"{"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"system:nodes"}]}"#,
    ]);
    s.apply(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:skiff:node
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
rules: [{apiGroups: [""], resources: [serviceaccounts], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:skiff:node
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:skiff:node}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}]
"#,
    );
    s.kill();
    s.extra = Vec::new(); // the default: Node,RBAC
    s.spawn_and_wait();
    let subjects = s.kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "system:node",
        "-o",
        "jsonpath={.subjects}",
    ]);
    assert!(!subjects.contains("system:nodes"), "{subjects}");
    for kind in ["clusterrole", "clusterrolebinding"] {
        let err = s.kubectl_err(&["get", kind, "system:skiff:node"]);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
    }
}

#[test]
fn impersonation_needs_the_impersonate_verb_and_then_runs_as_the_impersonated_user() {
    let s = TestServer::start();
    // The administrator (system:masters) may impersonate anyone; the request then
    // runs with the impersonated user's rights.
    let err = s.kubectl_err(&["get", "pods", "-n", "default", "--as", "jane"]);
    assert!(
        err.contains(
            "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    let who: Value = serde_json::from_str(&s.kubectl_ok(&[
        "auth",
        "whoami",
        "-o",
        "json",
        "--as",
        "jane",
        "--as-group",
        "devs",
        "--as-uid",
        "42",
    ]))
    .expect("json");
    assert_eq!(who["status"]["userInfo"]["username"], "jane");
    assert_eq!(who["status"]["userInfo"]["uid"], "42");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    // A service account keeps its fixed groups when none are given.
    let who: Value = serde_json::from_str(&s.kubectl_ok(&[
        "auth",
        "whoami",
        "-o",
        "json",
        "--as",
        "system:serviceaccount:kube-system:robot",
    ]))
    .expect("json");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated"
        ])
    );
    s.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "default",
        "--as",
        "jane",
        "--as-group",
        "system:masters",
    ]);

    // An ordinary user may not impersonate until a role says so, and then only whom
    // the role names.
    let alice = user_kubeconfig(&s, "alice", &["staff"]);
    // kubectl's discovery client cannot print a refused discovery request (it says
    // "unknown", against kube-apiserver too): fill its cache as alice first.
    refused(&s, &alice, &["get", "pods"]);
    let err = refused(&s, &alice, &["get", "pods", "--as", "bob"]);
    assert!(
        err.contains(
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{err}"
    );
    let err = refused(
        &s,
        &alice,
        &[
            "get",
            "pods",
            "--as",
            "system:serviceaccount:default:default",
        ],
    );
    assert!(
        err.contains(
            "serviceaccounts \"default\" is forbidden: User \"alice\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    s.apply(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-bob}
rules:
- apiGroups: [""]
  resources: [users]
  verbs: [impersonate]
  resourceNames: [bob]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-impersonates-bob}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-bob}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
"#,
    );
    eventually("alice may act as bob", Duration::from_secs(10), || {
        s.kubectl_as(&alice, &["get", "pods", "-n", "default", "--as", "bob"])
            .status
            .success()
    });
    let who: Value = serde_json::from_str(&ok(
        &s,
        &alice,
        &["auth", "whoami", "-o", "json", "--as", "bob"],
    ))
    .expect("json");
    assert_eq!(who["status"]["userInfo"]["username"], "bob");
    // bob's rights apply, not alice's: view cannot create.
    let err = refused(
        &s,
        &alice,
        &["create", "configmap", "x", "-n", "default", "--as", "bob"],
    );
    assert!(
        err.contains("User \"bob\" cannot create resource \"configmaps\""),
        "{err}"
    );
    // Groups are checked too: alice may not add one.
    let err = refused(
        &s,
        &alice,
        &["get", "pods", "--as", "bob", "--as-group", "system:masters"],
    );
    assert!(
        err.contains(
            "groups \"system:masters\" is forbidden: User \"alice\" cannot impersonate resource \"groups\""
        ),
        "{err}"
    );
    let err = refused(&s, &alice, &["get", "pods", "--as", "carol"]);
    assert!(err.contains("users \"carol\" is forbidden"), "{err}");

    // Groups without a user are refused before anything runs.
    let (code, body) = s.curl_admin(
        "/api/v1/namespaces/default/pods",
        &["-H", "Impersonate-Group: devs"],
    );
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("requested [{Group devs}] without impersonating a user"),
        "{body}"
    );
}
