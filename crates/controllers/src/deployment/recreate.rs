//! The Recreate strategy (Kubernetes' `recreate.go`): scale every old ReplicaSet to
//! zero, wait until none of their pods is left running (terminating pods count as
//! running, as on a node that is still stopping them), then scale the new one up.

use super::sync::Rollout;
use super::util;
use crate::Error;
use crate::replicaset::pods::{controller_of, phase};

impl Rollout<'_> {
    /// One step of a Recreate rollout (`rolloutRecreate`).
    pub(crate) async fn rollout_recreate(&mut self) -> Result<(), Error> {
        self.get_all_and_sync_revision(false).await?;
        let mut scaled_down = false;
        for i in self.old() {
            if util::rs_replicas(&self.rss[i]) > 0 {
                self.scale_rs(i, 0).await?;
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running() {
            return self.sync_rollout_status().await;
        }
        if self.new.is_none() {
            self.get_all_and_sync_revision(true).await?;
        }
        if let Some(i) = self.new {
            let desired = util::replicas(&self.d);
            self.scale_rs(i, desired).await?;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if super::progress::complete(&self.d, &status) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// Whether any old ReplicaSet still reports pods, or owns a pod that has not
    /// finished (`oldPodsRunning`).
    fn old_pods_running(&self) -> bool {
        let old = self.old();
        if old
            .iter()
            .map(|i| util::rs_actual(&self.rss[*i]))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let uids: Vec<String> = old
            .iter()
            .filter_map(|i| self.rss[*i].metadata.uid.clone())
            .collect();
        let ns = self.ns();
        self.ctx.pods.state().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                && !matches!(phase(p), "Succeeded" | "Failed")
        })
    }
}
