//! The admission decision for namespaces: invalid PodSecurity labels are rejected,
//! exempt namespaces are told their policy is ignored, and tightening the enforce
//! level warns about the existing pods it would reject.

mod support;

use pod_security::{
    Admission, Config, Decision, Denial, Evaluator, Exemptions, Level, LevelVersion, Operation,
    Request, Version,
};
use serde_json::{Value, json};
use support::{default_pod, restricted_pod, set};

fn namespace(labels: Value) -> Value {
    json!({"metadata": {"name": "team-a", "labels": labels}})
}

fn request<'a>(object: &'a Value, old: Option<&'a Value>) -> Request<'a> {
    Request {
        operation: if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        },
        group: "",
        resource: "namespaces",
        subresource: "",
        namespace: "team-a",
        name: "team-a",
        username: "alice",
        object,
        old_object: old,
    }
}

fn admission() -> Admission {
    Admission::new(Config::default(), Evaluator::new())
}

#[test]
fn creating_a_namespace_with_invalid_labels_is_rejected_with_each_label() {
    let ns = namespace(json!({
        "pod-security.kubernetes.io/enforce": "strict",
        "pod-security.kubernetes.io/warn-version": "1.30"
    }));
    let d = admission().validate(&request(&ns, None), None);
    let Some(Denial::Invalid { name, errors }) = d.denial else {
        panic!("not invalid: {d:?}");
    };
    assert_eq!(name, "team-a");
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x""#,
        ]
    );
}

#[test]
fn creating_a_namespace_with_valid_labels_is_allowed_silently() {
    let ns = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    assert_eq!(
        admission().validate(&request(&ns, None), None),
        Decision::default()
    );
}

#[test]
fn an_update_keeping_already_invalid_labels_is_allowed() {
    let old = namespace(json!({"pod-security.kubernetes.io/audit": "bogus"}));
    let new = set(old.clone(), "/metadata/labels/owner", json!("bob"));
    assert!(
        admission()
            .validate(&request(&new, Some(&old)), None)
            .allowed()
    );
    // Changing the invalid value is rejected.
    let changed = namespace(json!({"pod-security.kubernetes.io/audit": "bogus2"}));
    assert!(
        !admission()
            .validate(&request(&changed, Some(&old)), None)
            .allowed()
    );
}

#[test]
fn tightening_the_enforce_level_asks_for_the_existing_pods_and_loosening_does_not() {
    let baseline = namespace(json!({"pod-security.kubernetes.io/enforce": "baseline"}));
    let restricted = namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let d = admission().validate(&request(&restricted, Some(&baseline)), None);
    assert_eq!(
        d.check_existing_pods,
        Some(LevelVersion::new(Level::Restricted, Version::Latest))
    );
    let d = admission().validate(&request(&baseline, Some(&restricted)), None);
    assert_eq!(d, Decision::default());
    // Same level at another version is checked too.
    let pinned = namespace(json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.30"
    }));
    let d = admission().validate(&request(&pinned, Some(&restricted)), None);
    assert_eq!(
        d.check_existing_pods,
        Some(LevelVersion::new(Level::Restricted, Version::V1(30)))
    );
    // Namespace subresources are not looked at.
    let mut req = request(&restricted, Some(&baseline));
    req.subresource = "status";
    assert_eq!(admission().validate(&req, None), Decision::default());
}

#[test]
fn an_exempt_namespace_is_told_its_policy_is_ignored() {
    let a = Admission::new(
        Config {
            exemptions: Exemptions {
                namespaces: vec!["team-a".into()],
                ..Exemptions::default()
            },
            ..Config::default()
        },
        Evaluator::new(),
    );
    let ns = namespace(json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.0",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "baseline"
    }));
    let d = a.validate(&request(&ns, None), None);
    assert!(d.allowed());
    assert_eq!(
        d.warnings,
        [
            r#"namespace "team-a" is exempt from Pod Security, and the policy (enforce=restricted:v1.0, audit=restricted:latest, warn=baseline:latest) will be ignored"#
        ]
    );
    // On update, instead of asking for its pods.
    let old = namespace(json!({}));
    let d = a.validate(&request(&ns, Some(&old)), None);
    assert_eq!(d.check_existing_pods, None);
    assert_eq!(d.warnings.len(), 1);
}

fn owned_pod(name: &str, owner_uid: Option<&str>, base: Value) -> Value {
    let mut pod = set(base, "/metadata/name", json!(name));
    if let Some(uid) = owner_uid {
        pod = set(
            pod,
            "/metadata/ownerReferences",
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": uid, "controller": true}]),
        );
    }
    pod
}

#[test]
fn existing_pods_are_summarised_by_violation_with_the_first_pod_named() {
    let privileged = set(
        default_pod(),
        "/spec/containers/0/securityContext",
        json!({"privileged": true}),
    );
    let pods = vec![
        owned_pod("web-b", Some("rs-1"), default_pod()),
        owned_pod("web-a", Some("rs-1"), default_pod()),
        owned_pod("web-c", Some("rs-1"), default_pod()),
        owned_pod("debug", None, privileged),
        owned_pod("ok", None, restricted_pod()),
        owned_pod("solo", None, default_pod()),
    ];
    let warnings = admission().existing_pods_warnings(
        "team-a",
        &LevelVersion::new(Level::Restricted, Version::Latest),
        &pods,
    );
    assert_eq!(
        warnings,
        [
            r#"existing pods in namespace "team-a" violate the new PodSecurity enforce level "restricted:latest""#,
            "debug: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
            "solo (and 3 other pods): allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        ]
    );
    let two = &pods[..2];
    let warnings = admission().existing_pods_warnings(
        "team-a",
        &LevelVersion::new(Level::Restricted, Version::Latest),
        two,
    );
    assert_eq!(
        warnings[1],
        "web-a (and 1 other pod): allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
    // Compliant pods: nothing to say.
    assert!(
        admission()
            .existing_pods_warnings(
                "team-a",
                &LevelVersion::new(Level::Baseline, Version::Latest),
                &pods[..3],
            )
            .is_empty()
    );
}

#[test]
fn at_most_3000_existing_pods_are_checked() {
    let pods: Vec<Value> = (0..3001)
        .map(|i| owned_pod(&format!("p{i:04}"), None, default_pod()))
        .collect();
    let warnings = admission().existing_pods_warnings(
        "team-a",
        &LevelVersion::new(Level::Restricted, Version::Latest),
        &pods,
    );
    // Within the one-second budget all 3000 are checked; a slow machine may stop
    // earlier, and then says how many it checked.
    assert!(
        warnings[0].starts_with("new PodSecurity enforce level only checked against the first ")
            && warnings[0].ends_with(" of 3001 existing pods"),
        "{warnings:?}"
    );
    assert!(warnings[2].starts_with("p0000 (and "), "{warnings:?}");
}

#[test]
fn pods_of_exempt_runtime_classes_are_not_counted() {
    let a = Admission::new(
        Config {
            exemptions: Exemptions {
                runtime_classes: vec!["kata".into()],
                ..Exemptions::default()
            },
            ..Config::default()
        },
        Evaluator::new(),
    );
    let pods = vec![
        owned_pod(
            "a",
            None,
            set(default_pod(), "/spec/runtimeClassName", json!("kata")),
        ),
        owned_pod("b", None, default_pod()),
    ];
    let warnings = a.existing_pods_warnings(
        "team-a",
        &LevelVersion::new(Level::Restricted, Version::Latest),
        &pods,
    );
    assert_eq!(warnings.len(), 2);
    assert!(warnings[1].starts_with("b: "), "{warnings:?}");
}
