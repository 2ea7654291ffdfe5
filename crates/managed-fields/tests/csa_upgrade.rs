//! Moving an object from client-side `kubectl apply` to
//! `kubectl apply --server-side`: the `kubectl-client-side-apply` manager,
//! the last-applied annotation, and what counts as a conflict.

use jiff::Timestamp;
use managed_fields::{FieldManager, FieldPath, LAST_APPLIED_ANNOTATION, ManagedFieldsEntry};
use serde_json::{Value, json};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_714_557_600 + s).unwrap()
}

fn entries(obj: &Value) -> Vec<ManagedFieldsEntry> {
    managed_fields::decode_entries(&obj["metadata"]["managedFields"]).unwrap()
}

fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
    entries(obj)
        .iter()
        .any(|e| e.manager == manager && e.fields.has(&FieldPath::fields(path.iter().copied()).0))
}

fn config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}
            }
        }
    })
}

/// What client-side `kubectl apply` sends on create: the configuration
/// with itself in the last-applied annotation, as field manager
/// `kubectl-client-side-apply`.
fn client_side_apply_create(fm: &FieldManager, cfg: &Value) -> Value {
    let mut obj = cfg.clone();
    let mut annotation = serde_json::to_string(cfg).unwrap();
    annotation.push('\n');
    obj["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: annotation });
    let mut stored = fm.update(None, obj.clone(), "kubectl-client-side-apply", t(0));
    stored["metadata"]["uid"] = json!("8f7f2a3c-0000-4000-8000-00000000000a");
    stored
}

#[test]
fn client_side_apply_is_recorded_as_kubectl_client_side_apply() {
    let fm = FieldManager::for_builtin("apps", "v1", "Deployment").unwrap();
    let live = client_side_apply_create(&fm, &config(2, "nginx:1.25"));
    let es = entries(&live);
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].manager, "kubectl-client-side-apply");
    assert!(owns(
        &live,
        "kubectl-client-side-apply",
        &["spec", "replicas"]
    ));
    assert!(owns(
        &live,
        "kubectl-client-side-apply",
        &["metadata", "annotations", LAST_APPLIED_ANNOTATION]
    ));
}

#[test]
fn server_side_apply_by_kubectl_takes_over_fields_still_as_last_applied() {
    let fm = FieldManager::for_builtin("apps", "v1", "Deployment").unwrap();
    let live = client_side_apply_create(&fm, &config(2, "nginx:1.25"));

    // `kubectl apply --server-side` (manager "kubectl") with a new replica count:
    // the old value is what kubectl applied client-side, so this is no conflict.
    let upgraded = fm
        .apply(
            Some(&live),
            &config(3, "nginx:1.25"),
            "kubectl",
            false,
            t(10),
        )
        .unwrap();
    assert_eq!(upgraded.object["spec"]["replicas"], 3);
    assert!(owns(&upgraded.object, "kubectl", &["spec", "replicas"]));
    assert!(!owns(
        &upgraded.object,
        "kubectl-client-side-apply",
        &["spec", "replicas"]
    ));
    // The annotation now holds the server-side applied configuration, so a
    // later client-side apply computes its three-way diff from it.
    let annotation = upgraded.object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(annotation.ends_with('\n'));
    let recorded: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(recorded, config(3, "nginx:1.25"));
}

#[test]
fn fields_changed_since_the_client_side_apply_still_conflict() {
    let fm = FieldManager::for_builtin("apps", "v1", "Deployment").unwrap();
    let live = client_side_apply_create(&fm, &config(2, "nginx:1.25"));
    // An autoscaler changes replicas: the live value is no longer the
    // last-applied one.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(7);
    let scaled = fm.update(Some(&live), scaled.clone(), "hpa-controller", t(5));

    let err = fm
        .apply(
            Some(&scaled),
            &config(3, "nginx:1.26"),
            "kubectl",
            false,
            t(10),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "hpa-controller" using apps/v1: .spec.replicas"#,
        "the image still matched last-applied, so only replicas conflicts"
    );
}

#[test]
fn other_managers_get_no_client_side_apply_allowance() {
    let fm = FieldManager::for_builtin("apps", "v1", "Deployment").unwrap();
    let live = client_side_apply_create(&fm, &config(2, "nginx:1.25"));
    let err = fm
        .apply(
            Some(&live),
            &config(3, "nginx:1.25"),
            "argocd-controller",
            false,
            t(10),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
}
