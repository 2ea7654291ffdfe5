//! Rollback through the deprecated `deprecated.deployment.rollback.to` annotation
//! (the old `extensions/v1beta1` rollback subresource; Kubernetes' `rollback.go`).
//! `kubectl rollout undo` does not use it: kubectl copies the old ReplicaSet's
//! template into the deployment itself, and the sync then finds that ReplicaSet
//! again and gives it the next revision.

use events::EventType;
use kube::ResourceExt;
use kube::api::PostParams;

use super::sync::{Rollout, api_err};
use super::util;
use crate::Error;

impl Rollout<'_> {
    /// Rolls back to the revision the annotation names (0: the previous one).
    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        self.get_all_and_sync_revision(true).await?;
        let Some(target) = util::annotation(&self.d.metadata, util::ROLLBACK_TO)
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return Ok(());
        };
        let mut revision = target;
        if revision == 0 {
            let mut revs: Vec<i64> = self.rss.iter().map(util::revision).collect();
            revs.sort_unstable();
            revs.dedup();
            revision = if revs.len() >= 2 {
                revs[revs.len() - 2]
            } else {
                0
            };
            if revision == 0 {
                self.event(
                    EventType::Warning,
                    "DeploymentRollbackRevisionNotFound",
                    "Unable to find last revision.".into(),
                )
                .await;
                return self.clear_rollback_to().await;
            }
        }
        let Some(rs) = self
            .rss
            .iter()
            .find(|rs| util::revision(rs) == revision)
            .cloned()
        else {
            self.event(
                EventType::Warning,
                "DeploymentRollbackRevisionNotFound",
                "Unable to find the revision to rollback to.".into(),
            )
            .await;
            return self.clear_rollback_to().await;
        };
        let Some(mut template) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
            return self.clear_rollback_to().await;
        };
        if util::equal_ignore_hash(&template, &util::template(&self.d)) {
            let msg = format!(
                "The rollback revision contains the same template as current deployment \"{}\"",
                self.d.name_any()
            );
            self.event(
                EventType::Warning,
                "DeploymentRollbackTemplateUnchanged",
                msg,
            )
            .await;
            return self.clear_rollback_to().await;
        }
        if let Some(l) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(util::HASH_LABEL);
        }
        if let Some(spec) = self.d.spec.as_mut() {
            spec.template = template;
        }
        let a = self
            .d
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        for (k, v) in rs.metadata.annotations.iter().flatten() {
            if !matches!(
                k.as_str(),
                util::REVISION
                    | util::REVISION_HISTORY
                    | util::DESIRED_REPLICAS
                    | util::MAX_REPLICAS
                    | util::ROLLBACK_TO
            ) && k != "kubectl.kubernetes.io/last-applied-configuration"
            {
                a.insert(k.clone(), v.clone());
            }
        }
        let msg = format!(
            "Rolled back deployment \"{}\" to revision {revision}",
            self.d.name_any()
        );
        self.clear_rollback_to().await?;
        self.event(EventType::Normal, "DeploymentRollback", msg)
            .await;
        Ok(())
    }

    async fn clear_rollback_to(&mut self) -> Result<(), Error> {
        if let Some(a) = self.d.metadata.annotations.as_mut() {
            a.remove(util::ROLLBACK_TO);
        }
        let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(self.ctx.client.clone(), &self.ns());
        self.d = api
            .replace(&self.d.name_any(), &PostParams::default(), &self.d)
            .await
            .map_err(api_err(format!(
                "updating deployment {}",
                self.d.name_any()
            )))?;
        Ok(())
    }
}
