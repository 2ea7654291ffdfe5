//! Server-side apply through the public API: merges, pruning, conflicts
//! and their resolution, as `kubectl apply --server-side` users see them.

use jiff::Timestamp;
use managed_fields::{Error, FieldManager, FieldPath, ManagedFieldsEntry, Operation, Schema};
use serde_json::{Value, json};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_714_557_600 + s).unwrap()
}

fn deployments() -> FieldManager {
    FieldManager::for_builtin("apps", "v1", "Deployment").unwrap()
}

fn deployment(replicas: i64, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn entries(obj: &Value) -> Vec<ManagedFieldsEntry> {
    managed_fields::decode_entries(&obj["metadata"]["managedFields"]).unwrap()
}

fn entry<'a>(entries: &'a [ManagedFieldsEntry], manager: &str) -> &'a ManagedFieldsEntry {
    entries
        .iter()
        .find(|e| e.manager == manager)
        .unwrap_or_else(|| panic!("no entry for {manager} in {entries:?}"))
}

fn owns(entries: &[ManagedFieldsEntry], manager: &str, path: &[&str]) -> bool {
    entries
        .iter()
        .any(|e| e.manager == manager && e.fields.has(&FieldPath::fields(path.iter().copied()).0))
}

/// The object as the API server would store it after the write: with
/// identity metadata the field manager must never hand out.
fn persisted(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("0b6f1b0a-6b2c-4d3a-9a59-0d4c1d6f0a11");
    obj["metadata"]["resourceVersion"] = json!("7");
    obj["metadata"]["creationTimestamp"] = json!("2024-05-01T10:00:00Z");
    obj
}

#[test]
fn two_managers_conflict_on_replicas_until_one_forces() {
    let fm = deployments();
    let nginx = json!([{"name": "nginx", "image": "nginx:1.25"}]);

    // Client-side `kubectl apply` creates the object (an Update by its manager).
    let created = persisted(fm.update(
        None,
        deployment(2, nginx.clone()),
        "kubectl-client-side-apply",
        t(0),
    ));
    assert!(owns(
        &entries(&created),
        "kubectl-client-side-apply",
        &["spec", "replicas"]
    ));

    // Another manager server-side applies a different replica count.
    let err = fm
        .apply(
            Some(&created),
            &deployment(3, nginx.clone()),
            "ops-tool",
            false,
            t(10),
        )
        .unwrap_err();
    let Error::Conflicts(conflicts) = &err else {
        panic!("expected conflicts, got {err:?}");
    };
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    assert_eq!(conflicts.0.len(), 1);
    let status = err.to_api_error().to_status();
    assert_eq!(status["code"], 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"][0],
        json!({
            "reason": "FieldManagerConflict",
            "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
            "field": ".spec.replicas"
        })
    );

    // --force-conflicts: the value is applied and ownership moves.
    let forced = fm
        .apply(
            Some(&created),
            &deployment(3, nginx),
            "ops-tool",
            true,
            t(20),
        )
        .unwrap();
    assert!(forced.changed);
    assert_eq!(forced.object["spec"]["replicas"], 3);
    let es = entries(&forced.object);
    assert!(owns(&es, "ops-tool", &["spec", "replicas"]));
    assert!(!owns(
        &es,
        "kubectl-client-side-apply",
        &["spec", "replicas"]
    ));
    assert!(
        owns(&es, "kubectl-client-side-apply", &["spec", "selector"]),
        "only the contested field moves"
    );
    let ops = entry(&es, "ops-tool");
    assert_eq!(ops.operation, Operation::Apply);
    assert_eq!(ops.api_version, "apps/v1");
    assert_eq!(ops.time, Some(t(20)));
    assert_eq!(forced.managed_fields, es);
}

#[test]
fn appliers_share_a_field_they_agree_on_and_conflict_when_they_do_not() {
    let fm = deployments();
    let c = json!([{"name": "nginx", "image": "nginx:1.25"}]);
    let a = fm
        .apply(None, &deployment(2, c.clone()), "alice", false, t(0))
        .unwrap();
    let live = persisted(a.object);

    // Same value: no conflict, both own it.
    let b = fm
        .apply(Some(&live), &deployment(2, c.clone()), "bob", false, t(1))
        .unwrap();
    assert!(!b.changed, "nothing changed in the object");
    let es = entries(&b.object);
    assert!(owns(&es, "alice", &["spec", "replicas"]));
    assert!(owns(&es, "bob", &["spec", "replicas"]));
    assert_eq!(
        entry(&es, "bob").time,
        None,
        "a no-op apply does not stamp a time"
    );

    // Different value: conflict with the other applier (appliers print no version).
    let err = fm
        .apply(Some(&b.object), &deployment(5, c), "bob", false, t(2))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#
    );
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let fm = deployments();
    let c = json!([{"name": "nginx", "image": "nginx:1.25"}]);
    let a = fm
        .apply(None, &deployment(2, c), "alice", false, t(0))
        .unwrap();
    let other = json!([{"name": "nginx", "image": "nginx:1.26"}]);
    let err = fm
        .apply(Some(&a.object), &deployment(4, other), "bob", false, t(1))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn containers_merge_by_name_and_keep_other_managers_items() {
    let fm = deployments();
    let v1 = fm
        .apply(
            None,
            &deployment(1, json!([{"name": "nginx", "image": "nginx:1.25"}])),
            "kubectl",
            false,
            t(0),
        )
        .unwrap();

    // A webhook-like manager adds a sidecar with a plain update.
    let mut injected = v1.object.clone();
    injected["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proxy", "image": "envoy:1.30"}));
    let injected = fm.update(Some(&v1.object), injected.clone(), "injector", t(1));

    // Applying a new image for nginx keeps the sidecar.
    let v2 = fm
        .apply(
            Some(&injected),
            &deployment(1, json!([{"name": "nginx", "image": "nginx:1.26"}])),
            "kubectl",
            false,
            t(2),
        )
        .unwrap();
    let containers = &v2.object["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers,
        &json!([
            {"name": "nginx", "image": "nginx:1.26"},
            {"name": "proxy", "image": "envoy:1.30"}
        ])
    );
    let es = entries(&v2.object);
    let injector = entry(&es, "injector").fields.to_fields_v1();
    assert_eq!(
        injector["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"proxy"}"#],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
}

#[test]
fn fields_an_applier_stops_applying_are_removed_unless_someone_else_owns_them() {
    let fm = FieldManager::for_builtin("", "v1", "ConfigMap").unwrap();
    let cm = |data: Value, labels: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cfg", "labels": labels}, "data": data})
    };
    let first = fm
        .apply(
            None,
            &cm(
                json!({"a": "1", "b": "2", "c": "3"}),
                json!({"team": "x", "tier": "web"}),
            ),
            "alice",
            false,
            t(0),
        )
        .unwrap();
    // Bob also applies `c` with the same value: shared ownership.
    let shared = fm
        .apply(
            Some(&first.object),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"c": "3"}}),
            "bob",
            false,
            t(1),
        )
        .unwrap();
    // Alice drops b, c and the tier label.
    let second = fm
        .apply(
            Some(&shared.object),
            &cm(json!({"a": "1"}), json!({"team": "x"})),
            "alice",
            false,
            t(2),
        )
        .unwrap();
    assert_eq!(second.object["data"], json!({"a": "1", "c": "3"}));
    assert_eq!(second.object["metadata"]["labels"], json!({"team": "x"}));
    let es = entries(&second.object);
    assert!(!owns(&es, "alice", &["data", "c"]));
    assert!(owns(&es, "bob", &["data", "c"]));

    // Dropping every label removes the labels map itself.
    let third = fm
        .apply(
            Some(&second.object),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}),
            "alice",
            false,
            t(3),
        )
        .unwrap();
    assert!(
        third.object["metadata"].get("labels").is_none(),
        "{}",
        third.object
    );
}

#[test]
fn a_removed_container_disappears_but_fields_set_by_updaters_stay() {
    let fm = deployments();
    let two = json!([{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]);
    let a = fm
        .apply(None, &deployment(1, two), "kubectl", false, t(0))
        .unwrap();
    // The controller-manager sets a field nobody applied.
    let mut live = a.object.clone();
    live["spec"]["revisionHistoryLimit"] = json!(10);
    let live = fm.update(
        Some(&a.object),
        live.clone(),
        "kube-controller-manager",
        t(1),
    );
    let b = fm
        .apply(
            Some(&live),
            &deployment(1, json!([{"name": "app", "image": "app:1"}])),
            "kubectl",
            false,
            t(2),
        )
        .unwrap();
    assert_eq!(
        b.object["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "app:1"}])
    );
    assert_eq!(b.object["spec"]["revisionHistoryLimit"], 10);
}

#[test]
fn ports_are_keyed_by_container_port_and_protocol() {
    let fm = deployments();
    let dns = json!([{"name": "dns", "image": "coredns", "ports": [
        {"containerPort": 53, "protocol": "UDP", "name": "dns"},
        {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"},
        {"containerPort": 9153, "name": "metrics"}
    ]}]);
    let a = fm
        .apply(None, &deployment(1, dns), "kubectl", false, t(0))
        .unwrap();
    let fields = entry(&entries(&a.object), "kubectl").fields.to_fields_v1();
    let ports =
        &fields["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"dns"}"#]["f:ports"];
    let keys: Vec<&String> = ports.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            r#"k:{"containerPort":53,"protocol":"TCP"}"#,
            r#"k:{"containerPort":53,"protocol":"UDP"}"#,
            r#"k:{"containerPort":9153,"protocol":"TCP"}"#,
        ],
        "the protocol key defaults to TCP"
    );
    assert_eq!(
        ports[r#"k:{"containerPort":9153,"protocol":"TCP"}"#],
        json!({".": {}, "f:containerPort": {}, "f:name": {}})
    );

    // Same port, other protocol: a new item, not a conflict.
    let b = fm
        .apply(
            Some(&a.object),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"template": {"spec": {"containers": [{"name": "dns", "ports": [
                        {"containerPort": 9153, "protocol": "UDP", "name": "metrics-udp"}]}]}}}}),
            "other",
            false,
            t(1),
        )
        .unwrap();
    let ports = b.object["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(ports, 4);
}

#[test]
fn an_unchanged_reapply_keeps_object_and_times() {
    let fm = deployments();
    let cfg = deployment(1, json!([{"name": "nginx", "image": "nginx"}]));
    let a = fm.apply(None, &cfg, "kubectl", false, t(0)).unwrap();
    let b = fm
        .apply(Some(&a.object), &cfg, "kubectl", false, t(9))
        .unwrap();
    assert!(!b.changed);
    assert_eq!(b.object, a.object);
    assert_eq!(entry(&entries(&b.object), "kubectl").time, Some(t(0)));
}

#[test]
fn the_first_apply_to_an_untracked_object_records_before_first_apply() {
    let fm = deployments();
    let untracked = persisted(deployment(1, json!([{"name": "nginx", "image": "nginx"}])));
    let a = fm
        .apply(
            Some(&untracked),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default", "labels": {"x": "y"}}}),
            "kubectl",
            false,
            t(5),
        )
        .unwrap();
    let es = entries(&a.object);
    let before = entry(&es, "before-first-apply");
    assert_eq!(before.operation, Operation::Update);
    assert!(
        before
            .fields
            .has(&FieldPath::fields(["spec", "replicas"]).0)
    );
    assert!(!before.fields.has(&FieldPath::fields(["metadata", "uid"]).0));
    assert!(owns(&es, "kubectl", &["metadata", "labels", "x"]));
    // The applier now conflicts with the pre-existing owner like with anyone.
    let err = fm
        .apply(
            Some(&a.object),
            &deployment(4, json!([{"name": "nginx", "image": "nginx"}])),
            "kubectl",
            false,
            t(6),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#),
        "{err}"
    );
}

#[test]
fn bad_configurations_are_refused_with_kubernetes_messages() {
    let fm = deployments();
    let mut wrong_kind = deployment(1, json!([]));
    wrong_kind["kind"] = json!("ReplicaSet");
    let err = fm.apply(None, &wrong_kind, "m", false, t(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid object type: apps/v1, Kind=ReplicaSet"
    );
    assert_eq!(err.to_api_error().code, 400);

    let mut with_mf = deployment(1, json!([]));
    with_mf["metadata"]["managedFields"] = json!([]);
    let err = fm.apply(None, &with_mf, "m", false, t(0)).unwrap_err();
    assert_eq!(err.to_string(), "metadata.managedFields must be nil");
    assert_eq!(err.to_api_error().code, 400);

    let mut unknown = deployment(1, json!([{"name": "a", "image": "a"}]));
    unknown["spec"]["bogus"] = json!(true);
    let err = fm.apply(None, &unknown, "m", false, t(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.bogus: field not declared in schema"
    );
    assert_eq!(err.to_api_error().code, 500);

    let dup = deployment(
        1,
        json!([{"name": "a", "image": "a"}, {"name": "a", "image": "b"}]),
    );
    let err = fm.apply(None, &dup, "m", false, t(0)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(r#".spec.template.spec.containers: duplicate entries for key [name="a"]"#),
        "{err}"
    );
}

#[test]
fn custom_resources_merge_by_their_schema() {
    let schema = Schema::custom(json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "routes": {"type": "array", "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["host", "port"],
                           "items": {"type": "object", "required": ["host"], "properties": {
                               "host": {"type": "string"},
                               "port": {"type": "integer", "default": 443},
                               "backend": {"type": "string"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }}
        }
    }));
    let fm = FieldManager::new("example.com/v1", "Gateway", schema);
    let gw = |spec: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"}, "spec": spec})
    };
    let a = fm
        .apply(
            None,
            &gw(
                json!({"size": 1, "routes": [{"host": "a.example", "backend": "x"}],
                       "extra": {"anything": {"deep": [1, 2]}}}),
            ),
            "team-a",
            false,
            t(0),
        )
        .unwrap();
    let fields = a.managed_fields[0].fields.to_fields_v1();
    assert!(
        fields["f:spec"]["f:routes"]
            .get(r#"k:{"host":"a.example","port":443}"#)
            .is_some(),
        "{fields}"
    );
    assert!(
        fields["f:spec"]["f:extra"]["f:anything"]
            .get("f:deep")
            .is_some()
    );

    let b = fm
        .apply(
            Some(&a.object),
            &gw(json!({"routes": [{"host": "b.example", "port": 80, "backend": "y"}]})),
            "team-b",
            false,
            t(1),
        )
        .unwrap();
    assert_eq!(b.object["spec"]["routes"].as_array().unwrap().len(), 2);
    let err = fm
        .apply(
            Some(&b.object),
            &gw(json!({"size": 2})),
            "team-b",
            false,
            t(2),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "team-a": .spec.size"#
    );
}

#[test]
fn atomic_lists_and_selectors_are_owned_and_contested_whole() {
    let fm = deployments();
    let with_args = |args: Value| json!([{"name": "app", "image": "app:1", "args": args}]);
    let a = fm
        .apply(
            None,
            &deployment(1, with_args(json!(["--a", "--b"]))),
            "alice",
            false,
            t(0),
        )
        .unwrap();
    let fields = entry(&entries(&a.object), "alice").fields.to_fields_v1();
    assert_eq!(
        fields["f:spec"]["f:selector"],
        json!({}),
        "LabelSelector is atomic"
    );
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#]["f:args"],
        json!({})
    );
    let err = fm
        .apply(
            Some(&a.object),
            &deployment(1, with_args(json!(["--a"]))),
            "bob",
            false,
            t(1),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "alice": .spec.template.spec.containers[name="app"].args"#
    );
    let forced = fm
        .apply(
            Some(&a.object),
            &deployment(1, with_args(json!(["--a"]))),
            "bob",
            true,
            t(2),
        )
        .unwrap();
    assert_eq!(
        forced.object["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["--a"]),
        "an atomic list is replaced, not merged"
    );
}
