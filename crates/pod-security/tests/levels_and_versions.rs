//! Levels against each other, versions of the policy, emulating an older
//! Kubernetes, and the typed (k8s-openapi) entry point agreeing with the JSON one.

mod support;

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pod_security::{
    Error, Evaluator, Level, LevelVersion, Version, check_pod, check_pod_value, forbidden_message,
    warning_message,
};
use serde_json::json;
use support::{default_pod, pod, restricted_pod, violations, violations_with};

#[test]
fn a_baseline_pod_passes_baseline_but_fails_restricted() {
    let pod = default_pod();
    assert!(violations("baseline:latest", &pod).is_empty());
    assert_eq!(violations("restricted:latest", &pod).len(), 4);
}

#[test]
fn a_restricted_pod_passes_every_level_at_every_version() {
    let pod = restricted_pod();
    for level in ["privileged", "baseline", "restricted"] {
        for version in [
            "v1.0", "v1.8", "v1.19", "v1.22", "v1.25", "v1.33", "v1.35", "latest",
        ] {
            assert!(
                violations(&format!("{level}:{version}"), &pod).is_empty(),
                "{level}:{version}"
            );
        }
    }
}

#[test]
fn versions_newer_than_the_library_mean_latest() {
    let probe_host = pod(json!({"containers": [{
        "name": "c", "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}
    }]}));
    assert_eq!(
        violations("baseline:v1.99", &probe_host),
        violations("baseline:latest", &probe_host)
    );
    assert_eq!(Evaluator::new().latest(), Version::V1(37));
}

#[test]
fn an_evaluator_emulating_v1_33_applies_v1_33_rules_to_latest() {
    let at_33 = Evaluator::emulating(Version::V1(33));
    assert_eq!(at_33.latest(), Version::V1(33));
    let probe_host = pod(json!({"containers": [{
        "name": "c", "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}
    }]}));
    assert!(violations_with(&at_33, "baseline:latest", &probe_host).is_empty());
    assert!(violations_with(&at_33, "baseline:v1.34", &probe_host).is_empty());
    assert_eq!(violations("baseline:latest", &probe_host).len(), 1);
    // User namespaces relax nothing in v1.33.
    let userns = pod(json!({
        "hostUsers": false,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [support::restricted_container("c")]
    }));
    assert_eq!(
        violations_with(&at_33, "restricted:latest", &userns),
        [
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
            "runAsUser=0 (pod must not set runAsUser=0)",
        ]
    );
    assert!(violations("restricted:latest", &userns).is_empty());
    assert_eq!(Evaluator::emulating(Version::Latest), Evaluator::new());
    assert_eq!(Evaluator::emulating(Version::V1(90)), Evaluator::new());
}

#[test]
fn the_typed_entry_point_agrees_with_the_json_one() {
    let spec = PodSpec {
        host_ipc: Some(true),
        containers: vec![Container {
            name: "c".into(),
            image: Some("busybox".into()),
            security_context: Some(SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let meta = ObjectMeta {
        name: Some("p".into()),
        ..Default::default()
    };
    let typed = check_pod(Level::Restricted, Version::Latest, &meta, &spec);
    let json = serde_json::json!({"metadata": meta, "spec": spec});
    let untyped = check_pod_value(
        Level::Restricted,
        Version::Latest,
        &json["metadata"],
        &json["spec"],
    )
    .expect("decodes");
    assert_eq!(typed, untyped);
    assert_eq!(
        typed.iter().map(|v| v.check).collect::<Vec<_>>(),
        [
            "hostNamespaces",
            "privileged",
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "runAsNonRoot",
            "seccompProfile_restricted",
        ]
    );
}

#[test]
fn the_messages_wrap_the_violations_as_kubernetes_does() {
    let v = check_pod_value(
        Level::Baseline,
        Version::Latest,
        &json!({}),
        &json!({"hostNetwork": true, "containers": [{"name": "c"}]}),
    )
    .expect("decodes");
    let lv = LevelVersion::new(Level::Baseline, Version::V1(30));
    assert_eq!(
        forbidden_message("web-0", &lv, &v),
        r#"pods "web-0" is forbidden: violates PodSecurity "baseline:v1.30": host namespaces (hostNetwork=true)"#
    );
    assert_eq!(
        forbidden_message("", &lv, &v),
        r#"pods is forbidden: violates PodSecurity "baseline:v1.30": host namespaces (hostNetwork=true)"#
    );
    assert_eq!(
        warning_message(&lv, &v),
        r#"would violate PodSecurity "baseline:v1.30": host namespaces (hostNetwork=true)"#
    );
}

#[test]
fn a_pod_without_spec_or_metadata_has_nothing_to_violate() {
    let v = check_pod_value(
        Level::Restricted,
        Version::Latest,
        &json!(null),
        &json!(null),
    );
    assert!(v.expect("null is an empty pod").is_empty());
}

#[test]
fn a_spec_of_the_wrong_shape_is_an_error_naming_where() {
    let err = check_pod_value(
        Level::Baseline,
        Version::Latest,
        &json!({}),
        &json!({"containers": "not a list"}),
    )
    .expect_err("does not decode");
    assert!(
        matches!(err, Error::PodSpecDecodeFailed { path: "/spec", .. }),
        "{err}"
    );
    let err = check_pod_value(
        Level::Baseline,
        Version::Latest,
        &json!({"annotations": {"a": 1}}),
        &json!({}),
    )
    .expect_err("does not decode");
    assert!(
        matches!(err, Error::AnnotationsDecodeFailed { .. }),
        "{err}"
    );
    // Privileged evaluates nothing, so it does not even decode.
    assert!(check_pod_value(Level::Privileged, Version::Latest, &json!({}), &json!(3)).is_ok());
}
