//! `skiff agent --server --token` joins a cluster without the CA key: a wrong token is
//! refused with a one-line message saying what to do, a bare secret and a token for
//! another CA are refused before any secret is sent, the right token joins and the
//! node becomes Ready with a certificate `system:node:<name>` signed by the cluster CA,
//! and a restarted agent reuses its credentials. Needs root, containerd, runc, CNI.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/joined_agent.rs"]
mod joined_agent;
#[path = "support/server.rs"]
mod server;

use std::process::Command;
use std::time::Duration;

use joined_agent::{JoinedAgent, eventually, node_ready};
use server::{Options, TestServer};

/// The one line the agent ends with on stderr (logs come before it).
fn error_line(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line in:\n{stderr}");
    errors[0].to_owned()
}

fn subject(pem_path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-issuer", "-in"])
        .arg(pem_path)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_joins_with_the_token_and_a_wrong_token_is_refused() {
    agent::require_preconditions();
    let (k, _claim) = agent::claim_test_networks();
    let cluster_cidr = format!("10.{}.0.0/16", 100 + u16::from(k));
    let service_cidr = format!("10.{}.0.0/16", 160 + u16::from(k));
    let server = TestServer::start_with(Options {
        args: vec![
            "--cluster-cidr".into(),
            cluster_cidr.clone(),
            "--service-cidr".into(),
            service_cidr.clone(),
        ],
    });
    let url = format!("https://127.0.0.1:{}", server.port);
    let token = std::fs::read_to_string(server.data_dir().join("token"))
        .expect("the server wrote its token")
        .trim()
        .to_owned();
    let (pinned, secret) = token
        .split_once("::server:")
        .expect("K10<hash>::server:<secret>");
    assert!(pinned.starts_with("K10") && pinned.len() == 67, "{token}");
    assert!(
        server.log().contains(&format!("--token {token}")),
        "the server prints the token"
    );

    let id = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
    let node = format!("skiff-join-{id}");
    let flags = |token: &str| -> Vec<String> {
        [
            "--server",
            &url,
            "--token",
            token,
            "--node-name",
            &node,
            "--node-ip",
            "127.0.0.1",
            "--cluster-cidr",
            &cluster_cidr,
            "--service-cidr",
            &service_cidr,
            "--cni-bridge",
            &format!("skj{id}"),
            "--no-egress-masquerade",
            "--node-api-port",
            "0",
            "--node-status-interval",
            "2s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let mut agent = JoinedAgent::new(None, &flags(&token));

    // A wrong secret: 401 from the server, and the agent says what to do.
    let out = agent.run_to_exit(
        &flags(&format!("{pinned}::server:wrong")),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains("(401)")
            && line.contains("use the token from <data-dir>/token on the server"),
        "{line}"
    );
    // A bare secret cannot verify the server: refused before anything is sent.
    let out = agent.run_to_exit(&flags(secret), Duration::from_secs(30));
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains("bare secret") && line.contains("K10"),
        "{line}"
    );
    // A token naming another CA: the server is not the one the token is for.
    let other = format!("K10{}::server:{secret}", "0".repeat(64));
    let out = agent.run_to_exit(&flags(&other), Duration::from_secs(30));
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.contains("is not the one the join token names"),
        "{line}"
    );
    assert!(
        !agent.dir.join("agent").join("kubeconfig.yaml").exists(),
        "refused agents write no credentials"
    );

    // The right token: the node registers and becomes Ready.
    agent.start();
    let client = server.client().await;
    eventually(
        Duration::from_secs(90),
        "the joined node to be Ready",
        || async {
            assert!(agent.running(), "the agent exited:\n{}", agent.log());
            node_ready(&client, &node).await.then_some(())
        },
    )
    .await;
    let agent_dir = agent.dir.join("agent");
    let client_cert = agent_dir.join("client.crt");
    let kubeconfig: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(agent_dir.join("kubeconfig.yaml")).expect("kubeconfig"),
    )
    .expect("yaml");
    let cert_b64 = kubeconfig["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .expect("client certificate");
    use base64::Engine as _;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(cert_b64)
        .expect("base64");
    std::fs::write(&client_cert, cert).expect("write the certificate");
    let names = subject(&client_cert);
    assert!(
        names.contains(&format!("CN = system:node:{node}")) && names.contains("O = system:nodes"),
        "{names}"
    );
    assert!(names.contains("issuer=CN = skiff-server-ca"), "{names}");
    let serving = subject(&agent_dir.join("serving.crt"));
    assert!(serving.contains("issuer=CN = skiff-server-ca"), "{serving}");
    let ca_key =
        std::fs::read_to_string(server.data_dir().join("server/tls/ca.key")).expect("CA key");
    for entry in std::fs::read_dir(&agent_dir).expect("agent dir").flatten() {
        if entry.path().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(
                !text.contains(ca_key.trim()),
                "{} holds the CA key",
                entry.path().display()
            );
        }
    }
    // The node API's certificate is what the API server trusts: logs through it work
    // once a pod runs; here its identity is enough, exec is in agent_multinode.

    // Another machine (another data dir, so another node password) cannot join under
    // the same node name; nor when the password's Secret is gone but the Node is not.
    let other = JoinedAgent::new(None, &flags(&token));
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), "kube-system");
    let password_secret = format!("{node}.node-password.skiff");
    assert!(
        secrets
            .get_opt(&password_secret)
            .await
            .expect("get")
            .is_some(),
        "the first join recorded the node password"
    );
    for round in ["password differs", "secret deleted, node exists"] {
        if round == "secret deleted, node exists" {
            secrets
                .delete(&password_secret, &Default::default())
                .await
                .expect("delete the secret");
        }
        let out = other.run_to_exit(&flags(&token), Duration::from_secs(30));
        assert!(!out.status.success(), "{round}");
        let line = error_line(&out);
        assert!(
            line.contains("(403)")
                && line.contains("node password rejected")
                && line.contains(&format!("kubectl delete node {node}")),
            "{round}: {line}"
        );
        assert!(!other.dir.join("agent").join("kubeconfig.yaml").exists());
    }

    // A restart reuses the credentials.
    let before = std::fs::read(agent_dir.join("kubeconfig.yaml")).expect("kubeconfig");
    let serving_before = std::fs::read(agent_dir.join("serving.crt")).expect("serving");
    assert_eq!(
        agent.terminate(),
        Some(0),
        "the agent stops cleanly:\n{}",
        agent.log()
    );
    agent.start();
    eventually(
        Duration::from_secs(60),
        "the restarted agent to reuse its credentials",
        || async {
            agent
                .log()
                .contains("reusing this node's credentials from an earlier join")
                .then_some(())
        },
    )
    .await;
    let lease_before = lease_renew_time(&client, &node).await;
    eventually(
        Duration::from_secs(30),
        "the restarted agent to renew the lease",
        || async {
            assert!(agent.running(), "the agent exited:\n{}", agent.log());
            (lease_renew_time(&client, &node).await != lease_before
                && node_ready(&client, &node).await)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        std::fs::read(agent_dir.join("kubeconfig.yaml")).expect("kubeconfig"),
        before
    );
    assert_eq!(
        std::fs::read(agent_dir.join("serving.crt")).expect("serving"),
        serving_before
    );
    assert_eq!(
        agent.log().matches("joined: certificates issued").count(),
        1,
        "one join, then reuse"
    );
}

async fn lease_renew_time(client: &kube::Client, node: &str) -> Option<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get_opt(node).await.ok()??;
    lease.spec?.renew_time.map(|t| t.0.to_string())
}
