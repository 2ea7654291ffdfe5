//! AdmissionReview as kube-apiserver sends and checks it
//! (`webhook/request/admissionreview.go`), and a denial as it reports one
//! (`webhook/errors.ToStatusErr`).

use api::status::{ApiError, FieldError, FieldErrorType, StatusDetails};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::client::CallError;
use super::hook::ReviewVersion;
use super::matching::Attributes;
use crate::admission::node_restriction::Operation;
use crate::authn::Identity;

/// The group, version and kind of the object a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl ObjectKind {
    /// The kind of `object` (its `apiVersion`/`kind`), else the resource's.
    pub(crate) fn of(object: Option<&Value>, res: &api::resource::ResourceInfo) -> ObjectKind {
        let field = |k: &str| object.and_then(|o| o.get(k)).and_then(Value::as_str);
        match (field("apiVersion"), field("kind")) {
            (Some(api_version), Some(kind)) if !kind.is_empty() => {
                let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
                ObjectKind {
                    group: group.into(),
                    version: version.into(),
                    kind: kind.into(),
                }
            }
            _ => ObjectKind {
                group: res.group.clone(),
                version: res.version.clone(),
                kind: res.kind.clone(),
            },
        }
    }
}

/// Everything an AdmissionReview request says besides its uid.
pub(crate) struct Request<'a> {
    pub attrs: &'a Attributes<'a>,
    pub kind: &'a ObjectKind,
    pub who: &'a Identity,
    pub dry_run: bool,
}

/// The `options` of the request (`CreateOptions`, `UpdateOptions`, `DeleteOptions`).
fn options(operation: Operation, dry_run: bool) -> Value {
    let mut o = json!({"kind": operation.options_kind(), "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        o["dryRun"] = json!(["All"]);
    }
    o
}

/// The AdmissionReview request body.
pub(crate) fn build(uid: &str, version: ReviewVersion, r: &Request<'_>) -> Value {
    let a = r.attrs;
    let gvk = json!({"group": r.kind.group, "version": r.kind.version, "kind": r.kind.kind});
    let gvr = json!({"group": a.group, "version": a.version, "resource": a.resource});
    let mut request = Map::new();
    request.insert("uid".into(), json!(uid));
    request.insert("kind".into(), gvk.clone());
    request.insert("resource".into(), gvr.clone());
    if !a.subresource.is_empty() {
        request.insert("subResource".into(), json!(a.subresource));
    }
    request.insert("requestKind".into(), gvk);
    request.insert("requestResource".into(), gvr);
    if !a.subresource.is_empty() {
        request.insert("requestSubResource".into(), json!(a.subresource));
    }
    if !a.name.is_empty() {
        request.insert("name".into(), json!(a.name));
    }
    if !a.namespace.is_empty() {
        request.insert("namespace".into(), json!(a.namespace));
    }
    request.insert("operation".into(), json!(a.operation.as_str()));
    let mut user = Map::new();
    user.insert("username".into(), json!(r.who.user));
    if !r.who.uid.is_empty() {
        user.insert("uid".into(), json!(r.who.uid));
    }
    if !r.who.groups.is_empty() {
        user.insert("groups".into(), json!(r.who.groups));
    }
    if !r.who.extra.is_empty() {
        user.insert("extra".into(), json!(r.who.extra));
    }
    request.insert("userInfo".into(), Value::Object(user));
    request.insert("object".into(), a.object.cloned().unwrap_or(Value::Null));
    request.insert("oldObject".into(), a.old.cloned().unwrap_or(Value::Null));
    request.insert("dryRun".into(), json!(r.dry_run));
    request.insert("options".into(), options(a.operation, r.dry_run));
    json!({
        "kind": "AdmissionReview",
        "apiVersion": version.api_version(),
        "request": request,
    })
}

/// What a webhook answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub allowed: bool,
    /// A JSON patch (mutating webhooks only).
    pub patch: Option<Vec<u8>>,
    /// `response.status`, a `Status`.
    pub result: Option<Value>,
    pub warnings: Vec<String>,
}

/// Checks a response body (`VerifyAdmissionResponse`).
pub(crate) fn verify(
    uid: &str,
    version: ReviewVersion,
    mutating: bool,
    body: &[u8],
) -> Result<Verdict, CallError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| CallError::Response(e.to_string()))?;
    let invalid = |m: String| CallError::InvalidResponse(m);
    let response = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("webhook response was absent".into()))?;
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let patch_text = response
        .get("patch")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let patch_type = response.get("patchType").filter(|t| !t.is_null());
    if version == ReviewVersion::V1 {
        let got = text(response, "uid");
        if got != uid {
            return Err(invalid(format!(
                "expected response.uid={uid:?}, got {got:?}"
            )));
        }
        let (api_version, kind) = (text(&review, "apiVersion"), text(&review, "kind"));
        if api_version != version.api_version() || kind != "AdmissionReview" {
            return Err(invalid(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
            )));
        }
        if mutating {
            match (patch_text, patch_type) {
                (Some(_), None) => {
                    return Err(invalid(
                        "webhook returned response.patch but not response.patchType".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "webhook returned response.patchType but not response.patch".into(),
                    ));
                }
                (Some(_), Some(t)) => {
                    let t = t.as_str().unwrap_or_default();
                    if t.is_empty() {
                        return Err(invalid(format!(
                            "webhook returned invalid response.patchType of {t:?}"
                        )));
                    }
                    if t != "JSONPatch" {
                        return Err(CallError::Response(format!("unsupported patch type {t:?}")));
                    }
                }
                (None, None) => {}
            }
        } else if patch_text.is_some() {
            return Err(invalid(
                "validating webhook may not return response.patch".into(),
            ));
        } else if patch_type.is_some() {
            return Err(invalid(
                "validating webhook may not return response.patchType".into(),
            ));
        }
    }
    let patch = match patch_text.filter(|_| mutating) {
        Some(p) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| CallError::Response(format!("illegal base64 data: {e}")))?,
        ),
        None => None,
    };
    Ok(Verdict {
        allowed: response.get("allowed").and_then(Value::as_bool) == Some(true),
        patch,
        result: response.get("status").filter(|s| s.is_object()).cloned(),
        warnings: response
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The `metav1.StatusReason`s a denial may carry (others are dropped).
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "StoreReadError",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// The `metav1.CauseType`s a denial's causes may carry.
const CAUSES: &[&str] = &[
    "FieldValueNotFound",
    "FieldValueRequired",
    "FieldValueDuplicate",
    "FieldValueInvalid",
    "FieldValueNotSupported",
    "FieldValueForbidden",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
    "UnexpectedServerResponse",
    "FieldManagerConflict",
    "ResourceVersionTooLarge",
];

fn known(list: &[&'static str], s: &str) -> &'static str {
    list.iter().copied().find(|r| *r == s).unwrap_or("")
}

/// A webhook's denial: `admission webhook "<name>" denied the request: <message>`
/// with the webhook's code (at least 400) and reason.
pub(crate) fn denial(webhook: &str, result: Option<&Value>) -> ApiError {
    let empty = Value::Null;
    let result = result.unwrap_or(&empty);
    let text = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or_default();
    let denied = format!("admission webhook {webhook:?} denied the request");
    let message = if !text("message").is_empty() {
        format!("{denied}: {}", text("message"))
    } else if !text("reason").is_empty() {
        format!("{denied}: {}", text("reason"))
    } else {
        format!("{denied} without explanation")
    };
    let code = result
        .get("code")
        .and_then(Value::as_i64)
        .filter(|c| *c >= 400)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(400);
    let details = result.get("details").filter(|d| d.is_object()).map(|d| {
        let text = |k: &str| d.get(k).and_then(Value::as_str).map(String::from);
        StatusDetails {
            name: text("name"),
            group: text("group"),
            kind: text("kind"),
            uid: text("uid"),
            causes: d
                .get("causes")
                .and_then(Value::as_array)
                .map(|causes| {
                    causes
                        .iter()
                        .map(|c| {
                            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
                            FieldError {
                                kind: FieldErrorType::Cause(known(CAUSES, s("reason"))),
                                field: s("field").to_string(),
                                value: None,
                                detail: s("message").to_string(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    });
    ApiError {
        code,
        reason: known(REASONS, text("reason")),
        message,
        details,
        retry_after_seconds: None,
    }
}

/// A dry run refused because the webhook may have side effects.
pub(crate) fn dry_run_unsupported(webhook: &str) -> ApiError {
    ApiError::bad_request(format!(
        "admission webhook {webhook:?} does not support dry run"
    ))
}

/// A call that failed under `failurePolicy: Fail`.
pub(crate) fn call_failed(webhook: &str, e: &CallError) -> ApiError {
    ApiError::internal(format!("failed calling webhook {webhook:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn who() -> Identity {
        Identity {
            user: "alice".into(),
            uid: String::new(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn an_update_review_carries_both_objects_the_user_and_options() {
        let new = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let old = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}});
        let attrs = Attributes {
            operation: Operation::Update,
            group: "",
            version: "v1",
            resource: "configmaps",
            subresource: "",
            namespace: "ns",
            name: "c",
            object: Some(&new),
            old: Some(&old),
        };
        let kind = ObjectKind {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
        };
        let who = who();
        let review = build(
            "u-1",
            ReviewVersion::V1,
            &Request {
                attrs: &attrs,
                kind: &kind,
                who: &who,
                dry_run: true,
            },
        );
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        let r = &review["request"];
        assert_eq!(r["uid"], "u-1");
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(
            r["resource"],
            json!({"group": "", "version": "v1", "resource": "configmaps"})
        );
        assert_eq!(r["requestKind"], r["kind"]);
        assert_eq!(r["operation"], "UPDATE");
        assert_eq!(r["namespace"], "ns");
        assert_eq!(r["userInfo"]["username"], "alice");
        assert_eq!(
            r["userInfo"]["groups"],
            json!(["devs", "system:authenticated"])
        );
        assert_eq!(r["oldObject"], old);
        assert_eq!(r["object"], new);
        assert_eq!(r["dryRun"], true);
        assert_eq!(
            r["options"],
            json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]})
        );
    }

    #[test]
    fn responses_are_checked_like_kubernetes_checks_them() {
        let ok = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"warnings":["w"]}}"#;
        let v = verify("u", ReviewVersion::V1, false, ok).expect("valid");
        assert!(v.allowed);
        assert_eq!(v.warnings, ["w"]);
        assert_eq!(
            verify("other", ReviewVersion::V1, false, ok)
                .expect_err("uid differs")
                .to_string(),
            "received invalid webhook response: expected response.uid=\"other\", got \"u\""
        );
        let patch = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patch":"W10="}}"#;
        assert_eq!(
            verify("u", ReviewVersion::V1, true, patch)
                .expect_err("no patchType")
                .to_string(),
            "received invalid webhook response: webhook returned response.patch but not response.patchType"
        );
        assert_eq!(
            verify("u", ReviewVersion::V1, false, patch)
                .expect_err("validating")
                .to_string(),
            "received invalid webhook response: validating webhook may not return response.patch"
        );
        let typed = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patch":"W10=","patchType":"JSONPatch"}}"#;
        let v = verify("u", ReviewVersion::V1, true, typed).expect("valid");
        assert_eq!(v.patch.as_deref(), Some(&b"[]"[..]));
        // v1beta1 answers were never checked for uid or kind.
        let beta = br#"{"response":{"allowed":false}}"#;
        assert!(
            !verify("u", ReviewVersion::V1beta1, false, beta)
                .expect("accepted")
                .allowed
        );
    }

    #[test]
    fn denials_read_as_kubernetes_words_them() {
        let e = denial(
            "deny.example.com",
            Some(&json!({"code": 403, "message": "no forbidden labels"})),
        );
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no forbidden labels"
        );
        let e = denial(
            "deny.example.com",
            Some(&json!({"code": 200, "reason": "Forbidden"})),
        );
        assert_eq!(e.code, 400);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: Forbidden"
        );
        let e = denial("deny.example.com", None);
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request without explanation"
        );
        assert_eq!(
            dry_run_unsupported("s.example.com").message,
            "admission webhook \"s.example.com\" does not support dry run"
        );
    }
}
