//! Event recording for the replica and deployment controllers.
//!
//! kube-runtime's `Recorder` folds events with the same reason on the same object
//! into one series and keeps only the first note, so "Created pod: a" and "Created
//! pod: b" would show as one event. Kubernetes' recorder keys series by the note as
//! well; here every distinct message becomes its own event (a fresh recorder per
//! event), which is what `kubectl describe` users expect to read.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes events as one controller.
#[derive(Clone)]
pub(crate) struct EventSink {
    client: kube::Client,
    component: &'static str,
}

impl EventSink {
    /// Events reported by `component` (e.g. `deployment-controller`).
    pub(crate) fn new(client: kube::Client, component: &'static str) -> Self {
        Self { client, component }
    }

    /// Records `reason`/`note` about `regarding`; failures are only logged.
    pub(crate) async fn record(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: self.component.into(),
                instance: None,
            },
        );
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, regarding).await {
            tracing::debug!(error = %e, reason, "recording event failed");
        }
    }
}
