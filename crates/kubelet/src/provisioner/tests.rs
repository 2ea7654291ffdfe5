use super::*;

const NODE: &str = "node-1";

fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": "www-web-0", "namespace": "shop", "uid": "1234", "resourceVersion": "9",
                     "annotations": {ANN_SELECTED_NODE: NODE}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "resources": {"requests": {"storage": "1Mi"}}},
    });
    if let (Some(c), Some(e)) = (
        c.get_mut("spec").and_then(|s| s.as_object_mut()),
        extra.as_object(),
    ) {
        c.extend(e.clone());
    }
    serde_json::from_value(c).expect("claim")
}

fn class(provisioner: &str, reclaim: &str) -> StorageClass {
    serde_json::from_value(json!({"metadata": {"name": "local-path"}, "provisioner": provisioner,
                                  "reclaimPolicy": reclaim, "volumeBindingMode": "WaitForFirstConsumer"}))
    .expect("class")
}

#[test]
fn only_unbound_claims_selected_for_this_node_in_our_class_want_a_volume() {
    let ours = class(PROVISIONER, "Delete");
    assert!(wants_volume(&claim(json!({})), Some(&ours), NODE));
    assert!(!wants_volume(&claim(json!({})), Some(&ours), "node-2"));
    assert!(!wants_volume(
        &claim(json!({})),
        Some(&class("other.io/x", "Delete")),
        NODE
    ));
    assert!(!wants_volume(&claim(json!({})), None, NODE));
    assert!(!wants_volume(
        &claim(json!({"volumeName": "pv"})),
        Some(&ours),
        NODE
    ));
}

#[test]
fn the_volume_is_a_host_path_pinned_to_the_node_and_pre_bound_to_the_claim() {
    let root = Path::new("/var/lib/skiff/agent/storage");
    let (dir, pv) =
        plan(&claim(json!({})), &class(PROVISIONER, "Retain"), NODE, root).expect("plan");
    assert_eq!(dir, root.join("pvc-1234_shop_www-web-0"));
    assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234"));
    let spec = pv.spec.as_ref().expect("spec");
    assert_eq!(
        spec.host_path.as_ref().map(|h| h.path.as_str()),
        Some(dir.to_str().expect("utf8"))
    );
    assert_eq!(
        spec.host_path.as_ref().and_then(|h| h.type_.as_deref()),
        Some("DirectoryOrCreate")
    );
    assert_eq!(
        spec.capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.as_str()),
        Some("1Mi")
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    let r = spec.claim_ref.as_ref().expect("claimRef");
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("shop"), Some("www-web-0"), Some("1234"))
    );
    assert_eq!(volume_node(&pv), Some(NODE));
    let mut no_annotation = pv.clone();
    no_annotation.metadata.annotations = None;
    assert_eq!(
        volume_node(&no_annotation),
        Some(NODE),
        "from the node affinity"
    );
    assert_eq!(owned_dir(&pv, root), Ok(dir));
}

#[test]
fn claims_local_path_cannot_serve_are_refused_with_its_messages() {
    let c = class(PROVISIONER, "Delete");
    let root = Path::new("/s");
    let rwx = plan(
        &claim(json!({"accessModes": ["ReadWriteMany"]})),
        &c,
        NODE,
        root,
    )
    .unwrap_err();
    assert_eq!(
        rwx,
        "failed to provision volume with StorageClass \"local-path\": NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
    );
    let sel = plan(
        &claim(json!({"selector": {"matchLabels": {"a": "b"}}})),
        &c,
        NODE,
        root,
    )
    .unwrap_err();
    assert!(
        sel.ends_with("claim.Spec.Selector is not supported"),
        "{sel}"
    );
    let block = plan(&claim(json!({"volumeMode": "Block"})), &c, NODE, root).unwrap_err();
    assert_eq!(
        block,
        "rancher.io/local-path does not support block volume provisioning"
    );
}

#[test]
fn only_released_delete_volumes_of_this_node_are_deleted_and_only_under_the_storage_dir() {
    let root = Path::new("/var/lib/skiff/agent/storage");
    let (_, mut pv) =
        plan(&claim(json!({})), &class(PROVISIONER, "Delete"), NODE, root).expect("plan");
    assert!(!should_delete(&pv, NODE), "not released");
    pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
        phase: Some("Released".into()),
        ..Default::default()
    });
    assert!(should_delete(&pv, NODE));
    assert!(!should_delete(&pv, "node-2"));
    let mut retained = pv.clone();
    retained
        .spec
        .as_mut()
        .expect("spec")
        .persistent_volume_reclaim_policy = Some("Retain".into());
    assert!(!should_delete(&retained, NODE));
    let mut elsewhere = pv.clone();
    elsewhere
        .spec
        .as_mut()
        .expect("spec")
        .host_path
        .as_mut()
        .expect("hostPath")
        .path = "/etc".into();
    assert!(owned_dir(&elsewhere, root).is_err());
    elsewhere
        .spec
        .as_mut()
        .expect("spec")
        .host_path
        .as_mut()
        .expect("hostPath")
        .path = format!("{}/../pvc-x", root.display());
    assert!(owned_dir(&elsewhere, root).is_err());
}

fn pod(name: &str, claim: &str, phase: &str, created: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
        "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": phase},
    }))
    .expect("pod")
}

#[test]
fn a_released_volume_is_in_use_while_a_running_pod_uses_its_old_claim() {
    let root = Path::new("/s");
    let (_, pv) = plan(&claim(json!({})), &class(PROVISIONER, "Delete"), NODE, root).expect("plan");
    let old = "2026-01-01T00:00:00Z";
    let pods = [
        pod("web-0", "www-web-0", "Running", old),
        pod("done", "www-web-0", "Succeeded", old),
        pod("other", "other-claim", "Running", old),
    ];
    assert_eq!(users(&pv, &pods, None), ["shop/web-0"]);
    assert!(users(&pv, &pods[1..], None).is_empty());
    // A claim of the same name exists again: pods created after it use it.
    let mut again = claim(json!({}));
    again.metadata.uid = Some("5678".into());
    again.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-02-01T00:00:00Z".parse().expect("time"),
    ));
    assert_eq!(
        users(&pv, &pods, Some(&again)),
        ["shop/web-0"],
        "the old pod still has it"
    );
    let newer = [pod("web-0", "www-web-0", "Running", "2026-03-01T00:00:00Z")];
    assert!(users(&pv, &newer, Some(&again)).is_empty());
}

#[test]
fn volume_directories_are_world_writable_and_removed_with_their_contents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("storage");
    let dir = root.join("pvc-1_ns_data");
    make_volume_dir(&root, &dir).expect("create");
    make_volume_dir(&root, &dir).expect("again");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o777);
    assert_eq!(mode(&root), 0o700);
    std::fs::write(dir.join("file"), "data").expect("write");
    std::os::unix::fs::symlink(tmp.path(), dir.join("escape")).expect("symlink");
    remove_volume_dir(&dir).expect("remove");
    assert!(!dir.exists());
    assert!(tmp.path().exists(), "a symlink inside is not followed");
    remove_volume_dir(&dir).expect("a missing directory is fine");
}
