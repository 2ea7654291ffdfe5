//! CustomResourceDefinitions against the real `skiff server` with kubectl and the
//! kube crate: a CRD with a structural schema, printer columns and the status and
//! scale subresources is served once Established (discovery, short names,
//! categories, OpenAPI for `kubectl explain`); custom resources are validated with
//! Kubernetes' messages, pruned and defaulted; status is written only through
//! `/status`; strategic merge patch is refused as Kubernetes refuses it; `kubectl
//! scale`, edit-style replace, watches, selectors, RBAC, namespace admission and
//! garbage collection work as for built-ins; name conflicts leave a CRD unaccepted;
//! several versions share one storage version; a restart serves them at once;
//! deleting a CRD deletes its objects and its resource.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use support::TestServer;

const WAIT: Duration = Duration::from_secs(90);

/// A CronTab CRD in `group` (each test its own), with a schema, printer columns,
/// the status and scale subresources, a short name and the `all` category.
fn crontab_crd(group: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
                description: When the job runs.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){{4}}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 0
                maximum: 10
                default: 1
              policy:
                type: string
                enum: [Allow, Forbid]
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Image
      type: string
      jsonPath: .spec.image
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#
    )
}

fn crontab(group: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: {group}/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n{spec}\n")
}

/// Applies the CRD and waits for Established, as a user would.
fn install(s: &TestServer, group: &str) {
    s.apply(&crontab_crd(group));
    s.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        &format!("crd/crontabs.{group}"),
    ]);
}

fn stderr_of(s: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let out = s.kubectl_stdin(args, stdin);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn get_json(s: &TestServer, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl_ok(&args)).expect("kubectl -o json")
}

#[test]
fn kubectl_gets_custom_resources_with_their_printer_columns_right_after_establishment() {
    let s = TestServer::start();
    let group = "get.example.com";
    // Fill kubectl's discovery cache before the CRD exists.
    s.kubectl_ok(&["get", "configmaps"]);
    install(&s, group);
    let empty = s.kubectl(&["get", "crontabs"]);
    assert!(
        empty.status.success(),
        "kubectl get crontabs right after Established: {}",
        String::from_utf8_lossy(&empty.stderr)
    );
    s.apply(&crontab(
        group,
        "nightly",
        "  cronSpec: \"0 3 * * *\"\n  image: busybox",
    ));
    let table = s.kubectl_ok(&["get", "crontabs"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    let row = lines.next().expect("a row");
    assert!(
        row.starts_with("nightly") && row.contains("0 3 * * *") && row.contains(" 1 "),
        "defaulted replicas and the cron spec are printed: {table}"
    );
    let wide = s.kubectl_ok(&["get", "ct", "-o", "wide"]);
    assert!(
        wide.lines().next().is_some_and(|h| h.contains("IMAGE")) && wide.contains("busybox"),
        "{wide}"
    );
    let full = s.kubectl_ok(&["get", &format!("crontabs.v1.{group}"), "nightly"]);
    assert!(full.contains("nightly"), "{full}");
    let all = s.kubectl_ok(&["get", "all"]);
    assert!(
        all.contains(&format!("crontab.{group}/nightly")),
        "the all category includes CronTabs: {all}"
    );
    let explain = s.kubectl_ok(&["explain", "crontab.spec.cronSpec"]);
    assert!(explain.contains("When the job runs."), "{explain}");
    let resources = s.kubectl_ok(&["api-resources", "--api-group", group]);
    assert!(
        resources.contains("crontabs") && resources.contains("ct"),
        "{resources}"
    );
    let crds = s.kubectl_ok(&["get", "crd"]);
    assert!(
        crds.contains(&format!("crontabs.{group}")) && crds.contains("CREATED AT"),
        "{crds}"
    );
}

#[test]
fn invalid_custom_resources_are_refused_and_unknown_fields_pruned() {
    let s = TestServer::start();
    let group = "valid.example.com";
    install(&s, group);
    let bad = crontab(
        group,
        "bad",
        "  cronSpec: \"* * * *\"\n  replicas: 15\n  policy: Sometimes",
    );
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&bad));
    for want in [
        r#"The CronTab "bad" is invalid"#,
        "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10",
        r#"spec.cronSpec: Invalid value: "* * * *": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
        r#"spec.policy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid""#,
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let missing = crontab(group, "missing", "  image: x");
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&missing));
    assert!(err.contains("spec.cronSpec: Required value"), "{err}");
    let wrong_type = crontab(
        group,
        "typed",
        "  cronSpec: \"* * * * *\"\n  replicas: three",
    );
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&wrong_type));
    assert!(
        err.contains(r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#),
        "{err}"
    );

    // Unknown fields: kubectl's default (Strict) refuses them as Kubernetes does ...
    let extra = crontab(
        group,
        "extra",
        "  cronSpec: \"* * * * *\"\n  bogus: 1\n  nested: {a: b}",
    );
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&extra));
    assert!(
        err.contains(r#"CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: unknown field "spec.bogus", unknown field "spec.nested""#),
        "{err}"
    );
    // ... warns about them when asked to, and prunes them.
    let out = s.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], Some(&extra));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"unknown field "spec.bogus""#),
        "a warning names the field"
    );
    let stored = get_json(&s, &["crontab", "extra"]);
    assert_eq!(
        stored["spec"],
        json!({"cronSpec": "* * * * *", "replicas": 1}),
        "unknown fields pruned, the default applied"
    );
}

#[test]
fn status_is_written_only_through_the_status_subresource() {
    let s = TestServer::start();
    let group = "status.example.com";
    install(&s, group);
    s.apply(&crontab(group, "job", "  cronSpec: \"* * * * *\""));
    let generation =
        |s: &TestServer| get_json(s, &["crontab", "job"])["metadata"]["generation"].clone();
    assert_eq!(generation(&s), json!(1));

    s.kubectl_ok(&[
        "patch",
        "crontab",
        "job",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ]);
    let obj = get_json(&s, &["crontab", "job"]);
    assert!(
        obj.get("status").is_none(),
        "status through the main resource is ignored: {obj}"
    );
    assert_eq!(obj["metadata"]["generation"], 1);

    s.kubectl_ok(&[
        "patch",
        "crontab",
        "job",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"selector":"app=job"},"spec":{"image":"ignored"}}"#,
    ]);
    let obj = get_json(&s, &["crontab", "job"]);
    assert_eq!(obj["status"], json!({"replicas": 2, "selector": "app=job"}));
    assert!(
        obj["spec"].get("image").is_none(),
        "/status ignores spec: {obj}"
    );
    assert_eq!(obj["metadata"]["generation"], 1);

    // An edit-style update (GET, change, PUT) changes the spec and bumps generation.
    let mut edited = obj.clone();
    edited["spec"]["image"] = "busybox:1.36".into();
    edited["status"]["replicas"] = 9.into();
    let out = s.kubectl_stdin(&["replace", "-f", "-"], Some(&edited.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let obj = get_json(&s, &["crontab", "job"]);
    assert_eq!(obj["spec"]["image"], "busybox:1.36");
    assert_eq!(
        obj["status"]["replicas"], 2,
        "replace keeps the stored status"
    );
    assert_eq!(generation(&s), json!(2));

    // kubectl patch's default (strategic merge) is refused as for any custom resource.
    let err = stderr_of(
        &s,
        &["patch", "crontab", "job", "-p", r#"{"spec":{"image":"x"}}"#],
        None,
    );
    assert!(
        err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );
    s.kubectl_ok(&[
        "patch",
        "crontab",
        "job",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/image","value":"nginx"}]"#,
    ]);
    assert_eq!(get_json(&s, &["crontab", "job"])["spec"]["image"], "nginx");

    // The scale subresource: kubectl scale and the Scale object.
    s.kubectl_ok(&["scale", "crontab", "job", "--replicas=4"]);
    assert_eq!(get_json(&s, &["crontab", "job"])["spec"]["replicas"], 4);
    let scale: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/apis/{group}/v1/namespaces/default/crontabs/job/scale"),
    ]))
    .expect("Scale JSON");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(
        scale["status"],
        json!({"replicas": 2, "selector": "app=job"})
    );
    let err = stderr_of(&s, &["scale", "crontab", "job", "--replicas=11"], None);
    assert!(
        err.contains("spec.replicas in body should be less than or equal to 10"),
        "{err}"
    );
}

fn crontab_resource(group: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", "CronTab"), "crontabs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kube_dynamic_watch_sees_custom_resource_events() {
    let s = TestServer::start();
    let group = "watch.example.com";
    install(&s, group);
    let client = s.client().await;
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &crontab_resource(group));
    let stream = api
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .expect("watch crontabs");
    let mut stream = stream.boxed();
    let mut obj = DynamicObject::new("watched", &crontab_resource(group));
    obj.data = json!({"spec": {"cronSpec": "*/5 * * * *"}});
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    api.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "busybox"}})),
    )
    .await
    .expect("patch");
    api.delete("watched", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
            .await
            .expect("an event in time")
            .expect("a watch event")
            .expect("the stream stays open");
        match ev {
            WatchEvent::Added(o) => {
                assert_eq!(
                    o.data["spec"]["replicas"], 1,
                    "defaults are in watch events"
                );
                seen.push("ADDED");
            }
            WatchEvent::Modified(o) => {
                assert_eq!(o.data["spec"]["image"], "busybox");
                seen.push("MODIFIED");
            }
            WatchEvent::Deleted(o) => {
                assert_eq!(o.metadata.name.as_deref(), Some("watched"));
                seen.push("DELETED");
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        }
    }
    assert_eq!(seen, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resource_owning_a_configmap_takes_it_along_when_deleted() {
    let s = TestServer::start();
    let group = "gc.example.com";
    install(&s, group);
    let client = s.client().await;
    let crontabs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &crontab_resource(group));
    let mut owner = DynamicObject::new("owner", &crontab_resource(group));
    owner.data = json!({"spec": {"cronSpec": "* * * * *"}});
    let owner = crontabs
        .create(&PostParams::default(), &owner)
        .await
        .expect("create the owner");
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let child: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [{
            "apiVersion": format!("{group}/v1"), "kind": "CronTab", "name": "owner",
            "uid": owner.metadata.uid, "blockOwnerDeletion": true,
        }]}}))
        .expect("configmap");
    cms.create(&PostParams::default(), &child)
        .await
        .expect("create the child");
    s.kubectl_ok(&["delete", "crontab", "owner"]);
    cluster::eventually(
        WAIT,
        "the owned ConfigMap to be garbage-collected",
        || async {
            cms.get_opt("child")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[test]
fn deleting_the_crd_deletes_its_objects_and_its_resource() {
    let s = TestServer::start();
    let group = "delete.example.com";
    install(&s, group);
    s.kubectl_ok(&["create", "namespace", "other"]);
    for (ns, name) in [("default", "a"), ("default", "b"), ("other", "c")] {
        let out = s.kubectl_stdin(
            &["apply", "-n", ns, "-f", "-"],
            Some(&crontab(group, name, "  cronSpec: \"* * * * *\"")),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // One object holds a finalizer: the CRD waits for it.
    s.kubectl_ok(&[
        "patch",
        "crontab",
        "b",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let out = s.kubectl(&[
        "delete",
        "crd",
        &format!("crontabs.{group}"),
        "--wait=false",
    ]);
    assert!(out.status.success());
    let crd =
        |s: &TestServer| s.kubectl(&["get", "crd", &format!("crontabs.{group}"), "-o", "json"]);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let out = crd(&s);
        let obj: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let terminating = obj["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Terminating")
            .cloned();
        if let Some(t) = terminating
            && t["reason"] == "InstanceDeletionInProgress"
        {
            assert_eq!(
                obj["metadata"]["finalizers"],
                json!(["customresourcecleanup.apiextensions.k8s.io"])
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Terminating condition: {obj}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let remaining = s.kubectl_ok(&["get", "crontabs", "-A", "-o", "name"]);
    assert_eq!(
        remaining.trim(),
        "crontab.delete.example.com/b",
        "only the held object stays"
    );
    let err = stderr_of(
        &s,
        &["apply", "-f", "-"],
        Some(&crontab(group, "late", "  cronSpec: \"* * * * *\"")),
    );
    assert!(
        err.contains("create not allowed while custom resource definition is terminating"),
        "{err}"
    );
    s.kubectl_ok(&[
        "patch",
        "crontab",
        "b",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    s.kubectl_ok(&[
        "wait",
        "--for=delete",
        "--timeout=60s",
        &format!("crd/crontabs.{group}"),
    ]);
    let resources = s.kubectl_ok(&["api-resources"]);
    assert!(!resources.contains("crontabs"), "{resources}");
    let (code, _) = s.curl_admin(&format!("/apis/{group}/v1"), &[]);
    assert_eq!(code, 404, "the group version is gone from discovery");
    let err = stderr_of(&s, &["get", "crontabs"], None);
    assert!(
        err.contains(r#"the server doesn't have a resource type "crontabs""#),
        "{err}"
    );
    // Installing it again starts empty.
    install(&s, group);
    let list = s.kubectl_ok(&["get", "crontabs", "-A", "-o", "name"]);
    assert!(list.trim().is_empty(), "{list}");
}

#[test]
fn a_crd_whose_kind_another_crd_of_the_group_holds_is_not_accepted() {
    let s = TestServer::start();
    let group = "names.example.com";
    install(&s, group);
    let second = crontab_crd(group)
        .replace("crontabs.", "crontabz.")
        .replace("plural: crontabs", "plural: crontabz")
        .replace("singular: crontab", "singular: crontabz")
        .replace("shortNames: [ct]", "shortNames: [ctz]");
    s.apply(&second);
    let name = format!("crontabz.{group}");
    let deadline = std::time::Instant::now() + WAIT;
    let cond = loop {
        let obj = get_json(&s, &["crd", &name]);
        let c = obj["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "NamesAccepted")
            .cloned();
        if let Some(c) = c {
            break (c, obj);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no NamesAccepted: {obj}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (names_accepted, obj) = cond;
    assert_eq!(names_accepted["status"], "False", "{obj}");
    assert_eq!(names_accepted["reason"], "ListKindConflict", "{obj}");
    assert_eq!(
        names_accepted["message"],
        r#""CronTabList" is already in use"#
    );
    let established = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Established")
        .cloned()
        .expect("Established");
    assert_eq!(established["status"], "False");
    assert_eq!(established["reason"], "NotAccepted");
    let err = stderr_of(&s, &["get", "crontabz"], None);
    assert!(err.contains("doesn't have a resource type"), "{err}");
}

#[test]
fn invalid_crds_are_refused_with_kubernetes_messages() {
    let s = TestServer::start();
    let crd = crontab_crd("refused.example.com")
        .replace("            required: [cronSpec]\n", "")
        .replace(
            "              image:\n                type: string\n",
            "              image: {}\n",
        )
        .replace(
            "metadata:\n  name: crontabs.refused.example.com",
            "metadata:\n  name: crontabs.wrong.example.com",
        );
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&crd));
    for want in [
        r#"The CustomResourceDefinition "crontabs.wrong.example.com" is invalid"#,
        r#"metadata.name: Invalid value: "crontabs.wrong.example.com": must be spec.names.plural+"."+spec.group"#,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[image].type: Required value: must not be empty for specified object fields",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let no_dot = crontab_crd("nodot");
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&no_dot));
    assert!(
        err.contains(
            r#"spec.group: Invalid value: "nodot": should be a domain with at least one dot"#
        ),
        "{err}"
    );
    let two_storage = crontab_crd("storage.example.com").replace(
        "  versions:\n  - name: v1",
        "  versions:\n  - name: v2\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object}\n  - name: v1",
    );
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&two_storage));
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    let preserve = crontab_crd("preserve.example.com").replace(
        "          status:\n            type: object\n",
        "          status:\n            type: object\n            x-kubernetes-preserve-unknown-fields: false\n",
    );
    let err = stderr_of(&s, &["apply", "-f", "-"], Some(&preserve));
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.properties[status].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"),
        "{err}"
    );
}

#[test]
fn several_served_versions_share_one_storage_version() {
    let s = TestServer::start();
    let group = "versions.example.com";
    let crd = crontab_crd(group).replace(
        "  versions:\n  - name: v1",
        "  versions:\n  - name: v1beta1\n    served: true\n    storage: false\n    deprecated: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n  - name: v1",
    );
    s.apply(&crd);
    s.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        &format!("crd/crontabs.{group}"),
    ]);
    let old = format!(
        "apiVersion: {group}/v1beta1\nkind: CronTab\nmetadata:\n  name: legacy\nspec:\n  cronSpec: \"* * * * *\"\n"
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&old));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("{group}/v1beta1 CronTab is deprecated")),
        "a deprecated version warns"
    );
    let v1 = get_json(&s, &[&format!("crontabs.v1.{group}"), "legacy"]);
    assert_eq!(v1["apiVersion"], format!("{group}/v1"));
    assert_eq!(
        v1["spec"]["replicas"], 1,
        "read through v1, v1's defaults apply"
    );
    let beta = get_json(&s, &[&format!("crontabs.v1beta1.{group}"), "legacy"]);
    assert_eq!(beta["apiVersion"], format!("{group}/v1beta1"));
    let stored = get_json(&s, &["crd", &format!("crontabs.{group}")]);
    assert_eq!(stored["status"]["storedVersions"], json!(["v1"]));
}

#[test]
fn custom_resources_are_served_right_after_a_restart() {
    let mut s = TestServer::start();
    let group = "restart.example.com";
    install(&s, group);
    s.apply(&crontab(group, "kept", "  cronSpec: \"* * * * *\""));
    assert_eq!(s.terminate(), Some(0), "{}", s.log());
    s.spawn_and_wait();
    // Ready means the stored CRDs' resources are served.
    let got = s.kubectl_ok(&["get", "ct", "kept", "-o", "name"]);
    assert_eq!(got.trim(), format!("crontab.{group}/kept"));
}

#[test]
fn selectors_and_rbac_apply_to_custom_resources() {
    let s = TestServer::start();
    let group = "rbac.example.com";
    install(&s, group);
    for (name, team) in [("one", "red"), ("two", "blue")] {
        let obj = format!(
            "apiVersion: {group}/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  labels: {{team: {team}}}\nspec:\n  cronSpec: \"* * * * *\"\n"
        );
        s.apply(&obj);
    }
    let by_label = s.kubectl_ok(&["get", "ct", "-l", "team=red", "-o", "name"]);
    assert_eq!(by_label.trim(), format!("crontab.{group}/one"));
    let by_field = s.kubectl_ok(&[
        "get",
        "ct",
        "--field-selector",
        "metadata.name=two",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), format!("crontab.{group}/two"));
    let err = stderr_of(&s, &["get", "ct", "--field-selector", "spec.image=x"], None);
    assert!(
        err.contains("field label not supported: spec.image"),
        "{err}"
    );
    // NamespaceLifecycle admission, as for built-ins.
    let err = stderr_of(
        &s,
        &["apply", "-n", "nowhere", "-f", "-"],
        Some(&crontab(group, "lost", "  cronSpec: \"* * * * *\"")),
    );
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");

    // A user may read CronTabs through a ClusterRole, and nothing more.
    let tls = s.data_dir().join("server/tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).expect("the cluster CA");
    let (cert, key) =
        apiserver::sign_client_cert(&read("ca.crt"), &read("ca.key"), "cron-reader", &[])
            .expect("a user certificate");
    let kubeconfig = s.data_dir().join("cron-reader.yaml");
    apiserver::write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{}", s.port),
        &read("ca.crt"),
        &cert,
        &key,
        0o600,
    )
    .expect("kubeconfig");
    s.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: cron-reader\nrules:\n- apiGroups: [{group}]\n  resources: [crontabs]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: cron-reader\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cron-reader}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: cron-reader}}\n"
    ));
    let as_reader = |args: &[&str]| {
        std::process::Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", s.data_dir())
            .arg("--cache-dir")
            .arg(s.data_dir().join("reader-cache"))
            .args(args)
            .output()
            .expect("kubectl")
    };
    let out = as_reader(&["get", &format!("crontabs.{group}"), "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = as_reader(&["delete", &format!("crontabs.{group}"), "one"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(r#"crontabs.{group} "one" is forbidden: User "cron-reader" cannot delete resource "crontabs" in API group "{group}" in the namespace "default""#)),
        "{err}"
    );
}
