//! managedFields bookkeeping for creates, updates and non-apply patches,
//! and Kubernetes' rules on managedFields sent in requests.

use jiff::Timestamp;
use managed_fields::{FieldManager, FieldPath, FieldSet, ManagedFieldsEntry, Operation};
use serde_json::{Value, json};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_714_557_600 + s).unwrap()
}

fn entries(obj: &Value) -> Vec<ManagedFieldsEntry> {
    match obj["metadata"].get("managedFields") {
        Some(mf) => managed_fields::decode_entries(mf).unwrap(),
        None => Vec::new(),
    }
}

fn managers(obj: &Value) -> Vec<String> {
    entries(obj).into_iter().map(|e| e.manager).collect()
}

fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
    entries(obj)
        .iter()
        .any(|e| e.manager == manager && e.fields.has(&FieldPath::fields(path.iter().copied()).0))
}

fn configmaps() -> FieldManager {
    FieldManager::for_builtin("", "v1", "ConfigMap").unwrap()
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cfg", "namespace": "default", "labels": {"app": "x"}},
           "data": data})
}

/// What the API server stores: identity metadata set after the field manager ran.
fn stored(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("5f0c8a1e-0000-4000-8000-000000000001");
    obj["metadata"]["resourceVersion"] = json!("12");
    obj
}

#[test]
fn a_create_records_every_field_with_dots_for_new_maps() {
    let created = configmaps().update(None, cm(json!({"k": "v"})), "kubectl-create", t(0));
    let es = entries(&created);
    assert_eq!(es.len(), 1);
    let e = &es[0];
    assert_eq!(
        (
            e.manager.as_str(),
            e.operation,
            e.api_version.as_str(),
            e.time
        ),
        ("kubectl-create", Operation::Update, "v1", Some(t(0)))
    );
    assert_eq!(
        e.fields.to_fields_v1(),
        json!({
            "f:data": {".": {}, "f:k": {}},
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}}
        }),
        "name, namespace, apiVersion and kind are never owned"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0],
        json!({
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-05-01T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
        })
    );
}

#[test]
fn changed_fields_move_to_the_updater_and_removed_ownership_is_pruned() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1", "b": "2"})), "creator", t(0)));
    let mut next = v1.clone();
    next["data"] = json!({"a": "changed"});
    let v2 = stored(fm.update(Some(&v1), next.clone(), "kubectl-edit", t(5)));
    assert!(owns(&v2, "kubectl-edit", &["data", "a"]));
    assert!(
        !owns(&v2, "creator", &["data", "a"]),
        "the changed field moved"
    );
    assert!(
        !owns(&v2, "creator", &["data", "b"]),
        "the removed field is nobody's"
    );
    assert!(owns(&v2, "creator", &["metadata", "labels", "app"]));
    assert_eq!(managers(&v2), ["creator", "kubectl-edit"]);

    // The editor's later changes add to what it already owned.
    let mut next = v2.clone();
    next["metadata"]["labels"]["app"] = json!("y");
    let v3 = stored(fm.update(Some(&v2), next.clone(), "kubectl-edit", t(9)));
    assert!(owns(&v3, "kubectl-edit", &["data", "a"]));
    assert!(owns(&v3, "kubectl-edit", &["metadata", "labels", "app"]));
    assert_eq!(
        entries(&v3)
            .iter()
            .find(|e| e.manager == "kubectl-edit")
            .unwrap()
            .time,
        Some(t(9))
    );
    // The creator keeps only the maps it created.
    let creator = entries(&v3)
        .into_iter()
        .find(|e| e.manager == "creator")
        .unwrap();
    assert_eq!(
        creator.fields.to_fields_v1(),
        json!({"f:data": {}, "f:metadata": {"f:labels": {}}})
    );
}

#[test]
fn a_manager_left_with_nothing_loses_its_entry() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1"})), "creator", t(0)));
    let mut labelled = v1.clone();
    labelled["metadata"]["labels"]["team"] = json!("blue");
    let v2 = stored(fm.update(Some(&v1), labelled.clone(), "labeler", t(1)));
    assert_eq!(managers(&v2), ["creator", "labeler"]);
    let mut next = v2.clone();
    next["metadata"]["labels"]["team"] = json!("red");
    let v3 = stored(fm.update(Some(&v2), next.clone(), "kubectl-label", t(2)));
    assert_eq!(managers(&v3), ["creator", "kubectl-label"]);
}

#[test]
fn a_write_that_changes_nothing_keeps_entries_and_times() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1"})), "creator", t(0)));
    let same = fm.update(Some(&v1), v1.clone(), "someone-else", t(50));
    assert_eq!(
        same["metadata"]["managedFields"],
        v1["metadata"]["managedFields"]
    );
}

#[test]
fn an_unchanged_write_without_managed_fields_keeps_them_as_stored() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1"})), "creator", t(0)));
    let mut resent = v1.clone();
    resent["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    resent["metadata"]["resourceVersion"] = json!("11");
    let same = fm.update(Some(&v1), resent, "someone-else", t(50));
    assert_eq!(
        same["metadata"]["managedFields"],
        v1["metadata"]["managedFields"]
    );
    assert_eq!(
        same["metadata"]["resourceVersion"], "11",
        "the write is kept"
    );
}

#[test]
fn entries_a_write_does_not_change_are_written_back_as_they_were() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1", "b": "2"})), "creator", t(0)));
    let mut labelled = v1.clone();
    labelled["metadata"]["labels"]["team"] = json!("blue");
    let v2 = stored(fm.update(Some(&v1), labelled, "labeler", t(1)));
    // The labeler writes its own label again: only its time moves.
    let mut relabelled = v2.clone();
    relabelled["metadata"]["labels"]["team"] = json!("red");
    let v3 = stored(fm.update(Some(&v2), relabelled, "labeler", t(7)));
    let by = |obj: &Value, m: &str| -> Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("no entry of {m}"))
    };
    assert_eq!(by(&v3, "creator"), by(&v2, "creator"));
    assert_eq!(
        by(&v3, "labeler")["fieldsV1"],
        by(&v2, "labeler")["fieldsV1"]
    );
    assert_eq!(by(&v3, "labeler")["time"], "2024-05-01T10:00:07Z");
    // An edit of b takes it from the creator, whose entry is encoded anew.
    let mut edited = v3.clone();
    edited["data"]["b"] = json!("3");
    let v4 = fm.update(Some(&v3), edited, "kubectl-edit", t(9));
    assert!(!owns(&v4, "creator", &["data", "b"]));
    assert!(owns(&v4, "creator", &["data", "a"]));
    assert!(owns(&v4, "kubectl-edit", &["data", "b"]));
    assert_eq!(by(&v4, "labeler"), by(&v3, "labeler"));
}

#[test]
fn writes_through_a_subresource_are_recorded_with_it() {
    let fm = FieldManager::for_builtin("apps", "v1", "Deployment").unwrap();
    let status_fm = fm
        .clone()
        .with_subresource("status")
        .with_reset_fields(FieldSet::from_paths([
            FieldPath::fields(["spec"]),
            FieldPath::fields(["metadata"]),
        ]));
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 1}});
    let v1 = stored(fm.update(None, d.clone(), "kubectl-create", t(0)));
    let mut with_status = v1.clone();
    with_status["status"] = json!({"replicas": 1, "conditions": [
        {"type": "Available", "status": "True"}]});
    // managedFields sent to a subresource are ignored.
    with_status["metadata"]["managedFields"] = json!([]);
    let v2 = status_fm.update(
        Some(&v1),
        with_status.clone(),
        "kube-controller-manager",
        t(3),
    );
    let es = entries(&v2);
    let kcm = es
        .iter()
        .find(|e| e.manager == "kube-controller-manager")
        .unwrap();
    assert_eq!(kcm.subresource, "status");
    assert_eq!(
        kcm.fields.to_fields_v1(),
        json!({"f:status": {".": {}, "f:conditions": {".": {},
            "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}},
            "f:replicas": {}}})
    );
    assert!(es.iter().any(|e| e.manager == "kubectl-create"));
    assert_eq!(
        v2["metadata"]["managedFields"][1]["subresource"], "status",
        "entries sort by operation, time, manager"
    );
}

#[test]
fn managed_fields_sent_with_an_update_replace_the_live_ones() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1"})), "creator", t(0)));
    let mut next = v1.clone();
    next["metadata"]["managedFields"] = json!([{
        "manager": "someone", "operation": "Apply", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}
    }]);
    let v2 = fm.update(Some(&v1), next.clone(), "kubectl-replace", t(1));
    assert_eq!(managers(&v2), ["someone"]);
}

#[test]
fn an_empty_list_or_one_empty_entry_resets_managed_fields() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1"})), "creator", t(0)));
    for reset in [json!([]), json!([{}])] {
        let mut next = v1.clone();
        next["metadata"]["managedFields"] = reset.clone();
        next["data"]["a"] = json!("2");
        let v2 = fm.update(Some(&v1), next.clone(), "kubectl-patch", t(1));
        assert!(
            v2["metadata"].get("managedFields").is_none(),
            "{reset} strips managedFields: {v2}"
        );
    }
}

#[test]
fn invalid_managed_fields_in_a_request_are_ignored() {
    let fm = configmaps();
    let v1 = stored(fm.update(None, cm(json!({"a": "1"})), "creator", t(0)));
    for bad in [
        json!([{"manager": "x", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
        json!([{"manager": "x", "operation": "Update", "fieldsType": "FieldsV1"}]),
        json!([{"manager": "x", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
        json!([{"manager": "x", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": 3}}]),
        json!("not a list"),
    ] {
        let mut next = v1.clone();
        next["metadata"]["managedFields"] = bad.clone();
        let v2 = fm.update(Some(&v1), next.clone(), "kubectl-patch", t(1));
        assert_eq!(
            v2["metadata"]["managedFields"], v1["metadata"]["managedFields"],
            "{bad} is ignored"
        );
    }
}

#[test]
fn objects_without_managed_fields_stay_untracked_until_applied() {
    let fm = configmaps();
    let untracked = stored(cm(json!({"a": "1"})));
    let mut next = untracked.clone();
    next["data"]["a"] = json!("2");
    let v2 = fm.update(Some(&untracked), next.clone(), "kubectl-edit", t(1));
    assert!(v2["metadata"].get("managedFields").is_none());
    assert_eq!(v2["data"]["a"], "2");
}

#[test]
fn more_than_ten_updaters_fold_into_ancient_changes() {
    let fm = configmaps();
    let mut obj = stored(fm.update(None, cm(json!({})), "creator", t(0)));
    for i in 0..12 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        obj = fm.update(
            Some(&obj),
            next.clone(),
            &format!("writer-{i:02}"),
            t(10 + i),
        );
    }
    let ms = managers(&obj);
    assert_eq!(ms.len(), 10, "{ms:?}");
    assert!(ms.contains(&"ancient-changes".to_owned()));
    assert!(!ms.contains(&"creator".to_owned()));
    assert!(owns(&obj, "ancient-changes", &["data", "k0"]));
}

#[test]
fn reset_fields_are_never_owned_on_that_endpoint() {
    let fm = FieldManager::for_builtin("apps", "v1", "Deployment")
        .unwrap()
        .with_reset_fields(FieldSet::from_paths([FieldPath::fields(["status"])]));
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web"}, "spec": {"replicas": 1},
                   "status": {"replicas": 5}});
    let v = fm.update(None, d.clone(), "kubectl-create", t(0));
    assert!(owns(&v, "kubectl-create", &["spec", "replicas"]));
    assert!(!owns(&v, "kubectl-create", &["status", "replicas"]));
}
