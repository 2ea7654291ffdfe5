//! Properties of selector parsing and printing.

use std::collections::BTreeMap;

use api::selector::{FieldSelector, LabelSelector, escape_value, unescape_value};
use proptest::prelude::*;

fn arb_key() -> impl Strategy<Value = String> {
    "([a-z]{1,5}\\.)?[a-z]{1,5}/[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?|[a-z][a-z0-9]{0,6}"
}

fn arb_value() -> impl Strategy<Value = String> {
    "([A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?)?"
}

/// Set values are never empty here: Kubernetes' parser rejects `(,,)`.
fn arb_set_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?"
}

fn arb_requirement() -> impl Strategy<Value = String> {
    (
        arb_key(),
        arb_value(),
        prop::collection::vec(arb_set_value(), 1..4),
        0..7usize,
    )
        .prop_map(|(k, v, vs, op)| match op {
            0 => format!("{k}={v}"),
            1 => format!("{k}=={v}"),
            2 => format!("{k}!={v}"),
            3 => format!("{k} in ({})", vs.join(",")),
            4 => format!("{k} notin ({})", vs.join(",")),
            5 => k,
            _ => format!("!{k}"),
        })
}

proptest! {
    // No regression files in the tree; failures print their minimal input.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn printed_label_selectors_parse_back_to_the_same_selector(
        reqs in prop::collection::vec(arb_requirement(), 0..5),
        labels in prop::collection::btree_map(arb_key(), arb_value(), 0..5),
    ) {
        let sel = LabelSelector::parse(&reqs.join(",")).unwrap();
        let printed = sel.to_string();
        let again = LabelSelector::parse(&printed).unwrap();
        prop_assert_eq!(again.to_string(), printed);
        let labels: BTreeMap<String, String> = labels;
        prop_assert_eq!(again.matches(&labels), sel.matches(&labels));
    }

    #[test]
    fn label_selector_parsing_never_panics(s in "[ -~]{0,40}") {
        let _ = LabelSelector::parse(&s);
    }

    #[test]
    fn field_values_escape_and_unescape_to_themselves(s in "\\PC{0,20}") {
        prop_assert_eq!(unescape_value(&escape_value(&s)).unwrap(), s);
    }

    #[test]
    fn printed_field_selectors_parse_back(
        terms in prop::collection::vec(("[a-z.]{1,10}", "\\PC{0,8}", any::<bool>()), 0..4),
    ) {
        let text: Vec<String> = terms
            .iter()
            .map(|(f, v, ne)| format!("{f}{}{}", if *ne { "!=" } else { "=" }, escape_value(v)))
            .collect();
        let sel = FieldSelector::parse(&text.join(",")).unwrap();
        let again = FieldSelector::parse(&sel.to_string()).unwrap();
        prop_assert_eq!(again, sel);
    }

    #[test]
    fn field_selector_parsing_never_panics(s in "\\PC{0,40}") {
        let _ = FieldSelector::parse(&s);
    }
}
