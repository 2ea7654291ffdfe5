//! The three `PATCH` body types applied to stored objects: RFC 6902 JSON
//! patch, RFC 7386 merge patch and Kubernetes' strategic merge patch.

use std::sync::OnceLock;

use api::patch::{PatchError, json_patch as apply_json_patch, merge_patch_bytes, strategic_merge};
use serde_json::Value;

use crate::{choose, split};

/// `document \0 patch`: applying never panics; an empty operation list changes nothing.
pub fn json_patch(data: &[u8]) {
    let (doc, patch) = split(data);
    let Ok(original) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    match apply_json_patch(&original, patch) {
        Ok(patched) => {
            if serde_json::from_slice::<Vec<Value>>(patch).is_ok_and(|ops| ops.is_empty()) {
                assert_eq!(
                    patched, original,
                    "an empty JSON patch changed the document"
                );
            }
        }
        Err(e) => check_error(&e),
    }
}

/// `document \0 patch`: applying never panics and is idempotent (RFC 7386).
pub fn merge_patch(data: &[u8]) {
    let (doc, patch) = split(data);
    let Ok(original) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    match merge_patch_bytes(&original, patch) {
        Ok(once) => {
            let twice = merge_patch_bytes(&once, patch).expect("the patch parsed a moment ago");
            assert_eq!(twice, once, "merge patch is not idempotent");
        }
        Err(e) => check_error(&e),
    }
}

/// `definition \0 document \0 patch`: applying never panics; a `null` or
/// empty patch leaves an object as it was.
pub fn strategic_merge_patch(data: &[u8]) {
    let (name, rest) = split(data);
    let Some(definition) = choose(definitions(), name) else {
        return;
    };
    let (doc, patch) = split(rest);
    let (Ok(original), Ok(patch)) = (
        serde_json::from_slice::<Value>(doc),
        serde_json::from_slice::<Value>(patch),
    ) else {
        return;
    };
    if let Err(e) = strategic_merge(&original, &patch, definition) {
        check_error(&e);
    }
    if original.is_object() && definition != UNKNOWN_DEFINITION {
        for nothing in [Value::Null, Value::Object(Default::default())] {
            assert_eq!(
                strategic_merge(&original, &nothing, definition).as_ref(),
                Ok(&original),
                "patch {nothing} changed a {definition}"
            );
        }
    }
}

/// A definition no built-in has, as for custom resources (strategic merge is refused).
const UNKNOWN_DEFINITION: &str = "com.example.v1.Widget";

/// Every built-in kind's definition (no lists), and one unknown.
pub(crate) fn definitions() -> &'static [String] {
    static DEFINITIONS: OnceLock<Vec<String>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let mut defs: Vec<String> = api::schema::kinds()
            .iter()
            .filter(|k| !k.kind.ends_with("List"))
            .map(|k| k.definition.clone())
            .collect();
        defs.sort();
        defs.dedup();
        defs.push(UNKNOWN_DEFINITION.to_owned());
        defs
    })
}

/// Errors carry a message and one of the codes the server answers patches with.
fn check_error(e: &PatchError) {
    assert!(
        matches!(e.http_status(), 400 | 413 | 422 | 500),
        "{e:?}: status {}",
        e.http_status()
    );
    let _ = e.to_string();
}
