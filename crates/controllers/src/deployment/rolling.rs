//! The RollingUpdate strategy (Kubernetes' `rolling.go`): grow the new ReplicaSet up
//! to `replicas + maxSurge` pods in total, shrink old ones while at least
//! `replicas - maxUnavailable` pods stay available, unhealthy old pods first.

use super::sync::Rollout;
use super::util;
use crate::Error;

impl Rollout<'_> {
    /// One step of a rolling update (`rolloutRolling`).
    pub(crate) async fn rollout_rolling(&mut self) -> Result<(), Error> {
        self.get_all_and_sync_revision(true).await?;
        if self.reconcile_new().await? {
            return self.sync_rollout_status().await;
        }
        if self.reconcile_old().await? {
            return self.sync_rollout_status().await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if super::progress::complete(&self.d, &status) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// Scales the new ReplicaSet towards `spec.replicas` within maxSurge
    /// (`reconcileNewReplicaSet`).
    async fn reconcile_new(&mut self) -> Result<bool, Error> {
        let Some(i) = self.new else { return Ok(false) };
        let desired = util::replicas(&self.d);
        let have = util::rs_replicas(&self.rss[i]);
        if have == desired {
            return Ok(false);
        }
        if have > desired {
            return self.scale_rs(i, desired).await;
        }
        let n = util::new_rs_new_replicas(&self.d, &self.all(), have);
        self.scale_rs(i, n).await
    }

    /// Scales old ReplicaSets down as far as availability allows
    /// (`reconcileOldReplicaSets`).
    async fn reconcile_old(&mut self) -> Result<bool, Error> {
        let old: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|i| util::rs_replicas(&self.rss[*i]) > 0)
            .collect();
        let old_count: i32 = old.iter().map(|i| util::rs_replicas(&self.rss[*i])).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count: i32 = self.rss.iter().map(util::rs_replicas).sum();
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let new_unavailable = self
            .new_rs()
            .map(|rs| util::rs_replicas(rs) - util::rs_available(rs))
            .unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(&old, max_scaled_down).await?;
        let scaled = self.scale_down_old(&old).await?;
        Ok(cleaned + scaled > 0)
    }

    fn by_creation(&self, mut idx: Vec<usize>) -> Vec<usize> {
        idx.sort_by(|a, b| {
            let t = |i: &usize| {
                self.rss[*i]
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
            };
            t(a).cmp(&t(b))
                .then_with(|| self.rss[*a].metadata.name.cmp(&self.rss[*b].metadata.name))
        });
        idx
    }

    /// Removes old replicas that are not available anyway, oldest ReplicaSet first
    /// (`cleanupUnhealthyReplicas`).
    async fn cleanup_unhealthy(&mut self, old: &[usize], max_cleanup: i32) -> Result<i32, Error> {
        let mut total = 0;
        for i in self.by_creation(old.to_vec()) {
            if total >= max_cleanup {
                break;
            }
            let rs = &self.rss[i];
            let (replicas, available) = (util::rs_replicas(rs), util::rs_available(rs));
            if replicas == 0 || replicas == available {
                continue;
            }
            let n = (max_cleanup - total).min(replicas - available);
            self.scale_rs(i, replicas - n).await?;
            total += n;
        }
        Ok(total)
    }

    /// Scales old ReplicaSets down while availability stays above the minimum
    /// (`scaleDownOldReplicaSetsForRollingUpdate`).
    async fn scale_down_old(&mut self, old: &[usize]) -> Result<i32, Error> {
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let available: i32 = self.rss.iter().map(util::rs_available).sum();
        if available <= min_available {
            return Ok(0);
        }
        let budget = available - min_available;
        let mut total = 0;
        for i in self.by_creation(old.to_vec()) {
            if total >= budget {
                break;
            }
            let replicas = util::rs_replicas(&self.rss[i]);
            if replicas == 0 {
                continue;
            }
            let n = replicas.min(budget - total);
            self.scale_rs(i, replicas - n).await?;
            total += n;
        }
        Ok(total)
    }
}
