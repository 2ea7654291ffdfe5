//! The CRI v1 client handle: one gRPC channel over a unix socket, the runtime and image
//! service clients on it, a default deadline on every request, and errors that say
//! which call failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The CRI API version this client speaks, sent in `VersionRequest`.
const CRI_API_VERSION: &str = "v1";

/// The gRPC metadata key that carries a request's deadline.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A failed CRI operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime's socket could not be connected to.
    #[error("cannot connect to the container runtime at {}: {source}", socket.display())]
    ConnectFailed {
        /// The unix socket that was dialled.
        socket: PathBuf,
        /// Why the connection failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// A CRI call returned an error status (this includes a missed deadline,
    /// `DeadlineExceeded`, and a broken connection, `Unavailable`).
    #[error("CRI {method} failed: {:?}: {}", status.code(), status.message())]
    RpcFailed {
        /// The CRI method, as in the protocol (`RunPodSandbox`).
        method: &'static str,
        /// The gRPC status the runtime (or the transport) answered with.
        status: tonic::Status,
    },
}

impl Error {
    /// The gRPC code of a failed call; `None` when the connection failed.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::ConnectFailed { .. } => None,
            Error::RpcFailed { status, .. } => Some(status.code()),
        }
    }

    /// Whether the runtime said the object does not exist (already removed).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }
}

/// Turns a raw client call's result into the response message, or an [`Error`] naming
/// the method: `rt.runtime().run_pod_sandbox(req).await.rpc("RunPodSandbox")?`.
pub trait Rpc<T> {
    /// The response message, or [`Error::RpcFailed`] with `method` and the status.
    fn rpc(self, method: &'static str) -> Result<T, Error>;
}

impl<T> Rpc<T> for Result<tonic::Response<T>, tonic::Status> {
    fn rpc(self, method: &'static str) -> Result<T, Error> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| Error::RpcFailed { method, status })
    }
}

/// Gives every request without a deadline of its own the handle's default one.
///
/// A call that may take longer than the default (StopContainer with a long grace
/// period, ExecSync with a long timeout) sets its own with
/// [`tonic::Request::set_timeout`], which wins.
#[derive(Debug, Clone, Copy)]
pub struct DefaultDeadline(Duration);

impl Interceptor for DefaultDeadline {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if !request.metadata().contains_key(GRPC_TIMEOUT) {
            request.set_timeout(self.0);
        }
        Ok(request)
    }
}

/// The CRI runtime service client of a [`Runtime`].
pub type RuntimeClient = RuntimeServiceClient<InterceptedService<Channel, DefaultDeadline>>;
/// The CRI image service client of a [`Runtime`].
pub type ImageClient = ImageServiceClient<InterceptedService<Channel, DefaultDeadline>>;

/// A connection to a CRI runtime (containerd) over its unix socket.
///
/// Cheap to clone; clones share one HTTP/2 connection, which is re-established on the
/// next call after the runtime restarts (that call may fail with `Unavailable`).
#[derive(Debug, Clone)]
pub struct Runtime {
    socket: PathBuf,
    runtime: RuntimeClient,
    images: ImageClient,
}

impl Runtime {
    /// Connects to the CRI socket at `socket`. `timeout` bounds the connection attempt
    /// and is the default deadline of every request.
    pub async fn connect(socket: impl AsRef<Path>, timeout: Duration) -> Result<Runtime, Error> {
        let socket = socket.as_ref().to_path_buf();
        let connect_failed = |source| Error::ConnectFailed {
            socket: socket.clone(),
            source,
        };
        let channel = Endpoint::from_shared(format!("unix://{}", socket.display()))
            .map_err(connect_failed)?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(connect_failed)?;
        let deadline = DefaultDeadline(timeout);
        Ok(Runtime {
            runtime: RuntimeServiceClient::with_interceptor(channel.clone(), deadline),
            images: ImageServiceClient::with_interceptor(channel, deadline),
            socket,
        })
    }

    /// The socket this handle is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime service client (sandboxes, containers, exec, stats).
    pub fn runtime(&self) -> RuntimeClient {
        self.runtime.clone()
    }

    /// The image service client (pull, list, remove, filesystem info).
    pub fn images(&self) -> ImageClient {
        self.images.clone()
    }

    /// The runtime's name and versions (`containerd`, `1.6.20~ds1`, API `v1`).
    pub async fn version(&self) -> Result<v1::VersionResponse, Error> {
        self.runtime()
            .version(v1::VersionRequest {
                version: CRI_API_VERSION.to_owned(),
            })
            .await
            .rpc("Version")
    }

    /// The runtime's conditions that are not true (`RuntimeReady`, `NetworkReady`,
    /// each with the runtime's reason and message); empty when the runtime is ready.
    pub async fn unready_conditions(&self) -> Result<Vec<v1::RuntimeCondition>, Error> {
        let response = self
            .runtime()
            .status(v1::StatusRequest { verbose: false })
            .await
            .rpc("Status")?;
        let conditions = response.status.map(|s| s.conditions).unwrap_or_default();
        Ok(conditions.into_iter().filter(|c| !c.status).collect())
    }

    /// Every pod sandbox (ready or not) whose labels include all of `labels`.
    pub async fn list_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> Result<Vec<v1::PodSandbox>, Error> {
        let filter = v1::PodSandboxFilter {
            label_selector: labels,
            ..Default::default()
        };
        let response = self
            .runtime()
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
            .rpc("ListPodSandbox")?;
        Ok(response.items)
    }

    /// Every container (in any state) of the sandbox `sandbox_id`.
    pub async fn list_containers(&self, sandbox_id: &str) -> Result<Vec<v1::Container>, Error> {
        let filter = v1::ContainerFilter {
            pod_sandbox_id: sandbox_id.to_owned(),
            ..Default::default()
        };
        let response = self
            .runtime()
            .list_containers(v1::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .rpc("ListContainers")?;
        Ok(response.containers)
    }

    /// Every image the runtime has.
    pub async fn list_images(&self) -> Result<Vec<v1::Image>, Error> {
        let response = self
            .images()
            .list_images(v1::ListImagesRequest { filter: None })
            .await
            .rpc("ListImages")?;
        Ok(response.images)
    }

    /// Stops and removes the sandbox `id` with its containers; a sandbox that is
    /// already gone counts as removed.
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), Error> {
        let stopped = self
            .runtime()
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            })
            .await
            .rpc("StopPodSandbox");
        match stopped {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        let removed = self
            .runtime()
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            })
            .await
            .rpc("RemovePodSandbox");
        match removed {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_deadline_gets_the_default() {
        let mut deadline = DefaultDeadline(Duration::from_secs(2));
        let request = deadline.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(
            request
                .metadata()
                .get(GRPC_TIMEOUT)
                .map(|v| v.to_str().ok()),
            Some(Some("2000000u"))
        );
    }

    #[test]
    fn a_request_with_its_own_deadline_keeps_it() {
        let mut deadline = DefaultDeadline(Duration::from_secs(2));
        let mut request = tonic::Request::new(());
        request.set_timeout(Duration::from_secs(90));
        let request = deadline.call(request).expect("intercepted");
        assert_eq!(
            request
                .metadata()
                .get(GRPC_TIMEOUT)
                .map(|v| v.to_str().ok()),
            Some(Some("90000000u"))
        );
    }

    #[test]
    fn a_failed_call_names_the_method_and_the_status() {
        let result: Result<tonic::Response<()>, _> =
            Err(tonic::Status::not_found("sandbox \"abc\" not found"));
        let error = result.rpc("PodSandboxStatus").expect_err("an error");
        assert!(error.is_not_found());
        assert_eq!(
            error.to_string(),
            "CRI PodSandboxStatus failed: NotFound: sandbox \"abc\" not found"
        );
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_names_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("nothing.sock");
        let error = Runtime::connect(&socket, Duration::from_millis(200))
            .await
            .expect_err("no runtime there");
        assert!(matches!(error, Error::ConnectFailed { .. }));
        assert!(error.to_string().contains("nothing.sock"), "{error}");
    }
}
