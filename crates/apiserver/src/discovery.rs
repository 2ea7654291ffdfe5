//! Non-resource endpoints: health, `/version`, legacy and aggregated discovery, OpenAPI.

use api::resource::{Registry, ResourceInfo};
use api::status::ApiError;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::handler::Reply;
use crate::request::RequestInfo;
use crate::serve::State;

/// The Kubernetes version Skiff's API corresponds to.
pub(crate) const KUBE_VERSION: (&str, &str) = ("1", "33");

const AGGREGATED_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').next().is_some_and(|first| {
            first.contains("g=apidiscovery.k8s.io")
                && first.contains("v=v2")
                && first.contains("as=APIGroupDiscoveryList")
        }) || a.split(',').any(|m| {
            m.contains("g=apidiscovery.k8s.io")
                && m.contains("v=v2;")
                && m.contains("as=APIGroupDiscoveryList")
        })
    })
}

fn subresource_kind(res: &ResourceInfo, sub: &str) -> (String, String, String, Vec<&'static str>) {
    match sub {
        "scale" => (
            "autoscaling".into(),
            "v1".into(),
            "Scale".into(),
            vec!["get", "patch", "update"],
        ),
        "binding" => ("".into(), "v1".into(), "Binding".into(), vec!["create"]),
        // Served by the node API through the API server's proxy.
        "log" => ("".into(), "v1".into(), "Pod".into(), vec!["get"]),
        "exec" => (
            "".into(),
            "v1".into(),
            "PodExecOptions".into(),
            vec!["create", "get"],
        ),
        "attach" => (
            "".into(),
            "v1".into(),
            "PodAttachOptions".into(),
            vec!["create", "get"],
        ),
        "portforward" => (
            "".into(),
            "v1".into(),
            "PodPortForwardOptions".into(),
            vec!["create", "get"],
        ),
        "proxy" => (
            "".into(),
            "v1".into(),
            "NodeProxyOptions".into(),
            vec!["create", "delete", "get", "patch", "update"],
        ),
        "eviction" => (
            "policy".into(),
            "v1".into(),
            "Eviction".into(),
            vec!["create"],
        ),
        "token" => (
            "authentication.k8s.io".into(),
            "v1".into(),
            "TokenRequest".into(),
            vec!["create"],
        ),
        "finalize" => (
            res.group.clone(),
            res.version.clone(),
            res.kind.clone(),
            vec!["update"],
        ),
        _ => (
            res.group.clone(),
            res.version.clone(),
            res.kind.clone(),
            vec!["get", "patch", "update"],
        ),
    }
}

fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in registry.in_group_version(group, version) {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "shortNames": if r.short_names.is_empty() { Value::Null } else { json!(r.short_names) },
            "categories": if r.categories.is_empty() { Value::Null } else { json!(r.categories) },
        }));
        for sub in &r.subresources {
            let (g, v, k, verbs) = subresource_kind(r, sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": verbs,
            });
            if g != r.group || v != r.version {
                entry["group"] = g.into();
                entry["version"] = v.into();
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    for r in resources.iter_mut() {
        if let Some(m) = r.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

fn aggregated_group(registry: &Registry, group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry
                .in_group_version(group, v)
                .map(|r| {
                    let mut e = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        e["subresources"] = r
                            .subresources
                            .iter()
                            .map(|s| {
                                let (g, v, k, verbs) = subresource_kind(r, s);
                                json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
                            })
                            .collect();
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": vs})
}

fn aggregated(registry: &Registry, core: bool) -> Reply {
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(registry, &g, &vs))
        .collect();
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    Reply::Raw(
        200,
        AGGREGATED_CT,
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

/// The `/version` document.
pub(crate) fn version_info() -> Value {
    let (major, minor) = KUBE_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": "32",
        "gitVersion": format!("v{major}.{minor}.0+skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    })
}

/// Serves a non-resource path.
pub(crate) async fn non_resource(
    state: &State,
    info: &RequestInfo,
    accept: Option<&str>,
) -> Result<Reply, ApiError> {
    if info.verb != "get" && info.verb != "head" {
        return Err(ApiError::method_not_allowed());
    }
    let path = info.path.trim_end_matches('/');
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let snapshot = state.registry.snapshot();
    let registry = &snapshot.registry;
    match segs.as_slice() {
        ["healthz" | "livez"] => Ok(Reply::Raw(
            200,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok"),
        )),
        ["readyz"] => {
            if state.is_ready() {
                Ok(Reply::Raw(
                    200,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"ok"),
                ))
            } else {
                Ok(Reply::Raw(
                    500,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"[-]bootstrap not finished\nreadyz check failed"),
                ))
            }
        }
        ["healthz" | "livez" | "readyz", _check] => Ok(Reply::Raw(
            200,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok"),
        )),
        ["version"] => Ok(Reply::Json(200, version_info())),
        ["api"] => {
            if wants_aggregated(accept) {
                return Ok(aggregated(registry, true));
            }
            let addr = format!("{}:{}", state.config.bind_address, state.config.port);
            Ok(Reply::Json(
                200,
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}),
            ))
        }
        ["apis"] => {
            if wants_aggregated(accept) {
                return Ok(aggregated(registry, false));
            }
            let groups: Vec<Value> = registry
                .groups()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, vs)| group_entry(&g, &vs))
                .collect();
            Ok(Reply::Json(
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ))
        }
        ["api", version] => api_resource_list(registry, "", version)
            .map(|v| Reply::Json(200, v))
            .ok_or_else(|| {
                ApiError::not_found_message("the server could not find the requested resource")
            }),
        ["apis", group] => registry
            .groups()
            .into_iter()
            .find(|(g, _)| g == group)
            .map(|(g, vs)| {
                let mut e = group_entry(&g, &vs);
                e["kind"] = "APIGroup".into();
                e["apiVersion"] = "v1".into();
                Reply::Json(200, e)
            })
            .ok_or_else(|| {
                ApiError::not_found_message("the server could not find the requested resource")
            }),
        ["apis", group, version] => api_resource_list(registry, group, version)
            .map(|v| Reply::Json(200, v))
            .ok_or_else(|| {
                ApiError::not_found_message("the server could not find the requested resource")
            }),
        ["openapi", "v2"] => crate::openapi::v2(state, accept),
        ["openapi", "v3"] => Ok(crate::openapi::v3_index(state)),
        ["openapi", "v3", rest @ ..] => crate::openapi::v3_group_version(state, &rest.join("/")),
        ["metrics"] => Ok(Reply::Raw(
            200,
            "text/plain; version=0.0.4",
            Bytes::from(state.metrics_text()),
        )),
        _ => Err(ApiError::not_found_message(
            "the server could not find the requested resource",
        )),
    }
}
