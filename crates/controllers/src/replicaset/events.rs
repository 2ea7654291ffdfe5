//! Event recording for the replica and deployment controllers: one recorder per
//! controller; every distinct message is its own event ("Created pod: a" and
//! "Created pod: b"), as `kubectl describe` users expect to read.

use events::{Event, EventType, Recorder, Reporter};
use k8s_openapi::api::core::v1::ObjectReference;

/// Publishes events as one controller.
#[derive(Clone)]
pub(crate) struct EventSink {
    recorder: Recorder,
}

impl EventSink {
    /// Events reported by `component` (e.g. `deployment-controller`).
    pub(crate) fn new(client: kube::Client, component: &'static str) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: component.into(),
                    instance: None,
                },
            ),
        }
    }

    /// Records `reason`/`note` about `regarding`; failures are only logged.
    pub(crate) async fn record(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::debug!(error = %e, reason, "recording event failed");
        }
    }
}
