//! Field selectors: parsing with escapes, printing, matching, and errors.

use std::collections::BTreeMap;

use api::selector::{FieldOperator, FieldSelector, SelectorError, escape_value, unescape_value};

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn terms_are_sorted_and_printed_with_single_equals() {
    let sel =
        FieldSelector::parse("status.phase!=Failed,metadata.name==web,spec.nodeName=n1").unwrap();
    assert_eq!(
        sel.to_string(),
        "metadata.name=web,spec.nodeName=n1,status.phase!=Failed"
    );
    assert_eq!(
        sel.fields(),
        ["metadata.name", "spec.nodeName", "status.phase"]
    );
    assert_eq!(sel.requirements()[2].operator, FieldOperator::NotEquals);
}

#[test]
fn good_selectors_parse() {
    for s in [
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        r"x=a||y\=b",
        r"x=a\=\=b",
        "a=a,",
        ",a=a",
    ] {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

#[test]
fn escaped_commas_and_equals_stay_in_the_value() {
    // Terms sort as raw strings: `k2=v2` comes before `k=\,`.
    let sel = FieldSelector::parse(r"k=\,,k2=v2").unwrap();
    assert_eq!(sel.requirements()[1].value, ",");
    assert_eq!(sel.to_string(), r"k2=v2,k=\,");
    let sel = FieldSelector::parse(r"k=\\\,,k2=v2").unwrap();
    assert_eq!(sel.requirements()[1].value, r"\,");
    let sel = FieldSelector::parse(r"x=a\=\=b").unwrap();
    assert_eq!(sel.requirements()[0].value, "a==b");
    let sel = FieldSelector::parse("함=수,목=록").unwrap();
    assert_eq!(sel.fields(), ["목", "함"]);
}

#[test]
fn escaping_round_trips() {
    for (plain, escaped) in [
        ("", ""),
        ("a", "a"),
        ("=", r"\="),
        (",", r"\,"),
        (r"\", r"\\"),
        (r"\=\,\", r"\\\=\\\,\\"),
    ] {
        assert_eq!(escape_value(plain), escaped);
        assert_eq!(unescape_value(escaped).unwrap(), plain);
    }
}

#[test]
fn bad_escapes_are_reported_like_kubernetes() {
    assert_eq!(
        unescape_value(r"\a").unwrap_err().to_string(),
        r"invalid field selector: invalid escape sequence: \a"
    );
    assert_eq!(
        unescape_value(r"\\\").unwrap_err().to_string(),
        r"invalid field selector: invalid escape sequence: \"
    );
    assert_eq!(
        FieldSelector::parse("a=b=c").unwrap_err().to_string(),
        "invalid field selector: unescaped character in value: 61"
    );
}

#[test]
fn a_term_without_operator_is_reported_with_the_whole_selector() {
    assert_eq!(
        FieldSelector::parse("a=b,c").unwrap_err(),
        SelectorError::FieldSyntax {
            selector: "a=b,c".into(),
            term: "c".into()
        }
    );
    assert_eq!(
        FieldSelector::parse("a=b,c").unwrap_err().to_string(),
        "invalid selector: 'a=b,c'; can't understand 'c'"
    );
}

#[test]
fn a_missing_field_reads_as_empty() {
    let sel = FieldSelector::parse("spec.nodeName=").unwrap();
    assert!(sel.matches_map(&fields(&[])));
    let sel = FieldSelector::parse("spec.nodeName!=").unwrap();
    assert!(!sel.matches(&|_| None));
    assert!(sel.matches(&|f| (f == "spec.nodeName").then(|| "n1".to_string())));
}

#[test]
fn every_term_must_match() {
    let sel = FieldSelector::parse("metadata.namespace=default,status.phase!=Succeeded").unwrap();
    assert!(sel.matches_map(&fields(&[
        ("metadata.namespace", "default"),
        ("status.phase", "Running")
    ])));
    assert!(!sel.matches_map(&fields(&[
        ("metadata.namespace", "default"),
        ("status.phase", "Succeeded")
    ])));
    assert!(!sel.matches_map(&fields(&[("metadata.namespace", "kube-system")])));
    assert_eq!(
        sel.requires_exact_match("metadata.namespace"),
        Some("default")
    );
    assert_eq!(sel.requires_exact_match("status.phase"), None);
}

#[test]
fn empty_terms_select_everything() {
    assert!(FieldSelector::parse("").unwrap().is_empty());
    assert!(FieldSelector::parse(",").unwrap().is_empty());
    assert!(FieldSelector::parse("=").unwrap().is_empty());
}

#[test]
fn transform_rewrites_and_drops_terms() {
    let sel = FieldSelector::parse("name=a,spec.host=n1").unwrap();
    let out = sel
        .transform(|f, v| -> Result<_, ()> {
            Ok(match f {
                "name" => ("metadata.name".into(), v.into()),
                _ => (String::new(), String::new()),
            })
        })
        .unwrap();
    assert_eq!(out.to_string(), "metadata.name=a");
}
