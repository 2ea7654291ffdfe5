//! Evaluating a pod against a level at a version (Kubernetes' check registry):
//! which checks apply, which version of each, in which order.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize as _;
use serde_json::Value;

use crate::Error;
use crate::checks::{CHECKS, Pod};
use crate::level::{Level, LevelVersion, Version};
use crate::violation::Violation;

/// Evaluates pods against levels. `latest` (and any version newer than the
/// evaluator knows) means the newest policy it has — or, when emulating an older
/// Kubernetes, that version's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluator {
    /// The minor version `latest` resolves to.
    max_minor: u32,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}

/// The newest minor version at which any check changed.
fn newest_minor() -> u32 {
    CHECKS
        .iter()
        .flat_map(|c| c.versions.iter().map(|v| v.since))
        .max()
        .unwrap_or(0)
}

impl Evaluator {
    /// Every check this library knows, `latest` meaning the newest rules (those of
    /// Kubernetes v1.37).
    pub fn new() -> Self {
        Self {
            max_minor: newest_minor(),
        }
    }

    /// Evaluates as a Kubernetes API server of `version` would: `latest` and newer
    /// versions mean `version`'s rules (kube-apiserver's emulation version).
    /// `Version::Latest` is the same as [`Evaluator::new`].
    pub fn emulating(version: Version) -> Self {
        let newest = newest_minor();
        match version {
            Version::Latest => Self { max_minor: newest },
            Version::V1(minor) => Self {
                max_minor: minor.min(newest),
            },
        }
    }

    /// The version whose rules `latest` applies.
    pub fn latest(&self) -> Version {
        Version::V1(self.max_minor)
    }

    /// The checks `pod` fails at `level` (none at privileged), baseline checks first.
    pub fn check_pod(
        &self,
        level: &LevelVersion,
        metadata: &ObjectMeta,
        spec: &PodSpec,
    ) -> Vec<Violation> {
        let empty = BTreeMap::new();
        let pod = Pod {
            annotations: metadata.annotations.as_ref().unwrap_or(&empty),
            spec,
        };
        self.evaluate(level, &pod)
    }

    /// [`Evaluator::check_pod`] over JSON: `metadata` and `spec` of a pod or pod
    /// template, as the API server holds them (`Value::Null` when absent).
    pub fn check_pod_value(
        &self,
        level: &LevelVersion,
        metadata: &Value,
        spec: &Value,
    ) -> Result<Vec<Violation>, Error> {
        if level.level == Level::Privileged {
            return Ok(Vec::new());
        }
        let pod = DecodedPod::decode(metadata, spec, "/metadata/annotations", "/spec")?;
        Ok(self.evaluate(level, &pod.view()))
    }

    pub(crate) fn evaluate(&self, level: &LevelVersion, pod: &Pod<'_>) -> Vec<Violation> {
        let restricted = match level.level {
            Level::Privileged => return Vec::new(),
            Level::Baseline => false,
            Level::Restricted => true,
        };
        let minor = match level.version {
            Version::Latest => self.max_minor,
            Version::V1(minor) => minor.min(self.max_minor),
        };
        let overridden: Vec<&str> = if restricted {
            CHECKS
                .iter()
                .filter(|c| c.level == Level::Restricted)
                .filter_map(|c| c.at(minor))
                .flat_map(|v| v.overrides.iter().copied())
                .collect()
        } else {
            Vec::new()
        };
        CHECKS
            .iter()
            .filter(|c| restricted || c.level == Level::Baseline)
            .filter(|c| !overridden.contains(&c.id))
            .filter_map(|c| c.at(minor))
            .filter_map(|v| (v.check)(pod))
            .collect()
    }
}

/// A pod's annotations and spec decoded from JSON once, for several evaluations.
pub(crate) struct DecodedPod {
    annotations: BTreeMap<String, String>,
    spec: PodSpec,
}

impl DecodedPod {
    /// Decodes `metadata.annotations` and `spec`; `*_path` name them in errors.
    pub fn decode(
        metadata: &Value,
        spec: &Value,
        annotations_path: &'static str,
        spec_path: &'static str,
    ) -> Result<Self, Error> {
        let annotations = match metadata.get("annotations") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(a) => {
                BTreeMap::deserialize(a).map_err(|source| Error::AnnotationsDecodeFailed {
                    path: annotations_path,
                    source,
                })?
            }
        };
        let spec = match spec {
            Value::Null => PodSpec::default(),
            s => PodSpec::deserialize(s).map_err(|source| Error::PodSpecDecodeFailed {
                path: spec_path,
                source,
            })?,
        };
        Ok(Self { annotations, spec })
    }

    pub fn view(&self) -> Pod<'_> {
        Pod {
            annotations: &self.annotations,
            spec: &self.spec,
        }
    }

    pub fn runtime_class_name(&self) -> Option<&str> {
        self.spec.runtime_class_name.as_deref()
    }
}

/// The checks a pod fails at `level` and `version`, with every check this library
/// knows (`latest` = the newest rules). See [`Evaluator`] to emulate an older
/// Kubernetes.
pub fn check_pod(
    level: Level,
    version: Version,
    metadata: &ObjectMeta,
    spec: &PodSpec,
) -> Vec<Violation> {
    Evaluator::new().check_pod(&LevelVersion::new(level, version), metadata, spec)
}

/// [`check_pod`] over JSON `metadata` and `spec` (of a pod, or of a pod template
/// found with [`pod_template`](crate::pod_template)).
pub fn check_pod_value(
    level: Level,
    version: Version,
    metadata: &Value,
    spec: &Value,
) -> Result<Vec<Violation>, Error> {
    Evaluator::new().check_pod_value(&LevelVersion::new(level, version), metadata, spec)
}
