//! Authorization: may this identity do this request? Until RBAC lands (a later issue)
//! every authenticated user may do everything; the trait is where RBAC slots in.

use api::status::ApiError;

use crate::authn::Identity;
use crate::request::RequestInfo;

/// Decides whether a request is allowed.
pub(crate) trait Authorizer: Send + Sync {
    /// `Ok(())` when allowed, a 403 `ApiError` otherwise.
    fn authorize(&self, who: &Identity, req: &RequestInfo) -> Result<(), ApiError>;
}

/// Allows every authenticated request (anonymous ones never get here except for public paths).
pub(crate) struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, who: &Identity, req: &RequestInfo) -> Result<(), ApiError> {
        if who.is_anonymous() {
            return Err(ApiError::forbidden(format!(
                "{} is forbidden: User \"system:anonymous\" cannot {} resource",
                req.path, req.verb
            )));
        }
        Ok(())
    }
}
