//! One reconcile of a Deployment (Kubernetes' `syncDeployment` and `sync.go`):
//! claim ReplicaSets, find or create the new ReplicaSet and keep revisions in step,
//! scale (also proportionally when `spec.replicas` changes mid-rollout), clean up
//! old ReplicaSets, and write the status.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use api::selector::LabelSelector;
use events::EventType;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::{progress, util};
use crate::Error;
use crate::replicaset::events::EventSink;
use crate::replicaset::informer::Backoff;
use crate::replicaset::pods::controller_of;
use crate::replicaset::sync::{controller_ref, key_of};

/// What a deployment reconcile needs.
pub(crate) struct Ctx {
    /// API client.
    pub client: kube::Client,
    /// ReplicaSet cache.
    pub replica_sets: Store<ReplicaSet>,
    /// Pod cache (Recreate waits for old pods to be gone).
    pub pods: Store<Pod>,
    /// Event recorder.
    pub recorder: EventSink,
    /// Retry delays.
    pub backoff: Backoff,
}

impl Ctx {
    /// A context over the given caches.
    pub(crate) fn new(
        client: kube::Client,
        replica_sets: Store<ReplicaSet>,
        pods: Store<Pod>,
    ) -> Self {
        let recorder = EventSink::new(client.clone(), "deployment-controller");
        Self {
            client,
            replica_sets,
            pods,
            recorder,
            backoff: Backoff::default(),
        }
    }
}

/// The error policy: log and retry with per-object backoff.
pub(crate) fn error_policy(d: Arc<Deployment>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = key_of(&*d);
    tracing::debug!(object = %key, error = %err, "sync failed; retrying");
    Action::requeue(ctx.backoff.failed(&key))
}

/// Reconciles one Deployment.
pub(crate) async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = key_of(&*d);
    let span = tracing::debug_span!("sync", object = %key);
    let mut r = Rollout::new(&ctx, (*d).clone());
    let res = r.sync().instrument(span).await;
    if res.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    res.map(|()| match r.recheck {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

pub(crate) fn api_err(context: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { context, source }
}

pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// One deployment being synced: the object as last written and its ReplicaSets.
pub(crate) struct Rollout<'a> {
    pub ctx: &'a Ctx,
    /// The deployment, replaced by what the API returns after each write.
    pub d: Deployment,
    /// The ReplicaSets this deployment controls.
    pub rss: Vec<ReplicaSet>,
    /// Which of `rss` matches the current template.
    pub new: Option<usize>,
    /// Look again after this long (progress deadline, paused checks).
    pub recheck: Option<Duration>,
}

impl<'a> Rollout<'a> {
    fn new(ctx: &'a Ctx, d: Deployment) -> Self {
        Self {
            ctx,
            d,
            rss: Vec::new(),
            new: None,
            recheck: None,
        }
    }

    pub(crate) fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    pub(crate) fn name(&self) -> String {
        self.d.name_any()
    }

    pub(crate) fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    pub(crate) fn d_api(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    /// All ReplicaSets (new and old).
    pub(crate) fn all(&self) -> Vec<&ReplicaSet> {
        self.rss.iter().collect()
    }

    /// The new ReplicaSet.
    pub(crate) fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new.map(|i| &self.rss[i])
    }

    /// Indexes of the old ReplicaSets.
    pub(crate) fn old(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    pub(crate) async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx
            .recorder
            .record(&self.d.object_ref(&()), type_, reason, note)
            .await;
    }

    /// The whole `syncDeployment`.
    async fn sync(&mut self) -> Result<(), Error> {
        let selector = self.d.spec.as_ref().map(|s| &s.selector);
        let everything = selector.is_none_or(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
        });
        if everything {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
            let s = self.d.status.clone().unwrap_or_default();
            if s.observed_generation < self.d.metadata.generation {
                let status = DeploymentStatus {
                    observed_generation: self.d.metadata.generation,
                    ..s
                };
                self.write_status(status).await?;
            }
            return Ok(());
        }
        let selector = LabelSelector::from_optional_label_selector(selector).map_err(|e| {
            Error::Invalid(format!(
                "deployment {}: invalid selector: {e}",
                key_of(&self.d)
            ))
        })?;
        self.claim(&selector).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only().await;
        }
        self.check_paused_conditions().await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            return self.sync_scaling().await;
        }
        if util::annotation(&self.d.metadata, util::ROLLBACK_TO).is_some() {
            return self.rollback().await;
        }
        if self.is_scaling_event().await? {
            return self.sync_scaling().await;
        }
        if util::is_rolling(&self.d) {
            self.rollout_rolling().await
        } else {
            self.rollout_recreate().await
        }
    }

    /// Writes the status when it differs from the stored one.
    pub(crate) async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut d = self.d.clone();
        d.status = Some(status);
        self.d = self
            .d_api()
            .replace_status(&self.name(), &PostParams::default(), &d)
            .await
            .map_err(api_err(format!(
                "updating status of deployment {}",
                key_of(&self.d)
            )))?;
        Ok(())
    }

    /// Writes metadata (the revision annotation) and then the status.
    async fn write_annotations_and_status(
        &mut self,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        self.d = self
            .d_api()
            .replace(&self.name(), &PostParams::default(), &self.d)
            .await
            .map_err(api_err(format!("updating deployment {}", key_of(&self.d))))?;
        self.write_status(status).await
    }

    async fn sync_status_only(&mut self) -> Result<(), Error> {
        self.get_all_and_sync_revision(false).await?;
        let s = progress::calculate(&self.all(), self.new_rs(), &self.d);
        self.write_status(s).await
    }

    /// Sets Progressing=Unknown DeploymentPaused/DeploymentResumed when `spec.paused`
    /// changes (`checkPausedConditions`).
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress::progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut s = self.d.status.clone().unwrap_or_default();
        let reason = progress::get(&s, "Progressing").and_then(|c| c.reason.clone());
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let c = if paused && reason.as_deref() != Some(progress::PAUSED) {
            progress::condition(
                "Progressing",
                "Unknown",
                progress::PAUSED,
                "Deployment is paused".into(),
            )
        } else if !paused && reason.as_deref() == Some(progress::PAUSED) {
            progress::condition(
                "Progressing",
                "Unknown",
                progress::RESUMED,
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        progress::set(&mut s, c);
        self.write_status(s).await
    }

    /// Finds the ReplicaSet whose template is the deployment's, oldest first
    /// (`FindNewReplicaSet`).
    fn find_new(&mut self) {
        let t = util::template(&self.d);
        let mut idx: Vec<usize> = (0..self.rss.len()).collect();
        idx.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        self.new = idx.into_iter().find(|i| {
            self.rss[*i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|rt| util::equal_ignore_hash(rt, &t))
        });
    }

    /// Finds (or, with `create`, creates) the new ReplicaSet and keeps its and the
    /// deployment's revision current (`getAllReplicaSetsAndSyncRevision`).
    pub(crate) async fn get_all_and_sync_revision(&mut self, create: bool) -> Result<(), Error> {
        self.find_new();
        let max_old = util::max_revision(self.old().into_iter().map(|i| &self.rss[i]));
        let new_revision = max_old + 1;
        if let Some(i) = self.new {
            let mut copy = self.rss[i].clone();
            let changed = util::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if changed || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                self.rss[i] = self
                    .rs_api()
                    .replace(&copy.name_any(), &PostParams::default(), &copy)
                    .await
                    .map_err(api_err(format!("updating ReplicaSet {}", copy.name_any())))?;
                return Ok(());
            }
            let rev = util::annotation(&copy.metadata, util::REVISION)
                .unwrap_or("")
                .to_string();
            let annotations_changed = self.set_revision(&rev);
            let mut s = self.d.status.clone().unwrap_or_default();
            if progress::progress_deadline(&self.d).is_some()
                && progress::get(&s, "Progressing").is_none()
            {
                let msg = format!("Found new replica set \"{}\"", copy.name_any());
                progress::set(
                    &mut s,
                    progress::condition("Progressing", "True", progress::FOUND_NEW_RS, msg),
                );
            }
            if annotations_changed {
                self.write_annotations_and_status(s).await?;
            } else {
                self.write_status(s).await?;
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        self.create_new_rs(new_revision).await
    }

    /// Sets the deployment's revision annotation; true when it changed.
    fn set_revision(&mut self, rev: &str) -> bool {
        let a = self
            .d
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        if a.get(util::REVISION).map(String::as_str) == Some(rev) {
            return false;
        }
        a.insert(util::REVISION.into(), rev.into());
        true
    }

    async fn create_new_rs(&mut self, new_revision: i64) -> Result<(), Error> {
        let mut template = util::template(&self.d);
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::compute_hash(&template, collision);
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let mut selector: MetaSelector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(util::HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{}", self.name(), hash);
        let all = self.all();
        let replicas = util::new_rs_new_replicas(&self.d, &all, 0);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                owner_references: Some(vec![controller_ref(&self.d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let (created, existed) = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(c) => (c, false),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let found = self
                    .rs_api()
                    .get(&name)
                    .await
                    .map_err(api_err(format!("reading ReplicaSet {name}")))?;
                let ours = controller_of(&found.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &util::template(&self.d)));
                if !(ours && same) {
                    let mut st = self.d.status.clone().unwrap_or_default();
                    st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                    tracing::debug!(replicaset = %name, "pod-template hash collision");
                    self.write_status(st).await?;
                    return Err(Error::Invalid(format!(
                        "replicasets.apps \"{name}\" already exists"
                    )));
                }
                (found, true)
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set \"{name}\": {}",
                    api_message(&e)
                );
                if progress::progress_deadline(&self.d).is_some() {
                    let mut st = self.d.status.clone().unwrap_or_default();
                    progress::set(
                        &mut st,
                        progress::condition(
                            "Progressing",
                            "False",
                            progress::FAILED_RS_CREATE,
                            msg.clone(),
                        ),
                    );
                    let _ = self.write_status(st).await;
                }
                self.event(EventType::Warning, progress::FAILED_RS_CREATE, msg)
                    .await;
                return Err(Error::Api {
                    context: format!("creating ReplicaSet {name}"),
                    source: e,
                });
            }
        };
        if !existed && replicas > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            )
            .await;
        }
        let uid = created.metadata.uid.clone();
        match self.rss.iter().position(|r| r.metadata.uid == uid) {
            Some(i) => {
                self.rss[i] = created;
                self.new = Some(i);
            }
            None => {
                self.rss.push(created);
                self.new = Some(self.rss.len() - 1);
            }
        }
        let annotations_changed = self.set_revision(&new_revision.to_string());
        let mut st = self.d.status.clone().unwrap_or_default();
        if !existed && progress::progress_deadline(&self.d).is_some() {
            let msg = format!("Created new replica set \"{name}\"");
            progress::set(
                &mut st,
                progress::condition("Progressing", "True", progress::NEW_RS_CREATED, msg),
            );
        }
        if annotations_changed {
            self.write_annotations_and_status(st).await
        } else {
            self.write_status(st).await
        }
    }

    /// Scales `rss[i]` to `n` unless it is there already; records the event
    /// (`scaleReplicaSetAndRecordEvent`). True when the size changed.
    pub(crate) async fn scale_rs(&mut self, i: usize, n: i32) -> Result<bool, Error> {
        if util::rs_replicas(&self.rss[i]) == n {
            return Ok(false);
        }
        self.scale_rs_always(i, n).await
    }

    /// `scaleReplicaSet`: writes the size and the replicas annotations if either differs.
    async fn scale_rs_always(&mut self, i: usize, n: i32) -> Result<bool, Error> {
        let mut rs = self.rss[i].clone();
        let old = util::rs_replicas(&rs);
        let size_changed = old != n;
        let desired = util::replicas(&self.d);
        let annotations_changed =
            util::set_replicas_annotations(&mut rs, desired, desired + util::max_surge(&self.d));
        if !size_changed && !annotations_changed {
            return Ok(false);
        }
        rs.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(n);
        let name = rs.name_any();
        self.rss[i] = self
            .rs_api()
            .replace(&name, &PostParams::default(), &rs)
            .await
            .map_err(api_err(format!("scaling ReplicaSet {name}")))?;
        if size_changed {
            let op = if old < n { "up" } else { "down" };
            tracing::debug!(replicaset = %name, from = old, to = n, "scaling");
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {old} to {n}"),
            )
            .await;
        }
        Ok(size_changed)
    }

    /// Whether `spec.replicas` differs from what an active ReplicaSet was last
    /// scaled for (`isScalingEvent`).
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        self.get_all_and_sync_revision(false).await?;
        let desired = util::replicas(&self.d).to_string();
        Ok(self
            .rss
            .iter()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .any(|rs| {
                util::annotation(&rs.metadata, util::DESIRED_REPLICAS).is_some_and(|v| v != desired)
            }))
    }

    /// Scaling without a rollout (paused, or only `spec.replicas` changed) (`sync`).
    pub(crate) async fn sync_scaling(&mut self) -> Result<(), Error> {
        self.get_all_and_sync_revision(false).await?;
        self.scale().await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            self.cleanup().await?;
        }
        let s = progress::calculate(&self.all(), self.new_rs(), &self.d);
        self.write_status(s).await
    }

    /// `scale`: one active ReplicaSet takes the whole size; a saturated new one
    /// retires the old ones; otherwise the difference is shared in proportion.
    async fn scale(&mut self) -> Result<(), Error> {
        let desired = util::replicas(&self.d);
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|i| util::rs_replicas(&self.rss[*i]) > 0)
            .collect();
        let active_or_latest = match active.len() {
            1 => Some(active[0]),
            0 => self.new.or_else(|| {
                let mut old = self.old();
                old.sort_by(|a, b| by_creation(&self.rss[*b], &self.rss[*a]));
                old.first().copied()
            }),
            _ => None,
        };
        if let Some(i) = active_or_latest {
            if util::rs_replicas(&self.rss[i]) != desired {
                self.scale_rs(i, desired).await?;
            }
            return Ok(());
        }
        if self.saturated() {
            for i in self.old() {
                self.scale_rs(i, 0).await?;
            }
            return Ok(());
        }
        if !util::is_rolling(&self.d) {
            return Ok(());
        }
        let current: i32 = active
            .iter()
            .map(|i| util::rs_replicas(&self.rss[*i]))
            .sum();
        let allowed = if desired > 0 {
            desired + util::max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        let mut order = active.clone();
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            let size = util::rs_replicas(rb).cmp(&util::rs_replicas(ra));
            size.then_with(|| {
                if to_add > 0 {
                    by_creation(rb, ra)
                } else {
                    by_creation(ra, rb)
                }
            })
        });
        let mut sizes = Vec::new();
        let mut added = 0;
        for i in &order {
            let p = if to_add != 0 {
                util::proportion(&self.rss[*i], &self.d, to_add, added)
            } else {
                0
            };
            sizes.push(util::rs_replicas(&self.rss[*i]) + p);
            added += p;
        }
        for (k, i) in order.iter().enumerate() {
            let mut n = sizes[k];
            if k == 0 && to_add != 0 {
                n = (n + to_add - added).max(0);
            }
            self.scale_rs_always(*i, n).await?;
        }
        Ok(())
    }

    /// The new ReplicaSet has all replicas, all available (`IsSaturated`).
    fn saturated(&self) -> bool {
        let Some(rs) = self.new_rs() else {
            return false;
        };
        let desired = util::replicas(&self.d);
        util::rs_replicas(rs) == desired
            && util::annotation(&rs.metadata, util::DESIRED_REPLICAS)
                == Some(desired.to_string().as_str())
            && util::rs_available(rs) == desired
    }

    /// Deletes the oldest ReplicaSets beyond `revisionHistoryLimit` that have no
    /// pods left (`cleanupDeployment`).
    pub(crate) async fn cleanup(&mut self) -> Result<(), Error> {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut cleanable: Vec<usize> = self
            .old()
            .into_iter()
            .filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            util::revision(ra)
                .cmp(&util::revision(rb))
                .then_with(|| by_creation(ra, rb))
        });
        for i in cleanable.into_iter().take(diff as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if util::rs_actual(rs) != 0
                || util::rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.name_any();
            tracing::debug!(replicaset = %name, "deleting old ReplicaSet beyond revisionHistoryLimit");
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(Error::Api {
                        context: format!("deleting ReplicaSet {name}"),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the rollout status and schedules a deadline check (`syncRolloutStatus`).
    pub(crate) async fn sync_rollout_status(&mut self) -> Result<(), Error> {
        let s = progress::rollout_status(&self.all(), self.new_rs(), &self.d);
        if self.d.status.as_ref() == Some(&s) {
            self.recheck = progress::recheck_after(&self.d, &s);
            return Ok(());
        }
        self.write_status(s).await?;
        let s = self.d.status.clone().unwrap_or_default();
        self.recheck = progress::recheck_after(&self.d, &s);
        Ok(())
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
