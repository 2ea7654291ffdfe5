//! The registries file `<agent dir>/registries.yaml`, in k3s's format:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: alice, password: s3cret}
//!     tls: {insecure_skip_verify: true}
//! ```
//!
//! Mirrors and TLS settings become containerd's per-registry `hosts.toml` files in the
//! CRI plugin's `registry.config_path` directory, which containerd reads at every pull,
//! so changes apply without a restart. Credentials are given with each pull (as CRI
//! `AuthConfig`, scoped to the endpoint's host) when no image pull secret matches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cri::v1;
use serde::Deserialize;

use super::auth;

/// The registries file in the agent's directory.
pub(crate) const FILE: &str = "registries.yaml";
/// The mirror key that applies to every registry.
const ANY: &str = "*";
/// containerd's directory for registries without one of their own.
const DEFAULT_DIR: &str = "_default";

/// What `registries.yaml` says.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Registries {
    #[serde(default)]
    mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct Mirror {
    #[serde(default)]
    endpoint: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct HostConfig {
    auth: Option<Auth>,
    tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
struct Auth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identity_token: String,
}

#[derive(Debug, Default, Deserialize)]
struct Tls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    insecure_skip_verify: bool,
}

impl Registries {
    /// Reads `<dir>/registries.yaml`; an absent file is an empty configuration.
    pub(crate) fn load(dir: &Path) -> Result<Registries, String> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Registries::default()),
            Ok(bytes) => serde_yaml::from_slice(&bytes)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registries::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The `hosts.toml` files to write, by directory name under `config_path`.
    pub(crate) fn hosts_files(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        for (registry, mirror) in &self.mirrors {
            let mut text =
                String::from("# Written by the Skiff node agent from registries.yaml.\n");
            let dir = if registry == ANY {
                DEFAULT_DIR.to_owned()
            } else {
                let _ = writeln!(text, "server = {}", toml(&upstream(registry)));
                self.tls(&mut text, registry, "");
                registry.clone()
            };
            for endpoint in &mirror.endpoint {
                let url = endpoint_url(endpoint);
                let _ = writeln!(text, "\n[host.{}]", toml(&url));
                text.push_str("  capabilities = [\"pull\", \"resolve\"]\n");
                self.tls(&mut text, &host_of(&url), "  ");
            }
            files.insert(dir, text);
        }
        for host in self.configs.keys() {
            let host = host_of(host);
            if files.contains_key(&host) || self.tls_of(&host).is_none() {
                continue;
            }
            let mut text =
                String::from("# Written by the Skiff node agent from registries.yaml.\n");
            let _ = writeln!(text, "server = {}", toml(&upstream(&host)));
            self.tls(&mut text, &host, "");
            files.insert(host, text);
        }
        files
    }

    fn tls_of(&self, host: &str) -> Option<&Tls> {
        self.configs
            .iter()
            .find(|(key, _)| host_of(key) == host)
            .and_then(|(_, c)| c.tls.as_ref())
    }

    /// Appends the TLS settings of `host` (if any) to `text`.
    fn tls(&self, text: &mut String, host: &str, indent: &str) {
        let Some(tls) = self.tls_of(host) else { return };
        if tls.insecure_skip_verify {
            let _ = writeln!(text, "{indent}skip_verify = true");
        }
        if !tls.ca_file.is_empty() {
            let _ = writeln!(text, "{indent}ca = {}", toml(&tls.ca_file));
        }
        if !tls.cert_file.is_empty() && !tls.key_file.is_empty() {
            let _ = writeln!(
                text,
                "{indent}client = [[{}, {}]]",
                toml(&tls.cert_file),
                toml(&tls.key_file)
            );
        }
    }

    /// The credentials this file gives for pulling `image`: those of its registry's
    /// first mirror endpoint that has some, else those of the registry itself; each
    /// scoped to that host, so no other endpoint receives them.
    pub(crate) fn auth_for(&self, image: &str) -> Option<v1::AuthConfig> {
        let registry = auth::registry(image);
        let mirror = self
            .mirrors
            .get(&registry)
            .or_else(|| self.mirrors.get(ANY));
        // (the host the file names, the host containerd connects to)
        let mut hosts: Vec<(String, String)> = mirror
            .map(|m| {
                m.endpoint
                    .iter()
                    .map(|e| host_of(&endpoint_url(e)))
                    .map(|h| (h.clone(), h))
                    .collect()
            })
            .unwrap_or_default();
        let server = host_of(&upstream(&registry));
        hosts.push((server.clone(), server.clone()));
        hosts.push((registry, server));
        hosts.into_iter().find_map(|(named, host)| {
            let (_, config) = self.configs.iter().find(|(key, _)| host_of(key) == named)?;
            let auth = config.auth.as_ref()?;
            Some(v1::AuthConfig {
                username: auth.username.clone(),
                password: auth.password.clone(),
                auth: auth.auth.clone(),
                identity_token: auth.identity_token.clone(),
                server_address: format!("https://{host}"),
                ..Default::default()
            })
        })
    }
}

/// Writes the `hosts.toml` files of `registries` into `hosts_dir`, replacing what was
/// there (the directory is the agent's alone).
pub(crate) fn apply(hosts_dir: &Path, registries: &Registries) -> std::io::Result<()> {
    let files = registries.hosts_files();
    if let Ok(entries) = std::fs::read_dir(hosts_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !files.contains_key(&name) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    for (dir, text) in files {
        let dir: PathBuf = hosts_dir.join(dir);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(".hosts.toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join("hosts.toml"))?;
    }
    Ok(())
}

/// The registry's own server: Docker Hub's is `registry-1.docker.io`.
fn upstream(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" => "https://registry-1.docker.io".to_owned(),
        other => format!("https://{other}"),
    }
}

/// An endpoint as containerd's `host` key: with a scheme (https unless given), without
/// a trailing `/` or `/v2` (containerd adds `/v2` itself).
fn endpoint_url(endpoint: &str) -> String {
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v2").unwrap_or(url).to_owned()
}

/// `host[:port]` of a URL or a bare host.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A TOML basic string.
fn toml(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Registries {
        serde_yaml::from_str(yaml).expect("registries.yaml")
    }

    const SAMPLE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000/v2/"
      - "mirror.example.com"
configs:
  "127.0.0.1:5000":
    auth:
      username: alice
      password: s3cret
  "https://secure.example.com":
    tls:
      insecure_skip_verify: true
      ca_file: /etc/ca.pem
  mirror.example.com:
    tls:
      cert_file: /c.pem
      key_file: /k.pem
"#;

    #[test]
    fn mirrors_become_hosts_files_with_the_upstream_last() {
        let files = parse(SAMPLE).hosts_files();
        let hub = &files["docker.io"];
        assert!(
            hub.contains("server = \"https://registry-1.docker.io\""),
            "{hub}"
        );
        assert!(hub.contains("[host.\"http://127.0.0.1:5000\"]"), "{hub}");
        assert!(
            hub.contains("[host.\"https://mirror.example.com\"]"),
            "{hub}"
        );
        assert!(
            hub.contains("  client = [[\"/c.pem\", \"/k.pem\"]]"),
            "{hub}"
        );
        assert!(
            hub.find("127.0.0.1:5000") < hub.find("mirror.example.com"),
            "endpoints keep their order: {hub}"
        );
        let secure = &files["secure.example.com"];
        assert!(secure.contains("server = \"https://secure.example.com\""));
        assert!(secure.contains("\nskip_verify = true\n"), "{secure}");
        assert!(secure.contains("ca = \"/etc/ca.pem\""), "{secure}");
        assert!(
            !files.contains_key("127.0.0.1:5000"),
            "auth alone needs no hosts file"
        );
    }

    #[test]
    fn credentials_are_scoped_to_the_endpoint_that_has_them() {
        let registries = parse(SAMPLE);
        let auth = registries
            .auth_for("busybox:1")
            .expect("mirror credentials");
        assert_eq!(auth.username, "alice");
        assert_eq!(auth.server_address, "https://127.0.0.1:5000");
        let direct = registries
            .auth_for("127.0.0.1:5000/test/app:1")
            .expect("registry credentials");
        assert_eq!(direct.password, "s3cret");
        assert!(registries.auth_for("quay.io/a/b").is_none());
    }

    #[test]
    fn hosts_files_replace_what_was_written_before() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("old.example.com")).expect("old dir");
        apply(dir.path(), &parse(SAMPLE)).expect("applied");
        assert!(!dir.path().join("old.example.com").exists());
        assert!(dir.path().join("docker.io/hosts.toml").is_file());
        apply(dir.path(), &Registries::default()).expect("applied");
        assert!(!dir.path().join("docker.io").exists());
    }
}
