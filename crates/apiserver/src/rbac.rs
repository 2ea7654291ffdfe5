//! Role-based access control (`rbac.authorization.k8s.io/v1`), as Kubernetes'
//! `RBACAuthorizer` evaluates it:
//!
//! - [`cache`]: an in-memory index of Roles, ClusterRoles and bindings, fed by the
//!   API server's watch cache; aggregated ClusterRoles are resolved there, at once,
//!   and [`aggregation`] writes the gathered rules into the stored objects as
//!   Kubernetes' clusterrole-aggregation controller does (it runs inside the API
//!   server, so aggregation works without the controller manager);
//! - [`snapshot`]: the rule walk (`VisitRulesFor`) and the decision;
//! - [`escalation`]: no granting or binding of rules one does not hold;
//! - [`policy`] and [`reconcile`]: the default roles and bindings, created and
//!   auto-updated at every start.

use std::sync::Arc;
use std::time::Duration;

use crate::authn::Identity;
use crate::authz::{Attributes, Authorizer, Decision, UserRules};
use crate::request::RequestInfo;
use crate::serve::State;

mod aggregation;
mod cache;
pub(crate) mod escalation;
mod objects;
mod policy;
mod reconcile;
mod rule;
mod snapshot;

pub(crate) use aggregation::run as aggregate_cluster_roles;
pub(crate) use cache::RbacCache;
pub(crate) use objects::RBAC_GROUP;
pub(crate) use reconcile::ensure_defaults;
pub(crate) use rule::PolicyRule;

/// How long a write of an RBAC object waits for the index to include it.
const READ_YOUR_WRITES: Duration = Duration::from_secs(2);

/// Decides with the RBAC objects in the index.
#[derive(Clone)]
pub(crate) struct RbacAuthorizer {
    cache: Arc<RbacCache>,
}

impl RbacAuthorizer {
    pub(crate) fn new(cache: Arc<RbacCache>) -> Self {
        Self { cache }
    }
}

impl Authorizer for RbacAuthorizer {
    fn decide(&self, attrs: &Attributes<'_>) -> Decision {
        self.cache.snapshot().decide(attrs)
    }

    fn rules_for(&self, who: &Identity, namespace: &str) -> Option<UserRules> {
        let (rules, errors) = self.cache.snapshot().rules_for(who, namespace);
        let mut out = UserRules {
            errors,
            ..Default::default()
        };
        for rule in rules {
            if !rule.resources.is_empty() {
                out.resource_rules.push(PolicyRule {
                    non_resource_urls: Vec::new(),
                    ..rule.clone()
                });
            }
            if !rule.non_resource_urls.is_empty() {
                out.non_resource_rules.push(PolicyRule {
                    verbs: rule.verbs,
                    non_resource_urls: rule.non_resource_urls,
                    ..Default::default()
                });
            }
        }
        Some(out)
    }
}

/// After a successful write of an RBAC object, waits until the index holds it, so
/// that the writer's next request is judged by it (read your writes).
pub(crate) async fn after_write(state: &State, info: &RequestInfo) {
    let writes = matches!(
        info.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    if !info.is_resource || info.group != RBAC_GROUP || !writes {
        return;
    }
    match state.storage.current_revision().await {
        Ok(rev) => {
            if !state.rbac.wait_for(rev, READ_YOUR_WRITES).await {
                tracing::warn!(revision = rev, "the RBAC index is slow to follow writes");
            }
        }
        Err(e) => tracing::debug!(error = %e.message, "no revision to wait for"),
    }
}
