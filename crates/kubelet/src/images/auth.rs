//! Registry credentials from a pod's image pull secrets, matched to an image as the
//! kubelet's credential provider does (Docker's rules): a key `host[:port][/path]`
//! (scheme and a `/v1/` or `/v2/` path dropped) matches an image whose registry has the
//! same port and as many dot-separated parts, each matching the key's part as a glob
//! (`*.example.com`), and whose repository path starts with the key's path. More
//! specific keys come first. Docker Hub images (`busybox`, `team/app`, `docker.io/…`)
//! also take the credentials of `index.docker.io` (`https://index.docker.io/v1/`).

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use cri::v1;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

/// The secret type and key of a `~/.docker/config.json` secret.
const DOCKER_CONFIG_JSON: (&str, &str) = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson");
/// The secret type and key of a legacy `~/.dockercfg` secret.
const DOCKER_CFG: (&str, &str) = ("kubernetes.io/dockercfg", ".dockercfg");
/// Docker Hub's credential key after normalization.
const DOCKER_HUB_KEY: &str = "index.docker.io";

/// One registry's entry in a docker config.
#[derive(Debug, Clone, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// base64 of `username:password`; wins over the fields when present.
    #[serde(default)]
    auth: String,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// A username and password for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl Credential {
    /// The CRI form.
    pub(crate) fn auth_config(&self) -> v1::AuthConfig {
        v1::AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            ..Default::default()
        }
    }
}

/// Credentials by registry key, looked up by image.
#[derive(Debug, Default)]
pub(crate) struct Keyring {
    /// Keys, most specific first (reverse-sorted, as the kubelet does).
    index: Vec<String>,
    creds: HashMap<String, Vec<Credential>>,
}

impl Keyring {
    /// The credentials of the docker config secrets among `secrets`, in their order;
    /// other secrets and unreadable configs are skipped (with a debug log).
    pub(crate) fn from_secrets(secrets: &[Secret]) -> Keyring {
        let mut keyring = Keyring::default();
        for secret in secrets {
            let kind = secret.type_.as_deref().unwrap_or_default();
            let data = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.as_slice())
                    .filter(|b| !b.is_empty())
            };
            let parsed = if kind == DOCKER_CONFIG_JSON.0
                && let Some(bytes) = data(DOCKER_CONFIG_JSON.1)
            {
                serde_json::from_slice::<ConfigJson>(bytes).map(|c| c.auths)
            } else if kind == DOCKER_CFG.0
                && let Some(bytes) = data(DOCKER_CFG.1)
            {
                serde_json::from_slice::<BTreeMap<String, Entry>>(bytes)
            } else {
                continue;
            };
            match parsed {
                Ok(entries) => keyring.add(&entries),
                Err(e) => tracing::debug!(
                    secret = secret.metadata.name.as_deref().unwrap_or_default(),
                    error = %e,
                    "cannot read the docker config of an image pull secret"
                ),
            }
        }
        keyring
    }

    fn add(&mut self, entries: &BTreeMap<String, Entry>) {
        for (location, entry) in entries {
            let Some(credential) = credential(entry) else {
                continue;
            };
            let key = key(location);
            let creds = self.creds.entry(key.clone()).or_default();
            if !creds.contains(&credential) {
                creds.push(credential);
            }
            if !self.index.contains(&key) {
                self.index.push(key);
            }
        }
        self.index.sort_by(|a, b| b.cmp(a));
    }

    /// The credentials to try for `image`, most specific first; empty when none match
    /// (the image is then pulled anonymously).
    pub(crate) fn lookup(&self, image: &str) -> Vec<Credential> {
        let repository = repository(image);
        let mut found = Vec::new();
        for key in &self.index {
            if matches(key, &repository) {
                found.extend(self.creds[key].iter().cloned());
            }
        }
        if found.is_empty()
            && is_docker_hub(&repository)
            && let Some(hub) = self.creds.get(DOCKER_HUB_KEY)
        {
            found.extend(hub.iter().cloned());
        }
        found
    }
}

fn credential(entry: &Entry) -> Option<Credential> {
    if entry.auth.is_empty() {
        return Some(Credential {
            username: entry.username.clone(),
            password: entry.password.clone(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(Credential {
        username: username.to_owned(),
        password: password.trim_matches('\0').to_owned(),
    })
}

/// The key of a credential location: no scheme, `/v1/` and `/v2/` paths dropped.
fn key(location: &str) -> String {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = split_host(rest);
    let path = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix("/v1/"))
        .map_or(path.to_owned(), |p| format!("/{p}"));
    if path.is_empty() || path == "/" {
        host.to_owned()
    } else {
        format!("{host}{path}")
    }
}

/// `host[:port]` and the path (with its leading `/`, or empty).
fn split_host(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Host parts and port of `host[:port]`.
fn host_parts(host: &str) -> (Vec<&str>, &str) {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port),
        _ => (host, ""),
    };
    (name.split('.').collect(), port)
}

/// Whether credential key `key` applies to `repository` (`host/path`).
fn matches(key: &str, repository: &str) -> bool {
    let (glob_host, glob_path) = split_host(key);
    let (host, path) = split_host(repository);
    let (glob_parts, glob_port) = host_parts(glob_host);
    let (parts, port) = host_parts(host);
    glob_port == port
        && glob_parts.len() == parts.len()
        && path.starts_with(glob_path)
        && glob_parts
            .iter()
            .zip(&parts)
            .all(|(g, p)| glob(g.as_bytes(), p.as_bytes()))
}

/// Shell-style matching with `*` and `?` (what Go's `filepath.Match` does within
/// one host part, minus character classes).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// The normalized repository of an image reference, without tag or digest:
/// `busybox:1` is `docker.io/library/busybox`.
pub(crate) fn repository(image: &str) -> String {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    let name = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    };
    match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name.to_owned(),
        Some(_) => format!("docker.io/{name}"),
    }
}

/// The registry host of an image reference (`docker.io` for Docker Hub images).
pub(crate) fn registry(image: &str) -> String {
    let repository = repository(image);
    split_host(&repository).0.to_owned()
}

/// Whether a normalized repository is on Docker Hub.
fn is_docker_hub(repository: &str) -> bool {
    matches!(split_host(repository).0, "docker.io" | "index.docker.io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(kind.into()),
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn user(name: &str) -> Credential {
        Credential {
            username: name.into(),
            password: "pw".into(),
        }
    }

    fn config_json(auths: &[(&str, &str)]) -> Secret {
        let auths: serde_json::Map<String, serde_json::Value> = auths
            .iter()
            .map(|(host, name)| {
                (
                    (*host).to_owned(),
                    serde_json::json!({"username": name, "password": "pw"}),
                )
            })
            .collect();
        secret(
            DOCKER_CONFIG_JSON.0,
            DOCKER_CONFIG_JSON.1,
            &serde_json::json!({ "auths": auths }).to_string(),
        )
    }

    #[test]
    fn images_are_normalized_like_docker_does() {
        assert_eq!(repository("busybox"), "docker.io/library/busybox");
        assert_eq!(repository("team/app:v1"), "docker.io/team/app");
        assert_eq!(
            repository("127.0.0.1:5000/test/busybox:1"),
            "127.0.0.1:5000/test/busybox"
        );
        assert_eq!(repository("quay.io/a/b@sha256:00"), "quay.io/a/b");
        assert_eq!(registry("localhost/app"), "localhost");
        assert_eq!(registry("busybox"), "docker.io");
    }

    #[test]
    fn the_registry_host_and_port_must_match() {
        let keyring = Keyring::from_secrets(&[config_json(&[
            ("127.0.0.1:5000", "five"),
            ("https://127.0.0.1:6000/v2/", "six"),
            ("quay.io", "quay"),
        ])]);
        assert_eq!(
            keyring.lookup("127.0.0.1:5000/test/busybox:1"),
            [user("five")]
        );
        assert_eq!(keyring.lookup("127.0.0.1:6000/x"), [user("six")]);
        assert!(keyring.lookup("127.0.0.1:7000/x").is_empty());
        assert!(keyring.lookup("127.0.0.1/x").is_empty());
        assert!(keyring.lookup("busybox").is_empty());
    }

    #[test]
    fn more_specific_paths_come_first_and_globs_match_one_part() {
        let keyring = Keyring::from_secrets(&[config_json(&[
            ("quay.io", "all"),
            ("quay.io/coreos", "coreos"),
            ("*.example.com", "wild"),
        ])]);
        assert_eq!(
            keyring.lookup("quay.io/coreos/etcd:v3"),
            [user("coreos"), user("all")]
        );
        assert_eq!(keyring.lookup("quay.io/other/x"), [user("all")]);
        assert_eq!(keyring.lookup("r.example.com/x"), [user("wild")]);
        assert!(keyring.lookup("a.b.example.com/x").is_empty());
    }

    #[test]
    fn docker_hub_aliases_share_credentials() {
        let keyring =
            Keyring::from_secrets(&[config_json(&[("https://index.docker.io/v1/", "hub")])]);
        for image in ["busybox", "team/app:v1", "docker.io/library/busybox:1"] {
            assert_eq!(keyring.lookup(image), [user("hub")], "{image}");
        }
        assert!(keyring.lookup("quay.io/a").is_empty());
        let keyring = Keyring::from_secrets(&[config_json(&[("docker.io", "short")])]);
        assert_eq!(keyring.lookup("busybox"), [user("short")]);
    }

    #[test]
    fn auth_fields_and_legacy_dockercfg_secrets_are_read() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let keyring = Keyring::from_secrets(&[
            secret(
                DOCKER_CFG.0,
                DOCKER_CFG.1,
                &format!(r#"{{"r.example:5000": {{"auth": "{auth}", "email": "a@b"}}}}"#),
            ),
            secret(
                "Opaque",
                DOCKER_CONFIG_JSON.1,
                r#"{"auths": {"r.example:5000": {}}}"#,
            ),
        ]);
        assert_eq!(
            keyring.lookup("r.example:5000/app"),
            [Credential {
                username: "alice".into(),
                password: "s3cret".into()
            }]
        );
    }
}
