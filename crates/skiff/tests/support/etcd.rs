//! A real etcd (Debian's etcd-server) on free loopback ports in a temp dir, killed
//! and removed on drop. Fails loudly when etcd is not installed.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestEtcd {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub client_url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl TestEtcd {
    pub fn start() -> Self {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (the README's setup command does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-etcd-")
            .tempdir()
            .expect("temp dir");
        let (cp, pp) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{cp}");
        let peer_url = format!("http://127.0.0.1:{pp}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let child = Command::new("/usr/bin/etcd")
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("test={peer_url}"))
            .arg("--unsafe-no-fsync")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let e = TestEtcd {
            dir,
            child,
            client_url,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let ok = Command::new("curl")
                .args(["-s", "--max-time", "1"])
                .arg(format!("{}/health", e.client_url))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("true"))
                .unwrap_or(false);
            if ok {
                return e;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not become healthy: {}",
            std::fs::read_to_string(e.dir.path().join("etcd.log")).unwrap_or_default()
        );
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
