//! Name validation helpers and their Kubernetes messages.

use api::selector::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value,
};

#[test]
fn dns1123_subdomains() {
    for ok in ["a", "ab", "a.b", "a-b.c-d", "0.a", &"a".repeat(253)] {
        assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
    }
    assert_eq!(
        is_dns1123_subdomain("Web_1"),
        vec![
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    assert_eq!(
        is_dns1123_subdomain(&"a".repeat(254)),
        vec!["must be no more than 253 characters"]
    );
    assert_eq!(is_dns1123_subdomain("").len(), 1);
    assert_eq!(is_dns1123_subdomain("a..b").len(), 1);
    assert_eq!(is_dns1123_subdomain("a.").len(), 1);
}

#[test]
fn dns1123_labels() {
    assert!(is_dns1123_label("my-name").is_empty());
    assert!(is_dns1123_label("123-abc").is_empty());
    assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
    assert_eq!(
        is_dns1123_label("-a"),
        vec![
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
    assert_eq!(
        is_dns1123_label(&"a".repeat(64)),
        vec!["must be no more than 63 characters"]
    );
}

#[test]
fn dns1035_labels() {
    assert!(is_dns1035_label("web").is_empty());
    assert_eq!(
        is_dns1035_label("1web"),
        vec![
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
}

#[test]
fn qualified_names() {
    assert!(is_qualified_name("kubernetes.io/hostname").is_empty());
    assert!(is_qualified_name("Some_Key.1").is_empty());
    assert_eq!(
        is_qualified_name("/a"),
        vec!["prefix part must be non-empty"]
    );
    assert_eq!(
        is_qualified_name("Example.com/a"),
        vec![
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    let errs = is_qualified_name(&"n".repeat(64));
    assert_eq!(errs, vec!["name part must be no more than 63 characters"]);
}

#[test]
fn label_values() {
    assert!(is_valid_label_value("").is_empty());
    assert!(is_valid_label_value("v1.2_x-y").is_empty());
    assert_eq!(
        is_valid_label_value("-x"),
        vec![
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ]
    );
    assert_eq!(
        is_valid_label_value(&"v".repeat(64)),
        vec!["must be no more than 63 characters"]
    );
    assert_eq!(is_valid_label_value("é").len(), 1);
}
