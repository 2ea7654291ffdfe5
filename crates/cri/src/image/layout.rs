//! The OCI image layout (image-spec v1.0) of a one-layer image, as a tar archive:
//! `oci-layout`, `index.json` and `blobs/sha256/<hex>` for the layer, the config and
//! the manifest.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use super::layer::{Blob, sha256};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Names the image in containerd's store when it is imported.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the tag.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How the image runs, as far as our images need it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunConfig {
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) working_dir: String,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'static str,
    os: &'static str,
    config: ContainerConfig<'a>,
    rootfs: RootFs,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    working_dir: &'a str,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    image_layout_version: &'static str,
}

/// An image archive in memory, with the digests that identify it.
#[derive(Debug)]
pub(crate) struct Archive {
    pub(crate) tar: Vec<u8>,
    /// `sha256:…` of the config: the image ID CRI reports.
    pub(crate) config_digest: String,
    pub(crate) manifest_digest: String,
}

/// The OCI layout tar of the image `name` (normalized, with a tag) made of `layer`.
pub(crate) fn archive(name: &str, tag: &str, run: &RunConfig, layer: Blob) -> io::Result<Archive> {
    let architecture = go_arch();
    let config = config_json(run, &layer.diff_id)?;
    let config_digest = sha256(&config);
    let manifest = json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST,
        config: descriptor(CONFIG, &config),
        layers: vec![Descriptor {
            media_type: layer.media_type,
            digest: layer.digest.clone(),
            size: layer.data.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }],
    })?;
    let manifest_digest = sha256(&manifest);
    let index = json(&Index {
        schema_version: 2,
        media_type: INDEX,
        manifests: vec![Descriptor {
            platform: Some(Platform {
                architecture,
                os: "linux",
            }),
            annotations: BTreeMap::from([
                (CONTAINERD_NAME, name.to_owned()),
                (REF_NAME, tag.to_owned()),
            ]),
            ..descriptor(MANIFEST, &manifest)
        }],
    })?;
    let layout = json(&OciLayout {
        image_layout_version: "1.0.0",
    })?;

    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "oci-layout", &layout)?;
    append(&mut tar, "index.json", &index)?;
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    let mut blobs = [
        (layer.digest.as_str(), layer.data.as_slice()),
        (config_digest.as_str(), config.as_slice()),
        (manifest_digest.as_str(), manifest.as_slice()),
    ];
    blobs.sort();
    for (digest, data) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        append(&mut tar, &format!("blobs/sha256/{hex}"), data)?;
    }
    Ok(Archive {
        tar: tar.into_inner()?,
        config_digest,
        manifest_digest,
    })
}

/// The image config (the same in OCI and Docker archives) of a one-layer image whose
/// uncompressed layer has digest `diff_id`.
pub(crate) fn config_json(run: &RunConfig, diff_id: &str) -> io::Result<Vec<u8>> {
    json(&ImageConfig {
        architecture: go_arch(),
        os: "linux",
        config: ContainerConfig {
            env: &run.env,
            entrypoint: &run.entrypoint,
            cmd: &run.cmd,
            working_dir: &run.working_dir,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![diff_id.to_owned()],
        },
    })
}

fn descriptor(media_type: &'static str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type,
        digest: sha256(data),
        size: data.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    }
}

pub(crate) fn json(value: &impl Serialize) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

pub(crate) fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    tar.append_data(&mut header, path, data)
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, path: &str) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, path, io::empty())
}

/// This machine's architecture as OCI (Go) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
