//! The field manager of one kind at one endpoint: what kube-apiserver's
//! `FieldManager` does around structured-merge-diff on every write
//! (apimachinery `managedfields/internal`): decoding `managedFields` from
//! the request or the live object, stripping metadata from ownership,
//! timestamps, capping updaters at ten, the `before-first-apply` manager,
//! and the client-side-apply upgrade through the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation.

use std::sync::LazyLock;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::conflict::Conflicts;
use crate::managers::{
    Managed, ManagedFieldsEntry, ManagedFieldsError, ManagerKey, Operation, VersionedSet,
};
use crate::path::{FieldPath, write_go_json};
use crate::schema::Schema;
use crate::set::FieldSet;
use crate::typed::{Skip, TypeErrors, compare, to_field_set, validate};
use crate::updater::Updater;

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Updaters kept before the oldest merge into `ancient-changes`.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager `kubectl apply --server-side` uses, whose applies upgrade
/// client-side-applied objects.
const KUBECTL_MANAGER: &str = "kubectl";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
/// `apimachinery/pkg/api/validation.TotalAnnotationSizeLimitB`.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Other managers own fields the configuration sets differently (409).
    #[error("{0}")]
    Conflicts(Conflicts),
    /// The configuration is for another kind or version, or carries
    /// `metadata.managedFields` (400).
    #[error("{0}")]
    BadRequest(String),
    /// The configuration does not fit the schema (Kubernetes answers 500
    /// with this message and no reason).
    #[error("failed to create typed patch object ({object}): {errors}")]
    InvalidConfiguration {
        /// `namespace/name; group/version, Kind=Kind`.
        object: String,
        /// What does not fit.
        errors: TypeErrors,
    },
    /// The live object's `managedFields` cannot be read (500).
    #[error("failed to decode managed fields: {0}")]
    LiveManagedFields(ManagedFieldsError),
}

impl Error {
    /// The `Status` error the API answers with.
    pub fn to_api_error(&self) -> api::status::ApiError {
        match self {
            Error::Conflicts(c) => c.to_api_error(),
            Error::BadRequest(m) => api::status::ApiError::bad_request(m.clone()),
            // Plain errors inside kube-apiserver: 500 with an empty
            // (unknown) reason and the message as is.
            Error::InvalidConfiguration { .. } | Error::LiveManagedFields(_) => {
                api::status::ApiError {
                    code: 500,
                    reason: "",
                    message: self.to_string(),
                    details: None,
                    retry_after_seconds: None,
                }
            }
        }
    }
}

/// The result of an apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The object to persist, with `metadata.managedFields` set (defaults
    /// are still to be applied by the caller).
    pub object: Value,
    /// The entries written to `metadata.managedFields`.
    pub managed_fields: Vec<ManagedFieldsEntry>,
    /// Whether the object (other than its managed fields) changed.
    pub changed: bool,
}

/// Field management for one kind, version and subresource.
#[derive(Debug, Clone)]
pub struct FieldManager {
    schema: Schema,
    api_version: String,
    kind: String,
    subresource: String,
    reset_fields: FieldSet,
    /// `reset_fields` and `metadata.managedFields`: what comparisons skip.
    skipped: Skip,
}

impl FieldManager {
    /// A field manager for objects of `api_version` (`apps/v1`, `v1`) and `kind`.
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>, schema: Schema) -> Self {
        FieldManager {
            schema,
            api_version: api_version.into(),
            kind: kind.into(),
            subresource: String::new(),
            reset_fields: FieldSet::new(),
            skipped: Skip::from_fields(&MANAGED_FIELDS),
        }
    }

    /// A field manager for a built-in kind (`""` is the core group).
    pub fn for_builtin(group: &str, version: &str, kind: &str) -> Option<Self> {
        let schema = Schema::for_kind(group, version, kind)?;
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(Self::new(api_version, kind, schema))
    }

    /// Writes go through this subresource (`status`, `scale`): managers are
    /// recorded with it, and `managedFields` sent in requests are ignored.
    pub fn with_subresource(mut self, subresource: impl Into<String>) -> Self {
        self.subresource = subresource.into();
        self
    }

    /// Fields this endpoint resets (e.g. `status` on the main resource,
    /// everything but `status` on the status subresource): nobody gains
    /// ownership of them here.
    pub fn with_reset_fields(mut self, fields: FieldSet) -> Self {
        self.skipped = Skip::from_fields(&fields.union(&MANAGED_FIELDS));
        self.reset_fields = fields;
        self
    }

    fn updater(&self) -> Updater<'_> {
        Updater {
            root: self.schema.root(),
            ignored: &self.reset_fields,
            skipped: &self.skipped,
        }
    }

    /// Bookkeeping for a create (`live` is `None`), update or non-apply
    /// patch by `manager`: `new` is the object about to be persisted; the
    /// result is that object with `metadata.managedFields` updated. It never
    /// fails: unreadable managed fields fall back to the live object's, as
    /// Kubernetes' `UpdateNoErrors` does.
    ///
    /// A write that changes nothing and sends no managed fields of its own
    /// keeps the live object's `managedFields` as they are, without decoding
    /// and encoding them again.
    pub fn update(
        &self,
        live: Option<&Value>,
        mut new: Value,
        manager: &str,
        now: Timestamp,
    ) -> Value {
        let sent = take_managed_fields(&mut new);
        if let Some(live) = live {
            let live_mf = managed_fields_of(live);
            let sent_ignored =
                !self.subresource.is_empty() || sent.is_none() || sent.as_ref() == live_mf;
            if sent_ignored && same_but_bookkeeping(live, &new) {
                if let Some(mf) = live_mf {
                    set_managed_fields(&mut new, mf.clone());
                }
                return new;
            }
        }
        let (mut managed, decoded_from) = self.decode_live_or_new(live, sent.as_ref());
        // Objects that exist untracked stay untracked until their first apply.
        if managed.fields.is_empty() && live.is_some_and(has_uid) {
            return new;
        }
        let zero;
        let old = match live {
            Some(live) => live,
            None => {
                zero = self.schema.zero_object();
                &zero
            }
        };
        self.record_update(old, &new, &mut managed, manager, now);
        encode(&mut new, &managed, decoded_from);
        new
    }

    fn record_update(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut Managed,
        manager: &str,
        now: Timestamp,
    ) {
        let key = ManagerKey::new(
            manager,
            Operation::Update,
            &self.api_version,
            &self.subresource,
        );
        // The writer's own earlier entry is kept out of the ownership
        // transfer and brought up to date below, so that an unchanged set
        // keeps its decoded `fieldsV1` (an updater's key holds its version
        // and never applied).
        let previous = managed.fields.remove(&key);
        let (changed, removed) = self.updater().update(old, new, &mut managed.fields);
        let current = if removed.is_empty() {
            changed.difference(&STRIP_SET)
        } else {
            changed.difference(&removed).difference(&STRIP_SET)
        };
        let wrote = !current.is_empty();
        let entry = match previous {
            Some(mut previous) => {
                // As Kubernetes does it: the earlier set loses what this write
                // changed or removed, then gains what it set.
                let dropped = changed.union(&removed).difference(&current);
                if !current.difference(&previous.set).is_empty()
                    || !previous.set.intersection(&dropped).is_empty()
                {
                    let set = previous.set.difference(&dropped).union(&current);
                    previous.replace_set(set);
                }
                previous
            }
            None => VersionedSet::new(current, self.api_version.clone(), false),
        };
        if wrote {
            managed.times.insert(key.clone(), Some(now));
        }
        managed.fields.insert(key, entry);
        managed.drop_empty();
        managed.cap_updaters(MAX_UPDATE_MANAGERS);
    }

    /// Server-side apply of `config` by `manager` to `live` (`None` to
    /// create): the merged object with its managed fields, or the conflicts
    /// (unless `force`, which moves the contested fields to `manager`).
    pub fn apply(
        &self,
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
        now: Timestamp,
    ) -> Result<Applied, Error> {
        let managed =
            Managed::decode(live.and_then(managed_fields_of)).map_err(Error::LiveManagedFields)?;
        self.check_kind(config)?;
        let result = self.apply_once(live, config, managed.clone(), manager, force, now);
        let mut applied = match result {
            Err(Error::Conflicts(conflicts)) if manager == KUBECTL_MANAGER => {
                // Upgrading from client-side apply: fields whose live value is
                // still what kubectl last applied client-side are not conflicts.
                let allowed = live.and_then(|l| self.allowed_from_last_applied(l));
                let Some(allowed) = allowed else {
                    return Err(Error::Conflicts(conflicts));
                };
                let remaining: Vec<_> = conflicts
                    .0
                    .iter()
                    .filter(|c| !allowed.has(&c.path.0))
                    .cloned()
                    .collect();
                if !remaining.is_empty() {
                    return Err(Error::Conflicts(Conflicts(remaining)));
                }
                self.apply_once(live, config, managed, manager, true, now)?
            }
            other => other?,
        };
        if manager == KUBECTL_MANAGER && has_last_applied(&applied.object) {
            set_last_applied(&mut applied.object, &build_last_applied(config));
        }
        Ok(applied)
    }

    fn apply_once(
        &self,
        live: Option<&Value>,
        config: &Value,
        mut managed: Managed,
        manager: &str,
        force: bool,
        now: Timestamp,
    ) -> Result<Applied, Error> {
        let zero = self.schema.zero_object();
        let decoded_from = live.and_then(managed_fields_of);
        let live = live
            .map(without_managed_fields)
            .unwrap_or_else(|| zero.clone());
        if managed.fields.is_empty() && live != zero {
            // Someone set these fields before the first apply.
            self.record_update(&zero, &live, &mut managed, BEFORE_FIRST_APPLY, now);
        }
        if config
            .get("metadata")
            .and_then(|m| m.get("managedFields"))
            .is_some_and(|mf| !mf.is_null())
        {
            return Err(Error::BadRequest(
                "metadata.managedFields must be nil".to_owned(),
            ));
        }
        let errors = validate(config, self.schema.root());
        if !errors.is_empty() {
            return Err(Error::InvalidConfiguration {
                object: self.describe(config),
                errors: TypeErrors(errors),
            });
        }
        let key = ManagerKey::new(
            manager,
            Operation::Apply,
            &self.api_version,
            &self.subresource,
        );
        let merged = self
            .updater()
            .apply(
                &live,
                config,
                &self.api_version,
                &mut managed.fields,
                &key,
                force,
            )
            .map_err(Error::Conflicts)?;
        if let Some(vs) = managed.fields.get_mut(&key) {
            let stripped = vs.set.difference(&STRIP_SET);
            vs.replace_set(stripped);
        }
        managed.drop_empty();
        let changed = merged.is_some();
        let mut object = match merged {
            Some(m) => {
                managed.times.insert(key, Some(now));
                m
            }
            None => live,
        };
        encode(&mut object, &managed, decoded_from);
        Ok(Applied {
            object,
            managed_fields: managed.entries(),
            changed,
        })
    }

    /// `invalid object type` unless the configuration is of this kind and version.
    fn check_kind(&self, config: &Value) -> Result<(), Error> {
        let api_version = config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version == self.api_version && kind == self.kind {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "invalid object type: {}",
            gvk_string(api_version, kind)
        )))
    }

    fn describe(&self, obj: &Value) -> String {
        let meta = obj.get("metadata");
        let field = |name: &str| {
            meta.and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        format!(
            "{}/{}; {}",
            field("namespace"),
            field("name"),
            gvk_string(&self.api_version, &self.kind)
        )
    }

    /// `decodeLiveOrNew`: managed fields `sent` with the request replace the
    /// live ones (`[]` or `[{}]` resets them), unless they are unreadable or
    /// empty, or the write is to a subresource.
    /// Also returns the list the result was decoded from.
    fn decode_live_or_new<'v>(
        &self,
        live: Option<&'v Value>,
        sent: Option<&'v Value>,
    ) -> (Managed, Option<&'v Value>) {
        let from_live = || {
            let list = live.and_then(managed_fields_of);
            match Managed::decode(list) {
                Ok(m) => (m, list),
                Err(_) => (Managed::default(), None),
            }
        };
        if !self.subresource.is_empty() {
            return from_live();
        }
        if sent.is_some_and(is_reset) {
            return (Managed::default(), None);
        }
        match Managed::decode(sent) {
            Ok(m) if !m.fields.is_empty() => (m, sent),
            _ => from_live(),
        }
    }

    /// The fields kubectl applied client-side whose live values are still the
    /// applied ones.
    fn allowed_from_last_applied(&self, live: &Value) -> Option<FieldSet> {
        let text = live
            .get("metadata")?
            .get("annotations")?
            .get(LAST_APPLIED_ANNOTATION)?
            .as_str()
            .filter(|s| !s.is_empty())?;
        let last: Value = serde_json::from_str(text).ok()?;
        if last.get("apiVersion").and_then(Value::as_str) != Some(self.api_version.as_str()) {
            return None;
        }
        let root = self.schema.root();
        if !validate(&last, root).is_empty() {
            return None;
        }
        let live = without_managed_fields(live);
        let c = compare(Some(&last), Some(&live), root);
        Some(
            to_field_set(&last, root)
                .difference(&c.modified)
                .difference(&c.added)
                .difference(&c.removed),
        )
    }
}

/// `metadata.managedFields`, which no comparison needs to look at.
static MANAGED_FIELDS: LazyLock<FieldSet> =
    LazyLock::new(|| FieldSet::from_paths([FieldPath::fields(["metadata", "managedFields"])]));

/// What `stripMetaManager` keeps out of every manager's set.
static STRIP_SET: LazyLock<FieldSet> = LazyLock::new(strip_set);

fn strip_set() -> FieldSet {
    let mut s = FieldSet::from_paths([
        FieldPath::fields(["apiVersion"]),
        FieldPath::fields(["kind"]),
        FieldPath::fields(["metadata"]),
    ]);
    for f in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&FieldPath::fields(["metadata", f]).0);
    }
    s
}

fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    format!("{group}/{version}, Kind={kind}")
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn has_uid(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .is_some_and(|u| !u.is_empty())
}

/// `isResetManagedFields`: an empty list, or a list of one empty entry.
fn is_reset(mf: &Value) -> bool {
    match mf.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Removes `metadata.managedFields` from `obj` and returns it.
fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")?
        .as_object_mut()?
        .shift_remove("managedFields")
}

fn set_managed_fields(obj: &mut Value, mf: Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".to_owned(), mf);
    }
}

/// Whether two objects differ at most in `metadata.managedFields` and
/// `metadata.resourceVersion` (compared without copying either).
fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| match (k.as_str(), b.get(k)) {
            ("metadata", Some(w)) => same_metadata(v, w),
            (_, w) => w == Some(v),
        })
}

fn same_metadata(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &'_ Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "managedFields" | "resourceVersion"))
            .count()
    };
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "managedFields" | "resourceVersion"))
            .all(|(k, v)| b.get(k) == Some(v))
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
    obj
}

/// Writes the entries into `metadata.managedFields` (removing it when
/// none); `decoded_from` is the list `managed` was read from.
fn encode(obj: &mut Value, managed: &Managed, decoded_from: Option<&Value>) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if managed.fields.is_empty() {
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("managedFields".to_owned(), managed.encode(decoded_from));
    }
}

fn has_last_applied(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// The annotation value kubectl would write for `config`: the configuration
/// without the annotation, as Go encodes JSON, with a trailing newline.
fn build_last_applied(config: &Value) -> String {
    let mut config = config.clone();
    if let Some(annotations) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    let mut out = String::new();
    write_go_json(&mut out, &config);
    out.push('\n');
    out
}

/// Sets the annotation, or drops it when the annotations would grow past
/// Kubernetes' total size limit.
fn set_last_applied(obj: &mut Value, value: &str) {
    let Some(annotations) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), value.into());
    let size: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
}
