//! The review APIs: create-only objects answered at once and never stored.
//!
//! - `authorization.k8s.io/v1` SelfSubjectAccessReview (`kubectl auth can-i`),
//!   SubjectAccessReview, LocalSubjectAccessReview: would this user be allowed?
//! - SelfSubjectRulesReview (`kubectl auth can-i --list`): what may I do here?
//! - `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth whoami`): who am I?
//! - TokenReview: whom does this bearer token name (for webhook authenticators and
//!   aggregated servers)?
//!
//! They answer from the same authorizer that guards every request.

use api::status::{ApiError, FieldError};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::authn::Identity;
use crate::authz::{Attributes, Decision};
use crate::handler::Reply;
use crate::negotiate::{self, BodyType};
use crate::request::RequestInfo;
use crate::serve::State;

const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTHENTICATION: &str = "authentication.k8s.io";

/// Whether the request creates a review served here.
pub(crate) fn handles(info: &RequestInfo) -> bool {
    info.is_resource
        && info.verb == "create"
        && info.version == "v1"
        && info.subresource.is_empty()
        && info.name.is_none()
        && match info.group.as_str() {
            AUTHORIZATION => matches!(
                info.resource.as_str(),
                "selfsubjectaccessreviews"
                    | "subjectaccessreviews"
                    | "localsubjectaccessreviews"
                    | "selfsubjectrulesreviews"
            ),
            AUTHENTICATION => matches!(
                info.resource.as_str(),
                "selfsubjectreviews" | "tokenreviews"
            ),
            _ => false,
        }
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
        "subjectaccessreviews" => "SubjectAccessReview",
        "localsubjectaccessreviews" => "LocalSubjectAccessReview",
        "selfsubjectrulesreviews" => "SelfSubjectRulesReview",
        "tokenreviews" => "TokenReview",
        _ => "SelfSubjectReview",
    }
}

fn decode(info: &RequestInfo, content_type: Option<&str>, body: &Bytes) -> Result<Value, ApiError> {
    let ty = negotiate::body_type(content_type)?;
    if !matches!(ty, BodyType::Json | BodyType::Yaml | BodyType::Protobuf) {
        return Err(ApiError::unsupported_media_type(
            content_type.unwrap_or_default(),
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let (obj, _) = negotiate::decode_object(body, ty)?;
    let kind = kind_of(&info.resource);
    let api_version = format!("{}/v1", info.group);
    let got_kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let got_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if (!got_kind.is_empty() && got_kind != kind)
        || (!got_version.is_empty() && got_version != api_version)
    {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): {got_version}, Kind={got_kind}"
        )));
    }
    Ok(obj)
}

fn invalid(kind: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(AUTHORIZATION, kind, "", errors)
}

fn string(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The attributes a review's spec asks about (`ResourceAttributesFrom` /
/// `NonResourceAttributesFrom`; RBAC does not look at the version).
fn spec_attributes<'a>(who: &'a Identity, spec: &'a Value) -> Attributes<'a> {
    let s = |p: &str| -> std::borrow::Cow<'a, str> {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into()
    };
    if spec.get("resourceAttributes").is_some_and(|v| !v.is_null()) {
        Attributes {
            who,
            verb: s("/resourceAttributes/verb"),
            resource_request: true,
            path: "".into(),
            api_group: s("/resourceAttributes/group"),
            resource: s("/resourceAttributes/resource"),
            subresource: s("/resourceAttributes/subresource"),
            namespace: s("/resourceAttributes/namespace"),
            name: s("/resourceAttributes/name"),
        }
    } else {
        Attributes {
            who,
            verb: s("/nonResourceAttributes/verb"),
            resource_request: false,
            path: s("/nonResourceAttributes/path"),
            api_group: "".into(),
            resource: "".into(),
            subresource: "".into(),
            namespace: "".into(),
            name: "".into(),
        }
    }
}

/// Kubernetes' spec validation: exactly one of resource and non-resource attributes.
fn validate_attributes(kind: &str, spec: &Value) -> Result<(), ApiError> {
    let present = |f: &str| spec.get(f).is_some_and(|v| !v.is_null());
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (true, true) => Err(invalid(
            kind,
            vec![FieldError::invalid(
                "spec.nonResourceAttributes",
                spec["nonResourceAttributes"].clone(),
                "cannot be specified in combination with resourceAttributes",
            )],
        )),
        (false, false) => Err(invalid(
            kind,
            vec![FieldError::invalid(
                "spec.resourceAttributes",
                Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        )),
        _ => Ok(()),
    }
}

fn access_status(decision: &Decision) -> Value {
    let mut status = Map::new();
    status.insert("allowed".into(), decision.allowed().into());
    if matches!(decision, Decision::Deny(_)) {
        status.insert("denied".into(), true.into());
    }
    if !decision.reason().is_empty() {
        status.insert("reason".into(), decision.reason().into());
    }
    Value::Object(status)
}

/// Fills in the object's type and empty metadata and sets its status.
fn answer(info: &RequestInfo, mut obj: Value, status: Value) -> Reply {
    let kind = kind_of(&info.resource);
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), kind.into());
        m.insert("apiVersion".into(), format!("{}/v1", info.group).into());
        m.entry("metadata").or_insert_with(|| json!({}));
        m.insert("status".into(), status);
    }
    Reply::Json(201, obj)
}

/// TokenReview's status for `spec`: the token's user and the requested audiences
/// it is valid for (the API server's own when none are asked for).
async fn token_review(state: &State, spec: &Value) -> Result<Value, ApiError> {
    let token = string(spec, "/token");
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let requested: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let header = format!("Bearer {token}");
    let static_user = match state.tokens.authenticate(Some(&header)) {
        Some(Ok(id)) => Some(id),
        _ => None,
    };
    let (who, audiences, extra) = match static_user {
        // Static tokens hold for any audience.
        Some(id) => {
            let audiences = if requested.is_empty() {
                vec![state.token_issuer.issuer.clone()]
            } else {
                requested
            };
            (id, audiences, Map::new())
        }
        None => match crate::authn::service_account_token(state, &token, &requested).await {
            Ok(found) => (found.identity, found.audiences, found.extra),
            Err(why) => {
                return Ok(json!({
                    "authenticated": false,
                    "user": {},
                    "error": format!("[invalid bearer token, {why}]"),
                }));
            }
        },
    };
    let mut user = json!({"username": who.user, "groups": who.groups});
    if !who.uid.is_empty() {
        user["uid"] = who.uid.clone().into();
    }
    if !extra.is_empty() {
        user["extra"] = Value::Object(extra);
    }
    Ok(json!({"authenticated": true, "user": user, "audiences": audiences}))
}

/// Serves the create of a review.
pub(crate) async fn serve(
    state: &State,
    who: &Identity,
    info: &RequestInfo,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let obj = decode(info, content_type, body)?;
    let kind = kind_of(&info.resource);
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    match info.resource.as_str() {
        "selfsubjectaccessreviews" => {
            validate_attributes(kind, &spec)?;
            let decision = state.authorizer.decide(&spec_attributes(who, &spec));
            Ok(answer(info, obj, access_status(&decision)))
        }
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            validate_attributes(kind, &spec)?;
            let user = string(&spec, "/user");
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if user.is_empty() && groups.is_empty() {
                return Err(invalid(
                    kind,
                    vec![FieldError::invalid(
                        "spec.user",
                        "",
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            if info.resource == "localsubjectaccessreviews" {
                let ns = info.namespace.as_deref().unwrap_or_default();
                if spec
                    .get("nonResourceAttributes")
                    .is_some_and(|v| !v.is_null())
                {
                    return Err(invalid(
                        kind,
                        vec![FieldError::invalid(
                            "spec.nonResourceAttributes",
                            spec["nonResourceAttributes"].clone(),
                            "disallowed on this kind of request",
                        )],
                    ));
                }
                if string(&spec, "/resourceAttributes/namespace") != ns {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
            }
            let subject = Identity {
                user,
                uid: string(&spec, "/uid"),
                groups,
                extra: Default::default(),
            };
            let decision = state.authorizer.decide(&spec_attributes(&subject, &spec));
            Ok(answer(info, obj, access_status(&decision)))
        }
        "selfsubjectrulesreviews" => {
            let namespace = string(&spec, "/namespace");
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let rules = state
                .authorizer
                .rules_for(who, &namespace)
                .unwrap_or_default();
            let resource_rules: Vec<Value> = rules
                .resource_rules
                .iter()
                .map(|r| {
                    let mut v = json!({"verbs": r.verbs});
                    for (k, items) in [
                        ("apiGroups", &r.api_groups),
                        ("resources", &r.resources),
                        ("resourceNames", &r.resource_names),
                    ] {
                        if !items.is_empty() {
                            v[k] = json!(items);
                        }
                    }
                    v
                })
                .collect();
            let non_resource_rules: Vec<Value> = rules
                .non_resource_rules
                .iter()
                .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                .collect();
            let mut status = json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": rules.incomplete,
            });
            if !rules.errors.is_empty() {
                status["evaluationError"] = match rules.errors.len() {
                    1 => rules.errors[0].clone(),
                    _ => format!("[{}]", rules.errors.join(", ")),
                }
                .into();
            }
            Ok(answer(info, obj, status))
        }
        "tokenreviews" => {
            let status = token_review(state, &spec).await?;
            Ok(answer(info, obj, status))
        }
        _ => {
            let mut user = json!({"username": who.user, "groups": who.groups});
            if !who.uid.is_empty() {
                user["uid"] = who.uid.clone().into();
            }
            if !who.extra.is_empty() {
                user["extra"] = json!(who.extra);
            }
            let mut obj = obj;
            crate::object::meta_mut(&mut obj).insert(
                "creationTimestamp".into(),
                crate::object::now_rfc3339().into(),
            );
            Ok(answer(info, obj, json!({"userInfo": user})))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_creates_of_v1_reviews_are_served_here() {
        let parse = |m: http::Method, p: &str| crate::request::parse(&m, p, None).expect("parses");
        assert!(handles(&parse(
            http::Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        )));
        assert!(handles(&parse(
            http::Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        )));
        assert!(handles(&parse(
            http::Method::POST,
            "/apis/authorization.k8s.io/v1/namespaces/x/localsubjectaccessreviews"
        )));
        assert!(!handles(&parse(
            http::Method::GET,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        )));
        assert!(!handles(&parse(
            http::Method::POST,
            "/apis/authorization.k8s.io/v1beta1/selfsubjectaccessreviews"
        )));
    }

    #[test]
    fn spec_attributes_read_resource_or_non_resource_attributes() {
        let who = Identity {
            user: "u".into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        };
        let spec =
            json!({"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "ns"}});
        let a = spec_attributes(&who, &spec);
        assert_eq!(
            (&*a.verb, &*a.resource, &*a.namespace),
            ("get", "pods", "ns")
        );
        let spec = json!({"nonResourceAttributes": {"verb": "get", "path": "/healthz"}});
        let a = spec_attributes(&who, &spec);
        assert!(!a.resource_request);
        assert_eq!(&*a.path, "/healthz");
        assert!(validate_attributes("SelfSubjectAccessReview", &json!({})).is_err());
    }
}
