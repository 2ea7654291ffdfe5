//! `POST serviceaccounts/{name}/token` (TokenRequest, `kubectl create token`): a
//! signed, expiring, audience-bound token for the service account, optionally bound
//! to a Pod or Secret so it stops working when that object is deleted.

use api::status::{ApiError, FieldError};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctx;
use crate::handler::Reply;
use crate::negotiate;
use crate::tokens::{Claims, KubeClaims, NamedRef};

/// Kubernetes' bounds on `expirationSeconds`.
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;
const MAX_EXPIRATION: i64 = 48 * 3600;

impl Ctx<'_> {
    pub(super) async fn token_request(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let ty = negotiate::body_type(content_type)?;
        let (req, _) = negotiate::decode_object(&body, ty)?;
        if req.get("kind").and_then(Value::as_str) != Some("TokenRequest") {
            return Err(ApiError::bad_request(
                "the body must be an authentication.k8s.io/v1 TokenRequest",
            ));
        }
        let ns = self.namespace().unwrap_or_default().to_string();
        let name = self.name().to_string();
        let write = crate::admission::Write {
            who: self.who,
            operation: crate::admission::node_restriction::Operation::Create,
            res: &self.res,
            subresource: &self.info.subresource,
            namespace: &ns,
            name: &name,
            object: Some(&req),
            old: None,
            dry_run: self.dry_run()?,
        };
        crate::admission::validate(self.state, &write, &mut self.warnings).await?;
        let sa = self.state.storage.get(&self.res, Some(&ns), &name).await?;
        let sa_uid = crate::object::meta_str(&sa, "uid")
            .unwrap_or_default()
            .to_string();
        let expiration = req
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_EXPIRATION);
        if expiration < MIN_EXPIRATION {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                &name,
                vec![FieldError::invalid(
                    "spec.expirationSeconds",
                    expiration,
                    "may not specify a duration less than 10 minutes",
                )],
            ));
        }
        let expiration = expiration.min(MAX_EXPIRATION);
        let issuer = self.state.token_issuer.issuer.clone();
        let audiences: Vec<String> = req
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| vec![issuer.clone()]);
        let mut claims_k = KubeClaims {
            namespace: ns.clone(),
            serviceaccount: NamedRef {
                name: name.clone(),
                uid: sa_uid,
            },
            pod: None,
            secret: None,
        };
        if let Some(bound) = req.pointer("/spec/boundObjectRef").filter(|b| !b.is_null()) {
            let kind = bound
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let bname = bound
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let plural = match kind {
                "Pod" => "pods",
                "Secret" => "secrets",
                other => {
                    return Err(ApiError::invalid(
                        "authentication.k8s.io",
                        "TokenRequest",
                        &name,
                        vec![FieldError::not_supported(
                            "spec.boundObjectRef.kind",
                            other,
                            &["Pod", "Secret"],
                        )],
                    ));
                }
            };
            let res = self
                .state
                .registry
                .lookup("", "v1", plural)
                .cloned()
                .ok_or_else(|| ApiError::internal("core resource missing"))?;
            let obj = self.state.storage.get(&res, Some(&ns), bname).await?;
            let uid = crate::object::meta_str(&obj, "uid")
                .unwrap_or_default()
                .to_string();
            if let Some(want) = bound
                .get("uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                && want != uid
            {
                return Err(ApiError::conflict_message(
                    "",
                    plural,
                    bname,
                    &format!(
                        "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            let r = NamedRef {
                name: bname.to_string(),
                uid,
            };
            if kind == "Pod" {
                claims_k.pod = Some(r);
            } else {
                claims_k.secret = Some(r);
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let claims = Claims {
            aud: audiences.clone(),
            exp: now + expiration,
            iat: now,
            nbf: now,
            iss: issuer,
            jti: uuid::Uuid::new_v4().to_string(),
            sub: format!("system:serviceaccount:{ns}:{name}"),
            kubernetes: claims_k,
        };
        let token = self
            .state
            .token_issuer
            .issue(&claims)
            .map_err(ApiError::internal)?;
        let exp_ts = jiff::Timestamp::from_second(now + expiration)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut out = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": expiration,
                     "boundObjectRef": req.pointer("/spec/boundObjectRef").cloned().unwrap_or(Value::Null)},
            "status": {"token": token, "expirationTimestamp": exp_ts},
        });
        if out
            .pointer("/spec/boundObjectRef")
            .is_some_and(Value::is_null)
            && let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.remove("boundObjectRef");
        }
        Ok(Reply::Json(201, out))
    }
}
