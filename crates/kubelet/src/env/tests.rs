//! Environment logic against in-memory objects: order, expansion, service links,
//! downward API and the kubelet's errors.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::services::{linked_services, service_env};
use super::*;

#[derive(Default)]
struct Fake {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    services: Vec<Service>,
    allocatable: Allocatable,
}

impl Objects for Fake {
    async fn config_map(&self, _ns: &str, name: &str) -> Result<Option<ConfigMap>, Error> {
        Ok(self.config_maps.get(name).cloned())
    }
    async fn secret(&self, _ns: &str, name: &str) -> Result<Option<Secret>, Error> {
        Ok(self.secrets.get(name).cloned())
    }
    async fn services(&self, _ns: &str) -> Result<Vec<Service>, Error> {
        Ok(self.services.clone())
    }
    async fn allocatable(&self) -> Result<Allocatable, Error> {
        Ok(self.allocatable.clone())
    }
}

fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": ip, "ports": ports}
    }))
    .expect("service")
}

fn kubernetes_service() -> Service {
    service(
        "default",
        "kubernetes",
        "10.43.0.1",
        json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
    )
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "namespace": "team", "name": "web-1", "uid": "u-1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "say \"hi\""}
        },
        "spec": spec,
    }))
    .expect("pod")
}

fn container(v: serde_json::Value) -> Container {
    serde_json::from_value(v).expect("container")
}

fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn run(fake: &Fake, pod: &Pod, c: &Container) -> Result<Vec<(String, String)>, Error> {
    resolve(fake, pod, "10.42.0.7,fd00::7", "192.168.1.5", c).await
}

#[test]
fn expansion_follows_kubernetes_rules() {
    let env = vec![
        ("A".to_string(), "alpha".to_string()),
        ("B".to_string(), "".to_string()),
    ];
    assert_eq!(expand("$(A)-$(B)-$(C)", &env), "alpha--$(C)");
    assert_eq!(expand("$$(A)", &env), "$(A)");
    assert_eq!(expand("$$$(A)", &env), "$alpha");
    assert_eq!(expand("cost $5 $", &env), "cost $5 $");
    assert_eq!(expand("$(A", &env), "$(A");
    assert_eq!(expand("x$(A)y$(A)z", &env), "xalphayalphaz");
    assert_eq!(expand("ünï$(A)çødé", &env), "ünïalphaçødé");
    assert_eq!(expand("$()", &env), "$()");
}

#[test]
fn strict_expansion_reports_missing_and_empty_names() {
    let env = vec![
        ("A".to_string(), "a".to_string()),
        ("E".to_string(), "".to_string()),
    ];
    let (s, missing) = expand_strict("$(A)/$(E)/$(Z)", &env);
    assert_eq!(s, "a//");
    assert_eq!(missing, vec!["E".to_string(), "Z".to_string()]);
}

#[test]
fn service_links_are_named_like_docker_links() {
    let svc = service(
        "team",
        "redis-primary",
        "10.43.0.20",
        json!([
            {"name": "redis", "port": 6379, "protocol": "TCP"},
            {"name": "metrics-port", "port": 9121}
        ]),
    );
    let env = service_env(&[&svc]);
    let names: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("REDIS_PRIMARY_SERVICE_HOST", "10.43.0.20"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_METRICS_PORT", "9121"),
            ("REDIS_PRIMARY_PORT", "tcp://10.43.0.20:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.43.0.20:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.43.0.20"),
            ("REDIS_PRIMARY_PORT_9121_TCP", "tcp://10.43.0.20:9121"),
            ("REDIS_PRIMARY_PORT_9121_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_9121_TCP_PORT", "9121"),
            ("REDIS_PRIMARY_PORT_9121_TCP_ADDR", "10.43.0.20"),
        ]
    );
}

#[test]
fn ipv6_and_udp_service_links() {
    let svc = service(
        "team",
        "dns",
        "fd00::a",
        json!([{"port": 53, "protocol": "UDP"}]),
    );
    let env = service_env(&[&svc]);
    assert_eq!(get(&env, "DNS_PORT"), Some("udp://[fd00::a]:53"));
    assert_eq!(get(&env, "DNS_PORT_53_UDP_PROTO"), Some("udp"));
    assert_eq!(get(&env, "DNS_SERVICE_PORT"), Some("53"));
}

#[test]
fn headless_and_foreign_services_get_no_links() {
    let services = vec![
        kubernetes_service(),
        service("team", "headless", "None", json!([{"port": 80}])),
        service("other", "elsewhere", "10.43.0.9", json!([{"port": 80}])),
        service("team", "web", "10.43.0.8", json!([{"port": 80}])),
    ];
    let names = |links| -> Vec<String> {
        linked_services(&services, "team", links)
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(names(true), vec!["kubernetes", "web"]);
    assert_eq!(
        names(false),
        vec!["kubernetes"],
        "the API server's service always"
    );
}

#[tokio::test]
async fn env_is_ordered_services_then_env_from_then_env() {
    let mut fake = Fake {
        services: vec![
            kubernetes_service(),
            service("team", "web", "10.43.0.8", json!([{"port": 80}])),
        ],
        ..Default::default()
    };
    fake.config_maps.insert(
        "cfg".into(),
        serde_json::from_value(json!({"data": {"MODE": "fast", "1bad": "x", "LEVEL": "3"}}))
            .expect("cm"),
    );
    fake.secrets.insert(
        "creds".into(),
        Secret {
            data: Some(BTreeMap::from([(
                "PASSWORD".to_string(),
                ByteString(b"s3cr3t".to_vec()),
            )])),
            ..Default::default()
        },
    );
    let p = pod(json!({"containers": [{"name": "app"}], "nodeName": "node-a"}));
    let c = container(json!({
        "name": "app",
        "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"secretRef": {"name": "creds"}, "prefix": "DB_"}
        ],
        "env": [
            {"name": "MODE", "value": "slow-$(LEVEL)"},
            {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/$(MODE)/$(LATER)"},
            {"name": "LATER", "value": "now"},
            {"name": "ESCAPED", "value": "$$(MODE)"},
            {"name": "EMPTY"}
        ]
    }));
    let env = run(&fake, &p, &c).await.expect("env");
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
    assert!(pos("KUBERNETES_SERVICE_HOST") < pos("LEVEL"), "{names:?}");
    assert!(pos("WEB_SERVICE_HOST") < pos("LEVEL"), "{names:?}");
    assert!(pos("LEVEL") < pos("DB_PASSWORD"), "{names:?}");
    assert!(pos("DB_PASSWORD") < pos("URL"), "{names:?}");
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
    assert_eq!(
        get(&env, "KUBERNETES_PORT_443_TCP"),
        Some("tcp://10.43.0.1:443")
    );
    assert_eq!(get(&env, "MODE"), Some("slow-3"), "env overrides envFrom");
    assert_eq!(
        get(&env, "URL"),
        Some("http://10.43.0.8:80/slow-3/$(LATER)"),
        "only what is defined before expands"
    );
    assert_eq!(get(&env, "ESCAPED"), Some("$(MODE)"));
    assert_eq!(get(&env, "EMPTY"), Some(""));
    assert_eq!(get(&env, "DB_PASSWORD"), Some("s3cr3t"));
    assert_eq!(get(&env, "1bad"), None, "invalid envFrom keys are skipped");
    assert_eq!(names.iter().filter(|n| **n == "MODE").count(), 1);
}

#[tokio::test]
async fn service_links_can_be_disabled_but_not_for_the_api_server() {
    let fake = Fake {
        services: vec![
            kubernetes_service(),
            service("team", "web", "10.43.0.8", json!([{"port": 80}])),
        ],
        ..Default::default()
    };
    let p = pod(json!({"containers": [{"name": "app"}], "enableServiceLinks": false}));
    let env = run(&fake, &p, &container(json!({"name": "app"})))
        .await
        .expect("env");
    assert_eq!(get(&env, "WEB_SERVICE_HOST"), None);
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
}

#[tokio::test]
async fn downward_api_fields() {
    let fake = Fake::default();
    let p = pod(json!({
        "containers": [{"name": "app"}],
        "nodeName": "node-a",
        "serviceAccountName": "builder"
    }));
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let c = container(json!({"name": "app", "env": [
        field("NAME", "metadata.name"),
        field("NS", "metadata.namespace"),
        field("UID", "metadata.uid"),
        field("APP", "metadata.labels['app']"),
        field("NONE", "metadata.labels['missing']"),
        field("NOTE", "metadata.annotations['note']"),
        field("NODE", "spec.nodeName"),
        field("SA", "spec.serviceAccountName"),
        field("HOST_IP", "status.hostIP"),
        field("HOST_IPS", "status.hostIPs"),
        field("POD_IP", "status.podIP"),
        field("POD_IPS", "status.podIPs"),
        {"name": "GREETING", "value": "$(NAME) on $(NODE)"}
    ]}));
    let env = run(&fake, &p, &c).await.expect("env");
    assert_eq!(get(&env, "NAME"), Some("web-1"));
    assert_eq!(get(&env, "NS"), Some("team"));
    assert_eq!(get(&env, "UID"), Some("u-1"));
    assert_eq!(get(&env, "APP"), Some("web"));
    assert_eq!(get(&env, "NONE"), Some(""));
    assert_eq!(get(&env, "NOTE"), Some("say \"hi\""));
    assert_eq!(get(&env, "NODE"), Some("node-a"));
    assert_eq!(get(&env, "SA"), Some("builder"));
    assert_eq!(get(&env, "HOST_IP"), Some("192.168.1.5"));
    assert_eq!(get(&env, "HOST_IPS"), Some("192.168.1.5"));
    assert_eq!(get(&env, "POD_IP"), Some("10.42.0.7"));
    assert_eq!(get(&env, "POD_IPS"), Some("10.42.0.7,fd00::7"));
    assert_eq!(get(&env, "GREETING"), Some("web-1 on node-a"));

    let bad = container(json!({"name": "app", "env": [field("X", "spec.restartPolicy")]}));
    let err = run(&fake, &p, &bad).await.expect_err("unsupported");
    assert_eq!(err.to_string(), "unsupported fieldPath: spec.restartPolicy");
}

#[test]
fn whole_label_maps_are_sorted_quoted_lines() {
    let p = pod(json!({"containers": []}));
    assert_eq!(
        fields::metadata_field(&p, "metadata.labels").expect("labels"),
        "app=\"web\"\ntier=\"front\""
    );
    assert_eq!(
        fields::metadata_field(&p, "metadata.annotations").expect("annotations"),
        "note=\"say \\\"hi\\\"\""
    );
}

#[tokio::test]
async fn resource_fields_use_divisors_and_default_to_allocatable() {
    let fake = Fake {
        allocatable: BTreeMap::from([
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
            ("ephemeral-storage".to_string(), Quantity("100G".into())),
        ]),
        ..Default::default()
    };
    let p = pod(
        json!({"containers": [{"name": "app"}, {"name": "side", "resources": {"limits": {"cpu": "250m"}}}]}),
    );
    let res = |name: &str, r: &str, divisor: Option<&str>, cname: Option<&str>| {
        let mut sel = json!({"resource": r});
        if let Some(d) = divisor {
            sel["divisor"] = json!(d);
        }
        if let Some(c) = cname {
            sel["containerName"] = json!(c);
        }
        json!({"name": name, "valueFrom": {"resourceFieldRef": sel}})
    };
    let c = container(json!({
        "name": "app",
        "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "32Mi"}},
        "env": [
            res("CPU_LIMIT", "limits.cpu", None, None),
            res("CPU_LIMIT_M", "limits.cpu", Some("1m"), None),
            res("MEM_LIMIT", "limits.memory", None, None),
            res("MEM_LIMIT_MI", "limits.memory", Some("1Mi"), None),
            res("CPU_REQ", "requests.cpu", None, None),
            res("MEM_REQ_MI", "requests.memory", Some("1Mi"), None),
            res("EPH_LIMIT_G", "limits.ephemeral-storage", Some("1G"), None),
            res("EPH_REQ", "requests.ephemeral-storage", None, None),
            res("SIDE_CPU_M", "limits.cpu", Some("1m"), Some("side")),
            res("SIDE_MEM_GI", "limits.memory", Some("1Gi"), Some("side"))
        ]
    }));
    let env = run(&fake, &p, &c).await.expect("env");
    assert_eq!(get(&env, "CPU_LIMIT"), Some("2"), "1.5 cores round up");
    assert_eq!(get(&env, "CPU_LIMIT_M"), Some("1500"));
    assert_eq!(get(&env, "MEM_LIMIT"), Some("67108864"));
    assert_eq!(get(&env, "MEM_LIMIT_MI"), Some("64"));
    assert_eq!(get(&env, "CPU_REQ"), Some("1"));
    assert_eq!(get(&env, "MEM_REQ_MI"), Some("32"));
    assert_eq!(get(&env, "EPH_LIMIT_G"), Some("100"), "node allocatable");
    assert_eq!(get(&env, "EPH_REQ"), Some("0"));
    assert_eq!(get(&env, "SIDE_CPU_M"), Some("250"));
    assert_eq!(get(&env, "SIDE_MEM_GI"), Some("8"), "node allocatable");
}

#[tokio::test]
async fn missing_config_is_an_error_unless_optional() {
    let mut fake = Fake::default();
    fake.config_maps.insert(
        "cfg".into(),
        serde_json::from_value(json!({"data": {"A": "1"}})).expect("cm"),
    );
    fake.secrets.insert("creds".into(), Secret::default());
    let p = pod(json!({"containers": [{"name": "app"}]}));
    let cases = [
        (
            json!({"configMapKeyRef": {"name": "nope", "key": "A"}}),
            "configmap \"nope\" not found",
        ),
        (
            json!({"configMapKeyRef": {"name": "cfg", "key": "B"}}),
            "couldn't find key B in ConfigMap team/cfg",
        ),
        (
            json!({"secretKeyRef": {"name": "nope", "key": "A"}}),
            "secret \"nope\" not found",
        ),
        (
            json!({"secretKeyRef": {"name": "creds", "key": "K"}}),
            "couldn't find key K in Secret team/creds",
        ),
    ];
    for (from, message) in cases {
        let c =
            container(json!({"name": "app", "env": [{"name": "X", "valueFrom": from.clone()}]}));
        let err = run(&fake, &p, &c).await.expect_err("must fail");
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert_eq!(err.to_string(), message);

        let mut optional = from.clone();
        let sel = optional
            .as_object_mut()
            .and_then(|o| o.values_mut().next())
            .expect("selector");
        sel["optional"] = json!(true);
        let c = container(json!({"name": "app", "env": [{"name": "X", "valueFrom": optional}]}));
        let env = run(&fake, &p, &c).await.expect("optional is fine");
        assert_eq!(get(&env, "X"), None, "an optional missing value is not set");
    }
    let c = container(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "nope"}}]}));
    assert_eq!(
        run(&fake, &p, &c).await.expect_err("missing").to_string(),
        "configmap \"nope\" not found"
    );
    let c = container(
        json!({"name": "app", "envFrom": [{"secretRef": {"name": "nope", "optional": true}}]}),
    );
    run(&fake, &p, &c).await.expect("optional envFrom");
}

#[test]
fn env_var_names_as_the_kubelet_accepts_them() {
    for ok in ["A", "_a", "a.b", "-x", "A1_B"] {
        assert!(is_env_var_name(ok), "{ok}");
    }
    for bad in ["", "1A", "a b", "a=b", "ä"] {
        assert!(!is_env_var_name(bad), "{bad}");
    }
}
