//! Test harness: a real `skiff server` process in its own temp data dir on a free
//! port, `kubectl` pointed at it with its own discovery cache, and a kube-rs client.
//! Everything is stopped and removed on drop, also when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `skiff server`.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub port: u16,
    pub extra: Vec<String>,
}

/// Extra flags for a server start.
#[derive(Default, Clone)]
pub struct Options {
    pub args: Vec<String>,
}

fn skiff_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl TestServer {
    /// Starts a server with default flags and waits for /readyz.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server with extra flags and waits for /readyz.
    pub fn start_with(opts: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("skiff-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut s = TestServer {
            dir,
            child: None,
            port: 0,
            extra: opts.args,
        };
        s.spawn_and_wait();
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Starts the process (again) on the same data dir and waits until ready.
    pub fn spawn_and_wait(&mut self) {
        // A port is picked per start; retry on the rare bind race.
        for attempt in 0..5 {
            let port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("server.log"))
                .expect("log file");
            let child = Command::new(skiff_bin())
                .arg("server")
                .arg("--data-dir")
                .arg(self.dir.path())
                .arg("--https-listen-port")
                .arg(port.to_string())
                .args(["--bind-address", "127.0.0.1"])
                .arg("--disable-agent")
                // No agent, so no pod could use the cluster DNS.
                .args(["--disable", "dns"])
                .args(&self.extra)
                .env("SKIFF_LOG", "info,apiserver=debug")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start skiff server");
            self.child = Some(child);
            self.port = port;
            if self.wait_ready(Duration::from_secs(20)) {
                return;
            }
            self.kill();
            eprintln!(
                "server start attempt {attempt} failed; log:\n{}",
                self.log()
            );
        }
        panic!("skiff server did not become ready; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                return false;
            }
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "1",
                ])
                .arg(format!("https://127.0.0.1:{}/readyz", self.port))
                .output();
            if let Ok(o) = out
                && o.stdout == b"200"
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL, no cleanup by the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Runs kubectl against this server with its own cache dir.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut cmd = Command::new("/usr/bin/kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Applies YAML from stdin.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client for this server (admin certificate).
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("read kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config");
        kube::Client::try_from(cfg).expect("kube client")
    }

    /// A kubeconfig named `file` in the data dir for `user` in `groups`, with a client
    /// certificate signed by the server's CA as an administrator would make one; the
    /// certificate and key are also written beside it (`<file>.crt`, `<file>.key`).
    pub fn signed_kubeconfig(&self, file: &str, user: &str, groups: &[&str]) -> PathBuf {
        let tls = self.data_dir().join("server/tls");
        let read = |f: &str| std::fs::read_to_string(tls.join(f)).expect("the cluster CA");
        let (ca_cert, ca_key) = (read("ca.crt"), read("ca.key"));
        let (cert, key) = apiserver::sign_client_cert(&ca_cert, &ca_key, user, groups)
            .expect("a client certificate");
        let path = self.data_dir().join(file);
        std::fs::write(path.with_extension("crt"), &cert).expect("write the certificate");
        std::fs::write(path.with_extension("key"), &key).expect("write the key");
        apiserver::write_kubeconfig(
            &path,
            &format!("https://127.0.0.1:{}", self.port),
            &ca_cert,
            &cert,
            &key,
            0o600,
        )
        .expect("write the kubeconfig");
        path
    }

    /// kubectl as `kubeconfig`, with a discovery cache of its own and no stdin.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.data_dir())
            .arg("--cache-dir")
            .arg(kubeconfig.with_extension("cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// `curl` against the server with extra args; returns (status code, body).
    pub fn curl(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// `curl` with the admin client certificate.
    pub fn curl_admin(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let tls = self.dir.path().join("server/tls");
        let cert = tls.join("admin.crt");
        let key = tls.join("admin.key");
        let mut args: Vec<&str> = vec![
            "--cert",
            cert.to_str().expect("utf8"),
            "--key",
            key.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        self.curl(path, &args)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
