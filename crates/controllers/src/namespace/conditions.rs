//! The status conditions of a terminating namespace, as Kubernetes' namespace
//! controller writes them (`NamespaceDeletionDiscoveryFailure`,
//! `NamespaceDeletionGroupVersionParsingFailure`, `NamespaceDeletionContentFailure`,
//! `NamespaceContentRemaining`, `NamespaceFinalizersRemaining`).

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::content::Summary;

fn cond(ty: &str, failing: bool, reason: (&str, &str), message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: ty.into(),
        status: if failing { "True" } else { "False" }.into(),
        reason: Some(if failing { reason.0 } else { reason.1 }.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

fn join(m: &std::collections::BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} has {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The five deletion conditions for a pass; `discovery_error` when discovery failed.
pub(crate) fn conditions(
    summary: &Summary,
    discovery_error: Option<&str>,
) -> Vec<NamespaceCondition> {
    let failures: Vec<String> = summary
        .failures
        .iter()
        .map(|(r, e)| format!("{r}: {e}"))
        .collect();
    vec![
        cond(
            "NamespaceDeletionDiscoveryFailure",
            discovery_error.is_some(),
            ("DiscoveryFailed", "ResourcesDiscovered"),
            match discovery_error {
                Some(e) => format!("Discovery failed for some groups, 1 failing: {e}"),
                None => "All resources successfully discovered".into(),
            },
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            ("GroupVersionParsingFailed", "ParsedGroupVersions"),
            "All legacy kube types successfully parsed".into(),
        ),
        cond(
            "NamespaceDeletionContentFailure",
            !failures.is_empty(),
            ("ContentDeletionFailed", "ContentDeleted"),
            if failures.is_empty() {
                "All content successfully deleted, may be waiting on finalization".into()
            } else {
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    failures.len(),
                    failures.join(", ")
                )
            },
        ),
        cond(
            "NamespaceContentRemaining",
            !summary.remaining.is_empty(),
            ("SomeResourcesRemain", "ContentRemoved"),
            if summary.remaining.is_empty() {
                "All content successfully removed".into()
            } else {
                format!("Some resources are remaining: {}", join(&summary.remaining))
            },
        ),
        cond(
            "NamespaceFinalizersRemaining",
            !summary.finalizers.is_empty(),
            ("SomeFinalizersRemain", "ContentHasNoFinalizers"),
            if summary.finalizers.is_empty() {
                "All content-preserving finalizers finished".into()
            } else {
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    join(&summary.finalizers).replace(" has ", " in ")
                )
            },
        ),
    ]
}

/// `wanted` merged into `current`: transition times kept where the status did not
/// change. `None` when nothing changes.
pub(crate) fn merge(
    current: &[NamespaceCondition],
    wanted: Vec<NamespaceCondition>,
) -> Option<Vec<NamespaceCondition>> {
    let mut out: Vec<NamespaceCondition> = current
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    let mut changed = false;
    for mut w in wanted {
        match current.iter().find(|c| c.type_ == w.type_) {
            Some(c) if c.status == w.status && c.reason == w.reason && c.message == w.message => {
                out.push(c.clone());
            }
            Some(c) if c.status == w.status => {
                w.last_transition_time = c.last_transition_time.clone();
                changed = true;
                out.push(w);
            }
            _ => {
                w.last_transition_time = Some(Time(Timestamp::now()));
                changed = true;
                out.push(w);
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_content_is_reported_like_kubernetes() {
        let mut s = Summary::default();
        s.remaining.insert("configmaps.".into(), 2);
        s.finalizers.insert("example.com/hold".into(), 1);
        let c = conditions(&s, None);
        let remaining = c
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .expect("cond");
        assert_eq!(remaining.status, "True");
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        let fin = c
            .iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining")
            .expect("cond");
        assert_eq!(
            fin.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        let merged = merge(&[], c.clone()).expect("changes");
        assert_eq!(merge(&merged, c), None);
    }
}
