//! The job controller (being written).

use std::sync::Arc;

use crate::{Context, Error};

/// Runs the controller until aborted.
pub(crate) async fn run(_ctx: Arc<Context>) -> Result<(), Error> {
    std::future::pending().await
}
