//! Tests against a real etcd started for each test (Debian's `etcd-server`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;
use crate::conformance;

const ETCD: &str = "/usr/bin/etcd";

/// A single-member etcd on free loopback ports in a temporary directory; killed and
/// removed when dropped (also when the test fails).
struct EtcdServer {
    child: Child,
    dir: TempDir,
    endpoint: String,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EtcdServer {
    async fn start() -> EtcdServer {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd store tests run a real etcd. \
             Install it with `apt-get install etcd-server`."
        );
        let mut last_error = String::new();
        for attempt in 1..=3 {
            match Self::try_start().await {
                Ok(server) => return server,
                Err(error) => {
                    eprintln!("etcd start attempt {attempt} failed: {error}");
                    last_error = error;
                }
            }
        }
        panic!("could not start {ETCD}: {last_error}");
    }

    async fn try_start() -> Result<EtcdServer, String> {
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let (client, peer) = free_ports();
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(|error| error.to_string())?;
        let log_err = log.try_clone().map_err(|error| error.to_string())?;
        let mut command = Command::new(ETCD);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| format!("cannot run {ETCD}: {error}"))?;
        let mut server = EtcdServer {
            child,
            dir,
            endpoint,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("etcd exited with {status}: {}", server.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("etcd did not answer in 30s: {}", server.log()));
            }
            let config = EtcdConfig {
                endpoints: vec![server.endpoint.clone()],
                connect_timeout: Duration::from_secs(2),
                ..EtcdConfig::default()
            };
            if EtcdStore::connect(config).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    async fn store(&self, prefix: &str) -> EtcdStore {
        EtcdStore::connect(EtcdConfig {
            endpoints: vec![self.endpoint.clone()],
            prefix: prefix.to_string(),
            ..EtcdConfig::default()
        })
        .await
        .expect("connect to the test etcd")
    }
}

/// Two distinct free loopback ports (both held until both are chosen).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let (first, second) = (bind(), bind());
    let port = |listener: &TcpListener| listener.local_addr().expect("local addr").port();
    (port(&first), port(&second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_should_pass_the_conformance_suite() {
    let server = EtcdServer::start().await;
    let store = server.store("/skiff-test").await;
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stores_with_different_prefixes_should_not_see_each_other() {
    let server = EtcdServer::start().await;
    let one = server.store("/one").await;
    let two = server.store("/two").await;
    let mut watch_two = two.watch("/", 0).await.expect("watch");
    one.create("/k", Bytes::from("one"))
        .await
        .expect("create in one");
    assert_eq!(two.get("/k").await.expect("get"), None);
    let kv = two
        .create("/k", Bytes::from("two"))
        .await
        .expect("create in two");
    assert_eq!(kv.key, "/k");
    assert_eq!(one.count("/").await.expect("count"), 1);
    let listed = two
        .list(&ListOptions {
            prefix: "/".to_string(),
            ..ListOptions::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.items, vec![kv.clone()]);
    let event = conformance::next_event(&mut watch_two).await;
    assert_eq!(event.kv, kv);
    // One revision counter across both prefixes (it is etcd's).
    assert_eq!(
        one.current_revision().await.expect("revision"),
        two.current_revision().await.expect("revision")
    );
    let unprefixed = server.store("").await;
    let all = unprefixed
        .list(&ListOptions::default())
        .await
        .expect("list all");
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/one/k", "/two/k"]);
}

#[tokio::test]
async fn connecting_to_a_closed_port_should_fail_quickly() {
    let (port, _) = free_ports();
    let started = Instant::now();
    let result = EtcdStore::connect(EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::default()
    })
    .await;
    assert!(result.is_err(), "connected to nothing");
    assert!(started.elapsed() < Duration::from_secs(5));
}
