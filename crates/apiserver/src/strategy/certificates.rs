//! CertificateSigningRequests (Kubernetes' `pkg/registry/certificates/certificates`
//! strategies and `pkg/apis/certificates/validation`):
//!
//! - on create the server records who asks (`spec.username`, `uid`, `groups`,
//!   `extra`) — whatever the client wrote there is dropped — and starts with an
//!   empty status;
//! - the spec never changes after create: an update of the object keeps the stored
//!   spec and status;
//! - the `status` subresource sets the certificate and conditions other than
//!   Approved and Denied; the `approval` subresource sets conditions only;
//! - Approved and Denied are exclusive, Approved, Denied and Failed are never
//!   removed, and field errors carry Kubernetes' paths and words.
//!
//! One [`CsrStrategy`] per write endpoint; requests get one carrying the requester
//! (see `crate::csr::admit`), the registered one knows no requester.

use std::collections::BTreeMap;

use api::status::FieldError;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{NameRule, Strategy};

mod validation;

/// The condition an approver sets to let the signer issue.
pub(crate) const APPROVED: &str = "Approved";
/// The condition an approver sets to refuse.
pub(crate) const DENIED: &str = "Denied";
/// The condition a signer sets when it cannot issue.
pub(crate) const FAILED: &str = "Failed";
/// The endpoint a write comes through; each has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The object itself (create, update, patch).
    Object,
    /// The `status` subresource (signers).
    Status,
    /// The `approval` subresource (approvers).
    Approval,
}

/// Who asked for a CSR, as `spec` records it (Kubernetes' `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Requestor {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The rules of CertificateSigningRequests written through one endpoint.
pub(crate) struct CsrStrategy {
    requestor: Option<Requestor>,
    via: Via,
}

/// The registered strategy: no requester is known, so nothing is recorded.
pub(crate) static CSR: CsrStrategy = CsrStrategy::new(None, Via::Object);
/// The rules of writes to the `status` subresource by the server's signer.
pub(crate) static CSR_STATUS: CsrStrategy = CsrStrategy::new(None, Via::Status);

impl CsrStrategy {
    /// The rules of writes by `requestor` through `via`.
    pub(crate) const fn new(requestor: Option<Requestor>, via: Via) -> Self {
        Self { requestor, via }
    }
}

impl Strategy for CsrStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(root) = obj.as_object_mut() {
            let spec = root.entry("spec").or_insert_with(|| json!({}));
            if spec.is_null() {
                *spec = json!({});
            }
            if let Some(spec) = spec.as_object_mut() {
                for f in ["username", "uid", "groups", "extra"] {
                    spec.remove(f);
                }
                if let Some(r) = &self.requestor {
                    if !r.username.is_empty() {
                        spec.insert("username".into(), r.username.clone().into());
                    }
                    if !r.uid.is_empty() {
                        spec.insert("uid".into(), r.uid.clone().into());
                    }
                    if !r.groups.is_empty() {
                        spec.insert("groups".into(), json!(r.groups));
                    }
                    if !r.extra.is_empty() {
                        spec.insert("extra".into(), json!(r.extra));
                    }
                }
            }
            // Nobody creates a pre-approved request.
            root.insert("status".into(), json!({}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        for part in ["spec", "status"] {
            match (old.get(part).cloned(), new.as_object_mut()) {
                (Some(v), Some(m)) => {
                    m.insert(part.into(), v);
                }
                (None, Some(m)) => {
                    m.remove(part);
                }
                _ => {}
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::validate_create(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::validate_update(new, old, self.via)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }

    fn name_rule(&self) -> NameRule {
        // "We don't care what you call your certificate requests" (Kubernetes):
        // only what a URL path segment cannot hold is refused.
        NameRule::PathSegment
    }
}

/// The conditions of a CSR (none when absent or malformed).
pub(crate) fn conditions(obj: &Value) -> &[Value] {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A condition's type.
pub(crate) fn cond_type(c: &Value) -> &str {
    c.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// Whether the CSR has a condition of type `t` (Approved, Denied and Failed are
/// only ever True).
pub(crate) fn has_condition(obj: &Value, t: &str) -> bool {
    conditions(obj).iter().any(|c| cond_type(c) == t)
}

/// `spec.signerName`.
pub(crate) fn signer_name(obj: &Value) -> &str {
    obj.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `spec.usages` (strings only).
pub(crate) fn usages(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|u| {
            u.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes a `[]byte` field as Go's JSON decoder does (standard base64, line
/// breaks ignored); the error is the offset Go reports as
/// `illegal base64 data at input byte N`.
pub(crate) fn decode_bytes(s: &str) -> Result<Vec<u8>, usize> {
    use base64::DecodeError;
    let clean: String = s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .map_err(|e| match e {
            DecodeError::InvalidByte(at, _) | DecodeError::InvalidLastSymbol(at, _) => at,
            DecodeError::InvalidLength(len) => len,
            DecodeError::InvalidPadding => clean.len(),
        })
}

/// Base64 bytes at `pointer`: `None` when absent, empty when undecodable.
fn bytes_at(obj: &Value, pointer: &str) -> Option<Vec<u8>> {
    match obj.pointer(pointer)? {
        Value::Null => None,
        Value::String(s) => Some(decode_bytes(s).unwrap_or_default()),
        _ => Some(Vec::new()),
    }
}

/// `spec.request`, decoded from base64 (`None` when absent).
pub(crate) fn request_pem(obj: &Value) -> Option<Vec<u8>> {
    bytes_at(obj, "/spec/request")
}

/// `status.certificate`, decoded from base64 (empty when absent).
pub(crate) fn certificate(obj: &Value) -> Vec<u8> {
    bytes_at(obj, "/status/certificate").unwrap_or_default()
}

/// Whether a timestamp field of a condition is unset.
fn unset(c: &Value, field: &str) -> bool {
    c.get(field)
        .is_none_or(|v| v.is_null() || v.as_str().is_some_and(str::is_empty))
}

/// Kubernetes' `populateConditionTimestamps`: a condition without
/// `lastUpdateTime` gets `now`; one without `lastTransitionTime` keeps that of a
/// stored condition of the same type and status, or gets `now`.
fn populate_condition_timestamps(new: &mut Value, old: &Value, now: &str) {
    let old_conditions = conditions(old).to_vec();
    let Some(list) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in list.iter_mut().filter(|c| c.is_object()) {
        if unset(c, "lastUpdateTime") {
            c["lastUpdateTime"] = now.into();
        }
        if unset(c, "lastTransitionTime") {
            let kept = old_conditions
                .iter()
                .find(|o| {
                    cond_type(o) == cond_type(c)
                        && o.get("status") == c.get("status")
                        && !unset(o, "lastTransitionTime")
                })
                .and_then(|o| o.get("lastTransitionTime").cloned());
            c["lastTransitionTime"] = kept.unwrap_or_else(|| now.into());
        }
    }
}

/// Sets `new`'s spec to `old`'s.
fn keep_spec(new: &mut Value, old: &Value) {
    if let Some(m) = new.as_object_mut() {
        match old.get("spec") {
            Some(s) => {
                m.insert("spec".into(), s.clone());
            }
            None => {
                m.remove("spec");
            }
        }
    }
}

/// What a write through the `status` subresource may change (Kubernetes'
/// `csrStatusStrategy.PrepareForUpdate`): not the spec, and Approved and Denied
/// conditions stay as stored (adding or removing them is a validation error).
pub(crate) fn prepare_status_update(new: &mut Value, old: &Value, now: &str) {
    keep_spec(new, old);
    for t in [APPROVED, DENIED] {
        let was: Vec<Value> = conditions(old)
            .iter()
            .filter(|c| cond_type(c) == t)
            .cloned()
            .collect();
        if let Some(list) = new
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            let at: Vec<usize> = (0..list.len())
                .filter(|i| cond_type(&list[*i]) == t)
                .collect();
            if at.len() == was.len() {
                for (i, c) in at.into_iter().zip(was) {
                    list[i] = c;
                }
            }
        }
    }
    populate_condition_timestamps(new, old, now);
}

/// What a write through the `approval` subresource may change (Kubernetes'
/// `csrApprovalStrategy.PrepareForUpdate`): the conditions, nothing else.
pub(crate) fn prepare_approval_update(new: &mut Value, old: &Value, now: &str) {
    populate_condition_timestamps(new, old, now);
    let conditions = new.pointer("/status/conditions").cloned();
    keep_spec(new, old);
    let mut status = old.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    match conditions {
        Some(c) => status["conditions"] = c,
        None => {
            if let Some(m) = status.as_object_mut() {
                m.remove("conditions");
            }
        }
    }
    if let Some(m) = new.as_object_mut() {
        m.insert("status".into(), status);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::csr::request::tests::request;

    pub(super) fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    pub(super) fn csr(request_pem: &str) -> Value {
        json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "jane"},
            "spec": {
                "request": b64(request_pem),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"],
            },
        })
    }

    pub(super) fn valid() -> Value {
        csr(&request("jane", &["devs"], &[]).0)
    }

    pub(super) fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    pub(super) fn approved(mut obj: Value) -> Value {
        obj["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "R", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        obj
    }

    #[test]
    fn create_records_the_requester_and_drops_what_the_client_claimed() {
        let who = Requestor {
            username: "jane".into(),
            uid: "42".into(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".to_string(), vec!["a".to_string()])]),
        };
        let s = CsrStrategy::new(Some(who), Via::Object);
        let mut obj = valid();
        obj["spec"]["username"] = "system:admin".into();
        obj["spec"]["groups"] = json!(["system:masters"]);
        obj["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        s.prepare_for_create(&mut obj);
        assert_eq!(obj["spec"]["username"], "jane");
        assert_eq!(obj["spec"]["uid"], "42");
        assert_eq!(
            obj["spec"]["groups"],
            json!(["devs", "system:authenticated"])
        );
        assert_eq!(obj["spec"]["extra"], json!({"scopes": ["a"]}));
        assert_eq!(obj["status"], json!({}));

        let mut anonymous = valid();
        anonymous["spec"]["username"] = "system:admin".into();
        CSR.prepare_for_create(&mut anonymous);
        assert!(anonymous["spec"].get("username").is_none());
    }

    #[test]
    fn an_update_of_the_object_keeps_spec_and_status() {
        let old = approved(valid());
        let mut new = valid();
        new["spec"]["signerName"] = "example.com/other".into();
        new["metadata"]["labels"] = json!({"a": "b"});
        CSR.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"], old["spec"]);
        assert_eq!(new["status"], old["status"]);
        assert_eq!(new["metadata"]["labels"], json!({"a": "b"}));
    }

    #[test]
    fn status_writes_keep_stored_approval_and_get_timestamps() {
        let old = approved(valid());
        let mut new = old.clone();
        new["spec"]["signerName"] = "example.com/other".into();
        new["status"]["conditions"][0]["reason"] = "Changed".into();
        new["status"]["conditions"]
            .as_array_mut()
            .expect("list")
            .push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure"}));
        prepare_status_update(&mut new, &old, "2026-02-02T00:00:00Z");
        assert_eq!(new["spec"], old["spec"]);
        assert_eq!(
            new["status"]["conditions"][0],
            old["status"]["conditions"][0]
        );
        assert_eq!(
            new["status"]["conditions"][1]["lastUpdateTime"],
            "2026-02-02T00:00:00Z"
        );
        assert_eq!(
            new["status"]["conditions"][1]["lastTransitionTime"],
            "2026-02-02T00:00:00Z"
        );
        assert!(CSR_STATUS.validate_update(&new, &old).is_empty());
    }

    #[test]
    fn approval_writes_change_conditions_only() {
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        let mut old = valid();
        old["status"] = json!({"certificate": b64(&cert.cert.pem())});
        let mut new = old.clone();
        new["spec"]["usages"] = json!(["server auth"]);
        new["status"] = json!({
            "certificate": "",
            "conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove", "lastUpdateTime": "2026-03-03T00:00:00Z"}],
        });
        prepare_approval_update(&mut new, &old, "2026-04-04T00:00:00Z");
        assert_eq!(new["spec"], old["spec"]);
        assert_eq!(new["status"]["certificate"], old["status"]["certificate"]);
        let c = &new["status"]["conditions"][0];
        assert_eq!(c["lastUpdateTime"], "2026-03-03T00:00:00Z");
        assert_eq!(c["lastTransitionTime"], "2026-04-04T00:00:00Z");
    }

    #[test]
    fn the_signer_name_is_a_field_selector() {
        let obj = valid();
        assert!(CSR.is_selectable("spec.signerName"));
        assert_eq!(
            CSR.field_value(&obj, "spec.signerName").as_deref(),
            Some("kubernetes.io/kube-apiserver-client")
        );
    }
}
