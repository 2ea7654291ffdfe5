//! Apply conflicts and the `409 Conflict` Status Kubernetes answers with
//! (apimachinery `managedfields/internal/conflict.go`).

use std::fmt;

use api::status::{ApiError, FieldError, FieldErrorType, StatusDetails};

use crate::managers::ManagerKey;
use crate::path::{FieldPath, go_quote};

/// A field another manager owns with a different value than the one applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager that owns the field.
    pub manager: ManagerKey,
    /// The contested field.
    pub path: FieldPath,
}

impl Conflict {
    /// The manager as Kubernetes prints it: `"name"`, then
    /// ` with subresource "status"` and, for updaters, ` using apps/v1`.
    pub fn manager_description(&self) -> String {
        let m = &self.manager;
        let mut s = go_quote(&m.manager);
        if !m.subresource.is_empty() {
            s.push_str(" with subresource ");
            s.push_str(&go_quote(&m.subresource));
        }
        if m.operation == crate::Operation::Update {
            s.push_str(" using ");
            s.push_str(&m.api_version);
        }
        s
    }
}

/// The conflicts of one apply, grouped by manager (managers sorted, each
/// manager's fields in field-set order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// `409 Conflict` with a `FieldManagerConflict` cause per field, as
    /// `errors.NewApplyConflict` builds it.
    pub fn to_api_error(&self) -> ApiError {
        let causes = self
            .0
            .iter()
            .map(|c| FieldError {
                kind: FieldErrorType::Cause("FieldManagerConflict"),
                field: c.path.to_string(),
                value: None,
                detail: format!("conflict with {}", c.manager_description()),
            })
            .collect();
        ApiError {
            code: 409,
            reason: "Conflict",
            message: self.to_string(),
            details: Some(StatusDetails {
                causes,
                ..Default::default()
            }),
            retry_after_seconds: None,
        }
    }

    /// The conflicting paths.
    pub fn paths(&self) -> impl Iterator<Item = &FieldPath> {
        self.0.iter().map(|c| &c.path)
    }
}

/// Kubernetes' message: `Apply failed with 1 conflict: conflict with "m"
/// using apps/v1: .spec.replicas`, or for several
/// `Apply failed with N conflicts: conflicts with "a":\n- .x\nconflicts with "b" ...`.
impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                one.manager_description(),
                one.path
            );
        }
        // (identifier, description, paths) per manager, sorted by identifier.
        let mut by_manager: Vec<(String, String, Vec<&FieldPath>)> = Vec::new();
        for c in &self.0 {
            let id = c.manager.identifier();
            match by_manager.iter_mut().find(|(k, _, _)| *k == id) {
                Some((_, _, paths)) => paths.push(&c.path),
                None => by_manager.push((id, c.manager_description(), vec![&c.path])),
            }
        }
        by_manager.sort_by(|a, b| a.0.cmp(&b.0));
        let mut lines = Vec::new();
        for (_, description, paths) in &by_manager {
            lines.push(format!("conflicts with {description}:"));
            for p in paths {
                lines.push(format!("- {p}"));
            }
        }
        write!(
            f,
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

impl std::error::Error for Conflicts {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operation;

    fn key(manager: &str, operation: Operation, api_version: &str, sub: &str) -> ManagerKey {
        ManagerKey::new(manager, operation, api_version, sub)
    }

    #[test]
    fn one_conflict_reads_like_kubernetes() {
        let c = Conflicts(vec![Conflict {
            manager: key(
                "kubectl-client-side-apply",
                Operation::Update,
                "apps/v1",
                "",
            ),
            path: FieldPath::fields(["spec", "replicas"]),
        }]);
        assert_eq!(
            c.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
        );
        let status = c.to_api_error().to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(
            status["details"]["causes"],
            serde_json::json!([{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                "field": ".spec.replicas"
            }])
        );
    }

    #[test]
    fn several_conflicts_are_grouped_by_sorted_manager() {
        let c = Conflicts(vec![
            Conflict {
                manager: key("foo", Operation::Update, "v1", ""),
                path: FieldPath::fields(["spec", "replicas"]),
            },
            Conflict {
                manager: key("bar", Operation::Apply, "v1", ""),
                path: FieldPath::fields(["metadata", "labels", "app"]),
            },
            Conflict {
                manager: key("scaler", Operation::Update, "apps/v1", "scale"),
                path: FieldPath::fields(["spec", "replicas"]),
            },
        ]);
        assert_eq!(
            c.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"bar\":\n\
             - .metadata.labels.app\n\
             conflicts with \"foo\" using v1:\n\
             - .spec.replicas\n\
             conflicts with \"scaler\" with subresource \"scale\" using apps/v1:\n\
             - .spec.replicas"
        );
    }
}
