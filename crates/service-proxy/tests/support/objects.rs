//! Services and EndpointSlices as the API would hand them to the proxy.

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A TCP Service `default/<name>` with one port named `http`.
pub fn service(name: &str, cluster_ip: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes `service` a NodePort Service on `node_port`.
pub fn with_node_port(mut service: Service, node_port: i32) -> Service {
    let spec = service.spec.as_mut().expect("spec");
    spec.type_ = Some("NodePort".into());
    spec.ports.as_mut().expect("ports")[0].node_port = Some(node_port);
    service
}

/// Turns on ClientIP session affinity.
pub fn with_affinity(mut service: Service) -> Service {
    service.spec.as_mut().expect("spec").session_affinity = Some("ClientIP".into());
    service
}

/// The EndpointSlice of `service` with ready endpoints `ips` on `port`.
pub fn slice(service: &str, port: i32, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("{service}-1")),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                service.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![(*ip).into()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}
