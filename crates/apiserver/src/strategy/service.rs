//! Services: defaults and validation. Cluster IPs and node ports are assigned by
//! `crate::allocator` in the REST layer, after these rules pass.

use api::status::FieldError;
use serde_json::{Value, json};

use super::{NameRule, Strategy};
use crate::object::default_field;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Services.
pub(crate) struct ServiceStrategy;

fn service_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

impl Strategy for ServiceStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "type", json!("ClusterIP"));
        let ty = service_type(obj).to_string();
        default_field(obj, "spec", "sessionAffinity", json!("None"));
        if obj.pointer("/spec/sessionAffinity") == Some(&json!("ClientIP")) {
            default_field(
                obj,
                "spec",
                "sessionAffinityConfig",
                json!({"clientIP": {"timeoutSeconds": 10800}}),
            );
        }
        if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                default_field(p, "", "protocol", json!("TCP"));
                // Unset, null, 0 and "" all mean "the same as port" (IntOrString zero value).
                let unset = matches!(p.get("targetPort"), None | Some(Value::Null))
                    || p.get("targetPort") == Some(&json!(0))
                    || p.get("targetPort") == Some(&json!(""));
                if unset && let Some(port) = p.get("port").cloned() {
                    crate::object::set(p, "targetPort", port);
                }
            }
        }
        if ty != "ExternalName" {
            default_field(obj, "spec", "internalTrafficPolicy", json!("Cluster"));
            default_field(obj, "spec", "ipFamilies", json!(["IPv4"]));
            default_field(obj, "spec", "ipFamilyPolicy", json!("SingleStack"));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            default_field(obj, "spec", "externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            default_field(obj, "spec", "allocateLoadBalancerNodePorts", json!(true));
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        crate::object::set(obj, "status", json!({"loadBalancer": {}}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ty = service_type(obj);
        if !TYPES.contains(&ty) {
            errs.push(FieldError::not_supported("spec.type", ty, TYPES));
        }
        let headless = obj.pointer("/spec/clusterIP") == Some(&json!("None"));
        let ports = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if ty == "ExternalName" {
            if obj
                .pointer("/spec/externalName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required("spec.externalName", ""));
            }
        } else if ports.is_empty() && !headless {
            errs.push(FieldError::required("spec.ports", ""));
        }
        if headless && (ty == "NodePort" || ty == "LoadBalancer") {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                "None",
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{at}.name"), ""));
            }
            if !name.is_empty() {
                for m in api::selector::is_dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{at}.name"), name, m));
                }
                if names.contains(&name) {
                    errs.push(FieldError::duplicate(format!("{at}.name"), name));
                }
                names.push(name);
            }
            match p.get("port").and_then(Value::as_i64) {
                None => errs.push(FieldError::required(format!("{at}.port"), "")),
                Some(n) if !(1..=65535).contains(&n) => errs.push(FieldError::invalid(
                    format!("{at}.port"),
                    n,
                    "must be between 1 and 65535, inclusive",
                )),
                _ => {}
            }
            if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                && !PROTOCOLS.contains(&proto)
            {
                errs.push(FieldError::not_supported(
                    format!("{at}.protocol"),
                    proto,
                    PROTOCOLS,
                ));
            }
            if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
                && np != 0
                && ty != "NodePort"
                && ty != "LoadBalancer"
            {
                errs.push(FieldError::forbidden(
                    format!("{at}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        if let Some(a) = obj.pointer("/spec/sessionAffinity").and_then(Value::as_str)
            && a != "None"
            && a != "ClientIP"
        {
            errs.push(FieldError::not_supported(
                "spec.sessionAffinity",
                a,
                &["ClientIP", "None"],
            ));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let old_ip = old
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let new_ip = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !old_ip.is_empty() && new_ip != old_ip && service_type(new) != "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                new_ip,
                "may not change once set",
            ));
        }
        errs
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Label1035
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
}
