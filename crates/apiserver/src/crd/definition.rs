//! Reading a stored CustomResourceDefinition: its names, conditions, and the
//! custom resource versions it serves.

use std::sync::Arc;

use api::resource::{ResourceInfo, STANDARD_VERBS};
use serde_json::{Value, json};

use super::jsonpath::JsonPath;
use super::printer::Column;
use super::resource::{CustomResource, ScalePaths};
use super::schema::Schema;

/// Added on delete; removed once every custom resource is gone.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// Condition types.
pub(crate) const NAMES_ACCEPTED: &str = "NamesAccepted";
pub(crate) const ESTABLISHED: &str = "Established";
pub(crate) const TERMINATING: &str = "Terminating";

/// `spec.names` or `status.acceptedNames`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Names {
    /// Reads names at `pointer` (`/spec/names` or `/status/acceptedNames`).
    pub(crate) fn at(crd: &Value, pointer: &str) -> Names {
        let n = crd.pointer(pointer).cloned().unwrap_or_default();
        let s = |k: &str| {
            n.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Names {
            plural: s("plural"),
            singular: s("singular"),
            kind: s("kind"),
            list_kind: s("listKind"),
            short_names: strings(n.get("shortNames")),
            categories: strings(n.get("categories")),
        }
    }

    /// As JSON, leaving out empty fields like Go's `omitempty`.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({"plural": self.plural, "kind": self.kind});
        if !self.singular.is_empty() {
            v["singular"] = self.singular.clone().into();
        }
        if !self.list_kind.is_empty() {
            v["listKind"] = self.list_kind.clone().into();
        }
        if !self.short_names.is_empty() {
            v["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

/// `spec.group`.
pub(crate) fn group(crd: &Value) -> &str {
    crd.pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The condition of type `ty`.
pub(crate) fn condition<'a>(crd: &'a Value, ty: &str) -> Option<&'a Value> {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
}

/// Whether condition `ty` is `True`.
pub(crate) fn is_true(crd: &Value, ty: &str) -> bool {
    condition(crd, ty)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

/// Sets a condition, keeping its `lastTransitionTime` when the status is unchanged.
pub(crate) fn set_condition(crd: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    let now = crate::object::now_rfc3339();
    let mut cond = json!({"type": ty, "status": status, "lastTransitionTime": now,
                          "reason": reason, "message": message});
    if let Some(old) = condition(crd, ty)
        && old.get("status").and_then(Value::as_str) == Some(status)
        && let Some(t) = old.get("lastTransitionTime")
    {
        cond["lastTransitionTime"] = t.clone();
    }
    let list = crate::object::path_mut(crd, "status.conditions");
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Some(items) = list.as_array_mut() {
        match items
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        {
            Some(c) => *c = cond,
            None => items.push(cond),
        }
    }
}

/// Whether the CRD is being deleted.
pub(crate) fn deleting(crd: &Value) -> bool {
    crd.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// The storage version (the one marked `storage: true`).
pub(crate) fn storage_version(crd: &Value) -> Option<&str> {
    versions(crd)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
}

/// `spec.versions`.
pub(crate) fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The OpenAPI definition name of a custom kind: the group reversed, then version
/// and kind (`com.example.stable.v1.CronTab`), as Kubernetes names it.
pub(crate) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// Kubernetes' order of versions (`CompareKubeAwareVersionStrings`): GA before
/// beta before alpha, higher numbers first, then other names alphabetically.
pub(crate) fn version_priority(
    v: &str,
) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String) {
    use std::cmp::Reverse;
    let parsed = v.strip_prefix('v').and_then(|rest| {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        for (rank, word) in [(1u8, "beta"), (2, "alpha")] {
            if let Some(n) = tail.strip_prefix(word)
                && !n.is_empty()
                && let Ok(minor) = n.parse::<u64>()
            {
                return Some((rank, major, minor));
            }
        }
        None
    });
    match parsed {
        Some((rank, major, minor)) => (rank, Reverse(major), Reverse(minor), String::new()),
        None => (3, Reverse(0), Reverse(0), v.to_string()),
    }
}

/// The custom resource versions the CRD serves, named by its accepted names.
pub(crate) fn resources(crd: &Value) -> Vec<CustomResource> {
    let group = group(crd).to_string();
    let names = Names::at(crd, "/status/acceptedNames");
    let Some(storage) = storage_version(crd).map(String::from) else {
        return Vec::new();
    };
    if names.plural.is_empty() || names.kind.is_empty() {
        return Vec::new();
    }
    let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) == Some("Namespaced");
    let crd_name = crate::object::name(crd).unwrap_or_default().to_string();
    let terminating = deleting(crd);
    let mut out = Vec::new();
    for v in versions(crd) {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let Some(version) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        let status = v
            .pointer("/subresources/status")
            .is_some_and(|s| !s.is_null());
        let scale = v
            .pointer("/subresources/scale")
            .filter(|s| s.is_object())
            .map(|s| ScalePaths {
                spec_replicas: s
                    .get("specReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas: s
                    .get("statusReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            });
        let mut subresources = Vec::new();
        if status {
            subresources.push("status".to_string());
        }
        if scale.is_some() {
            subresources.push("scale".to_string());
        }
        let raw_schema = v
            .pointer("/schema/openAPIV3Schema")
            .filter(|s| s.is_object())
            .cloned();
        let mut columns: Vec<Column> = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| cols.iter().filter_map(Column::parse).collect())
            .unwrap_or_default();
        if columns.is_empty() {
            columns.push(Column::age());
        }
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .filter_map(|p| {
                        JsonPath::parse(p)
                            .ok()
                            .map(|jp| (p.trim_start_matches('.').to_string(), jp))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let warning = (v.get("deprecated").and_then(Value::as_bool) == Some(true)).then(|| {
            v.get("deprecationWarning")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("{group}/{version} {} is deprecated", names.kind))
        });
        let info = ResourceInfo {
            group: group.clone(),
            version: version.to_string(),
            kind: names.kind.clone(),
            plural: names.plural.clone(),
            singular: if names.singular.is_empty() {
                names.kind.to_lowercase()
            } else {
                names.singular.clone()
            },
            namespaced,
            short_names: names.short_names.clone(),
            categories: names.categories.clone(),
            subresources,
            verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
            definition: definition_name(&group, version, &names.kind),
            storage_group: group.clone(),
        };
        out.push(CustomResource {
            info: Arc::new(info),
            crd: crd_name.clone(),
            storage_version: storage.clone(),
            schema: raw_schema.as_ref().map(Schema::parse),
            raw_schema,
            status,
            scale,
            columns,
            selectable,
            terminating,
            warning,
        });
    }
    out.sort_by_key(|c| version_priority(&c.info.version));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v = vec![
            "v1alpha1",
            "foo1",
            "v1beta1",
            "v2",
            "v1",
            "v10beta3",
            "v11beta2",
            "foo10",
            "v12alpha1",
        ];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(
            v,
            [
                "v2",
                "v1",
                "v11beta2",
                "v10beta3",
                "v1beta1",
                "v12alpha1",
                "v1alpha1",
                "foo1",
                "foo10"
            ]
        );
    }

    #[test]
    fn selectable_fields_become_field_selector_labels() {
        let crd = json!({
            "metadata": {"name": "shirts.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Cluster",
                "names": {"plural": "shirts", "kind": "Shirt"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"color": {"type": "string"}}}}}},
                    "selectableFields": [{"jsonPath": ".spec.color"}]}]},
            "status": {"acceptedNames": {"plural": "shirts", "kind": "Shirt"}},
        });
        let rs = resources(&crd);
        let shirt = &rs[0];
        assert!(!shirt.info.namespaced);
        let s = crate::crd::CustomResourceStrategy(std::sync::Arc::new(resources(&crd).remove(0)));
        use crate::strategy::Strategy as _;
        assert!(s.is_selectable("spec.color") && !s.is_selectable("spec.size"));
        let obj = json!({"spec": {"color": "blue"}});
        assert_eq!(s.field_value(&obj, "spec.color").as_deref(), Some("blue"));
        assert_eq!(s.field_value(&json!({}), "spec.color").as_deref(), Some(""));
    }

    #[test]
    fn definitions_are_named_with_the_group_reversed() {
        assert_eq!(
            definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut crd = json!({"status": {"conditions": [{"type": "Established", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
        set_condition(
            &mut crd,
            ESTABLISHED,
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        );
        let c = condition(&crd, ESTABLISHED).expect("set");
        assert_eq!(c["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(c["reason"], "InitialNamesAccepted");
        set_condition(
            &mut crd,
            NAMES_ACCEPTED,
            "True",
            "NoConflicts",
            "no conflicts found",
        );
        assert!(is_true(&crd, NAMES_ACCEPTED));
        assert_eq!(
            crd["status"]["conditions"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn served_versions_use_the_accepted_names_and_their_own_subresources() {
        let crd = json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                    {"name": "v1beta1", "served": true, "storage": false, "deprecated": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v0", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                ]},
            "status": {"acceptedNames": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"], "categories": ["all"]}},
        });
        let rs = resources(&crd);
        assert_eq!(rs.len(), 2);
        assert_eq!(
            rs[0].info.version, "v1",
            "the preferred version comes first"
        );
        let v1 = &rs[0];
        assert_eq!(
            v1.info.key(Some("ns"), "a"),
            "/registry/stable.example.com/crontabs/ns/a"
        );
        assert_eq!(v1.info.subresources, vec!["status", "scale"]);
        assert_eq!(v1.info.short_names, vec!["ct"]);
        assert_eq!(v1.columns[0].name, "Age");
        let beta = &rs[1];
        assert_eq!(beta.storage_version, "v1");
        assert!(beta.info.subresources.is_empty());
        assert_eq!(
            beta.warning.as_deref(),
            Some("stable.example.com/v1beta1 CronTab is deprecated")
        );
    }
}
