//! The signing and cleaning controller inside the API server (Kubernetes'
//! `csrsigning` and `csrcleaner` controllers), level-triggered like the CRD
//! controller: it lists the CertificateSigningRequests once, then follows the
//! server's watch cache and looks at every request that changed.
//!
//! - An approved request for one of the server's signers with no certificate and
//!   no Failed condition gets its certificate through the status subresource, or a
//!   `Failed` condition (`SignerValidationFailure`) when the signer refuses it.
//! - Once an hour (and at start) old requests are deleted: approved and issued,
//!   denied or failed an hour after that was decided, pending a day after creation,
//!   and any whose certificate has expired.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::resource::ResourceInfo;
use api::status::ApiError;
use base64::Engine as _;
use serde_json::{Value, json};
use store::{EventKind, ListOptions, Revision};
use tokio::sync::broadcast::error::RecvError;

use super::{GROUP, RESOURCE, request, sign, signers};
use crate::serve::State;
use crate::strategy::certificates::{
    APPROVED, CSR_STATUS, DENIED, FAILED, certificate, cond_type, conditions, has_condition,
    prepare_status_update, request_pem, signer_name, usages,
};

/// How soon a request whose write failed is looked at again.
const RETRY: Duration = Duration::from_secs(1);
/// How often old requests are looked for (Kubernetes' cleaner polls hourly).
const CLEAN_EVERY: Duration = Duration::from_secs(3600);
/// How long decided requests (approved and issued, denied, failed) are kept.
const DECIDED_KEPT: Duration = Duration::from_secs(3600);
/// How long pending requests are kept.
const PENDING_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The requests by name, as last seen.
type Csrs = BTreeMap<String, Value>;

/// Runs until the server stops.
pub(crate) async fn run(state: Arc<State>) {
    let Some(res) = state.registry.lookup(GROUP, "v1", RESOURCE).cloned() else {
        tracing::error!("the CertificateSigningRequest resource is not registered");
        return;
    };
    if let Err(why) = state.csr_signer.usable() {
        tracing::warn!(reason = %why, "the cluster CA cannot sign; approved CertificateSigningRequests stay unissued");
    }
    let prefix = res.key_prefix();
    loop {
        let (mut csrs, mut applied) = match list(&state, &prefix).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "listing CertificateSigningRequests failed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let Some(sub) = state.watch_cache.subscribe(applied) else {
            continue;
        };
        let mut dirty: BTreeSet<String> = csrs.keys().cloned().collect();
        for change in &sub.backlog {
            take(&prefix, &mut csrs, &mut applied, &mut dirty, change);
        }
        let mut retry = BTreeSet::new();
        let mut next_clean = tokio::time::Instant::now();
        let mut live = sub.live;
        loop {
            for name in std::mem::take(&mut dirty) {
                let Some(csr) = csrs.get(&name) else {
                    continue;
                };
                if let Err(e) = reconcile(&state, &res, csr).await {
                    tracing::warn!(object = %name, error = %e.message, "signing a CertificateSigningRequest failed; retrying");
                    retry.insert(name);
                }
            }
            if tokio::time::Instant::now() >= next_clean {
                clean(&state, &res, &csrs, SystemTime::now()).await;
                next_clean = tokio::time::Instant::now() + CLEAN_EVERY;
            }
            let wake = if retry.is_empty() {
                next_clean
            } else {
                tokio::time::Instant::now() + RETRY
            };
            tokio::select! {
                r = live.recv() => match r {
                    Ok(change) => {
                        take(&prefix, &mut csrs, &mut applied, &mut dirty, &change);
                        while let Ok(c) = live.try_recv() {
                            take(&prefix, &mut csrs, &mut applied, &mut dirty, &c);
                        }
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                },
                _ = tokio::time::sleep_until(wake) => dirty.append(&mut retry),
            }
        }
        tracing::debug!("the CSR controller fell behind the watch cache; relisting");
    }
}

/// Applies one watch cache change, noting the request it touched.
fn take(
    prefix: &str,
    csrs: &mut Csrs,
    applied: &mut Revision,
    dirty: &mut BTreeSet<String>,
    change: &crate::watch_cache::Change,
) {
    if change.revision <= *applied {
        return;
    }
    *applied = change.revision;
    let Some(name) = change.key.strip_prefix(prefix) else {
        return;
    };
    if change.kind == EventKind::Deleted {
        csrs.remove(name);
        dirty.remove(name);
    } else {
        csrs.insert(name.to_string(), change.object.clone());
        dirty.insert(name.to_string());
    }
}

async fn list(state: &State, prefix: &str) -> Result<(Csrs, Revision), store::StoreError> {
    let res = state
        .storage
        .store
        .list(&ListOptions {
            prefix: prefix.into(),
            ..Default::default()
        })
        .await?;
    let mut csrs = Csrs::new();
    for kv in &res.items {
        if let Ok(obj) = crate::storage::decode(kv) {
            csrs.insert(kv.key.trim_start_matches(prefix).to_string(), obj);
        }
    }
    Ok((csrs, res.revision))
}

/// What the signer does with a request as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Nothing (not approved, decided already, or another signer's).
    Nothing,
    /// Issue a certificate for the request.
    Sign(request::Request),
    /// Add a Failed condition with this message.
    Fail(String),
}

/// Kubernetes' signer `handle`, as a pure decision.
fn decide(csr: &Value) -> Action {
    let approved = has_condition(csr, APPROVED) && !has_condition(csr, DENIED);
    if !approved || has_condition(csr, FAILED) || !certificate(csr).is_empty() {
        return Action::Nothing;
    }
    let signer = signer_name(csr);
    if ![
        signers::KUBE_APISERVER_CLIENT,
        signers::KUBE_APISERVER_CLIENT_KUBELET,
    ]
    .contains(&signer)
    {
        return Action::Nothing;
    }
    let req = match request::parse(&request_pem(csr).unwrap_or_default()) {
        Ok(r) => r,
        Err(why) => {
            // Validation keeps these out; one that slipped in is never issued.
            tracing::warn!(object = %crate::object::name(csr).unwrap_or_default(), reason = %why, "unreadable certificate request");
            return Action::Nothing;
        }
    };
    match signers::verdict(signer, &req, &usages(csr)) {
        signers::Verdict::NotOurs => Action::Nothing,
        signers::Verdict::Sign => Action::Sign(req),
        signers::Verdict::Refuse(why) => Action::Fail(why),
    }
}

/// Signs or fails one request; a write that lost a race is left to the next event.
async fn reconcile(state: &State, res: &ResourceInfo, csr: &Value) -> Result<(), ApiError> {
    let name = crate::object::name(csr).unwrap_or_default().to_string();
    let mut new = csr.clone();
    match decide(csr) {
        Action::Nothing => return Ok(()),
        Action::Sign(req) => {
            let expiration = csr
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64);
            let ttl = sign::duration(expiration, sign::MAX_DURATION);
            let pem = state
                .csr_signer
                .sign(&req.der, &usages(csr), ttl, SystemTime::now())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
            crate::object::set(&mut new, "status.certificate", encoded.into());
            tracing::info!(object = %name, signer = %signer_name(csr), user = %req.common_name, "issued a certificate");
        }
        Action::Fail(why) => {
            let failed = json!({
                "type": FAILED,
                "status": "True",
                "reason": "SignerValidationFailure",
                "message": why,
            });
            match new
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
            {
                Some(list) => list.push(failed),
                None => crate::object::set(&mut new, "status.conditions", json!([failed])),
            }
            tracing::info!(object = %name, reason = %why, "the signer refused a request");
        }
    }
    prepare_status_update(&mut new, csr, &crate::object::now_rfc3339());
    match crate::rest::write::update_object(state, res, &CSR_STATUS, csr.clone(), new, true, false)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A timestamp field as a time.
fn time_at(v: &Value, field: &str) -> Option<SystemTime> {
    let s = v.get(field)?.as_str()?;
    let t: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(t))
}

/// Whether `t` is more than `kept` before `now`.
fn older(t: Option<SystemTime>, kept: Duration, now: SystemTime) -> bool {
    t.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > kept))
}

/// The `notAfter` of the first certificate in `status.certificate`.
fn certificate_expiry(csr: &Value) -> Option<SystemTime> {
    let pem = certificate(csr);
    let (block, _) = super::pem::decode(&pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Kubernetes' cleaner criteria: whether `csr` is old enough to go at `now`.
fn expired(csr: &Value, now: SystemTime) -> bool {
    let issued = !certificate(csr).is_empty();
    let conds = conditions(csr);
    let decided_long_ago = |t: &str| {
        conds
            .iter()
            .filter(|c| cond_type(c) == t)
            .any(|c| older(time_at(c, "lastUpdateTime"), DECIDED_KEPT, now))
    };
    let created = csr
        .get("metadata")
        .and_then(|m| time_at(m, "creationTimestamp"));
    (issued && decided_long_ago(APPROVED))
        || decided_long_ago(DENIED)
        || decided_long_ago(FAILED)
        || (conds.is_empty() && older(created, PENDING_KEPT, now))
        || (issued
            && has_condition(csr, APPROVED)
            && certificate_expiry(csr).is_some_and(|t| t < now))
}

/// Deletes the requests that are old enough.
async fn clean(state: &State, res: &ResourceInfo, csrs: &Csrs, now: SystemTime) {
    for (name, csr) in csrs {
        if !expired(csr, now) {
            continue;
        }
        let opts = crate::rest::delete::DeleteOptions::default();
        match crate::rest::delete::delete_object(state, res, None, name, &opts).await {
            Ok(_) => tracing::info!(object = %name, "deleted an old CertificateSigningRequest"),
            Err(e) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(object = %name, error = %e.message, "deleting an old CertificateSigningRequest failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::request::tests::request;

    fn csr(signer: &str, cn: &str, orgs: &[&str], usages: &[&str]) -> Value {
        let (pem, _) = request(cn, orgs, &[]);
        json!({
            "metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "signerName": signer,
                "usages": usages,
            },
            "status": {},
        })
    }

    fn with(mut obj: Value, t: &str, at: &str) -> Value {
        let c = json!({"type": t, "status": "True", "lastUpdateTime": at});
        match obj
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            Some(l) => l.push(c),
            None => obj["status"]["conditions"] = json!([c]),
        }
        obj
    }

    const CLIENT: &str = signers::KUBE_APISERVER_CLIENT;
    const T0: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn only_approved_undecided_requests_of_our_signers_are_signed() {
        let pending = csr(CLIENT, "jane", &["devs"], &["client auth"]);
        assert_eq!(decide(&pending), Action::Nothing);
        let approved = with(pending.clone(), APPROVED, T0);
        assert!(matches!(decide(&approved), Action::Sign(r) if r.common_name == "jane"));
        assert_eq!(decide(&with(approved.clone(), DENIED, T0)), Action::Nothing);
        assert_eq!(decide(&with(approved.clone(), FAILED, T0)), Action::Nothing);
        let mut issued = approved.clone();
        issued["status"]["certificate"] = "Zm9v".into();
        assert_eq!(decide(&issued), Action::Nothing);
        let other = with(
            csr("example.com/mine", "jane", &[], &["client auth"]),
            APPROVED,
            T0,
        );
        assert_eq!(decide(&other), Action::Nothing);
    }

    #[test]
    fn a_request_the_signer_refuses_fails() {
        let bad = with(csr(CLIENT, "jane", &[], &["server auth"]), APPROVED, T0);
        assert_eq!(
            decide(&bad),
            Action::Fail("invalid usage for client certificate: server auth".into())
        );
    }

    fn at(s: &str) -> SystemTime {
        time_at(&json!({"t": s}), "t").expect("a time")
    }

    #[test]
    fn decided_requests_go_after_an_hour_and_pending_ones_after_a_day() {
        let base = csr(CLIENT, "jane", &[], &["client auth"]);
        let pending = base.clone();
        assert!(!expired(&pending, at("2026-01-01T23:59:00Z")));
        assert!(expired(&pending, at("2026-01-02T00:00:01Z")));
        let denied = with(base.clone(), DENIED, "2026-01-01T00:10:00Z");
        assert!(!expired(&denied, at("2026-01-01T01:00:00Z")));
        assert!(expired(&denied, at("2026-01-01T01:10:01Z")));
        let failed = with(with(base.clone(), APPROVED, T0), FAILED, T0);
        assert!(expired(&failed, at("2026-01-01T01:00:01Z")));
        // Approved but not issued yet: kept (the signer may be another one).
        let approved = with(base.clone(), APPROVED, T0);
        assert!(!expired(&approved, at("2026-01-01T05:00:00Z")));
        let mut issued = approved.clone();
        issued["status"]["certificate"] = "Zm9v".into();
        assert!(!expired(&issued, at("2026-01-01T00:59:00Z")));
        assert!(expired(&issued, at("2026-01-01T01:00:01Z")));
    }
}
