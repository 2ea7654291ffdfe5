//! Label selectors as text (`metav1.LabelSelectorAsSelector(...).String()`).

use serde_json::Value;

use super::fields;

/// A `LabelSelector` that names an operator apimachinery does not know, or gives values
/// where none are allowed (or none where some are required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InvalidSelector;

/// The selector at `path` as apimachinery prints it: requirements sorted by key, e.g.
/// `app=web,tier in (back,front),!canary`. A missing or empty selector prints `""`.
pub(super) fn selector_string(v: &Value, path: &[&str]) -> Result<String, InvalidSelector> {
    let Some(selector) = fields::at(v, path) else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(labels)) = fields::at(selector, &["matchLabels"]) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            requirements.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expr in fields::items(selector, &["matchExpressions"]) {
        let key = fields::str_at(expr, &["key"]);
        let mut values: Vec<&str> = fields::items(expr, &["values"])
            .iter()
            .map(|v| v.as_str().unwrap_or_default())
            .collect();
        let text = match fields::str_at(expr, &["operator"]) {
            op @ ("In" | "NotIn") => {
                if values.is_empty() {
                    return Err(InvalidSelector);
                }
                values.sort_unstable();
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            "Exists" if values.is_empty() => key.to_owned(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        requirements.push((key.to_owned(), text));
    }
    // Stable, like Go's insertion sort for the handful of requirements selectors hold.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let texts: Vec<String> = requirements.into_iter().map(|(_, text)| text).collect();
    Ok(texts.join(","))
}

/// `metav1.FormatLabelSelector`: the selector text, `<none>` when it selects by nothing,
/// `<error>` when it is invalid.
pub(super) fn format_label_selector(v: &Value, path: &[&str]) -> String {
    match selector_string(v, path) {
        Ok(text) => fields::none_if_empty(text),
        Err(InvalidSelector) => "<error>".to_owned(),
    }
}
