//! One webhook of a stored configuration, parsed once when the configuration is
//! stored (not per request): its rules, policies, selectors and HTTPS client.
//! Stored objects have been defaulted and validated by the strategy; fields a
//! configuration stored before validation existed lacks get the v1 defaults.

use std::sync::Arc;
use std::time::Duration;

use api::selector::LabelSelector;
use base64::Engine as _;
use serde_json::Value;

use super::client::{Client, Target};

/// The v1 default of `timeoutSeconds`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `failurePolicy`: what a failed call (not a denial) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailurePolicy {
    /// The request fails with 500.
    Fail,
    /// The webhook is skipped.
    Ignore,
}

/// `matchPolicy`: whether a rule naming another version of the resource matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchPolicy {
    /// Only the version requested.
    Exact,
    /// Any version of the same group and resource.
    Equivalent,
}

/// `reinvocationPolicy` of a mutating webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reinvocation {
    /// Called once.
    Never,
    /// Called once more when a later webhook changed the object.
    IfNeeded,
}

/// The AdmissionReview version sent: the first of `admissionReviewVersions`
/// this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReviewVersion {
    /// `admission.k8s.io/v1`.
    V1,
    /// `admission.k8s.io/v1beta1`.
    V1beta1,
}

impl ReviewVersion {
    /// `admission.k8s.io/<version>`.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "admission.k8s.io/v1",
            ReviewVersion::V1beta1 => "admission.k8s.io/v1beta1",
        }
    }
}

/// `rules[].scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `*`.
    All,
    /// `Cluster`: cluster-scoped objects and namespaces.
    Cluster,
    /// `Namespaced`: namespaced objects.
    Namespaced,
}

/// One `RuleWithOperations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `*`.
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    /// `resource`, `resource/subresource`, with `*` wildcards.
    pub resources: Vec<String>,
    pub scope: Scope,
}

/// One webhook, ready to match and call.
pub(crate) struct Hook {
    /// The configuration's name.
    pub configuration: String,
    /// The webhook's name (`webhooks[].name`).
    pub name: String,
    pub rules: Vec<Rule>,
    pub failure_policy: FailurePolicy,
    pub match_policy: MatchPolicy,
    /// `Err` carries why the stored selector does not parse (an internal error
    /// when the webhook's rules match).
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
    /// `sideEffects` as stored (None when missing).
    pub side_effects: Option<String>,
    pub timeout: Duration,
    /// None when none of `admissionReviewVersions` is spoken here.
    pub review_version: Option<ReviewVersion>,
    pub reinvocation: Reinvocation,
    /// Whether the webhook has `matchConditions` (CEL, not evaluated here: the
    /// webhook is called as if they matched).
    pub has_match_conditions: bool,
    /// Where and how the webhook is called; shared by every request while this
    /// configuration stays as it is.
    pub client: Arc<Client>,
}

impl Hook {
    /// Whether dry runs may call this webhook (`None` or `NoneOnDryRun`).
    pub(crate) fn safe_on_dry_run(&self) -> Option<bool> {
        self.side_effects
            .as_deref()
            .map(|s| s == "None" || s == "NoneOnDryRun")
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn selector(v: Option<&Value>) -> Result<LabelSelector, String> {
    match v {
        None | Some(Value::Null) => Ok(LabelSelector::everything()),
        Some(s) => {
            let parsed: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(s.clone()).map_err(|e| e.to_string())?;
            LabelSelector::from_label_selector(&parsed).map_err(|e| e.to_string())
        }
    }
}

fn rule(v: &Value) -> Rule {
    Rule {
        operations: strings(v, "operations"),
        api_groups: strings(v, "apiGroups"),
        api_versions: strings(v, "apiVersions"),
        resources: strings(v, "resources"),
        scope: match v.get("scope").and_then(Value::as_str) {
            Some("Cluster") => Scope::Cluster,
            Some("Namespaced") => Scope::Namespaced,
            _ => Scope::All,
        },
    }
}

/// Where the webhook's `clientConfig` points, and its CA bundle.
fn target(config: Option<&Value>) -> Result<(Target, Option<Vec<u8>>), String> {
    let config = config.ok_or("the webhook has no clientConfig")?;
    let ca = match config.get("caBundle").and_then(Value::as_str) {
        Some(b) if !b.is_empty() => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("caBundle is not base64: {e}"))?,
        ),
        _ => None,
    };
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        return Ok((Target::from_url(url)?, ca));
    }
    let service = config
        .get("service")
        .ok_or("the webhook's clientConfig has neither url nor service")?;
    let field = |k: &str| service.get(k).and_then(Value::as_str).unwrap_or_default();
    let port = service
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    Ok((
        Target::service(field("namespace"), field("name"), port, field("path")),
        ca,
    ))
}

/// Parses the webhooks of a stored configuration named `configuration`.
/// A webhook whose client cannot be set up is still returned: calling it fails
/// (and its failure policy decides), as in Kubernetes.
pub(crate) fn parse(configuration: &str, obj: &Value) -> Vec<Arc<Hook>> {
    let Some(hooks) = obj.get("webhooks").and_then(Value::as_array) else {
        return Vec::new();
    };
    hooks
        .iter()
        .map(|h| {
            let review_version = strings(h, "admissionReviewVersions")
                .iter()
                .find_map(|v| match v.as_str() {
                    "v1" => Some(ReviewVersion::V1),
                    "v1beta1" => Some(ReviewVersion::V1beta1),
                    _ => None,
                });
            let timeout = h
                .get("timeoutSeconds")
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT);
            let client = match target(h.get("clientConfig")) {
                Ok((target, ca)) => Client::new(target, ca.as_deref()),
                Err(why) => Client::broken(why),
            };
            Arc::new(Hook {
                configuration: configuration.to_string(),
                name: h
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                rules: h
                    .get("rules")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().map(rule).collect())
                    .unwrap_or_default(),
                failure_policy: match h.get("failurePolicy").and_then(Value::as_str) {
                    Some("Ignore") => FailurePolicy::Ignore,
                    _ => FailurePolicy::Fail,
                },
                match_policy: match h.get("matchPolicy").and_then(Value::as_str) {
                    Some("Exact") => MatchPolicy::Exact,
                    _ => MatchPolicy::Equivalent,
                },
                namespace_selector: selector(h.get("namespaceSelector")),
                object_selector: selector(h.get("objectSelector")),
                side_effects: h
                    .get("sideEffects")
                    .and_then(Value::as_str)
                    .map(String::from),
                timeout,
                review_version,
                reinvocation: match h.get("reinvocationPolicy").and_then(Value::as_str) {
                    Some("IfNeeded") => Reinvocation::IfNeeded,
                    _ => Reinvocation::Never,
                },
                has_match_conditions: h
                    .get("matchConditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty()),
                client: Arc::new(client),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_webhook_parses_with_its_policies_and_v1_defaults() {
        let obj = json!({"webhooks": [{
            "name": "a.example.com",
            "clientConfig": {"url": "https://127.0.0.1:9443/x"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"], "scope": "Namespaced"}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v2", "v1beta1", "v1"],
            "failurePolicy": "Ignore",
            "timeoutSeconds": 3,
        }, {
            "name": "b.example.com",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "admissionReviewVersions": ["v2"],
        }]});
        let hooks = parse("config", &obj);
        assert_eq!(hooks.len(), 2);
        let a = &hooks[0];
        assert_eq!(a.configuration, "config");
        assert_eq!(a.failure_policy, FailurePolicy::Ignore);
        assert_eq!(a.match_policy, MatchPolicy::Equivalent);
        assert_eq!(a.timeout, Duration::from_secs(3));
        assert_eq!(a.review_version, Some(ReviewVersion::V1beta1));
        assert_eq!(a.rules[0].scope, Scope::Namespaced);
        assert_eq!(a.safe_on_dry_run(), Some(true));
        let b = &hooks[1];
        assert_eq!(b.failure_policy, FailurePolicy::Fail);
        assert_eq!(b.timeout, DEFAULT_TIMEOUT);
        assert_eq!(b.review_version, None);
        assert_eq!(b.safe_on_dry_run(), None);
        assert_eq!(
            b.client.url(DEFAULT_TIMEOUT),
            "https://svc.ns.svc:443/?timeout=10s"
        );
    }
}
