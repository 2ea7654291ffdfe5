//! Pods and pod templates: defaults (kubelet-visible fields users see in
//! `kubectl get -o yaml`), validation of the pod spec, and what may change on update.

use api::status::FieldError;
use serde_json::{Value, json};

use super::{Strategy, non_negative};
use crate::object::default_field;

/// Whether an image reference ends in an explicit tag other than `latest` or a digest.
fn pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag != "latest",
        None => false,
    }
}

fn default_probe(probe: &mut Value) {
    if !probe.is_object() {
        return;
    }
    default_field(probe, "", "timeoutSeconds", json!(1));
    default_field(probe, "", "periodSeconds", json!(10));
    default_field(probe, "", "successThreshold", json!(1));
    default_field(probe, "", "failureThreshold", json!(3));
    if probe.get("httpGet").is_some_and(Value::is_object) {
        default_field(probe, "httpGet", "path", json!("/"));
        default_field(probe, "httpGet", "scheme", json!("HTTP"));
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let policy = match c.get("image").and_then(Value::as_str) {
        Some(img) if pinned(img) => "IfNotPresent",
        _ => "Always",
    };
    default_field(c, "", "imagePullPolicy", json!(policy));
    default_field(
        c,
        "",
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    default_field(c, "", "terminationMessagePolicy", json!("File"));
    default_field(c, "", "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_field(p, "", "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if e.pointer("/valueFrom/fieldRef")
                .is_some_and(Value::is_object)
            {
                default_field(e, "valueFrom.fieldRef", "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
    // Requests default to limits when only limits are given.
    if let Some(limits) = c
        .pointer("/resources/limits")
        .cloned()
        .and_then(|l| l.as_object().cloned())
    {
        let res = c.get_mut("resources").expect("defaulted above");
        let requests = crate::object::path_mut(res, "requests");
        if !requests.is_object() {
            *requests = json!({});
        }
        let req = requests.as_object_mut().expect("object");
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

fn default_volume(v: &mut Value) {
    for (source, field) in [
        ("secret", "defaultMode"),
        ("configMap", "defaultMode"),
        ("projected", "defaultMode"),
    ] {
        if v.get(source).is_some_and(Value::is_object) {
            default_field(v, source, field, json!(420));
        }
    }
    if v.get("hostPath").is_some_and(Value::is_object) {
        default_field(v, "hostPath", "type", json!(""));
    }
}

/// Fills the defaults of a PodSpec (as the API server's v1 defaulting does).
pub(crate) fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, "", "restartPolicy", json!("Always"));
    default_field(spec, "", "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "", "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "", "securityContext", json!({}));
    default_field(spec, "", "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(vs) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        vs.iter_mut().for_each(default_volume);
    }
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

fn validate_containers(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    list: &str,
    base: &str,
    names: &mut Vec<String>,
) {
    let Some(cs) = spec.get(list).and_then(Value::as_array) else {
        return;
    };
    for (i, c) in cs.iter().enumerate() {
        let at = format!("{base}.{list}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(format!("{at}.name"), "")),
            Some(n) => {
                for msg in api::selector::is_dns1123_label(n) {
                    errs.push(FieldError::invalid(format!("{at}.name"), n, msg));
                }
                if names.iter().any(|x| x == n) {
                    errs.push(FieldError::duplicate(format!("{at}.name"), n));
                }
                names.push(n.to_string());
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            errs.push(FieldError::required(format!("{at}.image"), ""));
        }
        if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str)
            && !PULL_POLICIES.contains(&p)
        {
            errs.push(FieldError::not_supported(
                format!("{at}.imagePullPolicy"),
                p,
                PULL_POLICIES,
            ));
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            for (j, p) in ports.iter().enumerate() {
                let pat = format!("{at}.ports[{j}]");
                match p.get("containerPort").and_then(Value::as_i64) {
                    None => errs.push(FieldError::required(format!("{pat}.containerPort"), "")),
                    Some(n) if !(1..=65535).contains(&n) => errs.push(FieldError::invalid(
                        format!("{pat}.containerPort"),
                        n,
                        "must be between 1 and 65535, inclusive",
                    )),
                    _ => {}
                }
                if let Some(n) = p.get("hostPort").and_then(Value::as_i64)
                    && !(1..=65535).contains(&n)
                {
                    errs.push(FieldError::invalid(
                        format!("{pat}.hostPort"),
                        n,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                    && !PROTOCOLS.contains(&proto)
                {
                    errs.push(FieldError::not_supported(
                        format!("{pat}.protocol"),
                        proto,
                        PROTOCOLS,
                    ));
                }
            }
        }
    }
}

/// Validates a PodSpec found at `base` (e.g. `spec` or `spec.template.spec`).
pub(crate) fn validate_pod_spec(spec: Option<&Value>, base: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        errs.push(FieldError::required(format!("{base}.containers"), ""));
        return errs;
    };
    if spec
        .get("containers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required(format!("{base}.containers"), ""));
    }
    let mut names = Vec::new();
    validate_containers(&mut errs, spec, "initContainers", base, &mut names);
    validate_containers(&mut errs, spec, "containers", base, &mut names);
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str)
        && !RESTART_POLICIES.contains(&p)
    {
        errs.push(FieldError::not_supported(
            format!("{base}.restartPolicy"),
            p,
            RESTART_POLICIES,
        ));
    }
    if let Some(p) = spec.get("dnsPolicy").and_then(Value::as_str)
        && !DNS_POLICIES.contains(&p)
    {
        errs.push(FieldError::not_supported(
            format!("{base}.dnsPolicy"),
            p,
            DNS_POLICIES,
        ));
    }
    let wrapped = json!({"s": spec});
    non_negative(&mut errs, &wrapped, "s.terminationGracePeriodSeconds");
    for e in errs.iter_mut() {
        if e.field.starts_with("s.") {
            e.field = format!("{base}.{}", &e.field[2..]);
        }
    }
    let gated = spec
        .get("schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty());
    if gated
        && spec
            .get("nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
    {
        errs.push(FieldError::forbidden(
            format!("{base}.nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    let mut vol_names: Vec<&str> = Vec::new();
    if let Some(vs) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in vs.iter().enumerate() {
            match v.get("name").and_then(Value::as_str) {
                None | Some("") => errs.push(FieldError::required(
                    format!("{base}.volumes[{i}].name"),
                    "",
                )),
                Some(n) if vol_names.contains(&n) => errs.push(FieldError::duplicate(
                    format!("{base}.volumes[{i}].name"),
                    n,
                )),
                Some(n) => vol_names.push(n),
            }
        }
    }
    errs
}

/// Pods.
pub(crate) struct PodStrategy;

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pod_spec(spec);
            default_field(spec, "", "serviceAccountName", json!("default"));
            default_field(spec, "", "enableServiceLinks", json!(true));
            let tolerations = crate::object::path_mut(spec, "tolerations");
            if !tolerations.is_array() {
                *tolerations = json!([]);
            }
            let list = tolerations.as_array_mut().expect("array");
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                if !list.iter().any(|t| t["key"] == key) {
                    list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                }
            }
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(obj);
        crate::object::set(obj, "status", json!({"phase": "Pending", "qosClass": qos}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pod_spec(obj.get("spec"), "spec")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        // Only images, activeDeadlineSeconds, tolerations (additions) and
        // terminationGracePeriodSeconds may change on a pod.
        let strip = |v: &Value| {
            let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
            for list in ["containers", "initContainers"] {
                if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("image");
                        }
                    }
                }
            }
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                    "nodeName",
                    "schedulingGates",
                ] {
                    m.remove(f);
                }
            }
            s
        };
        if strip(new) != strip(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        // Scheduling gates may only be removed.
        let gate_names = |v: &Value| -> Vec<String> {
            v.pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|g| g.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        };
        let old_gates = gate_names(old);
        for (i, g) in gate_names(new).iter().enumerate() {
            if !old_gates.contains(g) {
                errs.push(FieldError::forbidden(
                    format!("spec.schedulingGates[{i}]"),
                    format!("only deletion is allowed, but found new scheduling gate '{g}'"),
                ));
            }
        }
        let old_node = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let new_node = new
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !old_node.is_empty() && old_node != new_node {
            errs.push(FieldError::invalid(
                "spec.nodeName",
                new_node,
                "field is immutable",
            ));
        }
        errs
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let v = crate::object::path(obj, field);
        Some(match (field, v) {
            ("spec.hostNetwork", None) => "false".into(),
            (_, Some(Value::String(s))) => s.clone(),
            (_, Some(Value::Bool(b))) => b.to_string(),
            (_, _) => String::new(),
        })
    }
}

/// Guaranteed when every container has equal cpu and memory requests and limits,
/// BestEffort when none has any, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        for r in ["cpu", "memory"] {
            let q = req.and_then(|x| x.get(r));
            let l = lim.and_then(|x| x.get(r));
            if q.is_some() || l.is_some() {
                any = true;
            }
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        _ => "Burstable",
    }
}

/// PodTemplates.
pub(crate) struct PodTemplateStrategy;

impl Strategy for PodTemplateStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.pointer_mut("/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pod_spec(obj.pointer("/template/spec"), "template.spec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_latest_images_are_always_pulled() {
        let mut spec = json!({"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "reg:5000/x:1.2"}, {"name": "c", "image": "x:latest"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][2]["imagePullPolicy"], "Always");
        assert_eq!(
            spec["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(spec["restartPolicy"], "Always");
    }

    #[test]
    fn a_container_without_image_is_invalid_at_its_path() {
        let errs = validate_pod_spec(
            Some(&json!({"containers": [{"name": "a"}]})),
            "spec.template.spec",
        );
        assert_eq!(
            errs[0].message(),
            "spec.template.spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let p = |res: Value| json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": res}]}});
        assert_eq!(qos_class(&p(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&p(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&p(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }
}
