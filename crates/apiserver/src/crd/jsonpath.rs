//! Kubernetes JSONPath (`.spec.replicas`, `.status.conditions[?(@.type=="Ready")].status`,
//! as in printer columns) evaluated with the `jsonpath-rust` crate (RFC 9535): the
//! Kubernetes form is translated once (a leading `$`, bracket notation for member
//! names RFC 9535 does not allow in dot notation such as `app.kubernetes.io/name`).

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

/// A parsed path.
#[derive(Debug, Clone)]
pub(crate) struct JsonPath {
    query: JpQuery,
}

fn shorthand(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
}

/// The RFC 9535 form of a Kubernetes JSONPath expression.
pub(crate) fn translate(path: &str) -> String {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let body = p.strip_prefix('$').unwrap_or(p);
    let mut out = String::from("$");
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' if depth > 0 => {
                quote = Some(c);
                out.push(c);
                i += 1;
            }
            '[' => {
                depth += 1;
                out.push(c);
                i += 1;
            }
            ']' => {
                depth = depth.saturating_sub(1);
                out.push(c);
                i += 1;
            }
            '.' if depth == 0 => {
                // `..` and `.*` stay; a member name may become `['name']`.
                if chars.get(i + 1) == Some(&'.') {
                    out.push_str("..");
                    i += 2;
                    continue;
                }
                // A name runs to the next unescaped `.` or `[` (`\.` is a dot in it).
                let mut end = i + 1;
                let mut name = String::new();
                while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
                    if chars[end] == '\\' && end + 1 < chars.len() {
                        end += 1;
                    }
                    name.push(chars[end]);
                    end += 1;
                }
                if name == "*" || name.is_empty() || shorthand(&name) {
                    out.push('.');
                    out.push_str(&name);
                } else {
                    out.push_str(&format!(
                        "['{}']",
                        name.replace('\\', "\\\\").replace('\'', "\\'")
                    ));
                }
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

impl JsonPath {
    /// Parses a Kubernetes JSONPath expression.
    pub(crate) fn parse(path: &str) -> Result<Self, String> {
        let rfc = translate(path);
        jsonpath_rust::parser::parse_json_path(&rfc)
            .map(|query| Self { query })
            .map_err(|e| e.to_string())
    }

    /// Every value the path selects, in document order.
    pub(crate) fn find<'a>(&self, obj: &'a Value) -> Vec<&'a Value> {
        jsonpath_rust::query::js_path_process(&self.query, obj)
            .map(|refs| refs.into_iter().map(|r| r.val()).collect())
            .unwrap_or_default()
    }

    /// The first value the path selects (what a printer column shows).
    pub(crate) fn first<'a>(&self, obj: &'a Value) -> Option<&'a Value> {
        self.find(obj).into_iter().next()
    }
}

/// How Kubernetes' JSONPath printer writes a value: strings as they are, other
/// scalars as JSON, maps and lists as JSON.
pub(crate) fn print(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_paths_become_rfc_9535() {
        assert_eq!(translate(".spec.replicas"), "$.spec.replicas");
        assert_eq!(translate("{.spec.replicas}"), "$.spec.replicas");
        assert_eq!(
            translate(".metadata.labels.app\\.kubernetes\\.io/name"),
            "$.metadata.labels['app.kubernetes.io/name']"
        );
        assert_eq!(
            translate(".metadata.annotations.example.com/owner"),
            "$.metadata.annotations.example['com/owner']"
        );
        assert_eq!(
            translate(r#".status.conditions[?(@.type=="Ready")].status"#),
            r#"$.status.conditions[?(@.type=="Ready")].status"#
        );
    }

    #[test]
    fn paths_select_values_like_printer_columns_do() {
        let obj = json!({"spec": {"replicas": 3, "image": "busybox"},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "metadata": {"labels": {"app/name": "web"}}});
        let p = JsonPath::parse(".spec.replicas").expect("parses");
        assert_eq!(p.first(&obj), Some(&json!(3)));
        let p =
            JsonPath::parse(r#".status.conditions[?(@.type=="Ready")].status"#).expect("parses");
        assert_eq!(p.first(&obj), Some(&json!("True")));
        let p = JsonPath::parse(".metadata.labels.app/name").expect("parses");
        assert_eq!(p.first(&obj), Some(&json!("web")));
        let p = JsonPath::parse(".spec.missing").expect("parses");
        assert_eq!(p.first(&obj), None);
        assert!(JsonPath::parse(".spec[").is_err());
        assert_eq!(print(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(print(&json!("x")), "x");
    }
}
