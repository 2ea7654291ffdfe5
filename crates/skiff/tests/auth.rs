//! Authentication: the admin client certificate works, a static bearer token names
//! its user, anonymous requests get 401 except health and version.

#[path = "support/server.rs"]
mod support;

use support::{Options, TestServer};

#[test]
fn anonymous_requests_are_refused_except_health_and_version() {
    let s = TestServer::start();
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = s.curl(path, &[]);
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = s.curl("/api/v1/namespaces", &[]);
    assert_eq!(code, 401, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("Status JSON");
    assert_eq!(status["reason"], "Unauthorized");
    let (code, _) = s.curl("/api/v1/namespaces", &["-H", "Authorization: Bearer wrong"]);
    assert_eq!(code, 401);
}

#[test]
fn a_static_token_user_can_use_kubectl() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cr3t-token,alice,1001,\"dev,ops\"\n").expect("write tokens");
    let s = TestServer::start_with(Options {
        args: vec!["--token-auth-file".into(), tokens.display().to_string()],
    });
    // Authorization is RBAC: alice reads what `view` grants.
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    let (code, body) = s.curl(
        "/api/v1/namespaces/default/configmaps",
        &["-H", "Authorization: Bearer s3cr3t-token"],
    );
    assert_eq!(code, 200, "{body}");
    // A kubeconfig with only the cluster CA and the user's token.
    let ca = s.data_dir().join("server/tls/ca.crt");
    let token_cfg = |name: &str, token: Option<&str>| -> std::path::PathBuf {
        let path = dir.path().join(name);
        let user = match token {
            Some(t) => format!("  user:\n    token: {t}\n"),
            None => "  user: {}\n".to_string(),
        };
        let cfg = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n{user}",
            s.port,
            ca.display()
        );
        std::fs::write(&path, cfg).expect("write kubeconfig");
        path
    };
    let run = |cfg: &std::path::Path, cache: &str| {
        std::process::Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", cfg)
            .env("HOME", dir.path())
            .stdin(std::process::Stdio::null())
            .arg("--cache-dir")
            .arg(dir.path().join(cache))
            .args(["get", "ns", "default", "-o", "name"])
            .output()
            .expect("kubectl")
    };
    let out = run(&token_cfg("alice.yaml", Some("s3cr3t-token")), "c1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default"
    );
    // A token the server does not know is refused (no credentials at all would make kubectl prompt).
    let out = run(&token_cfg("mallory.yaml", Some("not-a-known-token")), "c2");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unauthorized") || err.contains("You must be logged in"),
        "{err}"
    );
}

#[test]
fn kubeconfig_is_private_and_names_the_admin_in_system_masters() {
    let s = TestServer::start();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(s.kubeconfig())
        .expect("kubeconfig")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let cert =
        std::fs::read_to_string(s.data_dir().join("server/tls/admin.crt")).expect("admin cert");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(cert.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl");
    let subject = String::from_utf8_lossy(&out.stdout);
    assert!(
        subject.contains("O = system:masters") && subject.contains("CN = system:admin"),
        "{subject}"
    );
}
