//! What exists from the first start: the system namespaces, the `kubernetes` Service
//! with its Endpoints and EndpointSlice, the system PriorityClasses, the default
//! `local-path` StorageClass, the default RBAC roles and bindings, and allocator
//! state rebuilt from stored Services.

use api::status::ApiError;
use serde_json::{Value, json};

use crate::rest::write::create_object;
use crate::serve::State;
use crate::strategy;

/// The default StorageClass every cluster has from the first start.
const LOCAL_PATH_CLASS: &str = "local-path";
/// Its provisioner: the node agents' built-in local-path provisioner.
const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";

/// Namespaces Kubernetes users expect from the first start.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn lookup(
    state: &State,
    group: &str,
    version: &str,
    plural: &str,
) -> Result<std::sync::Arc<api::resource::ResourceInfo>, crate::Error> {
    state
        .registry
        .lookup(group, version, plural)
        .cloned()
        .ok_or_else(|| crate::Error::Config(format!("built-in resource {plural} missing")))
}

async fn ensure(
    state: &State,
    group: &str,
    version: &str,
    plural: &str,
    obj: Value,
) -> Result<(), crate::Error> {
    let res = lookup(state, group, version, plural)?;
    match create_object(state, &res, strategy::for_resource(&res), obj, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(crate::Error::Config(format!(
            "creating default {plural}: {}",
            e.message
        ))),
    }
}

/// Like [`ensure`], and an existing object whose `fields` differ is brought up to
/// date (the `kubernetes` endpoints follow the advertised address, as
/// kube-apiserver's endpoint reconciler keeps them).
async fn ensure_current(
    state: &State,
    group: &str,
    version: &str,
    plural: &str,
    obj: Value,
    fields: &[&str],
) -> Result<(), crate::Error> {
    let res = lookup(state, group, version, plural)?;
    let strategy = strategy::for_resource(&res);
    let err =
        |e: ApiError| crate::Error::Config(format!("updating default {plural}: {}", e.message));
    match create_object(state, &res, strategy, obj.clone(), false).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => {
            let ns = crate::object::namespace(&obj);
            let name = crate::object::name(&obj).unwrap_or_default();
            let old = state.storage.get(&res, ns, name).await.map_err(err)?;
            if fields.iter().all(|f| old.get(*f) == obj.get(*f)) {
                return Ok(());
            }
            let mut new = old.clone();
            for f in fields {
                if let (Some(m), Some(v)) = (new.as_object_mut(), obj.get(*f)) {
                    m.insert((*f).to_string(), v.clone());
                }
            }
            crate::rest::write::update_object(state, &res, strategy, old, new, false, false)
                .await
                .map_err(err)?;
            Ok(())
        }
        Err(e) => Err(crate::Error::Config(format!(
            "creating default {plural}: {}",
            e.message
        ))),
    }
}

/// Creates a default flow-control object; an existing one whose
/// `apf.kubernetes.io/autoupdate-spec` annotation is still `"true"` gets the
/// current default spec, as kube-apiserver's configuration bootstrap does.
async fn ensure_auto_updated(state: &State, plural: &str, obj: Value) -> Result<(), crate::Error> {
    let res = lookup(state, "flowcontrol.apiserver.k8s.io", "v1", plural)?;
    let strategy = strategy::for_resource(&res);
    let err = |e: ApiError| crate::Error::Config(format!("default {plural}: {}", e.message));
    match create_object(state, &res, strategy, obj.clone(), false).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => {
            let name = crate::object::name(&obj).unwrap_or_default();
            let old = state.storage.get(&res, None, name).await.map_err(err)?;
            let auto = old
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(crate::flowcontrol::AUTO_UPDATE))
                .and_then(Value::as_str)
                == Some("true");
            if !auto || old.get("spec") == obj.get("spec") {
                return Ok(());
            }
            let mut new = old.clone();
            if let (Some(m), Some(spec)) = (new.as_object_mut(), obj.get("spec")) {
                m.insert("spec".into(), spec.clone());
            }
            crate::rest::write::update_object(state, &res, strategy, old, new, false, false)
                .await
                .map_err(err)?;
            Ok(())
        }
        Err(e) => Err(err(e)),
    }
}

fn api_error(e: ApiError) -> crate::Error {
    crate::Error::Config(e.message)
}

/// Runs the bootstrap steps; the server is ready when they succeed.
pub(crate) async fn run(state: &State) -> Result<(), crate::Error> {
    // Allocations held by stored Services.
    let services = lookup(state, "", "v1", "services")?;
    let page = state
        .storage
        .list(&services, &services.key_prefix(), None, None, 0, &|_| true)
        .await
        .map_err(api_error)?;
    for svc in &page.items {
        crate::rest::subresource::mark_service(state, svc);
    }

    for ns in SYSTEM_NAMESPACES {
        ensure(
            state,
            "",
            "v1",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }

    for (name, value, description) in crate::admission::SYSTEM_PRIORITY_CLASSES {
        ensure(
            state,
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                   "value": value, "description": description, "globalDefault": false}),
        )
        .await?;
    }

    // k3s's default class, served by the node agents' local-path provisioner. The
    // provisioner is named as k3s names it so that k3s users' classes (a
    // `local-path-retain` next to it, Helm charts that name it) work unchanged.
    // Created when absent: a user's edits are kept; a deleted class comes back at
    // the next start, as k3s re-applies its manifests.
    ensure(
        state,
        "storage.k8s.io",
        "v1",
        "storageclasses",
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": LOCAL_PATH_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }),
    )
    .await?;

    let first_ip = crate::allocator::Cidr::parse(&state.config.service_cidr)
        .map_err(crate::Error::Config)?
        .nth(1)
        .to_string();
    let port = state.config.port;
    let endpoint_ip = match (state.config.advertise_address, state.config.bind_address) {
        (Some(ip), _) => ip.to_string(),
        (None, ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        (None, ip) => ip.to_string(),
    };
    ensure(
        state,
        "",
        "v1",
        "services",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": first_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        }),
    )
    .await?;
    ensure_current(
        state,
        "",
        "v1",
        "endpoints",
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": endpoint_ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
        &["subsets"],
    )
    .await?;
    ensure_current(
        state,
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [endpoint_ip], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }),
        &["endpoints", "ports"],
    )
    .await?;

    // API Priority and Fairness: Kubernetes' priority levels and flow schemas.
    if state.flow_control.is_some() {
        let defaults = [
            (
                "prioritylevelconfigurations",
                crate::flowcontrol::default_levels(),
            ),
            ("flowschemas", crate::flowcontrol::default_schemas()),
        ];
        for (plural, objects) in defaults {
            for obj in objects {
                ensure_auto_updated(state, plural, obj).await?;
            }
        }
    }

    // The default roles and bindings (reconciled at every start), in the RBAC
    // index before the server reports ready.
    crate::rbac::ensure_defaults(state).await?;

    // The stored CRDs' resources are served before the server reports ready.
    state.registry.wait_synced().await;

    Ok(())
}
