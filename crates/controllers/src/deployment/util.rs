//! Deployment arithmetic and bookkeeping (Kubernetes' `deployment/util`): the
//! pod-template hash, revisions and the annotations that carry them, maxSurge and
//! maxUnavailable, how many replicas the new ReplicaSet may have, and proportional
//! shares when a deployment is resized mid-rollout.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
/// The revision of a ReplicaSet, and of the Deployment (its newest).
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (after rollbacks).
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The deployment's replicas when the ReplicaSet was last scaled.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The deployment's replicas plus maxSurge when the ReplicaSet was last scaled.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The deprecated rollback request (`extensions/v1beta1` rollback).
pub(crate) const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// `--deployment-controller`'s limit on the revision-history annotation.
const MAX_REV_HISTORY_CHARS: usize = 2000;

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `rand.SafeEncodeString`: each byte mapped into consonants and digits that never
/// spell words.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The pod-template hash (`controller.ComputeHash`): FNV-32a over the template and
/// the collision count (as 8 little-endian bytes), printed in decimal and safely
/// encoded. Kubernetes feeds the hash with a Go-specific dump of the struct; Skiff
/// feeds it the template's JSON, so names have Kubernetes' shape (`web-7d4b9c8f6d`)
/// but not the same letters for the same template.
pub(crate) fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(&buf, h);
    }
    safe_encode(&h.to_string())
}

/// Drops nulls, empty maps and empty lists, as Kubernetes' semantic equality
/// treats them as absent.
fn normalize(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => {
            m.retain(|_, v| normalize(v));
            !m.is_empty()
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                normalize(x);
            }
            !a.is_empty()
        }
        _ => true,
    }
}

fn without_hash(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
    normalize(&mut v);
    v
}

/// Templates equal apart from the hash label (`EqualIgnoreHash`).
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The template of `d`.
pub(crate) fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// `spec.replicas` of `d` (default 1).
pub(crate) fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of `rs`.
pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.replicas` of `rs`.
pub(crate) fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// `status.availableReplicas` of `rs`.
pub(crate) fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// `status.readyReplicas` of `rs`.
pub(crate) fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// An annotation of an object.
pub(crate) fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision of `rs` (0 when absent or unparsable).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The highest revision among `rss`.
pub(crate) fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().map(revision).max().unwrap_or(0)
}

/// Whether the strategy is RollingUpdate (the default).
pub(crate) fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// An int or a percentage of `total` (`GetScaledValueFromIntOrPercent`).
pub(crate) fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let x = p * i64::from(total);
            Ok(if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            } as i32)
        }
    }
}

/// maxSurge and maxUnavailable resolved against `spec.replicas`
/// (`ResolveFenceposts`): surge rounds up, unavailable down; both zero becomes
/// unavailable 1.
pub(crate) fn fenceposts(d: &Deployment) -> (i32, i32) {
    let desired = replicas(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct25 = IntOrString::String("25%".into());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(pct25.clone());
    let unavailable = ru.and_then(|r| r.max_unavailable.clone()).unwrap_or(pct25);
    let s = scaled_value(&surge, desired, true).unwrap_or(0);
    let u = scaled_value(&unavailable, desired, false).unwrap_or(0);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

/// maxSurge as a count (0 unless rolling).
pub(crate) fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// maxUnavailable as a count, at most `spec.replicas` (0 unless rolling).
pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if !is_rolling(d) || r == 0 {
        return 0;
    }
    fenceposts(d).1.min(r)
}

/// The replicas the new ReplicaSet should have now (`NewRSNewReplicas`).
pub(crate) fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(replicas(d) - new_replicas);
    new_replicas + up
}

/// Sets the desired/max replicas annotations; true when they changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let (d, m) = (desired.to_string(), max.to_string());
    if a.get(DESIRED_REPLICAS) == Some(&d) && a.get(MAX_REPLICAS) == Some(&m) {
        return false;
    }
    a.insert(DESIRED_REPLICAS.into(), d);
    a.insert(MAX_REPLICAS.into(), m);
    true
}

fn skip_copy(k: &str) -> bool {
    matches!(
        k,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Copies the deployment's annotations (not the controller's own) onto the new
/// ReplicaSet and raises its revision to `new_revision`, remembering the old one
/// in the revision history (`SetNewReplicaSetAnnotations`). True when changed.
pub(crate) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned();
    let old_n: i64 = match &old {
        None => 0,
        Some(s) => match s.parse() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_n < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                a.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut revs: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < revs.len() {
                    total -= revs[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    revs = revs.split_off(start);
                    revs.push(&old);
                    let joined = revs.join(",");
                    a.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// The change in size `rs` should get when the deployment adds `to_add` replicas in
/// total, `added` of them already given out (`GetProportion`).
pub(crate) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`: the rs's share of the new size, relative to the size it
/// was scaled for (the max-replicas annotation).
fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotation(&rs.metadata, MAX_REPLICAS)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}}
        }))
        .expect("deployment")
    }

    #[test]
    fn the_hash_looks_like_kubernetes_and_changes_with_collisions() {
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let d = deployment(3, json!(1), json!(0));
        let h = compute_hash(&template(&d), None);
        assert!(
            (1..=10).contains(&h.len())
                && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
        assert_eq!(h, compute_hash(&template(&d), None));
        assert_ne!(h, compute_hash(&template(&d), Some(1)));
    }

    #[test]
    fn surge_rounds_up_unavailable_rounds_down_and_both_zero_means_one_unavailable() {
        assert_eq!(
            fenceposts(&deployment(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(fenceposts(&deployment(3, json!(1), json!(0))), (1, 0));
        assert_eq!(
            fenceposts(&deployment(1, json!("0%"), json!("25%"))),
            (0, 1)
        );
        assert_eq!(max_unavailable(&deployment(2, json!(0), json!(5))), 2);
    }

    #[test]
    fn the_new_replicaset_grows_within_max_surge() {
        let d = deployment(3, json!(1), json!(0));
        let mut old: ReplicaSet = serde_json::from_value(
            json!({"metadata": {"name": "old"}, "spec": {"replicas": 3, "selector": {}}}),
        )
        .expect("rs");
        let mut new: ReplicaSet = serde_json::from_value(
            json!({"metadata": {"name": "new"}, "spec": {"replicas": 0, "selector": {}}}),
        )
        .expect("rs");
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 0), 1);
        // 3 old + 1 new is the surge limit: wait for old pods to go.
        new.spec.as_mut().expect("spec").replicas = Some(1);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 1), 1);
        old.spec.as_mut().expect("spec").replicas = Some(2);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 1), 2);
    }

    #[test]
    fn templates_equal_apart_from_the_hash_label() {
        let d = deployment(3, json!(1), json!(0));
        let mut t = template(&d);
        t.metadata
            .as_mut()
            .expect("meta")
            .labels
            .as_mut()
            .expect("labels")
            .insert(HASH_LABEL.into(), "abc".into());
        assert!(equal_ignore_hash(&t, &template(&d)));
    }

    #[test]
    fn a_rolled_back_replicaset_keeps_its_old_revision_in_history() {
        let d = deployment(3, json!(1), json!(0));
        let mut rs: ReplicaSet = serde_json::from_value(
            json!({"metadata": {"name": "rs", "annotations": {REVISION: "1"}}}),
        )
        .expect("rs");
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        let a = rs.metadata.annotations.expect("annotations");
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
    }

    #[test]
    fn proportional_scaling_follows_the_max_replicas_annotation() {
        let d = deployment(20, json!(3), json!(2));
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs", "annotations": {MAX_REPLICAS: "13"}}, "spec": {"replicas": 5, "selector": {}}})).expect("rs");
        // 5 * 23 / 13 = 8.8 -> 9: four more.
        assert_eq!(proportion(&rs, &d, 10, 0), 4);
    }
}
