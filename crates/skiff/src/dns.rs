//! The cluster DNS of `skiff server`: where it listens, and the `kube-system/kube-dns`
//! Service that makes it reachable at the cluster DNS address from every pod. The
//! Service has no selector (the server is not a pod): its Endpoints and EndpointSlice
//! name the address and port the server answers on, and the service proxy on every
//! node forwards the cluster DNS address there.

use std::net::IpAddr;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// The Service's name, as CoreDNS's is in every Kubernetes distribution.
pub(crate) const SERVICE: &str = "kube-dns";
const NAMESPACE: &str = "kube-system";
/// Marks objects this module keeps.
const MANAGER: &str = "skiff-server";

/// Where the cluster DNS is published.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The Service's ClusterIP (`--cluster-dns`).
    pub service_ip: IpAddr,
    /// The address the server answers DNS on (its node address).
    pub endpoint_ip: IpAddr,
    /// The port it answers on (UDP and TCP).
    pub port: u16,
}

/// Creates or brings up to date the `kube-dns` Service, its Endpoints and its
/// EndpointSlice.
pub(crate) async fn publish(client: &kube::Client, p: &Published) -> anyhow::Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let labels = json!({
        "k8s-app": "kube-dns",
        "kubernetes.io/cluster-service": "true",
        "kubernetes.io/name": "SkiffDNS",
    });
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "clusterIP": p.service_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": p.port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": p.port},
            ],
        },
    }))?;
    match services.get_opt(SERVICE).await? {
        None => {
            services
                .create(&PostParams::default(), &service)
                .await
                .with_context(|| {
                    format!(
                        "creating Service {NAMESPACE}/{SERVICE} at {} (is --cluster-dns inside --service-cidr and free?)",
                        p.service_ip
                    )
                })?;
        }
        Some(existing) => {
            let ip = existing.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            if ip.as_deref() != Some(p.service_ip.to_string().as_str()) {
                bail!(
                    "Service {NAMESPACE}/{SERVICE} has clusterIP {}, not --cluster-dns {}: delete it (kubectl -n {NAMESPACE} delete service {SERVICE}) or pass --cluster-dns {0}",
                    ip.unwrap_or_default(),
                    p.service_ip
                );
            }
            let patch = json!({"spec": {"ports": service.spec.as_ref().map(|s| &s.ports)}});
            services
                .patch(SERVICE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("updating Service {NAMESPACE}/{SERVICE}"))?;
        }
    }

    let ports = json!([
        {"name": "dns", "port": p.port, "protocol": "UDP"},
        {"name": "dns-tcp", "port": p.port, "protocol": "TCP"},
    ]);
    let endpoints: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
        "subsets": [{"addresses": [{"ip": p.endpoint_ip.to_string()}], "ports": ports}],
    }))?;
    let family = if p.endpoint_ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": SERVICE,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": MANAGER,
                "k8s-app": "kube-dns",
            },
        },
        "addressType": family,
        "endpoints": [{
            "addresses": [p.endpoint_ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
        }],
        "ports": ports,
    }))?;
    put(
        &Api::<Endpoints>::namespaced(client.clone(), NAMESPACE),
        &endpoints,
    )
    .await?;
    put(
        &Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
        &slice,
    )
    .await?;
    Ok(())
}

/// Creates `obj`, or replaces what is stored under its name.
async fn put<K>(api: &Api<K>, obj: &K) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&()).to_string();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), obj)
                .await
                .with_context(|| format!("creating {kind} {NAMESPACE}/{name}"))?;
        }
        Some(existing) => {
            let mut obj = obj.clone();
            obj.meta_mut().resource_version = existing.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &obj)
                .await
                .with_context(|| format!("updating {kind} {NAMESPACE}/{name}"))?;
        }
    }
    Ok(())
}

/// The cluster DNS flags of `skiff server`.
#[derive(clap::Args, Debug, Clone)]
pub struct DnsArgs {
    /// Port the cluster DNS answers on at this machine's address (UDP and TCP); the
    /// `kube-dns` Service forwards the cluster DNS address's port 53 there. 0 picks a
    /// free one.
    #[arg(long, default_value_t = 53)]
    pub cluster_dns_port: u16,
    /// Where names outside the cluster domain are forwarded: `none`, a resolv.conf
    /// path, or `IP[:port]` servers separated by commas.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub cluster_dns_upstream: String,
    /// TTL of cluster DNS answers, in seconds.
    #[arg(long, default_value_t = 5)]
    pub cluster_dns_ttl: u32,
}

/// A port free for both UDP and TCP on `ip` (a moment ago).
fn free_port(ip: IpAddr) -> anyhow::Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((ip, 0))
            .with_context(|| format!("finding a free port on {ip} for the cluster DNS"))?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on {ip} for the cluster DNS")
}

/// Checks the flags and picks the port: what [`run`] serves.
pub(crate) fn prepare(
    args: &DnsArgs,
    service_ip: IpAddr,
    endpoint_ip: IpAddr,
    domain: &str,
) -> anyhow::Result<(Published, cluster_dns::DnsConfig)> {
    let upstream = cluster_dns::Upstream::parse_flag(&args.cluster_dns_upstream)
        .map_err(|e| anyhow::anyhow!("--cluster-dns-upstream: {e}"))?;
    let port = match args.cluster_dns_port {
        0 => free_port(endpoint_ip)?,
        p => p,
    };
    let published = Published {
        service_ip,
        endpoint_ip,
        port,
    };
    let config = cluster_dns::DnsConfig {
        listen: vec![std::net::SocketAddr::new(endpoint_ip, port)],
        domain: domain.to_owned(),
        ttl: args.cluster_dns_ttl,
        upstream,
        nameservers: vec![service_ip],
        ..cluster_dns::DnsConfig::default()
    };
    Ok((published, config))
}

/// Serves the cluster DNS and keeps the `kube-dns` Service pointing at it, until
/// `shutdown`.
pub(crate) async fn run(
    client: kube::Client,
    published: Published,
    config: cluster_dns::DnsConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let listen = config.listen.clone();
    let server = tokio::spawn(cluster_dns::run(client.clone(), config, shutdown.clone()));
    // Published once the server listens, retried while the API refuses.
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        if server.is_finished() {
            break;
        }
        match publish(&client, &published).await {
            Ok(()) => {
                tracing::info!(service = %published.service_ip, listen = ?listen, "cluster DNS published as {NAMESPACE}/{SERVICE}");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "publishing the cluster DNS failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(
            error = %e,
            listen = ?listen,
            "the cluster DNS stopped; pods cannot resolve names (pass --cluster-dns-port to use a free port, or --disable dns)"
        ),
        Err(e) => tracing::error!(error = %e, "the cluster DNS task failed"),
    }
}
