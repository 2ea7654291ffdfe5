//! The PKCS#10 request a CertificateSigningRequest carries in `spec.request`, read
//! as Kubernetes' `certificates.ParseCSR` and `CheckSignature` read it: the first
//! PEM block must be a `CERTIFICATE REQUEST` whose self-signature verifies.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Kubernetes' message for a `spec.request` that is not a PEM certificate request.
pub(crate) const NOT_A_REQUEST: &str = "PEM block type must be CERTIFICATE REQUEST";

/// What the server reads from a verified certificate request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    /// The PKCS#10 request (DER).
    pub der: Vec<u8>,
    /// The subject's common name (the last one, as Go reads names).
    pub common_name: String,
    /// The subject's organizations, in order.
    pub organizations: Vec<String>,
    /// Subject alternative names asked for: DNS names.
    pub dns_names: usize,
    /// Email addresses asked for.
    pub emails: usize,
    /// IP addresses asked for.
    pub ips: usize,
    /// URIs asked for.
    pub uris: usize,
}

/// What `CheckSignature` answers when a request's signature does not verify.
fn verification_failure(req: &X509CertificationRequest<'_>, e: X509Error) -> String {
    use x509_parser::oid_registry as oids;
    if e == X509Error::SignatureUnsupportedAlgorithm {
        return "x509: cannot verify signature: algorithm unimplemented".into();
    }
    let alg = &req.signature_algorithm.algorithm;
    if *alg == oids::OID_SIG_ECDSA_WITH_SHA256 || *alg == oids::OID_SIG_ECDSA_WITH_SHA384 {
        "x509: ECDSA verification failure".into()
    } else if *alg == oids::OID_SIG_ED25519 {
        "x509: Ed25519 verification failure".into()
    } else {
        "crypto/rsa: verification error".into()
    }
}

/// Reads and verifies `pem` (the decoded `spec.request`); the error is the
/// message Kubernetes puts in the `spec.request` field error.
pub(crate) fn parse(pem: &[u8]) -> Result<Request, String> {
    let block = match super::pem::decode(pem) {
        Some((b, _)) if b.label == "CERTIFICATE REQUEST" => b,
        _ => return Err(NOT_A_REQUEST.into()),
    };
    let (rest, req) = X509CertificationRequest::from_der(&block.der)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    if !rest.is_empty() {
        return Err("asn1: syntax error: trailing data".into());
    }
    req.verify_signature()
        .map_err(|e| verification_failure(&req, e))?;
    let subject = &req.certification_request_info.subject;
    let common_name = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .last()
        .unwrap_or_default()
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(String::from))
        .collect();
    let mut out = Request {
        der: block.der.clone(),
        common_name,
        organizations,
        ..Request::default()
    };
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(_) => out.dns_names += 1,
                    GeneralName::RFC822Name(_) => out.emails += 1,
                    GeneralName::IPAddress(_) => out.ips += 1,
                    GeneralName::URI(_) => out.uris += 1,
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// Go's `%#v` of a byte slice (`[]byte{0x2d, 0x2d}`), as Kubernetes prints a
/// rejected `spec.request`; `None` is a request that was never given.
pub(crate) fn go_bytes(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "[]byte(nil)".into(),
        Some(b) => {
            let items: Vec<String> = b.iter().map(|x| format!("0x{x:x}")).collect();
            format!("[]byte{{{}}}", items.join(", "))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PEM certificate request for `cn` in `orgs`, signed by a fresh P-256 key
    /// (returned too).
    pub(crate) fn request(cn: &str, orgs: &[&str], dns: &[&str]) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        // rcgen keeps one value per attribute type: a second O goes in under
        // O's OID as a "custom" type.
        assert!(orgs.len() <= 2, "at most two organizations");
        for (i, o) in orgs.iter().enumerate() {
            let ty = match i {
                0 => rcgen::DnType::OrganizationName,
                _ => rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
            };
            params.distinguished_name.push(ty, *o);
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let csr = params.serialize_request(&key).expect("csr");
        (csr.pem().expect("pem"), key)
    }

    #[test]
    fn a_signed_request_names_its_subject_and_sans() {
        let (pem, _) = request("jane", &["devs", "ops"], &["jane.example.com"]);
        let r = parse(pem.as_bytes()).expect("valid");
        assert_eq!(r.common_name, "jane");
        assert_eq!(r.organizations, vec!["devs", "ops"]);
        assert_eq!(r.dns_names, 1);
        assert_eq!((r.emails, r.ips, r.uris), (0, 0, 0));
    }

    #[test]
    fn anything_but_a_certificate_request_block_is_refused_as_kubernetes_words_it() {
        assert_eq!(parse(b"hello").unwrap_err(), NOT_A_REQUEST);
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        assert_eq!(
            parse(cert.cert.pem().as_bytes()).unwrap_err(),
            NOT_A_REQUEST
        );
        let garbage =
            "-----BEGIN CERTIFICATE REQUEST-----\nAQID\n-----END CERTIFICATE REQUEST-----\n";
        assert!(
            parse(garbage.as_bytes())
                .unwrap_err()
                .starts_with("x509: malformed certificate request")
        );
    }

    #[test]
    fn a_request_whose_signature_does_not_verify_is_refused() {
        let (pem, _) = request("jane", &[], &[]);
        let (block, _) = super::super::pem::decode(pem.as_bytes()).expect("pem");
        let mut der = block.der;
        // Flip a bit of the subject (inside the signed part).
        let at = der
            .windows(4)
            .position(|w| w == b"jane")
            .expect("the subject");
        der[at] ^= 0x01;
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert_eq!(
            parse(tampered.as_bytes()).unwrap_err(),
            "x509: ECDSA verification failure"
        );
    }

    #[test]
    fn bytes_print_as_go_prints_them() {
        assert_eq!(go_bytes(None), "[]byte(nil)");
        assert_eq!(go_bytes(Some(b"")), "[]byte{}");
        assert_eq!(go_bytes(Some(b"hi\n")), "[]byte{0x68, 0x69, 0xa}");
    }
}
