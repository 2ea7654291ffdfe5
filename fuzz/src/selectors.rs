//! Label and field selectors, as they arrive in `labelSelector=` and
//! `fieldSelector=` query parameters and in objects' `metav1.LabelSelector`s.

use std::collections::BTreeMap;

use api::k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use api::selector::{FieldSelector, LabelSelector, escape_value, unescape_value};

/// A label selector string parses, prints and parses back to the same selector;
/// a `metav1.LabelSelector` converts to one whose printed form selects the same.
pub fn label_selector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match LabelSelector::parse(&text) {
        Ok(selector) => {
            let printed = selector.to_string();
            let reparsed = LabelSelector::parse(&printed).unwrap_or_else(|e| {
                panic!("{printed:?}, printed from {text:?}, does not parse: {e}")
            });
            assert_eq!(reparsed, selector, "{text:?} printed as {printed:?}");
            assert_eq!(reparsed.to_string(), printed, "printing is not stable");
            for labels in label_sets(&selector) {
                let exact = selector.requirements().iter().take(16).all(|r| {
                    selector
                        .requires_exact_match(r.key())
                        .is_none_or(|v| labels.get(r.key()).is_some_and(|have| have == v))
                });
                if !exact {
                    assert!(
                        !selector.matches(&labels),
                        "{text:?} matches {labels:?} without its exact value"
                    );
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "empty error for {text:?}"),
    }

    let Ok(meta) = serde_json::from_slice::<metav1::LabelSelector>(data) else {
        return;
    };
    let Ok(selector) = LabelSelector::from_label_selector(&meta) else {
        return;
    };
    let printed = selector.to_string();
    let reparsed = LabelSelector::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {meta:?}, does not parse: {e}"));
    for labels in label_sets(&selector) {
        assert_eq!(
            reparsed.matches(&labels),
            selector.matches(&labels),
            "{meta:?} printed as {printed:?} disagrees on {labels:?}"
        );
    }
}

/// Label sets that exercise each requirement: none, each key with each of its
/// values or with another value, and every key with its first value.
fn label_sets(selector: &LabelSelector) -> Vec<BTreeMap<String, String>> {
    let mut sets = vec![BTreeMap::new()];
    let mut all = BTreeMap::new();
    for r in selector.requirements().iter().take(16) {
        for v in r
            .values()
            .iter()
            .take(4)
            .chain(std::iter::once(&"0".to_owned()))
        {
            sets.push(BTreeMap::from([(r.key().to_owned(), v.clone())]));
        }
        let first = r.values().first().cloned().unwrap_or_default();
        all.insert(r.key().to_owned(), first);
    }
    sets.push(all);
    sets
}

/// A field selector parses, prints and parses back to the same terms; escaping
/// any value and unescaping it gives the value back.
pub fn field_selector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    assert_eq!(
        unescape_value(&escape_value(&text)).as_deref(),
        Ok(text.as_ref()),
        "escape/unescape of {text:?}"
    );
    let selector = match FieldSelector::parse(&text) {
        Ok(selector) => selector,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "empty error for {text:?}");
            return;
        }
    };
    let printed = selector.to_string();
    let reparsed = FieldSelector::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    // Terms are sorted by their source text, so the order may change; the set may not.
    let terms = |s: &FieldSelector| {
        let mut t: Vec<String> = s.requirements().iter().map(ToString::to_string).collect();
        t.sort();
        t
    };
    assert_eq!(
        terms(&reparsed),
        terms(&selector),
        "{text:?} printed as {printed:?}"
    );
    let fields: BTreeMap<String, String> = selector
        .requirements()
        .iter()
        .map(|r| (r.field.clone(), r.value.clone()))
        .collect();
    // The first few terms only: each check is linear, so all of them would make
    // the harness quadratic in the input.
    for r in selector.requirements().iter().take(16) {
        if let Some(v) = selector.requires_exact_match(&r.field) {
            let mut other = fields.clone();
            other.insert(r.field.clone(), format!("{v}-other"));
            assert!(
                !selector.matches_map(&other),
                "{text:?} ignores {}",
                r.field
            );
        }
    }
}
