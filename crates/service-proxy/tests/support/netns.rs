//! Network namespaces of the test's own, veth links between them, TCP servers and
//! clients inside them. Everything is removed on drop, also when a test fails.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sched::{CloneFlags, setns};

/// A number unique to this test run (process and moment).
pub fn unique() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::process::id().wrapping_mul(2_654_435_761) ^ nanos
}

/// Runs a command and panics with its stderr unless it succeeds.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails loudly when the test cannot do its job here.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests program iptables in network namespaces and must run as root"
    );
}

/// A named network namespace, deleted on drop (which removes its links and rules).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        sh("/usr/sbin/ip", &["netns", "add", name]);
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        sh("/usr/sbin/ip", &all)
    }

    /// `ip netns exec NAME program args...`.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        sh("/usr/sbin/ip", &all)
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns")
    }

    /// Connects to `addr` from inside the namespace and reads the reply (up to EOF).
    pub fn fetch(&self, addr: SocketAddrV4) -> std::io::Result<String> {
        self.enter(move || {
            let mut stream =
                TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(3))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply)
        })
    }

    /// How connecting to `addr` ends and how long it takes.
    pub fn try_connect(&self, addr: SocketAddrV4) -> (std::io::Result<()>, Duration) {
        self.enter(move || {
            let started = Instant::now();
            let result = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(3))
                .map(|_| ());
            (result, started.elapsed())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP server inside a namespace that answers every connection with `reply` and
/// closes it; stopped and joined on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Netns, addr: SocketAddrV4, reply: &str) -> Self {
        let path = format!("/run/netns/{}", ns.name);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reply = reply.to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = TcpListener::bind(addr).expect("bind in netns");
            listener.set_nonblocking(true).expect("nonblocking");
            let _ = ready_tx.send(());
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(reply.as_bytes());
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server listening");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
