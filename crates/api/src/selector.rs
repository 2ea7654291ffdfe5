//! Label and field selectors, and the name validation they share with the
//! rest of the server, as Kubernetes parses, matches, prints and words them.
//!
//! - [`LabelSelector`]: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`,
//!   `a`, `!a`, `a>1`, `a<1`, comma-separated (apimachinery `pkg/labels`), and
//!   `metav1.LabelSelector` conversion.
//! - [`FieldSelector`]: `f=v`, `f==v`, `f!=v` with `\,` `\=` `\\` escapes
//!   (apimachinery `pkg/fields`).
//! - [`node`]: node selector terms (node affinity, volume node affinity).
//! - [`validation`]: `is_dns1123_subdomain` and friends with Kubernetes' messages.
//!
//! Error messages are Kubernetes' own, so the API server can return them as the
//! message of a 400 `BadRequest` Status unchanged.

mod field;
mod label;
pub mod node;
pub mod validation;

pub use field::{FieldOperator, FieldRequirement, FieldSelector, escape_value, unescape_value};
pub use label::{LabelSelector, Operator, Requirement};
pub use validation::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value,
};

/// Why a selector was rejected; `Display` gives Kubernetes' message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that does not parse, e.g.
    /// `unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt`.
    #[error("{message}")]
    LabelSyntax {
        /// Kubernetes' message.
        message: String,
    },
    /// A requirement with an invalid key, values or value count, e.g.
    /// `values[0][app]: Invalid value: "a b": a valid label must be ...`.
    #[error("{message}")]
    InvalidRequirement {
        /// Kubernetes' message.
        message: String,
    },
    /// A `metav1.LabelSelector` expression with an operator other than
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error(
        "{} is not a valid label selector operator",
        validation::go_quote(operator)
    )]
    UnknownOperator {
        /// The operator as given.
        operator: String,
    },
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldSyntax {
        /// The whole selector.
        selector: String,
        /// The term that has no operator.
        term: String,
    },
    /// A backslash not followed by `\`, `,` or `=` in a field selector value.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscapeSequence {
        /// The offending sequence.
        sequence: String,
    },
    /// A bare `,` or `=` in a field selector value (Kubernetes prints the code point).
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*character))]
    UnescapedCharacter {
        /// The character.
        character: char,
    },
}
