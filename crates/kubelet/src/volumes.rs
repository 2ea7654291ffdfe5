//! A pod's volumes on the host, laid out the way the kubelet lays them out under
//! `<pod-dir>/volumes/<plugin>/<name>` (`kubernetes.io~empty-dir`, `~configmap`,
//! `~secret`, `~downward-api`, `~projected`), and the CRI mounts of its containers.
//!
//! configMap, secret, downwardAPI and projected volumes are written atomically
//! (see `atomic`) and re-projected in place by [`PodVolumes::refresh`]; secret,
//! downwardAPI and projected volumes, and emptyDir with medium Memory, are tmpfs
//! mounts that [`PodVolumes::teardown`] finds again in `/proc/self/mountinfo`.

#[cfg(test)]
mod api_tests;
mod atomic;
mod host_path;
mod mounts;
mod ownership;
mod projection;
mod subpath;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolume, PersistentVolumeClaim, Pod, Volume, VolumeProjection,
};
use kube::Api;

use crate::Error;
use crate::env::{self, Allocatable, ApiObjects, Objects};
use atomic::Payload;
use projection::{DEFAULT_MODE, Token};

/// What backs a volume on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    Claim,
}

impl Kind {
    /// The kubelet's plugin directory name, for volumes that live in the pod dir.
    fn plugin_dir(self) -> Option<&'static str> {
        Some(match self {
            Kind::EmptyDir => "kubernetes.io~empty-dir",
            Kind::ConfigMap => "kubernetes.io~configmap",
            Kind::Secret => "kubernetes.io~secret",
            Kind::DownwardApi => "kubernetes.io~downward-api",
            Kind::Projected => "kubernetes.io~projected",
            Kind::HostPath | Kind::Claim => return None,
        })
    }

    /// Projections the kubelet always mounts read-only.
    fn read_only(self) -> bool {
        matches!(
            self,
            Kind::ConfigMap | Kind::Secret | Kind::DownwardApi | Kind::Projected
        )
    }

    /// Kept on tmpfs.
    fn in_memory(self) -> bool {
        matches!(self, Kind::Secret | Kind::DownwardApi | Kind::Projected)
    }

    fn of(v: &Volume) -> Option<Kind> {
        Some(if v.empty_dir.is_some() {
            Kind::EmptyDir
        } else if v.host_path.is_some() {
            Kind::HostPath
        } else if v.config_map.is_some() {
            Kind::ConfigMap
        } else if v.secret.is_some() {
            Kind::Secret
        } else if v.downward_api.is_some() {
            Kind::DownwardApi
        } else if v.projected.is_some() {
            Kind::Projected
        } else if v.persistent_volume_claim.is_some() {
            Kind::Claim
        } else {
            return None;
        })
    }
}

/// One volume on the host.
#[derive(Debug, Clone)]
struct HostVolume {
    kind: Kind,
    path: PathBuf,
    read_only: bool,
}

/// Where each of a pod's volumes is on the host, by volume name, and the service
/// account tokens projected into them.
#[allow(dead_code)]
#[derive(Debug)]
pub(crate) struct PodVolumes {
    volumes: BTreeMap<String, HostVolume>,
    node_name: String,
    /// Tokens by `<volume>/<path>`.
    tokens: Mutex<BTreeMap<String, Token>>,
    /// One projection at a time.
    writing: tokio::sync::Mutex<()>,
}

/// The kubelet's FailedMount wording.
fn mount_failed(volume: &str, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!(
        "MountVolume.SetUp failed for volume \"{volume}\" : {msg}"
    ))
}

fn make_dir(path: &Path, mode: u32) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    let current = fs::metadata(path)
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if current & 0o777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The pod's memory limit when every container has one (init containers: the
/// largest of them), as the pod cgroup gets it.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| api::quantity::value(&q.0))
            .filter(|v| *v > 0)
    };
    let mut sum = 0i64;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    for c in spec.init_containers.iter().flatten() {
        sum = sum.max(limit(c)?);
    }
    Some(sum)
}

/// A memory-backed volume's tmpfs size, as the kubelet computes it: the node's
/// allocatable memory, lowered to the pod's memory limit and then the volume's
/// sizeLimit when they are smaller.
fn tmpfs_size(
    allocatable: Option<&Allocatable>,
    pod: &Pod,
    size_limit: Option<i64>,
) -> Option<i64> {
    let mut size = allocatable
        .and_then(|a| a.get("memory"))
        .and_then(|q| api::quantity::value(&q.0));
    for candidate in [pod_memory_limit(pod), size_limit].into_iter().flatten() {
        if candidate > 0 && size.is_none_or(|s| candidate <= s) {
            size = Some(candidate);
        }
    }
    size
}

/// Applies `pod`'s fsGroup to a volume directory, not recursing.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("volume task failed: {e}"))?
}

#[allow(dead_code)]
impl PodVolumes {
    /// Sets up every volume of `pod` under `pod_dir/volumes`. Safe to call again
    /// for the same pod (after an agent restart): existing mounts and emptyDir
    /// contents are kept, projections brought up to date. Errors carry the
    /// kubelet's FailedMount wording.
    pub(crate) async fn setup(
        client: &kube::Client,
        pod: &Pod,
        pod_dir: &Path,
        node_name: &str,
    ) -> Result<PodVolumes, Error> {
        let root = pod_dir.join("volumes");
        fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let root = fs::canonicalize(&root)
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        let this = PodVolumes {
            volumes: BTreeMap::new(),
            node_name: node_name.to_string(),
            tokens: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
        };
        let objects = ApiObjects { client, node_name };
        let mut allocatable: Option<Option<Allocatable>> = None;
        let mut volumes = BTreeMap::new();
        let spec_volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default();
        for vol in spec_volumes {
            let name = vol.name.as_str();
            let Some(kind) = Kind::of(vol) else {
                return Err(mount_failed(name, "no volume plugin matched"));
            };
            let mut read_only = kind.read_only();
            let path = match kind.plugin_dir() {
                Some(plugin) => root.join(plugin).join(name),
                None => PathBuf::new(),
            };
            let path = match kind {
                Kind::HostPath => {
                    let hp = vol
                        .host_path
                        .as_ref()
                        .map(|h| (h.path.clone(), h.type_.clone()));
                    let (p, t) = hp.unwrap_or_default();
                    let checked = p.clone();
                    blocking(move || host_path::check(&checked, t.as_deref()))
                        .await
                        .map_err(|e| mount_failed(name, e))?;
                    PathBuf::from(p)
                }
                Kind::Claim => {
                    let source = vol.persistent_volume_claim.as_ref();
                    let claim = source.map(|c| c.claim_name.as_str()).unwrap_or_default();
                    read_only = source.and_then(|c| c.read_only).unwrap_or(false);
                    claim_path(client, pod, claim).await?
                }
                Kind::EmptyDir => {
                    make_dir(&path, 0o777).map_err(|e| mount_failed(name, e))?;
                    let ed = vol.empty_dir.as_ref();
                    if ed.and_then(|e| e.medium.as_deref()) == Some("Memory") {
                        let limit = ed
                            .and_then(|e| e.size_limit.as_ref())
                            .and_then(|q| api::quantity::value(&q.0));
                        let alloc = node_allocatable(&objects, &mut allocatable).await;
                        let size = tmpfs_size(alloc.as_ref(), pod, limit);
                        mounts::mount_tmpfs(&path, size).map_err(|e| mount_failed(name, e))?;
                        make_dir(&path, 0o777).map_err(|e| mount_failed(name, e))?;
                    }
                    if let Some(gid) = fs_group(pod) {
                        let p = path.clone();
                        blocking(move || ownership::apply_dir(&p, gid).map_err(|e| e.to_string()))
                            .await
                            .map_err(|e| mount_failed(name, e))?;
                    }
                    path
                }
                Kind::ConfigMap | Kind::Secret | Kind::DownwardApi | Kind::Projected => {
                    make_dir(&path, 0o777).map_err(|e| mount_failed(name, e))?;
                    if kind.in_memory() {
                        let alloc = node_allocatable(&objects, &mut allocatable).await;
                        let size = tmpfs_size(alloc.as_ref(), pod, None);
                        mounts::mount_tmpfs(&path, size).map_err(|e| mount_failed(name, e))?;
                        make_dir(&path, 0o777).map_err(|e| mount_failed(name, e))?;
                    }
                    let payload = this
                        .payload(client, &objects, pod, vol, kind, false)
                        .await
                        .map_err(|e| mount_failed(name, e))?;
                    write_payload(&path, payload, fs_group(pod))
                        .await
                        .map_err(|e| mount_failed(name, e))?;
                    path
                }
            };
            volumes.insert(
                name.to_string(),
                HostVolume {
                    kind,
                    path,
                    read_only,
                },
            );
        }
        Ok(PodVolumes { volumes, ..this })
    }

    /// The payload of a projected kind of volume. Tokens are reused unless due
    /// for renewal (or `renew_all`).
    async fn payload(
        &self,
        client: &kube::Client,
        objects: &ApiObjects<'_>,
        pod: &Pod,
        vol: &Volume,
        kind: Kind,
        renew_all: bool,
    ) -> Result<Payload, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api_msg = |e: Error| e.to_string();
        match kind {
            Kind::ConfigMap => {
                let Some(src) = vol.config_map.as_ref() else {
                    return Ok(Payload::new());
                };
                let optional = src.optional.unwrap_or(false);
                let data = match objects.config_map(ns, &src.name).await.map_err(api_msg)? {
                    Some(cm) => projection::config_map_data(&cm),
                    None if optional => BTreeMap::new(),
                    None => return Err(format!("configmap \"{}\" not found", src.name)),
                };
                projection::key_payload(
                    "configmap",
                    &data,
                    src.items.as_deref(),
                    src.default_mode.unwrap_or(DEFAULT_MODE),
                    optional,
                )
            }
            Kind::Secret => {
                let Some(src) = vol.secret.as_ref() else {
                    return Ok(Payload::new());
                };
                let name = src.secret_name.as_deref().unwrap_or_default();
                let optional = src.optional.unwrap_or(false);
                let data = match objects.secret(ns, name).await.map_err(api_msg)? {
                    Some(s) => projection::secret_data(&s),
                    None if optional => BTreeMap::new(),
                    None => return Err(format!("secret \"{name}\" not found")),
                };
                projection::key_payload(
                    "secret",
                    &data,
                    src.items.as_deref(),
                    src.default_mode.unwrap_or(DEFAULT_MODE),
                    optional,
                )
            }
            Kind::DownwardApi => {
                let Some(src) = vol.downward_api.as_ref() else {
                    return Ok(Payload::new());
                };
                let items = src.items.as_deref().unwrap_or_default();
                let alloc = if projection::downward_needs_allocatable(items, pod) {
                    objects.allocatable().await.map_err(api_msg)?
                } else {
                    Allocatable::new()
                };
                projection::downward_payload(
                    items,
                    pod,
                    &alloc,
                    src.default_mode.unwrap_or(DEFAULT_MODE),
                )
            }
            Kind::Projected => {
                let Some(src) = vol.projected.as_ref() else {
                    return Ok(Payload::new());
                };
                let default_mode = src.default_mode.unwrap_or(DEFAULT_MODE);
                let mut payload = Payload::new();
                let mut errors = Vec::new();
                for source in src.sources.iter().flatten() {
                    match self
                        .projected_source(
                            client,
                            objects,
                            pod,
                            &vol.name,
                            source,
                            default_mode,
                            renew_all,
                        )
                        .await
                    {
                        Ok(p) => payload.extend(p),
                        Err(e) => errors.push(e),
                    }
                }
                if errors.is_empty() {
                    Ok(payload)
                } else {
                    Err(projection::aggregate(errors))
                }
            }
            Kind::EmptyDir | Kind::HostPath | Kind::Claim => Ok(Payload::new()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn projected_source(
        &self,
        client: &kube::Client,
        objects: &ApiObjects<'_>,
        pod: &Pod,
        volume: &str,
        source: &VolumeProjection,
        default_mode: i32,
        renew_all: bool,
    ) -> Result<Payload, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(s) = &source.config_map {
            let optional = s.optional.unwrap_or(false);
            let data = match objects
                .config_map(ns, &s.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(cm) => projection::config_map_data(&cm),
                None if optional => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", s.name)),
            };
            return projection::key_payload(
                "configmap",
                &data,
                s.items.as_deref(),
                default_mode,
                optional,
            );
        }
        if let Some(s) = &source.secret {
            let optional = s.optional.unwrap_or(false);
            let data = match objects
                .secret(ns, &s.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(sec) => projection::secret_data(&sec),
                None if optional => BTreeMap::new(),
                None => return Err(format!("secret \"{}\" not found", s.name)),
            };
            return projection::key_payload(
                "secret",
                &data,
                s.items.as_deref(),
                default_mode,
                optional,
            );
        }
        if let Some(d) = &source.downward_api {
            let items = d.items.as_deref().unwrap_or_default();
            let alloc = if projection::downward_needs_allocatable(items, pod) {
                objects.allocatable().await.map_err(|e| e.to_string())?
            } else {
                Allocatable::new()
            };
            return projection::downward_payload(items, pod, &alloc, default_mode);
        }
        if let Some(t) = &source.service_account_token {
            let key = format!("{volume}/{}", t.path);
            let cached = self
                .tokens
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned())
                .filter(|tok| !renew_all && !tok.needs_renewal(SystemTime::now()));
            let token = match cached {
                Some(tok) => tok,
                None => {
                    let tok = projection::request_token(client, pod, t).await?;
                    if let Ok(mut m) = self.tokens.lock() {
                        m.insert(key, tok.clone());
                    }
                    tok
                }
            };
            // With fsGroup the token is 0600 and ownership adds group read.
            let mode = if fs_group(pod).is_some() {
                0o600
            } else {
                default_mode
            };
            let mut p = Payload::new();
            p.insert(
                t.path.clone(),
                atomic::FileProjection {
                    data: token.token.into_bytes(),
                    mode: (mode as u32) & 0o7777,
                },
            );
            return Ok(p);
        }
        // clusterTrustBundle and podCertificate are not served by this API server.
        Ok(Payload::new())
    }

    /// One CRI mount per volumeMount of `container`. A `subPathExpr` is expanded
    /// with the variables computable from the pod spec alone (literal values and
    /// metadata/spec fields); use [`PodVolumes::mounts_with_env`] with the
    /// container's full environment when it is at hand.
    pub(crate) fn mounts(&self, container: &Container) -> Result<Vec<cri::v1::Mount>, Error> {
        let env: Vec<(String, String)> = container
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
            .collect();
        self.mounts_with_env(container, &env)
    }

    /// One CRI mount per volumeMount of `container`, `subPathExpr` expanded with
    /// `env` (the container's environment from `env::container_env`).
    pub(crate) fn mounts_with_env(
        &self,
        container: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<cri::v1::Mount>, Error> {
        use cri::v1::MountPropagation as P;
        let mut out = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let vol = self.volumes.get(&m.name).ok_or_else(|| {
                Error::Invalid(format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    m.name, container.name
                ))
            })?;
            let sub = match m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => {
                    let (s, missing) = env::expand_strict(expr, env);
                    if !missing.is_empty() {
                        return Err(Error::Invalid(format!(
                            "missing value for {}",
                            missing.join(", ")
                        )));
                    }
                    s
                }
                None => m.sub_path.clone().unwrap_or_default(),
            };
            let host = if sub.is_empty() {
                vol.path.clone()
            } else {
                subpath::resolve(&vol.path, &sub).map_err(|e| {
                    tracing::warn!(container = %container.name, mount = %m.name, error = %e, "refused subPath");
                    Error::Invalid(format!(
                        "failed to prepare subPath for volumeMount \"{}\" of container \"{}\"",
                        m.name, container.name
                    ))
                })?
            };
            let propagation = match m.mount_propagation.as_deref() {
                None | Some("None") => P::PropagationPrivate,
                Some("HostToContainer") => P::PropagationHostToContainer,
                Some("Bidirectional") => P::PropagationBidirectional,
                Some(other) => {
                    return Err(Error::Invalid(format!(
                        "invalid MountPropagation mode: \"{other}\""
                    )));
                }
            };
            let readonly = m.read_only.unwrap_or(false) || vol.read_only;
            out.push(cri::v1::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly,
                propagation: propagation as i32,
                recursive_read_only: readonly
                    && m.recursive_read_only.as_deref() == Some("Enabled"),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Re-projects configMap, secret, downwardAPI and projected volumes in place
    /// when their content changed (atomically; a no-op otherwise), renewing service
    /// account tokens past 80% of their lifetime. Every volume is tried; the first
    /// error is returned.
    pub(crate) async fn refresh(&self, client: &kube::Client, pod: &Pod) -> Result<(), Error> {
        let _guard = self.writing.lock().await;
        let objects = ApiObjects {
            client,
            node_name: &self.node_name,
        };
        let mut first_error = None;
        for vol in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default()
        {
            let Some(host) = self.volumes.get(&vol.name) else {
                continue;
            };
            if !matches!(
                host.kind,
                Kind::ConfigMap | Kind::Secret | Kind::DownwardApi | Kind::Projected
            ) {
                continue;
            }
            let result = match self
                .payload(client, &objects, pod, vol, host.kind, false)
                .await
            {
                Ok(payload) => write_payload(&host.path, payload, fs_group(pod))
                    .await
                    .map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!(volume = %vol.name, error = %e, "volume refresh failed");
                first_error.get_or_insert(mount_failed(&vol.name, e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Unmounts every mount under `pod_dir/volumes` (found in
    /// `/proc/self/mountinfo`) and removes that directory. Idempotent, and needs no
    /// state: safe after a crash.
    pub(crate) async fn teardown(pod_dir: &Path) -> Result<(), Error> {
        let root = pod_dir.join("volumes");
        blocking(move || teardown_dir(&root))
            .await
            .map_err(Error::Invalid)
    }

    /// The host path of volume `name`, if the pod has it.
    pub(crate) fn host_path(&self, name: &str) -> Option<&Path> {
        self.volumes.get(name).map(|v| v.path.as_path())
    }
}

fn teardown_dir(root: &Path) -> Result<(), String> {
    let root = match fs::canonicalize(root) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("resolving {}: {e}", root.display())),
    };
    let list =
        || mounts::mounts_under(&root).map_err(|e| format!("reading /proc/self/mountinfo: {e}"));
    for m in list()? {
        mounts::unmount(&m)?;
    }
    let left = list()?;
    if !left.is_empty() {
        return Err(format!(
            "still mounted after unmounting, not removing {}: {}",
            root.display(),
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match fs::remove_dir_all(&root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", root.display())),
    }
}

async fn write_payload(
    dir: &Path,
    payload: Payload,
    fs_group: Option<u32>,
) -> Result<bool, String> {
    let dir = dir.to_path_buf();
    blocking(move || atomic::write(&dir, &payload, fs_group)).await
}

/// The node's allocatable, fetched once per setup; `None` when it cannot be read
/// (the tmpfs then gets the other bounds, or the kernel's default).
async fn node_allocatable(
    objects: &ApiObjects<'_>,
    cache: &mut Option<Option<Allocatable>>,
) -> Option<Allocatable> {
    if cache.is_none() {
        let a = match objects.allocatable().await {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::debug!(error = %e, "node allocatable unavailable for tmpfs size");
                None
            }
        };
        *cache = Some(a);
    }
    cache.clone().flatten()
}

/// The host path of a claim bound to a hostPath or local PersistentVolume.
async fn claim_path(client: &kube::Client, pod: &Pod, claim: &str) -> Result<PathBuf, Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let fail = |msg: String| Error::Invalid(format!("error processing PVC {ns}/{claim}: {msg}"));
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(claim)
        .await
        .map_err(|e| fail(format!("failed to fetch PVC from API server: {e}")))?;
    if pvc.metadata.deletion_timestamp.is_some() {
        return Err(fail("PVC is being deleted".into()));
    }
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(fail("PVC is not bound".into()));
    }
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| fail("PVC has empty pvc.Spec.VolumeName".into()))?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| fail(format!("failed to fetch PV {pv_name} from API server: {e}")))?;
    let spec = pv.spec.unwrap_or_default();
    let claim_uid = pvc.metadata.uid.clone().unwrap_or_default();
    match spec.claim_ref.as_ref() {
        None => {
            return Err(fail(format!(
                "found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
            )));
        }
        Some(r) if r.uid.as_deref().unwrap_or_default() != claim_uid => {
            return Err(fail(format!(
                "found PV object {pv_name} but its pv.Spec.ClaimRef.UID {} does not point to claim.UID {claim_uid}",
                r.uid.as_deref().unwrap_or_default()
            )));
        }
        Some(_) => {}
    }
    let volume = pv_name.clone();
    if let Some(hp) = spec.host_path {
        let p = hp.path.clone();
        blocking(move || host_path::check(&p, hp.type_.as_deref()))
            .await
            .map_err(|e| mount_failed(&volume, e))?;
        return Ok(PathBuf::from(hp.path));
    }
    if let Some(local) = spec.local {
        let p = PathBuf::from(&local.path);
        if !p.exists() {
            return Err(mount_failed(
                &volume,
                format!("path \"{}\" does not exist", local.path),
            ));
        }
        return Ok(p);
    }
    Err(mount_failed(
        &volume,
        format!(
            "PersistentVolume {pv_name} is neither hostPath nor local, which this node cannot mount"
        ),
    ))
}
