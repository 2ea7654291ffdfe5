//! MutatingWebhookConfigurations and ValidatingWebhookConfigurations
//! (`admissionregistration.k8s.io/v1`): the v1 defaults (failurePolicy `Fail`,
//! matchPolicy `Equivalent`, empty selectors, timeoutSeconds 10, rule scope `*`,
//! service port 443, reinvocationPolicy `Never`) and Kubernetes' validation
//! (`pkg/apis/admissionregistration/validation`) with its field paths and
//! messages. Updates are held to the looser rules the stored object already
//! met (side effects, review versions, unique names), as Kubernetes does.

use std::collections::BTreeSet;

use api::status::FieldError;
use serde_json::{Value, json};

use super::Strategy;
use super::admission_rules::{strings, text, validate_label_selector, validate_rule};

/// Review versions this server can send (`AcceptedAdmissionReviewVersions`).
const ACCEPTED_REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const FAILURE_POLICIES: [&str; 2] = ["Fail", "Ignore"];
const MATCH_POLICIES: [&str; 2] = ["Equivalent", "Exact"];
const REINVOCATION_POLICIES: [&str; 2] = ["IfNeeded", "Never"];
const NO_SIDE_EFFECTS: [&str; 2] = ["None", "NoneOnDryRun"];
const ALL_SIDE_EFFECTS: [&str; 4] = ["None", "NoneOnDryRun", "Some", "Unknown"];
const URL_FORM: &str = "; desired format: https://host[/path]";
/// The most match conditions one webhook may have.
const MAX_MATCH_CONDITIONS: usize = 64;

/// The strategy of one of the two webhook configuration kinds.
pub(crate) struct WebhookConfigurationStrategy {
    mutating: bool,
}

static MUTATING: WebhookConfigurationStrategy = WebhookConfigurationStrategy { mutating: true };
static VALIDATING: WebhookConfigurationStrategy = WebhookConfigurationStrategy { mutating: false };

/// The strategy for `mutatingwebhookconfigurations` or `validatingwebhookconfigurations`.
pub(crate) fn for_plural(plural: &str) -> &'static dyn Strategy {
    if plural == "mutatingwebhookconfigurations" {
        &MUTATING
    } else {
        &VALIDATING
    }
}

/// Which of Kubernetes' looser update rules apply (`validationOptions`).
struct Options {
    require_no_side_effects: bool,
    require_recognized_review_version: bool,
    require_unique_names: bool,
}

impl Options {
    const CREATE: Options = Options {
        require_no_side_effects: true,
        require_recognized_review_version: true,
        require_unique_names: true,
    };

    /// The rules an update is held to: those the stored object already met.
    fn for_update(old: &Value) -> Options {
        let hooks = webhooks(old);
        let strs = |h: &Value, f: &str| -> Vec<String> {
            h.get(f)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut names = BTreeSet::new();
        Options {
            require_no_side_effects: hooks.iter().all(|h| {
                h.get("sideEffects")
                    .and_then(Value::as_str)
                    .is_some_and(|s| NO_SIDE_EFFECTS.contains(&s))
            }),
            require_recognized_review_version: hooks.iter().all(|h| {
                let versions = strs(h, "admissionReviewVersions");
                versions.is_empty()
                    || versions
                        .iter()
                        .any(|v| ACCEPTED_REVIEW_VERSIONS.contains(&v.as_str()))
            }),
            require_unique_names: hooks.iter().all(|h| {
                names.insert(
                    h.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            }),
        }
    }
}

fn webhooks(obj: &Value) -> Vec<Value> {
    obj.get("webhooks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl Strategy for WebhookConfigurationStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
            return;
        };
        for hook in hooks.iter_mut().filter(|h| h.is_object()) {
            let set = |h: &mut Value, key: &str, value: Value| {
                crate::object::default_field(h, "", key, value)
            };
            set(hook, "failurePolicy", json!("Fail"));
            set(hook, "matchPolicy", json!("Equivalent"));
            set(hook, "namespaceSelector", json!({}));
            set(hook, "objectSelector", json!({}));
            set(hook, "timeoutSeconds", json!(10));
            if self.mutating {
                set(hook, "reinvocationPolicy", json!("Never"));
            }
            if let Some(rules) = hook.get_mut("rules").and_then(Value::as_array_mut) {
                for rule in rules.iter_mut().filter(|r| r.is_object()) {
                    set(rule, "scope", json!("*"));
                }
            }
            if let Some(service) = hook
                .pointer_mut("/clientConfig/service")
                .filter(|s| s.is_object())
            {
                set(service, "port", json!(443));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_configuration(obj, self.mutating, &Options::CREATE)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_configuration(new, self.mutating, &Options::for_update(old))
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}

fn validate_configuration(obj: &Value, mutating: bool, opts: &Options) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let hooks = match obj.get("webhooks") {
        None | Some(Value::Null) => return errs,
        Some(Value::Array(a)) => a,
        Some(other) => {
            errs.push(FieldError::invalid(
                "webhooks",
                other.clone(),
                "must be a list",
            ));
            return errs;
        }
    };
    let mut names = BTreeSet::new();
    for (i, hook) in hooks.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        validate_webhook(&mut errs, hook, mutating, opts, &at);
        validate_review_versions(
            &mut errs,
            hook,
            opts,
            &format!("{at}.admissionReviewVersions"),
        );
        let name = text(hook, "name");
        if opts.require_unique_names && !name.is_empty() && !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{at}.name"), name));
        }
    }
    errs
}

fn validate_webhook(
    errs: &mut Vec<FieldError>,
    hook: &Value,
    mutating: bool,
    opts: &Options,
    at: &str,
) {
    fully_qualified_name(errs, text(hook, "name"), &format!("{at}.name"));
    if let Some(rules) = hook.get("rules").and_then(Value::as_array) {
        for (j, rule) in rules.iter().enumerate() {
            validate_rule(errs, rule, &format!("{at}.rules[{j}]"));
        }
    }
    one_of(errs, hook, "failurePolicy", &FAILURE_POLICIES, at);
    one_of(errs, hook, "matchPolicy", &MATCH_POLICIES, at);
    let allowed: &[&str] = if opts.require_no_side_effects {
        &NO_SIDE_EFFECTS
    } else {
        &ALL_SIDE_EFFECTS
    };
    match hook.get("sideEffects") {
        None | Some(Value::Null) => errs.push(FieldError::required(
            format!("{at}.sideEffects"),
            format!("must specify one of {}", allowed.join(", ")),
        )),
        Some(v) => {
            let s = v.as_str().unwrap_or_default();
            if !allowed.contains(&s) {
                errs.push(FieldError::not_supported(
                    format!("{at}.sideEffects"),
                    v.clone(),
                    allowed,
                ));
            }
        }
    }
    if let Some(t) = hook.get("timeoutSeconds").filter(|t| !t.is_null())
        && !t.as_i64().is_some_and(|t| (1..=30).contains(&t))
    {
        errs.push(FieldError::invalid(
            format!("{at}.timeoutSeconds"),
            t.clone(),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        if let Some(s) = hook.get(selector).filter(|s| !s.is_null()) {
            validate_label_selector(errs, s, &format!("{at}.{selector}"));
        }
    }
    if mutating {
        one_of(errs, hook, "reinvocationPolicy", &REINVOCATION_POLICIES, at);
    }
    validate_client_config(
        errs,
        hook.get("clientConfig"),
        &format!("{at}.clientConfig"),
    );
    validate_match_conditions(
        errs,
        hook.get("matchConditions"),
        &format!("{at}.matchConditions"),
    );
}

/// `field: Unsupported value` unless the optional string at `key` is one of `allowed`.
fn one_of(errs: &mut Vec<FieldError>, hook: &Value, key: &str, allowed: &[&str], at: &str) {
    if let Some(v) = hook.get(key).filter(|v| !v.is_null())
        && !v.as_str().is_some_and(|s| allowed.contains(&s))
    {
        errs.push(FieldError::not_supported(
            format!("{at}.{key}"),
            v.clone(),
            allowed,
        ));
    }
}

/// `utilvalidation.IsFullyQualifiedName`.
fn fully_qualified_name(errs: &mut Vec<FieldError>, name: &str, field: &str) {
    if name.is_empty() {
        errs.push(FieldError::required(field, ""));
        return;
    }
    let problems = api::selector::is_dns1123_subdomain(name);
    if !problems.is_empty() {
        errs.push(FieldError::invalid(field, name, problems.join(",")));
        return;
    }
    if name.split('.').count() < 3 {
        errs.push(FieldError::invalid(
            field,
            name,
            "should be a domain with at least three segments separated by dots",
        ));
    }
}

/// `validateAdmissionReviewVersions`.
fn validate_review_versions(errs: &mut Vec<FieldError>, hook: &Value, opts: &Options, at: &str) {
    let versions = strings(hook, "admissionReviewVersions");
    if versions.is_empty() {
        errs.push(FieldError::required(
            at,
            format!(
                "must specify one of {}",
                ACCEPTED_REVIEW_VERSIONS.join(", ")
            ),
        ));
        return;
    }
    let mut seen = BTreeSet::new();
    let mut accepted = false;
    for (i, v) in versions.iter().enumerate() {
        if !seen.insert(v.as_str()) {
            errs.push(FieldError::invalid(
                format!("{at}[{i}]"),
                v.as_str(),
                "duplicate version",
            ));
            continue;
        }
        for problem in api::selector::is_dns1035_label(v) {
            errs.push(FieldError::invalid(
                format!("{at}[{i}]"),
                v.as_str(),
                problem,
            ));
        }
        accepted |= ACCEPTED_REVIEW_VERSIONS.contains(&v.as_str());
    }
    if opts.require_recognized_review_version && !accepted {
        errs.push(FieldError::invalid(
            at,
            json!(versions),
            format!(
                "must include at least one of {}",
                ACCEPTED_REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

fn validate_client_config(errs: &mut Vec<FieldError>, config: Option<&Value>, at: &str) {
    let present = |key: &str| config.and_then(|c| c.get(key)).filter(|v| !v.is_null());
    match (present("url"), present("service")) {
        (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(
            at,
            "exactly one of url or service is required",
        )),
        (Some(url), None) => {
            validate_url(errs, url.as_str().unwrap_or_default(), &format!("{at}.url"))
        }
        (None, Some(service)) => validate_service(errs, service, &format!("{at}.service")),
    }
}

/// The parts of a URL that `ValidateWebhookURL` looks at (Go's `url.Parse`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    pub scheme: &'a str,
    pub user: Option<&'a str>,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub fragment: &'a str,
}

/// Splits an absolute URL into its parts; `Err` carries Go's parse error.
pub(crate) fn parse_url(url: &str) -> Result<UrlParts<'_>, String> {
    if url.chars().any(|c| c.is_control()) {
        return Err(format!(
            "parse {url:?}: net/url: invalid control character in URL"
        ));
    }
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let scheme_end = rest.find(':').filter(|&i| {
        let s = &rest[..i];
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if rest.starts_with(':') {
        return Err(format!("parse {url:?}: missing protocol scheme"));
    }
    let (scheme, rest) = match scheme_end {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => ("", rest),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (user, host, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let (user, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            if host.contains(' ') {
                return Err(format!(
                    "parse {url:?}: invalid character \" \" in host name"
                ));
            }
            (user, host, path)
        }
        None => (None, "", rest),
    };
    Ok(UrlParts {
        scheme,
        user,
        host,
        path,
        query,
        fragment,
    })
}

/// `webhook.ValidateWebhookURL` with https forced.
fn validate_url(errs: &mut Vec<FieldError>, url: &str, at: &str) {
    let parts = match parse_url(url) {
        Ok(p) => p,
        Err(e) => {
            errs.push(FieldError::required(
                at,
                format!("url must be a valid URL: {e}{URL_FORM}"),
            ));
            return;
        }
    };
    if parts.scheme != "https" {
        errs.push(FieldError::invalid(
            at,
            parts.scheme,
            format!("'https' is the only allowed URL scheme{URL_FORM}"),
        ));
    }
    if parts.host.is_empty() {
        errs.push(FieldError::invalid(
            at,
            parts.host,
            format!("host must be specified{URL_FORM}"),
        ));
    }
    if let Some(user) = parts.user {
        errs.push(FieldError::invalid(
            at,
            user,
            "user information is not permitted in the URL",
        ));
    }
    if !parts.fragment.is_empty() {
        errs.push(FieldError::invalid(
            at,
            parts.fragment,
            "fragments are not permitted in the URL",
        ));
    }
    if !parts.query.is_empty() {
        errs.push(FieldError::invalid(
            at,
            parts.query,
            "query parameters are not permitted in the URL",
        ));
    }
}

/// `webhook.ValidateWebhookService`.
fn validate_service(errs: &mut Vec<FieldError>, service: &Value, at: &str) {
    if text(service, "name").is_empty() {
        errs.push(FieldError::required(
            format!("{at}.name"),
            "service name is required",
        ));
    }
    if text(service, "namespace").is_empty() {
        errs.push(FieldError::required(
            format!("{at}.namespace"),
            "service namespace is required",
        ));
    }
    let port = service.get("port").and_then(Value::as_i64).unwrap_or(443);
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            format!("{at}.port"),
            port,
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    let Some(path) = service.get("path").and_then(Value::as_str) else {
        return;
    };
    let field = format!("{at}.path");
    if path.is_empty() || path == "/" {
        return;
    }
    if path == "//" {
        errs.push(FieldError::invalid(
            &field,
            path,
            "segment[0] may not be empty",
        ));
        return;
    }
    if !path.starts_with('/') {
        errs.push(FieldError::invalid(&field, path, "must start with a '/'"));
    }
    let inner = path.get(1..).unwrap_or_default();
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    for (i, step) in inner.split('/').enumerate() {
        if step.is_empty() {
            errs.push(FieldError::invalid(
                &field,
                path,
                format!("segment[{i}] may not be empty"),
            ));
            continue;
        }
        for problem in api::selector::is_dns1123_subdomain(step) {
            errs.push(FieldError::invalid(
                &field,
                path,
                format!("segment[{i}]: {problem}"),
            ));
        }
    }
}

/// `validateMatchConditions` without compiling the CEL expressions.
fn validate_match_conditions(errs: &mut Vec<FieldError>, conditions: Option<&Value>, at: &str) {
    let Some(list) = conditions.and_then(Value::as_array) else {
        return;
    };
    if list.len() > MAX_MATCH_CONDITIONS {
        errs.push(FieldError {
            kind: api::status::FieldErrorType::TooMany,
            field: at.to_string(),
            value: Some(json!(list.len())),
            detail: format!("must have at most {MAX_MATCH_CONDITIONS} items"),
        });
    }
    let mut names = BTreeSet::new();
    for (i, condition) in list.iter().enumerate() {
        if text(condition, "expression").trim().is_empty() {
            errs.push(FieldError::required(format!("{at}[{i}].expression"), ""));
        }
        let name = text(condition, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{at}[{i}].name"), ""));
            continue;
        }
        for problem in api::selector::is_qualified_name(name) {
            errs.push(FieldError::invalid(
                format!("{at}[{i}].name"),
                name,
                problem,
            ));
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(format!("{at}[{i}].name"), name));
        }
    }
}

#[cfg(test)]
mod tests;
