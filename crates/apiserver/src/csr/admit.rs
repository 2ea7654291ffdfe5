//! What a request on CertificateSigningRequests goes through before the generic
//! REST code serves it:
//!
//! - its writes use a [`CsrStrategy`] that knows the requester (recorded in the
//!   spec on create) and the endpoint (object, `status`, `approval`);
//! - Kubernetes' certificate admission plugins: CertificateSubjectRestriction (no
//!   `system:masters` through `kubernetes.io/kube-apiserver-client`),
//!   CertificateApproval (`approve` on `signers`) and CertificateSigning (`sign` on
//!   `signers` to change the certificate or conditions through `status`);
//! - writes through `status` and `approval` are prepared as Kubernetes' strategies
//!   prepare them (the stored spec, stored approval conditions, condition
//!   timestamps) and handed on as that prepared object.
//!
//! As in Kubernetes, an invalid write is refused (422) before an unauthorized one
//! (403).

use std::sync::Arc;

use api::status::{ApiError, StatusDetails};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{GROUP, request, signers};
use crate::authn::Identity;
use crate::authz::Attributes;
use crate::negotiate::{self, BodyType};
use crate::rest::Ctx;
use crate::strategy::certificates::{
    CsrStrategy, Requestor, Via, conditions, decode_bytes, prepare_approval_update,
    prepare_status_update, request_pem, signer_name,
};
use crate::strategy::{Strategy, StrategyRef};

/// The requester as a CSR's spec records it.
fn requestor(who: &Identity) -> Requestor {
    Requestor {
        username: who.user.clone(),
        uid: who.uid.clone(),
        groups: who.groups.clone(),
        extra: who.extra.clone(),
    }
}

/// `certificatesigningrequests.certificates.k8s.io "<name>" is forbidden: <why>`
/// (Kubernetes' `admission.NewForbidden`).
fn forbidden(name: &str, why: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!(
        "certificatesigningrequests.{GROUP} {name:?} is forbidden: {why}"
    ));
    e.details = Some(StatusDetails {
        name: (!name.is_empty()).then(|| name.to_string()),
        group: Some(GROUP.into()),
        kind: Some(super::RESOURCE.into()),
        ..Default::default()
    });
    e
}

/// Kubernetes' `IsAuthorizedForSignerName`: `verb` on `signers` named
/// `signer_name`, or `<domain>/*`.
fn authorized_for_signer(ctx: &Ctx<'_>, verb: &str, signer_name: &str) -> bool {
    let allowed = |name: &str| {
        let attrs = Attributes::resource(ctx.who, verb, GROUP, "signers", "", name);
        ctx.state.authorizer.decide(&attrs).allowed()
    };
    if allowed(signer_name) {
        return true;
    }
    let domain = signer_name.split('/').next().unwrap_or_default();
    allowed(&format!("{domain}/*"))
}

/// CertificateApproval and CertificateSigning: `verb` on the stored request's
/// signer, or 403.
fn require(ctx: &Ctx<'_>, verb: &str, old: &Value) -> Result<(), ApiError> {
    let signer = signer_name(old);
    if authorized_for_signer(ctx, verb, signer) {
        return Ok(());
    }
    tracing::debug!(user = %ctx.who.user, object = %ctx.name(), signer = %signer, verb, "not permitted for the signer");
    Err(forbidden(
        ctx.name(),
        &format!("user not permitted to {verb} requests with signerName {signer:?}"),
    ))
}

/// The 400 Kubernetes' decoder answers for a body that is not a
/// CertificateSigningRequest: a value of the wrong JSON type, or a `[]byte`
/// field that is not base64. Missing fields are no decoding error (validation
/// reports them), so they are filled in before the typed check.
fn typecheck(obj: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let refuse = |why: String| {
        ApiError::bad_request(format!(
            "CertificateSigningRequest in version \"v1\" cannot be handled as a CertificateSigningRequest: {why}"
        ))
    };
    let mut typed = obj.clone();
    for pointer in ["/spec/request", "/status/certificate"] {
        if let Some(Value::String(s)) = typed.pointer(pointer) {
            if let Err(at) = decode_bytes(s) {
                return Err(refuse(format!("illegal base64 data at input byte {at}")));
            }
            // Checked: the typed check below need not decode it again.
            if let Some(v) = typed.pointer_mut(pointer) {
                *v = Value::String(String::new());
            }
        }
    }
    let fill = |v: &mut Value, key: &str, default: Value| {
        if let Some(m) = v.as_object_mut()
            && m.get(key).is_none_or(Value::is_null)
        {
            m.insert(key.into(), default);
        }
    };
    fill(&mut typed, "spec", json!({}));
    if let Some(spec) = typed.get_mut("spec") {
        fill(spec, "request", json!(""));
        fill(spec, "signerName", json!(""));
    }
    if let Some(list) = typed
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in list {
            fill(c, "type", json!(""));
            fill(c, "status", json!(""));
        }
    }
    serde_json::from_value::<CertificateSigningRequest>(typed)
        .map(|_| ())
        .map_err(|e| refuse(e.to_string()))
}

/// Whether `obj` is a CertificateSigningRequest of `certificates.k8s.io/v1` (other
/// bodies are left for the REST code to refuse in its words).
fn is_csr_body(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("CertificateSigningRequest")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("certificates.k8s.io/v1")
}

/// CertificateSubjectRestriction on a request about to be created: checked once
/// the request is otherwise valid, as admission runs after validation.
fn subject_restriction(obj: &Value, strategy: &dyn Strategy) -> Result<(), ApiError> {
    if signer_name(obj) != signers::KUBE_APISERVER_CLIENT {
        return Ok(());
    }
    let mut prepared = obj.clone();
    strategy.prepare_for_create(&mut prepared);
    if !strategy.validate(&prepared).is_empty() {
        return Ok(());
    }
    let Ok(req) = request::parse(&request_pem(obj).unwrap_or_default()) else {
        return Ok(());
    };
    if req
        .organizations
        .iter()
        .any(|o| o == signers::PRIVILEGED_GROUP)
    {
        let name = crate::object::name(obj).unwrap_or_default();
        return Err(forbidden(name, &signers::subject_restriction_message()));
    }
    Ok(())
}

/// Readies a request on CertificateSigningRequests for the generic REST code:
/// selects the strategy, applies the certificate admission plugins and prepares
/// writes through `status` and `approval`. Returns the body (and its type) to
/// serve, the given one or a prepared one. Requests on other resources pass.
pub(crate) async fn admit<'c>(
    ctx: &mut Ctx<'_>,
    content_type: Option<&'c str>,
    body: Bytes,
) -> Result<(Option<&'c str>, Bytes), ApiError> {
    if !super::serves(&ctx.res) {
        return Ok((content_type, body));
    }
    let via = match ctx.info.subresource.as_str() {
        "" => Via::Object,
        "status" => Via::Status,
        "approval" => Via::Approval,
        _ => return Ok((content_type, body)),
    };
    let strategy = Arc::new(CsrStrategy::new(Some(requestor(ctx.who)), via));
    ctx.strategy = StrategyRef::Custom(strategy.clone());
    let verb = ctx.info.verb.clone();
    match (via, verb.as_str()) {
        (Via::Object, "create" | "update" | "patch") => {
            admit_object(ctx, &verb, content_type, &body, &*strategy).await?;
            Ok((content_type, body))
        }
        (Via::Status | Via::Approval, "update" | "patch") => {
            admit_status(ctx, via, &verb, content_type, body, &*strategy).await
        }
        _ => Ok((content_type, body)),
    }
}

/// Writes of the object: the body's types, and the subject restriction for
/// requests being created (also by server-side apply).
async fn admit_object(
    ctx: &Ctx<'_>,
    verb: &str,
    content_type: Option<&str>,
    body: &Bytes,
    strategy: &dyn Strategy,
) -> Result<(), ApiError> {
    let Ok(ty) = negotiate::body_type(content_type) else {
        return Ok(());
    };
    let obj = match (verb, ty) {
        ("create" | "update", BodyType::Json | BodyType::Yaml | BodyType::Protobuf) => {
            match negotiate::decode_object(body, ty) {
                Ok((obj, _)) => obj,
                Err(_) => return Ok(()),
            }
        }
        ("patch", BodyType::ApplyPatch) => {
            // An apply that creates the request is a create.
            match ctx.state.storage.get(&ctx.res, None, ctx.name()).await {
                Err(e) if e.code == 404 => {}
                _ => return Ok(()),
            }
            match negotiate::decode_apply(body) {
                Ok(obj) => obj,
                Err(_) => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    if !is_csr_body(&obj) {
        return Ok(());
    }
    typecheck(&obj)?;
    if verb != "update" {
        subject_restriction(&obj, strategy)?;
    }
    Ok(())
}

/// Writes through `status` and `approval`: the object the write produces is
/// prepared, validated and authorized here, then handed on (a PUT as the prepared
/// object, a patch as a JSON patch setting the prepared status at the stored
/// resourceVersion). Server-side apply is authorized as a change and passed on.
async fn admit_status<'c>(
    ctx: &Ctx<'_>,
    via: Via,
    verb: &str,
    content_type: Option<&'c str>,
    body: Bytes,
    strategy: &dyn Strategy,
) -> Result<(Option<&'c str>, Bytes), ApiError> {
    let pass = |body: Bytes| Ok((content_type, body));
    let Ok(ty) = negotiate::body_type(content_type) else {
        return pass(body);
    };
    let old = ctx.state.storage.get(&ctx.res, None, ctx.name()).await?;
    let old_rv = crate::object::meta_str(&old, "resourceVersion")
        .unwrap_or_default()
        .to_string();
    let verb_on_signer = match via {
        Via::Approval => "approve",
        _ => "sign",
    };
    let mut new = match (verb, ty) {
        ("update", BodyType::Json | BodyType::Yaml | BodyType::Protobuf) => {
            match negotiate::decode_object(&body, ty) {
                Ok((obj, _)) => obj,
                Err(_) => return pass(body),
            }
        }
        ("patch", BodyType::ApplyPatch) => {
            // What an apply results in is only known later: authorize it as a change.
            require(ctx, verb_on_signer, &old)?;
            return pass(body);
        }
        ("patch", BodyType::JsonPatch) => match api::patch::json_patch(&old, &body) {
            Ok(v) => v,
            Err(_) => return pass(body),
        },
        ("patch", BodyType::MergePatch) => match api::patch::merge_patch_bytes(&old, &body) {
            Ok(v) => v,
            Err(_) => return pass(body),
        },
        ("patch", BodyType::StrategicMergePatch) => {
            let Ok(p) = serde_json::from_slice::<Value>(&body) else {
                return pass(body);
            };
            match api::patch::strategic_merge(&old, &p, &ctx.res.definition) {
                Ok(v) => v,
                Err(_) => return pass(body),
            }
        }
        _ => return pass(body),
    };
    let pinned = crate::object::meta_str(&new, "resourceVersion")
        .filter(|rv| !rv.is_empty())
        .map(String::from);
    if !is_csr_body(&new)
        || crate::object::name(&new) != Some(ctx.name())
        || pinned.as_deref().is_some_and(|rv| rv != old_rv)
    {
        // Refused by the REST code in its own words (400, 409).
        return pass(body);
    }
    typecheck(&new)?;
    let now = crate::object::now_rfc3339();
    match via {
        Via::Approval => prepare_approval_update(&mut new, &old, &now),
        _ => prepare_status_update(&mut new, &old, &now),
    }
    // What the REST code will store: the stored object with this status.
    let mut merged = old.clone();
    crate::object::set(
        &mut merged,
        "status",
        new.get("status").cloned().unwrap_or_else(|| json!({})),
    );
    let errs = strategy.validate_update(&merged, &old);
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            GROUP,
            "CertificateSigningRequest",
            ctx.name(),
            errs,
        ));
    }
    let changed = match via {
        Via::Approval => true,
        _ => {
            merged.pointer("/status/certificate") != old.pointer("/status/certificate")
                || conditions(&merged) != conditions(&old)
        }
    };
    if changed {
        require(ctx, verb_on_signer, &old)?;
    }
    let status = merged.get("status").cloned().unwrap_or_else(|| json!({}));
    if verb == "update" {
        crate::object::set(&mut new, "status", status);
        crate::object::meta_mut(&mut new).insert("resourceVersion".into(), old_rv.into());
        let bytes = serde_json::to_vec(&new).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok((Some("application/json"), Bytes::from(bytes)));
    }
    let patch = json!([
        {"op": "add", "path": "/metadata/resourceVersion", "value": old_rv},
        {"op": "add", "path": "/status", "value": status},
    ]);
    let bytes = serde_json::to_vec(&patch).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((Some("application/json-patch+json"), Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(spec: Value) -> Value {
        json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "x"},
            "spec": spec,
        })
    }

    #[test]
    fn wrong_types_and_bad_base64_are_decoding_errors() {
        let e = typecheck(&csr(json!({"request": "!!!!", "signerName": "a.b/c"})))
            .expect_err("not base64");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "CertificateSigningRequest in version \"v1\" cannot be handled as a CertificateSigningRequest: illegal base64 data at input byte 0"
        );
        let e = typecheck(&csr(json!({"usages": "client auth"}))).expect_err("not a list");
        assert_eq!(e.code, 400);
        let e = typecheck(&csr(json!({"expirationSeconds": "600"}))).expect_err("not a number");
        assert_eq!(e.code, 400);
    }

    #[test]
    fn missing_fields_are_left_to_validation() {
        typecheck(&csr(json!({}))).expect("decodes");
        typecheck(&csr(json!({"request": null, "usages": ["client auth"]}))).expect("decodes");
        let mut no_spec = csr(json!({}));
        no_spec.as_object_mut().expect("object").remove("spec");
        no_spec["status"] = json!({"conditions": [{"reason": "x"}]});
        typecheck(&no_spec).expect("decodes");
        // Wrapped base64, as Go accepts it.
        typecheck(&csr(json!({"request": "aGVs\nbG8="}))).expect("decodes");
    }

    #[test]
    fn refusals_name_the_request_as_admission_does() {
        let e = forbidden(
            "app",
            "user not permitted to approve requests with signerName \"a.b/c\"",
        );
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "certificatesigningrequests.certificates.k8s.io \"app\" is forbidden: user not permitted to approve requests with signerName \"a.b/c\""
        );
    }
}
