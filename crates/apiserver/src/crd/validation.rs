//! Validation of CustomResourceDefinitions (apiextensions-apiserver's
//! `ValidateCustomResourceDefinition` / `...Update`): names, group, scope, versions
//! and their schemas, subresources, printer columns and stored versions, with
//! Kubernetes' field paths and messages.

use std::collections::HashSet;

use api::status::FieldError;
use serde_json::Value;

use super::definition::{self, ESTABLISHED, Names};
use super::jsonpath::JsonPath;
use super::schema::Schema;

const PRINTER_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const PRINTER_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];
const MAX_SELECTABLE_FIELDS: usize = 8;
const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Validates a CRD being created (`old` = None) or updated.
pub(crate) fn validate(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let names = Names::at(crd, "/spec/names");
    let group = definition::group(crd);
    if old.is_none() {
        let name = crate::object::name(crd).unwrap_or_default();
        if name != format!("{}.{group}", names.plural) {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                r#"must be spec.names.plural+"."+spec.group"#,
            ));
        }
    }
    errs.extend(approval(crd, old));
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        let msgs = api::selector::is_dns1123_subdomain(group);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid("spec.group", group, msgs.join(",")));
        } else if group.split('.').count() < 2 {
            errs.push(FieldError::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    match s(crd, "/spec/scope") {
        "" => errs.push(FieldError::required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    errs.extend(versions(crd, old));
    for (f, v) in [
        ("plural", &names.plural),
        ("singular", &names.singular),
        ("kind", &names.kind),
        ("listKind", &names.list_kind),
    ] {
        if v.is_empty() {
            errs.push(FieldError::required(format!("spec.names.{f}"), ""));
        }
    }
    errs.extend(validate_names(&names, "spec.names"));
    errs.extend(conversion(crd));
    let preserve = crd.pointer("/spec/preserveUnknownFields") == Some(&Value::Bool(true));
    let old_preserve =
        old.is_some_and(|o| o.pointer("/spec/preserveUnknownFields") == Some(&Value::Bool(true)));
    if preserve && !old_preserve {
        errs.push(FieldError::invalid(
            "spec.preserveUnknownFields",
            true,
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs.extend(validate_names(
        &Names::at(crd, "/status/acceptedNames"),
        "status.acceptedNames",
    ));
    errs.extend(stored_versions(crd));
    if let Some(old) = old {
        errs.extend(immutable(crd, old));
    }
    errs
}

fn approval(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let group = definition::group(crd);
    let protected = group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io");
    if !protected {
        return Vec::new();
    }
    let state = |c: &Value| {
        let a = c
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(APPROVAL_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let url = a.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty() && !rest.is_empty() && !rest.starts_with('/')
        });
        let state = if a.is_empty() {
            "missing"
        } else if a.starts_with("unapproved") || url {
            "ok"
        } else {
            "invalid"
        };
        (state, a)
    };
    let (new_state, value) = state(crd);
    if old.is_some_and(|o| state(o).0 == new_state) {
        return Vec::new();
    }
    let field = format!("metadata.annotations[{APPROVAL_ANNOTATION}]");
    match new_state {
        "missing" => vec![FieldError::required(
            field,
            format!(
                "protected groups must have approval annotation {APPROVAL_ANNOTATION:?}, see https://github.com/kubernetes/enhancements/pull/1111"
            ),
        )],
        "invalid" => vec![FieldError::invalid(
            field,
            value,
            format!(
                "protected groups must have approval annotation {APPROVAL_ANNOTATION:?} with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"
            ),
        )],
        _ => Vec::new(),
    }
}

fn dns1035(errs: &mut Vec<FieldError>, field: String, value: &str) {
    let msgs = api::selector::is_dns1035_label(value);
    if !msgs.is_empty() {
        errs.push(FieldError::invalid(field, value, msgs.join(",")));
    }
}

/// `ValidateCustomResourceDefinitionNames`.
fn validate_names(n: &Names, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !n.plural.is_empty() {
        dns1035(&mut errs, format!("{path}.plural"), &n.plural);
    }
    if !n.singular.is_empty() {
        dns1035(&mut errs, format!("{path}.singular"), &n.singular);
    }
    for (f, v) in [("kind", &n.kind), ("listKind", &n.list_kind)] {
        if v.is_empty() {
            continue;
        }
        let msgs = api::selector::is_dns1035_label(&v.to_lowercase());
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.{f}"),
                v.as_str(),
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    msgs.join(",")
                ),
            ));
        }
    }
    for (i, sn) in n.short_names.iter().enumerate() {
        dns1035(&mut errs, format!("{path}.shortNames[{i}]"), sn);
    }
    if !n.kind.is_empty() && n.kind == n.list_kind {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            n.list_kind.as_str(),
            "kind and listKind may not be the same",
        ));
    }
    for (i, c) in n.categories.iter().enumerate() {
        dns1035(&mut errs, format!("{path}.categories[{i}]"), c);
    }
    errs
}

fn all_have_schemas(crd: &Value) -> bool {
    definition::versions(crd).iter().all(|v| {
        v.pointer("/schema/openAPIV3Schema")
            .is_some_and(Value::is_object)
    })
}

fn versions(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let versions = definition::versions(crd);
    let require_schema = old.is_none_or(all_have_schemas);
    let mut seen = HashSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = s(v, "/name");
        if !seen.insert(name.to_string()) {
            unique = false;
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        dns1035(&mut errs, format!("{path}.name"), name);
        let deprecated = v.get("deprecated").and_then(Value::as_bool) == Some(true);
        if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str) {
            let field = format!("{path}.deprecationWarning");
            if !deprecated {
                errs.push(FieldError::invalid(
                    &field,
                    w,
                    "can only be set for deprecated versions",
                ));
            } else if w.is_empty() {
                errs.push(FieldError::invalid(
                    &field,
                    w,
                    "must not be an empty string",
                ));
            } else if w.len() > 256 {
                errs.push(FieldError::invalid(
                    &field,
                    w,
                    "must be <= 256 characters long",
                ));
            }
        }
        let status = v
            .pointer("/subresources/status")
            .is_some_and(|s| !s.is_null());
        match v.pointer("/schema/openAPIV3Schema") {
            Some(schema) if !schema.is_null() => errs.extend(super::structural::check(
                schema,
                &format!("{path}.schema.openAPIV3Schema"),
                status,
            )),
            _ if require_schema => errs.push(FieldError::required(
                format!("{path}.schema.openAPIV3Schema"),
                "",
            )),
            _ => {}
        }
        if let Some(scale) = v.pointer("/subresources/scale").filter(|s| s.is_object()) {
            errs.extend(scale_paths(scale, &format!("{path}.subresources")));
        }
        if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
            for (j, c) in cols.iter().enumerate() {
                errs.extend(printer_column(
                    c,
                    &format!("{path}.additionalPrinterColumns[{j}]"),
                ));
            }
        }
        if let Some(fields) = v.get("selectableFields").and_then(Value::as_array) {
            errs.extend(selectable_fields(
                v,
                fields,
                &format!("{path}.selectableFields"),
            ));
        }
    }
    if !unique {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.to_vec()),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.to_vec()),
            "must have exactly one version marked as storage version",
        ));
    }
    errs
}

/// `validateSimpleJSONPath`.
fn simple_json_path(p: &str, field: &str) -> Option<FieldError> {
    if p.is_empty() {
        Some(FieldError::invalid(field, p, "must not be empty"))
    } else if !p.starts_with('.') {
        Some(FieldError::invalid(
            field,
            p,
            "must be a simple json path starting with .",
        ))
    } else {
        None
    }
}

fn scale_paths(scale: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (f, prefix) in [
        ("specReplicasPath", ".spec."),
        ("statusReplicasPath", ".status."),
    ] {
        let field = format!("{path}.scale.{f}");
        match scale.get(f).and_then(Value::as_str).unwrap_or_default() {
            "" => errs.push(FieldError::required(field, "")),
            p => match simple_json_path(p, &field) {
                Some(e) => errs.push(e),
                None if !p.starts_with(prefix) => errs.push(FieldError::invalid(
                    field,
                    p,
                    format!(
                        "should be a json path under {}",
                        prefix.trim_end_matches('.')
                    ),
                )),
                None => {}
            },
        }
    }
    if let Some(p) = scale
        .get("labelSelectorPath")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        let field = format!("{path}.scale.labelSelectorPath");
        match simple_json_path(p, &field) {
            Some(e) => errs.push(e),
            None if !p.starts_with(".spec.") && !p.starts_with(".status.") => {
                errs.push(FieldError::invalid(
                    field,
                    p,
                    "should be a json path under either .spec or .status",
                ))
            }
            None => {}
        }
    }
    errs
}

/// `ValidateCustomResourceColumnDefinition`.
fn printer_column(c: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if s(c, "/name").is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let types = PRINTER_TYPES.join(",");
    match s(c, "/type") {
        "" => errs.push(FieldError::required(
            format!("{path}.type"),
            format!("must be one of {types}"),
        )),
        t if !PRINTER_TYPES.contains(&t) => errs.push(FieldError::invalid(
            format!("{path}.type"),
            t,
            format!("must be one of {types}"),
        )),
        _ => {}
    }
    let f = s(c, "/format");
    if !f.is_empty() && !PRINTER_FORMATS.contains(&f) {
        errs.push(FieldError::invalid(
            format!("{path}.format"),
            f,
            format!("must be one of {}", PRINTER_FORMATS.join(",")),
        ));
    }
    let field = format!("{path}.JSONPath");
    match s(c, "/jsonPath") {
        "" => errs.push(FieldError::required(field, "")),
        p => {
            if let Some(e) = simple_json_path(p, &field) {
                errs.push(e);
            } else if let Err(e) = JsonPath::parse(p) {
                errs.push(FieldError::invalid(
                    field,
                    p,
                    format!("is not a valid JSONPath: {e}"),
                ));
            }
        }
    }
    errs
}

fn selectable_fields(version: &Value, fields: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
        errs.push(FieldError::invalid(
            path,
            "",
            "may only be set when `version.schema.openAPIV3Schema` is not included",
        ));
        return errs;
    };
    let schema = Schema::parse(schema);
    let mut seen = HashSet::new();
    for (i, f) in fields.iter().enumerate() {
        let field = format!("{path}[{i}].jsonPath");
        let p = s(f, "/jsonPath");
        if p.is_empty() {
            errs.push(FieldError::required(field, ""));
            continue;
        }
        let dotted = p.trim_start_matches('.');
        if dotted.split('.').next() == Some("metadata") {
            errs.push(FieldError::invalid(
                &field,
                p,
                "must not point to fields in metadata",
            ));
            continue;
        }
        match schema.at_path(dotted) {
            None => errs.push(FieldError::invalid(
                &field,
                p,
                "is an invalid path: does not refer to a valid field",
            )),
            Some(s) if !["string", "boolean", "integer"].contains(&s.ty.as_str()) => {
                errs.push(FieldError::invalid(
                    &field,
                    p,
                    "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
                ))
            }
            Some(_) => {}
        }
        if !seen.insert(dotted.to_string()) {
            errs.push(FieldError::duplicate(field, p));
        }
    }
    if seen.len() > MAX_SELECTABLE_FIELDS {
        errs.push(FieldError {
            kind: api::status::FieldErrorType::TooMany,
            field: path.to_string(),
            value: Some(seen.len().into()),
            detail: format!("must have at most {MAX_SELECTABLE_FIELDS} items"),
        });
    }
    errs
}

fn conversion(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(c) = crd.pointer("/spec/conversion").filter(|c| !c.is_null()) else {
        return errs;
    };
    match s(c, "/strategy") {
        "" => errs.push(FieldError::required("spec.conversion.strategy", "")),
        "None" => {
            if c.get("webhook").is_some_and(|w| !w.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.conversion.webhook",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => errs.push(FieldError::forbidden(
            "spec.conversion.strategy",
            "conversion webhooks are not supported by this server; use strategy None",
        )),
        other => errs.push(FieldError::not_supported(
            "spec.conversion.strategy",
            other,
            &["None", "Webhook"],
        )),
    }
    errs
}

/// `ValidateCustomResourceDefinitionStoredVersions`.
fn stored_versions(crd: &Value) -> Vec<FieldError> {
    let stored: Vec<String> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let field = "status.storedVersions";
    if stored.is_empty() {
        return vec![FieldError::invalid(
            field,
            serde_json::json!([]),
            "must have at least one stored version",
        )];
    }
    let mut errs = Vec::new();
    let versions = definition::versions(crd);
    for v in versions {
        let name = s(v, "/name");
        if v.get("storage").and_then(Value::as_bool) == Some(true)
            && !stored.iter().any(|x| x == name)
        {
            errs.push(FieldError::invalid(
                field,
                serde_json::json!(stored),
                format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, sv) in stored.iter().enumerate() {
        if !versions.iter().any(|v| s(v, "/name") == sv) {
            errs.push(FieldError::invalid(
                format!("{field}[{i}]"),
                sv.as_str(),
                format!("missing from spec.versions; {sv} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {sv} and removes {sv} from status.storedVersions"),
            ));
        }
    }
    errs
}

fn immutable(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut fields = vec!["spec.group", "spec.names.plural"];
    if definition::is_true(old, ESTABLISHED) {
        fields.push("spec.scope");
        fields.push("spec.names.kind");
    }
    for f in fields {
        crate::strategy::immutable(&mut errs, new, old, f);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                    "subresources": {"scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]}]},
            "status": {"storedVersions": ["v1"]},
        })
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn a_good_crd_is_valid() {
        assert!(
            validate(&crd(), None).is_empty(),
            "{:?}",
            messages(&validate(&crd(), None))
        );
    }

    #[test]
    fn names_group_and_metadata_name_are_checked() {
        let mut c = crd();
        c["metadata"]["name"] = "wrong.example".into();
        c["spec"]["group"] = "example".into();
        c["spec"]["names"]["kind"] = "Cron_Tab".into();
        let got = messages(&validate(&c, None));
        assert!(got.contains(&r#"metadata.name: Invalid value: "wrong.example": must be spec.names.plural+"."+spec.group"#.to_string()), "{got:#?}");
        assert!(got.contains(&r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#.to_string()), "{got:#?}");
        assert!(got.iter().any(|m| m.starts_with(r#"spec.names.kind: Invalid value: "Cron_Tab": may have mixed case, but should otherwise match: "#)), "{got:#?}");
    }

    #[test]
    fn versions_need_one_storage_version_and_a_schema() {
        let mut c = crd();
        c["spec"]["versions"][0]["storage"] = false.into();
        c["spec"]["versions"][0]["schema"] = Value::Null;
        let got = messages(&validate(&c, None));
        assert!(
            got.iter()
                .any(|m| m.ends_with("must have exactly one version marked as storage version")),
            "{got:#?}"
        );
        assert!(
            got.contains(&"spec.versions[0].schema.openAPIV3Schema: Required value".to_string()),
            "{got:#?}"
        );
    }

    #[test]
    fn bad_columns_and_scale_paths_are_refused() {
        let mut c = crd();
        c["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "X", "type": "map", "jsonPath": "spec.x"}]);
        c["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
            ".status.replicas".into();
        let got = messages(&validate(&c, None));
        assert!(got.contains(&r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "map": must be one of boolean,date,integer,number,string"#.to_string()), "{got:#?}");
        assert!(got.contains(&r#"spec.versions[0].additionalPrinterColumns[0].JSONPath: Invalid value: "spec.x": must be a simple json path starting with ."#.to_string()), "{got:#?}");
        assert!(got.contains(&r#"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#.to_string()), "{got:#?}");
    }

    #[test]
    fn group_and_plural_are_immutable_and_kind_once_established() {
        let mut old = crd();
        definition::set_condition(&mut old, ESTABLISHED, "True", "InitialNamesAccepted", "");
        let mut new = old.clone();
        new["spec"]["names"]["kind"] = "Cron".into();
        new["spec"]["scope"] = "Cluster".into();
        let got = messages(&validate(&new, Some(&old)));
        assert!(
            got.contains(
                &r#"spec.names.kind: Invalid value: "Cron": field is immutable"#.to_string()
            ),
            "{got:#?}"
        );
        assert!(
            got.contains(
                &r#"spec.scope: Invalid value: "Cluster": field is immutable"#.to_string()
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn protected_groups_need_approval() {
        let mut c = crd();
        c["metadata"]["name"] = "crontabs.x.k8s.io".into();
        c["spec"]["group"] = "x.k8s.io".into();
        let got = messages(&validate(&c, None));
        assert!(
            got.iter().any(|m| m
                .starts_with("metadata.annotations[api-approved.kubernetes.io]: Required value")),
            "{got:#?}"
        );
        c["metadata"]["annotations"] = json!({"api-approved.kubernetes.io": "unapproved, testing"});
        assert!(validate(&c, None).is_empty());
    }
}
