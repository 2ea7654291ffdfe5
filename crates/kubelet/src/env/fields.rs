//! The downward API: pod fields (`fieldRef`) and container resources
//! (`resourceFieldRef`) as strings, the way the kubelet renders them for
//! environment variables and downwardAPI volume files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A node's allocatable resources (`status.allocatable`), the default of a
/// container limit that is not set.
pub(crate) type Allocatable = BTreeMap<String, Quantity>;

/// The resources whose missing limit defaults to the node's allocatable.
const DEFAULTED_LIMITS: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Splits `metadata.labels['key']` into (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    Some((base, key))
}

/// Checks the selector's apiVersion (only `v1`) and that the path is one the
/// downward API knows, like `ConvertDownwardAPIFieldLabel`.
fn checked_path(selector: &ObjectFieldSelector) -> Result<&str, String> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    let path = selector.field_path.as_str();
    if let Some((base, _)) = split_subscript(path) {
        return match base {
            "metadata.annotations" | "metadata.labels" => Ok(path),
            _ => Err(format!("field label does not support subscript: {path}")),
        };
    }
    match path {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(path),
        "spec.host" => Ok("spec.nodeName"),
        _ => Err(format!("field label not supported: {path}")),
    }
}

/// A pod's metadata field as the downward API volume writes it: whole label and
/// annotation maps as sorted `key="value"` lines.
pub(crate) fn metadata_field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.annotations" => meta.annotations.as_ref(),
            "metadata.labels" => meta.labels.as_ref(),
            _ => return Err(format!("unsupported fieldPath: {path}")),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let empty = BTreeMap::new();
    Ok(match path {
        "metadata.annotations" => format_map(meta.annotations.as_ref().unwrap_or(&empty)),
        "metadata.labels" => format_map(meta.labels.as_ref().unwrap_or(&empty)),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// The value of a `fieldRef` in a volume: metadata fields only.
pub(crate) fn volume_field(pod: &Pod, selector: &ObjectFieldSelector) -> Result<String, String> {
    let path = checked_path(selector)?;
    metadata_field(pod, path)
}

/// The value of a `fieldRef` in an environment variable. `pod_ips` and `host_ips`
/// are what the agent knows now (the primary first); they may not be in the Pod's
/// status yet.
pub(crate) fn env_field(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    pod_ips: &[&str],
    host_ips: &[&str],
) -> Result<String, String> {
    let path = checked_path(selector)?;
    let spec = pod.spec.as_ref();
    Ok(match path {
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ips.first().copied().unwrap_or_default().to_string(),
        "status.hostIPs" => host_ips.join(","),
        "status.podIP" => pod_ips.first().copied().unwrap_or_default().to_string(),
        "status.podIPs" => pod_ips.join(","),
        other => metadata_field(pod, other)?,
    })
}

/// Go's `%v=%q` lines of a map, sorted by key, without a trailing newline.
fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A double-quoted Go string literal (`strconv.Quote`).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether resolving `resource` for `container` needs the node's allocatable: a
/// limit of cpu, memory or ephemeral-storage that the container does not set.
pub(crate) fn needs_allocatable(resource: &str, container: &Container) -> bool {
    let Some(name) = resource.strip_prefix("limits.") else {
        return false;
    };
    DEFAULTED_LIMITS.contains(&name) && limit(container, name).is_none()
}

/// A container's limit of `name`, unless unset or zero.
fn limit<'a>(container: &'a Container, name: &str) -> Option<&'a Quantity> {
    container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get(name))
        .filter(|q| api::quantity::milli_value(&q.0).unwrap_or(0) != 0)
}

/// The value of a `resourceFieldRef` for `container`, divided by the divisor and
/// rounded up; a missing cpu/memory/ephemeral-storage limit is the node's
/// allocatable.
pub(crate) fn resource_value(
    selector: &ResourceFieldSelector,
    container: &Container,
    allocatable: &Allocatable,
) -> Result<String, String> {
    let resource = selector.resource.as_str();
    let unsupported = || format!("unsupported container resource : {resource}");
    let (kind, name) = resource.split_once('.').ok_or_else(unsupported)?;
    let known = DEFAULTED_LIMITS.contains(&name) || name.starts_with("hugepages-");
    if !known {
        return Err(unsupported());
    }
    let quantity = match kind {
        "limits" => limit(container, name).or_else(|| {
            if DEFAULTED_LIMITS.contains(&name) {
                allocatable.get(name)
            } else {
                None
            }
        }),
        "requests" => container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name)),
        _ => return Err(unsupported()),
    };
    let q = quantity.map(|q| q.0.as_str()).unwrap_or("0");
    let divisor = selector
        .divisor
        .as_ref()
        .map(|d| d.0.as_str())
        .filter(|d| api::quantity::milli_value(d).is_some_and(|v| v != 0))
        .unwrap_or("1");
    let bad = |s: &str| format!("invalid quantity {s:?} for {resource}");
    let (num, den) = if name == "cpu" {
        (
            api::quantity::milli_value(q).ok_or_else(|| bad(q))?,
            api::quantity::milli_value(divisor).ok_or_else(|| bad(divisor))?,
        )
    } else {
        (
            api::quantity::value(q).ok_or_else(|| bad(q))?,
            api::quantity::value(divisor).ok_or_else(|| bad(divisor))?,
        )
    };
    if den == 0 {
        return Err(bad(divisor));
    }
    // Go divides as float64 and takes the ceiling; do the same.
    let v = (num as f64 / den as f64).ceil() as i64;
    Ok(v.to_string())
}
