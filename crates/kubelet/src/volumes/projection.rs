//! What configMap, secret, downwardAPI and projected volumes contain: payloads
//! built from API objects and the pod, with the kubelet's defaults and messages.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection,
};
use kube::Api;
use kube::api::PostParams;

use super::atomic::{FileProjection, Payload};
use crate::env::{self, Allocatable};

/// Mode of projected files unless the volume says otherwise.
pub(crate) const DEFAULT_MODE: i32 = 0o644;
/// A service account token's lifetime unless the projection says otherwise.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// A token is renewed once it is older than this, whatever its expiry.
const MAX_TOKEN_AGE: Duration = Duration::from_secs(24 * 3600);

fn mode_bits(m: i32) -> u32 {
    (m as u32) & 0o7777
}

/// ConfigMap `data` and `binaryData` as bytes.
pub(crate) fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.entry(k.clone()).or_insert_with(|| v.0.clone());
    }
    out
}

/// Secret `data`.
pub(crate) fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// The files of a configMap or secret source: every key, or the listed `items`
/// (key -> path, mode). `what` names the object in the missing-key message
/// (`configmap` or `secret`).
pub(crate) fn key_payload(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_bits(default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(if what == "configmap" {
                        format!("configmap references non-existent config key: {}", item.key)
                    } else {
                        format!("references non-existent secret key: {}", item.key)
                    });
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_bits(item.mode.unwrap_or(default_mode)),
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// The files of downwardAPI items; label and annotation maps as sorted lines.
pub(crate) fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    allocatable: &Allocatable,
    default_mode: i32,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::volume_field(pod, f)
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            match env::find_container(pod, name) {
                Some(c) => env::resource_value(r, c, allocatable),
                None => Err(format!("container {name} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.into_bytes(),
                        mode: mode_bits(item.mode.unwrap_or(default_mode)),
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(aggregate(errors))
    }
}

/// Whether any item needs the node's allocatable.
pub(crate) fn downward_needs_allocatable(items: &[DownwardAPIVolumeFile], pod: &Pod) -> bool {
    items.iter().any(|i| {
        i.resource_field_ref.as_ref().is_some_and(|r| {
            let name = r.container_name.as_deref().unwrap_or_default();
            env::find_container(pod, name).is_some_and(|c| env::needs_allocatable(&r.resource, c))
        })
    })
}

/// Go's `utilerrors.NewAggregate(...).Error()`.
pub(crate) fn aggregate(mut errors: Vec<String>) -> String {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// A service account token in a projected volume.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// The JWT.
    pub token: String,
    /// When the agent got it.
    pub issued: SystemTime,
    /// When it expires.
    pub expires: SystemTime,
}

impl Token {
    /// Past 80% of its lifetime, or older than 24 hours: the kubelet's rule.
    pub(crate) fn needs_renewal(&self, now: SystemTime) -> bool {
        let lifetime = self.expires.duration_since(self.issued).unwrap_or_default();
        let age = now.duration_since(self.issued).unwrap_or_default();
        age >= lifetime.mul_f64(0.8) || age >= MAX_TOKEN_AGE
    }
}

/// Requests a token for the pod's service account, bound to the pod.
pub(crate) async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
) -> Result<Token, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: source
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: Some(source.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let issued = SystemTime::now();
    let reply = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("failed to fetch token: {e}"))?;
    let status = reply
        .status
        .ok_or_else(|| "failed to fetch token: the reply has no status".to_string())?;
    let expires = SystemTime::from(status.expiration_timestamp.0);
    Ok(Token {
        token: status.token,
        issued,
        expires,
    })
}
