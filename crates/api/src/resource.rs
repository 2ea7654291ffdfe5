//! The registry of resources Skiff serves: for each one its group, version, kind,
//! plural, scope, short names, categories, subresources and verbs — what discovery
//! advertises and what the REST layer routes by.

use std::sync::Arc;

/// The standard verbs of a fully writable resource.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource (one group/version/plural).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, "" for core.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Subresources served, e.g. `status`, `scale`.
    pub subresources: Vec<String>,
    /// Verbs allowed on the main resource.
    pub verbs: Vec<String>,
    /// OpenAPI definition name of the kind, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub definition: String,
    /// The group whose key space stores these objects: the resource's own group,
    /// except for views of another resource (events.k8s.io Events are stored as
    /// core/v1 Events, as Kubernetes does).
    pub storage_group: String,
}

impl ResourceInfo {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether a subresource is served.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s == name)
    }

    /// Whether a verb is allowed on the main resource.
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The store key prefix of all objects of this resource (ends with `/`).
    pub fn key_prefix(&self) -> String {
        let group = if self.storage_group.is_empty() {
            "core"
        } else {
            &self.storage_group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The store key prefix of the objects in one namespace (ends with `/`).
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("{}{namespace}/", self.key_prefix())
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

/// The resources served, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    resources: Vec<Arc<ResourceInfo>>,
}

/// A compact spec line for the built-in table.
struct Spec {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    sub: &'static [&'static str],
    verbs: &'static [&'static str],
}

const NS: bool = true;
const CLUSTER: bool = false;
const NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Reviews (access and identity checks): created, answered, never stored.
const CREATE_ONLY: &[&str] = &["create"];

#[rustfmt::skip]
const BUILTIN: &[Spec] = &[
    Spec { group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: CLUSTER, short: &["ns"], all: false, sub: &["status", "finalize"], verbs: NO_DELETECOLLECTION },
    Spec { group: "", version: "v1", kind: "Pod", plural: "pods", namespaced: NS, short: &["po"], all: true, sub: &["status", "binding", "eviction", "log", "exec", "attach", "portforward"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "Service", plural: "services", namespaced: NS, short: &["svc"], all: true, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "Endpoints", plural: "endpoints", namespaced: NS, short: &["ep"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: NS, short: &["cm"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "Secret", plural: "secrets", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", namespaced: NS, short: &["sa"], all: false, sub: &["token"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "Node", plural: "nodes", namespaced: CLUSTER, short: &["no"], all: false, sub: &["status", "proxy"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "Event", plural: "events", namespaced: NS, short: &["ev"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "ReplicationController", plural: "replicationcontrollers", namespaced: NS, short: &["rc"], all: true, sub: &["status", "scale"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "PodTemplate", plural: "podtemplates", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "LimitRange", plural: "limitranges", namespaced: NS, short: &["limits"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "ResourceQuota", plural: "resourcequotas", namespaced: NS, short: &["quota"], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "PersistentVolume", plural: "persistentvolumes", namespaced: CLUSTER, short: &["pv"], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "", version: "v1", kind: "PersistentVolumeClaim", plural: "persistentvolumeclaims", namespaced: NS, short: &["pvc"], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "apps", version: "v1", kind: "Deployment", plural: "deployments", namespaced: NS, short: &["deploy"], all: true, sub: &["status", "scale"], verbs: STANDARD_VERBS },
    Spec { group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets", namespaced: NS, short: &["rs"], all: true, sub: &["status", "scale"], verbs: STANDARD_VERBS },
    Spec { group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets", namespaced: NS, short: &["sts"], all: true, sub: &["status", "scale"], verbs: STANDARD_VERBS },
    Spec { group: "apps", version: "v1", kind: "DaemonSet", plural: "daemonsets", namespaced: NS, short: &["ds"], all: true, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "apps", version: "v1", kind: "ControllerRevision", plural: "controllerrevisions", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "batch", version: "v1", kind: "Job", plural: "jobs", namespaced: NS, short: &[], all: true, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "batch", version: "v1", kind: "CronJob", plural: "cronjobs", namespaced: NS, short: &["cj"], all: true, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "autoscaling", version: "v2", kind: "HorizontalPodAutoscaler", plural: "horizontalpodautoscalers", namespaced: NS, short: &["hpa"], all: true, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "policy", version: "v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", namespaced: NS, short: &["pdb"], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", plural: "endpointslices", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "events.k8s.io", version: "v1", kind: "Event", plural: "events", namespaced: NS, short: &["ev"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "scheduling.k8s.io", version: "v1", kind: "PriorityClass", plural: "priorityclasses", namespaced: CLUSTER, short: &["pc"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", plural: "roles", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole", plural: "clusterroles", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding", plural: "rolebindings", namespaced: NS, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRoleBinding", plural: "clusterrolebindings", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "storage.k8s.io", version: "v1", kind: "StorageClass", plural: "storageclasses", namespaced: CLUSTER, short: &["sc"], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "admissionregistration.k8s.io", version: "v1", kind: "MutatingWebhookConfiguration", plural: "mutatingwebhookconfigurations", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "admissionregistration.k8s.io", version: "v1", kind: "ValidatingWebhookConfiguration", plural: "validatingwebhookconfigurations", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "admissionregistration.k8s.io", version: "v1", kind: "ValidatingAdmissionPolicy", plural: "validatingadmissionpolicies", namespaced: CLUSTER, short: &[], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "admissionregistration.k8s.io", version: "v1", kind: "ValidatingAdmissionPolicyBinding", plural: "validatingadmissionpolicybindings", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: STANDARD_VERBS },
    Spec { group: "certificates.k8s.io", version: "v1", kind: "CertificateSigningRequest", plural: "certificatesigningrequests", namespaced: CLUSTER, short: &["csr"], all: false, sub: &["status", "approval"], verbs: STANDARD_VERBS },
    Spec { group: "flowcontrol.apiserver.k8s.io", version: "v1", kind: "FlowSchema", plural: "flowschemas", namespaced: CLUSTER, short: &[], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "flowcontrol.apiserver.k8s.io", version: "v1", kind: "PriorityLevelConfiguration", plural: "prioritylevelconfigurations", namespaced: CLUSTER, short: &[], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: APIEXTENSIONS, version: "v1", kind: "CustomResourceDefinition", plural: "customresourcedefinitions", namespaced: CLUSTER, short: &["crd", "crds"], all: false, sub: &["status"], verbs: STANDARD_VERBS },
    Spec { group: "authentication.k8s.io", version: "v1", kind: "SelfSubjectReview", plural: "selfsubjectreviews", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: CREATE_ONLY },
    Spec { group: "authentication.k8s.io", version: "v1", kind: "TokenReview", plural: "tokenreviews", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: CREATE_ONLY },
    Spec { group: "authorization.k8s.io", version: "v1", kind: "LocalSubjectAccessReview", plural: "localsubjectaccessreviews", namespaced: NS, short: &[], all: false, sub: &[], verbs: CREATE_ONLY },
    Spec { group: "authorization.k8s.io", version: "v1", kind: "SelfSubjectAccessReview", plural: "selfsubjectaccessreviews", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: CREATE_ONLY },
    Spec { group: "authorization.k8s.io", version: "v1", kind: "SelfSubjectRulesReview", plural: "selfsubjectrulesreviews", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: CREATE_ONLY },
    Spec { group: "authorization.k8s.io", version: "v1", kind: "SubjectAccessReview", plural: "subjectaccessreviews", namespaced: CLUSTER, short: &[], all: false, sub: &[], verbs: CREATE_ONLY },
];

/// The group of CustomResourceDefinitions.
pub const APIEXTENSIONS: &str = "apiextensions.k8s.io";

fn definition_name(group: &str, version: &str, kind: &str) -> String {
    if group == APIEXTENSIONS {
        return format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}");
    }
    let package = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Registry {
    /// The built-in Kubernetes resources Skiff serves.
    pub fn builtin() -> Self {
        let resources = BUILTIN
            .iter()
            .map(|s| {
                Arc::new(ResourceInfo {
                    group: s.group.into(),
                    version: s.version.into(),
                    kind: s.kind.into(),
                    plural: s.plural.into(),
                    singular: s.kind.to_lowercase(),
                    namespaced: s.namespaced,
                    short_names: strings(s.short),
                    categories: match (s.all, s.group) {
                        (true, _) => vec!["all".into()],
                        (false, APIEXTENSIONS) => vec!["api-extensions".into()],
                        _ => vec![],
                    },
                    subresources: strings(s.sub),
                    verbs: strings(s.verbs),
                    definition: definition_name(s.group, s.version, s.kind),
                    storage_group: match s.group {
                        "events.k8s.io" => String::new(),
                        g => g.to_string(),
                    },
                })
            })
            .collect();
        Self { resources }
    }

    /// All resources, in registration order.
    pub fn all(&self) -> &[Arc<ResourceInfo>] {
        &self.resources
    }

    /// Finds a resource by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Finds a resource by group, version and kind.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The groups served with their versions (preferred first), core group ("") first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => {
                    versions.push(r.version.clone())
                }
                Some(_) => {}
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// The resources of one group version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceInfo>> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }

    /// Adds a resource (for custom resources); replaces one with the same group/version/plural.
    pub fn insert(&mut self, info: ResourceInfo) {
        self.insert_shared(Arc::new(info));
    }

    /// Adds a shared resource; replaces one with the same group/version/plural.
    pub fn insert_shared(&mut self, info: Arc<ResourceInfo>) {
        self.resources.retain(|r| {
            !(r.group == info.group && r.version == info.version && r.plural == info.plural)
        });
        self.resources.push(info);
    }

    /// Removes the resource with this group/version/plural; whether it was there.
    pub fn remove(&mut self, group: &str, version: &str, plural: &str) -> bool {
        let before = self.resources.len();
        self.resources
            .retain(|r| !(r.group == group && r.version == version && r.plural == plural));
        self.resources.len() != before
    }

    /// Whether any version of `group`/`plural` is served.
    pub fn serves(&self, group: &str, plural: &str) -> bool {
        self.resources
            .iter()
            .any(|r| r.group == group && r.plural == plural)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_live_in_apps_v1_with_short_name_deploy() {
        let reg = Registry::builtin();
        let d = reg
            .lookup("apps", "v1", "deployments")
            .expect("deployments served");
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.short_names, vec!["deploy"]);
        assert_eq!(d.definition, "io.k8s.api.apps.v1.Deployment");
        assert_eq!(
            d.key(Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );
        assert!(d.has_subresource("scale"));
    }

    #[test]
    fn events_of_both_groups_share_one_key_space() {
        let reg = Registry::builtin();
        let core = reg.lookup("", "v1", "events").expect("core events");
        let v1 = reg
            .lookup("events.k8s.io", "v1", "events")
            .expect("events.k8s.io events");
        assert_eq!(core.key_prefix(), v1.key_prefix());
    }

    #[test]
    fn cluster_scoped_keys_ignore_the_namespace() {
        let reg = Registry::builtin();
        let n = reg
            .lookup("", "v1", "namespaces")
            .expect("namespaces served");
        assert_eq!(
            n.key(Some("x"), "default"),
            "/registry/core/namespaces/default"
        );
        assert!(!n.allows("deletecollection"));
    }

    #[test]
    fn custom_resource_definitions_are_served_with_kubernetes_names() {
        let reg = Registry::builtin();
        let crd = reg
            .lookup(APIEXTENSIONS, "v1", "customresourcedefinitions")
            .expect("CRDs served");
        assert_eq!(
            crd.definition,
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
        );
        assert_eq!(crd.short_names, vec!["crd", "crds"]);
        assert_eq!(crd.categories, vec!["api-extensions"]);
        assert!(!crd.namespaced && crd.has_subresource("status"));
    }

    #[test]
    fn custom_resources_can_be_added_and_removed() {
        let mut reg = Registry::builtin();
        let mut info = (**reg.lookup("", "v1", "configmaps").expect("cm")).clone();
        info.group = "stable.example.com".into();
        info.storage_group = info.group.clone();
        info.plural = "crontabs".into();
        reg.insert(info);
        assert!(reg.serves("stable.example.com", "crontabs"));
        assert!(reg.remove("stable.example.com", "v1", "crontabs"));
        assert!(!reg.serves("stable.example.com", "crontabs"));
        assert!(!reg.remove("stable.example.com", "v1", "crontabs"));
    }

    #[test]
    fn core_group_comes_first_in_groups() {
        let groups = Registry::builtin().groups();
        assert_eq!(groups[0].0, "");
        assert!(
            groups
                .iter()
                .any(|(g, v)| g == "autoscaling" && v == &vec!["v2".to_string()])
        );
    }
}
