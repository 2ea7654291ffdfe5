//! Client certificates signed by the cluster CA with any number of groups: one
//! `O` per group, as Kubernetes reads them (rcgen's distinguished names keep one
//! value per attribute type, so these are built with x509-cert).

use std::time::{Duration, SystemTime};

use der::asn1::{SetOfVec, Utf8StringRef};
use der::{Decode, DecodePem, EncodePem};
use p256::pkcs8::DecodePrivateKey;
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use crate::Error;

fn err(what: &'static str) -> impl Fn(String) -> Error {
    move |e| Error::Pki(format!("{what}: {e}"))
}

/// One attribute as a relative distinguished name of its own.
fn rdn(oid: const_oid::ObjectIdentifier, value: &str) -> Result<RelativeDistinguishedName, Error> {
    let value = Utf8StringRef::new(value).map_err(|e| err("subject name")(e.to_string()))?;
    let set = SetOfVec::try_from(vec![AttributeTypeAndValue {
        oid,
        value: der::Any::from(value),
    }])
    .map_err(|e| err("subject name")(e.to_string()))?;
    Ok(RelativeDistinguishedName::from(set))
}

/// `O=<group>` for each group, then `CN=<user>`.
fn subject(user: &str, groups: &[&str]) -> Result<Name, Error> {
    use const_oid::db::rfc4519::{CN, O};
    let mut rdns = groups
        .iter()
        .map(|g| rdn(O, g))
        .collect::<Result<Vec<_>, _>>()?;
    rdns.push(rdn(CN, user)?);
    Ok(RdnSequence(rdns))
}

/// Signs a TLS client certificate for `user` in `groups` over `public_key_pem` (a
/// SubjectPublicKeyInfo), valid from now until `not_after`.
pub(crate) fn sign(
    ca_cert: &str,
    ca_key: &str,
    user: &str,
    groups: &[&str],
    public_key_pem: &str,
    not_after: SystemTime,
) -> Result<String, Error> {
    let ca = Certificate::from_pem(ca_cert.as_bytes())
        .map_err(|e| err("reading the CA certificate")(e.to_string()))?;
    let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(ca_key)
        .map_err(|e| err("reading the CA key (want ECDSA P-256)")(e.to_string()))?;
    let spki = SubjectPublicKeyInfoOwned::from_pem(public_key_pem.as_bytes())
        .map_err(|e| err("reading the client public key")(e.to_string()))?;
    let now = SystemTime::now();
    let validity = Validity {
        // A minute back, for clocks a little behind ours.
        not_before: Time::try_from(now - Duration::from_secs(60))
            .map_err(|e| err("validity")(e.to_string()))?,
        not_after: Time::try_from(not_after).map_err(|e| err("validity")(e.to_string()))?,
    };
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    let serial = SerialNumber::new(&serial).map_err(|e| err("serial number")(e.to_string()))?;
    let profile = Profile::Manual {
        issuer: Some(ca.tbs_certificate.subject.clone()),
    };
    let mut builder = CertificateBuilder::new(
        profile,
        serial,
        validity,
        subject(user, groups)?,
        spki,
        &signer,
    )
    .map_err(|e| err("building the certificate")(e.to_string()))?;
    let ext = |e: x509_cert::builder::Error| err("certificate extensions")(e.to_string());
    builder
        .add_extension(&BasicConstraints {
            ca: false,
            path_len_constraint: None,
        })
        .map_err(ext)?;
    builder
        .add_extension(&KeyUsage(
            KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
        ))
        .map_err(ext)?;
    builder
        .add_extension(&ExtendedKeyUsage(vec![
            const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
        ]))
        .map_err(ext)?;
    // Verifiers find the issuer by the CA's own key identifier.
    let ca_key_id = ca
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok());
    if let Some(id) = ca_key_id {
        builder
            .add_extension(&AuthorityKeyIdentifier {
                key_identifier: Some(id.0),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            })
            .map_err(ext)?;
    }
    let cert = builder
        .build::<p256::ecdsa::DerSignature>()
        .map_err(|e| err("signing the certificate")(e.to_string()))?;
    cert.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| err("encoding the certificate")(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject as _;

    fn ca() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let cert = params.self_signed(&key).expect("CA certificate");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn every_group_becomes_an_organization_the_authenticator_reads() {
        let (ca_cert, ca_key) = ca();
        let until = SystemTime::now() + Duration::from_secs(3600);
        let (cert, _key) = crate::pki::sign_user_cert(
            &ca_cert,
            &ca_key,
            "carol",
            &["devs", "ops", "team:a"],
            until,
        )
        .expect("signed");
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes())
            .expect("PEM certificate");
        let id = crate::authn::identity_from_certificate(&der).expect("an identity");
        assert_eq!(id.user, "carol");
        assert_eq!(
            id.groups,
            vec!["devs", "ops", "team:a", "system:authenticated"]
        );
    }

    #[test]
    fn the_certificate_chains_to_the_ca_and_is_for_clients_only() {
        let (ca_cert, ca_key) = ca();
        let until = SystemTime::now() + Duration::from_secs(86_400);
        let (cert, _) =
            crate::pki::sign_user_cert(&ca_cert, &ca_key, "dave", &[], until).expect("signed");
        let leaf = Certificate::from_pem(cert.as_bytes()).expect("leaf");
        let ca = Certificate::from_pem(ca_cert.as_bytes()).expect("ca");
        assert_eq!(leaf.tbs_certificate.issuer, ca.tbs_certificate.subject);
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("PEM");
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let eku = parsed
            .extended_key_usage()
            .expect("extensions")
            .expect("an EKU");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        let ca_der =
            rustls::pki_types::CertificateDer::from_pem_slice(ca_cert.as_bytes()).expect("PEM");
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&ca_der).expect("parse");
        parsed
            .verify_signature(Some(ca_parsed.public_key()))
            .expect("signed by the CA");
        assert!(
            parsed
                .validity()
                .time_to_expiration()
                .expect("valid now")
                .whole_hours()
                <= 24
        );
    }

    #[test]
    fn a_ca_key_that_is_not_p256_is_a_clear_error() {
        let (ca_cert, _) = ca();
        let err =
            sign(&ca_cert, "garbage", "x", &[], "garbage", SystemTime::now()).expect_err("refused");
        assert!(err.to_string().contains("CA key"), "{err}");
    }
}
