//! Field selectors as apimachinery `pkg/fields/selector.go` parses them:
//! `f=v`, `f==v`, `f!=v` joined by commas, with `\,`, `\=` and `\\` escapes
//! in values.

use std::collections::BTreeMap;
use std::fmt;

use super::SelectorError;

/// Equality or inequality: the only operators field selectors have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `f=v` or `f==v`.
    Equals,
    /// `f!=v`.
    NotEquals,
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// Equality or inequality.
    pub operator: FieldOperator,
    /// The unescaped value.
    pub value: String,
}

/// A parsed field selector: the AND of its terms, in the order Kubernetes sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldRequirement {
    /// Whether `value` (the object's value of the field; a missing field reads as `""`) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.operator {
            FieldOperator::Equals => value == self.value,
            FieldOperator::NotEquals => value != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

impl FieldSelector {
    /// Parses a field selector (`fields.ParseSelector`). The empty string selects everything.
    pub fn parse(selector: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldSyntax {
                    selector: selector.to_owned(),
                    term: part.to_owned(),
                });
            };
            let value = unescape_value(rhs)?;
            // An empty field with an empty value selects everything and is dropped,
            // as `Transform` drops it after parsing.
            if lhs.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field: lhs.to_owned(),
                operator: op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// A selector requiring each field in `set` to equal its value (`fields.SelectorFromSet`).
    pub fn from_set(set: &BTreeMap<String, String>) -> FieldSelector {
        FieldSelector {
            requirements: set
                .iter()
                .map(|(k, v)| FieldRequirement {
                    field: k.clone(),
                    operator: FieldOperator::Equals,
                    value: v.clone(),
                })
                .collect(),
        }
    }

    /// The selector that matches everything.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Whether the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The field labels the selector uses, each once, in order of first use
    /// (so the server can answer `field label not supported: X`).
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.requirements {
            if !out.contains(&r.field.as_str()) {
                out.push(&r.field);
            }
        }
        out
    }

    /// Whether an object matches; `get` returns the object's value of a field
    /// label (a missing field reads as `""`, as `fields.Set.Get` does).
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(get(&r.field).as_deref().unwrap_or("")))
    }

    /// [`FieldSelector::matches`] against a map of field label to value.
    pub fn matches_map(&self, fields: &BTreeMap<String, String>) -> bool {
        self.matches(&|f| fields.get(f).cloned())
    }

    /// The value a field must equal, if a `=` term pins it (`RequiresExactMatch`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Rewrites every term with `f(field, value) -> (field, value)` (`Selector.Transform`,
    /// used for field label conversion); a term mapped to `("", "")` is dropped.
    pub fn transform<E>(
        &self,
        mut f: impl FnMut(&str, &str) -> Result<(String, String), E>,
    ) -> Result<FieldSelector, E> {
        let mut requirements = Vec::new();
        for r in &self.requirements {
            let (field, value) = f(&r.field, &r.value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field,
                operator: r.operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a field selector value (`fields.EscapeValue`).
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_value`], rejecting bad escapes and bare `,`/`=` (`fields.UnescapeValue`).
pub fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscapeSequence {
                    sequence: format!("\\{c}"),
                });
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter { character: c }),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscapeSequence {
            sequence: "\\".to_owned(),
        });
    }
    Ok(out)
}

/// Splits on commas that are not escaped.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Finds the first operator (`!=`, `==`, `=`, tried in that order at each position).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}
