//! Validation of CertificateSigningRequests (Kubernetes'
//! `pkg/apis/certificates/validation`): the request, usages, signer name,
//! duration, conditions and certificate, with what each write endpoint may
//! change and the problems a stored object may already have tolerated.

use api::status::{FieldError, FieldErrorType};
use serde_json::Value;

use super::{
    APPROVED, DENIED, FAILED, Via, certificate, cond_type, conditions, request_pem, signer_name,
    usages,
};
use crate::csr::request;

/// The signer name only the v1beta1 API accepted.
const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// Every usage `spec.usages` may name, sorted (Kubernetes' `allValidUsages`).
const VALID_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// What a write may do (Kubernetes' `certificateValidationOptions`): endpoint
/// rights, and tolerance of problems already in the stored object.
#[derive(Debug, Default, Clone)]
struct Options {
    setting_approval: bool,
    setting_certificate: bool,
    both_approved_and_denied: bool,
    legacy_signer_name: bool,
    duplicate_condition_types: bool,
    empty_condition_type: bool,
    arbitrary_certificate: bool,
    unknown_usages: bool,
    duplicate_usages: bool,
}

impl Options {
    /// The tolerances for `new` replacing `old` (`None`: a create).
    fn new(new: &Value, old: Option<&Value>) -> Self {
        let Some(old) = old else {
            return Self::default();
        };
        let types: Vec<&str> = conditions(old).iter().map(cond_type).collect();
        let mut seen = std::collections::HashSet::new();
        let usages = usages(old);
        let mut seen_usages = std::collections::HashSet::new();
        Self {
            setting_approval: false,
            setting_certificate: false,
            both_approved_and_denied: types.contains(&APPROVED) && types.contains(&DENIED),
            legacy_signer_name: signer_name(old) == LEGACY_UNKNOWN,
            duplicate_condition_types: !types.iter().all(|t| seen.insert(*t)),
            empty_condition_type: types.contains(&""),
            arbitrary_certificate: certificate(new) == certificate(old)
                || validate_certificate(&certificate(old)).is_err(),
            unknown_usages: usages.iter().any(|u| !VALID_USAGES.contains(&u.as_str())),
            duplicate_usages: !usages.iter().all(|u| seen_usages.insert(u.clone())),
        }
    }
}

/// Kubernetes' `ValidateCertificateSigningRequestCreate`.
pub(super) fn validate_create(obj: &Value) -> Vec<FieldError> {
    validate_csr(obj, &Options::new(obj, None))
}

/// Kubernetes' `ValidateCertificateSigningRequest{,Status,Approval}Update`.
pub(super) fn validate_update(new: &Value, old: &Value, via: Via) -> Vec<FieldError> {
    let mut opts = Options::new(new, Some(old));
    match via {
        Via::Object => {}
        Via::Status => opts.setting_certificate = true,
        Via::Approval => opts.setting_approval = true,
    }
    validate_csr_update(new, old, &opts)
}

/// Kubernetes' `validateCertificate`: empty, or only well-formed CERTIFICATE blocks.
fn validate_certificate(pem: &[u8]) -> Result<(), String> {
    if pem.is_empty() {
        return Ok(());
    }
    let blocks = crate::csr::pem::blocks(pem);
    for b in &blocks {
        if b.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                b.label
            ));
        }
        if b.has_headers {
            return Err("no PEM block headers are permitted".into());
        }
        if let Err(e) = x509_parser::parse_x509_certificate(&b.der) {
            return Err(format!("x509: malformed certificate: {e}"));
        }
    }
    if blocks.is_empty() {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// Kubernetes' `ValidateSignerName`.
fn validate_signer_name(errs: &mut Vec<FieldError>, field: &str, name: &str) {
    use api::selector::validation::{is_dns1123_label, is_dns1123_subdomain};
    if name.is_empty() {
        errs.push(FieldError::required(field, ""));
        return;
    }
    let segments: Vec<&str> = name.split('/').collect();
    let [domain, path] = segments.as_slice() else {
        errs.push(FieldError::invalid(
            field,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.len() > 253 {
        errs.push(FieldError::too_long(field, 253));
    }
    first_invalid_label(errs, field, domain, is_dns1123_label);
    if domain.split('.').count() < 2 {
        errs.push(FieldError::invalid(
            field,
            *domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    first_invalid_label(errs, field, path, is_dns1123_subdomain);
    // A domain, a namespace name and a resource name, a dot and a slash.
    let max = 253 + 253 + 63 + 1 + 1;
    if name.len() > max {
        errs.push(FieldError::too_long(field, max));
    }
}

/// The problems `check` finds with the first dot-separated label of `value` it
/// refuses (Kubernetes reports only the first).
fn first_invalid_label(
    errs: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    check: fn(&str) -> Vec<String>,
) {
    for label in value.split('.') {
        let problems = check(label);
        if !problems.is_empty() {
            for p in problems {
                errs.push(FieldError::invalid(
                    field,
                    value,
                    format!("validating label {label:?}: {p}"),
                ));
            }
            return;
        }
    }
}

/// Kubernetes' `validateConditions`.
fn validate_conditions(errs: &mut Vec<FieldError>, obj: &Value, opts: &Options) {
    let mut seen = std::collections::HashSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(obj).iter().enumerate() {
        let at = format!("status.conditions[{i}]");
        let t = cond_type(c);
        if !opts.empty_condition_type && t.is_empty() {
            errs.push(FieldError::required(format!("{at}.type"), ""));
        }
        let allowed: &[&str] = if [APPROVED, DENIED, FAILED].contains(&t) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        match c.get("status").and_then(Value::as_str).unwrap_or_default() {
            "" => errs.push(FieldError::required(format!("{at}.status"), "")),
            s if !allowed.contains(&s) => {
                errs.push(FieldError::not_supported(
                    format!("{at}.status"),
                    s,
                    allowed,
                ));
            }
            _ => {}
        }
        if !opts.both_approved_and_denied {
            let clash = match t {
                APPROVED => {
                    approved = true;
                    denied
                }
                DENIED => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if clash {
                errs.push(FieldError::invalid(
                    format!("{at}.type"),
                    t,
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !opts.duplicate_condition_types && !seen.insert(t) {
            errs.push(FieldError::duplicate(format!("{at}.type"), t));
        }
    }
}

/// Kubernetes' `validateCertificateSigningRequest` (metadata aside: the REST
/// layer validates it).
fn validate_csr(obj: &Value, opts: &Options) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let pem = request_pem(obj);
    if let Err(why) = request::parse(pem.as_deref().unwrap_or_default()) {
        // Go prints the rejected bytes with `%#v`.
        errs.push(FieldError {
            kind: FieldErrorType::Invalid,
            field: "spec.request".into(),
            value: None,
            detail: format!("{}: {why}", request::go_bytes(pem.as_deref())),
        });
    }
    let usages = usages(obj);
    let raw_usages = obj
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if raw_usages == 0 {
        errs.push(FieldError::required("spec.usages", ""));
    }
    if !opts.unknown_usages {
        for (i, u) in usages.iter().enumerate() {
            if !VALID_USAGES.contains(&u.as_str()) {
                errs.push(FieldError::not_supported(
                    format!("spec.usages[{i}]"),
                    u.as_str(),
                    VALID_USAGES,
                ));
            }
        }
    }
    if !opts.duplicate_usages {
        let mut seen = std::collections::HashSet::new();
        for (i, u) in usages.iter().enumerate() {
            if !seen.insert(u) {
                errs.push(FieldError::duplicate(
                    format!("spec.usages[{i}]"),
                    u.as_str(),
                ));
            }
        }
    }
    let signer = signer_name(obj);
    if !opts.legacy_signer_name && signer == LEGACY_UNKNOWN {
        errs.push(FieldError::invalid(
            "spec.signerName",
            signer,
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        validate_signer_name(&mut errs, "spec.signerName", signer);
    }
    if let Some(s) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && s < 600
    {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            s,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(&mut errs, obj, opts);
    if !opts.arbitrary_certificate
        && let Err(why) = validate_certificate(&certificate(obj))
    {
        errs.push(FieldError::invalid(
            "status.certificate",
            "<certificate data>",
            why,
        ));
    }
    errs
}

/// Kubernetes' `validateCertificateSigningRequestUpdate`.
fn validate_csr_update(new: &Value, old: &Value, opts: &Options) -> Vec<FieldError> {
    let mut errs = validate_csr(new, opts);
    let of_type = |obj: &Value, t: &str| -> Vec<Value> {
        conditions(obj)
            .iter()
            .filter(|c| cond_type(c) == t)
            .cloned()
            .collect()
    };
    for t in [APPROVED, DENIED, FAILED] {
        if of_type(new, t).len() < of_type(old, t).len() {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if !opts.setting_approval {
        for t in [APPROVED, DENIED] {
            let (was, now) = (of_type(old, t), of_type(new, t));
            if now.len() > was.len() {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not add a condition of type {t:?}"),
                ));
            } else if now.len() == was.len() && now != was {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    format!("updates may not modify a condition of type {t:?}"),
                ));
            }
        }
    }
    let (was, now) = (certificate(old), certificate(new));
    if was != now {
        if !opts.setting_certificate {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !was.is_empty() {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{approved, b64, csr, messages, valid};
    use super::super::{CSR, CSR_STATUS, CsrStrategy};
    use super::*;
    use crate::strategy::Strategy as _;

    #[test]
    fn a_well_formed_request_is_valid() {
        assert_eq!(messages(&CSR.validate(&valid())), Vec::<String>::new());
    }

    #[test]
    fn a_request_that_is_not_pem_is_refused_with_the_bytes_as_go_prints_them() {
        let obj = csr("hi");
        assert_eq!(
            messages(&CSR.validate(&obj)),
            vec![
                "spec.request: Invalid value: []byte{0x68, 0x69}: PEM block type must be CERTIFICATE REQUEST"
            ]
        );
        let mut missing = valid();
        missing["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("request");
        assert_eq!(
            messages(&CSR.validate(&missing)),
            vec![
                "spec.request: Invalid value: []byte(nil): PEM block type must be CERTIFICATE REQUEST"
            ]
        );
    }

    #[test]
    fn usages_signer_and_duration_are_checked_as_kubernetes_checks_them() {
        let mut obj = valid();
        obj["spec"]["usages"] = json!(["client auth", "bogus", "client auth"]);
        obj["spec"]["signerName"] = "example/signer".into();
        obj["spec"]["expirationSeconds"] = 599.into();
        let m = messages(&CSR.validate(&obj));
        assert!(
            m[0].starts_with("spec.usages[1]: Unsupported value: \"bogus\": supported values: \"any\", \"cert sign\""),
            "{m:?}"
        );
        assert_eq!(m[1], "spec.usages[2]: Duplicate value: \"client auth\"");
        assert_eq!(
            m[2],
            "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots"
        );
        assert_eq!(
            m[3],
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"
        );
        assert_eq!(m.len(), 4, "{m:?}");

        obj["spec"]["usages"] = json!([]);
        obj["spec"]["signerName"] = "".into();
        obj["spec"]["expirationSeconds"] = 600.into();
        assert_eq!(
            messages(&CSR.validate(&obj)),
            vec![
                "spec.usages: Required value",
                "spec.signerName: Required value"
            ]
        );
        obj["spec"]["usages"] = json!(["client auth"]);
        obj["spec"]["signerName"] = "kubernetes.io/legacy-unknown".into();
        assert_eq!(
            messages(&CSR.validate(&obj)),
            vec![
                "spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version"
            ]
        );
        obj["spec"]["signerName"] = "a.b/c/d".into();
        assert_eq!(
            messages(&CSR.validate(&obj)),
            vec![
                "spec.signerName: Invalid value: \"a.b/c/d\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
            ]
        );
    }

    #[test]
    fn approved_and_denied_are_mutually_exclusive() {
        let old = valid();
        let mut new = old.clone();
        new["status"] = json!({"conditions": [
            {"type": "Approved", "status": "True"},
            {"type": "Denied", "status": "True"},
        ]});
        let approval = CsrStrategy::new(None, Via::Approval);
        assert_eq!(
            messages(&approval.validate_update(&new, &old)),
            vec![
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
            ]
        );
        new["status"] = json!({"conditions": [{"type": "Approved", "status": "False"}]});
        assert_eq!(
            messages(&approval.validate_update(&new, &old)),
            vec![
                "status.conditions[0].status: Unsupported value: \"False\": supported values: \"True\""
            ]
        );
    }

    #[test]
    fn only_the_approval_endpoint_sets_approval_and_nobody_removes_it() {
        let old = valid();
        let new = approved(old.clone());
        assert!(
            CsrStrategy::new(None, Via::Approval)
                .validate_update(&new, &old)
                .is_empty()
        );
        assert_eq!(
            messages(&CSR_STATUS.validate_update(&new, &old)),
            vec![
                "status.conditions: Forbidden: updates may not add a condition of type \"Approved\""
            ]
        );
        assert_eq!(
            messages(&CsrStrategy::new(None, Via::Approval).validate_update(&old, &new)),
            vec![
                "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
            ]
        );
    }

    #[test]
    fn only_the_status_endpoint_sets_the_certificate_and_only_once() {
        let old = approved(valid());
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        let mut new = old.clone();
        new["status"]["certificate"] = b64(&cert.cert.pem()).into();
        assert!(CSR_STATUS.validate_update(&new, &old).is_empty());
        assert_eq!(
            messages(&CsrStrategy::new(None, Via::Approval).validate_update(&new, &old)),
            vec!["status.certificate: Forbidden: updates may not set certificate content"]
        );
        let other = rcgen::generate_simple_self_signed(vec!["y".into()]).expect("cert");
        let mut again = new.clone();
        again["status"]["certificate"] = b64(&other.cert.pem()).into();
        assert_eq!(
            messages(&CSR_STATUS.validate_update(&again, &new)),
            vec![
                "status.certificate: Forbidden: updates may not modify existing certificate content"
            ]
        );
        let mut junk = old.clone();
        junk["status"]["certificate"] = b64("-----BEGIN X-----\nAQID\n-----END X-----\n").into();
        assert_eq!(
            messages(&CSR_STATUS.validate_update(&junk, &old)),
            vec![
                "status.certificate: Invalid value: \"<certificate data>\": only CERTIFICATE PEM blocks are allowed, found \"X\""
            ]
        );
    }
}
