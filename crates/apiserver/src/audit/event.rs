//! One audit event and its JSON line, the `audit.k8s.io/v1` `Event` kube-apiserver
//! writes. Bodies travel as bytes and are decoded here, on the writer's thread, so
//! requests pay for a reference count and not for JSON work.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::policy::{Level, Stage};
use crate::authn::Identity;

/// A user as events show it (`authentication.k8s.io/v1` `UserInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&Identity> for UserInfo {
    fn from(who: &Identity) -> Self {
        Self {
            username: who.user.clone(),
            uid: who.uid.clone(),
            groups: who.groups.clone(),
            extra: who.extra.clone(),
        }
    }
}

/// The object a request is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// What is known when a request arrives; shared by all of its events.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub audit_id: String,
    pub level: Level,
    pub request_uri: String,
    pub verb: String,
    /// `None` when authentication failed (the event's `user` is then `{}`).
    pub user: Option<UserInfo>,
    pub source_ips: Vec<String>,
    pub user_agent: String,
    /// Resource requests only.
    pub object_ref: Option<ObjectRef>,
    pub received: jiff::Timestamp,
    pub omit_managed_fields: bool,
}

/// A request or response body kept for an event, with its `Content-Type`.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    pub bytes: Bytes,
    pub content_type: Option<String>,
}

impl Payload {
    /// The body as JSON, whatever encoding it came in; `None` for what is not an
    /// API object (plain text, broken input).
    fn decode(&self) -> Option<Value> {
        let media = self
            .content_type
            .as_deref()
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/yaml" | "application/apply-patch+yaml" => {
                serde_yaml::from_slice(&self.bytes).ok()
            }
            "application/vnd.kubernetes.protobuf" => {
                protobuf_codec::decode_to_json(&self.bytes).ok()
            }
            m if m.is_empty() || m.ends_with("json") || m == "*/*" => {
                serde_json::from_slice(&self.bytes).ok()
            }
            _ => None,
        }
    }
}

/// How a request ended, as far as the event's `responseStatus` tells.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Only the HTTP code is known (a Status in the response body, if any, adds
    /// its fields).
    Code(u16),
    /// A `Status` object (an error the server answered with).
    Status(u16, Value),
}

/// One event: a request at one stage.
#[derive(Debug)]
pub(crate) struct Event {
    pub request: Arc<RequestFacts>,
    pub stage: Stage,
    pub at: jiff::Timestamp,
    pub impersonated: Option<UserInfo>,
    pub outcome: Option<Outcome>,
    pub request_body: Option<Payload>,
    pub response_body: Option<Payload>,
    pub annotations: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: &'a UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<&'a UserInfo>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "<[String]>::is_empty")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    annotations: Map<String, Value>,
}

/// `metav1.MicroTime`: RFC 3339 in UTC with microseconds.
pub(crate) fn micro_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A Status as events carry it: `metadata`, then the bounded fields kube-apiserver
/// copies (`status`, `message`, `reason`, `details`) and the HTTP code.
fn response_status(code: u16, status: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("metadata".into(), json!({}));
    if let Some(s) = status {
        for key in ["status", "message", "reason", "details"] {
            match s.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(v)) if v.is_empty() => {}
                Some(v) => {
                    m.insert(key.into(), v.clone());
                }
            }
        }
    }
    m.insert("code".into(), code.into());
    Value::Object(m)
}

fn is_status(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Status")
}

/// Drops `metadata.managedFields` from an object, the items of a list and the
/// objects in a Table's rows.
fn without_managed_fields(mut v: Value) -> Value {
    fn strip(obj: &mut Value) {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    strip(&mut v);
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip);
    }
    if let Some(rows) = v.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(obj) = row.get_mut("object") {
                strip(obj);
            }
        }
    }
    v
}

impl Event {
    /// Bytes of bodies the event holds (what it costs while queued).
    pub(crate) fn weight(&self) -> usize {
        let len = |p: &Option<Payload>| p.as_ref().map_or(0, |p| p.bytes.len());
        len(&self.request_body) + len(&self.response_body)
    }

    /// The event as one JSON line, newline included.
    pub(crate) fn render(&self) -> Vec<u8> {
        let r = &*self.request;
        let tidy = |v: Value| {
            if r.omit_managed_fields {
                without_managed_fields(v)
            } else {
                v
            }
        };
        let mut object_ref = r.object_ref.clone();
        let request_object = self
            .request_body
            .as_ref()
            .filter(|_| object_ref.is_some())
            .and_then(Payload::decode);
        // As kube-apiserver does: the request object names what the path did not
        // (the object a create makes).
        if let (Some(o), Some(body)) = (object_ref.as_mut(), request_object.as_ref()) {
            let meta = |k: &str| {
                body.pointer(&format!("/metadata/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            if o.name.is_empty() {
                o.name = meta("name");
            }
            if o.namespace.is_empty() {
                o.namespace = meta("namespace");
            }
        }
        let request_object = request_object
            .filter(|_| r.level >= Level::Request)
            .map(tidy);
        let response = self
            .response_body
            .as_ref()
            .filter(|_| object_ref.is_some())
            .and_then(Payload::decode);
        let response_status = self.outcome.as_ref().map(|o| match o {
            Outcome::Status(code, status) => response_status(*code, Some(status)),
            Outcome::Code(code) => {
                response_status(*code, response.as_ref().filter(|v| is_status(v)))
            }
        });
        let response_object = response
            .filter(|_| r.level >= Level::RequestResponse)
            .map(tidy);
        let annotations = self
            .annotations
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect();
        let none = UserInfo::default();
        let wire = Wire {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: r.level.as_str(),
            audit_id: &r.audit_id,
            stage: self.stage.as_str(),
            request_uri: &r.request_uri,
            verb: &r.verb,
            user: r.user.as_ref().unwrap_or(&none),
            impersonated_user: self.impersonated.as_ref(),
            source_ips: &r.source_ips,
            user_agent: &r.user_agent,
            object_ref,
            response_status,
            request_object,
            response_object,
            request_received_timestamp: micro_time(r.received),
            stage_timestamp: micro_time(self.at),
            annotations,
        };
        let mut line = serde_json::to_vec(&wire).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(level: Level) -> Arc<RequestFacts> {
        Arc::new(RequestFacts {
            audit_id: "0b8a4c52-8a5e-4b1f-9d55-2b8f3f9d1a11".into(),
            level,
            request_uri: "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create".into(),
            verb: "create".into(),
            user: Some(UserInfo {
                username: "system:admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                ..Default::default()
            }),
            source_ips: vec!["127.0.0.1".into()],
            user_agent: "kubectl/v1.33.0".into(),
            object_ref: Some(ObjectRef {
                resource: "configmaps".into(),
                namespace: "default".into(),
                api_version: "v1".into(),
                ..Default::default()
            }),
            received: jiff::Timestamp::from_second(1_700_000_000).expect("a time"),
            omit_managed_fields: true,
        })
    }

    fn event(level: Level, stage: Stage) -> Event {
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","managedFields":[{"manager":"x"}]},"data":{"a":"1"}}"#;
        Event {
            request: facts(level),
            stage,
            at: jiff::Timestamp::from_nanosecond(1_700_000_000_250_000_000).expect("a time"),
            impersonated: None,
            outcome: Some(Outcome::Code(201)),
            request_body: Some(Payload {
                bytes: Bytes::from_static(body),
                content_type: Some("application/json".into()),
            }),
            response_body: Some(Payload {
                bytes: Bytes::from_static(body),
                content_type: Some("application/json".into()),
            }),
            annotations: vec![("authorization.k8s.io/decision", "allow".into())],
        }
    }

    fn rendered(ev: &Event) -> Value {
        let line = ev.render();
        assert_eq!(line.last(), Some(&b'\n'), "one line per event");
        assert_eq!(
            line.iter().filter(|b| **b == b'\n').count(),
            1,
            "no newline inside the event"
        );
        serde_json::from_slice(&line).expect("events are JSON")
    }

    #[test]
    fn metadata_events_have_kubernetes_field_names_and_no_bodies() {
        let v = rendered(&event(Level::Metadata, Stage::ResponseComplete));
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "kind",
                "apiVersion",
                "level",
                "auditID",
                "stage",
                "requestURI",
                "verb",
                "user",
                "sourceIPs",
                "userAgent",
                "objectRef",
                "responseStatus",
                "requestReceivedTimestamp",
                "stageTimestamp",
                "annotations"
            ]
        );
        assert_eq!(v["responseStatus"], json!({"metadata": {}, "code": 201}));
        assert_eq!(v["requestReceivedTimestamp"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(v["stageTimestamp"], "2023-11-14T22:13:20.250000Z");
        // The created object's name comes from the body, also at Metadata level.
        assert_eq!(v["objectRef"]["name"], "cm");
        assert_eq!(v["objectRef"]["namespace"], "default");
    }

    #[test]
    fn request_level_keeps_the_request_body_without_managed_fields() {
        let v = rendered(&event(Level::Request, Stage::ResponseComplete));
        assert_eq!(v["requestObject"]["data"]["a"], "1");
        assert!(
            v["requestObject"]["metadata"]
                .get("managedFields")
                .is_none()
        );
        assert!(v.get("responseObject").is_none());
        let v = rendered(&event(Level::RequestResponse, Stage::ResponseComplete));
        assert_eq!(v["responseObject"]["kind"], "ConfigMap");
    }

    #[test]
    fn error_statuses_carry_their_bounded_fields() {
        let mut ev = event(Level::Metadata, Stage::ResponseComplete);
        ev.outcome = Some(Outcome::Status(
            403,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "configmaps is forbidden", "reason": "Forbidden",
                   "details": {"kind": "configmaps"}, "code": 403}),
        ));
        let v = rendered(&ev);
        assert_eq!(
            v["responseStatus"],
            json!({"metadata": {}, "status": "Failure", "message": "configmaps is forbidden",
                   "reason": "Forbidden", "details": {"kind": "configmaps"}, "code": 403})
        );
    }

    #[test]
    fn failed_authentication_has_an_empty_user() {
        let mut ev = event(Level::Metadata, Stage::ResponseStarted);
        let mut f = Arc::try_unwrap(ev.request).expect("one owner");
        f.user = None;
        ev.request = Arc::new(f);
        assert_eq!(rendered(&ev)["user"], json!({}));
    }
}
