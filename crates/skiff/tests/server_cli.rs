//! `skiff server` as a program: --help explains the k3s-style flags, a second server
//! on the same data dir refuses clearly, SIGTERM exits cleanly, bad flags are one-line
//! errors.

#[path = "support/server.rs"]
mod support;

use std::process::Command;

use support::TestServer;

#[test]
fn help_lists_the_k3s_style_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--help"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--https-listen-port",
        "--bind-address",
        "--advertise-address",
        "--write-kubeconfig",
        "--write-kubeconfig-mode",
        "--cluster-cidr",
        "--service-cidr",
        "--service-node-port-range",
        "--cluster-domain",
        "--token",
        "--datastore-endpoint",
        "--disable-agent",
        "--disable",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses() {
    let s = TestServer::start();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--https-listen-port", "0", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another skiff server") && err.contains("already using data dir"),
        "{err}"
    );
    // The first one is unaffected.
    s.kubectl_ok(&["get", "ns", "default"]);
}

#[test]
fn sigterm_stops_the_server_cleanly_and_data_remains() {
    let mut s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "keep"]);
    assert_eq!(s.terminate(), Some(0));
    s.spawn_and_wait();
    s.kubectl_ok(&["get", "ns", "keep"]);
}

#[test]
fn bad_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    for (flag, value, expect) in [
        (
            "--service-node-port-range",
            "9-3",
            "--service-node-port-range",
        ),
        ("--disable", "nonsense", "unknown component"),
        ("--datastore-endpoint", "mysql://x", "only etcd endpoints"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--https-listen-port", "0", "--data-dir"])
            .arg(dir.path().join(flag.trim_start_matches('-')))
            .args([flag, value])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(expect),
            "{flag}: {err}"
        );
    }
}

#[test]
fn the_kubernetes_endpoints_follow_the_advertised_address_across_restarts() {
    let mut s = TestServer::start_with(support::Options {
        args: vec!["--advertise-address".into(), "127.0.0.7".into()],
    });
    let jsonpath = |res: &str, path: &str| {
        s.kubectl_ok(&[
            "get",
            res,
            "kubernetes",
            "-n",
            "default",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(
        jsonpath("endpoints", "{.subsets[0].addresses[0].ip}"),
        "127.0.0.7"
    );
    s.kill();
    s.extra = vec!["--advertise-address".into(), "127.0.0.8".into()];
    s.spawn_and_wait();
    let jsonpath = |res: &str, path: &str| {
        s.kubectl_ok(&[
            "get",
            res,
            "kubernetes",
            "-n",
            "default",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(
        jsonpath("endpoints", "{.subsets[0].addresses[0].ip}"),
        "127.0.0.8"
    );
    assert_eq!(
        jsonpath(
            "endpointslices.discovery.k8s.io",
            "{.endpoints[0].addresses[0]}"
        ),
        "127.0.0.8"
    );
}
