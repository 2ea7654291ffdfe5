//! The archive `docker save` (and `podman save`) writes for a one-layer image:
//! `manifest.json` naming the config and layers by path and the image by its
//! `RepoTags`, the config as `<hex>.json`, each layer as `<id>/layer.tar` (with the
//! legacy `VERSION` and `json` beside it), and the legacy `repositories` file.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use super::layer::{Blob, sha256};
use super::layout::{RunConfig, append, config_json, json};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The `docker save` tar of image `name` (normalized, with a tag) made of `layer`,
/// which must be uncompressed (Docker stores layers as plain tars); returns the
/// archive and the image ID (`sha256:` of the config).
pub(crate) fn archive(name: &str, run: &RunConfig, layer: Blob) -> io::Result<(Vec<u8>, String)> {
    if layer.digest != layer.diff_id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "docker archives hold uncompressed layers",
        ));
    }
    let config = config_json(run, &layer.diff_id)?;
    let config_digest = sha256(&config);
    let config_file = format!("{}.json", hex(&config_digest));
    let layer_id = hex(&layer.diff_id).to_owned();
    let repo_tag = familiar(name);
    let manifest = json(&[ManifestEntry {
        config: config_file.clone(),
        repo_tags: vec![repo_tag.clone()],
        layers: vec![format!("{layer_id}/layer.tar")],
    }])?;
    let mut repositories = BTreeMap::new();
    if let Some((repo, tag)) = repo_tag.rsplit_once(':') {
        repositories.insert(repo, BTreeMap::from([(tag, layer_id.clone())]));
    }
    let repositories = json(&repositories)?;
    let legacy = json(&BTreeMap::from([("id", layer_id.as_str())]))?;

    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, &config_file, &config)?;
    append(&mut tar, &format!("{layer_id}/VERSION"), b"1.0")?;
    append(&mut tar, &format!("{layer_id}/json"), &legacy)?;
    append(&mut tar, &format!("{layer_id}/layer.tar"), &layer.data)?;
    append(&mut tar, "manifest.json", &manifest)?;
    append(&mut tar, "repositories", &repositories)?;
    Ok((tar.into_inner()?, config_digest))
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// The short name Docker writes into `RepoTags`: `busybox:latest` for
/// `docker.io/library/busybox:latest`, `team/app:v1` for `docker.io/team/app:v1`.
fn familiar(name: &str) -> String {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_are_written_short() {
        assert_eq!(familiar("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(familiar("docker.io/team/app:v1"), "team/app:v1");
        assert_eq!(familiar("127.0.0.1:5000/a/b:c"), "127.0.0.1:5000/a/b:c");
    }
}
