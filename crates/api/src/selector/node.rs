//! Node selectors (`nodeSelectorTerms` of node affinity and of PersistentVolumes'
//! `nodeAffinity`) matched against a node's labels and name, as Kubernetes'
//! `component-helpers/scheduling/corev1/nodeaffinity` does: operators In, NotIn,
//! Exists, DoesNotExist, Gt, Lt; `matchFields` only on `metadata.name`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

/// Whether one requirement holds for the label (or field) `value`.
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if op == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether one node selector term matches (all expressions and fields; an empty
/// term matches nothing).
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether a node selector (its terms ORed) matches.
pub fn selector_matches(sel: &NodeSelector, labels: &BTreeMap<String, String>, name: &str) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn term(v: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(v).expect("term")
    }

    fn labels() -> BTreeMap<String, String> {
        [("zone", "a"), ("cores", "8")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() {
        let l = labels();
        let ok =
            |e: serde_json::Value| term_matches(&term(json!({"matchExpressions": [e]})), &l, "n1");
        assert!(ok(
            json!({"key": "zone", "operator": "In", "values": ["a", "b"]})
        ));
        assert!(!ok(
            json!({"key": "zone", "operator": "NotIn", "values": ["a"]})
        ));
        assert!(ok(
            json!({"key": "missing", "operator": "NotIn", "values": ["a"]})
        ));
        assert!(ok(json!({"key": "zone", "operator": "Exists"})));
        assert!(ok(json!({"key": "missing", "operator": "DoesNotExist"})));
        assert!(ok(
            json!({"key": "cores", "operator": "Gt", "values": ["4"]})
        ));
        assert!(!ok(
            json!({"key": "cores", "operator": "Lt", "values": ["4"]})
        ));
        assert!(!ok(
            json!({"key": "zone", "operator": "Gt", "values": ["4"]})
        ));
        // Gt and Lt take exactly one value.
        assert!(!ok(
            json!({"key": "cores", "operator": "Gt", "values": ["4", "5"]})
        ));
    }

    #[test]
    fn match_fields_select_the_node_by_name_and_empty_terms_match_nothing() {
        let l = labels();
        let t = term(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
        );
        assert!(term_matches(&t, &l, "n1"));
        assert!(!term_matches(&t, &l, "n2"));
        assert!(!term_matches(&term(json!({})), &l, "n1"));
        let other = term(
            json!({"matchFields": [{"key": "metadata.uid", "operator": "NotIn", "values": ["x"]}]}),
        );
        assert!(
            !term_matches(&other, &l, "n1"),
            "only metadata.name is a field"
        );
    }

    #[test]
    fn a_selector_matches_when_any_of_its_terms_does() {
        let sel: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        ]}))
        .expect("selector");
        assert!(selector_matches(&sel, &labels(), "n1"));
        let none: NodeSelector =
            serde_json::from_value(json!({"nodeSelectorTerms": []})).expect("selector");
        assert!(!selector_matches(&none, &labels(), "n1"));
    }
}
