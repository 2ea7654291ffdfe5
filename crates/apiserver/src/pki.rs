//! The cluster's certificates: a CA, the API serving certificate, the admin client
//! certificate, the API server's client certificate towards node agents and the
//! scheduler's, controller manager's and cluster DNS's client certificates, created
//! on first start under `<data-dir>/server/tls/` and reused after.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

mod client;

/// The user the API server is when it calls node agents (kubeadm's convention).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The user the scheduler is (Kubernetes' `system:kube-scheduler`).
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// The user the controller manager is (Kubernetes' `system:kube-controller-manager`).
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The user the cluster DNS in `skiff server` is.
pub const CLUSTER_DNS_USER: &str = "system:kube-dns";

/// PEM files of the cluster PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate (PEM).
    pub ca_cert: String,
    /// CA private key (PEM).
    pub ca_key: String,
    /// Serving certificate chain (PEM).
    pub serving_cert: String,
    /// Serving key (PEM).
    pub serving_key: String,
    /// Admin client certificate (PEM), O=system:masters.
    pub admin_cert: String,
    /// Admin client key (PEM).
    pub admin_key: String,
    /// The API server's client certificate towards node agents (PEM),
    /// CN=kube-apiserver-kubelet-client, O=system:masters.
    pub kubelet_client_cert: String,
    /// Its key (PEM).
    pub kubelet_client_key: String,
    /// The scheduler's client certificate (PEM), CN=system:kube-scheduler.
    pub scheduler_cert: String,
    /// Its key (PEM).
    pub scheduler_key: String,
    /// The controller manager's client certificate (PEM),
    /// CN=system:kube-controller-manager.
    pub controller_manager_cert: String,
    /// Its key (PEM).
    pub controller_manager_key: String,
    /// The cluster DNS's client certificate (PEM), CN=system:kube-dns.
    pub cluster_dns_cert: String,
    /// Its key (PEM).
    pub cluster_dns_key: String,
    /// Service account token signing key (PKCS#8 ECDSA P-256, PEM).
    pub service_account_key: String,
    /// Its public key (PEM), for verifying tokens.
    pub service_account_public_key: String,
}

/// What the serving certificate must name.
#[derive(Debug, Clone)]
pub struct PkiConfig {
    /// Directory holding the PEM files.
    pub dir: PathBuf,
    /// Extra DNS names and IPs for the serving certificate.
    pub sans: Vec<String>,
}

fn read_or_none(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(path.display().to_string(), e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| Error::Io(path.display().to_string(), e))?;
    f.sync_all()
        .map_err(|e| Error::Io(path.display().to_string(), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Io(path.display().to_string(), e))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-server-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

pub(crate) fn pki_err(step: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Pki(format!("{step}: {e}"))
}

/// Signs a client certificate (and makes its key) for `user` in `groups` with the
/// cluster CA, valid until 2036 like the components' certificates.
pub fn sign_client_cert(
    ca_cert: &str,
    ca_key: &str,
    user: &str,
    groups: &[&str],
) -> Result<(String, String), Error> {
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_082_758_400); // 2036-01-01
    sign_user_cert(ca_cert, ca_key, user, groups, until)
}

/// Signs a client certificate (and makes its key) for `user` in `groups` — one
/// `O` per group — with the cluster CA, valid until `not_after`.
pub fn sign_user_cert(
    ca_cert: &str,
    ca_key: &str,
    user: &str,
    groups: &[&str],
    not_after: std::time::SystemTime,
) -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(pki_err("generating client key"))?;
    let cert = client::sign(
        ca_cert,
        ca_key,
        user,
        groups,
        &key.public_key_pem(),
        not_after,
    )?;
    Ok((cert, key.serialize_pem()))
}

/// The cluster CA as an issuer of certificates.
pub(crate) fn issuer(ca_cert: &str, ca_key: &str) -> Result<Issuer<'static, KeyPair>, Error> {
    let ca_key = KeyPair::from_pem(ca_key).map_err(pki_err("loading CA key"))?;
    Issuer::from_ca_cert_pem(ca_cert, ca_key).map_err(pki_err("loading CA certificate"))
}

/// A client certificate's parameters: CN = `user`, O = each of `groups`.
pub(crate) fn client_params(user: &str, groups: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.distinguished_name.push(DnType::CommonName, user);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

/// A serving certificate's parameters: CN = `common_name`, `sans` as IP addresses or
/// DNS names.
pub(crate) fn serving_params(
    common_name: &str,
    sans: &[String],
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(pki_err("serving certificate names"))?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

/// Signs a TLS serving certificate named `common_name` for `sans` (IP addresses
/// or DNS names) with the cluster CA; the certificate PEM carries the CA after it.
pub fn sign_serving_cert(
    ca_cert: &str,
    ca_key: &str,
    common_name: &str,
    sans: &[String],
) -> Result<(String, String), Error> {
    let issuer = issuer(ca_cert, ca_key)?;
    let params = serving_params(common_name, sans)?;
    let key = KeyPair::generate().map_err(pki_err("generating serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(pki_err("signing serving certificate"))?;
    Ok((format!("{}{}", cert.pem(), ca_cert), key.serialize_pem()))
}

/// The client certificate `<stem>.crt`/`<stem>.key` in `dir` for `user` (no groups),
/// signed on first use and reused after.
fn client_pair(
    dir: &Path,
    stem: &str,
    ca_cert: &str,
    ca_key: &str,
    user: &str,
) -> Result<(String, String), Error> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    if let (Some(c), Some(k)) = (read_or_none(&cert_path), read_or_none(&key_path)) {
        return Ok((c, k));
    }
    let (c, k) = sign_client_cert(ca_cert, ca_key, user, &[])?;
    write_private(&key_path, &k)?;
    write_private(&cert_path, &c)?;
    Ok((c, k))
}

impl Pki {
    /// Loads the PKI from `config.dir`, creating whatever is missing. The serving
    /// certificate is re-issued when the set of names it must carry changed.
    pub fn load_or_create(config: &PkiConfig) -> Result<Self, Error> {
        let dir = &config.dir;
        fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        let path = |n: &str| dir.join(n);

        let (ca_cert, ca_key) = match (read_or_none(&path("ca.crt")), read_or_none(&path("ca.key")))
        {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate().map_err(pki_err("generating CA key"))?;
                let cert = ca_params()
                    .self_signed(&key)
                    .map_err(pki_err("self-signing CA"))?;
                let (c, k) = (cert.pem(), key.serialize_pem());
                write_private(&path("ca.key"), &k)?;
                write_private(&path("ca.crt"), &c)?;
                (c, k)
            }
        };

        let sans_line = config.sans.join(",");
        let (serving_cert, serving_key) = match (
            read_or_none(&path("serving.crt")),
            read_or_none(&path("serving.key")),
            read_or_none(&path("serving.sans")),
        ) {
            (Some(c), Some(k), Some(s)) if s == sans_line => (c, k),
            _ => {
                let (c, k) = sign_serving_cert(&ca_cert, &ca_key, "kube-apiserver", &config.sans)?;
                write_private(&path("serving.key"), &k)?;
                write_private(&path("serving.crt"), &c)?;
                write_private(&path("serving.sans"), &sans_line)?;
                (c, k)
            }
        };

        let (admin_cert, admin_key) = match (
            read_or_none(&path("admin.crt")),
            read_or_none(&path("admin.key")),
        ) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let (c, k) =
                    sign_client_cert(&ca_cert, &ca_key, "system:admin", &["system:masters"])?;
                write_private(&path("admin.key"), &k)?;
                write_private(&path("admin.crt"), &c)?;
                (c, k)
            }
        };

        let (kubelet_client_cert, kubelet_client_key) = match (
            read_or_none(&path("kubelet-client.crt")),
            read_or_none(&path("kubelet-client.key")),
        ) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let (c, k) =
                    sign_client_cert(&ca_cert, &ca_key, KUBELET_CLIENT_USER, &["system:masters"])?;
                write_private(&path("kubelet-client.key"), &k)?;
                write_private(&path("kubelet-client.crt"), &c)?;
                (c, k)
            }
        };

        // Components with their own identity and least privilege (k3s's file names).
        let (scheduler_cert, scheduler_key) =
            client_pair(dir, "client-scheduler", &ca_cert, &ca_key, SCHEDULER_USER)?;
        let (controller_manager_cert, controller_manager_key) = client_pair(
            dir,
            "client-controller",
            &ca_cert,
            &ca_key,
            CONTROLLER_MANAGER_USER,
        )?;
        let (cluster_dns_cert, cluster_dns_key) =
            client_pair(dir, "client-kube-dns", &ca_cert, &ca_key, CLUSTER_DNS_USER)?;

        let sa_key = match read_or_none(&path("service-account.key")) {
            Some(k) => k,
            None => {
                let key = KeyPair::generate().map_err(pki_err("generating service account key"))?;
                let k = key.serialize_pem();
                write_private(&path("service-account.key"), &k)?;
                k
            }
        };
        let sa_public = KeyPair::from_pem(&sa_key)
            .map_err(pki_err("loading service account key"))?
            .public_key_pem();

        Ok(Self {
            ca_cert,
            ca_key,
            serving_cert,
            serving_key,
            admin_cert,
            admin_key,
            kubelet_client_cert,
            kubelet_client_key,
            scheduler_cert,
            scheduler_key,
            controller_manager_cert,
            controller_manager_key,
            cluster_dns_cert,
            cluster_dns_key,
            service_account_key: sa_key,
            service_account_public_key: sa_public,
        })
    }
}

/// A kubeconfig for `server` with the given client certificate (YAML text).
pub fn kubeconfig_yaml(server: &str, ca_cert: &str, client_cert: &str, client_key: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts:
- name: default
  context:
    cluster: default
    user: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_cert),
        cert = b64(client_cert),
        key = b64(client_key),
    )
}

/// Writes a kubeconfig for `server` with the given client certificate, mode `mode`.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_cert: &str,
    client_cert: &str,
    client_key: &str,
    mode: u32,
) -> Result<(), Error> {
    let body = kubeconfig_yaml(server, ca_cert, client_cert, client_key);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::Io(parent.display().to_string(), e))?;
    }
    let tmp = path.with_extension("tmp");
    write_private(&tmp, &body)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::Io(tmp.display().to_string(), e))?;
    fs::rename(&tmp, path).map_err(|e| Error::Io(path.display().to_string(), e))
}
