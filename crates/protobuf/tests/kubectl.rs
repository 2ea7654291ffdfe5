//! The objects `kubectl create …` sends, compared with the JSON Kubernetes
//! prints for them (`kubectl create … --dry-run=client -o json`), field order
//! included.

mod common;

use common::{body, decode, go_meta, map};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

fn quantity(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

#[test]
fn configmap_with_data_binary_data_and_labels() {
    let cm = core::ConfigMap {
        metadata: Some(go_meta("cfg", &[("app", "web")])),
        data: map(&[("k", "v"), ("a", "b")]),
        binary_data: [("bin".to_owned(), vec![0u8, 1, 2, 255])].into(),
        immutable: None,
    };
    let want = json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "cfg", "creationTimestamp": null, "labels": {"app": "web"}},
        "data": {"a": "b", "k": "v"},
        "binaryData": {"bin": "AAEC/w=="}
    });
    assert_eq!(decode(&body("v1", "ConfigMap", &cm)), want.to_string());
}

#[test]
fn configmap_matches_k8s_openapi() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("cfg".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        }),
        data: map(&[("k", "v")]),
        immutable: Some(false),
        ..Default::default()
    };
    let decoded = protobuf_codec::decode_to_json(&body("v1", "ConfigMap", &cm)).unwrap();
    let typed: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(decoded.clone()).unwrap();
    let expected = k8s_openapi::api::core::v1::ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("cfg".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        data: Some([("k".to_owned(), "v".to_owned())].into()),
        immutable: Some(false),
        ..Default::default()
    };
    assert_eq!(typed, expected);
    // k8s-openapi omits the null creationTimestamp Go prints; otherwise equal.
    let mut ours = decoded;
    ours["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    let mut theirs = serde_json::to_value(&expected).unwrap();
    theirs.as_object_mut().unwrap().remove("kind");
    theirs.as_object_mut().unwrap().remove("apiVersion");
    ours.as_object_mut().unwrap().remove("kind");
    ours.as_object_mut().unwrap().remove("apiVersion");
    assert_eq!(ours, theirs);
}

fn nginx_container() -> core::Container {
    core::Container {
        name: Some("nginx".into()),
        image: Some("nginx".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            protocol: Some("TCP".into()),
            host_port: Some(0),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [
                ("cpu".to_owned(), quantity("500m")),
                ("memory".to_owned(), quantity("128Mi")),
            ]
            .into(),
            ..Default::default()
        }),
        env: vec![core::EnvVar {
            name: Some("POD_IP".into()),
            value: Some(String::new()),
            value_from: Some(core::EnvVarSource {
                field_ref: Some(core::ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: Some("status.podIP".into()),
                }),
                ..Default::default()
            }),
        }],
        stdin: Some(false),
        ..Default::default()
    }
}

#[test]
fn deployment_like_kubectl_create_deployment() {
    let labels = [("app", "web")];
    let d = apps::Deployment {
        metadata: Some(go_meta("web", &labels)),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector {
                match_labels: map(&labels),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("", &labels)),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("nginx".into()),
                        image: Some("nginx".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    // Exactly what `kubectl create deployment web --image=nginx -o json` prints.
    let want = r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx","resources":{}}]}},"strategy":{}},"status":{}}"#;
    assert_eq!(decode(&body("apps/v1", "Deployment", &d)), want);
}

#[test]
fn deployment_with_ports_resources_env_and_zero_replicas() {
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            template: Some(core::PodTemplateSpec {
                spec: Some(core::PodSpec {
                    containers: vec![nginx_container()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = protobuf_codec::decode_to_json(&body("apps/v1", "Deployment", &d)).unwrap();
    let want = json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": null},
        "spec": {
            // a pointer: zero is printed
            "replicas": 0,
            // a pointer without omitempty: nil is null
            "selector": null,
            "template": {
                "metadata": {"creationTimestamp": null},
                "spec": {"containers": [{
                    "name": "nginx",
                    "image": "nginx",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}
                }]}
            },
            "strategy": {}
        },
        "status": {}
    });
    assert_eq!(got, want);
    assert_eq!(got.to_string(), want.to_string(), "field order");
}

#[test]
fn nodeport_service_with_int_and_named_target_ports() {
    let svc = core::Service {
        metadata: Some(go_meta("web", &[("app", "web")])),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: Some("80-8080".into()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: Some(String::new()),
                    }),
                    node_port: Some(30080),
                    ..Default::default()
                },
                core::ServicePort {
                    name: Some("https".into()),
                    port: Some(443),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("https".into()),
                    }),
                    node_port: Some(0),
                    ..Default::default()
                },
            ],
            selector: map(&[("app", "web")]),
            cluster_ip: Some("10.43.0.20".into()),
            r#type: Some("NodePort".into()),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(Default::default()),
            ..Default::default()
        }),
    };
    let want = r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},"spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080,"nodePort":30080},{"name":"https","port":443,"targetPort":"https"}],"selector":{"app":"web"},"clusterIP":"10.43.0.20","type":"NodePort"},"status":{"loadBalancer":{}}}"#;
    assert_eq!(decode(&body("v1", "Service", &svc)), want);
}

#[test]
fn secret_data_is_base64() {
    let s = core::Secret {
        metadata: Some(go_meta("creds", &[])),
        data: [
            ("password".to_owned(), b"s3cr3t!".to_vec()),
            ("empty".to_owned(), Vec::new()),
        ]
        .into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let want = r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"creds","creationTimestamp":null},"data":{"empty":"","password":"czNjcjN0IQ=="},"type":"Opaque"}"#;
    assert_eq!(decode(&body("v1", "Secret", &s)), want);
}

#[test]
fn namespace_like_kubectl_create_namespace() {
    let ns = core::Namespace {
        metadata: Some(go_meta("team-a", &[])),
        spec: Some(Default::default()),
        status: Some(core::NamespaceStatus {
            phase: Some(String::new()),
            ..Default::default()
        }),
    };
    let want = r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"team-a","creationTimestamp":null},"spec":{},"status":{}}"#;
    assert_eq!(decode(&body("v1", "Namespace", &ns)), want);
}

#[test]
fn pod_with_creation_timestamp_volumes_and_probe() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_704_164_645),
                nanos: Some(123),
            }),
            deletion_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: Some("cfg".into()),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("cm".into()),
                        }),
                        default_mode: Some(420),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: Some("c".into()),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: Some("/healthz".into()),
                            port: Some(IntOrString {
                                r#type: Some(1),
                                str_val: Some("http".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            host_network: Some(false),
            security_context: Some(core::PodSecurityContext {
                supplemental_groups: vec![1, 2],
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = protobuf_codec::decode_to_json(&body("v1", "Pod", &pod)).unwrap();
    let want = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "p", "creationTimestamp": "2024-01-02T03:04:05Z", "deletionGracePeriodSeconds": 0},
        "spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420}}],
            "containers": [{
                "name": "c",
                "resources": {},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
            }],
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"supplementalGroups": [1, 2]}
        },
        "status": {}
    });
    assert_eq!(got, want);
    assert_eq!(got.to_string(), want.to_string(), "field order");
}

#[test]
fn job_like_kubectl_create_job() {
    let job = batch::Job {
        metadata: Some(go_meta("once", &[])),
        spec: Some(batch::JobSpec {
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("", &[])),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("once".into()),
                        image: Some("busybox".into()),
                        command: vec!["date".into()],
                        ..Default::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    let want = r#"{"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"once","creationTimestamp":null},"spec":{"template":{"metadata":{"creationTimestamp":null},"spec":{"containers":[{"name":"once","image":"busybox","command":["date"],"resources":{}}],"restartPolicy":"Never"}}},"status":{}}"#;
    assert_eq!(decode(&body("batch/v1", "Job", &job)), want);
}
