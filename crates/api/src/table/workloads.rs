//! Workload controllers: ReplicationController, ReplicaSet, Deployment, StatefulSet,
//! DaemonSet, ControllerRevision, Job, CronJob, PodDisruptionBudget.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, at, int_at, items, name, opt_int_at, str_at};
use super::{ColumnDefinition, docs, duration, labels};

/// Wide `Containers` and `Images` columns.
fn container_columns() -> [ColumnDefinition; 2] {
    [
        ColumnDefinition::text("Containers", "Names of each container in the template.").wide(),
        ColumnDefinition::text(
            "Images",
            "Images referenced by each container in the template.",
        )
        .wide(),
    ]
}

/// Containers and images of the pod template at `spec.template`.
fn template_containers(obj: &Value) -> (Value, Value) {
    fields::container_cells(items(obj, &["spec", "template", "spec", "containers"]))
}

/// `spec.replicas`, which the server defaults to 1.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

pub(super) fn replication_controller_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::new("Desired", "integer", docs::RC_SPEC_REPLICAS),
        ColumnDefinition::new("Current", "integer", docs::RC_STATUS_REPLICAS),
        ColumnDefinition::new("Ready", "integer", docs::RC_STATUS_READY_REPLICAS),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns.push(ColumnDefinition::text("Selector", docs::RC_SPEC_SELECTOR).wide());
    columns
}

pub(super) fn replication_controller_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    // The server defaults an empty selector to the template's labels.
    let mut selector = fields::label_set(obj, &["spec", "selector"]);
    if selector.is_empty() {
        selector = fields::label_set(obj, &["spec", "template", "metadata", "labels"]);
    }
    vec![
        Value::from(name(obj)),
        Value::from(desired_replicas(obj)),
        Value::from(int_at(obj, &["status", "replicas"])),
        Value::from(int_at(obj, &["status", "readyReplicas"])),
        Value::from(duration::age(obj, now)),
        names,
        images,
        Value::from(fields::none_if_empty(selector)),
    ]
}

pub(super) fn replica_set_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::new("Desired", "integer", docs::RS_SPEC_REPLICAS),
        ColumnDefinition::new("Current", "integer", docs::RS_STATUS_REPLICAS),
        ColumnDefinition::new("Ready", "integer", docs::RS_STATUS_READY_REPLICAS),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns.push(ColumnDefinition::text("Selector", docs::RS_SPEC_SELECTOR).wide());
    columns
}

pub(super) fn replica_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    vec![
        Value::from(name(obj)),
        Value::from(desired_replicas(obj)),
        Value::from(int_at(obj, &["status", "replicas"])),
        Value::from(int_at(obj, &["status", "readyReplicas"])),
        Value::from(duration::age(obj, now)),
        names,
        images,
        Value::from(labels::format_label_selector(obj, &["spec", "selector"])),
    ]
}

pub(super) fn deployment_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Ready", "Number of the pod with ready state"),
        ColumnDefinition::text("Up-to-date", docs::DEPLOYMENT_UPDATED_REPLICAS),
        ColumnDefinition::text("Available", docs::DEPLOYMENT_AVAILABLE_REPLICAS),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns.push(ColumnDefinition::text("Selector", docs::DEPLOYMENT_SPEC_SELECTOR).wide());
    columns
}

pub(super) fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    // Unlike other printers, an empty selector prints as nothing, an invalid one `<invalid>`.
    let selector = labels::selector_string(obj, &["spec", "selector"])
        .unwrap_or_else(|_| "<invalid>".to_owned());
    let ready = int_at(obj, &["status", "readyReplicas"]);
    vec![
        Value::from(name(obj)),
        Value::from(format!("{ready}/{}", desired_replicas(obj))),
        Value::from(int_at(obj, &["status", "updatedReplicas"])),
        Value::from(int_at(obj, &["status", "availableReplicas"])),
        Value::from(duration::age(obj, now)),
        names,
        images,
        Value::from(selector),
    ]
}

pub(super) fn stateful_set_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Ready", "Number of the pod with ready state"),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns
}

pub(super) fn stateful_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    let ready = int_at(obj, &["status", "readyReplicas"]);
    vec![
        Value::from(name(obj)),
        Value::from(format!("{ready}/{}", desired_replicas(obj))),
        Value::from(duration::age(obj, now)),
        names,
        images,
    ]
}

pub(super) fn daemon_set_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::new("Desired", "integer", docs::DS_DESIRED_NUMBER_SCHEDULED),
        ColumnDefinition::new("Current", "integer", docs::DS_CURRENT_NUMBER_SCHEDULED),
        ColumnDefinition::new("Ready", "integer", docs::DS_NUMBER_READY),
        ColumnDefinition::new("Up-to-date", "integer", docs::DS_UPDATED_NUMBER_SCHEDULED),
        ColumnDefinition::new("Available", "integer", docs::DS_NUMBER_AVAILABLE),
        ColumnDefinition::text("Node Selector", docs::POD_NODE_SELECTOR),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns.push(ColumnDefinition::text("Selector", docs::DS_SPEC_SELECTOR).wide());
    columns
}

pub(super) fn daemon_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = template_containers(obj);
    let status = |key: &str| Value::from(int_at(obj, &["status", key]));
    vec![
        Value::from(name(obj)),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        Value::from(fields::format_labels(
            obj,
            &["spec", "template", "spec", "nodeSelector"],
        )),
        Value::from(duration::age(obj, now)),
        names,
        images,
        Value::from(labels::format_label_selector(obj, &["spec", "selector"])),
    ]
}

pub(super) fn controller_revision_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Controller", "Controller of the object"),
        ColumnDefinition::text("Revision", docs::CONTROLLER_REVISION_REVISION),
        ColumnDefinition::age(),
    ]
}

pub(super) fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let controller = items(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| fields::opt_bool_at(r, &["controller"]) == Some(true))
        .map_or_else(|| "<none>".to_owned(), controller_name);
    vec![
        Value::from(name(obj)),
        Value::from(controller),
        Value::from(int_at(obj, &["revision"])),
        Value::from(duration::age(obj, now)),
    ]
}

/// `statefulset.apps/web`: the lowercase group kind of an owner reference, then its name.
fn controller_name(owner: &Value) -> String {
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    // `schema.ParseGroupVersion`: `v1` has no group, `apps/v1` has `apps`.
    let group = match str_at(owner, &["apiVersion"]).split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let group_kind = match (kind, group) {
        ("", "") => return owner_name.to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, group) => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

pub(super) fn job_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Status", "Status of the job."),
        ColumnDefinition::text("Completions", docs::JOB_STATUS_SUCCEEDED),
        ColumnDefinition::text("Duration", "Time required to complete the job."),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns.push(ColumnDefinition::text("Selector", docs::JOB_SPEC_SELECTOR).wide());
    columns
}

pub(super) fn job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(obj, &["status", "succeeded"]);
    let completions = match opt_int_at(obj, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int_at(obj, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = duration::timestamp_at(obj, &["status", "startTime"]);
    let completion = duration::timestamp_at(obj, &["status", "completionTime"]);
    let job_duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(start), None) => duration::between(start, now),
        (Some(start), Some(end)) => duration::between(start, end),
    };
    // The first condition of a type decides whether the job is in that state.
    let has_condition = |condition_type: &str| {
        items(obj, &["status", "conditions"])
            .iter()
            .find(|c| str_at(c, &["type"]) == condition_type)
            .is_some_and(|c| str_at(c, &["status"]) == "True")
    };
    let status = if has_condition("Complete") {
        "Complete"
    } else if has_condition("Failed") {
        "Failed"
    } else if fields::is_deleting(obj) {
        "Terminating"
    } else if has_condition("Suspended") {
        "Suspended"
    } else if has_condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = template_containers(obj);
    vec![
        Value::from(name(obj)),
        Value::from(status),
        Value::from(completions),
        Value::from(job_duration),
        Value::from(duration::age(obj, now)),
        names,
        images,
        Value::from(labels::format_label_selector(obj, &["spec", "selector"])),
    ]
}

pub(super) fn cron_job_columns() -> Vec<ColumnDefinition> {
    let mut columns = vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Schedule", docs::CRON_JOB_SCHEDULE),
        ColumnDefinition::text("Timezone", docs::CRON_JOB_TIME_ZONE),
        ColumnDefinition::new("Suspend", "boolean", docs::CRON_JOB_SUSPEND),
        ColumnDefinition::new("Active", "integer", docs::CRON_JOB_ACTIVE),
        ColumnDefinition::text("Last Schedule", docs::CRON_JOB_LAST_SCHEDULE_TIME),
        ColumnDefinition::age(),
    ];
    columns.extend(container_columns());
    columns.push(ColumnDefinition::text("Selector", docs::JOB_SPEC_SELECTOR).wide());
    columns
}

pub(super) fn cron_job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match at(obj, &["status", "lastScheduleTime"]) {
        Some(_) => duration::since(
            duration::timestamp_at(obj, &["status", "lastScheduleTime"]),
            now,
        ),
        None => "<none>".to_owned(),
    };
    let job_spec = at(obj, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    let (names, images) =
        fields::container_cells(items(job_spec, &["template", "spec", "containers"]));
    // The server defaults `suspend` to false.
    let suspend = fields::opt_bool_at(obj, &["spec", "suspend"]).unwrap_or(false);
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "schedule"])),
        Value::from(fields::opt_str_at(obj, &["spec", "timeZone"]).unwrap_or("<none>")),
        Value::from(fields::bool_text(Some(suspend))),
        Value::from(fields::len_at(obj, &["status", "active"])),
        Value::from(last_schedule),
        Value::from(duration::age(obj, now)),
        names,
        images,
        Value::from(labels::format_label_selector(job_spec, &["selector"])),
    ]
}

pub(super) fn pdb_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "Min Available",
            "The minimum number of pods that must be available.",
        ),
        ColumnDefinition::text(
            "Max Unavailable",
            "The maximum number of pods that may be unavailable.",
        ),
        ColumnDefinition::new(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn pdb_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let bound =
        |key: &str| fields::int_or_string(obj, &["spec", key]).unwrap_or_else(|| "N/A".to_owned());
    vec![
        Value::from(name(obj)),
        Value::from(bound("minAvailable")),
        Value::from(bound("maxUnavailable")),
        Value::from(int_at(obj, &["status", "disruptionsAllowed"])),
        Value::from(duration::age(obj, now)),
    ]
}
