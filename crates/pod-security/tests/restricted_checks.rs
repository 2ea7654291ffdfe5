//! Every restricted check: pods that pass and pods that fail, with the exact
//! `reason (detail)` Kubernetes prints, and how restricted replaces some baseline
//! checks with stricter ones.

mod support;

use serde_json::{Value, json};
use support::{default_pod, pod, restricted_container, restricted_pod, set, violations};

/// (case, pod, level, expected violations).
fn table() -> Vec<(&'static str, Value, &'static str, Vec<&'static str>)> {
    vec![
        (
            "the restricted pod passes",
            restricted_pod(),
            "restricted:latest",
            vec![],
        ),
        (
            "the default pod fails four restricted checks",
            default_pod(),
            "restricted:latest",
            vec![
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])"#,
                r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
            ],
        ),
        (
            "container-level runAsNonRoot and seccomp replace the pod-level ones",
            pod(json!({"containers": [set(
                set(restricted_container("c"), "/securityContext/runAsNonRoot", json!(true)),
                "/securityContext/seccompProfile",
                json!({"type": "Localhost", "localhostProfile": "p.json"}),
            )]})),
            "restricted:latest",
            vec![],
        ),
        (
            "allowPrivilegeEscalation unset on an init container, true on an ephemeral one",
            set(
                set(
                    restricted_pod(),
                    "/spec/initContainers",
                    json!([{"name": "init", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]),
                ),
                "/spec/ephemeralContainers",
                json!([{"name": "debug", "securityContext": {
                    "allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}
                }}]),
            ),
            "restricted:latest",
            vec![
                r#"allowPrivilegeEscalation != false (containers "init", "debug" must set securityContext.allowPrivilegeEscalation=false)"#,
            ],
        ),
        (
            "NET_BIND_SERVICE may be added",
            set(
                restricted_pod(),
                "/spec/containers/0/securityContext/capabilities/add",
                json!(["NET_BIND_SERVICE"]),
            ),
            "restricted:latest",
            vec![],
        ),
        (
            "capabilities must drop ALL and add nothing else",
            set(
                restricted_pod(),
                "/spec/containers/0/securityContext/capabilities",
                json!({"add": ["CHOWN", "SYS_ADMIN", "NET_BIND_SERVICE"], "drop": ["NET_RAW"]}),
            ),
            "restricted:latest",
            vec![
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]; container "c" must not include "CHOWN", "SYS_ADMIN" in securityContext.capabilities.add)"#,
            ],
        ),
        (
            "before v1.22 restricted uses the baseline capabilities check",
            set(
                restricted_pod(),
                "/spec/containers/0/securityContext/capabilities",
                json!({"add": ["CHOWN", "SYS_ADMIN"]}),
            ),
            "restricted:v1.21",
            vec![
                r#"non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#,
            ],
        ),
        (
            "runAsNonRoot=false on the pod",
            set(
                restricted_pod(),
                "/spec/securityContext/runAsNonRoot",
                json!(false),
            ),
            "restricted:latest",
            vec![r#"runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"#],
        ),
        (
            "runAsNonRoot=false on a container overrides the pod's true",
            set(
                restricted_pod(),
                "/spec/containers/0/securityContext/runAsNonRoot",
                json!(false),
            ),
            "restricted:latest",
            vec![
                r#"runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false)"#,
            ],
        ),
        (
            "runAsNonRoot unset on the pod and one of two containers",
            pod(json!({
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    set(restricted_container("a"), "/securityContext/runAsNonRoot", json!(true)),
                    restricted_container("b")
                ]
            })),
            "restricted:latest",
            vec![
                r#"runAsNonRoot != true (pod or container "b" must set securityContext.runAsNonRoot=true)"#,
            ],
        ),
        (
            "runAsUser=0 on the pod and a container",
            set(
                set(
                    restricted_pod(),
                    "/spec/securityContext/runAsUser",
                    json!(0),
                ),
                "/spec/containers/0/securityContext/runAsUser",
                json!(0),
            ),
            "restricted:latest",
            vec![r#"runAsUser=0 (pod and container "c" must not set runAsUser=0)"#],
        ),
        (
            "runAsUser is not checked before v1.23",
            set(
                restricted_pod(),
                "/spec/securityContext/runAsUser",
                json!(0),
            ),
            "restricted:v1.22",
            vec![],
        ),
        (
            "non-root users are fine",
            set(
                restricted_pod(),
                "/spec/securityContext/runAsUser",
                json!(1000),
            ),
            "restricted:latest",
            vec![],
        ),
        (
            "restricted volume types replace the hostPath check",
            set(
                restricted_pod(),
                "/spec/volumes",
                json!([
                    {"name": "a", "hostPath": {"path": "/"}},
                    {"name": "b", "nfs": {"server": "s", "path": "/"}},
                    {"name": "ok", "emptyDir": {}},
                    {"name": "d", "gitRepo": {"repository": "r"}},
                    {"name": "e"}
                ]),
            ),
            "restricted:latest",
            vec![
                r#"restricted volume types (volumes "a", "b", "d", "e" use restricted volume types "gitRepo", "hostPath", "nfs", "unknown")"#,
            ],
        ),
        (
            "one restricted volume",
            set(
                restricted_pod(),
                "/spec/volumes",
                json!([{"name": "a", "hostPath": {"path": "/"}}]),
            ),
            "restricted:latest",
            vec![r#"restricted volume types (volume "a" uses restricted volume type "hostPath")"#],
        ),
        (
            "every allowed volume type",
            set(
                restricted_pod(),
                "/spec/volumes",
                json!([
                    {"name": "a", "configMap": {"name": "x"}},
                    {"name": "b", "csi": {"driver": "d"}},
                    {"name": "c", "downwardAPI": {}},
                    {"name": "d", "emptyDir": {}},
                    {"name": "e", "ephemeral": {}},
                    {"name": "f", "image": {"reference": "busybox"}},
                    {"name": "g", "persistentVolumeClaim": {"claimName": "x"}},
                    {"name": "h", "projected": {"sources": []}},
                    {"name": "i", "secret": {"secretName": "x"}}
                ]),
            ),
            "restricted:latest",
            vec![],
        ),
        (
            "an Unconfined container under a RuntimeDefault pod",
            set(
                restricted_pod(),
                "/spec/containers/0/securityContext/seccompProfile",
                json!({"type": "Unconfined"}),
            ),
            "restricted:latest",
            vec![
                r#"seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#,
            ],
        ),
        (
            "an Unconfined pod is reported once, not also by the baseline check",
            set(
                set(
                    restricted_pod(),
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                ),
                "/spec/containers/0/securityContext/seccompProfile",
                json!({"type": "RuntimeDefault"}),
            ),
            "restricted:latest",
            vec![
                r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
            ],
        ),
        (
            "Windows pods are exempt from the Linux-only fields from v1.25",
            pod(json!({
                "os": {"name": "windows"},
                "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c"}]
            })),
            "restricted:latest",
            vec![],
        ),
        (
            "Windows pods at v1.24",
            pod(json!({
                "os": {"name": "windows"},
                "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c"}]
            })),
            "restricted:v1.24",
            vec![
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])"#,
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
            ],
        ),
        (
            "restricted includes the baseline checks, listed first",
            set(
                restricted_pod(),
                "/spec/containers/0/securityContext/privileged",
                json!(true),
            ),
            "restricted:latest",
            vec![r#"privileged (container "c" must not set securityContext.privileged=true)"#],
        ),
        (
            "v1.0 restricted knows neither allowPrivilegeEscalation nor seccomp fields",
            pod(json!({
                "securityContext": {"runAsNonRoot": true, "runAsUser": 0,
                    "seccompProfile": {"type": "Unconfined"}},
                "containers": [{"name": "c"}]
            })),
            "restricted:v1.0",
            vec![],
        ),
    ]
}

#[test]
fn each_restricted_check_reports_what_kubernetes_reports() {
    let mut failures = Vec::new();
    for (case, pod, level, want) in table() {
        let got = violations(level, &pod);
        if got != want {
            failures.push(format!(
                "{case} at {level}:\n  want {want:?}\n  got  {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn user_namespace_pods_may_run_as_uid_0_from_v1_35() {
    let userns = pod(json!({
        "hostUsers": false,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "runAsUser": 0},
        "containers": [set(
            restricted_container("c"),
            "/securityContext/procMount",
            json!("Unmasked"),
        )]
    }));
    // Baseline relaxes procMount in a user namespace; restricted still forbids it.
    assert!(violations("baseline:latest", &userns).is_empty());
    assert_eq!(
        violations("restricted:latest", &userns),
        [r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#]
    );
    // At v1.34 there is no relaxation at all.
    assert_eq!(
        violations("restricted:v1.34", &userns),
        [
            r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
            r#"runAsUser=0 (pod must not set runAsUser=0)"#,
        ]
    );
    // Pods that share the host's user namespace get no relaxation.
    let host_users = set(userns, "/spec/hostUsers", json!(true));
    assert_eq!(violations("restricted:latest", &host_users).len(), 3);
}

#[test]
fn the_brief_example_lists_baseline_then_restricted_reasons() {
    let pod = pod(json!({"containers": [
        {"name": "c", "image": "busybox", "securityContext": {"privileged": true}}
    ]}));
    assert_eq!(
        violations("restricted:latest", &pod).join(", "),
        r#"privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
}
