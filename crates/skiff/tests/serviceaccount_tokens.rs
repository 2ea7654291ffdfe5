//! ServiceAccount tokens: `kubectl create token` issues a signed, expiring token the
//! API server accepts as `system:serviceaccount:<ns>:<name>` until the account (or a
//! bound pod) is deleted; tokens for another audience are refused.

#[path = "support/server.rs"]
mod support;

use support::TestServer;

fn with_token(s: &TestServer, token: &str, args: &[&str]) -> std::process::Output {
    let ca = s.data_dir().join("server/tls/ca.crt");
    let cfg = s
        .data_dir()
        .join(format!("tok-{}.yaml", token.len() ^ args.len()));
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n",
            s.port,
            ca.display()
        ),
    )
    .expect("kubeconfig");
    std::process::Command::new("/usr/bin/kubectl")
        .env("KUBECONFIG", &cfg)
        .env("HOME", s.data_dir())
        .stdin(std::process::Stdio::null())
        .arg("--cache-dir")
        .arg(s.data_dir().join("tok-cache"))
        .args(args)
        .output()
        .expect("kubectl")
}

#[test]
fn a_created_token_authenticates_until_the_account_is_deleted() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    // Authorization is RBAC: the account reads what `view` grants.
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "app-view",
        "--clusterrole=view",
        "--serviceaccount=default:app",
    ]);
    let token = s.kubectl_ok(&["create", "token", "app", "--duration=1h"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let out = with_token(&s, token, &["get", "ns", "default", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, body) = s.curl(
        "/api/v1/namespaces",
        &["-H", &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(code, 200, "{body}");

    let other = s.kubectl_ok(&["create", "token", "app", "--audience=vault"]);
    let (code, _) = s.curl(
        "/api/v1/namespaces",
        &["-H", &format!("Authorization: Bearer {}", other.trim())],
    );
    assert_eq!(code, 401, "a token for another audience is refused");

    let err = s.kubectl_err(&["create", "token", "app", "--duration=1m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );

    s.kubectl_ok(&["delete", "serviceaccount", "app"]);
    let (code, _) = s.curl(
        "/api/v1/namespaces",
        &["-H", &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(code, 401, "the token dies with its account");
}

#[test]
fn a_pod_bound_token_dies_with_the_pod() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "serviceaccount", "app"]);
    // Authorization is RBAC: the account reads what `view` grants.
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "app-view",
        "--clusterrole=view",
        "--serviceaccount=default:app",
    ]);
    s.kubectl_ok(&[
        "run",
        "p",
        "--image=busybox",
        "--restart=Never",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"app"}}"#,
    ]);
    let token = s.kubectl_ok(&[
        "create",
        "token",
        "app",
        "--bound-object-kind=Pod",
        "--bound-object-name=p",
    ]);
    let auth = format!("Authorization: Bearer {}", token.trim());
    assert_eq!(s.curl("/api/v1/namespaces", &["-H", &auth]).0, 200);
    s.kubectl_ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    assert_eq!(s.curl("/api/v1/namespaces", &["-H", &auth]).0, 401);
}
