//! Validating and mutating admission webhooks: not built yet.

use api::status::ApiError;

use super::Write;
use crate::serve::State;

/// Calls the ValidatingWebhookConfigurations' webhooks matching this write.
pub(crate) async fn validate(
    _state: &State,
    w: &Write<'_>,
    _warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    // Webhooks without side effects are skipped on dry runs.
    let _ = w.dry_run;
    Ok(())
}
