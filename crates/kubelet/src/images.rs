//! Images: the pause image built at first start, the archives dropped into
//! `<dir>/images/` (OCI layouts and `docker save` archives, imported at start and
//! whenever new files appear), the registries file `<dir>/registries.yaml` (mirrors and
//! TLS as containerd hosts files, credentials), and what a container's image needs
//! before it can be created (presence, pull policy, pulls with the credentials of the
//! pod's image pull secrets, back-off after failed pulls).

mod auth;
pub(crate) mod backoff;
mod registries;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use cri::{Rpc, Runtime, v1};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Api;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Error;
use auth::Keyring;
use registries::Registries;

/// How often `<dir>/images/` is looked at for new archives.
const SCAN_INTERVAL: Duration = Duration::from_secs(3);
/// The record of imported archives, in the agent's directory.
const IMPORTED_FILE: &str = "images-imported.json";

/// Makes sure the runtime has the pause image: builds its archive into `dir` and
/// imports it unless CRI lists it already.
pub(crate) async fn ensure_pause(runtime: &Runtime, dir: &Path) -> Result<(), Error> {
    if present(runtime, cri::image::PAUSE_IMAGE).await?.is_some() {
        return Ok(());
    }
    let archive = dir.join("pause.tar");
    cri::image::pause(&archive)
        .map_err(|e| Error::Invalid(format!("cannot build the pause image: {e}")))?;
    cri::image::import(runtime.socket(), &archive)
        .await
        .map_err(|e| Error::Invalid(format!("cannot import the pause image: {e}")))?;
    tracing::info!(image = cri::image::PAUSE_IMAGE, "pause image imported");
    Ok(())
}

/// One archive as it was when imported: a changed size or mtime imports it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

/// The image archives directory and what of it was imported; the registries file and
/// the containerd hosts directory written from it.
pub(crate) struct ImageDir {
    images: PathBuf,
    record: PathBuf,
    imported: BTreeMap<String, Stamp>,
    /// The agent's directory, where `registries.yaml` is.
    dir: PathBuf,
    /// containerd's `registry.config_path`, when the agent runs its own containerd.
    hosts_dir: Option<PathBuf>,
    /// `registries.yaml` as last applied (`None`: absent).
    registries_applied: Option<Option<Stamp>>,
}

impl ImageDir {
    /// The archives directory `<dir>/images` (created) with the record in `<dir>`;
    /// applies `<dir>/registries.yaml` to containerd's registry hosts directory.
    pub(crate) fn open(dir: &Path) -> Result<ImageDir, Error> {
        let images = dir.join("images");
        std::fs::create_dir_all(&images)
            .map_err(|e| Error::io(format!("creating {}", images.display()), e))?;
        let record = dir.join(IMPORTED_FILE);
        let imported = std::fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut image_dir = ImageDir {
            images,
            record,
            imported,
            dir: dir.to_path_buf(),
            hosts_dir: crate::containerd_config(dir).registry_config_path,
            registries_applied: None,
        };
        image_dir.apply_registries();
        Ok(image_dir)
    }

    /// Writes containerd's hosts files from `registries.yaml` when the file changed
    /// since it was last applied. A file that cannot be read is logged and left as it
    /// was applied last.
    fn apply_registries(&mut self) {
        let Some(hosts_dir) = &self.hosts_dir else {
            return;
        };
        let stamp = std::fs::metadata(self.dir.join(registries::FILE))
            .ok()
            .map(|meta| stamp(&meta));
        if self.registries_applied.as_ref() == Some(&stamp) {
            return;
        }
        let applied = Registries::load(&self.dir).and_then(|r| {
            registries::apply(hosts_dir, &r)
                .map_err(|e| format!("cannot write {}: {e}", hosts_dir.display()))
        });
        match applied {
            Ok(()) => {
                tracing::info!(hosts = %hosts_dir.display(), "registries configuration applied")
            }
            Err(e) => tracing::warn!(error = %e, "registries configuration not applied"),
        }
        self.registries_applied = Some(stamp);
    }

    /// Imports every archive that is new or changed since it was last imported.
    /// A file that fails is logged and tried again at the next scan.
    pub(crate) async fn import_new(&mut self, runtime: &Runtime) {
        let Ok(entries) = std::fs::read_dir(&self.images) else {
            return;
        };
        let mut changed = false;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !is_archive(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let stamp = stamp(&meta);
            if self.imported.get(&name) == Some(&stamp) {
                continue;
            }
            // A file still being written changes between two looks: wait for the next scan.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if std::fs::metadata(entry.path()).map(|m| m.len()).ok() != Some(stamp.size) {
                continue;
            }
            let started = std::time::Instant::now();
            match cri::image::import(runtime.socket(), &entry.path()).await {
                Ok(images) => {
                    tracing::info!(archive = %name, images = ?images, elapsed_ms = started.elapsed().as_millis() as u64, "image archive imported");
                    self.imported.insert(name, stamp);
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(archive = %name, error = %e, "cannot import image archive")
                }
            }
        }
        if changed
            && let Ok(bytes) = serde_json::to_vec_pretty(&self.imported)
            && let Err(e) = std::fs::write(&self.record, bytes)
        {
            tracing::warn!(error = %e, "cannot record imported image archives");
        }
    }

    /// Imports new archives and applies a changed registries file every few seconds
    /// until shutdown.
    pub(crate) async fn watch(mut self, runtime: Runtime, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SCAN_INTERVAL) => {
                    self.apply_registries();
                    self.import_new(&runtime).await;
                }
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
    }
}

/// What identifies a version of a file: its size and modification time.
fn stamp(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        size: meta.len(),
        mtime_ns: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos()),
    }
}

/// OCI layout and `docker save` archives, plain or compressed.
fn is_archive(name: &str) -> bool {
    [".tar", ".tar.gz", ".tgz", ".oci", ".docker"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The runtime's record of `image` (a name as in a pod spec), if it has it.
pub(crate) async fn present(runtime: &Runtime, image: &str) -> Result<Option<v1::Image>, Error> {
    let status = runtime
        .images()
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .rpc("ImageStatus")?;
    Ok(status.image)
}

/// What the node has of a container's image, given its pull policy.
#[derive(Debug)]
pub(crate) enum Local {
    /// The image is here and is used as it is: the runtime's record of it.
    Ready(Box<v1::Image>),
    /// The policy is `Never` and the image is missing: the waiting message.
    NeverPull(String),
    /// The image must be pulled.
    Pull,
}

/// Whether `image` must be pulled under `policy` (`Always`, `IfNotPresent`, `Never`;
/// empty as Kubernetes defaults it). Images imported locally (they have no registry
/// digest) count as present even under `Always`: there is no registry to pull from.
pub(crate) async fn local(runtime: &Runtime, image: &str, policy: &str) -> Result<Local, Error> {
    let policy = match policy {
        "" if image_tag_is_latest(image) => "Always",
        "" => "IfNotPresent",
        p => p,
    };
    Ok(match (policy, present(runtime, image).await?) {
        ("Never", None) => Local::NeverPull(format!(
            "Container image \"{image}\" is not present with pull policy of Never"
        )),
        ("Never" | "IfNotPresent", Some(found)) => Local::Ready(Box::new(found)),
        (_, Some(found)) if found.repo_digests.is_empty() => Local::Ready(Box::new(found)),
        _ => Local::Pull,
    })
}

/// The image pull secrets of `pod`: those it names and those of its service account,
/// in that order, and the names of those that could not be read (the pull is still
/// tried, as the kubelet does).
pub(crate) async fn pull_secrets(client: &kube::Client, pod: &Pod) -> (Vec<Secret>, Vec<String>) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.clone().unwrap_or_default();
    let mut names: Vec<String> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    let account = spec
        .service_account_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match accounts.get_opt(&account).await {
        Ok(Some(sa)) => names.extend(
            sa.image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone()),
        ),
        Ok(None) => {}
        Err(e) => tracing::debug!(account, error = %e, "cannot read the service account"),
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match secrets_api.get_opt(&name).await {
            Ok(Some(secret)) => secrets.push(secret),
            Ok(None) => missing.push(name),
            Err(e) => {
                tracing::debug!(secret = %name, error = %e, "cannot read an image pull secret");
                missing.push(name);
            }
        }
    }
    (secrets, missing)
}

/// The credentials to try, in order, when pulling `image`: those of `secrets` that
/// match it (the kubelet's rules), else those of the registries file in `dir`, else
/// none (one anonymous pull).
pub(crate) fn credentials(dir: &Path, secrets: &[Secret], image: &str) -> Vec<v1::AuthConfig> {
    let from_secrets: Vec<v1::AuthConfig> = Keyring::from_secrets(secrets)
        .lookup(image)
        .iter()
        .map(auth::Credential::auth_config)
        .collect();
    if !from_secrets.is_empty() {
        return from_secrets;
    }
    match Registries::load(dir) {
        Ok(registries) => registries.auth_for(image).into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "registries configuration ignored");
            Vec::new()
        }
    }
}

/// A pulled image and how long the runtime took.
#[derive(Debug)]
pub(crate) struct Pulled {
    /// The runtime's record of the image.
    pub(crate) image: v1::Image,
    /// The time spent in PullImage.
    pub(crate) took: Duration,
}

/// Pulls `image` through CRI with each of `auths` in turn (anonymously when empty)
/// until one works; the error is what the kubelet reports: the runtime's error as
/// gRPC prints it (`rpc error: code = NotFound desc = …`), several joined in brackets.
pub(crate) async fn pull(
    runtime: &Runtime,
    image: &str,
    auths: Vec<v1::AuthConfig>,
) -> Result<Pulled, String> {
    let attempts: Vec<Option<v1::AuthConfig>> = if auths.is_empty() {
        vec![None]
    } else {
        auths.into_iter().map(Some).collect()
    };
    let mut errors = Vec::new();
    let started = Instant::now();
    for auth in attempts {
        let mut request = tonic::Request::new(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        });
        request.set_timeout(PULL_TIMEOUT);
        match runtime.images().pull_image(request).await {
            Ok(_) => {
                let took = started.elapsed();
                return match present(runtime, image).await {
                    Ok(Some(found)) => Ok(Pulled { image: found, took }),
                    Ok(None) => Err(format!("image {image:?} is not listed after its pull")),
                    Err(e) => Err(e.to_string()),
                };
            }
            Err(status) => errors.push(grpc_error(&status)),
        }
    }
    Err(match errors.len() {
        1 => errors.remove(0),
        _ => format!("[{}]", errors.join(", ")),
    })
}

/// How long one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// A gRPC error as grpc-go prints it, which is what the kubelet shows.
fn grpc_error(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {:?} desc = {}",
        status.code(),
        status.message()
    )
}

/// Whether `image` has no tag or the tag `latest` (and no digest): Kubernetes then
/// defaults the pull policy to `Always`.
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_latest_images_default_to_always() {
        assert!(image_tag_is_latest("busybox"));
        assert!(image_tag_is_latest("busybox:latest"));
        assert!(image_tag_is_latest("localhost:5000/app"));
        assert!(!image_tag_is_latest("localhost:5000/app:v1"));
        assert!(!image_tag_is_latest("busybox@sha256:abcd"));
    }

    #[test]
    fn archives_are_recognized_by_their_extension() {
        assert!(is_archive("busybox.tar"));
        assert!(is_archive("nginx.tar.gz"));
        assert!(!is_archive("notes.txt"));
    }
}
