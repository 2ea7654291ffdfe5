use super::*;
use serde_json::{Value, json};

fn claim(extra: Value) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": "data", "namespace": "ns", "uid": "uid-1", "resourceVersion": "7"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    });
    merge(&mut c, extra);
    serde_json::from_value(c).expect("claim")
}

fn volume(name: &str, extra: Value) -> Arc<PersistentVolume> {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/data"}},
        "status": {"phase": "Available"},
    });
    merge(&mut v, extra);
    Arc::new(serde_json::from_value(v).expect("volume"))
}

fn class(
    name: &str,
    provisioner: &str,
    mode: &str,
    default: bool,
    created: &str,
) -> Arc<StorageClass> {
    let annotations = if default {
        json!({"storageclass.kubernetes.io/is-default-class": "true"})
    } else {
        json!({})
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": "Delete",
        }))
        .expect("class"),
    )
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

const BOUND_REF: &str =
    r#"{"spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "uid-1"}}}"#;

fn local_path() -> Arc<StorageClass> {
    class(
        "local-path",
        "rancher.io/local-path",
        "WaitForFirstConsumer",
        true,
        "2026-01-01T00:00:00Z",
    )
}

#[test]
fn a_claim_without_class_and_without_volumes_says_no_class_is_set() {
    let step =
        claim_step(&claim(json!({"spec": {"storageClassName": ""}})), &[], &[]).expect("step");
    assert_eq!(
        step,
        ClaimStep::Pending(Some(Note::normal(
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set"
        )))
    );
}

#[test]
fn a_claim_binds_to_a_fitting_static_volume() {
    let vs = [volume("pv-a", json!({}))];
    let step =
        claim_step(&claim(json!({"spec": {"storageClassName": ""}})), &vs, &[]).expect("step");
    assert_eq!(step, ClaimStep::Bind("pv-a".into()));
}

#[test]
fn a_claim_of_a_wait_for_first_consumer_class_waits_until_a_node_is_selected() {
    let c = claim(json!({"spec": {"storageClassName": "local-path"}}));
    let classes = [local_path()];
    assert_eq!(
        claim_step(&c, &[], &classes).expect("step"),
        ClaimStep::WaitForConsumer
    );
    let selected = claim(
        json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "n1"}},
                                "spec": {"storageClassName": "local-path"}}),
    );
    assert_eq!(
        claim_step(&selected, &[], &classes).expect("step"),
        ClaimStep::Provision("rancher.io/local-path".into())
    );
    // The provisioner's volume, pre-bound by claimRef, is bound.
    let provisioned = volume(
        "pvc-uid-1",
        serde_json::from_str::<Value>(BOUND_REF).expect("json"),
    );
    assert_eq!(
        claim_step(&selected, &[provisioned], &classes).expect("step"),
        ClaimStep::Bind("pvc-uid-1".into())
    );
}

#[test]
fn a_claim_without_any_class_gets_the_default_class_later() {
    let classes = [local_path()];
    assert_eq!(
        claim_step(&claim(json!({})), &[], &classes).expect("step"),
        ClaimStep::AssignClass("local-path".into())
    );
}

#[test]
fn the_newest_default_class_wins() {
    let classes = [
        local_path(),
        class("newer", "x.io/y", "Immediate", true, "2026-02-01T00:00:00Z"),
        class(
            "not-default",
            "x.io/y",
            "Immediate",
            false,
            "2026-03-01T00:00:00Z",
        ),
    ];
    assert_eq!(
        default_class(&classes).and_then(|c| c.metadata.name.as_deref()),
        Some("newer")
    );
}

#[test]
fn missing_classes_and_in_tree_provisioners_fail_provisioning() {
    let c = claim(json!({"spec": {"storageClassName": "gone"}}));
    assert_eq!(
        claim_step(&c, &[], &[]).expect("step"),
        ClaimStep::Event(Note::warning(
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"gone\" not found"
        ))
    );
    let manual = class(
        "manual",
        "kubernetes.io/no-provisioner",
        "Immediate",
        false,
        "2026-01-01T00:00:00Z",
    );
    let c = claim(json!({"spec": {"storageClassName": "manual"}}));
    assert!(matches!(
        claim_step(&c, &[], &[manual]).expect("step"),
        ClaimStep::Event(Note {
            reason: "ProvisioningFailed",
            ..
        })
    ));
}

#[test]
fn a_claim_asking_for_a_volume_by_name_gets_it_or_says_why_not() {
    let c = claim(json!({"spec": {"volumeName": "pv-a", "storageClassName": ""}}));
    assert_eq!(
        claim_step(&c, &[], &[]).expect("step"),
        ClaimStep::Pending(None)
    );
    let vs = [volume("pv-a", json!({}))];
    assert_eq!(
        claim_step(&c, &vs, &[]).expect("step"),
        ClaimStep::Bind("pv-a".into())
    );
    let small = [volume(
        "pv-a",
        json!({"spec": {"capacity": {"storage": "1Mi"}}}),
    )];
    assert_eq!(
        claim_step(&c, &small, &[]).expect("step"),
        ClaimStep::Pending(Some(Note::warning(
            "VolumeMismatch",
            "Cannot bind to requested volume \"pv-a\": requested PV is too small"
        )))
    );
    let taken = [volume(
        "pv-a",
        json!({"spec": {"claimRef": {"namespace": "ns", "name": "other", "uid": "u2"}}}),
    )];
    assert_eq!(
        claim_step(&c, &taken, &[]).expect("step"),
        ClaimStep::Pending(Some(Note::warning(
            "FailedBinding",
            "volume \"pv-a\" already bound to a different claim."
        )))
    );
}

#[test]
fn a_bound_claim_whose_volume_is_gone_is_lost() {
    let c = claim(
        json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}},
                         "spec": {"volumeName": "pv-a"}, "status": {"phase": "Bound"}}),
    );
    assert!(matches!(
        claim_step(&c, &[], &[]).expect("step"),
        ClaimStep::Lost(Note {
            reason: "ClaimLost",
            ..
        })
    ));
    let vs = [volume(
        "pv-a",
        serde_json::from_str(BOUND_REF).expect("json"),
    )];
    assert_eq!(
        claim_step(&c, &vs, &[]).expect("step"),
        ClaimStep::Bind("pv-a".into())
    );
    let other = [volume(
        "pv-a",
        json!({"spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "old"}}}),
    )];
    assert!(matches!(
        claim_step(&c, &other, &[]).expect("step"),
        ClaimStep::Lost(Note {
            reason: "ClaimMisbound",
            ..
        })
    ));
}

#[test]
fn waiting_claims_name_the_pods_not_yet_scheduled() {
    assert_eq!(wait_note(&[]).reason, "WaitForFirstConsumer");
    assert_eq!(
        wait_note(&[]).message,
        "waiting for first consumer to be created before binding"
    );
    assert_eq!(
        wait_note(&["web-0".into()]).message,
        "waiting for pod web-0 to be scheduled"
    );
    assert_eq!(
        wait_note(&["a".into(), "b".into()]).message,
        "waiting for pods a,b to be scheduled"
    );
}

#[test]
fn volume_phases_follow_their_claims() {
    let free = volume("pv-a", json!({"status": {"phase": "Pending"}}));
    assert_eq!(volume_step(&free, None), VolumeStep::Phase("Available"));
    let pre = volume(
        "pv-a",
        json!({"spec": {"claimRef": {"namespace": "ns", "name": "data"}}}),
    );
    assert_eq!(volume_step(&pre, None), VolumeStep::Phase("Available"));
    let bound = volume("pv-a", serde_json::from_str(BOUND_REF).expect("json"));
    assert_eq!(volume_step(&bound, None), VolumeStep::Release, "claim gone");
    let unbound_claim = claim(json!({}));
    assert_eq!(
        volume_step(&bound, Some(&unbound_claim)),
        VolumeStep::SyncClaim
    );
    let bound_claim = claim(json!({"spec": {"volumeName": "pv-a"}}));
    assert_eq!(
        volume_step(&bound, Some(&bound_claim)),
        VolumeStep::Phase("Bound")
    );
    let recreated = claim(json!({"metadata": {"uid": "uid-new"}, "spec": {"volumeName": "pv-a"}}));
    assert_eq!(
        volume_step(&bound, Some(&recreated)),
        VolumeStep::Release,
        "same name, new claim"
    );
    let elsewhere = claim(json!({"spec": {"volumeName": "pv-b"}}));
    assert_eq!(volume_step(&bound, Some(&elsewhere)), VolumeStep::Unbind);
    let provisioned = volume(
        "pv-a",
        json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: "rancher.io/local-path"}},
               "spec": {"persistentVolumeReclaimPolicy": "Delete",
                        "claimRef": {"namespace": "ns", "name": "data", "uid": "uid-1"}}}),
    );
    assert_eq!(
        volume_step(&provisioned, Some(&elsewhere)),
        VolumeStep::Release
    );
}

#[test]
fn reclaim_policies_keep_wait_for_the_provisioner_or_fail() {
    assert_eq!(reclaim(&volume("a", json!({}))), Reclaim::Keep);
    let ours = volume(
        "b",
        json!({"metadata": {"annotations": {ANN_PROVISIONED_BY: "rancher.io/local-path"}},
               "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
    );
    assert_eq!(reclaim(&ours), Reclaim::External);
    let static_delete = volume(
        "c",
        json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
    );
    assert_eq!(
        reclaim(&static_delete),
        Reclaim::Fail(Note::warning(
            "VolumeFailedDelete",
            "error getting deleter volume plugin for volume \"c\": no deletable volume plugin matched"
        ))
    );
    let recycle = volume(
        "d",
        json!({"spec": {"persistentVolumeReclaimPolicy": "Recycle"}}),
    );
    assert!(matches!(
        reclaim(&recycle),
        Reclaim::Fail(Note {
            reason: "VolumeFailedRecycle",
            ..
        })
    ));
}

#[test]
fn binding_sets_claim_ref_volume_name_annotations_and_status() {
    let c = claim(json!({}));
    let v = volume("pv-a", json!({}));
    let bound = bind_volume(&v, &c).expect("changed");
    let r = bound
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .expect("claimRef");
    assert_eq!(r.uid.as_deref(), Some("uid-1"));
    assert_eq!(r.kind.as_deref(), Some("PersistentVolumeClaim"));
    let ann = bound.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        ann.get(ANN_BOUND_BY_CONTROLLER).map(String::as_str),
        Some("yes")
    );
    assert_eq!(bind_volume(&bound, &c), None, "idempotent");

    // A volume pre-bound by its provisioner gets the UID filled in, no annotation.
    let pre = volume(
        "pv-b",
        json!({"spec": {"claimRef": {"namespace": "ns", "name": "data"}}}),
    );
    let done = bind_volume(&pre, &c).expect("changed");
    assert!(done.metadata.annotations.is_none());

    let claimed = bind_claim(&c, &bound).expect("changed");
    let ann = claimed.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(ann.get(ANN_BIND_COMPLETED).map(String::as_str), Some("yes"));
    assert_eq!(
        ann.get(ANN_BOUND_BY_CONTROLLER).map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        claimed.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("pv-a")
    );
    assert_eq!(bind_claim(&claimed, &bound), None, "idempotent");

    let status = claim_status(&claimed, "Bound", Some(&bound)).expect("changed");
    let st = status.status.as_ref().expect("status");
    assert_eq!(st.phase.as_deref(), Some("Bound"));
    assert_eq!(
        st.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(
        st.capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.as_str()),
        Some("1Gi")
    );
    assert_eq!(
        claim_status(&status, "Bound", Some(&bound)),
        None,
        "idempotent"
    );
    let lost = claim_status(&status, "Lost", None).expect("changed");
    assert!(
        lost.status
            .as_ref()
            .is_some_and(|s| s.capacity.is_none() && s.access_modes.is_none())
    );
}

#[test]
fn unbinding_drops_what_the_controller_set_and_keeps_a_users_pre_binding() {
    let c = claim(json!({}));
    let by_controller = bind_volume(&volume("pv-a", json!({})), &c).expect("bound");
    let undone = unbind_volume(&by_controller);
    assert!(undone.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()));
    let by_user = volume("pv-b", serde_json::from_str(BOUND_REF).expect("json"));
    let undone = unbind_volume(&by_user);
    let r = undone
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .expect("kept");
    assert_eq!((r.name.as_deref(), r.uid.as_deref()), (Some("data"), None));
}
