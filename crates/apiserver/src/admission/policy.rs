//! ValidatingAdmissionPolicy (CEL): not built yet.

use api::status::ApiError;

use super::Write;
use crate::serve::State;

/// Evaluates the ValidatingAdmissionPolicies bound to this write.
pub(crate) async fn validate(
    _state: &State,
    _w: &Write<'_>,
    _warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    Ok(())
}
