//! Images without a registry: OCI image-layout archives built from the machine's static
//! binaries, and their import into containerd.
//!
//! [`pause`] makes the sandbox ("pause") image from Debian's `catatonit`, and
//! [`busybox`] an image with Debian's static busybox and a link for each of its applets.
//! Both archives are deterministic: the same binaries give the same bytes, hence the
//! same image ID; [`busybox_archive`] writes it as `docker save` does, too. [`import`]
//! loads an archive (OCI layout or `docker save` format, plain or gzip-compressed) into
//! containerd's `k8s.io` namespace, where CRI sees it.

mod docker;
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

/// The kind of archive an image is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/`), as `skopeo copy
    /// oci-archive:` and `ctr images export` write it.
    #[default]
    Oci,
    /// What `docker save` and `podman save` write (`manifest.json`, `<id>.json`,
    /// `<layer>/layer.tar`); layers are always stored uncompressed.
    Docker,
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
    /// containerd did not remove an image name.
    #[error("removing the name {name} from containerd at {} failed: {reason}", socket.display())]
    UntagFailed {
        /// The image name.
        name: String,
        /// containerd's socket.
        socket: PathBuf,
        /// `ctr`'s error output, or why it could not run.
        reason: String,
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
    write(
        out,
        PAUSE_IMAGE,
        &run,
        &layer,
        Compression::None,
        Format::Oci,
    )
}

/// Writes a busybox image named `name` (normalized like Docker does: `busybox` is
/// `docker.io/library/busybox:latest`) to `out`: [`BUSYBOX`] as `/bin/busybox`, a
/// symlink in `/bin` for each applet it lists, `/etc/passwd` and `/etc/group` with root
/// and nobody, `/tmp`, and `sh` as the command.
pub fn busybox(out: &Path, name: &str, compression: Compression) -> Result<Built, Error> {
    busybox_archive(out, name, compression, Format::Oci)
}

/// Writes the busybox image of [`busybox`] as an archive of `format`; a
/// [`Format::Docker`] archive ignores `compression` (its layers are plain tars) and
/// has no manifest digest of its own (`Built::manifest_digest` is empty).
pub fn busybox_archive(
    out: &Path,
    name: &str,
    compression: Compression,
    format: Format,
) -> Result<Built, Error> {
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
    write(out, name, &run, &layer, compression, format)
}

/// Imports the image archive at `archive` (OCI layout, or `docker save` format) into the
/// containerd listening on `socket`, in the namespace CRI uses; the images are unpacked
/// for the overlayfs snapshotter, ready to run. Runs [`CTR`]; returns the names of the
/// images the archive held, as containerd stored them.
pub async fn import(socket: &Path, archive: &Path) -> Result<Vec<String>, Error> {
    let failed = |reason: String| Error::ImportFailed {
        archive: archive.to_path_buf(),
        socket: socket.to_path_buf(),
        reason,
    };
    // ctr reads plain tars only: a gzip-compressed archive (`docker save | gzip`) is
    // decompressed into its standard input.
    let gzipped = is_gzip(archive).map_err(|e| failed(format!("cannot read it: {e}")))?;
    let mut command = tokio::process::Command::new(CTR);
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "import"])
        .args(["--snapshotter", "overlayfs"])
        .kill_on_drop(true);
    let feeder = if gzipped {
        let file =
            std::fs::File::open(archive).map_err(|e| failed(format!("cannot read it: {e}")))?;
        let (reader, mut writer) =
            io::pipe().map_err(|e| failed(format!("cannot make a pipe: {e}")))?;
        command.arg("-").stdin(reader);
        Some(tokio::task::spawn_blocking(move || {
            io::copy(&mut flate2::read::GzDecoder::new(file), &mut writer)
        }))
    } else {
        command.arg(archive).stdin(std::process::Stdio::null());
        None
    };
    let output = tokio::time::timeout(IMPORT_TIMEOUT, command.output())
        .await
        .map_err(|_| failed(format!("{CTR} did not finish within {IMPORT_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("cannot run {CTR}: {e}")))?;
    drop(command);
    let decompressed = match feeder {
        Some(feeder) => match feeder.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("decompressing: {e}")),
            Err(e) => Err(format!("decompressing: {e}")),
        },
        None => Ok(()),
    };
    if output.status.success() && decompressed.is_ok() {
        Ok(imported_names(&String::from_utf8_lossy(&output.stdout)))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut reason = format!("{CTR} {}: {}", output.status, stderr.trim());
        if let Err(e) = decompressed {
            reason = format!("{e}; {reason}");
        }
        Err(failed(reason))
    }
}

/// Removes the name `name` (a full name, as [`full_name`] gives it) from the
/// containerd listening on `socket`, leaving the image's other names and its content
/// (what `docker rmi` does to one of several tags; CRI's RemoveImage would remove every
/// name of the image). Runs [`CTR`].
pub async fn untag(socket: &Path, name: &str) -> Result<(), Error> {
    let failed = |reason: String| Error::UntagFailed {
        name: name.to_owned(),
        socket: socket.to_path_buf(),
        reason,
    };
    let mut command = tokio::process::Command::new(CTR);
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "rm"])
        .arg(name)
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

/// The full name of an image name, normalized as Docker and containerd's CRI do:
/// `busybox` is `docker.io/library/busybox:latest`.
pub fn full_name(name: &str) -> Result<String, Error> {
    normalize(name).map(|(full, _)| full)
}

/// Whether the file starts with gzip's magic bytes.
fn is_gzip(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let mut file = std::fs::File::open(path)?;
    match io::Read::read_exact(&mut file, &mut magic) {
        Ok(()) => Ok(magic == [0x1f, 0x8b]),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The image names in `ctr images import`'s output: one line
/// `unpacking <name> (sha256:…)...done` per image.
fn imported_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("unpacking "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn write(
    out: &Path,
    name: &str,
    run: &RunConfig,
    layer: &Layer,
    compression: Compression,
    format: Format,
) -> Result<Built, Error> {
    let (name, tag) = normalize(name)?;
    let write_failed = |source| Error::WriteFailed {
        path: out.to_path_buf(),
        source,
    };
    let built = match format {
        Format::Oci => {
            let blob = layer.blob(compression).map_err(write_failed)?;
            let archive = layout::archive(&name, &tag, run, blob).map_err(write_failed)?;
            std::fs::write(out, &archive.tar).map_err(write_failed)?;
            Built {
                name,
                id: archive.config_digest,
                manifest_digest: archive.manifest_digest,
            }
        }
        Format::Docker => {
            let blob = layer.blob(Compression::None).map_err(write_failed)?;
            let (tar, id) = docker::archive(&name, run, blob).map_err(write_failed)?;
            std::fs::write(out, &tar).map_err(write_failed)?;
            Built {
                name,
                id,
                manifest_digest: String::new(),
            }
        }
    };
    Ok(built)
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
    fn imported_names_are_read_from_ctr_output() {
        let out = "unpacking docker.io/library/busybox:latest (sha256:abc)...done\n\
                   unpacking 127.0.0.1:5000/a:1 (sha256:def)...done\n";
        assert_eq!(
            imported_names(out),
            ["docker.io/library/busybox:latest", "127.0.0.1:5000/a:1"]
        );
    }

    #[test]
    fn a_docker_archive_has_a_manifest_naming_config_and_layer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("busybox.tar");
        let built =
            busybox_archive(&out, "busybox:1", Compression::Gzip, Format::Docker).expect("built");
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
        let manifest: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["busybox:1"]));
        let config_file = manifest[0]["Config"].as_str().expect("Config");
        assert_eq!(layer::sha256(&files[config_file]), built.id);
        let layer_file = manifest[0]["Layers"][0].as_str().expect("Layers");
        let config: serde_json::Value =
            serde_json::from_slice(&files[config_file]).expect("config");
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            layer::sha256(&files[layer_file]).as_str()
        );
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
