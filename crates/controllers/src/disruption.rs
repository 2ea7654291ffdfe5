//! The disruption controller (pkg/controller/disruption): keeps each
//! PodDisruptionBudget's status — expected, healthy and desired pods and how many
//! disruptions are allowed — so that the `pods/eviction` subresource can honour it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api::selector::LabelSelector;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::applier;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;

use crate::informers::itself;
use crate::{Context, Error};

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
}

fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    LabelSelector::from_label_selector(sel).is_ok_and(|s| s.matches(pod.labels()))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `value` of an int-or-percent against `total`, rounding percentages up.
fn scaled(v: &IntOrString, total: i32) -> Result<i32, Error> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: f64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::Invalid(format!("invalid int or percentage {s:?}")))?;
            Ok((pct * f64::from(total) / 100.0).ceil() as i32)
        }
    }
}

/// Replicas wanted by the controllers owning `pods` (for percentage budgets).
async fn expected_from_controllers(client: &kube::Client, ns: &str, pods: &[Arc<Pod>]) -> i32 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for p in pods {
        let Some(owner) = p
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            total += 1;
            continue;
        };
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        let (group, version) = owner
            .api_version
            .split_once('/')
            .unwrap_or(("", owner.api_version.as_str()));
        let plural = match owner.kind.as_str() {
            "ReplicaSet" => "replicasets",
            "StatefulSet" => "statefulsets",
            "ReplicationController" => "replicationcontrollers",
            _ => {
                total += 1;
                continue;
            }
        };
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &owner.kind);
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        match api.get_opt(&owner.name).await {
            Ok(Some(o)) => {
                total += o
                    .data
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1) as i32
            }
            _ => total += 1,
        }
    }
    total
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, st: Arc<State>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = st
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selects(&pdb, p))
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let spec = pdb.spec.clone().unwrap_or_default();
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .count() as i32;
    let (expected, desired) = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => (pods.len() as i32, *n),
        (Some(pct), _) => {
            let e = expected_from_controllers(&st.ctx.client, &ns, &pods).await;
            (e, scaled(pct, e)?)
        }
        (None, Some(mu)) => {
            let e = expected_from_controllers(&st.ctx.client, &ns, &pods).await;
            (e, (e - scaled(mu, e)?).max(0))
        }
        (None, None) => (pods.len() as i32, pods.len() as i32),
    };
    // Pods evicted recently but not yet gone still count against the budget (2 min).
    let now = jiff::Timestamp::now();
    let present: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let mut disrupted = BTreeMap::new();
    for (name, t) in pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default()
    {
        if present.contains(&name) && now.as_second() - t.0.as_second() < 120 {
            disrupted.insert(name, t);
        }
    }
    let allowed = (healthy - desired - disrupted.len() as i32).max(0);
    let generation = pdb.metadata.generation;
    let mut new = (*pdb).clone();
    let old_status = pdb.status.clone();
    let status = new.status.get_or_insert_with(Default::default);
    status.observed_generation = generation;
    status.expected_pods = expected;
    status.current_healthy = healthy;
    status.desired_healthy = desired;
    status.disruptions_allowed = allowed;
    status.disrupted_pods = (!disrupted.is_empty()).then_some(disrupted);
    let (cstatus, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let prev = status
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed");
    let transition = match &prev {
        Some(c) if c.status == cstatus => c.last_transition_time.clone(),
        _ => k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
        ),
    };
    status.conditions = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "DisruptionAllowed".into(),
            status: cstatus.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: generation,
            last_transition_time: transition,
        },
    ]);
    if new.status != old_status {
        let api: Api<PodDisruptionBudget> = Api::namespaced(st.ctx.client.clone(), &ns);
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), &new)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => {
                return Err(Error::Api {
                    context: format!(
                        "updating status of poddisruptionbudget {ns}/{}",
                        pdb.name_any()
                    ),
                    source: e,
                });
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

fn error_policy(_pdb: Arc<PodDisruptionBudget>, err: &Error, _st: Arc<State>) -> Action {
    tracing::debug!(error = %err, "disruption reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let pdbs = ctx.informers.get::<PodDisruptionBudget>().await;
    let pods = ctx.informers.get::<Pod>().await;
    let all_pdbs = pdbs.store();
    let pod_triggers = pods.trigger(move |pod: &Pod| {
        let ns = pod.namespace();
        all_pdbs
            .state()
            .into_iter()
            .filter(|p| p.namespace() == ns && selects(p, pod))
            .map(|p| ObjectRef::from_obj(&*p))
            .collect::<Vec<_>>()
    });
    let queue = futures::stream::select(pdbs.trigger(itself), pod_triggers);
    let pdbs = pdbs.store();
    let st = Arc::new(State {
        ctx,
        pods: pods.store(),
    });
    applier(
        |pdb, st| Box::pin(reconcile(pdb, st)),
        error_policy,
        st,
        pdbs,
        queue,
        kube::runtime::controller::Config::default(),
    )
    .for_each(|_| async {})
    .await;
    Ok(())
}
