//! Recording events: one place for the Event shape every controller writes.

use events::{Event, EventType, Recorder};
use k8s_openapi::api::core::v1::ObjectReference;

/// Records `reason`/`note` about `regarding` (action = reason, as Kubernetes'
/// controllers do), optionally naming a related object; failures are only logged.
pub(crate) async fn record(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: related,
    };
    if let Err(e) = recorder.publish(&ev, regarding).await {
        tracing::debug!(error = %e, reason, "recording event failed");
    }
}

/// `Warning` when `warning`, else `Normal`.
pub(crate) fn event_type(warning: bool) -> EventType {
    if warning {
        EventType::Warning
    } else {
        EventType::Normal
    }
}

/// The recorder of the controller named `controller` (`job-controller`, ...).
pub(crate) fn recorder(client: &kube::Client, controller: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        events::Reporter {
            controller: controller.into(),
            instance: None,
        },
    )
}
