//! gRPC probes: `grpc.health.v1.Health/Check` over plaintext HTTP/2 (tonic) with
//! the probe's service name; `SERVING` passes. The two messages have one field each,
//! so they are encoded here by hand rather than generated.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Endpoint;

use super::{Outcome, USER_AGENT, go_quote, go_seconds};

const CHECK: &str = "/grpc.health.v1.Health/Check";
/// How long a refused connection waits before it is tried again (gRPC-Go's
/// blocking dial keeps trying until the deadline).
const REDIAL: Duration = Duration::from_millis(100);

/// The health check's answer (`grpc.health.v1.HealthCheckResponse.ServingStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ServingStatus(pub(super) i32);

impl ServingStatus {
    const SERVING: i32 = 1;

    fn name(self) -> String {
        match self.0 {
            0 => "UNKNOWN".into(),
            1 => "SERVING".into(),
            2 => "NOT_SERVING".into(),
            3 => "SERVICE_UNKNOWN".into(),
            n => n.to_string(),
        }
    }
}

/// Checks `service` at `ip:port` within `timeout`.
pub(super) async fn probe(ip: IpAddr, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = SocketAddr::new(ip, port);
    let deadline = Instant::now() + timeout;
    let connect_timeout = || {
        Outcome::Failure(format!(
            "timeout: failed to connect service {} within {}: context deadline exceeded",
            go_quote(&addr.to_string()),
            go_seconds(timeout)
        ))
    };
    let endpoint = match Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(USER_AGENT))
    {
        Ok(e) => e,
        Err(e) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {}: {e}",
                go_quote(&addr.to_string())
            ));
        }
    };
    let channel = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return connect_timeout();
        }
        let attempt = endpoint.clone().connect_timeout(left).timeout(left);
        match tokio::time::timeout(left, attempt.connect()).await {
            Ok(Ok(channel)) => break channel,
            Ok(Err(_)) => tokio::time::sleep(REDIAL.min(left)).await,
            Err(_) => return connect_timeout(),
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let mut client = tonic::client::Grpc::new(channel);
    let mut request = tonic::Request::new(service.to_owned());
    request.set_timeout(left.max(Duration::from_millis(1)));
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        client
            .unary(
                request,
                http::uri::PathAndQuery::from_static(CHECK),
                HealthCodec,
            )
            .await
    };
    let rpc_timeout = || {
        Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_seconds(timeout)
        ))
    };
    match tokio::time::timeout(left, call).await {
        Err(_) => rpc_timeout(),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unimplemented => Outcome::Failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            )),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => rpc_timeout(),
            code => Outcome::Failure(format!(
                "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                status.message()
            )),
        },
        Ok(Ok(response)) => {
            let status = response.into_inner();
            if status.0 == ServingStatus::SERVING {
                Outcome::Success
            } else {
                Outcome::Failure(format!(
                    "service unhealthy (responded with {})",
                    go_quote(&status.name())
                ))
            }
        }
    }
}

/// Encodes a `HealthCheckRequest` (the service name) and decodes a
/// `HealthCheckResponse` (the serving status).
#[derive(Debug, Clone, Copy, Default)]
struct HealthCodec;

impl Codec for HealthCodec {
    type Encode = String;
    type Decode = ServingStatus;
    type Encoder = HealthCodec;
    type Decoder = HealthCodec;

    fn encoder(&mut self) -> Self::Encoder {
        HealthCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        HealthCodec
    }
}

impl Encoder for HealthCodec {
    type Item = String;
    type Error = tonic::Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&encode_request(&item));
        Ok(())
    }
}

impl Decoder for HealthCodec {
    type Item = ServingStatus;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ServingStatus>, Self::Error> {
        let bytes = src.copy_to_bytes(src.remaining());
        decode_response(&bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding HealthCheckResponse: {e}")))
    }
}

/// `HealthCheckRequest { string service = 1; }` in protobuf.
pub(super) fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        out.push(0x0a); // field 1, length-delimited
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// `HealthCheckResponse { ServingStatus status = 1; }` from protobuf; unknown fields
/// are skipped.
pub(super) fn decode_response(mut bytes: &[u8]) -> Result<ServingStatus, &'static str> {
    let mut status = 0;
    while !bytes.is_empty() {
        let key = get_varint(&mut bytes)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let value = get_varint(&mut bytes)?;
                if field == 1 {
                    status = value as i32;
                }
            }
            1 => bytes = bytes.get(8..).ok_or("truncated fixed64")?,
            2 => {
                let len = get_varint(&mut bytes)? as usize;
                bytes = bytes.get(len..).ok_or("truncated field")?;
            }
            5 => bytes = bytes.get(4..).ok_or("truncated fixed32")?,
            _ => return Err("unsupported wire type"),
        }
    }
    Ok(ServingStatus(status))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("truncated varint")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("varint too long")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    use super::*;

    #[test]
    fn messages_have_the_protobuf_encoding() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("svc"), b"\x0a\x03svc");
        assert_eq!(decode_response(b""), Ok(ServingStatus(0)));
        assert_eq!(decode_response(b"\x08\x01"), Ok(ServingStatus(1)));
        assert_eq!(
            decode_response(b"\x12\x02hi\x08\x02"),
            Ok(ServingStatus(2)),
            "unknown fields are skipped"
        );
        assert!(decode_response(b"\x08").is_err());
    }

    /// A gRPC health server on loopback answering `status` for service "ok" and
    /// NOT_SERVING for others; returns its port.
    async fn health_server(status: i32) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), CHECK);
                        assert_eq!(
                            req.headers()
                                .get("user-agent")
                                .and_then(|v| v.to_str().ok())
                                .map(|v| v.starts_with(USER_AGENT)),
                            Some(true)
                        );
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let service = &body[5..];
                        let answer = if service == b"\x0a\x02ok" { status } else { 2 };
                        let frame = vec![0u8, 0, 0, 0, 2, 0x08, answer as u8];
                        let trailers = {
                            let mut t = http::HeaderMap::new();
                            t.insert("grpc-status", http::HeaderValue::from_static("0"));
                            t
                        };
                        let frames = futures::stream::iter(vec![
                            Ok::<_, Infallible>(Frame::data(Bytes::from(frame))),
                            Ok(Frame::trailers(trailers)),
                        ]);
                        let response = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(frames))
                            .expect("response");
                        Ok::<_, Infallible>(response)
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn serving_passes_and_not_serving_fails_with_the_kubelets_words() {
        let port = health_server(1).await;
        let ip = IpAddr::from([127, 0, 0, 1]);
        let timeout = Duration::from_secs(2);
        assert_eq!(probe(ip, port, "ok", timeout).await, Outcome::Success);
        assert_eq!(
            probe(ip, port, "other", timeout).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_times_out_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let outcome = probe(
            IpAddr::from([127, 0, 0, 1]),
            port,
            "",
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Failure(format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
            ))
        );
    }
}
