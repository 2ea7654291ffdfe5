//! The cluster CA issuing certificates for approved requests (Kubernetes' local
//! signer with its `PermissiveSigningPolicy`): subject, public key and subject
//! alternative names come from the request, key usages from `spec.usages`, the
//! validity from `spec.expirationSeconds` within the signer's maximum, backdated
//! five minutes and never past the CA's own expiry; every other requested
//! extension is dropped and the certificate is never a CA.

use std::time::{Duration, SystemTime};

use der::{Decode, DecodePem, EncodePem};
use p256::pkcs8::DecodePrivateKey;
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// What the signer issues when a request names no duration (Kubernetes'
/// `--cluster-signing-duration` default, a year).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back `notBefore` goes, for clocks a little behind ours.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Certificates shorter than this do not lose the backdate at their end.
const SHORT: Duration = Duration::from_secs(8 * 3600);
/// The shortest certificate issued (twice the backdate).
const MIN_DURATION: Duration = Duration::from_secs(10 * 60);

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// The CA certificate or key cannot be used to sign.
    #[error("the cluster CA cannot sign: {0}")]
    CaUnusable(String),
    /// The CA has expired (or would be before the certificate starts).
    #[error("{0}")]
    CaExpired(String),
    /// The stored request could not be read again.
    #[error("reading the certificate request: {0}")]
    RequestUnreadable(String),
    /// A usage has no X.509 meaning.
    #[error("unrecognized usage values: {0:?}")]
    UnknownUsages(Vec<String>),
    /// Building or signing the certificate failed.
    #[error("building the certificate: {0}")]
    Build(String),
}

/// The CA key and certificate, read once.
struct Ca {
    cert: Certificate,
    key: p256::ecdsa::SigningKey,
    not_after: SystemTime,
    key_id: Option<der::asn1::OctetString>,
}

/// The cluster CA as a signer of certificate requests. The key stays in the
/// API server's memory.
pub(crate) struct ClusterSigner {
    ca: Result<Ca, String>,
}

impl std::fmt::Debug for ClusterSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSigner")
            .field("usable", &self.ca.is_ok())
            .finish()
    }
}

fn read_ca(cert_pem: &str, key_pem: &str) -> Result<Ca, String> {
    let cert = Certificate::from_pem(cert_pem.as_bytes())
        .map_err(|e| format!("reading the CA certificate: {e}"))?;
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem)
        .map_err(|e| format!("reading the CA key (want ECDSA P-256): {e}"))?;
    let not_after = cert.tbs_certificate.validity.not_after.to_system_time();
    let key_id = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok())
        .map(|id| id.0);
    Ok(Ca {
        cert,
        key,
        not_after,
        key_id,
    })
}

/// Extended key usages, marked non-critical as Go's x509 package marks them
/// (x509-cert would mark them critical).
struct NonCriticalEku(ExtendedKeyUsage);

impl const_oid::AssociatedOid for NonCriticalEku {
    const OID: const_oid::ObjectIdentifier = const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE;
}

impl der::Encode for NonCriticalEku {
    fn encoded_len(&self) -> der::Result<der::Length> {
        self.0.encoded_len()
    }

    fn encode(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        self.0.encode(writer)
    }
}

impl x509_cert::ext::AsExtension for NonCriticalEku {
    fn critical(&self, _: &x509_cert::name::Name, _: &[Extension]) -> bool {
        false
    }
}

/// The usage's key usage bit, if it is one.
fn key_usage(usage: &str) -> Option<KeyUsages> {
    Some(match usage {
        "signing" | "digital signature" => KeyUsages::DigitalSignature,
        "content commitment" => KeyUsages::NonRepudiation,
        "key encipherment" => KeyUsages::KeyEncipherment,
        "key agreement" => KeyUsages::KeyAgreement,
        "data encipherment" => KeyUsages::DataEncipherment,
        "cert sign" => KeyUsages::KeyCertSign,
        "crl sign" => KeyUsages::CRLSign,
        "encipher only" => KeyUsages::EncipherOnly,
        "decipher only" => KeyUsages::DecipherOnly,
        _ => return None,
    })
}

/// The usage's extended key usage, as (Go's order, OID), if it is one.
fn extended_key_usage(usage: &str) -> Option<(u8, const_oid::ObjectIdentifier)> {
    use const_oid::ObjectIdentifier as Oid;
    use const_oid::db::rfc5280 as kp;
    Some(match usage {
        "any" => (0, Oid::new_unwrap("2.5.29.37.0")),
        "server auth" => (1, kp::ID_KP_SERVER_AUTH),
        "client auth" => (2, kp::ID_KP_CLIENT_AUTH),
        "code signing" => (3, kp::ID_KP_CODE_SIGNING),
        "email protection" | "s/mime" => (4, kp::ID_KP_EMAIL_PROTECTION),
        "ipsec end system" => (5, Oid::new_unwrap("1.3.6.1.5.5.7.3.5")),
        "ipsec tunnel" => (6, Oid::new_unwrap("1.3.6.1.5.5.7.3.6")),
        "ipsec user" => (7, Oid::new_unwrap("1.3.6.1.5.5.7.3.7")),
        "timestamping" => (8, kp::ID_KP_TIME_STAMPING),
        "ocsp signing" => (9, kp::ID_KP_OCSP_SIGNING),
        "microsoft sgc" => (10, Oid::new_unwrap("1.3.6.1.4.1.311.10.3.3")),
        "netscape sgc" => (11, Oid::new_unwrap("2.16.840.1.113730.4.1")),
        _ => return None,
    })
}

/// How long a certificate for a request asking `expiration_seconds` lives:
/// the request's wish within [10 minutes, `max`], `max` without one.
pub(crate) fn duration(expiration_seconds: Option<i64>, max: Duration) -> Duration {
    let Some(s) = expiration_seconds else {
        return max;
    };
    let wanted = Duration::from_secs(u64::try_from(s).unwrap_or(0));
    wanted.clamp(MIN_DURATION, max.max(MIN_DURATION))
}

/// `notBefore` and `notAfter` of a certificate issued at `now` for `ttl` by a CA
/// valid until `ca_not_after` (Kubernetes' policy: backdated, the backdate taken
/// off the end of long-lived certificates, never past the CA).
pub(crate) fn validity(
    now: SystemTime,
    ttl: Duration,
    ca_not_after: SystemTime,
) -> Result<(SystemTime, SystemTime), SignError> {
    let not_before = now - BACKDATE;
    let mut not_after = if ttl < SHORT {
        now + ttl
    } else {
        now + ttl.saturating_sub(BACKDATE)
    };
    if not_after >= ca_not_after {
        not_after = ca_not_after;
    }
    let shown =
        || jiff::Timestamp::try_from(ca_not_after).map_or_else(|_| "?".into(), |t| t.to_string());
    if not_before >= ca_not_after {
        return Err(SignError::CaExpired(format!(
            "the signer has expired: NotAfter={}",
            shown()
        )));
    }
    if now >= ca_not_after {
        return Err(SignError::CaExpired(format!(
            "refusing to sign a certificate that expired in the past: NotAfter={}",
            shown()
        )));
    }
    Ok((not_before, not_after))
}

/// The subject alternative names a request asks for, if any.
fn requested_sans(req: &CertReq) -> Option<SubjectAltName> {
    let ext_req = const_oid::db::rfc5912::ID_EXTENSION_REQ;
    req.info
        .attributes
        .iter()
        .filter(|a| a.oid == ext_req)
        .flat_map(|a| a.values.iter())
        .filter_map(|v| v.decode_as::<Vec<Extension>>().ok())
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
        .and_then(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).ok())
}

impl ClusterSigner {
    /// The signer of the CA in `cert_pem` with `key_pem` (PKCS#8). A CA this
    /// signer cannot use is reported by [`ClusterSigner::usable`], not here: the
    /// API server runs without it.
    pub(crate) fn new(cert_pem: &str, key_pem: &str) -> Self {
        Self {
            ca: read_ca(cert_pem, key_pem),
        }
    }

    /// Whether the CA can sign (why not, otherwise).
    pub(crate) fn usable(&self) -> Result<(), String> {
        self.ca.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// Issues a certificate (PEM) for the PKCS#10 request `request_der` with
    /// `usages`, for `ttl`, at `now`.
    pub(crate) fn sign(
        &self,
        request_der: &[u8],
        usages: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, SignError> {
        let ca = self
            .ca
            .as_ref()
            .map_err(|e| SignError::CaUnusable(e.clone()))?;
        let unknown: Vec<String> = usages
            .iter()
            .filter(|u| key_usage(u).is_none() && extended_key_usage(u).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(SignError::UnknownUsages(unknown));
        }
        let req = CertReq::from_der(request_der)
            .map_err(|e| SignError::RequestUnreadable(e.to_string()))?;
        let (not_before, not_after) = validity(now, ttl, ca.not_after)?;
        let time = |t: SystemTime| Time::try_from(t).map_err(|e| SignError::Build(e.to_string()));
        let validity = Validity {
            not_before: time(not_before)?,
            not_after: time(not_after)?,
        };
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        let serial = SerialNumber::new(&serial).map_err(|e| SignError::Build(e.to_string()))?;
        let profile = Profile::Manual {
            issuer: Some(ca.cert.tbs_certificate.subject.clone()),
        };
        let build = |e: x509_cert::builder::Error| SignError::Build(e.to_string());
        let mut builder = CertificateBuilder::new(
            profile,
            serial,
            validity,
            req.info.subject.clone(),
            req.info.public_key.clone(),
            &ca.key,
        )
        .map_err(build)?;
        let mut bits = usages.iter().filter_map(|u| key_usage(u));
        if let Some(first) = bits.next() {
            let mut ku = KeyUsage(first.into());
            for b in bits {
                ku.0 |= b;
            }
            builder.add_extension(&ku).map_err(build)?;
        }
        let mut ekus: Vec<(u8, const_oid::ObjectIdentifier)> = usages
            .iter()
            .filter_map(|u| extended_key_usage(u))
            .collect();
        ekus.sort();
        ekus.dedup();
        if !ekus.is_empty() {
            builder
                .add_extension(&NonCriticalEku(ExtendedKeyUsage(
                    ekus.into_iter().map(|(_, o)| o).collect(),
                )))
                .map_err(build)?;
        }
        builder
            .add_extension(&BasicConstraints {
                ca: false,
                path_len_constraint: None,
            })
            .map_err(build)?;
        if let Some(id) = &ca.key_id {
            builder
                .add_extension(&AuthorityKeyIdentifier {
                    key_identifier: Some(id.clone()),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                })
                .map_err(build)?;
        }
        if let Some(sans) = requested_sans(&req) {
            builder.add_extension(&sans).map_err(build)?;
        }
        let cert = builder
            .build::<p256::ecdsa::DerSignature>()
            .map_err(build)?;
        cert.to_pem(der::pem::LineEnding::LF)
            .map_err(|e| SignError::Build(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::request::tests::request;

    fn ca() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&key).expect("CA certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn der_of(pem: &str) -> Vec<u8> {
        crate::csr::pem::decode(pem.as_bytes()).expect("pem").0.der
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_duration_is_the_request_s_within_ten_minutes_and_the_maximum() {
        assert_eq!(duration(None, MAX_DURATION), MAX_DURATION);
        assert_eq!(duration(Some(3600), MAX_DURATION), HOUR);
        assert_eq!(duration(Some(60), MAX_DURATION), MIN_DURATION);
        assert_eq!(duration(Some(i64::MAX), MAX_DURATION), MAX_DURATION);
        assert_eq!(duration(Some(-5), MAX_DURATION), MIN_DURATION);
    }

    #[test]
    fn short_certificates_keep_their_full_length_and_long_ones_lose_the_backdate() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let far = now + 1000 * HOUR;
        let (nb, na) = validity(now, HOUR, far).expect("valid");
        assert_eq!(nb, now - BACKDATE);
        assert_eq!(na, now + HOUR);
        let (_, na) = validity(now, 24 * HOUR, far).expect("valid");
        assert_eq!(na, now + 24 * HOUR - BACKDATE);
        let (_, na) = validity(now, 24 * HOUR, now + HOUR).expect("capped");
        assert_eq!(na, now + HOUR);
        let err = validity(now, HOUR, now - HOUR).expect_err("expired CA");
        assert!(
            err.to_string().starts_with("the signer has expired"),
            "{err}"
        );
        let err = validity(now, HOUR, now - Duration::from_secs(1)).expect_err("expired CA");
        assert!(
            err.to_string()
                .starts_with("refusing to sign a certificate that expired in the past"),
            "{err}"
        );
    }

    #[test]
    fn the_certificate_carries_the_request_s_subject_and_key_and_the_asked_usages() {
        let (ca_cert, ca_key) = ca();
        let signer = ClusterSigner::new(&ca_cert, &ca_key);
        signer.usable().expect("a usable CA");
        let (req, key) = request("jane", &["devs", "ops"], &["jane.example.com"]);
        let usages = vec!["digital signature".to_string(), "client auth".to_string()];
        let now = SystemTime::now();
        let pem = signer
            .sign(&der_of(&req), &usages, 2 * HOUR, now)
            .expect("signed");
        let der = der_of(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
        let cn: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(cn, vec!["jane"]);
        let orgs: Vec<&str> = cert
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(orgs, vec!["devs", "ops"]);
        assert_eq!(
            cert.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );
        let eku = cert.extended_key_usage().expect("ext").expect("eku");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(!eku.critical, "Go marks extended key usage non-critical");
        let ku = cert.key_usage().expect("ext").expect("ku").value;
        assert!(ku.digital_signature() && !ku.key_encipherment());
        let bc = cert.basic_constraints().expect("ext").expect("bc").value;
        assert!(!bc.ca);
        let sans = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("sans")
            .value;
        assert_eq!(sans.general_names.len(), 1);
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 2 * 3600 + 300);
        let ca_der = der_of(&ca_cert);
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        cert.verify_signature(Some(ca_parsed.public_key()))
            .expect("signed by the CA");
        assert_eq!(cert.issuer(), ca_parsed.subject());
        // The API server's authenticator reads the same user and groups.
        let id = crate::authn::identity_from_certificate(&der).expect("identity");
        assert_eq!(id.user, "jane");
        assert_eq!(id.groups, vec!["devs", "ops", "system:authenticated"]);
    }

    #[test]
    fn a_ca_the_signer_cannot_use_is_reported_not_fatal() {
        let signer = ClusterSigner::new("garbage", "garbage");
        assert!(signer.usable().is_err());
        let err = signer
            .sign(b"", &[], HOUR, SystemTime::now())
            .expect_err("refused");
        assert!(err.to_string().contains("cluster CA cannot sign"), "{err}");
    }
}
