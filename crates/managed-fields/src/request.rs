//! Field manager names in requests: the `fieldManager` query parameter, or a
//! name derived from the `User-Agent` header (apiserver
//! `endpoints/handlers`), and their validation (apimachinery
//! `ValidateFieldManager`).

use api::status::FieldError;

/// The longest field manager name Kubernetes accepts.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// The manager name Kubernetes derives from a `User-Agent`: what precedes
/// the first `/`, without unprintable characters, cut at 128 bytes.
/// `kube-controller-manager/v1.33.0 (linux/amd64) kubernetes/abc/...` gives
/// `kube-controller-manager`, `kubectl/v1.33.1 ...` gives `kubectl`.
/// (kubectl names most writes itself with `?fieldManager=`:
/// `kubectl-client-side-apply`, `kubectl-edit`, `kubectl-create`, ...)
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let prefix = user_agent.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in prefix.chars() {
        if !is_print(c) {
            continue;
        }
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// The manager of a non-apply write: the `fieldManager` parameter if given,
/// else the one derived from the user agent.
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    match field_manager {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => manager_from_user_agent(user_agent),
    }
}

/// Checks a `fieldManager` parameter: required for apply, at most 128
/// bytes, printable. The errors are for `field: fieldManager`; Kubernetes
/// wraps them as `PatchOptions.meta.k8s.io "" is invalid: ...`
/// (`CreateOptions`/`UpdateOptions` for those verbs), code 422.
pub fn validate_field_manager(field_manager: &str, apply: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if apply && field_manager.is_empty() {
        errors.push(FieldError::required(
            "fieldManager",
            "is required for apply patch",
        ));
    }
    if field_manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errors.push(FieldError::too_long(
            "fieldManager",
            FIELD_MANAGER_MAX_LENGTH,
        ));
    }
    for (i, c) in field_manager.char_indices() {
        if !is_print(c) {
            errors.push(FieldError::invalid(
                "fieldManager",
                field_manager,
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errors
}

/// Go's `unicode.IsPrint`, closely enough: graphic characters and the ASCII space.
fn is_print(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace() || is_format_or_unassigned(c))
}

fn is_format_or_unassigned(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_give_kubernetes_default_managers() {
        assert_eq!(
            manager_from_user_agent(
                "kube-controller-manager/v1.33.0 (linux/amd64) kubernetes/abcdef/system:serviceaccount:kube-system:deployment-controller"
            ),
            "kube-controller-manager"
        );
        assert_eq!(
            manager_from_user_agent("kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0"),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent("curl/8.5.0"), "curl");
        assert_eq!(manager_from_user_agent("a\u{7}b/1"), "ab");
        assert_eq!(manager_from_user_agent(&"x".repeat(200)).len(), 128);
        assert_eq!(
            manager_or_user_agent(Some("kubectl-edit"), "kubectl/v1.33.1"),
            "kubectl-edit"
        );
        assert_eq!(
            manager_or_user_agent(Some(""), "kubectl/v1.33.1"),
            "kubectl"
        );
    }

    #[test]
    fn field_manager_validation_matches_kubernetes() {
        let e = validate_field_manager("", true);
        assert_eq!(
            e[0].message(),
            "fieldManager: Required value: is required for apply patch"
        );
        assert!(validate_field_manager("", false).is_empty());
        assert!(validate_field_manager("kubectl", true).is_empty());
        assert_eq!(
            validate_field_manager(&"x".repeat(129), false)[0].message(),
            "fieldManager: Too long: may not be more than 128 bytes"
        );
        assert!(
            validate_field_manager("a\u{1}", false)[0]
                .message()
                .ends_with("invalid character U+0001 (at position 1)")
        );
    }
}
