//! Event recording for Skiff's components (client-go's EventRecorder with its
//! correlator, reduced to what the components need).
//!
//! An [`Event`] about an object is written as an `events.k8s.io/v1` Event. The same
//! event again — same object, type, reason, action, related object *and note* — is
//! not written anew: the first one's `series` count and last-observed time are
//! patched, as Kubernetes does, within [`SERIES_WINDOW`]. A different note is a
//! different event, so "Created pod: a" and "Created pod: b" both show in
//! `kubectl describe`.
//!
//! Unlike kube-runtime's recorder, which keys series without the note and scans its
//! whole cache on every event, the cache here is bounded ([`CACHE_CAPACITY`]
//! entries, pruned in batches), so recording stays O(1) per event with tens of
//! thousands of objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};

pub use kube::runtime::events::{Event, EventType, Reporter};

/// How many distinct events the recorder remembers for series counting (client-go's
/// correlator keeps 4096).
pub const CACHE_CAPACITY: usize = 4096;

/// How long a repeat still counts into the first event's series (kube-runtime's
/// recorder uses six minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What makes two events the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: (String, String, String, String, String),
    related: Option<(String, String, String, String)>,
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
}

#[derive(Debug, Clone)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, Seen>,
}

impl Cache {
    /// Drops expired entries and, when still too full, the least recently seen
    /// quarter; runs only when the cache is full, so it is amortized O(1).
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < CACHE_CAPACITY {
            return;
        }
        self.entries
            .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        if self.entries.len() < CACHE_CAPACITY * 3 / 4 {
            return;
        }
        let mut ages: Vec<Instant> = self.entries.values().map(|s| s.last).collect();
        ages.sort_unstable();
        let cutoff = ages[ages.len() / 4];
        self.entries.retain(|_, s| s.last > cutoff);
    }
}

/// Records events as one component. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    cache: Arc<Mutex<Cache>>,
}

fn type_str(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

fn ref_key(r: &ObjectReference) -> (String, String, String, String) {
    (
        r.api_version.clone().unwrap_or_default(),
        r.kind.clone().unwrap_or_default(),
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default(),
    )
}

impl Recorder {
    /// A recorder writing as `reporter` (its `controller` is the event's
    /// reportingController, e.g. `default-scheduler`).
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            cache: Arc::default(),
        }
    }

    /// Records `ev` about `regarding`: a new Event, or one more in the series of
    /// the same event seen within [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let (api_version, kind, namespace, name) = ref_key(regarding);
        let key = Key {
            regarding: (
                api_version,
                kind,
                namespace,
                name,
                regarding.uid.clone().unwrap_or_default(),
            ),
            related: ev.secondary.as_ref().map(ref_key),
            type_: type_str(ev.type_),
            reason: ev.reason.clone(),
            action: ev.action.clone(),
            note: ev.note.clone().unwrap_or_default(),
        };
        let now = Instant::now();
        let repeat = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.entries.get_mut(&key) {
                Some(seen) if now.duration_since(seen.last) < SERIES_WINDOW => {
                    seen.count += 1;
                    seen.last = now;
                    Some(seen.clone())
                }
                _ => None,
            }
        };
        let event_ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &event_ns);
        if let Some(seen) = repeat {
            let patch = serde_json_patch(seen.count);
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &seen.namespace);
            return api
                .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ());
        }
        let name = format!(
            "{}.{}",
            regarding.name.as_deref().unwrap_or("event"),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(event_ns.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(type_str(ev.type_).to_string()),
            action: Some(ev.action.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.make_room(now);
        cache.entries.insert(
            key,
            Seen {
                namespace: event_ns,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

/// The merge patch that makes an event a series of `count`.
fn serde_json_patch(count: i32) -> K8sEvent {
    K8sEvent {
        series: Some(EventSeries {
            count,
            last_observed_time: MicroTime(Timestamp::now()),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> Key {
        Key {
            regarding: Default::default(),
            related: None,
            type_: "Normal",
            reason: "Created".into(),
            action: "Created".into(),
            note: note.into(),
        }
    }

    fn seen(last: Instant) -> Seen {
        Seen {
            namespace: "ns".into(),
            name: "e".into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn a_different_note_is_a_different_event() {
        assert_ne!(key("Created pod: a"), key("Created pod: b"));
        assert_eq!(key("Created pod: a"), key("Created pod: a"));
    }

    #[test]
    fn a_full_cache_drops_expired_then_the_oldest_quarter() {
        let now = Instant::now();
        let mut c = Cache::default();
        for i in 0..CACHE_CAPACITY {
            let last = now - Duration::from_secs(i as u64);
            c.entries.insert(key(&i.to_string()), seen(last));
        }
        c.make_room(now);
        assert!(c.entries.len() <= CACHE_CAPACITY * 3 / 4);
        assert!(c.entries.contains_key(&key("0")), "the newest entry stays");
        assert!(
            !c.entries
                .contains_key(&key(&(CACHE_CAPACITY - 1).to_string())),
            "the oldest entry goes"
        );
    }
}
