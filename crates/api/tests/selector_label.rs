//! Label selectors: parsing, printing, matching and Kubernetes' error messages.

use std::collections::BTreeMap;

use api::k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use api::selector::{LabelSelector, Operator, Requirement, SelectorError};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_err(s: &str) -> String {
    LabelSelector::parse(s)
        .expect_err(&format!("{s:?} should not parse"))
        .to_string()
}

const LABEL_VALUE_HINT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_HINT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn good_selectors_print_back_without_spaces() {
    for s in [
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        "x=",
        "x= ",
        "x=,z= ",
        "x= ,z= ",
        "!x",
        "x>1",
        "x>1,z<5",
        "x==a",
    ] {
        let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(sel.to_string(), s.replace(' ', ""), "{s}");
    }
}

#[test]
fn set_based_values_are_sorted_and_deduplicated() {
    let sel = LabelSelector::parse("z notin (),x in (foo,,baz,foo),y").unwrap();
    assert_eq!(sel.to_string(), "x in (,baz,foo),y,z notin ()");
    assert_eq!(sel.requirements()[0].values(), ["", "baz", "foo"]);
    assert_eq!(sel.requirements()[0].operator(), Operator::In);
}

#[test]
fn parsing_is_deterministic_by_key() {
    assert_eq!(
        LabelSelector::parse("x=a,a=x").unwrap().to_string(),
        LabelSelector::parse("a=x,x=a").unwrap().to_string()
    );
}

#[test]
fn in_and_notin_are_values_after_an_operator() {
    let sel = LabelSelector::parse("notin=in").unwrap();
    assert!(sel.matches(&labels(&[("notin", "in")])));
    let sel = LabelSelector::parse("x in (in,notin)").unwrap();
    assert!(sel.matches(&labels(&[("x", "notin")])));
}

#[test]
fn selectors_match_like_kubernetes() {
    let yes = |s: &str, l: &[(&str, &str)]| {
        assert!(
            LabelSelector::parse(s).unwrap().matches(&labels(l)),
            "{s} should match {l:?}"
        )
    };
    let no = |s: &str, l: &[(&str, &str)]| {
        assert!(
            !LabelSelector::parse(s).unwrap().matches(&labels(l)),
            "{s} should not match {l:?}"
        )
    };
    yes("", &[("x", "y")]);
    yes("x=y", &[("x", "y")]);
    yes("x=y,z=w", &[("x", "y"), ("z", "w")]);
    yes("x!=y,z!=w", &[("x", "z"), ("z", "a")]);
    yes("x", &[("x", "z")]);
    yes("!x", &[("y", "z")]);
    yes("x>1", &[("x", "2")]);
    yes("x<1", &[("x", "0")]);
    yes("x notin (a)", &[]);
    yes("x!=a", &[]);
    no("x=z", &[]);
    no("x=y", &[("x", "z")]);
    no("x=y,z=w", &[("x", "w"), ("z", "w")]);
    no("x!=y,z!=w", &[("x", "z"), ("z", "w")]);
    no("x", &[("y", "z")]);
    no("!x", &[("x", "z")]);
    no("x>1", &[("x", "0")]);
    no("x>1", &[("x", "a")]);
    no("x<1", &[]);
    no("x in (a,b)", &[("x", "c")]);
}

#[test]
fn an_operator_where_a_key_should_be_is_reported() {
    assert_eq!(
        parse_err(",a"),
        "found ',', expected: !, identifier, or 'end of string'"
    );
    assert_eq!(parse_err("a,"), "found '', expected: identifier after ','");
    assert_eq!(
        parse_err("x=a||y=b"),
        format!(
            "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {LABEL_VALUE_HINT}"
        )
    );
    assert_eq!(
        parse_err("!x=a"),
        "found '=', expected: ',' or 'end of string'"
    );
    assert_eq!(
        parse_err("x==a==b"),
        "found '==', expected: ',' or 'end of string'"
    );
}

#[test]
fn a_missing_operator_is_reported_inside_the_requirement() {
    assert_eq!(
        parse_err("a b"),
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    );
    assert_eq!(
        parse_err("a in"),
        "unable to parse requirement: found '' expected: '('"
    );
    assert_eq!(
        parse_err("a in (b"),
        "unable to parse requirement: found '', expected: ',' or ')'"
    );
    assert_eq!(
        parse_err("a in (=)"),
        "unable to parse requirement: found '=', expected: ',', ')' or identifier"
    );
    assert_eq!(
        parse_err("!!a"),
        "unable to parse requirement: found '!', expected: identifier"
    );
}

#[test]
fn empty_values_in_sets_follow_the_kubernetes_grammar() {
    assert_eq!(
        LabelSelector::parse("x in (,)").unwrap().to_string(),
        "x in ()"
    );
    assert_eq!(
        LabelSelector::parse("x in (,a)").unwrap().to_string(),
        "x in (,a)"
    );
    // Two commas in a row before `)` is an error in Kubernetes too.
    assert_eq!(
        parse_err("x in (,,)"),
        "unable to parse requirement: found ')', expected: ',', or identifier"
    );
}

#[test]
fn an_invalid_key_is_reported_with_a_nil_path() {
    assert_eq!(
        parse_err("-a=b"),
        format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {NAME_PART_HINT}")
    );
    assert_eq!(
        parse_err("a/b/c"),
        "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    );
    let long_key = "k".repeat(64);
    assert!(parse_err(&long_key).contains("name part must be no more than 63 characters"));
}

#[test]
fn an_invalid_value_is_reported_with_its_index_and_key() {
    assert_eq!(
        parse_err("app=b@d"),
        format!(
            "unable to parse requirement: values[0][app]: Invalid value: \"b@d\": {LABEL_VALUE_HINT}"
        )
    );
    let long = "v".repeat(64);
    assert_eq!(
        parse_err(&format!("app={long}")),
        format!(
            "unable to parse requirement: values[0][app]: Invalid value: \"{long}\": must be no more than 63 characters"
        )
    );
    assert_eq!(
        parse_err("x<a"),
        "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
}

#[test]
fn several_invalid_values_are_aggregated_in_brackets() {
    let err = parse_err("app in (-a,b-)");
    assert_eq!(
        err,
        format!(
            "unable to parse requirement: [values[0][app]: Invalid value: \"-a\": {LABEL_VALUE_HINT}, values[1][app]: Invalid value: \"b-\": {LABEL_VALUE_HINT}]"
        )
    );
}

#[test]
fn requirement_new_checks_value_counts() {
    let err = Requirement::new("a", Operator::In, vec![]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    );
    let err = Requirement::new("a", Operator::Exists, vec!["x".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
    );
    let err = Requirement::new("a", Operator::Equals, vec!["x".into(), "y".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "values: Invalid value: []string{\"x\", \"y\"}: exact-match compatibility requires one single value"
    );
}

#[test]
fn an_empty_metav1_selector_matches_everything() {
    let sel = LabelSelector::from_label_selector(&metav1::LabelSelector::default()).unwrap();
    assert!(sel.is_empty());
    assert!(sel.matches(&labels(&[("a", "b")])));
    assert!(sel.matches(&labels(&[])));
}

#[test]
fn a_missing_metav1_selector_matches_nothing() {
    let sel = LabelSelector::from_optional_label_selector(None).unwrap();
    assert!(sel.matches_nothing());
    assert!(!sel.matches(&labels(&[])));
    assert_eq!(sel.to_string(), "");
}

#[test]
fn metav1_selectors_convert_match_labels_and_expressions() {
    let selector = metav1::LabelSelector {
        match_labels: Some([("app".to_string(), "web".to_string())].into()),
        match_expressions: Some(vec![
            metav1::LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["frontend".into(), "backend".into()]),
            },
            metav1::LabelSelectorRequirement {
                key: "canary".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
            metav1::LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["dev".into()]),
            },
            metav1::LabelSelectorRequirement {
                key: "team".into(),
                operator: "Exists".into(),
                values: None,
            },
        ]),
    };
    let sel = LabelSelector::from_label_selector(&selector).unwrap();
    assert_eq!(
        sel.to_string(),
        "app=web,!canary,env notin (dev),team,tier in (backend,frontend)"
    );
    assert!(sel.matches(&labels(&[
        ("app", "web"),
        ("tier", "backend"),
        ("team", "x")
    ])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "backend")])));
    assert!(!sel.matches(&labels(&[
        ("app", "web"),
        ("tier", "backend"),
        ("team", "x"),
        ("canary", "true")
    ])));
    assert_eq!(sel.requires_exact_match("app"), Some("web"));
    assert_eq!(sel.requires_exact_match("tier"), None);
}

#[test]
fn metav1_selectors_reject_unknown_operators_and_bad_values() {
    let bad_op = metav1::LabelSelector {
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: "a".into(),
            operator: "Equals".into(),
            values: None,
        }]),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::from_label_selector(&bad_op).unwrap_err(),
        SelectorError::UnknownOperator {
            operator: "Equals".into()
        }
    );
    assert_eq!(
        LabelSelector::from_label_selector(&bad_op)
            .unwrap_err()
            .to_string(),
        "\"Equals\" is not a valid label selector operator"
    );
    let empty_in = metav1::LabelSelector {
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: "a".into(),
            operator: "In".into(),
            values: Some(vec![]),
        }]),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::from_label_selector(&empty_in)
            .unwrap_err()
            .to_string(),
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    );
    let bad_key = metav1::LabelSelector {
        match_labels: Some([("a b".to_string(), "c".to_string())].into()),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::from_label_selector(&bad_key)
            .unwrap_err()
            .to_string(),
        format!("key: Invalid value: \"a b\": {NAME_PART_HINT}")
    );
}

#[test]
fn from_set_requires_every_pair() {
    let sel = LabelSelector::from_set(&labels(&[("a", "1"), ("b", "2")]));
    assert_eq!(sel.to_string(), "a=1,b=2");
    assert!(sel.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
    assert!(!sel.matches(&labels(&[("a", "1")])));
}

#[test]
fn whitespace_separates_tokens() {
    let sel = LabelSelector::parse(" a  in ( x , y ) ,\tb\n!= c ").unwrap();
    assert_eq!(sel.to_string(), "a in (x,y),b!=c");
}
