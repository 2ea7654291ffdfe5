//! The admission decision for pods and workloads: what is rejected with which
//! message, what is warned about, what is written to the audit annotations, and
//! who is exempt.

mod support;

use pod_security::{
    Admission, Config, Decision, Denial, Evaluator, Exemptions, Operation, Request,
};
use serde_json::{Value, json};
use support::{default_pod, restricted_pod, set};

const FORBIDDEN_PRIVILEGED: &str = r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

const DEFAULT_POD_RESTRICTED: &str = r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

fn namespace(labels: Value) -> Value {
    json!({"metadata": {"name": "ns", "labels": labels}})
}

fn privileged_pod() -> Value {
    set(
        default_pod(),
        "/spec/containers/0/securityContext",
        json!({"privileged": true}),
    )
}

fn create<'a>(group: &'a str, resource: &'a str, object: &'a Value) -> Request<'a> {
    Request {
        operation: Operation::Create,
        group,
        resource,
        subresource: "",
        namespace: "ns",
        name: "p",
        username: "alice",
        object,
        old_object: None,
    }
}

fn annotations(d: &Decision) -> Vec<(&str, &str)> {
    d.audit_annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn admission() -> Admission {
    Admission::new(Config::default(), Evaluator::new())
}

#[test]
fn restricted_rejects_a_privileged_pod_with_kubernetes_message() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let pod = privileged_pod();
    let d = admission().validate(&create("", "pods", &pod), Some(&ns));
    assert_eq!(
        d.denial,
        Some(Denial::Forbidden {
            message: FORBIDDEN_PRIVILEGED.to_owned()
        })
    );
    assert!(!d.allowed());
    // Enforce alone also warns at the same level, but a rejected request gets no
    // warnings.
    assert!(d.warnings.is_empty());
    assert_eq!(
        annotations(&d),
        [(
            "pod-security.kubernetes.io/enforce-policy",
            "restricted:latest"
        )]
    );
}

#[test]
fn warn_and_audit_report_without_rejecting() {
    let ns = namespace(json!({
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "v1.30"
    }));
    let pod = default_pod();
    let d = admission().validate(&create("", "pods", &pod), Some(&ns));
    assert!(d.allowed());
    assert_eq!(
        d.warnings,
        [format!(
            r#"would violate PodSecurity "restricted:latest": {DEFAULT_POD_RESTRICTED}"#
        )]
    );
    assert_eq!(
        annotations(&d),
        [
            (
                "pod-security.kubernetes.io/audit-violations",
                format!(
                    r#"would violate PodSecurity "restricted:v1.30": {DEFAULT_POD_RESTRICTED}"#
                )
                .as_str()
            ),
            (
                "pod-security.kubernetes.io/enforce-policy",
                "baseline:latest"
            ),
        ]
    );
}

#[test]
fn a_compliant_pod_gets_only_the_enforce_policy_annotation() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let pod = restricted_pod();
    let d = admission().validate(&create("", "pods", &pod), Some(&ns));
    assert_eq!(
        d,
        Decision {
            audit_annotations: [(
                "pod-security.kubernetes.io/enforce-policy".to_owned(),
                "restricted:latest".to_owned()
            )]
            .into(),
            ..Decision::default()
        }
    );
}

#[test]
fn an_unlabelled_namespace_is_privileged_by_default() {
    let ns = json!({"metadata": {"name": "ns"}});
    let pod = privileged_pod();
    let d = admission().validate(&create("", "pods", &pod), Some(&ns));
    assert!(d.allowed() && d.warnings.is_empty());
    assert_eq!(
        annotations(&d),
        [(
            "pod-security.kubernetes.io/enforce-policy",
            "privileged:latest"
        )]
    );
}

#[test]
fn configured_defaults_apply_to_unlabelled_namespaces() {
    let mut config = Config::default();
    config.defaults.enforce.level = pod_security::Level::Baseline;
    let a = Admission::new(config, Evaluator::new());
    let ns = json!({"metadata": {"name": "ns"}});
    let pod = privileged_pod();
    let d = a.validate(&create("", "pods", &pod), Some(&ns));
    assert_eq!(
        d.denial,
        Some(Denial::Forbidden {
            message: r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#.to_owned()
        })
    );
}

#[test]
fn exempt_namespaces_users_and_runtime_classes_skip_evaluation() {
    let a = Admission::new(
        Config {
            exemptions: Exemptions {
                usernames: vec!["system:serviceaccount:kube-system:replicaset-controller".into()],
                namespaces: vec!["kube-system".into()],
                runtime_classes: vec!["kata".into()],
            },
            ..Config::default()
        },
        Evaluator::new(),
    );
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let pod = privileged_pod();

    let mut req = create("", "pods", &pod);
    req.namespace = "kube-system";
    let d = a.validate(&req, Some(&ns));
    assert!(d.allowed());
    assert_eq!(
        annotations(&d),
        [("pod-security.kubernetes.io/exempt", "namespace")]
    );

    let mut req = create("", "pods", &pod);
    req.username = "system:serviceaccount:kube-system:replicaset-controller";
    let d = a.validate(&req, Some(&ns));
    assert_eq!(
        annotations(&d),
        [("pod-security.kubernetes.io/exempt", "user")]
    );

    let kata = set(privileged_pod(), "/spec/runtimeClassName", json!("kata"));
    let d = a.validate(&create("", "pods", &kata), Some(&ns));
    assert!(d.allowed());
    assert_eq!(
        annotations(&d),
        [("pod-security.kubernetes.io/exempt", "runtimeClass")]
    );

    // Not exempt: rejected.
    let d = a.validate(&create("", "pods", &pod), Some(&ns));
    assert!(!d.allowed());
}

#[test]
fn workloads_are_warned_about_and_audited_but_never_rejected() {
    let ns = namespace(json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/audit": "baseline"
    }));
    let template = privileged_pod();
    let deployment = json!({"metadata": {"name": "web"}, "spec": {"template": template}});
    let cronjob = json!({"metadata": {"name": "job"}, "spec": {"jobTemplate": {"spec": {"template": template}}}});
    for (group, resource, obj) in [
        ("apps", "deployments", &deployment),
        ("apps", "daemonsets", &deployment),
        ("batch", "cronjobs", &cronjob),
        ("", "replicationcontrollers", &deployment),
    ] {
        let d = admission().validate(&create(group, resource, obj), Some(&ns));
        assert!(d.allowed(), "{resource}");
        let want_warning =
            FORBIDDEN_PRIVILEGED.replace(r#"pods "p" is forbidden: violates"#, "would violate");
        assert_eq!(d.warnings, [want_warning], "{resource}");
        assert_eq!(
            annotations(&d),
            [(
                "pod-security.kubernetes.io/audit-violations",
                r#"would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
            )],
            "{resource}"
        );
    }
}

#[test]
fn workloads_in_namespaces_that_only_enforce_privileged_are_not_evaluated() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "privileged"}));
    let deployment = json!({"spec": {"template": privileged_pod()}});
    let d = admission().validate(&create("apps", "deployments", &deployment), Some(&ns));
    assert_eq!(d, Decision::default());
    // A workload without a template has nothing to evaluate.
    let ns = namespace(json!({"pod-security.kubernetes.io/warn": "restricted"}));
    let empty = json!({"spec": {}});
    let d = admission().validate(&create("apps", "deployments", &empty), Some(&ns));
    assert_eq!(d, Decision::default());
}

#[test]
fn pod_updates_are_evaluated_only_when_images_or_containers_change() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let old = privileged_pod();
    let relabelled = set(old.clone(), "/metadata/labels", json!({"a": "b"}));
    let mut req = create("", "pods", &relabelled);
    req.operation = Operation::Update;
    req.old_object = Some(&old);
    assert_eq!(admission().validate(&req, Some(&ns)), Decision::default());

    let new_image = set(old.clone(), "/spec/containers/0/image", json!("busybox:2"));
    let mut req = create("", "pods", &new_image);
    req.operation = Operation::Update;
    req.old_object = Some(&old);
    assert!(!admission().validate(&req, Some(&ns)).allowed());

    let debugged = set(
        old.clone(),
        "/spec/ephemeralContainers",
        json!([{"name": "debug", "image": "busybox"}]),
    );
    let mut req = create("", "pods", &debugged);
    req.operation = Operation::Update;
    req.subresource = "ephemeralcontainers";
    req.old_object = Some(&old);
    assert!(!admission().validate(&req, Some(&ns)).allowed());
}

#[test]
fn status_and_other_ignored_pod_subresources_are_not_evaluated() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let pod = privileged_pod();
    for sub in ["status", "binding", "eviction", "exec", "log"] {
        let mut req = create("", "pods", &pod);
        req.subresource = sub;
        assert_eq!(
            admission().validate(&req, Some(&ns)),
            Decision::default(),
            "{sub}"
        );
    }
    let deployment = json!({"spec": {"template": pod}});
    let mut req = create("apps", "deployments", &deployment);
    req.subresource = "scale";
    assert_eq!(admission().validate(&req, Some(&ns)), Decision::default());
}

#[test]
fn a_generated_name_is_taken_from_the_object() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "baseline"}));
    let pod = set(privileged_pod(), "/metadata/name", json!("web-7d4b9-x2x8q"));
    let mut req = create("", "pods", &pod);
    req.name = "";
    let d = admission().validate(&req, Some(&ns));
    let Some(Denial::Forbidden { message }) = d.denial else {
        panic!("not forbidden: {d:?}");
    };
    assert!(
        message.starts_with(
            r#"pods "web-7d4b9-x2x8q" is forbidden: violates PodSecurity "baseline:latest""#
        ),
        "{message}"
    );
}

#[test]
fn invalid_namespace_labels_enforce_restricted_and_are_reported_in_the_audit_log() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "bogus"}));
    let pod = default_pod();
    let d = admission().validate(&create("", "pods", &pod), Some(&ns));
    let Some(Denial::Forbidden { message }) = &d.denial else {
        panic!("not forbidden: {d:?}");
    };
    assert_eq!(
        message,
        &format!(
            r#"pods "p" is forbidden: violates PodSecurity "restricted:latest": {DEFAULT_POD_RESTRICTED}"#
        )
    );
    assert_eq!(
        annotations(&d),
        [
            (
                "pod-security.kubernetes.io/enforce-policy",
                "restricted:latest"
            ),
            (
                "pod-security.kubernetes.io/error",
                r#"Failed to parse policy: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": must be one of privileged, baseline, restricted"#
            ),
        ]
    );
}

#[test]
fn an_unreadable_namespace_fails_pods_and_only_annotates_workloads() {
    let pod = privileged_pod();
    let d = admission().validate(&create("", "pods", &pod), None);
    assert_eq!(
        d.denial,
        Some(Denial::Internal {
            message: r#"failed to lookup namespace "ns""#.to_owned()
        })
    );
    let deployment = json!({"spec": {"template": pod}});
    let d = admission().validate(&create("apps", "deployments", &deployment), None);
    assert!(d.allowed());
    assert_eq!(
        annotations(&d),
        [(
            "pod-security.kubernetes.io/error",
            r#"failed to lookup namespace "ns""#
        )]
    );
}

#[test]
fn undecodable_pods_are_bad_requests_and_undecodable_templates_are_annotated() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": 7}});
    let d = admission().validate(&create("", "pods", &pod), Some(&ns));
    assert_eq!(
        d.denial,
        Some(Denial::BadRequest {
            message: "failed to decode object".to_owned()
        })
    );
    let deployment = json!({"spec": {"template": pod}});
    let d = admission().validate(&create("apps", "deployments", &deployment), Some(&ns));
    assert!(d.allowed());
    let error = &d.audit_annotations["pod-security.kubernetes.io/error"];
    assert!(
        error.starts_with(
            "failed to extract pod template: decoding the pod spec at /spec/template/spec:"
        ),
        "{error}"
    );
}

#[test]
fn only_pods_namespaces_and_pod_template_resources_are_handled() {
    assert!(Admission::handles("", "pods"));
    assert!(Admission::handles("", "namespaces"));
    assert!(Admission::handles("batch", "jobs"));
    assert!(!Admission::handles("", "services"));
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let svc = json!({"spec": {"template": privileged_pod()}});
    assert_eq!(
        admission().validate(&create("", "services", &svc), Some(&ns)),
        Decision::default()
    );
}
