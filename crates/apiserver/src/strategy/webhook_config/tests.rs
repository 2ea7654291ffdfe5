//! Defaults and validation of the webhook configuration kinds, with Kubernetes' messages.

use super::*;

fn hook() -> Value {
    json!({
        "name": "deny.example.com",
        "clientConfig": {"url": "https://127.0.0.1:8443/validate"},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    })
}

fn config(hooks: Vec<Value>) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "c"},
        "webhooks": hooks,
    })
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(FieldError::message).collect()
}

fn check(hook: Value) -> Vec<String> {
    let s = for_plural("validatingwebhookconfigurations");
    let mut obj = config(vec![hook]);
    s.default(&mut obj);
    messages(&s.validate(&obj))
}

#[test]
fn a_complete_webhook_is_valid_and_gets_the_v1_defaults() {
    let s = for_plural("mutatingwebhookconfigurations");
    let mut obj = config(vec![hook()]);
    s.default(&mut obj);
    assert!(s.validate(&obj).is_empty(), "{:?}", s.validate(&obj));
    let h = &obj["webhooks"][0];
    assert_eq!(h["failurePolicy"], "Fail");
    assert_eq!(h["matchPolicy"], "Equivalent");
    assert_eq!(h["timeoutSeconds"], 10);
    assert_eq!(h["namespaceSelector"], json!({}));
    assert_eq!(h["objectSelector"], json!({}));
    assert_eq!(h["reinvocationPolicy"], "Never");
    assert_eq!(h["rules"][0]["scope"], "*");
}

#[test]
fn missing_client_config_and_both_url_and_service_are_refused() {
    let mut h = hook();
    h.as_object_mut().map(|m| m.remove("clientConfig"));
    assert_eq!(
        check(h),
        ["webhooks[0].clientConfig: Required value: exactly one of url or service is required"]
    );
    let mut h = hook();
    h["clientConfig"]["service"] = json!({"namespace": "ns", "name": "svc"});
    assert_eq!(
        check(h),
        ["webhooks[0].clientConfig: Required value: exactly one of url or service is required"]
    );
}

#[test]
fn a_plain_http_url_is_refused_with_kubernetes_words() {
    let mut h = hook();
    h["clientConfig"]["url"] = json!("http://127.0.0.1:8080/x");
    assert_eq!(
        check(h),
        [
            "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]"
        ]
    );
    let mut h = hook();
    h["clientConfig"]["url"] = json!("https://u@h/x?a=b#f");
    assert_eq!(
        check(h),
        [
            "webhooks[0].clientConfig.url: Invalid value: \"u\": user information is not permitted in the URL",
            "webhooks[0].clientConfig.url: Invalid value: \"f\": fragments are not permitted in the URL",
            "webhooks[0].clientConfig.url: Invalid value: \"a=b\": query parameters are not permitted in the URL",
        ]
    );
}

#[test]
fn side_effects_are_required_and_must_be_none_on_create() {
    let mut h = hook();
    h.as_object_mut().map(|m| m.remove("sideEffects"));
    assert_eq!(
        check(h),
        ["webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"]
    );
    let mut h = hook();
    h["sideEffects"] = json!("Some");
    assert_eq!(
        check(h),
        [
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\""
        ]
    );
}

#[test]
fn an_update_may_keep_side_effects_the_stored_object_had() {
    let s = for_plural("validatingwebhookconfigurations");
    let mut h = hook();
    h["sideEffects"] = json!("Unknown");
    let mut obj = config(vec![h]);
    s.default(&mut obj);
    assert!(s.validate_update(&obj, &obj).is_empty());
    assert!(!s.validate(&obj).is_empty());
}

#[test]
fn review_versions_timeouts_and_policies_are_checked() {
    let mut h = hook();
    h["admissionReviewVersions"] = json!(["v2"]);
    h["timeoutSeconds"] = json!(31);
    h["failurePolicy"] = json!("Sometimes");
    h["matchPolicy"] = json!("Loose");
    assert_eq!(
        check(h),
        [
            "webhooks[0].failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\"",
            "webhooks[0].matchPolicy: Unsupported value: \"Loose\": supported values: \"Equivalent\", \"Exact\"",
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            "webhooks[0].admissionReviewVersions: Invalid value: [\"v2\"]: must include at least one of v1, v1beta1",
        ]
    );
    let mut h = hook();
    h["admissionReviewVersions"] = json!([]);
    assert_eq!(
        check(h),
        ["webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"]
    );
}

#[test]
fn bad_rules_are_refused() {
    let mut h = hook();
    h["rules"] = json!([{
        "operations": ["GET"],
        "apiGroups": [],
        "apiVersions": ["v1"],
        "resources": ["*", "pods"],
        "scope": "Galaxy",
    }]);
    assert_eq!(
        check(h),
        [
            "webhooks[0].rules[0].operations[0]: Unsupported value: \"GET\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\"",
            "webhooks[0].rules[0].apiGroups: Required value",
            "webhooks[0].rules[0].resources: Invalid value: [\"*\",\"pods\"]: if '*' is present, must not specify other resources without subresources",
            "webhooks[0].rules[0].scope: Unsupported value: \"Galaxy\": supported values: \"*\", \"Cluster\", \"Namespaced\"",
        ]
    );
    let mut h = hook();
    h["rules"][0]["resources"] = json!(["pods/*", "pods/status", "*/*"]);
    assert_eq!(
        check(h),
        [
            "webhooks[0].rules[0].resources[1]: Invalid value: \"pods/status\": if 'pods/*' is present, must not specify pods/status",
            "webhooks[0].rules[0].resources: Invalid value: [\"pods/*\",\"pods/status\",\"*/*\"]: if '*/*' is present, must not specify other resources",
        ]
    );
}

#[test]
fn names_must_be_qualified_and_unique() {
    let mut short = hook();
    short["name"] = json!("deny");
    assert_eq!(
        check(short),
        [
            "webhooks[0].name: Invalid value: \"deny\": should be a domain with at least three segments separated by dots"
        ]
    );
    let s = for_plural("validatingwebhookconfigurations");
    let mut obj = config(vec![hook(), hook()]);
    s.default(&mut obj);
    assert_eq!(
        messages(&s.validate(&obj)),
        ["webhooks[1].name: Duplicate value: \"deny.example.com\""]
    );
}

#[test]
fn service_references_and_selectors_are_checked() {
    let mut h = hook();
    h["clientConfig"] =
        json!({"service": {"namespace": "", "name": "svc", "port": 0, "path": "/a//b"}});
    h["namespaceSelector"] = json!({"matchExpressions": [{"key": "env", "operator": "Has"}]});
    assert_eq!(
        check(h),
        [
            "webhooks[0].namespaceSelector.matchExpressions[0].operator: Invalid value: \"Has\": not a valid selector operator",
            "webhooks[0].clientConfig.service.namespace: Required value: service namespace is required",
            "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive",
            "webhooks[0].clientConfig.service.path: Invalid value: \"/a//b\": segment[1] may not be empty",
        ]
    );
}

#[test]
fn urls_split_like_go_parses_them() {
    let p = parse_url("https://127.0.0.1:8443/validate").expect("parses");
    assert_eq!(p.scheme, "https");
    assert_eq!(p.host, "127.0.0.1:8443");
    assert_eq!(p.path, "/validate");
    let p = parse_url("example.com/x").expect("parses");
    assert_eq!((p.scheme, p.host, p.path), ("", "", "example.com/x"));
    assert!(parse_url("https://a b/").is_err());
}
