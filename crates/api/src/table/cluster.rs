//! Cluster plumbing: Lease, PriorityClass, RuntimeClass, RoleBinding, ClusterRoleBinding,
//! admission webhook configurations, CertificateSigningRequest.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, int_at, items, len_at, name, str_at};
use super::{ColumnDefinition, docs, duration};

pub(super) fn lease_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Holder", docs::LEASE_HOLDER_IDENTITY),
        ColumnDefinition::age(),
    ]
}

pub(super) fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "holderIdentity"])),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn priority_class_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::new("Value", "integer", docs::PRIORITY_CLASS_VALUE),
        ColumnDefinition::new(
            "Global-Default",
            "boolean",
            docs::PRIORITY_CLASS_GLOBAL_DEFAULT,
        ),
        ColumnDefinition::age(),
        ColumnDefinition::text("PreemptionPolicy", docs::PRIORITY_CLASS_PREEMPTION_POLICY),
    ]
}

pub(super) fn priority_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // The server defaults `preemptionPolicy` to PreemptLowerPriority.
    let preemption_policy =
        fields::opt_str_at(obj, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority");
    vec![
        Value::from(name(obj)),
        Value::from(int_at(obj, &["value"])),
        Value::from(fields::opt_bool_at(obj, &["globalDefault"]).unwrap_or(false)),
        Value::from(duration::age(obj, now)),
        Value::from(preemption_policy),
    ]
}

pub(super) fn runtime_class_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        // kube-apiserver looks this description up under a key ObjectMeta lacks: it is empty.
        ColumnDefinition::text("Handler", ""),
        ColumnDefinition::age(),
    ]
}

pub(super) fn runtime_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["handler"])),
        Value::from(duration::age(obj, now)),
    ]
}

/// Role binding columns; the two kinds differ only in the subjects' descriptions.
fn binding_columns(role_ref: &str, kind: &str) -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Role", role_ref),
        ColumnDefinition::age(),
        ColumnDefinition::text("Users", &format!("Users in the {kind}")).wide(),
        ColumnDefinition::text("Groups", &format!("Groups in the {kind}")).wide(),
        ColumnDefinition::text("ServiceAccounts", &format!("ServiceAccounts in the {kind}")).wide(),
    ]
}

pub(super) fn role_binding_columns() -> Vec<ColumnDefinition> {
    binding_columns(docs::ROLE_BINDING_ROLE_REF, "roleBinding")
}

pub(super) fn cluster_role_binding_columns() -> Vec<ColumnDefinition> {
    binding_columns(docs::CLUSTER_ROLE_BINDING_ROLE_REF, "clusterRoleBinding")
}

/// RoleBinding and ClusterRoleBinding rows: `Kind/name` of the role, then subjects by kind.
pub(super) fn role_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        str_at(obj, &["roleRef", "kind"]),
        str_at(obj, &["roleRef", "name"]),
    );
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(obj, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{subject_name}",
                str_at(subject, &["namespace"])
            )),
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            _ => {}
        }
    }
    vec![
        Value::from(name(obj)),
        Value::from(role),
        Value::from(duration::age(obj, now)),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(service_accounts.join(", ")),
    ]
}

pub(super) fn webhook_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::new(
            "Webhooks",
            "integer",
            "Webhooks indicates the number of webhooks registered in this configuration",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn webhook_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(len_at(obj, &["webhooks"])),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn csr_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::age(),
        ColumnDefinition::text("SignerName", docs::CSR_SIGNER_NAME),
        ColumnDefinition::text("Requestor", docs::CSR_REQUEST),
        ColumnDefinition::text("RequestedDuration", docs::CSR_EXPIRATION_SECONDS),
        ColumnDefinition::text("Condition", docs::CSR_CONDITIONS),
    ]
}

pub(super) fn csr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let has = |condition_type: &str| {
        items(obj, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == condition_type)
    };
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(obj, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    let requested_duration = fields::opt_int_at(obj, &["spec", "expirationSeconds"])
        .map_or_else(|| "<none>".to_owned(), duration::human_duration);
    vec![
        Value::from(name(obj)),
        Value::from(duration::age(obj, now)),
        Value::from(fields::str_or(obj, &["spec", "signerName"], "<none>")),
        Value::from(str_at(obj, &["spec", "username"])),
        Value::from(requested_duration),
        Value::from(condition),
    ]
}

pub(super) fn flow_schema_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "PriorityLevel",
            "priorityLevelConfiguration is a reference to the priority level configuration that the flow schema is using",
        ),
        ColumnDefinition::text(
            "MatchingPrecedence",
            "matchingPrecedence is the precedence of this flow schema among the others; lower values are matched first",
        ),
        ColumnDefinition::text(
            "DistinguisherMethod",
            "distinguisherMethod defines how to compute the flow distinguisher for requests that match this schema",
        ),
        ColumnDefinition::age(),
        ColumnDefinition::text(
            "MissingPL",
            "indicates whether the FlowSchema's priority level configuration is missing (its Dangling condition)",
        ),
    ]
}

pub(super) fn flow_schema_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let missing = items(obj, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Dangling")
        .map_or("?", |c| str_at(c, &["status"]));
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "priorityLevelConfiguration", "name"])),
        Value::from(fields::opt_int_at(obj, &["spec", "matchingPrecedence"]).unwrap_or(0)),
        Value::from(fields::str_or(
            obj,
            &["spec", "distinguisherMethod", "type"],
            "<none>",
        )),
        Value::from(duration::age(obj, now)),
        Value::from(missing),
    ]
}

pub(super) fn priority_level_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "Type",
            "type of the priority level: Exempt (never queued) or Limited",
        ),
        ColumnDefinition::text(
            "NominalConcurrencyShares",
            "nominalConcurrencyShares is this level's share of the server's execution seats",
        ),
        ColumnDefinition::text(
            "Queues",
            "queues is the number of queues of this priority level",
        ),
        ColumnDefinition::text(
            "HandSize",
            "handSize is the number of queues a flow is dealt by shuffle sharding",
        ),
        ColumnDefinition::text(
            "QueueLengthLimit",
            "queueLengthLimit is the most requests a queue may hold",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn priority_level_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let none = || Value::from("<none>");
    let limited = obj.get("spec").and_then(|s| s.get("limited"));
    let shares = limited
        .and_then(|l| l.get("nominalConcurrencyShares"))
        .cloned()
        .unwrap_or_else(none);
    let queuing = limited
        .and_then(|l| l.get("limitResponse"))
        .and_then(|r| r.get("queuing"));
    let q = |k: &str| queuing.and_then(|q| q.get(k)).cloned().unwrap_or_else(none);
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "type"])),
        shares,
        q("queues"),
        q("handSize"),
        q("queueLengthLimit"),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn admission_policy_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::new(
            "Validations",
            "integer",
            "Validations indicates the number of validation rules defined in this configuration",
        ),
        ColumnDefinition::text(
            "ParamKind",
            "ParamKind specifies the kind of resources used to parameterize this policy",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn admission_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let kind = str_at(obj, &["spec", "paramKind", "kind"]);
    let param_kind = if obj.pointer("/spec/paramKind").is_some_and(|p| !p.is_null()) {
        format!(
            "{}/{kind}",
            str_at(obj, &["spec", "paramKind", "apiVersion"])
        )
    } else {
        "<unset>".to_owned()
    };
    vec![
        Value::from(name(obj)),
        Value::from(len_at(obj, &["spec", "validations"])),
        Value::from(param_kind),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn policy_binding_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "PolicyName",
            "PolicyName indicates the policy definition which the policy binding binded to",
        ),
        ColumnDefinition::text(
            "ParamRef",
            "ParamRef indicates the param resource which sets the configration param",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn policy_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let param_ref = match obj.pointer("/spec/paramRef").filter(|p| !p.is_null()) {
        None => "<unset>".to_owned(),
        Some(p) => {
            let name = str_at(p, &["name"]);
            let namespace = str_at(p, &["namespace"]);
            if !name.is_empty() && !namespace.is_empty() {
                format!("{namespace}/{name}")
            } else if !name.is_empty() {
                // Whether the param is cluster-scoped is unknown here: `*` as
                // Kubernetes prints it.
                format!("*/{name}")
            } else if p.get("selector").is_some_and(|s| !s.is_null()) {
                // Kubernetes prints the Go struct here; the selector text says the same.
                super::labels::format_label_selector(p, &["selector"])
            } else {
                "<unset>".to_owned()
            }
        }
    };
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "policyName"])),
        Value::from(param_ref),
        Value::from(duration::age(obj, now)),
    ]
}
