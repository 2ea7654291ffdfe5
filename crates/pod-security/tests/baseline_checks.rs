//! Every baseline check: pods that pass and pods that fail, with the exact
//! `reason (detail)` Kubernetes prints for each.

mod support;

use serde_json::json;
use support::{annotated_pod, default_pod, pod, violations};

/// (case, pod, level, expected violations).
fn table() -> Vec<(
    &'static str,
    serde_json::Value,
    &'static str,
    Vec<&'static str>,
)> {
    vec![
        (
            "the default pod passes baseline",
            default_pod(),
            "baseline:latest",
            vec![],
        ),
        (
            "privileged containers, init containers first",
            pod(json!({
                "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
                "containers": [
                    {"name": "c1", "securityContext": {"privileged": true}},
                    {"name": "c2", "securityContext": {"privileged": false}}
                ]
            })),
            "baseline:latest",
            vec![
                r#"privileged (containers "i", "c1" must not set securityContext.privileged=true)"#,
            ],
        ),
        (
            "a privileged ephemeral container",
            pod(json!({
                "containers": [{"name": "c"}],
                "ephemeralContainers": [{"name": "debug", "securityContext": {"privileged": true}}]
            })),
            "baseline:latest",
            vec![r#"privileged (container "debug" must not set securityContext.privileged=true)"#],
        ),
        (
            "host namespaces",
            pod(json!({
                "hostNetwork": true, "hostPID": false, "hostIPC": true,
                "containers": [{"name": "c"}]
            })),
            "baseline:latest",
            vec!["host namespaces (hostNetwork=true, hostIPC=true)"],
        ),
        (
            "one hostPath volume",
            pod(json!({
                "containers": [{"name": "c"}],
                "volumes": [{"name": "a", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]
            })),
            "baseline:latest",
            vec![r#"hostPath volumes (volume "a")"#],
        ),
        (
            "two hostPath volumes",
            pod(json!({
                "containers": [{"name": "c"}],
                "volumes": [
                    {"name": "a", "hostPath": {"path": "/"}},
                    {"name": "b", "hostPath": {"path": "/etc"}}
                ]
            })),
            "baseline:latest",
            vec![r#"hostPath volumes (volumes "a", "b")"#],
        ),
        (
            "one host port",
            pod(json!({"containers": [
                {"name": "c1", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                {"name": "c2", "ports": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81}]}
            ]})),
            "baseline:latest",
            vec![r#"hostPort (container "c1" uses hostPort 8080)"#],
        ),
        (
            "host ports listed as sorted strings",
            pod(json!({"containers": [
                {"name": "c1", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 9, "hostPort": 9}]},
                {"name": "c2", "ports": [{"containerPort": 10, "hostPort": 10}]}
            ]})),
            "baseline:latest",
            vec![r#"hostPort (containers "c1", "c2" use hostPorts 10, 8080, 9)"#],
        ),
        (
            "the runtime's default capabilities may be added",
            pod(
                json!({"containers": [{"name": "c", "securityContext": {"capabilities": {"add": [
                    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"
                ]}}}]}),
            ),
            "baseline:latest",
            vec![],
        ),
        (
            "non-default capabilities",
            pod(json!({"containers": [
                {"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CHOWN", "NET_ADMIN"]}}},
                {"name": "d", "securityContext": {"capabilities": {"add": ["NET_RAW"], "drop": ["ALL"]}}}
            ]})),
            "baseline:latest",
            vec![
                r#"non-default capabilities (containers "c", "d" must not include "NET_ADMIN", "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#,
            ],
        ),
        (
            "procMount Default is allowed, Unmasked is not",
            pod(json!({"containers": [
                {"name": "c", "securityContext": {"procMount": "Default"}},
                {"name": "d", "securityContext": {"procMount": "Unmasked"}}
            ]})),
            "baseline:latest",
            vec![
                r#"procMount (container "d" must not set securityContext.procMount to "Unmasked")"#,
            ],
        ),
        (
            "container SELinux types and the level field are allowed",
            pod(json!({
                "securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}},
                "containers": [
                    {"name": "c", "securityContext": {"seLinuxOptions": {"type": "container_init_t"}}},
                    {"name": "d", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}
                ]
            })),
            "baseline:latest",
            vec![],
        ),
        (
            "SELinux type, user and role",
            pod(json!({
                "securityContext": {"seLinuxOptions": {"type": "spc_t"}},
                "containers": [
                    {"name": "c", "securityContext": {"seLinuxOptions": {"user": "system_u", "role": "system_r"}}},
                    {"name": "d", "securityContext": {"seLinuxOptions": {"type": "unconfined_t"}}}
                ]
            })),
            "baseline:latest",
            vec![
                r#"seLinuxOptions (pod and containers "c", "d" set forbidden securityContext.seLinuxOptions: types "spc_t", "unconfined_t"; user may not be set; role may not be set)"#,
            ],
        ),
        (
            "container_engine_t is forbidden before v1.31",
            pod(json!({"containers": [
                {"name": "c", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}
            ]})),
            "baseline:v1.30",
            vec![
                r#"seLinuxOptions (container "c" set forbidden securityContext.seLinuxOptions: type "container_engine_t")"#,
            ],
        ),
        (
            "RuntimeDefault and Localhost seccomp profiles are allowed",
            pod(json!({
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}]
            })),
            "baseline:latest",
            vec![],
        ),
        (
            "Unconfined seccomp on the pod and a container",
            pod(json!({
                "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [
                    {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                    {"name": "d", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
                ]
            })),
            "baseline:latest",
            vec![
                r#"seccompProfile (pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#,
            ],
        ),
        (
            "seccomp annotations are checked up to v1.18",
            annotated_pod(
                json!({
                    "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                    "container.seccomp.security.alpha.kubernetes.io/c": "localhost/p.json",
                    "container.seccomp.security.alpha.kubernetes.io/d": "unconfined"
                }),
                json!({"containers": [{"name": "c"}, {"name": "d"}]}),
            ),
            "baseline:v1.18",
            vec![
                r#"seccompProfile (forbidden annotations container.seccomp.security.alpha.kubernetes.io/d="unconfined", seccomp.security.alpha.kubernetes.io/pod="unconfined")"#,
            ],
        ),
        (
            "seccomp annotations are ignored from v1.19",
            annotated_pod(
                json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
                json!({"containers": [{"name": "c"}]}),
            ),
            "baseline:v1.19",
            vec![],
        ),
        (
            "safe and unsafe sysctls",
            pod(json!({
                "securityContext": {"sysctls": [
                    {"name": "kernel.msgmax", "value": "1"},
                    {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                    {"name": "net.core.somaxconn", "value": "1024"}
                ]},
                "containers": [{"name": "c"}]
            })),
            "baseline:latest",
            vec!["forbidden sysctls (kernel.msgmax, net.core.somaxconn)"],
        ),
        (
            "tcp_rmem is safe from v1.32",
            pod(json!({
                "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]},
                "containers": [{"name": "c"}]
            })),
            "baseline:v1.31",
            vec!["forbidden sysctls (net.ipv4.tcp_rmem)"],
        ),
        (
            "tcp_rmem at v1.32",
            pod(json!({
                "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]},
                "containers": [{"name": "c"}]
            })),
            "baseline:v1.32",
            vec![],
        ),
        (
            "tcp_keepalive_time is safe from v1.29, ip_local_reserved_ports from v1.27",
            pod(json!({
                "securityContext": {"sysctls": [
                    {"name": "net.ipv4.tcp_keepalive_time", "value": "60"},
                    {"name": "net.ipv4.ip_local_reserved_ports", "value": "1000"}
                ]},
                "containers": [{"name": "c"}]
            })),
            "baseline:v1.26",
            vec![
                "forbidden sysctls (net.ipv4.tcp_keepalive_time, net.ipv4.ip_local_reserved_ports)",
            ],
        ),
        (
            "Windows HostProcess on the pod and a container",
            pod(json!({
                "securityContext": {"windowsOptions": {"hostProcess": true}},
                "containers": [
                    {"name": "c", "securityContext": {"windowsOptions": {"hostProcess": true}}},
                    {"name": "d", "securityContext": {"windowsOptions": {"hostProcess": false}}}
                ]
            })),
            "baseline:latest",
            vec![
                r#"hostProcess (pod and container "c" must not set securityContext.windowsOptions.hostProcess=true)"#,
            ],
        ),
        (
            "AppArmor RuntimeDefault, Localhost and allowed annotations",
            annotated_pod(
                json!({
                    "container.apparmor.security.beta.kubernetes.io/c": "localhost/prof",
                    "container.apparmor.security.beta.kubernetes.io/d": "runtime/default",
                    "container.apparmor.security.beta.kubernetes.io/e": ""
                }),
                json!({
                    "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "prof"}}}]
                }),
            ),
            "baseline:latest",
            vec![],
        ),
        (
            "an Unconfined AppArmor container",
            pod(json!({"containers": [
                {"name": "c", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}
            ]})),
            "baseline:latest",
            vec![
                r#"forbidden AppArmor profile (container "c" must not set AppArmor profile type to "Unconfined")"#,
            ],
        ),
        (
            "AppArmor on pod, container and annotation, in one list",
            annotated_pod(
                json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
                json!({
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "containers": [{"name": "c", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]
                }),
            ),
            "baseline:latest",
            vec![
                r#"forbidden AppArmor profiles (pod and container "c" and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/c="unconfined"")"#,
            ],
        ),
        (
            "probe and lifecycle hosts, containers and hosts sorted",
            pod(json!({
                "initContainers": [{"name": "i", "startupProbe": {"httpGet": {"port": 80, "host": ""}}}],
                "containers": [
                    {
                        "name": "web",
                        "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}},
                        "lifecycle": {"postStart": {"httpGet": {"port": 80, "host": "10.0.0.1"}}}
                    },
                    {
                        "name": "app",
                        "readinessProbe": {"tcpSocket": {"port": 80, "host": "example.com"}}
                    }
                ]
            })),
            "baseline:latest",
            vec![
                r#"probe or lifecycle host (containers "app", "web" use probe or lifecycle hosts "10.0.0.1", "example.com")"#,
            ],
        ),
        (
            "a preStop tcpSocket host",
            pod(json!({"containers": [{
                "name": "c",
                "lifecycle": {"preStop": {"tcpSocket": {"port": 80, "host": "169.254.169.254"}}}
            }]})),
            "baseline:latest",
            vec![
                r#"probe or lifecycle host (container "c" uses probe or lifecycle host "169.254.169.254")"#,
            ],
        ),
        (
            "probe hosts are not checked before v1.34",
            pod(json!({"containers": [{
                "name": "c", "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}
            }]})),
            "baseline:v1.33",
            vec![],
        ),
    ]
}

#[test]
fn each_baseline_check_reports_what_kubernetes_reports() {
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
fn baseline_violations_are_listed_in_check_id_order() {
    let pod = annotated_pod(
        json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
        json!({
            "hostPID": true,
            "securityContext": {"sysctls": [{"name": "kernel.sem", "value": "1"}]},
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{
                "name": "c",
                "ports": [{"containerPort": 1, "hostPort": 1}],
                "securityContext": {
                    "privileged": true,
                    "procMount": "Unmasked",
                    "capabilities": {"add": ["SYS_ADMIN"]},
                    "seLinuxOptions": {"user": "u"},
                    "seccompProfile": {"type": "Unconfined"},
                    "windowsOptions": {"hostProcess": true}
                },
                "livenessProbe": {"tcpSocket": {"port": 1, "host": "h"}}
            }]
        }),
    );
    let reasons: Vec<String> = violations("baseline:latest", &pod)
        .iter()
        .map(|v| v.split(" (").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "forbidden AppArmor profile",
            "non-default capabilities",
            "host namespaces",
            "hostPath volumes",
            "hostPort",
            "probe or lifecycle host",
            "privileged",
            "procMount",
            "seLinuxOptions",
            "seccompProfile",
            "forbidden sysctls",
            "hostProcess",
        ]
    );
}

#[test]
fn a_privileged_level_allows_anything() {
    let pod = pod(json!({
        "hostNetwork": true,
        "containers": [{"name": "c", "securityContext": {"privileged": true}}]
    }));
    assert!(violations("privileged:latest", &pod).is_empty());
    assert!(violations("privileged:v1.0", &pod).is_empty());
}
