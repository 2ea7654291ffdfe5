//! Escalation prevention on writes of Roles, ClusterRoles and their bindings
//! (Kubernetes' `policybased` storages): a user may write a role only with rules
//! they hold, and bind only a role whose rules they hold, unless they may
//! `escalate` the role or `bind` it. `system:masters` is exempt.

use api::status::{ApiError, StatusDetails};
use serde_json::Value;

use super::objects::{Binding, RBAC_GROUP, RoleObject};
use super::rule::{self, PolicyRule};
use crate::authn::Identity;
use crate::authz::{Attributes, PRIVILEGED_GROUP};
use crate::rest::Ctx;

/// Metadata a garbage collector may change without the change being a grant.
const GC_FIELDS: &[&str] = &["ownerReferences", "finalizers"];
/// Metadata the server owns (not part of what a client asks for).
const SERVER_FIELDS: &[&str] = &[
    "resourceVersion",
    "managedFields",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Kubernetes' `IsOnlyMutatingGCFields`: the update changes nothing but owner
/// references and finalizers.
fn only_gc_fields_change(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let m = crate::object::meta_mut(&mut v);
        for f in GC_FIELDS.iter().chain(SERVER_FIELDS) {
            m.remove(*f);
        }
        for f in ["labels", "annotations"] {
            if m.get(f)
                .is_some_and(|x| x.as_object().is_some_and(|o| o.is_empty()))
            {
                m.remove(f);
            }
        }
        v
    };
    strip(new) == strip(old)
}

/// `(groups=["a" "b"])` as Go's `%q` prints a string slice.
fn go_quoted(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", inner.join(" "))
}

fn forbidden(plural: &str, name: &str, why: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!(
        "{plural}.{RBAC_GROUP} {name:?} is forbidden: {why}"
    ));
    e.details = Some(StatusDetails {
        name: (!name.is_empty()).then(|| name.to_string()),
        group: Some(RBAC_GROUP.into()),
        kind: Some(plural.into()),
        ..Default::default()
    });
    e
}

/// Kubernetes' `ConfirmNoEscalation`: `who` holds every rule in `wanted` in `namespace`.
fn confirm_no_escalation(
    ctx: &Ctx<'_>,
    who: &Identity,
    namespace: &str,
    wanted: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = ctx.state.rbac.snapshot().rules_for(who, namespace);
    let Err(missing) = rule::covers(&owned, wanted) else {
        return Ok(());
    };
    let mut lines: Vec<String> = rule::compact(missing)
        .iter()
        .map(PolicyRule::compact_string)
        .collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        who.user,
        go_quoted(&who.groups),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// Whether the authorizers allow `who` the `verb` (escalate, bind) on a role.
fn may(
    ctx: &Ctx<'_>,
    who: &Identity,
    verb: &str,
    group: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> bool {
    ctx.state
        .authorizer
        .decide(&Attributes::resource(
            who, verb, group, plural, namespace, name,
        ))
        .allowed()
}

/// Checks a create (`old` = None) or update of an RBAC object the request writes.
pub(crate) fn check(ctx: &Ctx<'_>, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if ctx.res.group != RBAC_GROUP || ctx.who.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
        return Ok(());
    }
    let plural = ctx.res.plural.as_str();
    let name = crate::object::name(new).unwrap_or_default();
    let namespace = ctx.namespace().unwrap_or_default();
    let who = ctx.who;
    if old.is_some_and(|o| only_gc_fields_change(new, o)) {
        return Ok(());
    }
    match plural {
        "roles" | "clusterroles" => {
            // The name the request addresses (none on create), as Kubernetes asks.
            if may(
                ctx,
                who,
                "escalate",
                RBAC_GROUP,
                plural,
                namespace,
                ctx.name(),
            ) {
                return Ok(());
            }
            let Some(role) = RoleObject::decode(new) else {
                return Ok(()); // validation reports malformed objects
            };
            confirm_no_escalation(ctx, who, namespace, &role.rules)
                .map_err(|why| forbidden(plural, name, &why))?;
            let aggregated = role.is_aggregated()
                || old
                    .and_then(RoleObject::decode)
                    .is_some_and(|o| o.is_aggregated());
            if plural == "clusterroles" && aggregated {
                let all = |s: &str| vec![s.to_string()];
                let full = [
                    PolicyRule {
                        verbs: all("*"),
                        api_groups: all("*"),
                        resources: all("*"),
                        ..Default::default()
                    },
                    PolicyRule {
                        verbs: all("*"),
                        non_resource_urls: all("*"),
                        ..Default::default()
                    },
                ];
                confirm_no_escalation(ctx, who, namespace, &full).map_err(|_| {
                    forbidden(
                        plural,
                        name,
                        "must have cluster-admin privileges to use the aggregationRule",
                    )
                })?;
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let Some(binding) = Binding::decode(new) else {
                return Ok(());
            };
            let r = &binding.role_ref;
            let target = match r.kind.as_str() {
                "ClusterRole" => Some("clusterroles"),
                "Role" => Some("roles"),
                _ => None,
            };
            if let Some(target) = target
                && may(ctx, who, "bind", &r.api_group, target, namespace, &r.name)
            {
                return Ok(());
            }
            let snapshot = ctx.state.rbac.snapshot();
            let rules = snapshot
                .role_ref_rules(&r.kind, &r.name, namespace)
                .map_err(|e| forbidden(plural, name, &e))?
                .to_vec();
            confirm_no_escalation(ctx, who, namespace, &rules)
                .map_err(|why| forbidden(plural, name, &why))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owner_references_and_finalizers_alone_are_not_a_grant() {
        let old = json!({"metadata": {"name": "r", "resourceVersion": "3", "uid": "u"},
                         "rules": [{"verbs": ["get"]}]});
        let gc = json!({"metadata": {"name": "r", "resourceVersion": "3", "finalizers": ["x"],
                                     "ownerReferences": [{"name": "o"}]},
                        "rules": [{"verbs": ["get"]}]});
        assert!(only_gc_fields_change(&gc, &old));
        let label = json!({"metadata": {"name": "r", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                           "rules": [{"verbs": ["get"]}]});
        assert!(
            !only_gc_fields_change(&label, &old),
            "a label can aggregate rules into another role"
        );
    }

    #[test]
    fn groups_print_as_go_quotes_a_slice() {
        assert_eq!(
            go_quoted(&["system:authenticated".into(), "dev".into()]),
            "[\"system:authenticated\" \"dev\"]"
        );
    }
}
