//! Crate boundaries (the spirit of Kubernetes' import restrictions): data flows
//! store → apiserver → clients, `api` and `store` stay free of the server, and
//! nothing depends on the binary.

use std::collections::{BTreeMap, BTreeSet};

fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version=1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let deps = p["dependencies"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter(|d| d["kind"].is_null())
                        .filter_map(|d| d["name"].as_str())
                        .filter(|n| members.contains(*n))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            (name, deps)
        })
        .collect()
}

#[test]
fn crates_only_depend_on_what_their_layer_allows() {
    let deps = workspace_deps();
    let allowed: &[(&str, &[&str])] = &[
        ("api", &[]),
        ("store", &[]),
        ("protobuf-codec", &["api"]),
        // Policy libraries the API server applies: pure functions over objects.
        ("pod-security", &[]),
        ("managed-fields", &["api"]),
        (
            "apiserver",
            &[
                "api",
                "store",
                "protobuf-codec",
                "pod-security",
                "managed-fields",
            ],
        ),
        ("leader-election", &[]),
        // Watch clients talk to the API through `kube`: never to the store or the server.
        ("events", &[]),
        ("scheduler", &["api", "events", "leader-election"]),
        ("controllers", &["api", "events", "leader-election"]),
        // The container runtime client knows nothing of the API or the cluster.
        ("cri", &[]),
        // The node agent is an API client too, and drives containers only through CRI.
        ("kubelet", &["api", "cri", "events", "spdy"]),
        // The service proxy and cluster DNS are API clients that never run containers.
        ("service-proxy", &[]),
        ("cluster-dns", &[]),
        // SPDY framing knows nothing of Kubernetes.
        ("spdy", &[]),
        (
            "skiff",
            &[
                "api",
                "store",
                "apiserver",
                "protobuf-codec",
                "scheduler",
                "controllers",
                "cri",
                "kubelet",
                "service-proxy",
                "cluster-dns",
            ],
        ),
    ];
    for (krate, uses) in &deps {
        let ok: BTreeSet<String> = allowed
            .iter()
            .find(|(k, _)| k == krate)
            .map(|(_, a)| a.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| panic!("crate {krate} has no entry in the boundary table; add one"));
        let bad: Vec<&String> = uses.iter().filter(|u| !ok.contains(*u)).collect();
        assert!(bad.is_empty(), "{krate} must not depend on {bad:?}");
    }
}
