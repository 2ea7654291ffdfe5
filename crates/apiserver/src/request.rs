//! What a request is about, parsed from its method, path and query
//! (kube-apiserver's RequestInfoResolver).

use std::collections::HashMap;

use api::status::ApiError;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RequestInfo {
    /// The raw path.
    pub path: String,
    /// True for /api and /apis resource paths.
    pub is_resource: bool,
    /// get, list, watch, create, update, patch, delete, deletecollection (or the HTTP
    /// method in lower case for non-resource paths).
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: String,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Decoded query parameters (last value wins).
    pub query: HashMap<String, String>,
}

impl RequestInfo {
    /// A boolean query flag (`true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.query.get(name).map(String::as_str), Some("true" | "1"))
    }

    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

/// Subresources of a namespace object (`/api/v1/namespaces/{name}/{sub}`).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into a map.
pub(crate) fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

/// Parses method + path + query. Non-resource paths come back with `is_resource = false`.
pub(crate) fn parse(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Result<RequestInfo, ApiError> {
    let query = parse_query(query);
    let mut info = RequestInfo {
        path: path.to_string(),
        query,
        ..Default::default()
    };
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let rest: &[String] = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 3 => {
            info.version = segs[1].clone();
            &segs[2..]
        }
        Some("apis") if segs.len() >= 4 => {
            info.group = segs[1].clone();
            info.version = segs[2].clone();
            &segs[3..]
        }
        _ => {
            info.verb = method.as_str().to_lowercase();
            return Ok(info);
        }
    };
    info.is_resource = true;
    let mut parts: Vec<String> = rest.to_vec();
    let mut watch_path = false;
    if parts.first().map(String::as_str) == Some("watch") {
        watch_path = true;
        parts.remove(0);
    }
    if parts.first().map(String::as_str) == Some("namespaces") && parts.len() > 1 {
        let ns = parts[1].clone();
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2].as_str()) {
            info.namespace = Some(ns);
            parts.drain(0..2);
        } else {
            // The namespace object itself (or one of its subresources).
            info.namespace = None;
            info.name = Some(ns.clone());
            info.resource = "namespaces".into();
            if parts.len() > 2 {
                info.subresource = parts[2].clone();
            }
            parts.clear();
        }
    }
    if !parts.is_empty() {
        info.resource = parts[0].clone();
        if parts.len() > 1 {
            info.name = Some(parts[1].clone());
        }
        if parts.len() > 2 {
            info.subresource = parts[2].clone();
        }
        if parts.len() > 3 {
            return Err(ApiError::not_found_message(
                "the server could not find the requested resource",
            ));
        }
    }
    if info.resource.is_empty() {
        return Err(ApiError::not_found_message(
            "the server could not find the requested resource",
        ));
    }
    let has_name = info.name.is_some();
    info.verb = match *method {
        http::Method::GET | http::Method::HEAD => {
            if watch_path || info.flag("watch") {
                "watch"
            } else if has_name {
                "get"
            } else {
                "list"
            }
        }
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => {
            if has_name {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    .to_string();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn namespaced_object_paths_resolve_all_parts() {
        let r = parse(
            &Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            None,
        )
        .expect("parses");
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.resource.as_str()),
            ("apps", "v1", "deployments")
        );
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource, "scale");
        assert_eq!(r.verb, "get");
    }

    #[test]
    fn namespace_status_is_a_subresource_of_the_namespace() {
        let r = parse(&Method::PUT, "/api/v1/namespaces/kube-system/status", None).expect("parses");
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.subresource, "status");
        assert_eq!(r.verb, "update");
    }

    #[test]
    fn list_and_watch_are_told_apart_by_the_query() {
        let r = parse(
            &Method::GET,
            "/api/v1/pods",
            Some("watch=true&labelSelector=app%3Dweb"),
        )
        .expect("parses");
        assert_eq!(r.verb, "watch");
        assert_eq!(r.param("labelSelector"), Some("app=web"));
        let r = parse(&Method::GET, "/api/v1/namespaces/x/pods", None).expect("parses");
        assert_eq!(r.verb, "list");
        let r = parse(&Method::DELETE, "/api/v1/namespaces/x/pods", None).expect("parses");
        assert_eq!(r.verb, "deletecollection");
    }

    #[test]
    fn non_resource_paths_are_marked() {
        let r = parse(&Method::GET, "/healthz", None).expect("parses");
        assert!(!r.is_resource);
        let r = parse(&Method::GET, "/apis/apps/v1", None).expect("parses");
        assert!(!r.is_resource);
    }

    #[test]
    fn percent_decoding_handles_truncated_escapes() {
        assert_eq!(percent_decode("a%3Db"), "a=b");
        assert_eq!(percent_decode("a%3"), "a%3");
        assert_eq!(percent_decode("%"), "%");
    }
}
