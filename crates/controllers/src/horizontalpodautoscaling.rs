//! The HorizontalPodAutoscaler controller (autoscaling/v2). Until the resource
//! metrics API (`metrics.k8s.io`, a later issue) exists, no metric can be read: the
//! controller says so in the `ScalingActive` condition and a `FailedGetResourceMetric`
//! event, exactly as Kubernetes does when metrics-server is missing, and only keeps
//! the target within `minReplicas..maxReplicas` through its `scale` subresource.

use std::sync::Arc;
use std::time::Duration;

use events::{Event, EventType, Recorder, Reporter};
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::{Context, Error};

const RESYNC: Duration = Duration::from_secs(15);

struct State {
    ctx: Arc<Context>,
    recorder: Recorder,
}

/// The `scale` subresource path of a target kind.
fn scale_path(api_version: &str, kind: &str, ns: &str, name: &str) -> Option<String> {
    let plural = match kind {
        "Deployment" => "deployments",
        "ReplicaSet" => "replicasets",
        "StatefulSet" => "statefulsets",
        "ReplicationController" => "replicationcontrollers",
        _ => return None,
    };
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    Some(format!("{base}/namespaces/{ns}/{plural}/{name}/scale"))
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    old: &[HorizontalPodAutoscalerCondition],
) -> HorizontalPodAutoscalerCondition {
    let now = jiff::Timestamp::now();
    let last = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(
            jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
        ));
    HorizontalPodAutoscalerCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(last),
    }
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, st: Arc<State>) -> Result<Action, Error> {
    let ns = hpa.namespace().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let old_conditions = hpa
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let client = st.ctx.client.clone();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut status = hpa.status.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    let hpa_ref = hpa.object_ref(&());

    let scale_url = scale_path(
        target.api_version.as_deref().unwrap_or("apps/v1"),
        &target.kind,
        &ns,
        &target.name,
    );
    let scale: Option<Value> = match &scale_url {
        Some(url) => {
            let req = http::Request::get(url.as_str())
                .body(Vec::new())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            client.request::<Value>(req).await.ok()
        }
        None => None,
    };
    let Some(scale) = scale else {
        let msg = format!(
            "the HPA controller was unable to get the target's current scale: {} {:?} not found",
            target.kind, target.name
        );
        status.conditions = Some(vec![condition(
            "AbleToScale",
            "False",
            "FailedGetScale",
            &msg,
            &old_conditions,
        )]);
        write_status(&client, &hpa, status).await?;
        return Ok(Action::requeue(RESYNC));
    };
    let current = scale
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0) as i32;
    let wanted = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0) as i32;
    let desired = wanted.clamp(min, max.max(min));
    let metric_msg = "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";
    let mut conditions = vec![
        condition(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            &old_conditions,
        ),
        condition(
            "ScalingActive",
            "False",
            "FailedGetResourceMetric",
            metric_msg,
            &old_conditions,
        ),
    ];
    if desired != wanted {
        let (reason, limited, limited_msg) = if wanted < min {
            (
                "Current number of replicas below Spec.MinReplicas",
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        } else {
            (
                "Current number of replicas above Spec.MaxReplicas",
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if let Some(url) = &scale_url {
            let body = serde_json::to_vec(&json!({"spec": {"replicas": desired}}))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let req = http::Request::patch(url.as_str())
                .header("Content-Type", "application/merge-patch+json")
                .body(body)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            client.request::<Value>(req).await.map_err(|e| Error::Api {
                context: format!("rescaling {} {ns}/{}", target.kind, target.name),
                source: e,
            })?;
        }
        status.last_scale_time = Some(Time(jiff::Timestamp::now()));
        let _ = st
            .recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "SuccessfulRescale".into(),
                    note: Some(format!("New size: {desired}; reason: {reason}")),
                    action: "Rescale".into(),
                    secondary: None,
                },
                &hpa_ref,
            )
            .await;
        conditions.push(condition(
            "ScalingLimited",
            "True",
            limited,
            limited_msg,
            &old_conditions,
        ));
    } else {
        let _ = st
            .recorder
            .publish(
                &Event {
                    type_: EventType::Warning,
                    reason: "FailedGetResourceMetric".into(),
                    note: Some("failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)".into()),
                    action: "GetMetrics".into(),
                    secondary: None,
                },
                &hpa_ref,
            )
            .await;
    }
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.conditions = Some(conditions);
    write_status(&client, &hpa, status).await?;
    Ok(Action::requeue(RESYNC))
}

async fn write_status(
    client: &kube::Client,
    hpa: &HorizontalPodAutoscaler,
    status: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
) -> Result<(), Error> {
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), &hpa.namespace().unwrap_or_default());
    let patch = json!({"status": status});
    match api
        .patch_status(
            &hpa.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(Error::Api {
            context: format!("updating status of hpa {}", hpa.name_any()),
            source: e,
        }),
    }
}

fn error_policy(_hpa: Arc<HorizontalPodAutoscaler>, err: &Error, _st: Arc<State>) -> Action {
    tracing::debug!(error = %err, "hpa reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "horizontal-pod-autoscaler".into(),
            instance: None,
        },
    );
    let st = Arc::new(State { ctx, recorder });
    Controller::new(
        Api::<HorizontalPodAutoscaler>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, st)
    .for_each(|_| async {})
    .await;
    Ok(())
}
