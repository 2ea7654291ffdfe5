//! Workload controllers' resources: Deployments, ReplicaSets, StatefulSets,
//! DaemonSets, ReplicationControllers, Jobs, CronJobs, HPAs and PDBs.

use api::selector::LabelSelector;
use api::status::FieldError;
use serde_json::{Value, json};

use super::{Strategy, immutable, non_negative, validate_pod_spec};
use crate::object::default_field;

fn default_template(obj: &mut Value, at: &str) {
    if let Some(spec) = obj.pointer_mut(at) {
        super::default_pod_spec(spec);
    }
}

/// `spec.selector` must be present, valid, non-empty and match the template labels.
fn validate_selector_and_template(errs: &mut Vec<FieldError>, obj: &Value) {
    let template_labels =
        crate::object::labels(obj.pointer("/spec/template").unwrap_or(&Value::Null));
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            let parsed: Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector, _> =
                serde_json::from_value(sel.clone());
            match parsed {
                Err(e) => errs.push(FieldError::invalid(
                    "spec.selector",
                    sel.clone(),
                    e.to_string(),
                )),
                Ok(s) => {
                    let empty = s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                        && s.match_expressions.as_ref().is_none_or(|m| m.is_empty());
                    if empty {
                        errs.push(FieldError::invalid(
                            "spec.selector",
                            sel.clone(),
                            "empty selector is invalid for deployment",
                        ));
                        return;
                    }
                    match LabelSelector::from_label_selector(&s) {
                        Ok(sel) if !sel.matches(&template_labels) => {
                            let rendered = format!(
                                "map[string]string{{{}}}",
                                template_labels
                                    .iter()
                                    .map(|(k, v)| format!("{k:?}:{v:?}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            );
                            errs.push(FieldError::invalid(
                                "spec.template.metadata.labels",
                                Value::String(rendered),
                                "`selector` does not match template `labels`",
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => errs.push(FieldError::invalid(
                            "spec.selector",
                            sel.clone(),
                            e.to_string(),
                        )),
                    }
                }
            }
        }
    }
}

/// Update rule of every replicated workload: the selector never changes.
fn selector_is_immutable(mut errs: Vec<FieldError>, new: &Value, old: &Value) -> Vec<FieldError> {
    immutable(&mut errs, new, old, "spec.selector");
    errs
}

fn validate_replicated(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    non_negative(&mut errs, obj, "spec.replicas");
    non_negative(&mut errs, obj, "spec.minReadySeconds");
    non_negative(&mut errs, obj, "spec.revisionHistoryLimit");
    validate_selector_and_template(&mut errs, obj);
    errs.extend(validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
    ));
    errs
}

/// Deployments.
pub(crate) struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "replicas", json!(1));
        default_field(obj, "spec", "revisionHistoryLimit", json!(10));
        default_field(obj, "spec", "progressDeadlineSeconds", json!(600));
        default_field(obj, "spec", "strategy", json!({}));
        default_field(obj, "spec.strategy", "type", json!("RollingUpdate"));
        if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
            default_field(obj, "spec.strategy", "rollingUpdate", json!({}));
            default_field(
                obj,
                "spec.strategy.rollingUpdate",
                "maxUnavailable",
                json!("25%"),
            );
            default_field(obj, "spec.strategy.rollingUpdate", "maxSurge", json!("25%"));
        }
        default_template(obj, "/spec/template/spec");
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_replicated(obj);
        if let Some(t) = obj.pointer("/spec/strategy/type").and_then(Value::as_str) {
            if !["RollingUpdate", "Recreate"].contains(&t) {
                errs.push(FieldError::not_supported(
                    "spec.strategy.type",
                    t,
                    &["Recreate", "RollingUpdate"],
                ));
            } else if t == "Recreate"
                && obj
                    .pointer("/spec/strategy/rollingUpdate")
                    .is_some_and(|v| !v.is_null())
            {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        if let Some(t) = obj
            .pointer("/spec/template/spec/restartPolicy")
            .and_then(Value::as_str)
            && t != "Always"
        {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                t,
                &["Always"],
            ));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        selector_is_immutable(self.validate(new), new, old)
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// ReplicaSets.
pub(crate) struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "replicas", json!(1));
        default_template(obj, "/spec/template/spec");
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_replicated(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        selector_is_immutable(self.validate(new), new, old)
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// StatefulSets.
pub(crate) struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "replicas", json!(1));
        default_field(obj, "spec", "podManagementPolicy", json!("OrderedReady"));
        default_field(obj, "spec", "revisionHistoryLimit", json!(10));
        default_field(
            obj,
            "spec",
            "updateStrategy",
            json!({"type": "RollingUpdate"}),
        );
        if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
            default_field(obj, "spec.updateStrategy", "rollingUpdate", json!({}));
            default_field(
                obj,
                "spec.updateStrategy.rollingUpdate",
                "partition",
                json!(0),
            );
        }
        default_field(
            obj,
            "spec",
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        default_template(obj, "/spec/template/spec");
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_replicated(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = selector_is_immutable(self.validate(new), new, old);
        immutable(&mut errs, new, old, "spec.serviceName");
        immutable(&mut errs, new, old, "spec.podManagementPolicy");
        errs
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// DaemonSets.
pub(crate) struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "revisionHistoryLimit", json!(10));
        default_field(
            obj,
            "spec",
            "updateStrategy",
            json!({"type": "RollingUpdate"}),
        );
        if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
            default_field(obj, "spec.updateStrategy", "rollingUpdate", json!({}));
            default_field(
                obj,
                "spec.updateStrategy.rollingUpdate",
                "maxUnavailable",
                json!(1),
            );
            default_field(
                obj,
                "spec.updateStrategy.rollingUpdate",
                "maxSurge",
                json!(0),
            );
        }
        default_template(obj, "/spec/template/spec");
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_replicated(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        selector_is_immutable(self.validate(new), new, old)
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// ReplicationControllers: the selector defaults to the template labels.
pub(crate) struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "replicas", json!(1));
        if let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned() {
            default_field(obj, "spec", "selector", labels.clone());
            if obj
                .pointer("/metadata/labels")
                .is_none_or(|l| l.as_object().is_none_or(|m| m.is_empty()))
            {
                crate::object::meta_mut(obj).insert("labels".into(), labels);
            }
        }
        default_template(obj, "/spec/template/spec");
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        non_negative(&mut errs, obj, "spec.replicas");
        errs.extend(validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
        ));
        errs
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

fn validate_job_template(errs: &mut Vec<FieldError>, obj: &Value, at: &str, field: &str) {
    let spec = obj.pointer(at);
    errs.extend(validate_pod_spec(spec, &format!("{field}.spec")));
    match spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
    {
        Some("Never" | "OnFailure") => {}
        Some(p) => errs.push(FieldError::not_supported(
            format!("{field}.spec.restartPolicy"),
            p,
            &["OnFailure", "Never"],
        )),
        None => errs.push(FieldError::required(
            format!("{field}.spec.restartPolicy"),
            "",
        )),
    }
}

/// Jobs: a generated selector on the controller UID, as Kubernetes does unless
/// `manualSelector` is set.
pub(crate) struct JobStrategy;

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        let completions = obj
            .pointer("/spec/completions")
            .is_some_and(|v| !v.is_null());
        let parallelism = obj
            .pointer("/spec/parallelism")
            .is_some_and(|v| !v.is_null());
        if !completions && !parallelism {
            default_field(obj, "spec", "completions", json!(1));
            default_field(obj, "spec", "parallelism", json!(1));
        }
        default_field(obj, "spec", "parallelism", json!(1));
        // With a limit per index, the Job-wide limit is off unless set.
        let per_index = obj
            .pointer("/spec/backoffLimitPerIndex")
            .is_some_and(|v| !v.is_null());
        default_field(
            obj,
            "spec",
            "backoffLimit",
            json!(if per_index { i32::MAX } else { 6 }),
        );
        default_field(obj, "spec", "completionMode", json!("NonIndexed"));
        default_field(obj, "spec", "suspend", json!(false));
        default_field(
            obj,
            "spec",
            "podReplacementPolicy",
            json!("TerminatingOrFailed"),
        );
        if obj.pointer("/spec/template/spec/restartPolicy").is_none() {
            // Jobs have no default restartPolicy; validation demands one.
        }
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            let had_policy = spec.get("restartPolicy").is_some();
            super::default_pod_spec(spec);
            if !had_policy && let Some(m) = spec.as_object_mut() {
                m.remove("restartPolicy");
            }
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        let manual = obj
            .pointer("/spec/manualSelector")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let uid = crate::object::meta_str(obj, "uid")
            .unwrap_or_default()
            .to_string();
        let name = crate::object::name(obj).unwrap_or_default().to_string();
        if !manual && !uid.is_empty() {
            crate::object::set(
                obj,
                "spec.selector",
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            );
            let labels = crate::object::path_mut(obj, "spec.template.metadata.labels");
            if !labels.is_object() {
                *labels = json!({});
            }
            let l = labels.as_object_mut().expect("object");
            l.insert(
                "batch.kubernetes.io/controller-uid".into(),
                uid.clone().into(),
            );
            l.insert("batch.kubernetes.io/job-name".into(), name.clone().into());
            l.insert("controller-uid".into(), uid.into());
            l.insert("job-name".into(), name.into());
        }
        crate::object::set(obj, "status", json!({}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for f in [
            "spec.parallelism",
            "spec.completions",
            "spec.backoffLimit",
            "spec.activeDeadlineSeconds",
            "spec.backoffLimitPerIndex",
            "spec.maxFailedIndexes",
        ] {
            non_negative(&mut errs, obj, f);
        }
        validate_job_template(&mut errs, obj, "/spec/template/spec", "spec.template");
        validate_indexed_only(&mut errs, obj);
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        immutable(&mut errs, new, old, "spec.selector");
        immutable(&mut errs, new, old, "spec.completionMode");
        errs
    }
    fn resets_status_on_create(&self) -> bool {
        false
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}

/// Fields that need `completionMode: Indexed` (and, for `maxFailedIndexes` and the
/// `FailIndex` action, `backoffLimitPerIndex`), with Kubernetes' messages.
fn validate_indexed_only(errs: &mut Vec<FieldError>, obj: &Value) {
    let set = |p: &str| obj.pointer(p).is_some_and(|v| !v.is_null());
    let indexed = obj.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
    let per_index = set("/spec/backoffLimitPerIndex");
    if per_index && !indexed {
        errs.push(FieldError::invalid(
            "spec.backoffLimitPerIndex",
            obj.pointer("/spec/backoffLimitPerIndex")
                .cloned()
                .unwrap_or_default(),
            "requires indexed completion mode",
        ));
    }
    if set("/spec/maxFailedIndexes") && !per_index {
        errs.push(FieldError::required(
            "spec.backoffLimitPerIndex",
            "when maxFailedIndexes is specified",
        ));
    }
    if set("/spec/successPolicy") && !indexed {
        errs.push(FieldError::invalid(
            "spec.successPolicy",
            obj.pointer("/spec/successPolicy")
                .cloned()
                .unwrap_or_default(),
            "requires indexed completion mode",
        ));
    }
    let rules = obj
        .pointer("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        if rule.get("action").and_then(Value::as_str) == Some("FailIndex") && !per_index {
            errs.push(FieldError::invalid(
                format!("spec.podFailurePolicy.rules[{i}].action"),
                json!("FailIndex"),
                "requires the backoffLimitPerIndex to be set",
            ));
        }
    }
}

/// CronJobs.
pub(crate) struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "concurrencyPolicy", json!("Allow"));
        default_field(obj, "spec", "suspend", json!(false));
        default_field(obj, "spec", "successfulJobsHistoryLimit", json!(3));
        default_field(obj, "spec", "failedJobsHistoryLimit", json!(1));
        if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
            let had_policy = spec.get("restartPolicy").is_some();
            super::default_pod_spec(spec);
            if !had_policy && let Some(m) = spec.as_object_mut() {
                m.remove("restartPolicy");
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match obj.pointer("/spec/schedule").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
            Some(s) => {
                let fields = s.split_whitespace().count();
                if !s.starts_with('@') && fields != 5 {
                    errs.push(FieldError::invalid(
                        "spec.schedule",
                        s,
                        format!("expected exactly 5 fields, found {fields}: {s}"),
                    ));
                }
            }
        }
        if let Some(p) = obj
            .pointer("/spec/concurrencyPolicy")
            .and_then(Value::as_str)
            && !["Allow", "Forbid", "Replace"].contains(&p)
        {
            errs.push(FieldError::not_supported(
                "spec.concurrencyPolicy",
                p,
                &["Allow", "Forbid", "Replace"],
            ));
        }
        validate_job_template(
            &mut errs,
            obj,
            "/spec/jobTemplate/spec/template/spec",
            "spec.jobTemplate.spec.template",
        );
        errs
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// HorizontalPodAutoscalers (autoscaling/v2).
pub(crate) struct HpaStrategy;

impl Strategy for HpaStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "minReplicas", json!(1));
        if obj
            .pointer("/spec/metrics")
            .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
        {
            crate::object::set(
                obj,
                "spec.metrics",
                json!([{
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
                }]),
            );
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let min = obj
            .pointer("/spec/minReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        match obj.pointer("/spec/maxReplicas").and_then(Value::as_i64) {
            None => errs.push(FieldError::required("spec.maxReplicas", "")),
            Some(max) if max < min => errs.push(FieldError::invalid(
                "spec.maxReplicas",
                max,
                "must be greater than or equal to `minReplicas`",
            )),
            _ => {}
        }
        if obj.pointer("/spec/scaleTargetRef/kind").is_none() {
            errs.push(FieldError::required("spec.scaleTargetRef.kind", ""));
        }
        if obj.pointer("/spec/scaleTargetRef/name").is_none() {
            errs.push(FieldError::required("spec.scaleTargetRef.name", ""));
        }
        errs
    }
}

/// PodDisruptionBudgets.
pub(crate) struct PdbStrategy;

impl Strategy for PdbStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj.pointer("/spec/minAvailable").is_some()
            && obj.pointer("/spec/maxUnavailable").is_some()
        {
            errs.push(FieldError::invalid(
                "spec",
                obj["spec"].clone(),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        errs
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}
