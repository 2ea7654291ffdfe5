//! Content negotiation: what the client sent (JSON or YAML, patch types) and what it
//! wants back (plain JSON, YAML, a `Table`, or `PartialObjectMetadata`).

use api::status::ApiError;
use serde_json::Value;

/// The response shape asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The object (or list) itself as JSON.
    Json,
    /// The object as YAML.
    Yaml,
    /// A `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    PartialMetadata,
}

/// Picks the first acceptable media type from `Accept`, as kube-apiserver does.
pub(crate) fn output(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut as_ = None;
        let mut g = None;
        let mut v = None;
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(val.trim().to_string()),
                    "g" => g = Some(val.trim().to_string()),
                    "v" => v = Some(val.trim().to_string()),
                    _ => {}
                }
            }
        }
        let json_like = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
        match (as_.as_deref(), g.as_deref(), v.as_deref()) {
            (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) if json_like => {
                return Ok(Output::Table);
            }
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1" | "v1beta1"),
            ) if json_like => {
                return Ok(Output::PartialMetadata);
            }
            (Some(_), _, _) => continue,
            (None, _, _) if json_like => return Ok(Output::Json),
            (None, _, _) if media == "application/yaml" => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io",
    ))
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyType {
    Json,
    Yaml,
    Protobuf,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
}

/// Reads `Content-Type`.
pub(crate) fn body_type(content_type: Option<&str>) -> Result<BodyType, ApiError> {
    let ct = content_type.unwrap_or("application/json");
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        "application/json" | "" | "*/*" => BodyType::Json,
        "application/yaml" => BodyType::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        // `application/apply-patch+cbor` is behind a feature gate that is off in
        // Kubernetes 1.33: refused like any unknown type.
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        _ => return Err(ApiError::unsupported_media_type(ct)),
    })
}

/// Decodes an object body (JSON or YAML). Returns the value and any duplicate-field
/// messages found while parsing JSON.
pub(crate) fn decode_object(bytes: &[u8], ty: BodyType) -> Result<(Value, Vec<String>), ApiError> {
    let (value, dups) = match ty {
        BodyType::Yaml => {
            let v: Value = serde_yaml::from_slice(bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            (v, Vec::new())
        }
        BodyType::Protobuf => {
            let v = protobuf_codec::decode_to_json(bytes).map_err(|e| match e {
                // A body that would expand past its decode budget is too large.
                protobuf_codec::DecodeError::TooLarge { .. } => {
                    let mut err = ApiError::too_large(bytes.len());
                    err.message = format!("Request entity too large: {e}");
                    err
                }
                e => ApiError::bad_request(format!("error decoding protobuf body: {e}")),
            })?;
            (v, Vec::new())
        }
        _ => api::schema::parse_json_detect_duplicates(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: expected an object, got {}",
            kind_of(&value)
        )));
    }
    Ok((value, dups))
}

/// Decodes a server-side apply configuration (YAML, of which JSON is a part).
/// An empty body is an empty configuration, as Kubernetes reads it.
pub(crate) fn decode_apply(bytes: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_yaml::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Default::default())),
        other => Err(ApiError::bad_request(format!(
            "error decoding YAML: expected an object, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_accept_header_picks_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output(Some(a)).expect("acceptable"), Output::Table);
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let a = "application/vnd.kubernetes.protobuf, */*";
        assert_eq!(output(Some(a)).expect("acceptable"), Output::Json);
        assert!(output(Some("text/html")).is_err());
    }

    #[test]
    fn unknown_content_type_is_415() {
        let e = body_type(Some("text/plain")).expect_err("refused");
        assert_eq!(e.code, 415);
        let e = body_type(Some("application/apply-patch+cbor")).expect_err("refused");
        assert_eq!(e.code, 415);
    }

    #[test]
    fn apply_configurations_are_yaml_or_json_objects() {
        let yaml =
            decode_apply(b"apiVersion: v1\nkind: ConfigMap\ndata:\n  a: '1'\n").expect("yaml");
        assert_eq!(yaml["data"]["a"], "1");
        let json = decode_apply(br#"{"apiVersion":"v1","kind":"ConfigMap"}"#).expect("json");
        assert_eq!(json["kind"], "ConfigMap");
        assert_eq!(decode_apply(b"").expect("empty"), serde_json::json!({}));
        let e = decode_apply(b"- a\n- b\n").expect_err("a list");
        assert_eq!(e.code, 400);
        assert!(
            e.message.starts_with("error decoding YAML: "),
            "{}",
            e.message
        );
    }
}
