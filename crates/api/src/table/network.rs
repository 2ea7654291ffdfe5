//! Service, Endpoints, EndpointSlice, Ingress, IngressClass, NetworkPolicy, ServiceCIDR,
//! IPAddress.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, at, int_at, items, name, str_at, str_or};
use super::{ColumnDefinition, docs, duration, labels};

pub(super) fn service_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Type", docs::SERVICE_TYPE),
        ColumnDefinition::text("Cluster-IP", docs::SERVICE_CLUSTER_IP),
        ColumnDefinition::text("External-IP", docs::SERVICE_EXTERNAL_IPS),
        ColumnDefinition::text("Port(s)", docs::SERVICE_PORTS),
        ColumnDefinition::age(),
        ColumnDefinition::text("Selector", docs::SERVICE_SELECTOR).wide(),
    ]
}

pub(super) fn service_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let service_type = str_or(obj, &["spec", "type"], "ClusterIP");
    // `clusterIPs[0]` is what the server prints; it mirrors `clusterIP` once allocated.
    let cluster_ip = match items(obj, &["spec", "clusterIPs"]).first() {
        Some(ip) => ip.as_str().unwrap_or_default().to_owned(),
        None => fields::none_if_empty(str_at(obj, &["spec", "clusterIP"]).to_owned()),
    };
    let ports: Vec<String> = items(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = str_or(p, &["protocol"], "TCP");
            match int_at(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        Value::from(name(obj)),
        Value::from(service_type),
        Value::from(cluster_ip),
        Value::from(external_ip(obj, service_type)),
        Value::from(fields::none_if_empty(ports.join(","))),
        Value::from(duration::age(obj, now)),
        Value::from(fields::format_labels(obj, &["spec", "selector"])),
    ]
}

/// The EXTERNAL-IP cell (`getServiceExternalIP`, wide, so load balancer addresses are
/// never shortened).
fn external_ip(obj: &Value, service_type: &str) -> String {
    let external_ips: Vec<&str> = items(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type {
        "ClusterIP" | "NodePort" => fields::none_if_empty(external_ips.join(",")),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(obj);
            if all.is_empty() && external_ips.is_empty() {
                return "<pending>".to_owned();
            }
            all.extend(external_ips.iter().map(|ip| (*ip).to_owned()));
            all.join(",")
        }
        "ExternalName" => str_at(obj, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// Sorted, distinct IPs (or hostnames) of `status.loadBalancer.ingress`.
fn load_balancer_addresses(obj: &Value) -> Vec<String> {
    let addresses: BTreeSet<&str> = items(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|ingress| match str_at(ingress, &["ip"]) {
            "" => Some(str_at(ingress, &["hostname"])).filter(|h| !h.is_empty()),
            ip => Some(ip),
        })
        .collect();
    addresses.into_iter().map(str::to_owned).collect()
}

pub(super) fn endpoints_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Endpoints", docs::ENDPOINTS_SUBSETS),
        ColumnDefinition::age(),
    ]
}

pub(super) fn endpoints_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(format_endpoints(obj)),
        Value::from(duration::age(obj, now)),
    ]
}

/// Up to three `ip:port` pairs then ` + N more...` (`formatEndpoints` for all ports).
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = items(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = items(subset, &["addresses"]);
        let ports = items(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            list.extend(
                addresses
                    .iter()
                    .take(MAX - list.len())
                    .map(|a| str_at(a, &["ip"]).to_owned()),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            let port = int_at(port, &["port"]);
            list.extend(
                addresses
                    .iter()
                    .take(MAX - list.len())
                    .map(|a| fields::join_host_port(str_at(a, &["ip"]), port)),
            );
        }
    }
    let shown = list.join(",");
    if count > MAX {
        format!("{shown} + {} more...", count - MAX)
    } else {
        shown
    }
}

pub(super) fn endpoint_slice_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("AddressType", docs::ENDPOINT_SLICE_ADDRESS_TYPE),
        ColumnDefinition::text("Ports", docs::ENDPOINT_SLICE_PORTS),
        ColumnDefinition::text("Endpoints", docs::ENDPOINT_SLICE_ENDPOINTS),
        ColumnDefinition::age(),
    ]
}

pub(super) fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = items(obj, &["ports"])
        .iter()
        .map(|p| {
            match (
                fields::opt_int_at(p, &["port"]),
                fields::opt_str_at(p, &["name"]),
            ) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_owned(),
                (None, None) => "*".to_owned(),
            }
        })
        .collect();
    let addresses: Vec<String> = items(obj, &["endpoints"])
        .iter()
        .flat_map(|e| items(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["addressType"])),
        Value::from(fields::list_with_more(&ports, 3)),
        Value::from(fields::list_with_more(&addresses, 3)),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn ingress_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "Class",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        ColumnDefinition::text(
            "Hosts",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        ColumnDefinition::text(
            "Address",
            "Address is a list containing ingress points for the load-balancer",
        ),
        ColumnDefinition::text("Ports", "Ports of TLS configurations that open"),
        ColumnDefinition::age(),
    ]
}

pub(super) fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = items(obj, &["spec", "rules"]);
    // Hosts until three are listed; `more` once a rule follows the third (`formatHosts`).
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= hosts.len() == MAX;
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_owned()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let ports = if items(obj, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        Value::from(name(obj)),
        Value::from(str_or(obj, &["spec", "ingressClassName"], "<none>")),
        Value::from(hosts),
        Value::from(load_balancer_addresses(obj).join(",")),
        Value::from(ports),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn ingress_class_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "Controller",
            "Controller that is responsible for handling this class",
        ),
        ColumnDefinition::text(
            "Parameters",
            "A reference to a resource with additional parameters",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn ingress_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match at(obj, &["spec", "parameters"]) {
        None => "<none>".to_owned(),
        Some(p) => {
            let kind = str_at(p, &["kind"]);
            let name = str_at(p, &["name"]);
            match fields::opt_str_at(p, &["apiGroup"]) {
                Some(group) => format!("{kind}.{group}/{name}"),
                None => format!("{kind}/{name}"),
            }
        }
    };
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "controller"])),
        Value::from(parameters),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn network_policy_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Pod-Selector", docs::NETWORK_POLICY_POD_SELECTOR),
        ColumnDefinition::age(),
    ]
}

pub(super) fn network_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(labels::format_label_selector(obj, &["spec", "podSelector"])),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn service_cidr_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("CIDRs", docs::SERVICE_CIDR_CIDRS),
        ColumnDefinition::age(),
    ]
}

pub(super) fn service_cidr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> = items(obj, &["spec", "cidrs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        Value::from(name(obj)),
        Value::from(cidrs.join(",")),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn ip_address_columns() -> Vec<ColumnDefinition> {
    // kube-apiserver declares no Age column here but its rows carry an age cell anyway.
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("ParentRef", docs::IP_ADDRESS_PARENT_REF),
    ]
}

pub(super) fn ip_address_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parent = match at(obj, &["spec", "parentRef"]) {
        None => "<none>".to_owned(),
        Some(p) => {
            let resource = match (str_at(p, &["resource"]), str_at(p, &["group"])) {
                (resource, "") => resource.to_owned(),
                (resource, group) => format!("{resource}.{group}"),
            };
            let mut text = resource.to_lowercase();
            let namespace = str_at(p, &["namespace"]);
            if !namespace.is_empty() {
                text = format!("{text}/{namespace}");
            }
            format!("{text}/{}", str_at(p, &["name"]))
        }
    };
    vec![
        Value::from(name(obj)),
        Value::from(parent),
        Value::from(duration::age(obj, now)),
    ]
}
