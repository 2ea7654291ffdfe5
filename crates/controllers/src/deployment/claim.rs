//! Claiming ReplicaSets for a Deployment (Kubernetes' `ClaimReplicaSets` in the
//! controller-ref manager): a Deployment controls the ReplicaSets whose labels match
//! its selector, adopts matching orphans after re-reading itself, and releases
//! ReplicaSets that stopped matching.

use api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::sync::{Rollout, api_err, by_creation};
use crate::Error;
use crate::replicaset::pods::controller_of;
use crate::replicaset::sync::{controller_ref, key_of};

impl Rollout<'_> {
    /// Claims ReplicaSets: keeps ours that match, releases ours that stopped
    /// matching, adopts matching orphans (`ClaimReplicaSets`).
    pub(crate) async fn claim(&mut self, selector: &LabelSelector) -> Result<(), Error> {
        let ns = self.ns();
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut candidates: Vec<ReplicaSet> = self
            .ctx
            .replica_sets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|rs| (*rs).clone())
            .collect();
        candidates.sort_by(by_creation);
        let mut can_adopt: Option<bool> = None;
        for rs in candidates {
            let matches = selector.matches(&rs.metadata.labels.clone().unwrap_or_default());
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        self.rss.push(rs);
                    } else if !deleting {
                        self.set_rs_owner(&rs, None).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if deleting || !matches || rs.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if can_adopt.is_none() {
                        let fresh =
                            self.d_api()
                                .get_opt(&self.name())
                                .await
                                .map_err(api_err(format!(
                                    "re-reading deployment {}",
                                    key_of(&self.d)
                                )))?;
                        can_adopt = Some(fresh.is_some_and(|f| {
                            f.metadata.uid == self.d.metadata.uid
                                && f.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if can_adopt == Some(true)
                        && let Some(adopted) = self
                            .set_rs_owner(&rs, Some(controller_ref(&self.d)))
                            .await?
                    {
                        self.rss.push(adopted);
                    }
                }
            }
        }
        Ok(())
    }

    /// Adopts (`Some`) or releases (`None`) `rs`; `None` back when it is gone.
    async fn set_rs_owner(
        &self,
        rs: &ReplicaSet,
        owner: Option<OwnerReference>,
    ) -> Result<Option<ReplicaSet>, Error> {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
        refs.retain(|r| r.uid != uid);
        let adopting = owner.is_some();
        refs.extend(owner);
        let patch = json!({"metadata": {
            "resourceVersion": rs.metadata.resource_version,
            "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
        }});
        let name = rs.name_any();
        tracing::debug!(replicaset = %name, adopting, "changing ReplicaSet ownership");
        match self
            .rs_api()
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(rs) => Ok(Some(rs)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(Error::Api {
                context: format!(
                    "{} ReplicaSet {name}",
                    if adopting { "adopting" } else { "releasing" }
                ),
                source: e,
            }),
        }
    }
}
