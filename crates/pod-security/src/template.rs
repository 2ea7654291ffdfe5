//! The pod (template) inside objects that carry one: pods themselves and the
//! workloads whose pods PodSecurity warns and audits about when they are created or
//! updated (it never rejects them: their pods are checked when created).

use serde_json::Value;

/// Where a resource keeps its pod template.
struct TemplatePath {
    group: &'static str,
    resource: &'static str,
    /// JSON pointer to the object holding `metadata` and `spec` ("" = the object).
    template: &'static str,
    annotations: &'static str,
    spec: &'static str,
}

const TEMPLATES: &[TemplatePath] = &[
    TemplatePath {
        group: "",
        resource: "pods",
        template: "",
        annotations: "/metadata/annotations",
        spec: "/spec",
    },
    TemplatePath {
        group: "",
        resource: "podtemplates",
        template: "/template",
        annotations: "/template/metadata/annotations",
        spec: "/template/spec",
    },
    TemplatePath {
        group: "",
        resource: "replicationcontrollers",
        template: "/spec/template",
        annotations: "/spec/template/metadata/annotations",
        spec: "/spec/template/spec",
    },
    TemplatePath {
        group: "apps",
        resource: "replicasets",
        template: "/spec/template",
        annotations: "/spec/template/metadata/annotations",
        spec: "/spec/template/spec",
    },
    TemplatePath {
        group: "apps",
        resource: "deployments",
        template: "/spec/template",
        annotations: "/spec/template/metadata/annotations",
        spec: "/spec/template/spec",
    },
    TemplatePath {
        group: "apps",
        resource: "statefulsets",
        template: "/spec/template",
        annotations: "/spec/template/metadata/annotations",
        spec: "/spec/template/spec",
    },
    TemplatePath {
        group: "apps",
        resource: "daemonsets",
        template: "/spec/template",
        annotations: "/spec/template/metadata/annotations",
        spec: "/spec/template/spec",
    },
    TemplatePath {
        group: "batch",
        resource: "jobs",
        template: "/spec/template",
        annotations: "/spec/template/metadata/annotations",
        spec: "/spec/template/spec",
    },
    TemplatePath {
        group: "batch",
        resource: "cronjobs",
        template: "/spec/jobTemplate/spec/template",
        annotations: "/spec/jobTemplate/spec/template/metadata/annotations",
        spec: "/spec/jobTemplate/spec/template/spec",
    },
];

fn path(group: &str, resource: &str) -> Option<&'static TemplatePath> {
    TEMPLATES
        .iter()
        .find(|t| t.group == group && t.resource == resource)
}

/// A pod's or pod template's `metadata` and `spec` inside an object, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct PodTemplate<'a> {
    /// `metadata` (`Value::Null` when absent).
    pub metadata: &'a Value,
    /// `spec` (`Value::Null` when absent).
    pub spec: &'a Value,
    /// JSON pointer of the annotations in the object, for error messages.
    pub(crate) annotations_path: &'static str,
    /// JSON pointer of the spec in the object, for error messages.
    pub(crate) spec_path: &'static str,
}

/// Whether objects of the resource (API group, plural) carry a pod spec
/// PodSecurity evaluates: pods, podtemplates, replicationcontrollers; apps
/// replicasets, deployments, statefulsets, daemonsets; batch jobs, cronjobs.
pub fn has_pod_template(group: &str, resource: &str) -> bool {
    path(group, resource).is_some()
}

/// The pod template of `object`, a resource for which [`has_pod_template`] holds
/// (for a pod, the pod itself). `None` for other resources and for objects without
/// a template (nothing to evaluate then).
pub fn pod_template<'a>(group: &str, resource: &str, object: &'a Value) -> Option<PodTemplate<'a>> {
    static NULL: Value = Value::Null;
    let p = path(group, resource)?;
    let template = object.pointer(p.template).filter(|t| t.is_object())?;
    Some(PodTemplate {
        metadata: template.get("metadata").unwrap_or(&NULL),
        spec: template.get("spec").unwrap_or(&NULL),
        annotations_path: p.annotations,
        spec_path: p.spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_workload_kind_yields_its_template() {
        let tpl =
            json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}});
        let cases = [
            ("", "podtemplates", json!({"template": tpl})),
            (
                "",
                "replicationcontrollers",
                json!({"spec": {"template": tpl}}),
            ),
            ("apps", "replicasets", json!({"spec": {"template": tpl}})),
            ("apps", "deployments", json!({"spec": {"template": tpl}})),
            ("apps", "statefulsets", json!({"spec": {"template": tpl}})),
            ("apps", "daemonsets", json!({"spec": {"template": tpl}})),
            ("batch", "jobs", json!({"spec": {"template": tpl}})),
            (
                "batch",
                "cronjobs",
                json!({"spec": {"jobTemplate": {"spec": {"template": tpl}}}}),
            ),
            ("", "pods", tpl.clone()),
        ];
        for (group, resource, obj) in &cases {
            assert!(has_pod_template(group, resource), "{resource}");
            let t = pod_template(group, resource, obj).expect(resource);
            assert_eq!(t.spec, &tpl["spec"], "{resource}");
            assert_eq!(t.metadata, &tpl["metadata"], "{resource}");
        }
    }

    #[test]
    fn other_resources_and_missing_templates_yield_nothing() {
        assert!(!has_pod_template("", "services"));
        assert!(!has_pod_template("", "deployments"));
        assert!(pod_template("", "configmaps", &json!({"spec": {"template": {}}})).is_none());
        assert!(pod_template("", "replicationcontrollers", &json!({"spec": {}})).is_none());
    }
}
