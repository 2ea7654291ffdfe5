//! Authentication: who sent a request. Client certificates (CN = user, O = groups)
//! verified by the TLS layer against the cluster CA, and static bearer tokens.

use std::collections::{BTreeMap, HashMap};

use crate::config::StaticToken;

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, impersonated extras).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    pub(crate) fn anonymous() -> Self {
        Self {
            user: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn is_anonymous(&self) -> bool {
        self.user == "system:anonymous"
    }

    fn authenticated(user: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            user,
            uid,
            groups,
            extra: BTreeMap::new(),
        }
    }
}

/// The user named by a verified client certificate (DER), if it names one.
pub(crate) fn identity_from_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(Identity::authenticated(user, String::new(), groups))
}

/// Authenticates a service account JWT: valid signature, issuer, audience and
/// expiry, and the ServiceAccount (and bound pod, if any) still exists with the UID
/// the token names.
pub(crate) async fn service_account_identity(
    state: &crate::serve::State,
    authorization: Option<&str>,
) -> Result<Identity, ()> {
    let token = authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(())?;
    service_account_token(state, token, &[])
        .await
        .map(|t| t.identity)
        .map_err(|_| ())
}

/// A verified service account token.
pub(crate) struct ServiceAccountToken {
    pub identity: Identity,
    /// The audiences asked for that the token holds.
    pub audiences: Vec<String>,
    /// `authentication.kubernetes.io/pod-name` and `pod-uid` for pod-bound tokens.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Verifies a service account token for one of `audiences` (the API server's own
/// when empty); `Err` says why it is not valid.
pub(crate) async fn service_account_token(
    state: &crate::serve::State,
    token: &str,
    audiences: &[String],
) -> Result<ServiceAccountToken, &'static str> {
    let own = [state.token_issuer.issuer.clone()];
    let wanted = if audiences.is_empty() {
        &own[..]
    } else {
        audiences
    };
    let claims = state
        .token_issuer
        .verify_any(token, wanted)
        .ok_or("token is not a valid service account token for these audiences")?;
    let k = &claims.kubernetes;
    let gone = "service account token has been invalidated";
    let sa_res = state
        .registry
        .lookup("", "v1", "serviceaccounts")
        .ok_or(gone)?;
    let sa = state
        .storage
        .get(sa_res, Some(&k.namespace), &k.serviceaccount.name)
        .await
        .map_err(|_| gone)?;
    if crate::object::meta_str(&sa, "uid") != Some(k.serviceaccount.uid.as_str()) {
        return Err(gone);
    }
    let mut extra = serde_json::Map::new();
    if let Some(pod) = &k.pod {
        let pod_res = state.registry.lookup("", "v1", "pods").ok_or(gone)?;
        let p = state
            .storage
            .get(pod_res, Some(&k.namespace), &pod.name)
            .await
            .map_err(|_| gone)?;
        if crate::object::meta_str(&p, "uid") != Some(pod.uid.as_str()) {
            return Err(gone);
        }
        extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            serde_json::json!([pod.name]),
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            serde_json::json!([pod.uid]),
        );
    }
    let audiences = wanted
        .iter()
        .filter(|a| claims.aud.contains(a))
        .cloned()
        .collect();
    let mut identity = Identity::authenticated(
        claims.sub.clone(),
        k.serviceaccount.uid.clone(),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
        ],
    );
    identity.extra = extra
        .iter()
        .map(|(key, values)| {
            let values = values
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (key.clone(), values)
        })
        .collect();
    Ok(ServiceAccountToken {
        identity,
        audiences,
        extra,
    })
}

/// Looks up bearer tokens.
#[derive(Debug, Default)]
pub(crate) struct TokenAuthenticator {
    tokens: HashMap<String, StaticToken>,
}

impl TokenAuthenticator {
    pub(crate) fn new(tokens: &[StaticToken]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| (t.token.clone(), t.clone()))
                .collect(),
        }
    }

    /// `Some(Ok)` for a known token, `Some(Err)` for an unknown one, `None` without a bearer header.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Option<Result<Identity, ()>> {
        let value = authorization?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        Some(match self.tokens.get(token) {
            Some(t) => Ok(Identity::authenticated(
                t.user.clone(),
                t.uid.clone(),
                t.groups.clone(),
            )),
            None => Err(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bearer_token_names_its_user_and_groups() {
        let a = TokenAuthenticator::new(&[StaticToken {
            token: "s3cret".into(),
            user: "alice".into(),
            uid: "1".into(),
            groups: vec!["dev".into()],
        }]);
        let id = a
            .authenticate(Some("Bearer s3cret"))
            .expect("bearer")
            .expect("known");
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, vec!["dev", "system:authenticated"]);
        assert!(
            a.authenticate(Some("Bearer nope"))
                .expect("bearer")
                .is_err()
        );
        assert!(a.authenticate(None).is_none());
    }
}
