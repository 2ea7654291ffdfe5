//! Subresources with their own shapes: `scale` (autoscaling/v1 Scale), pods'
//! `binding`, and the cluster IP / node port bookkeeping of Services.

use api::resource::ResourceInfo;
use api::status::{ApiError, FieldError};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctx;
use crate::handler::Reply;
use crate::negotiate;
use crate::object;
use crate::serve::State;

/// Addresses and ports taken for a Service write, given back if the write fails.
#[derive(Debug, Default)]
pub(crate) struct Allocated {
    ips: Vec<String>,
    ports: Vec<u16>,
}

impl Allocated {
    pub(crate) fn rollback(self, state: &State) {
        for ip in &self.ips {
            state.allocator.release_ip(ip);
        }
        for p in self.ports {
            state.allocator.release_port(p);
        }
    }
}

fn is_service(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.plural == "services"
}

fn node_ports(obj: &Value) -> Vec<u16> {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .filter_map(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ip(obj: &Value) -> Option<&str> {
    obj.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
}

/// Assigns the cluster IP and node ports a Service needs (keeping those of `old`).
pub(crate) fn allocate_service(
    state: &State,
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Allocated, Vec<FieldError>> {
    let mut taken = Allocated::default();
    if !is_service(res) {
        return Ok(taken);
    }
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let mut errs = Vec::new();
    if ty == "ExternalName" {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    } else {
        let wanted = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .map(String::from);
        let old_ip = old.and_then(cluster_ip).map(String::from);
        let ip = match (wanted.as_deref(), old_ip) {
            (Some("None"), _) => Some("None".to_string()),
            (None | Some(""), Some(o)) => Some(o),
            (Some(w), Some(o)) if w == o => Some(o),
            (w, _) => match state
                .allocator
                .allocate_ip(w.filter(|s| !s.is_empty()), "spec.clusterIPs")
            {
                Ok(ip) => {
                    taken.ips.push(ip.clone());
                    Some(ip)
                }
                Err(e) => {
                    errs.push(e);
                    None
                }
            },
        };
        if let Some(ip) = ip {
            crate::object::set(obj, "spec.clusterIP", ip.clone().into());
            crate::object::set(obj, "spec.clusterIPs", json!([ip]));
        }
    }
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer"
            && obj.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false)));
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_set = old.map(node_ports).unwrap_or_default();
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            if !wants_node_ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            let wanted = p
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n != 0);
            let carried = wanted.is_none().then(|| {
                old_ports
                    .iter()
                    .find(|op| {
                        op.get("port") == p.get("port") && op.get("protocol") == p.get("protocol")
                    })
                    .and_then(|op| op.get("nodePort").and_then(Value::as_u64))
            });
            let port = match (wanted, carried.flatten()) {
                (Some(w), _) if old_set.contains(&(w as u16)) => Ok(w as u16),
                (None, Some(c)) => Ok(c as u16),
                (w, _) => match w.map(u16::try_from) {
                    Some(Err(_)) => Err(FieldError::invalid(
                        &field,
                        w.unwrap_or_default(),
                        "must be between 1 and 65535, inclusive",
                    )),
                    Some(Ok(w)) => state
                        .allocator
                        .allocate_port(Some(w), &field)
                        .inspect(|p| taken.ports.push(*p)),
                    None => state
                        .allocator
                        .allocate_port(None, &field)
                        .inspect(|p| taken.ports.push(*p)),
                },
            };
            match port {
                Ok(n) => crate::object::set(p, "nodePort", n.into()),
                Err(e) => errs.push(e),
            }
        }
    }
    if errs.is_empty() {
        Ok(taken)
    } else {
        taken.rollback(state);
        Err(errs)
    }
}

/// Gives back what a deleted Service held.
pub(crate) fn release_service(state: &State, res: &ResourceInfo, obj: &Value) {
    if !is_service(res) {
        return;
    }
    if let Some(ip) = cluster_ip(obj) {
        state.allocator.release_ip(ip);
    }
    for p in node_ports(obj) {
        state.allocator.release_port(p);
    }
}

/// Gives back what an updated Service no longer holds.
pub(crate) fn release_replaced(state: &State, res: &ResourceInfo, old: &Value, new: &Value) {
    if !is_service(res) {
        return;
    }
    if let Some(ip) = cluster_ip(old)
        && cluster_ip(new) != Some(ip)
    {
        state.allocator.release_ip(ip);
    }
    let now = node_ports(new);
    for p in node_ports(old) {
        if !now.contains(&p) {
            state.allocator.release_port(p);
        }
    }
}

/// Marks everything stored Services hold (at start).
pub(crate) fn mark_service(state: &State, obj: &Value) {
    if let Some(ip) = cluster_ip(obj) {
        state.allocator.mark_ip(ip);
    }
    for p in node_ports(obj) {
        state.allocator.mark_port(p);
    }
}

fn scale_of(res: &ResourceInfo, obj: &Value) -> Value {
    let selector = match obj.pointer("/spec/selector") {
        Some(Value::Object(m)) if res.group.is_empty() => {
            // ReplicationController: a plain map selector.
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        }
        Some(sel) => serde_json::from_value::<
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        >(sel.clone())
        .ok()
        .and_then(|s| api::selector::LabelSelector::from_label_selector(&s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default(),
        None => String::new(),
    };
    let m = obj.get("metadata").cloned().unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

impl Ctx<'_> {
    /// The `Scale` of an object (custom resources: from their scale paths).
    fn scale(&self, obj: &Value) -> Result<Value, ApiError> {
        match &self.custom {
            Some(c) => c.scale_of(obj),
            None => Ok(scale_of(&self.res, obj)),
        }
    }

    pub(super) async fn get_scale(&mut self) -> Result<Reply, ApiError> {
        let obj = self
            .state
            .storage
            .get(&self.res, self.namespace(), self.name())
            .await?;
        Ok(Reply::Json(200, self.scale(&obj)?))
    }

    /// Writes the replicas of `scale` into `old` for field manager `manager`.
    async fn set_replicas(
        &mut self,
        scale: Value,
        old: Value,
        manager: &str,
    ) -> Result<Reply, ApiError> {
        let dry_run = self.dry_run()?;
        let replicas = match scale.pointer("/spec/replicas") {
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
            None | Some(Value::Null) => 0,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal {other} into Go struct field ScaleSpec.spec.replicas of type int32"
                )));
            }
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                self.name(),
                vec![FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = old.clone();
        match &self.custom {
            Some(c) => c.set_replicas(&mut new, replicas),
            None => crate::object::set(&mut new, "spec.replicas", replicas.into()),
        }
        if let Some(rv) = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            object::meta_mut(&mut new).insert("resourceVersion".into(), rv.into());
        }
        let mut by = crate::rest::write::Requester {
            who: self.who,
            subresource: &self.info.subresource,
            warnings: &mut self.warnings,
            owner: crate::rest::apply::FieldOwner::Update(manager),
        };
        let (code, out) = crate::rest::write::update_object_by(
            self.state,
            &self.res,
            &*self.strategy,
            old,
            new,
            false,
            dry_run,
            Some(&mut by),
        )
        .await?;
        Ok(Reply::Json(code, self.scale(&out)?))
    }

    pub(super) async fn update_scale(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let manager = self.update_manager("UpdateOptions")?;
        let ty = negotiate::body_type(content_type)?;
        let (scale, _) = negotiate::decode_object(&body, ty)?;
        let old = self
            .state
            .storage
            .get(&self.res, self.namespace(), self.name())
            .await?;
        self.set_replicas(scale, old, &manager).await
    }

    pub(super) async fn patch_scale(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let ty = negotiate::body_type(content_type)?;
        if ty == negotiate::BodyType::ApplyPatch {
            // Server-side apply of a Scale is not served (yet).
            return Err(ApiError::unsupported_media_type(
                content_type.unwrap_or_default(),
            ));
        }
        let manager = self.update_manager("PatchOptions")?;
        let old = self
            .state
            .storage
            .get(&self.res, self.namespace(), self.name())
            .await?;
        let current = self.scale(&old)?;
        let patched = match ty {
            negotiate::BodyType::JsonPatch => api::patch::json_patch(&current, &body),
            negotiate::BodyType::MergePatch | negotiate::BodyType::StrategicMergePatch => {
                api::patch::merge_patch_bytes(&current, &body)
            }
            _ => {
                return Err(ApiError::unsupported_media_type(
                    content_type.unwrap_or_default(),
                ));
            }
        }
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.set_replicas(patched, old, &manager).await
    }

    /// `POST pods/{name}/binding`: assigns the pod to a node once.
    pub(super) async fn bind(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let ty = negotiate::body_type(content_type)?;
        let (binding, _) = negotiate::decode_object(&body, ty)?;
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                self.name(),
                vec![FieldError::required("target.name", "")],
            ));
        }
        let dry_run = self.dry_run()?;
        // As kube-apiserver's GuaranteedUpdate: a write that raced ours (a status
        // update, a label) makes us read the pod again, not fail the binding.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let old = self
                .state
                .storage
                .get(&self.res, self.namespace(), self.name())
                .await?;
            if let Some(n) = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict_message(
                    "",
                    "pods",
                    self.name(),
                    &format!("pod {} is already assigned to node {n:?}", self.name()),
                ));
            }
            if old
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                return Err(ApiError::conflict_message(
                    "",
                    "pods",
                    self.name(),
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let mut new = old.clone();
            crate::object::set(&mut new, "spec.nodeName", node.as_str().into());
            if let Some(ann) = binding
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                let m = object::meta_mut(&mut new);
                let target = m.entry("annotations").or_insert_with(|| json!({}));
                if !target.is_object() {
                    *target = json!({});
                }
                if let Some(t) = target.as_object_mut() {
                    for (k, v) in ann {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
            let conds = new.pointer_mut("/status/conditions");
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()});
            match conds.and_then(Value::as_array_mut) {
                Some(list) => {
                    list.retain(|c| c["type"] != "PodScheduled");
                    list.push(cond);
                }
                None => crate::object::set(&mut new, "status.conditions", json!([cond])),
            }
            if dry_run {
                break;
            }
            let expected =
                crate::storage::parse_rv(object::meta_str(&old, "resourceVersion").unwrap_or("0"))?;
            match self
                .state
                .storage
                .update(&self.res, self.namespace(), self.name(), &new, expected)
                .await
            {
                Ok(_) => break,
                Err(e) if e.reason == "Conflict" && attempts < super::write::RETRIES => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::Json(201, api::status::success_status(None)))
    }
}
