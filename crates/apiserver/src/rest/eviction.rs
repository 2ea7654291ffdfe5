//! `POST pods/{name}/eviction` (policy/v1 Eviction, used by `kubectl drain`): deletes
//! the pod unless that would violate its PodDisruptionBudget, in which case the answer
//! is 429 with a `DisruptionBudget` cause and the client retries.

use api::resource::ResourceInfo;
use api::selector::LabelSelector;
use api::status::{ApiError, StatusDetails};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctx;
use super::delete::{DeleteOptions, delete_object};
use crate::handler::Reply;
use crate::negotiate;
use crate::object;

const RETRIES: usize = 5;

fn too_many(why: String) -> ApiError {
    // Kubernetes suggests no Retry-After here: clients (kubectl drain) retry themselves.
    let mut e = ApiError::too_many_requests(0);
    e.retry_after_seconds = None;
    e.message = "Cannot evict pod as it would violate the pod's disruption budget.".into();
    e.details = Some(StatusDetails {
        causes: vec![api::status::FieldError {
            kind: api::status::FieldErrorType::Cause("DisruptionBudget"),
            field: String::new(),
            value: None,
            detail: why,
        }],
        ..Default::default()
    });
    e
}

fn pdb_selects(pdb: &Value, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return false;
    };
    serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>(
        sel.clone(),
    )
    .ok()
    .and_then(|s| LabelSelector::from_label_selector(&s).ok())
    .is_some_and(|s| s.matches(labels))
}

impl Ctx<'_> {
    pub(super) async fn evict(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let ty = negotiate::body_type(content_type)?;
        let (eviction, _) = negotiate::decode_object(&body, ty)?;
        let ns = self.namespace().unwrap_or_default().to_string();
        let name = self.name().to_string();
        let write = crate::admission::Write {
            who: self.who,
            operation: crate::admission::node_restriction::Operation::Create,
            res: &self.res,
            subresource: &self.info.subresource,
            namespace: &ns,
            name: &name,
            object: Some(&eviction),
            old: None,
            dry_run: self.dry_run()?,
        };
        crate::admission::validate(self.state, &write, &mut self.warnings).await?;
        let mut opts = DeleteOptions {
            dry_run: self.dry_run()?,
            ..Default::default()
        };
        if let Some(d) = eviction.get("deleteOptions").filter(|d| d.is_object()) {
            opts.grace_period = d.get("gracePeriodSeconds").and_then(Value::as_i64);
            opts.precondition_uid = d
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from);
            opts.precondition_rv = d
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
        }
        let pdb_res: ResourceInfo = self
            .state
            .registry
            .lookup("policy", "v1", "poddisruptionbudgets")
            .map(|r| (**r).clone())
            .ok_or_else(|| ApiError::internal("poddisruptionbudgets not served"))?;
        for _ in 0..RETRIES {
            let pod = self.state.storage.get(&self.res, Some(&ns), &name).await?;
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending");
            let terminating = pod
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            // Pods that are not running need no budget check (Kubernetes' canIgnorePDB).
            if matches!(phase, "Succeeded" | "Failed" | "Pending") || terminating {
                delete_object(self.state, &self.res, Some(&ns), &name, &opts).await?;
                return Ok(Reply::Json(201, api::status::success_status(None)));
            }
            let labels = object::labels(&pod);
            let page = self
                .state
                .storage
                .list(
                    &pdb_res,
                    &pdb_res.namespace_prefix(&ns),
                    None,
                    None,
                    0,
                    &|p| pdb_selects(p, &labels),
                )
                .await?;
            let pdb = match page.items.len() {
                0 => {
                    delete_object(self.state, &self.res, Some(&ns), &name, &opts).await?;
                    return Ok(Reply::Json(201, api::status::success_status(None)));
                }
                1 => page.items.into_iter().next().expect("one item"),
                _ => {
                    return Err(ApiError::internal(
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    ));
                }
            };
            let pdb_name = object::name(&pdb).unwrap_or_default().to_string();
            let generation = pdb
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let observed = pdb
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if observed < generation {
                return Err(too_many(format!(
                    "The disruption budget {pdb_name} is still being processed by the server."
                )));
            }
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if allowed < 0 {
                return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
            }
            if allowed == 0 {
                let desired = pdb
                    .pointer("/status/desiredHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let current = pdb
                    .pointer("/status/currentHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                return Err(too_many(format!(
                    "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
                )));
            }
            let mut updated = pdb.clone();
            object::set(
                &mut updated,
                "status.disruptionsAllowed",
                json!(allowed - 1),
            );
            let disrupted = object::path_mut(&mut updated, "status.disruptedPods");
            if !disrupted.is_object() {
                *disrupted = json!({});
            }
            if let Some(m) = disrupted.as_object_mut() {
                m.insert(name.clone(), json!(object::now_rfc3339()));
            }
            if opts.dry_run {
                return Ok(Reply::Json(201, api::status::success_status(None)));
            }
            let rv =
                crate::storage::parse_rv(object::meta_str(&pdb, "resourceVersion").unwrap_or("0"))?;
            match self
                .state
                .storage
                .update(&pdb_res, Some(&ns), &pdb_name, &updated, rv)
                .await
            {
                Ok(_) => {}
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
            delete_object(self.state, &self.res, Some(&ns), &name, &opts).await?;
            return Ok(Reply::Json(201, api::status::success_status(None)));
        }
        Err(ApiError::conflict("policy", "poddisruptionbudgets", &name))
    }
}
