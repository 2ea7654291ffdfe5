//! Service account tokens: the TokenRequest API issues signed (ES256), audience-bound,
//! expiring JWTs with Kubernetes' claims, and the authenticator accepts them as
//! `system:serviceaccount:<ns>:<name>` while the ServiceAccount (same UID) exists.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Signs and verifies service account tokens.
pub(crate) struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// `iss` claim and default audience.
    pub issuer: String,
}

/// The `kubernetes.io` private claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct KubeClaims {
    pub namespace: String,
    pub serviceaccount: NamedRef,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<NamedRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<NamedRef>,
}

/// A name and UID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct NamedRef {
    pub name: String,
    pub uid: String,
}

/// All claims of a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubeClaims,
}

impl TokenIssuer {
    pub(crate) fn new(private_pem: &str, public_pem: &str, issuer: String) -> Result<Self, Error> {
        let encoding = EncodingKey::from_ec_pem(private_pem.as_bytes())
            .map_err(|e| Error::Pki(format!("service account signing key: {e}")))?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())
            .map_err(|e| Error::Pki(format!("service account public key: {e}")))?;
        Ok(Self {
            encoding,
            decoding,
            issuer,
        })
    }

    /// Signs a token for the service account.
    pub(crate) fn issue(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .map_err(|e| e.to_string())
    }

    /// Verifies signature, issuer, expiry and that one audience is `audience`.
    #[cfg(test)]
    pub(crate) fn verify(&self, token: &str, audience: &str) -> Option<Claims> {
        self.verify_any(token, &[audience])
    }

    /// Verifies signature, issuer, expiry and that the token holds one of `audiences`.
    pub(crate) fn verify_any(&self, token: &str, audiences: &[impl ToString]) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(audiences);
        v.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate().expect("key");
        TokenIssuer::new(
            &key.serialize_pem(),
            &key.public_key_pem(),
            "https://kubernetes.default.svc.cluster.local".into(),
        )
        .expect("issuer")
    }

    fn claims(aud: &str, exp: i64) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            aud: vec![aud.into()],
            exp: now + exp,
            iat: now,
            nbf: now,
            iss: "https://kubernetes.default.svc.cluster.local".into(),
            jti: "j".into(),
            sub: "system:serviceaccount:default:app".into(),
            kubernetes: KubeClaims {
                namespace: "default".into(),
                serviceaccount: NamedRef {
                    name: "app".into(),
                    uid: "u1".into(),
                },
                pod: None,
                secret: None,
            },
        }
    }

    #[test]
    fn tokens_verify_only_for_their_audience_and_until_they_expire() {
        let i = issuer();
        let t = i
            .issue(&claims("https://kubernetes.default.svc.cluster.local", 600))
            .expect("signed");
        assert_eq!(
            i.verify(&t, "https://kubernetes.default.svc.cluster.local")
                .expect("valid")
                .sub,
            "system:serviceaccount:default:app"
        );
        assert!(i.verify(&t, "vault").is_none());
        let old = i
            .issue(&claims("https://kubernetes.default.svc.cluster.local", -10))
            .expect("signed");
        assert!(
            i.verify(&old, "https://kubernetes.default.svc.cluster.local")
                .is_none()
        );
        let other = issuer();
        assert!(
            other
                .verify(&t, "https://kubernetes.default.svc.cluster.local")
                .is_none()
        );
    }
}
