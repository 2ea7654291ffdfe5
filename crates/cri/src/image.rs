//! Images without a registry: OCI image-layout archives built from the machine's static
//! binaries, and their import into containerd.
//!
//! [`pause`] makes the sandbox ("pause") image from Debian's `catatonit`, and
//! [`busybox`] an image with Debian's static busybox and a link for each of its applets.
//! Both archives are deterministic: the same binaries give the same bytes, hence the
//! same image ID. [`import`] loads an archive (OCI layout or `docker save` format) into
//! containerd's `k8s.io` namespace, where CRI sees it.

mod layer;
mod layout;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layer::Layer;
use layout::RunConfig;

/// The pause image every pod sandbox runs; built by [`pause`].
pub const PAUSE_IMAGE: &str = "skiff.local/pause:catatonit";
/// The usual name of a busybox image, for [`busybox`].
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:latest";

/// Where the pause image's program comes from (Debian's `catatonit`).
pub const CATATONIT: &str = "/usr/bin/catatonit";
/// Where the busybox image's program comes from (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// containerd's command line client (Debian's `containerd`), used by [`import`].
pub const CTR: &str = "/usr/bin/ctr";

/// The containerd namespace CRI keeps its images in.
const CRI_NAMESPACE: &str = "k8s.io";
/// How long an import may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// `PATH` in our images, as Docker sets it.
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How image layers are stored in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain tar: bigger, faster to build and import.
    #[default]
    None,
    /// gzip, as registries serve layers.
    Gzip,
}

/// An image archive that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image's full name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The image ID (`sha256:` of its config), as CRI's `Image.id` reports it.
    pub id: String,
    /// The digest of its manifest.
    pub manifest_digest: String,
}

/// Building or importing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary to put into an image could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFailed {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// `busybox --list` failed.
    #[error("cannot list the applets of {}: {reason}", busybox.display())]
    ListAppletsFailed {
        /// The busybox binary.
        busybox: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The name is not an image reference we can tag (empty, or a digest reference).
    #[error("not a taggable image name: {name:?}")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The archive could not be assembled or written.
    #[error("cannot write the image archive {}: {source}", path.display())]
    WriteFailed {
        /// The archive's path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// containerd did not import the archive.
    #[error("importing {} into containerd at {} failed: {reason}", archive.display(), socket.display())]
    ImportFailed {
        /// The archive.
        archive: PathBuf,
        /// containerd's socket.
        socket: PathBuf,
        /// `ctr`'s error output, or why it could not run.
        reason: String,
    },
}

/// Writes the pause image [`PAUSE_IMAGE`] to `out`: [`CATATONIT`] as `/catatonit`,
/// run as `/catatonit -P` (wait for signals, reap zombies).
pub fn pause(out: &Path) -> Result<Built, Error> {
    let mut layer = Layer::default();
    layer.file("catatonit", 0o755, read(Path::new(CATATONIT))?);
    let run = RunConfig {
        entrypoint: vec!["/catatonit".into(), "-P".into()],
        env: vec![PATH_ENV.into()],
        working_dir: "/".into(),
        ..RunConfig::default()
    };
    write(out, PAUSE_IMAGE, &run, &layer, Compression::None)
}

/// Writes a busybox image named `name` (normalized like Docker does: `busybox` is
/// `docker.io/library/busybox:latest`) to `out`: [`BUSYBOX`] as `/bin/busybox`, a
/// symlink in `/bin` for each applet it lists, `/etc/passwd` and `/etc/group` with root
/// and nobody, `/tmp`, and `sh` as the command.
pub fn busybox(out: &Path, name: &str, compression: Compression) -> Result<Built, Error> {
    let binary = read(Path::new(BUSYBOX))?;
    let mut layer = Layer::default();
    layer
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .dir("home", 0o755)
        .dir("root", 0o700)
        .dir("tmp", 0o1777)
        .dir("usr", 0o755)
        .dir("var", 0o755)
        .file("bin/busybox", 0o755, binary)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
                .to_vec(),
        )
        .file("etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n".to_vec());
    for applet in applets(Path::new(BUSYBOX))? {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    let run = RunConfig {
        cmd: vec!["sh".into()],
        env: vec![PATH_ENV.into()],
        ..RunConfig::default()
    };
    write(out, name, &run, &layer, compression)
}

/// Imports the image archive at `archive` (OCI layout, or `docker save` format) into the
/// containerd listening on `socket`, in the namespace CRI uses; the images are unpacked
/// for the overlayfs snapshotter, ready to run. Runs [`CTR`].
pub async fn import(socket: &Path, archive: &Path) -> Result<(), Error> {
    let failed = |reason: String| Error::ImportFailed {
        archive: archive.to_path_buf(),
        socket: socket.to_path_buf(),
        reason,
    };
    let mut command = tokio::process::Command::new(CTR);
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "import"])
        .args(["--snapshotter", "overlayfs"])
        .arg(archive)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(IMPORT_TIMEOUT, command.output())
        .await
        .map_err(|_| failed(format!("{CTR} did not finish within {IMPORT_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("cannot run {CTR}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(failed(format!(
            "{CTR} {}: {}",
            output.status,
            stderr.trim()
        )))
    }
}

fn write(
    out: &Path,
    name: &str,
    run: &RunConfig,
    layer: &Layer,
    compression: Compression,
) -> Result<Built, Error> {
    let (name, tag) = normalize(name)?;
    let write_failed = |source| Error::WriteFailed {
        path: out.to_path_buf(),
        source,
    };
    let blob = layer.blob(compression).map_err(write_failed)?;
    let archive = layout::archive(&name, &tag, run, blob).map_err(write_failed)?;
    std::fs::write(out, &archive.tar).map_err(write_failed)?;
    Ok(Built {
        name,
        id: archive.config_digest,
        manifest_digest: archive.manifest_digest,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFailed {
        path: path.to_path_buf(),
        source,
    })
}

/// The applets busybox was built with, sorted, without `busybox` itself.
fn applets(busybox: &Path) -> Result<Vec<String>, Error> {
    let failed = |reason: String| Error::ListAppletsFailed {
        busybox: busybox.to_path_buf(),
        reason,
    };
    let output = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("exited with {}", output.status)));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    applets.sort();
    applets.dedup();
    if applets.is_empty() {
        return Err(failed("it listed no applets".into()));
    }
    Ok(applets)
}

/// The full name (`docker.io/library/busybox:latest`) and tag (`latest`) of an image
/// name, normalized as Docker and containerd's CRI do.
fn normalize(name: &str) -> Result<(String, String), Error> {
    let invalid = || Error::InvalidName {
        name: name.to_owned(),
    };
    if name.is_empty() || name.contains('@') || name.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    let (repository, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    };
    if repository.is_empty() || tag.is_empty() {
        return Err(invalid());
    }
    let repository = match repository.split_once('/') {
        None => format!("docker.io/library/{repository}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            repository.to_owned()
        }
        Some(_) => format!("docker.io/{repository}"),
    };
    Ok((format!("{repository}:{tag}"), tag.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_like_docker_does() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest", "latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36", "1.36"),
            ("team/app", "docker.io/team/app:latest", "latest"),
            ("localhost:5000/app", "localhost:5000/app:latest", "latest"),
            ("localhost/app:v2", "localhost/app:v2", "v2"),
            (PAUSE_IMAGE, PAUSE_IMAGE, "catatonit"),
            (BUSYBOX_IMAGE, BUSYBOX_IMAGE, "latest"),
        ];
        for (name, full, tag) in cases {
            assert_eq!(
                normalize(name).expect(name),
                (full.to_owned(), tag.to_owned())
            );
        }
    }

    #[test]
    fn digest_references_and_empty_names_are_refused() {
        for name in ["", "busybox@sha256:abcd", "busybox:", "a b"] {
            assert!(
                matches!(normalize(name), Err(Error::InvalidName { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn building_twice_gives_the_same_archive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let built_a = busybox(&a, "busybox", Compression::Gzip).expect("built");
        let built_b = busybox(&b, "busybox", Compression::Gzip).expect("built");
        assert_eq!(built_a, built_b);
        assert_eq!(std::fs::read(&a).ok(), std::fs::read(&b).ok());
    }

    #[test]
    fn the_pause_archive_is_an_oci_layout_naming_the_image() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("pause.tar");
        let built = pause(&out).expect("built");
        assert_eq!(built.name, PAUSE_IMAGE);

        let bytes = std::fs::read(&out).expect("archive");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut files = std::collections::BTreeMap::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            io::Read::read_to_end(&mut entry, &mut data).expect("read");
            files.insert(path, data);
        }
        let layout: serde_json::Value =
            serde_json::from_slice(&files["oci-layout"]).expect("oci-layout");
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).expect("index");
        let manifest_descriptor = &index["manifests"][0];
        assert_eq!(
            manifest_descriptor["annotations"]["io.containerd.image.name"],
            PAUSE_IMAGE
        );
        assert_eq!(
            manifest_descriptor["annotations"]["org.opencontainers.image.ref.name"],
            "catatonit"
        );
        assert_eq!(
            manifest_descriptor["digest"],
            built.manifest_digest.as_str()
        );

        // Every blob is stored under its own digest.
        for (path, data) in &files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/")
                && !hex.is_empty()
            {
                assert_eq!(layer::sha256(data), format!("sha256:{hex}"));
            }
        }
        let config_path = format!("blobs/sha256/{}", built.id.trim_start_matches("sha256:"));
        let config: serde_json::Value =
            serde_json::from_slice(&files[&config_path]).expect("config");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/catatonit", "-P"])
        );
        assert_eq!(config["os"], "linux");
        assert_eq!(config["rootfs"]["type"], "layers");
    }
}
