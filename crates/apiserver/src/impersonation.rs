//! User impersonation (`kubectl --as`, `--as-group`, `--as-uid`), as kube-apiserver's
//! impersonation filter does it: the `Impersonate-User`, `Impersonate-Group`,
//! `Impersonate-Uid` and `Impersonate-Extra-<key>` headers each need the `impersonate`
//! verb on what they name (users, groups, serviceaccounts, `uids` and
//! `userextras/<key>` in `authentication.k8s.io`); the request then runs as the
//! impersonated user.

use std::collections::BTreeMap;

use api::status::ApiError;
use http::HeaderMap;

use crate::authn::Identity;
use crate::authz::{Attributes, Decision};
use crate::serve::State;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const ANONYMOUS: &str = "system:anonymous";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";

/// One thing the requester asks to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Uid(String),
    Extra { key: String, value: String },
}

impl Target {
    /// What the requester must be allowed to `impersonate`:
    /// (group, resource, subresource, namespace, name).
    fn attributes(&self) -> (&str, &str, &str, &str, &str) {
        match self {
            Target::User(name) => ("", "users", "", "", name),
            Target::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", "", namespace, name)
            }
            Target::Group(name) => ("", "groups", "", "", name),
            Target::Uid(uid) => ("authentication.k8s.io", "uids", "", "", uid),
            Target::Extra { key, value } => ("authentication.k8s.io", "userextras", key, "", value),
        }
    }

    /// How kube-apiserver prints an impersonation request in its errors.
    fn describe(&self) -> String {
        match self {
            Target::User(n) => format!("{{User {n}}}"),
            Target::ServiceAccount { namespace, name } => {
                format!("{{ServiceAccount {namespace}/{name}}}")
            }
            Target::Group(n) => format!("{{Group {n}}}"),
            Target::Uid(u) => format!("{{UID {u}}}"),
            Target::Extra { key, value } => format!("{{UserExtra {key}={value}}}"),
        }
    }
}

/// The impersonation the headers ask for, in kube-apiserver's order (user, groups,
/// extras, uid); an error when groups, extras or a UID come without a user.
fn requested(headers: &HeaderMap) -> Result<Vec<Target>, String> {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut out = Vec::new();
    let user = headers.get(USER).map(text).filter(|u| !u.is_empty());
    if let Some(user) = &user {
        let sa = user
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'));
        out.push(match sa {
            Some((namespace, name)) => Target::ServiceAccount {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            None => Target::User(user.clone()),
        });
    }
    for g in headers.get_all(GROUP) {
        out.push(Target::Group(text(g)));
    }
    let mut extras: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            let key = percent_decode(key).to_lowercase();
            extras.push((key, text(value)));
        }
    }
    extras.sort();
    out.extend(
        extras
            .into_iter()
            .map(|(key, value)| Target::Extra { key, value }),
    );
    if let Some(uid) = headers.get(UID).map(text).filter(|u| !u.is_empty()) {
        out.push(Target::Uid(uid));
    }
    if user.is_none() && !out.is_empty() {
        let list: Vec<String> = out.iter().map(Target::describe).collect();
        return Err(format!(
            "requested [{}] without impersonating a user",
            list.join(" ")
        ));
    }
    Ok(out)
}

/// `%XX` escapes in an extra key (kube-apiserver unescapes them with
/// `url.PathUnescape`); a malformed escape is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The identity a request runs as: `who` itself when no impersonation header is
/// present, else the impersonated user once `who` may impersonate every part of it.
pub(crate) fn resolve(
    state: &State,
    who: Identity,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let has_any = headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"));
    if !has_any {
        return Ok(who);
    }
    let targets = requested(headers).map_err(ApiError::internal)?;
    if targets.is_empty() {
        return Ok(who);
    }
    let groups_given = targets.iter().any(|t| matches!(t, Target::Group(_)));
    let mut user = String::new();
    let mut uid = String::new();
    let mut groups: Vec<String> = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &targets {
        let (group, resource, subresource, namespace, name) = t.attributes();
        let mut attrs = Attributes::resource(&who, "impersonate", group, resource, namespace, name);
        attrs.subresource = std::borrow::Cow::Borrowed(subresource);
        match state.authorizer.decide(&attrs) {
            Decision::Allow(_) => {}
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                tracing::debug!(user = %who.user, target = %t.describe(), "impersonation forbidden");
                return Err(attrs.forbidden(&reason));
            }
        }
        match t {
            Target::User(n) => user = n.clone(),
            Target::ServiceAccount { namespace, name } => {
                user = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}");
                if !groups_given {
                    groups = vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Target::Group(g) => groups.push(g.clone()),
            Target::Uid(u) => uid = u.clone(),
            Target::Extra { key, value } => {
                extra.entry(key.clone()).or_default().push(value.clone())
            }
        }
    }
    if user != ANONYMOUS {
        if !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            groups.push(AUTHENTICATED.into());
        }
    } else if !groups.iter().any(|g| g == UNAUTHENTICATED) {
        groups.push(UNAUTHENTICATED.into());
    }
    tracing::debug!(requester = %who.user, acting_as = %user, "impersonating");
    Ok(Identity {
        user,
        uid,
        groups,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn service_account_user_names_become_service_account_requests() {
        let t = requested(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:ns1:robot",
        )]))
        .expect("valid");
        assert_eq!(
            t,
            vec![Target::ServiceAccount {
                namespace: "ns1".into(),
                name: "robot".into()
            }]
        );
        // Not a well-formed service account name: an ordinary user.
        let t = requested(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:ns1",
        )]))
        .expect("valid");
        assert_eq!(t, vec![Target::User("system:serviceaccount:ns1".into())]);
    }

    #[test]
    fn groups_extras_and_uid_need_a_user() {
        let e = requested(&headers(&[("Impersonate-Group", "devs")])).expect_err("refused");
        assert_eq!(e, "requested [{Group devs}] without impersonating a user");
        let t = requested(&headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Example.com%2fteam", "blue"),
            ("Impersonate-Uid", "1234"),
        ]))
        .expect("valid");
        assert_eq!(
            t,
            vec![
                Target::User("jane".into()),
                Target::Group("devs".into()),
                Target::Group("ops".into()),
                Target::Extra {
                    key: "example.com/team".into(),
                    value: "blue".into()
                },
                Target::Extra {
                    key: "scopes".into(),
                    value: "view".into()
                },
                Target::Uid("1234".into()),
            ]
        );
    }

    #[test]
    fn each_target_is_checked_against_kubernetes_resources() {
        let extra = Target::Extra {
            key: "scopes".into(),
            value: "view".into(),
        };
        assert_eq!(
            extra.attributes(),
            ("authentication.k8s.io", "userextras", "scopes", "", "view")
        );
        let sa = Target::ServiceAccount {
            namespace: "n".into(),
            name: "s".into(),
        };
        assert_eq!(sa.attributes(), ("", "serviceaccounts", "", "n", "s"));
        assert_eq!(
            Target::Uid("u".into()).attributes(),
            ("authentication.k8s.io", "uids", "", "", "u")
        );
    }

    #[test]
    fn percent_escapes_in_extra_keys_are_decoded() {
        assert_eq!(percent_decode("a%2Fb%2"), "a/b%2");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
