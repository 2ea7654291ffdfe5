//! The audit policy (`audit.k8s.io/v1` `Policy`): which requests are recorded and how
//! much of them. Rules are tried in order and the first that matches decides; a
//! request no rule matches is not recorded. Validation and matching follow
//! kube-apiserver's (`k8s.io/apiserver/pkg/audit/policy`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

use crate::authn::Identity;

/// How much of a request an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Nothing: the request is not recorded.
    None,
    /// Who did what to which object, when, and the answer's code.
    Metadata,
    /// Metadata and the request body (resource requests only).
    Request,
    /// Metadata, the request body and the response body (resource requests only).
    RequestResponse,
}

impl Level {
    const NAMES: [&'static str; 4] = ["None", "Metadata", "Request", "RequestResponse"];

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "None" => Level::None,
            "Metadata" => Level::Metadata,
            "Request" => Level::Request,
            "RequestResponse" => Level::RequestResponse,
            _ => return None,
        })
    }

    /// The name written into events.
    pub(crate) fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A point in handling a request at which an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// As soon as the request arrived, before it is handled.
    RequestReceived,
    /// Response headers sent, body not yet (long-running requests only).
    ResponseStarted,
    /// The response is complete.
    ResponseComplete,
    /// Handling the request panicked.
    Panic,
}

impl Stage {
    const NAMES: [&'static str; 4] = [
        "RequestReceived",
        "ResponseStarted",
        "ResponseComplete",
        "Panic",
    ];

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => return None,
        })
    }

    /// The name written into events.
    pub(crate) fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of stages (those a rule omits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stages(u8);

impl Stages {
    /// True when `stage` is in the set.
    pub(crate) fn contains(self, stage: Stage) -> bool {
        self.0 & stage.bit() != 0
    }

    fn with(self, stage: Stage) -> Self {
        Stages(self.0 | stage.bit())
    }

    fn union(self, other: Stages) -> Self {
        Stages(self.0 | other.0)
    }
}

/// Why an audit policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuditPolicyError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML (or JSON) of a policy's shape.
    #[error("failed decoding: {0}")]
    Decode(String),
    /// `apiVersion`/`kind` are not `audit.k8s.io/v1` `Policy`.
    #[error(
        "unknown group version field {0} in policy; want apiVersion audit.k8s.io/v1, kind Policy"
    )]
    GroupVersion(String),
    /// Fields hold values kube-apiserver refuses (all problems, `; `-separated).
    #[error("{0}")]
    Invalid(String),
    /// The policy has no rules.
    #[error("loaded illegal policy with 0 rules")]
    NoRules,
}

/// A validated audit policy, loaded from `--audit-policy-file`.
#[derive(Debug, Clone)]
pub struct AuditPolicy {
    rules: Vec<Rule>,
    omit_stages: Stages,
    omit_managed_fields: bool,
    warnings: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    level: Level,
    users: Vec<String>,
    user_groups: Vec<String>,
    verbs: Vec<String>,
    resources: Vec<GroupResources>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
    /// The rule's own omitted stages joined with the policy's.
    omit_stages: Stages,
    omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default, deserialize_with = "nullable")]
    group: String,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resource_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    #[serde(default, deserialize_with = "nullable")]
    rules: Vec<RawRule>,
    #[serde(default, deserialize_with = "nullable")]
    omit_stages: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    omit_managed_fields: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default, deserialize_with = "nullable")]
    level: String,
    #[serde(default, deserialize_with = "nullable")]
    users: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    user_groups: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    verbs: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<GroupResources>,
    #[serde(default, deserialize_with = "nullable")]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs", deserialize_with = "nullable")]
    non_resource_urls: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// `null` reads as the default, as Go's decoder reads it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

const POLICY_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "rules",
    "omitStages",
    "omitManagedFields",
];
const RULE_FIELDS: &[&str] = &[
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
];
const GROUP_RESOURCE_FIELDS: &[&str] = &["group", "resources", "resourceNames"];

/// The fields kube-apiserver's strict decoder would call unknown (it then decodes
/// leniently and warns, as we do).
fn unknown_fields(doc: &Value) -> Vec<String> {
    fn keys(v: &Value, known: &[&str], at: &str, out: &mut Vec<String>) {
        if let Value::Mapping(m) = v {
            for k in m.keys() {
                let name = k.as_str().unwrap_or("?");
                if !known.contains(&name) {
                    out.push(format!("{at}{name}"));
                }
            }
        }
    }
    let mut out = Vec::new();
    keys(doc, POLICY_FIELDS, "", &mut out);
    if let Some(Value::Sequence(rules)) = doc.get("rules") {
        for (i, rule) in rules.iter().enumerate() {
            keys(rule, RULE_FIELDS, &format!("rules[{i}]."), &mut out);
            if let Some(Value::Sequence(grs)) = rule.get("resources") {
                for (j, gr) in grs.iter().enumerate() {
                    let at = format!("rules[{i}].resources[{j}].");
                    keys(gr, GROUP_RESOURCE_FIELDS, &at, &mut out);
                }
            }
        }
    }
    out
}

/// A DNS subdomain (RFC 1123), what an API group name must be.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn parse_stages(names: &[String], at: &str, errors: &mut Vec<String>) -> Stages {
    let mut set = Stages::default();
    for (i, name) in names.iter().enumerate() {
        match Stage::parse(name) {
            Some(s) => set = set.with(s),
            None => errors.push(format!(
                "{at}[{i}]: Invalid value: {name:?}: allowed stages are {}",
                Stage::NAMES.join(",")
            )),
        }
    }
    set
}

fn validate_rule(raw: RawRule, i: usize, policy_omits: Stages, errors: &mut Vec<String>) -> Rule {
    let at = format!("rules[{i}]");
    let level = match raw.level.as_str() {
        "" => {
            errors.push(format!("{at}.level: Required value"));
            Level::None
        }
        l => Level::parse(l).unwrap_or_else(|| {
            let supported: Vec<String> = Level::NAMES.iter().map(|n| format!("{n:?}")).collect();
            errors.push(format!(
                "{at}.level: Unsupported value: {l:?}: supported values: {}",
                supported.join(", ")
            ));
            Level::None
        }),
    };
    for (j, url) in raw.non_resource_urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        if !url.starts_with('/') {
            errors.push(format!(
                "{at}.nonResourceURLs[{j}]: Invalid value: {url:?}: non-resource URL rules must begin with a '/' character"
            ));
        }
        if url.len() > 1 && url[..url.len() - 1].contains('*') {
            errors.push(format!(
                "{at}.nonResourceURLs[{j}]: Invalid value: {url:?}: non-resource URL wildcards '*' must be the final character of the rule"
            ));
        }
    }
    for gr in &raw.resources {
        if !gr.group.is_empty() && gr.group != "*" && !is_dns_subdomain(&gr.group) {
            errors.push(format!(
                "{at}.resources.group: Invalid value: {:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                gr.group
            ));
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            errors.push(format!(
                "{at}.resources.resourceNames: Invalid value: {:?}: using resourceNames requires at least one resource",
                gr.resource_names
            ));
        }
    }
    let omit_stages = parse_stages(&raw.omit_stages, &format!("{at}.omitStages"), errors);
    if !raw.non_resource_urls.is_empty()
        && (!raw.resources.is_empty() || !raw.namespaces.is_empty())
    {
        errors.push(format!(
            "{at}.nonResourceURLs: Invalid value: {:?}: rules cannot apply to both regular resources and non-resource URLs",
            raw.non_resource_urls
        ));
    }
    Rule {
        level,
        users: raw.users,
        user_groups: raw.user_groups,
        verbs: raw.verbs,
        resources: raw.resources,
        namespaces: raw.namespaces,
        non_resource_urls: raw.non_resource_urls,
        omit_stages: omit_stages.union(policy_omits),
        omit_managed_fields: raw.omit_managed_fields,
    }
}

impl AuditPolicy {
    /// Parses and validates a policy (YAML or JSON), as kube-apiserver reads
    /// `--audit-policy-file`: `audit.k8s.io/v1` `Policy`, at least one rule, valid
    /// levels and stages. Unknown fields are ignored and listed in
    /// [`AuditPolicy::warnings`].
    pub fn parse(text: &str) -> Result<Self, AuditPolicyError> {
        let one_line = |e: &dyn std::fmt::Display| e.to_string().replace('\n', " ");
        let doc: Value =
            serde_yaml::from_str(text).map_err(|e| AuditPolicyError::Decode(one_line(&e)))?;
        if !doc.is_mapping() {
            return Err(AuditPolicyError::Decode(
                "the policy is not a YAML or JSON object".into(),
            ));
        }
        let field = |name: &str| doc.get(name).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if api_version != "audit.k8s.io/v1" || kind != "Policy" {
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            return Err(AuditPolicyError::GroupVersion(format!(
                "{group}/{version}, Kind={kind}"
            )));
        }
        let warnings = unknown_fields(&doc)
            .into_iter()
            .map(|f| format!("unknown field {f:?} ignored"))
            .collect();
        let raw: RawPolicy =
            serde_yaml::from_value(doc).map_err(|e| AuditPolicyError::Decode(one_line(&e)))?;
        let mut errors = Vec::new();
        let omit_stages = parse_stages(&raw.omit_stages, "omitStages", &mut errors);
        let rules: Vec<Rule> = raw
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| validate_rule(r, i, omit_stages, &mut errors))
            .collect();
        match errors.len() {
            0 => {}
            1 => return Err(AuditPolicyError::Invalid(errors.remove(0))),
            _ => {
                return Err(AuditPolicyError::Invalid(format!(
                    "[{}]",
                    errors.join(", ")
                )));
            }
        }
        if rules.is_empty() {
            return Err(AuditPolicyError::NoRules);
        }
        Ok(Self {
            rules,
            omit_stages,
            omit_managed_fields: raw.omit_managed_fields,
            warnings,
        })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self, AuditPolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuditPolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Fields the policy has that `audit.k8s.io/v1` does not know (ignored).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The first matching rule's level, stages to omit and managed-fields choice;
    /// level `None` when no rule matches.
    pub(crate) fn evaluate(&self, attrs: &Attributes<'_>) -> Decision {
        for rule in &self.rules {
            if rule.matches(attrs) {
                return Decision {
                    level: rule.level,
                    omit_stages: rule.omit_stages,
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: self.omit_stages,
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

/// What a policy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub level: Level,
    pub omit_stages: Stages,
    pub omit_managed_fields: bool,
}

/// What a rule looks at: the authenticated user (none when authentication
/// failed) and the request's attributes as the authorizer sees them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attributes<'a> {
    pub user: Option<&'a Identity>,
    pub verb: &'a str,
    pub is_resource: bool,
    pub path: &'a str,
    pub namespace: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

impl Rule {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        if !self.users.is_empty() && !a.user.is_some_and(|u| has(&self.users, &u.user)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !a
                .user
                .is_some_and(|u| u.groups.iter().any(|g| has(&self.user_groups, g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !has(&self.verbs, a.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a);
        }
        if !self.non_resource_urls.is_empty() {
            return !a.is_resource
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(a.path, spec));
        }
        true
    }

    fn matches_resource(&self, a: &Attributes<'_>) -> bool {
        if !a.is_resource {
            return false;
        }
        // Cluster-scoped resources have the namespace "".
        if !self.namespaces.is_empty() && !has(&self.namespaces, a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if a.subresource.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        self.resources.iter().any(|gr| {
            if gr.group != a.group && gr.group != "*" {
                return false;
            }
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !has(&gr.resource_names, a.name) {
                return false;
            }
            gr.resources.iter().any(|res| {
                res == "*"
                    || *res == combined
                    || (!a.subresource.is_empty() && res.strip_prefix("*/") == Some(a.subresource))
                    || res.strip_suffix("/*") == Some(a.resource)
            })
        })
    }
}

/// `*` matches every path, `/prefix*` every path starting with `/prefix`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || (spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*')))
}

#[cfg(test)]
mod tests;
