use super::*;

/// A policy shaped like the one in Kubernetes' auditing task page.
const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["pods/log", "pods/status"]
  - level: None
    resources:
      - group: ""
        resources: ["configmaps"]
        resourceNames: ["controller-leader"]
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources:
      - group: ""
        resources: ["endpoints", "services"]
  - level: None
    userGroups: ["system:authenticated"]
    nonResourceURLs: ["/api*", "/version"]
  - level: Request
    resources:
      - group: ""
        resources: ["configmaps"]
    namespaces: ["kube-system"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
  - level: Request
    resources:
      - group: ""
      - group: "extensions"
  - level: Metadata
    omitStages: ["ResponseStarted"]
"#;

fn user(name: &str, groups: &[&str]) -> Identity {
    Identity {
        user: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

fn resource<'a>(
    who: &'a Identity,
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
) -> Attributes<'a> {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user: Some(who),
        verb,
        is_resource: true,
        path: "/api/v1/whatever",
        namespace,
        group,
        resource,
        subresource,
        name,
    }
}

fn non_resource<'a>(who: Option<&'a Identity>, path: &'a str) -> Attributes<'a> {
    Attributes {
        user: who,
        verb: "get",
        path,
        ..Attributes::default()
    }
}

fn level(p: &AuditPolicy, a: Attributes<'_>) -> Level {
    p.evaluate(&a).level
}

#[test]
fn the_first_matching_rule_decides_the_level() {
    let p = AuditPolicy::parse(POLICY).expect("parses");
    let alice = user("alice", &["system:authenticated"]);
    let a = &alice;
    assert_eq!(
        level(&p, resource(a, "create", "", "pods", "default", "")),
        Level::RequestResponse
    );
    // "pods" does not cover subresources; "pods/log" does.
    assert_eq!(
        level(&p, resource(a, "get", "", "pods/log", "default", "web")),
        Level::Metadata
    );
    assert_eq!(
        level(&p, resource(a, "get", "", "configmaps", "kube-system", "x")),
        Level::Request
    );
    assert_eq!(
        level(&p, resource(a, "get", "", "configmaps", "default", "x")),
        Level::Metadata
    );
    assert_eq!(
        level(&p, resource(a, "create", "", "services", "default", "")),
        Level::Request
    );
    assert_eq!(
        level(
            &p,
            resource(a, "list", "apps", "deployments", "default", "")
        ),
        Level::Metadata
    );
}

#[test]
fn resource_names_users_and_verbs_narrow_a_rule() {
    let p = AuditPolicy::parse(POLICY).expect("parses");
    let alice = user("alice", &["system:authenticated"]);
    let proxy = user("system:kube-proxy", &["system:authenticated"]);
    let leader = resource(
        &alice,
        "update",
        "",
        "configmaps",
        "kube-system",
        "controller-leader",
    );
    assert_eq!(level(&p, leader), Level::None);
    assert_eq!(
        level(&p, resource(&proxy, "watch", "", "endpoints", "", "")),
        Level::None
    );
    // Not a watch: the proxy's list falls through to the core-group rule.
    assert_eq!(
        level(&p, resource(&proxy, "list", "", "endpoints", "", "")),
        Level::Request
    );
    assert_eq!(
        level(&p, resource(&alice, "watch", "", "endpoints", "", "")),
        Level::Request
    );
}

#[test]
fn non_resource_urls_match_paths_with_a_trailing_wildcard() {
    let p = AuditPolicy::parse(POLICY).expect("parses");
    let alice = user("alice", &["system:authenticated"]);
    assert_eq!(level(&p, non_resource(Some(&alice), "/apis")), Level::None);
    assert_eq!(
        level(&p, non_resource(Some(&alice), "/api/v1")),
        Level::None
    );
    assert_eq!(
        level(&p, non_resource(Some(&alice), "/version")),
        Level::None
    );
    assert_eq!(
        level(&p, non_resource(Some(&alice), "/version/x")),
        Level::Metadata
    );
    assert_eq!(
        level(&p, non_resource(Some(&alice), "/healthz")),
        Level::Metadata
    );
    // A user-group rule never matches a request whose authentication failed.
    assert_eq!(level(&p, non_resource(None, "/apis")), Level::Metadata);
}

#[test]
fn omitted_stages_join_the_policy_and_the_rule() {
    let p = AuditPolicy::parse(POLICY).expect("parses");
    let alice = user("alice", &["system:authenticated"]);
    let d = p.evaluate(&non_resource(Some(&alice), "/healthz"));
    assert!(d.omit_stages.contains(Stage::RequestReceived));
    assert!(d.omit_stages.contains(Stage::ResponseStarted));
    assert!(!d.omit_stages.contains(Stage::ResponseComplete));
    let d = p.evaluate(&resource(&alice, "create", "", "pods", "default", ""));
    assert!(d.omit_stages.contains(Stage::RequestReceived));
    assert!(!d.omit_stages.contains(Stage::ResponseStarted));
}

#[test]
fn no_matching_rule_means_nothing_is_recorded() {
    let p = AuditPolicy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: [delete]\n",
    )
    .expect("parses");
    let alice = user("alice", &[]);
    assert_eq!(
        level(&p, resource(&alice, "get", "", "pods", "default", "x")),
        Level::None
    );
    assert_eq!(
        level(&p, resource(&alice, "delete", "", "pods", "default", "x")),
        Level::Metadata
    );
}

#[test]
fn wildcards_cover_groups_resources_and_subresources() {
    let p = AuditPolicy::parse(
        r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
  resources: [{group: "*", resources: ["*/status"]}]
- level: Request
  resources: [{group: apps, resources: ["deployments/*"]}]
- level: Metadata
  namespaces: [""]
"#,
    )
    .expect("parses");
    let a = user("alice", &[]);
    assert_eq!(
        level(
            &p,
            resource(&a, "update", "batch", "jobs/status", "ns", "j")
        ),
        Level::RequestResponse
    );
    assert_eq!(
        level(
            &p,
            resource(&a, "update", "apps", "deployments/scale", "ns", "d")
        ),
        Level::Request
    );
    // As in kube-apiserver, "deployments/*" also covers the deployment itself.
    assert_eq!(
        level(&p, resource(&a, "update", "apps", "deployments", "ns", "d")),
        Level::Request
    );
    // The namespace rule wants cluster-scoped objects.
    assert_eq!(
        level(&p, resource(&a, "update", "apps", "replicasets", "ns", "r")),
        Level::None
    );
    assert_eq!(
        level(&p, resource(&a, "get", "", "nodes", "", "n1")),
        Level::Metadata
    );
    assert_eq!(level(&p, non_resource(Some(&a), "/healthz")), Level::None);
}

#[test]
fn omit_managed_fields_of_a_rule_overrides_the_policy() {
    let p = AuditPolicy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: Request\n  verbs: [create]\n  omitManagedFields: false\n- level: Request\n",
    )
    .expect("parses");
    let a = user("alice", &[]);
    assert!(
        !p.evaluate(&resource(&a, "create", "", "pods", "d", ""))
            .omit_managed_fields
    );
    assert!(
        p.evaluate(&resource(&a, "update", "", "pods", "d", "x"))
            .omit_managed_fields
    );
}

fn invalid(yaml: &str) -> String {
    let e = AuditPolicy::parse(yaml).expect_err("refused");
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    text
}

const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";

#[test]
fn invalid_policies_are_refused_with_kubernetes_messages() {
    assert_eq!(
        invalid(&format!("{HEAD}rules:\n- verbs: [get]\n")),
        "rules[0].level: Required value"
    );
    assert_eq!(
        invalid(&format!("{HEAD}rules:\n- level: Everything\n")),
        r#"rules[0].level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", "RequestResponse""#
    );
    assert!(
        invalid(&format!(
            "{HEAD}omitStages: [Later]\nrules:\n- level: None\n"
        ))
        .starts_with(r#"omitStages[0]: Invalid value: "Later": allowed stages are"#)
    );
    assert!(
        invalid(&format!(
            "{HEAD}rules:\n- level: None\n  nonResourceURLs: [healthz, '/a*b']\n"
        ))
        .contains("must begin with a '/' character, rules[0].nonResourceURLs[1]")
    );
    assert!(
        invalid(&format!(
            "{HEAD}rules:\n- level: None\n  nonResourceURLs: [/healthz]\n  namespaces: [default]\n"
        ))
        .contains("rules cannot apply to both regular resources and non-resource URLs")
    );
    assert!(
        invalid(&format!(
            "{HEAD}rules:\n- level: None\n  resources: [{{group: '', resourceNames: [x]}}]\n"
        ))
        .contains("using resourceNames requires at least one resource")
    );
    assert!(
        invalid(&format!(
            "{HEAD}rules:\n- level: None\n  resources: [{{group: apps/v1}}]\n"
        ))
        .contains(r#"rules[0].resources.group: Invalid value: "apps/v1""#)
    );
    assert_eq!(
        invalid(&format!("{HEAD}rules: []\n")),
        "loaded illegal policy with 0 rules"
    );
    assert!(
        invalid("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: None\n")
            .starts_with("unknown group version field audit.k8s.io/v1beta1, Kind=Policy")
    );
    assert!(invalid("rules:\n- level: [\n").starts_with("failed decoding: "));
    assert!(
        invalid(&format!("{HEAD}rules:\n- level: None\n  verbs: get\n"))
            .starts_with("failed decoding: ")
    );
}

#[test]
fn several_problems_are_listed_together() {
    let text = invalid(&format!(
        "{HEAD}rules:\n- level: Some\n- level: None\n  omitStages: [Never]\n"
    ));
    assert!(text.starts_with("[rules[0].level"), "{text}");
    assert!(text.contains(", rules[1].omitStages[0]"), "{text}");
}

#[test]
fn unknown_fields_are_ignored_with_a_warning_and_nulls_read_as_empty() {
    let p = AuditPolicy::parse(&format!(
        "{HEAD}metadata: {{name: p}}\nrules:\n- level: Metadata\n  verb: [get]\n  users:\n  resources:\n  - group: ''\n    resource: [pods]\n"
    ))
    .expect("parses leniently");
    assert_eq!(
        p.warnings(),
        [
            r#"unknown field "rules[0].verb" ignored"#,
            r#"unknown field "rules[0].resources[0].resource" ignored"#
        ]
    );
    // The misspelt fields do not narrow the rule.
    let a = user("alice", &[]);
    assert_eq!(
        level(&p, resource(&a, "delete", "", "secrets", "d", "s")),
        Level::Metadata
    );
}
