//! Kubernetes `Status` errors: every failure the API returns is one of these, with the
//! `reason`, HTTP code and message kube-apiserver would give (apimachinery
//! `pkg/api/errors`, `pkg/util/validation/field`).

use serde_json::{Value, json};

/// A failed API request, rendered as a `meta.k8s.io/v1` `Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message, worded as Kubernetes words it.
    pub message: String,
    /// `details` of the Status, if any.
    pub details: Option<StatusDetails>,
    /// Seconds a client should wait before retrying (sets `Retry-After`).
    pub retry_after_seconds: Option<u32>,
}

/// `details` of a Status: what object the error is about and field-level causes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusDetails {
    /// Object name.
    pub name: Option<String>,
    /// API group ("" for core).
    pub group: Option<String>,
    /// The kind or resource (Kubernetes puts the resource plural here for NotFound).
    pub kind: Option<String>,
    /// Object UID (for precondition failures).
    pub uid: Option<String>,
    /// Field-level causes.
    pub causes: Vec<FieldError>,
}

/// What is wrong with one field (apimachinery `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    /// `Required value`.
    Required,
    /// `Invalid value`.
    Invalid,
    /// `Unsupported value`.
    NotSupported,
    /// `Forbidden`.
    Forbidden,
    /// `Duplicate value`.
    Duplicate,
    /// `Too long`.
    TooLong,
    /// `Too many`.
    TooMany,
    /// `Not found`.
    NotFound,
    /// A non-field cause with its own reason (e.g. `DisruptionBudget`); the message
    /// is the detail alone.
    Cause(&'static str),
}

impl FieldErrorType {
    fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::NotFound => "FieldValueNotFound",
            Self::Cause(reason) => reason,
        }
    }
}

/// One field-level validation error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of problem.
    pub kind: FieldErrorType,
    /// Path such as `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The offending value, when it helps the message.
    pub value: Option<Value>,
    /// Extra detail.
    pub detail: String,
}

impl FieldError {
    /// `field: Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// `field: Invalid value: "v": detail`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: FieldErrorType::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }
    /// `field: Unsupported value: "v": supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            kind: FieldErrorType::NotSupported,
            field: field.into(),
            value: Some(value.into()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }
    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// `field: Duplicate value: v`.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            kind: FieldErrorType::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }
    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            kind: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    /// The message without the field path, as in `details.causes[].message`.
    pub fn body(&self) -> String {
        if let FieldErrorType::Cause(_) = self.kind {
            return self.detail.clone();
        }
        let head = match self.kind {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::Cause(_) => "",
        };
        let mut s = head.to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&render_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `field: body`, as in the top-level message.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Describes a resource for messages: `deployments.apps` or `configmaps`.
pub fn qualified_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Describes a kind for Invalid messages: `Deployment.apps` or `ConfigMap`.
pub fn qualified_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after_seconds: None,
        }
    }

    fn with_object(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(StatusDetails {
            name: (!name.is_empty()).then(|| name.to_string()),
            group: (!group.is_empty()).then(|| group.to_string()),
            kind: Some(kind.to_string()),
            ..Default::default()
        });
        self
    }

    /// 404 `configmaps "x" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", qualified_resource(group, plural)),
        )
        .with_object(group, plural, name)
    }
    /// 404 with a free-form message (unknown path, unknown resource type).
    pub fn not_found_message(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }
    /// 409 `configmaps "x" already exists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} {name:?} already exists",
                qualified_resource(group, plural)
            ),
        )
        .with_object(group, plural, name)
    }
    /// 409 stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict_message(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    /// 409 `Operation cannot be fulfilled on configmaps "x": <why>`.
    pub fn conflict_message(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                qualified_resource(group, plural)
            ),
        )
        .with_object(group, plural, name)
    }
    /// 422 `Kind.group "name" is invalid: field: ...` with one cause per field error.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let joined = match errors.len() {
            0 => String::new(),
            1 => errors[0].message(),
            _ => format!(
                "[{}]",
                errors
                    .iter()
                    .map(FieldError::message)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!(
                "{} {name:?} is invalid: {joined}",
                qualified_kind(group, kind)
            ),
        )
        .with_object(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d.causes = errors;
        }
        e
    }
    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    /// 403 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }
    /// 406.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }
    /// 410 `too old resource version: N (M)`.
    pub fn gone(requested: i64, oldest: i64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }
    /// 410 with reason Expired and a message (expired continue tokens).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }
    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({content_type:?} was sent)"
            ),
        )
    }
    /// 429 with Retry-After.
    pub fn too_many_requests(retry_after_seconds: u32) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.retry_after_seconds = Some(retry_after_seconds);
        e
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }
    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }
    /// 504 (a request that did not finish in time).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object as JSON.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            let mut dj = serde_json::Map::new();
            if let Some(n) = &d.name {
                dj.insert("name".into(), n.clone().into());
            }
            if let Some(g) = &d.group {
                dj.insert("group".into(), g.clone().into());
            }
            if let Some(k) = &d.kind {
                dj.insert("kind".into(), k.clone().into());
            }
            if let Some(u) = &d.uid {
                dj.insert("uid".into(), u.clone().into());
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cause = json!({"reason": c.kind.reason(), "message": c.body()});
                        if !c.field.is_empty() {
                            cause["field"] = c.field.clone().into();
                        }
                        cause
                    })
                    .collect();
                dj.insert("causes".into(), causes.into());
            }
            if let Some(r) = self.retry_after_seconds {
                dj.insert("retryAfterSeconds".into(), r.into());
            }
            s["details"] = Value::Object(dj);
        } else if let Some(r) = self.retry_after_seconds {
            s["details"] = json!({"retryAfterSeconds": r});
        }
        s
    }
}

/// A `Status` of success, as returned by some deletes.
pub fn success_status(details: Option<(&str, &str, &str, &str)>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some((name, group, kind, uid)) = details {
        let mut d = json!({"name": name, "kind": kind, "uid": uid});
        if !group.is_empty() {
            d["group"] = group.into();
        }
        s["details"] = d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_resource_like_kubernetes() {
        let e = ApiError::not_found("apps", "deployments", "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        let s = e.to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_every_cause_with_its_field() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                FieldError::required("spec.selector", ""),
            ],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.selector: Required value]"
        );
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["field"], "spec.replicas");
        assert_eq!(s["details"]["causes"][1]["reason"], "FieldValueRequired");
    }
}
