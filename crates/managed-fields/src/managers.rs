//! `metadata.managedFields`: its entries, their decoding and encoding, and
//! the per-manager sets the field manager works on (apimachinery
//! `managedfields/internal/managedfields.go`).

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::fieldsv1::{self, FieldsV1Error};
use crate::path::write_go_json_string;
use crate::set::FieldSet;

/// The only `fieldsType` there is.
pub const FIELDS_V1: &str = "FieldsV1";

/// How a manager last wrote its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, update, patch.
    Update,
}

impl Operation {
    /// `Apply` or `Update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFieldsEntry {
    /// The field manager (`kubectl`, `kube-controller-manager`, ...).
    pub manager: String,
    /// How it wrote.
    pub operation: Operation,
    /// The group/version the fields are expressed in, e.g. `apps/v1`.
    pub api_version: String,
    /// When the manager last changed the object (whole seconds).
    pub time: Option<Timestamp>,
    /// The fields it owns (`fieldsV1`).
    pub fields: FieldSet,
    /// The subresource written through (`status`, `scale`), or empty.
    pub subresource: String,
}

/// Why `metadata.managedFields` could not be read (Kubernetes' messages).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManagedFieldsError {
    /// Not a list of objects.
    #[error("managedFields must be a list of objects")]
    NotAList,
    /// An entry with an operation other than Apply or Update.
    #[error("operation must be `Apply` or `Update`")]
    BadOperation,
    /// An entry without apiVersion.
    #[error("apiVersion must not be empty")]
    EmptyApiVersion,
    /// An entry without fieldsType.
    #[error("missing fieldsType in managed fields entry {0}")]
    MissingFieldsType(usize),
    /// An entry with a fieldsType other than FieldsV1.
    #[error("invalid fieldsType {1:?} in managed fields entry {0}")]
    BadFieldsType(usize, String),
    /// A field of the wrong JSON type or an unparsable time.
    #[error("managed fields entry {0}: {1}")]
    BadEntry(usize, String),
    /// An unreadable `fieldsV1`.
    #[error("error decoding versioned set from entry {0}: error decoding set: {1}")]
    BadFields(usize, FieldsV1Error),
}

impl ManagedFieldsEntry {
    /// Reads entry number `index` of a `managedFields` list.
    pub fn from_json(index: usize, v: &Value) -> Result<Self, ManagedFieldsError> {
        let obj = v.as_object().ok_or(ManagedFieldsError::NotAList)?;
        let string = |name: &str| -> Result<String, ManagedFieldsError> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(ManagedFieldsError::BadEntry(
                    index,
                    format!("{name} must be a string"),
                )),
            }
        };
        let operation = match string("operation")?.as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err(ManagedFieldsError::BadOperation),
        };
        let api_version = string("apiVersion")?;
        if api_version.is_empty() {
            return Err(ManagedFieldsError::EmptyApiVersion);
        }
        match string("fieldsType")?.as_str() {
            FIELDS_V1 => {}
            "" => return Err(ManagedFieldsError::MissingFieldsType(index)),
            other => return Err(ManagedFieldsError::BadFieldsType(index, other.to_owned())),
        }
        let time = match string("time")?.as_str() {
            "" => None,
            t => Some(
                t.parse::<Timestamp>()
                    .map_err(|e| ManagedFieldsError::BadEntry(index, format!("time: {e}")))?,
            ),
        };
        let fields = match obj.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(f) => fieldsv1::decode(f).map_err(|e| ManagedFieldsError::BadFields(index, e))?,
        };
        Ok(ManagedFieldsEntry {
            manager: string("manager")?,
            operation,
            api_version,
            time,
            fields,
            subresource: string("subresource")?,
        })
    }

    /// The entry as Kubernetes writes it (fields in Go's order, empty ones omitted).
    pub fn to_json(&self) -> Value {
        entry_json(
            &self.manager,
            self.operation,
            &self.api_version,
            self.time,
            fieldsv1::encode(&self.fields),
            &self.subresource,
        )
    }
}

/// An entry's JSON from its parts, `fields_v1` already encoded.
fn entry_json(
    manager: &str,
    operation: Operation,
    api_version: &str,
    time: Option<Timestamp>,
    fields_v1: Value,
    subresource: &str,
) -> Value {
    let mut m = Map::new();
    if !manager.is_empty() {
        m.insert("manager".into(), manager.into());
    }
    m.insert("operation".into(), operation.as_str().into());
    if !api_version.is_empty() {
        m.insert("apiVersion".into(), api_version.into());
    }
    if let Some(t) = time {
        m.insert("time".into(), format_time(t).into());
    }
    m.insert("fieldsType".into(), FIELDS_V1.into());
    m.insert("fieldsV1".into(), fields_v1);
    if !subresource.is_empty() {
        m.insert("subresource".into(), subresource.into());
    }
    Value::Object(m)
}

/// Reads a whole `metadata.managedFields` list.
pub fn decode_entries(list: &Value) -> Result<Vec<ManagedFieldsEntry>, ManagedFieldsError> {
    let items = list.as_array().ok_or(ManagedFieldsError::NotAList)?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| ManagedFieldsEntry::from_json(i, v))
        .collect()
}

/// Writes entries as a `metadata.managedFields` list.
pub fn encode_entries(entries: &[ManagedFieldsEntry]) -> Value {
    Value::Array(entries.iter().map(ManagedFieldsEntry::to_json).collect())
}

/// `metav1.Time` in JSON: RFC 3339 in UTC, whole seconds.
pub(crate) fn format_time(t: Timestamp) -> String {
    match Timestamp::from_second(t.as_second()) {
        Ok(s) => s.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => t.to_string(),
    }
}

/// Who a managed set belongs to: Kubernetes' manager identifier (the entry
/// without fields and time, and without apiVersion for appliers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerKey {
    /// The manager name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The version of an updater; empty for appliers.
    pub api_version: String,
    /// The subresource, or empty.
    pub subresource: String,
}

impl ManagerKey {
    /// A key; the API version is dropped for appliers.
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        ManagerKey {
            manager: manager.to_owned(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: subresource.to_owned(),
        }
    }

    /// The identifier string Kubernetes keys managers by, e.g.
    /// `{"manager":"kubectl","operation":"Apply"}`.
    pub fn identifier(&self) -> String {
        let mut s = String::from("{");
        let field = |name: &str, value: &str, s: &mut String| {
            if value.is_empty() {
                return;
            }
            if s.len() > 1 {
                s.push(',');
            }
            write_go_json_string(s, name);
            s.push(':');
            write_go_json_string(s, value);
        };
        field("manager", &self.manager, &mut s);
        field("operation", self.operation.as_str(), &mut s);
        field("apiVersion", &self.api_version, &mut s);
        field("subresource", &self.subresource, &mut s);
        s.push('}');
        s
    }
}

/// The fields one manager owns, at a version.
#[derive(Debug, Clone)]
pub(crate) struct VersionedSet {
    pub(crate) set: FieldSet,
    pub(crate) api_version: String,
    pub(crate) applied: bool,
    /// The index of the `managedFields` entry `set` was decoded from, as
    /// long as `set` is unchanged: its `fieldsV1` is written back as it was
    /// instead of being encoded again.
    pub(crate) source: Option<usize>,
}

impl VersionedSet {
    /// A set that was not decoded (or no longer is what was decoded).
    pub(crate) fn new(set: FieldSet, api_version: String, applied: bool) -> Self {
        VersionedSet {
            set,
            api_version,
            applied,
            source: None,
        }
    }

    /// Replaces the set; the decoded `fieldsV1` no longer applies if it changed.
    pub(crate) fn replace_set(&mut self, set: FieldSet) {
        if set != self.set {
            self.set = set;
            self.source = None;
        }
    }
}

/// Equal sets, whether or not they were decoded.
impl PartialEq for VersionedSet {
    fn eq(&self, other: &Self) -> bool {
        self.set == other.set
            && self.api_version == other.api_version
            && self.applied == other.applied
    }
}

/// All managers' sets and the times they last changed the object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Managed {
    pub(crate) fields: BTreeMap<ManagerKey, VersionedSet>,
    pub(crate) times: BTreeMap<ManagerKey, Option<Timestamp>>,
}

impl Managed {
    /// `DecodeManagedFields`: later entries with the same identifier win.
    pub(crate) fn decode(list: Option<&Value>) -> Result<Managed, ManagedFieldsError> {
        let mut managed = Managed::default();
        let Some(list) = list else {
            return Ok(managed);
        };
        if list.is_null() {
            return Ok(managed);
        }
        for (index, entry) in decode_entries(list)?.into_iter().enumerate() {
            let key = ManagerKey::new(
                &entry.manager,
                entry.operation,
                &entry.api_version,
                &entry.subresource,
            );
            managed.fields.insert(
                key.clone(),
                VersionedSet {
                    set: entry.fields,
                    api_version: entry.api_version,
                    applied: entry.operation == Operation::Apply,
                    source: Some(index),
                },
            );
            managed.times.insert(key, entry.time);
        }
        Ok(managed)
    }

    /// The managers in Kubernetes' order: Apply before Update, then by
    /// time, manager, apiVersion, subresource.
    fn sorted(&self) -> Vec<(&ManagerKey, &VersionedSet, Option<Timestamp>)> {
        let mut out: Vec<_> = self
            .fields
            .iter()
            .map(|(key, vs)| (key, vs, self.times.get(key).copied().flatten()))
            .collect();
        out.sort_by(|(pk, pv, pt), (qk, qv, qt)| {
            operation_of(pk, pv)
                .as_str()
                .cmp(operation_of(qk, qv).as_str())
                .then_with(|| seconds(*pt).cmp(&seconds(*qt)))
                .then_with(|| pk.manager.cmp(&qk.manager))
                .then_with(|| pv.api_version.cmp(&qv.api_version))
                .then_with(|| pk.subresource.cmp(&qk.subresource))
        });
        out
    }

    /// The `metadata.managedFields` list. `decoded_from` is the list the
    /// sets were decoded from: the `fieldsV1` of unchanged sets is copied
    /// from it rather than encoded again.
    pub(crate) fn encode(&self, decoded_from: Option<&Value>) -> Value {
        let items = self
            .sorted()
            .into_iter()
            .map(|(key, vs, time)| {
                let fields_v1 = vs
                    .source
                    .and_then(|i| decoded_from?.get(i)?.get("fieldsV1"))
                    .cloned()
                    .unwrap_or_else(|| fieldsv1::encode(&vs.set));
                entry_json(
                    &key.manager,
                    operation_of(key, vs),
                    &vs.api_version,
                    time,
                    fields_v1,
                    &key.subresource,
                )
            })
            .collect();
        Value::Array(items)
    }

    /// The entries, sorted as Kubernetes sorts them: Apply before Update,
    /// then by time, manager, apiVersion, subresource.
    pub(crate) fn entries(&self) -> Vec<ManagedFieldsEntry> {
        self.sorted()
            .into_iter()
            .map(|(key, vs, time)| ManagedFieldsEntry {
                manager: key.manager.clone(),
                operation: operation_of(key, vs),
                api_version: vs.api_version.clone(),
                time,
                fields: vs.set.clone(),
                subresource: key.subresource.clone(),
            })
            .collect()
    }

    /// Drops managers that own nothing.
    pub(crate) fn drop_empty(&mut self) {
        self.fields.retain(|_, vs| !vs.set.is_empty());
        let fields = &self.fields;
        self.times.retain(|k, _| fields.contains_key(k));
    }

    /// `capUpdateManagers`: merges the oldest updaters into per-version
    /// `ancient-changes` entries until at most `max` updaters are left.
    pub(crate) fn cap_updaters(&mut self, max: usize) {
        let mut updaters: Vec<ManagerKey> = self
            .fields
            .iter()
            .filter(|(_, vs)| !vs.applied)
            .map(|(k, _)| k.clone())
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| {
            let ta = seconds(self.times.get(a).copied().flatten());
            let tb = seconds(self.times.get(b).copied().flatten());
            ta.cmp(&tb)
                .then_with(|| a.identifier().cmp(&b.identifier()))
        });
        let mut first_of_version: BTreeMap<String, ManagerKey> = BTreeMap::new();
        let mut length = updaters.len();
        for manager in updaters {
            if length <= max {
                break;
            }
            let Some(vs) = self.fields.get(&manager).cloned() else {
                continue;
            };
            let time = self.times.get(&manager).copied().flatten();
            let bucket = ManagerKey::new("ancient-changes", Operation::Update, &vs.api_version, "");
            match first_of_version.get(&vs.api_version) {
                Some(first) => {
                    if !self.fields.contains_key(&bucket)
                        && let Some(s) = self.fields.remove(first)
                    {
                        self.times.remove(first);
                        self.fields.insert(bucket.clone(), s);
                    }
                    let merged = match self.fields.get(&bucket) {
                        Some(b) => vs.set.union(&b.set),
                        None => vs.set.clone(),
                    };
                    self.fields.insert(
                        bucket.clone(),
                        VersionedSet::new(merged, vs.api_version.clone(), vs.applied),
                    );
                    self.fields.remove(&manager);
                    self.times.remove(&manager);
                    length -= 1;
                    self.times.insert(bucket, time);
                }
                None => {
                    first_of_version.insert(vs.api_version.clone(), manager);
                }
            }
        }
    }
}

fn operation_of(key: &ManagerKey, vs: &VersionedSet) -> Operation {
    if vs.applied {
        Operation::Apply
    } else {
        key.operation
    }
}

fn seconds(t: Option<Timestamp>) -> i64 {
    t.map(|t| t.as_second()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_match_kubernetes_json() {
        assert_eq!(
            ManagerKey::new("kubectl", Operation::Apply, "apps/v1", "").identifier(),
            r#"{"manager":"kubectl","operation":"Apply"}"#
        );
        assert_eq!(
            ManagerKey::new("kcm", Operation::Update, "apps/v1", "status").identifier(),
            r#"{"manager":"kcm","operation":"Update","apiVersion":"apps/v1","subresource":"status"}"#
        );
    }

    #[test]
    fn invalid_entries_are_errors() {
        let ok = json!({"manager": "m", "operation": "Update", "apiVersion": "v1",
                        "fieldsType": "FieldsV1", "fieldsV1": {}});
        assert!(ManagedFieldsEntry::from_json(0, &ok).is_ok());
        let mut bad = ok.clone();
        bad["operation"] = json!("Patch");
        assert_eq!(
            ManagedFieldsEntry::from_json(0, &bad),
            Err(ManagedFieldsError::BadOperation)
        );
        let mut bad = ok.clone();
        bad["apiVersion"] = json!("");
        assert_eq!(
            ManagedFieldsEntry::from_json(0, &bad),
            Err(ManagedFieldsError::EmptyApiVersion)
        );
        let mut bad = ok.clone();
        bad.as_object_mut().unwrap().remove("fieldsType");
        assert_eq!(
            ManagedFieldsEntry::from_json(3, &bad)
                .unwrap_err()
                .to_string(),
            "missing fieldsType in managed fields entry 3"
        );
        let mut bad = ok;
        bad["fieldsV1"] = json!({"f:a": 1});
        assert!(ManagedFieldsEntry::from_json(0, &bad).is_err());
    }

    #[test]
    fn updaters_beyond_the_cap_merge_into_ancient_changes() {
        let mut m = Managed::default();
        for i in 0..12 {
            let key = ManagerKey::new(&format!("m{i:02}"), Operation::Update, "v1", "");
            m.fields.insert(
                key.clone(),
                VersionedSet::new(
                    FieldSet::from_paths([crate::path::FieldPath::fields([format!("f{i}")])]),
                    "v1".into(),
                    false,
                ),
            );
            m.times.insert(
                key,
                Some(Timestamp::from_second(1_700_000_000 + i).unwrap()),
            );
        }
        m.cap_updaters(10);
        assert_eq!(m.fields.len(), 10);
        let bucket = ManagerKey::new("ancient-changes", Operation::Update, "v1", "");
        let b = &m.fields[&bucket];
        assert_eq!(b.set.len(), 3, "m00, m01 and m02 merged");
        assert_eq!(
            m.times[&bucket],
            Some(Timestamp::from_second(1_700_000_002).unwrap())
        );
    }
}
