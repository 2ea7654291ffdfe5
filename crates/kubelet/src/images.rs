//! Images: the pause image built at first start, the archives dropped into
//! `<dir>/images/` (imported at start and whenever new files appear), and what a
//! container's image needs before it can be created (presence, pull policy, pulls).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cri::{Rpc, Runtime, v1};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Error;

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

/// The image archives directory and what of it was imported.
pub(crate) struct ImageDir {
    images: PathBuf,
    record: PathBuf,
    imported: BTreeMap<String, Stamp>,
}

impl ImageDir {
    /// The archives directory `<dir>/images` (created) with the record in `<dir>`.
    pub(crate) fn open(dir: &Path) -> Result<ImageDir, Error> {
        let images = dir.join("images");
        std::fs::create_dir_all(&images)
            .map_err(|e| Error::io(format!("creating {}", images.display()), e))?;
        let record = dir.join(IMPORTED_FILE);
        let imported = std::fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(ImageDir {
            images,
            record,
            imported,
        })
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
            let stamp = Stamp {
                size: meta.len(),
                mtime_ns: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos()),
            };
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
                Ok(()) => {
                    tracing::info!(archive = %name, elapsed_ms = started.elapsed().as_millis() as u64, "image archive imported");
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

    /// Imports new archives every few seconds until shutdown.
    pub(crate) async fn watch(mut self, runtime: Runtime, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SCAN_INTERVAL) => self.import_new(&runtime).await,
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
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

/// Pulls `image` through CRI; the error is the message of an `ErrImagePull`.
pub(crate) async fn pull(
    runtime: &Runtime,
    image: &str,
    auth: Option<v1::AuthConfig>,
) -> Result<v1::Image, String> {
    let mut request = tonic::Request::new(v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    });
    request.set_timeout(Duration::from_secs(600));
    runtime
        .images()
        .pull_image(request)
        .await
        .rpc("PullImage")
        .map_err(|e| format!("Failed to pull image \"{image}\": {e}"))?;
    match present(runtime, image).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(format!(
            "Failed to pull image \"{image}\": not listed after the pull"
        )),
        Err(e) => Err(format!("Failed to pull image \"{image}\": {e}")),
    }
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
