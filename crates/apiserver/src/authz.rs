//! Authorization: may this identity do this request? kube-apiserver's shape: the
//! privileged group `system:masters` is always allowed, then each configured mode
//! (`--authorization-mode`, e.g. `Node,RBAC` or `AlwaysAllow`) is asked in order; the
//! first to allow or deny decides, and a request nobody allows is refused with
//! kube-apiserver's 403 wording.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use api::status::{ApiError, StatusDetails};

use crate::authn::Identity;
use crate::node_authz::NodeAuthorizer;
use crate::rbac::{PolicyRule, RbacAuthorizer};
use crate::request::RequestInfo;

/// The group whose members may do everything (kube-apiserver's privileged group).
pub(crate) const PRIVILEGED_GROUP: &str = "system:masters";

/// One authorization mode of `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// What node agents (`system:node:<name>` in `system:nodes`) may do: the objects
    /// of the pods bound to them, their own Lease, and the `system:node` rules.
    Node,
    /// Role-based access control from the `rbac.authorization.k8s.io` objects.
    Rbac,
    /// Every authenticated request is allowed.
    AlwaysAllow,
    /// Every request is refused (except for `system:masters`).
    AlwaysDeny,
}

impl AuthorizationMode {
    /// Parses a comma-separated mode list as kube-apiserver spells it (`Node`,
    /// `RBAC`, `AlwaysAllow`, `AlwaysDeny`), refusing duplicates and an empty list.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mode: Self = part.parse()?;
            if out.contains(&mode) {
                return Err(format!("authorization mode {part:?} is given twice"));
            }
            out.push(mode);
        }
        if out.is_empty() {
            return Err("at least one authorization mode is required".into());
        }
        Ok(out)
    }
}

impl FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Node" => Ok(Self::Node),
            "RBAC" => Ok(Self::Rbac),
            "AlwaysAllow" => Ok(Self::AlwaysAllow),
            "AlwaysDeny" => Ok(Self::AlwaysDeny),
            other => Err(format!(
                "unknown authorization mode {other:?}; supported: Node, RBAC, AlwaysAllow, AlwaysDeny"
            )),
        }
    }
}

impl fmt::Display for AuthorizationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Node => "Node",
            Self::Rbac => "RBAC",
            Self::AlwaysAllow => "AlwaysAllow",
            Self::AlwaysDeny => "AlwaysDeny",
        })
    }
}

/// What a request asks to do (kube-apiserver's `authorizer.Attributes`).
#[derive(Debug, Clone)]
pub(crate) struct Attributes<'a> {
    pub who: &'a Identity,
    pub verb: Cow<'a, str>,
    /// True for `/api` and `/apis` resource requests, false for paths like `/healthz`.
    pub resource_request: bool,
    /// The request path (for non-resource requests).
    pub path: Cow<'a, str>,
    pub api_group: Cow<'a, str>,
    pub resource: Cow<'a, str>,
    pub subresource: Cow<'a, str>,
    /// Empty for cluster-scoped requests and lists across namespaces.
    pub namespace: Cow<'a, str>,
    /// Empty when the request names no object (list, create).
    pub name: Cow<'a, str>,
}

impl<'a> Attributes<'a> {
    /// The attributes of a parsed request, completed as kube-apiserver's request info
    /// resolver does: a namespace object is addressed in its own namespace, and a list
    /// or watch with `fieldSelector=metadata.name=X` is about the object X.
    pub(crate) fn from_request(who: &'a Identity, info: &'a RequestInfo) -> Self {
        let mut name: Cow<'a, str> = Cow::Borrowed(info.name.as_deref().unwrap_or_default());
        let mut namespace: Cow<'a, str> =
            Cow::Borrowed(info.namespace.as_deref().unwrap_or_default());
        if info.is_resource {
            if info.group.is_empty() && info.resource == "namespaces" && namespace.is_empty() {
                namespace = name.clone();
            }
            if name.is_empty()
                && matches!(info.verb.as_str(), "list" | "watch")
                && let Some(selector) = info.param("fieldSelector").filter(|s| !s.is_empty())
                && let Ok(selector) = api::selector::FieldSelector::parse(selector)
                && let Some(exact) = selector.requires_exact_match("metadata.name")
                && !exact.is_empty()
                && !exact.contains('/')
                && exact != "."
                && exact != ".."
            {
                name = Cow::Owned(exact.to_string());
            }
        }
        Self {
            who,
            verb: Cow::Borrowed(&info.verb),
            resource_request: info.is_resource,
            path: Cow::Borrowed(&info.path),
            api_group: Cow::Borrowed(&info.group),
            resource: Cow::Borrowed(&info.resource),
            subresource: Cow::Borrowed(&info.subresource),
            namespace,
            name,
        }
    }

    /// A resource request built by hand (escalation checks, access reviews).
    pub(crate) fn resource(
        who: &'a Identity,
        verb: &'a str,
        api_group: &'a str,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> Self {
        Self {
            who,
            verb: Cow::Borrowed(verb),
            resource_request: true,
            path: Cow::Borrowed(""),
            api_group: Cow::Borrowed(api_group),
            resource: Cow::Borrowed(resource),
            subresource: Cow::Borrowed(""),
            namespace: Cow::Borrowed(namespace),
            name: Cow::Borrowed(name),
        }
    }

    /// kube-apiserver's `forbiddenMessage`: who cannot do what, where.
    pub(crate) fn forbidden_message(&self) -> String {
        let user = &self.who.user;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }

    /// [`Self::forbidden`], for a request the authorizers refused (logged).
    pub(crate) fn denied(&self, reason: &str) -> ApiError {
        tracing::debug!(
            user = %self.who.user,
            groups = ?self.who.groups,
            verb = %self.verb,
            group = %self.api_group,
            resource = %self.resource,
            subresource = %self.subresource,
            namespace = %self.namespace,
            name = %self.name,
            path = %self.path,
            "authorization denied"
        );
        self.forbidden(reason)
    }

    /// The 403 Status kube-apiserver answers (`apierrors.NewForbidden` around the
    /// forbidden message and the authorizers' reason).
    pub(crate) fn forbidden(&self, reason: &str) -> ApiError {
        let mut why = self.forbidden_message();
        if !reason.is_empty() {
            why.push_str(": ");
            why.push_str(reason);
        }
        let qualified = api::status::qualified_resource(&self.api_group, &self.resource);
        let message = if !self.resource_request || self.resource.is_empty() {
            format!("forbidden: {why}")
        } else if self.name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {:?} is forbidden: {why}", self.name)
        };
        let mut e = ApiError::forbidden(message);
        e.details = Some(StatusDetails {
            name: (!self.name.is_empty()).then(|| self.name.to_string()),
            group: (!self.api_group.is_empty()).then(|| self.api_group.to_string()),
            kind: (self.resource_request && !self.resource.is_empty())
                .then(|| self.resource.to_string()),
            ..Default::default()
        });
        e
    }
}

/// An authorizer's answer, with the reason it gives (shown in access reviews and,
/// for refusals, in the 403 message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow(String),
    Deny(String),
    NoOpinion(String),
}

impl Decision {
    pub(crate) fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub(crate) fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}

/// The rules a user holds in a namespace, for SelfSubjectRulesReview.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserRules {
    /// Rules with resources (and their verbs, groups, names).
    pub resource_rules: Vec<PolicyRule>,
    /// Rules with non-resource URLs.
    pub non_resource_rules: Vec<PolicyRule>,
    /// True when some authorizer cannot list what it would allow.
    pub incomplete: bool,
    /// Errors met while gathering the rules (missing roles).
    pub errors: Vec<String>,
}

/// Decides whether a request is allowed.
pub(crate) trait Authorizer: Send + Sync {
    /// Decides on `attrs`.
    fn decide(&self, attrs: &Attributes<'_>) -> Decision;

    /// The rules `who` holds in `namespace`, if this authorizer can list them.
    fn rules_for(&self, _who: &Identity, _namespace: &str) -> Option<UserRules> {
        None
    }

    /// `Ok(())` when the request is allowed, kube-apiserver's 403 otherwise.
    fn authorize(&self, who: &Identity, req: &RequestInfo) -> Result<(), ApiError> {
        let attrs = Attributes::from_request(who, req);
        match self.decide(&attrs) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(attrs.denied(&reason)),
        }
    }
}

/// Allows every request it is asked about.
pub(crate) struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn decide(&self, _attrs: &Attributes<'_>) -> Decision {
        Decision::Allow(String::new())
    }

    fn rules_for(&self, _who: &Identity, _namespace: &str) -> Option<UserRules> {
        let all = |s: &str| vec![s.to_string()];
        Some(UserRules {
            resource_rules: vec![PolicyRule {
                verbs: all("*"),
                api_groups: all("*"),
                resources: all("*"),
                ..Default::default()
            }],
            non_resource_rules: vec![PolicyRule {
                verbs: all("*"),
                non_resource_urls: all("*"),
                ..Default::default()
            }],
            ..Default::default()
        })
    }
}

/// Refuses every request it is asked about.
pub(crate) struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn decide(&self, _attrs: &Attributes<'_>) -> Decision {
        Decision::Deny("Everything is forbidden.".into())
    }

    fn rules_for(&self, _who: &Identity, _namespace: &str) -> Option<UserRules> {
        Some(UserRules::default())
    }
}

/// Has no opinion on anything (a mode whose authorizer was not built).
struct NoOpinion;

impl Authorizer for NoOpinion {
    fn decide(&self, _attrs: &Attributes<'_>) -> Decision {
        Decision::NoOpinion(String::new())
    }
}

/// The authorizer kube-apiserver builds: the privileged group first, then the modes
/// in order (a union: the first allow or deny decides).
pub(crate) struct Chain {
    modes: Vec<Box<dyn Authorizer>>,
}

impl Chain {
    /// The chain for `modes`, RBAC evaluated by `rbac` and Node by `node` (without
    /// one, the Node mode has no opinion on anything).
    pub(crate) fn new(
        modes: &[AuthorizationMode],
        rbac: &RbacAuthorizer,
        node: Option<&NodeAuthorizer>,
    ) -> Self {
        let modes = modes
            .iter()
            .map(|m| -> Box<dyn Authorizer> {
                match m {
                    AuthorizationMode::Node => match node {
                        Some(n) => Box::new(n.clone()),
                        None => Box::new(NoOpinion),
                    },
                    AuthorizationMode::Rbac => Box::new(rbac.clone()),
                    AuthorizationMode::AlwaysAllow => Box::new(AlwaysAllow),
                    AuthorizationMode::AlwaysDeny => Box::new(AlwaysDeny),
                }
            })
            .collect();
        Self { modes }
    }
}

impl Authorizer for Chain {
    fn decide(&self, attrs: &Attributes<'_>) -> Decision {
        if attrs.who.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Decision::Allow(String::new());
        }
        let mut reasons: Vec<String> = Vec::new();
        for mode in &self.modes {
            match mode.decide(attrs) {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }

    fn rules_for(&self, who: &Identity, namespace: &str) -> Option<UserRules> {
        let mut out = UserRules::default();
        for mode in &self.modes {
            match mode.rules_for(who, namespace) {
                Some(r) => {
                    out.resource_rules.extend(r.resource_rules);
                    out.non_resource_rules.extend(r.non_resource_rules);
                    out.incomplete |= r.incomplete;
                    out.errors.extend(r.errors);
                }
                None => out.incomplete = true,
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Identity {
        Identity {
            user: "bob".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
            extra: Default::default(),
        }
    }

    fn info(method: http::Method, path: &str, query: Option<&str>) -> RequestInfo {
        crate::request::parse(&method, path, query).expect("parses")
    }

    #[test]
    fn forbidden_messages_are_worded_as_kube_apiserver_words_them() {
        let who = bob();
        let i = info(http::Method::GET, "/api/v1/namespaces/default/pods", None);
        let e = Attributes::from_request(&who, &i).forbidden("");
        assert_eq!(
            e.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(e.code, 403);
        assert_eq!(e.to_status()["details"]["kind"], "pods");

        let i = info(
            http::Method::GET,
            "/apis/apps/v1/namespaces/x/deployments/web/scale",
            None,
        );
        assert_eq!(
            Attributes::from_request(&who, &i).forbidden("").message,
            "deployments.apps \"web\" is forbidden: User \"bob\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"x\""
        );

        let i = info(http::Method::GET, "/api/v1/nodes", None);
        assert_eq!(
            Attributes::from_request(&who, &i).forbidden("").message,
            "nodes is forbidden: User \"bob\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );

        let i = info(http::Method::GET, "/metrics", None);
        assert_eq!(
            Attributes::from_request(&who, &i).forbidden("").message,
            "forbidden: User \"bob\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn a_namespace_is_addressed_in_itself_and_a_name_selector_names_the_object() {
        let who = bob();
        let i = info(http::Method::GET, "/api/v1/namespaces/team-a", None);
        let a = Attributes::from_request(&who, &i);
        assert_eq!((&*a.namespace, &*a.name), ("team-a", "team-a"));

        let i = info(
            http::Method::GET,
            "/api/v1/nodes",
            Some("watch=true&fieldSelector=metadata.name%3Dnode-1"),
        );
        let a = Attributes::from_request(&who, &i);
        assert_eq!((&*a.verb, &*a.name), ("watch", "node-1"));
    }

    #[test]
    fn modes_parse_as_kube_apiserver_spells_them() {
        assert_eq!(
            AuthorizationMode::parse_list("RBAC,AlwaysAllow"),
            Ok(vec![
                AuthorizationMode::Rbac,
                AuthorizationMode::AlwaysAllow
            ])
        );
        assert_eq!(
            AuthorizationMode::parse_list("Node,RBAC"),
            Ok(vec![AuthorizationMode::Node, AuthorizationMode::Rbac])
        );
        assert_eq!(AuthorizationMode::Node.to_string(), "Node");
        assert!(AuthorizationMode::parse_list("rbac").is_err());
        assert!(AuthorizationMode::parse_list("RBAC,RBAC").is_err());
        assert!(AuthorizationMode::parse_list("").is_err());
    }
}
