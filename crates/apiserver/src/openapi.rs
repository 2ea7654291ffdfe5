//! OpenAPI v2 (`/openapi/v2`) and v3 (`/openapi/v3`, one document per group
//! version) built from k8s-openapi's schemas and the resource registry. Paths carry
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which is how
//! kubectl finds out that the server validates fields itself.

use std::collections::{BTreeMap, BTreeSet};

use api::resource::ResourceInfo;
use api::status::ApiError;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::crd::Snapshot;
use crate::handler::Reply;
use crate::serve::State;

/// The built documents, serialized once.
pub(crate) struct OpenApiDocs {
    v2: Bytes,
    v3_index: Bytes,
    v3: BTreeMap<String, Bytes>,
}

fn camel(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(camel)
        .collect()
}

fn gv_path(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    }
}

fn param(name: &str, location: &str, ty: &str, v3: bool, required: bool) -> Value {
    let mut p = json!({"name": name, "in": location, "uniqueItems": true});
    if v3 {
        p["schema"] = json!({"type": ty, "uniqueItems": true});
    } else {
        p["type"] = ty.into();
    }
    if required {
        p["required"] = true.into();
    }
    p
}

fn schema_ref(def: &str, v3: bool) -> Value {
    if v3 {
        json!({"$ref": format!("#/components/schemas/{def}")})
    } else {
        json!({"$ref": format!("#/definitions/{def}")})
    }
}

fn response(def: &str, v3: bool) -> Value {
    if v3 {
        json!({"description": "OK", "content": {"application/json": {"schema": schema_ref(def, true)}}})
    } else {
        json!({"description": "OK", "schema": schema_ref(def, false)})
    }
}

fn body(def: &str, v3: bool, content_types: &[&str]) -> (Option<Value>, Option<Value>) {
    if v3 {
        let content: Map<String, Value> = content_types
            .iter()
            .map(|ct| (ct.to_string(), json!({"schema": schema_ref(def, true)})))
            .collect();
        (Some(json!({"content": content, "required": true})), None)
    } else {
        (
            None,
            Some(
                json!({"name": "body", "in": "body", "required": true, "schema": schema_ref(def, false)}),
            ),
        )
    }
}

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Custom resources take no strategic merge patch (kubectl then sends a merge patch).
const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

struct Op<'a> {
    method: &'a str,
    action: &'a str,
    verb: &'a str,
    suffix: &'a str,
    body: Option<(&'a str, &'a [&'a str])>,
    response: String,
    write: bool,
}

fn operation(r: &ResourceInfo, op: &Op<'_>, gvk: &Value, v3: bool) -> Value {
    let ns = if r.namespaced && op.action != "list-all" {
        "Namespaced"
    } else {
        ""
    };
    let kind = if op.action == "list-all" {
        format!("{}ForAllNamespaces", r.kind)
    } else {
        r.kind.clone()
    };
    let id = format!(
        "{}{}{}{ns}{kind}{}",
        op.verb,
        group_camel(&r.group),
        camel(&r.version),
        op.suffix
    );
    let mut params = vec![param("pretty", "query", "string", v3, false)];
    if op.write {
        params.push(param("dryRun", "query", "string", v3, false));
        params.push(param("fieldManager", "query", "string", v3, false));
        params.push(param("fieldValidation", "query", "string", v3, false));
    }
    if op.method == "patch" {
        params.push(param("force", "query", "boolean", v3, false));
    }
    let mut o = json!({
        "operationId": id,
        "x-kubernetes-action": if op.action == "list-all" { "list" } else { op.action },
        "x-kubernetes-group-version-kind": gvk,
        "responses": {"200": response(&op.response, v3), "401": {"description": "Unauthorized"}},
        "tags": [format!("{}_{}", group_camel(&r.group).to_lowercase(), r.version)],
    });
    if let Some((def, cts)) = op.body {
        let (rb, bp) = body(def, v3, cts);
        if let Some(rb) = rb {
            o["requestBody"] = rb;
        }
        if let Some(bp) = bp {
            params.insert(0, bp);
        }
        if !v3 {
            o["consumes"] = json!(cts);
        }
    }
    if !v3 {
        o["produces"] = json!(["application/json", "application/yaml"]);
    }
    o["parameters"] = Value::Array(params);
    o
}

fn paths_for(r: &ResourceInfo, custom: bool, v3: bool, out: &mut Map<String, Value>) {
    let patch_types = if custom {
        CUSTOM_PATCH_TYPES
    } else {
        PATCH_TYPES
    };
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let base = gv_path(r);
    let coll = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let item = format!("{coll}/{{name}}");
    let def = r.definition.as_str();
    let list_def = format!("{def}List");
    let json_ct: &[&str] = &["application/json", "application/yaml"];
    let path_params = |path: &str, with_name: bool| {
        let mut ps = Vec::new();
        if with_name {
            ps.push(param("name", "path", "string", v3, true));
        }
        if r.namespaced && path.contains("{namespace}") {
            ps.push(param("namespace", "path", "string", v3, true));
        }
        ps
    };
    let mut collection = Map::new();
    if r.allows("list") {
        let op = Op {
            method: "get",
            action: "list",
            verb: "list",
            suffix: "",
            body: None,
            response: list_def.clone(),
            write: false,
        };
        collection.insert("get".into(), operation(r, &op, &gvk, v3));
    }
    if r.allows("create") {
        let op = Op {
            method: "post",
            action: "post",
            verb: "create",
            suffix: "",
            body: Some((def, json_ct)),
            response: def.to_string(),
            write: true,
        };
        collection.insert("post".into(), operation(r, &op, &gvk, v3));
    }
    if r.allows("deletecollection") {
        let op = Op {
            method: "delete",
            action: "deletecollection",
            verb: "deleteCollection",
            suffix: "",
            body: None,
            response: "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
            write: true,
        };
        collection.insert("delete".into(), operation(r, &op, &gvk, v3));
    }
    collection.insert("parameters".into(), Value::Array(path_params(&coll, false)));
    out.insert(coll.clone(), Value::Object(collection));
    if r.namespaced && r.allows("list") {
        let mut all = Map::new();
        let op = Op {
            method: "get",
            action: "list-all",
            verb: "list",
            suffix: "",
            body: None,
            response: list_def.clone(),
            write: false,
        };
        all.insert("get".into(), operation(r, &op, &gvk, v3));
        out.insert(format!("{base}/{}", r.plural), Value::Object(all));
    }
    let mut single = Map::new();
    for (method, action, verb, b, write) in [
        ("get", "get", "read", None, false),
        ("put", "put", "replace", Some((def, json_ct)), true),
        (
            "patch",
            "patch",
            "patch",
            Some(("io.k8s.apimachinery.pkg.apis.meta.v1.Patch", patch_types)),
            true,
        ),
        ("delete", "delete", "delete", None, true),
    ] {
        let allowed = match action {
            "get" => r.allows("get"),
            "put" => r.allows("update"),
            "patch" => r.allows("patch"),
            _ => r.allows("delete"),
        };
        if allowed {
            let response = if action == "delete" {
                "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string()
            } else {
                def.to_string()
            };
            let op = Op {
                method,
                action,
                verb,
                suffix: "",
                body: b,
                response,
                write,
            };
            single.insert(method.into(), operation(r, &op, &gvk, v3));
        }
    }
    single.insert("parameters".into(), Value::Array(path_params(&item, true)));
    out.insert(item.clone(), Value::Object(single));
    for sub in &r.subresources {
        let (resp, gvk_sub) = match sub.as_str() {
            "scale" => (
                "io.k8s.api.autoscaling.v1.Scale",
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            ),
            "status" => (def, gvk.clone()),
            _ => continue,
        };
        let suffix = camel(sub);
        let mut m = Map::new();
        for (method, action, verb, b, write) in [
            ("get", "get", "read", None, false),
            ("put", "put", "replace", Some((resp, json_ct)), true),
            (
                "patch",
                "patch",
                "patch",
                Some(("io.k8s.apimachinery.pkg.apis.meta.v1.Patch", patch_types)),
                true,
            ),
        ] {
            let op = Op {
                method,
                action,
                verb,
                suffix: &suffix,
                body: b,
                response: resp.to_string(),
                write,
            };
            m.insert(method.into(), operation(r, &op, &gvk_sub, v3));
        }
        m.insert("parameters".into(), Value::Array(path_params(&item, true)));
        out.insert(format!("{item}/{sub}"), Value::Object(m));
    }
}

/// Adds every definition reachable from `root` through `$ref`s.
fn collect_refs<'a>(
    defs: &dyn Fn(&str) -> Option<&'a Value>,
    v: &Value,
    prefix: &str,
    seen: &mut BTreeSet<String>,
) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.strip_prefix(prefix)
                && seen.insert(name.to_string())
                && let Some(d) = defs(name)
            {
                collect_refs(defs, d, prefix, seen);
            }
            for x in m.values() {
                collect_refs(defs, x, prefix, seen);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(defs, x, prefix, seen)),
        _ => {}
    }
}

fn info() -> Value {
    let (major, minor) = crate::discovery::KUBE_VERSION;
    json!({"title": "Kubernetes", "version": format!("v{major}.{minor}.0")})
}

fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

impl OpenApiDocs {
    /// Builds all documents for what a snapshot serves.
    pub(crate) fn build(snapshot: &Snapshot) -> Self {
        let registry = &snapshot.registry;
        let is_custom =
            |r: &ResourceInfo| snapshot.custom(&r.group, &r.version, &r.plural).is_some();
        let extra = |v3: bool| {
            let mut m: Map<String, Value> = crate::crd::openapi::crd_definitions(v3).clone();
            for c in snapshot.customs() {
                m.extend(crate::crd::openapi::custom_definitions(c, v3));
            }
            m
        };

        let mut paths = Map::new();
        for r in registry.all() {
            paths_for(r, is_custom(r), false, &mut paths);
        }
        let mut definitions = api::schema::definitions().clone();
        definitions.extend(extra(false));
        let v2 =
            json!({"swagger": "2.0", "info": info(), "paths": paths, "definitions": definitions});
        let v2 = Bytes::from(serde_json::to_vec(&v2).unwrap_or_default());

        let defs3 = api::schema::definitions_v3();
        let extra3 = extra(true);
        let lookup = |name: &str| defs3.get(name).or_else(|| extra3.get(name));
        let mut v3 = BTreeMap::new();
        let mut index = Map::new();
        for (group, versions) in registry.groups() {
            for version in versions {
                let mut paths = Map::new();
                for r in registry.in_group_version(&group, &version) {
                    paths_for(r, is_custom(r), true, &mut paths);
                }
                let mut seen = BTreeSet::new();
                let paths_v = Value::Object(paths);
                collect_refs(&lookup, &paths_v, "#/components/schemas/", &mut seen);
                let schemas: Map<String, Value> = seen
                    .iter()
                    .filter_map(|n| lookup(n).map(|d| (n.clone(), d.clone())))
                    .collect();
                let doc = json!({"openapi": "3.0.0", "info": info(), "paths": paths_v, "components": {"schemas": schemas}});
                let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
                let key = if group.is_empty() {
                    format!("api/{version}")
                } else {
                    format!("apis/{group}/{version}")
                };
                index.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", fnv(&bytes))}),
                );
                v3.insert(key, bytes);
            }
        }
        let v3_index =
            Bytes::from(serde_json::to_vec(&json!({"paths": index})).unwrap_or_default());
        Self { v2, v3_index, v3 }
    }
}

/// `/openapi/v2` (JSON only; a protobuf-only client gets 406 and falls back).
pub(crate) fn v2(state: &State, accept: Option<&str>) -> Result<Reply, ApiError> {
    if let Some(a) = accept
        && !a.contains("json")
        && !a.contains("*/*")
    {
        return Err(ApiError::not_acceptable(
            "only application/json is served for /openapi/v2",
        ));
    }
    let snapshot = state.registry.snapshot();
    Ok(Reply::Raw(
        200,
        "application/json",
        snapshot.openapi().v2.clone(),
    ))
}

/// `/openapi/v3`.
pub(crate) fn v3_index(state: &State) -> Reply {
    let snapshot = state.registry.snapshot();
    Reply::Raw(200, "application/json", snapshot.openapi().v3_index.clone())
}

/// `/openapi/v3/apis/{group}/{version}`.
pub(crate) fn v3_group_version(state: &State, key: &str) -> Result<Reply, ApiError> {
    state
        .registry
        .snapshot()
        .openapi()
        .v3
        .get(key)
        .map(|b| Reply::Raw(200, "application/json", b.clone()))
        .ok_or_else(|| {
            ApiError::not_found_message("the server could not find the requested resource")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_kubernetes_naming() {
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_camel(""), "Core");
        let reg = api::resource::Registry::builtin();
        let r = reg.lookup("apps", "v1", "deployments").expect("served");
        let mut paths = Map::new();
        paths_for(r, false, true, &mut paths);
        let patch = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(
            patch["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
    }
}
