//! CertificateSigningRequests beyond storage (Kubernetes' certificates API, issue 6):
//!
//! - [`admit`]: what a request on them goes through first (the per-endpoint
//!   strategy with the requester, the CertificateSubjectRestriction,
//!   CertificateApproval and CertificateSigning admission plugins, and the
//!   preparation of `status` and `approval` writes);
//! - [`run`]: the signer inside the API server — the cluster CA key never leaves
//!   this process — issuing certificates for approved
//!   `kubernetes.io/kube-apiserver-client` and
//!   `kubernetes.io/kube-apiserver-client-kubelet` requests, and the cleaner of
//!   old requests;
//! - [`ClusterSigner`]: the CA as a signer, held in the server's state.
//!
//! The rules of the objects themselves (validation, immutable spec, conditions)
//! are the strategy's, in `crate::strategy::certificates`.

use api::resource::ResourceInfo;

mod admit;
mod controller;
pub(crate) mod pem;
pub(crate) mod request;
mod sign;
mod signers;

pub(crate) use admit::admit;
pub(crate) use controller::run;
pub(crate) use sign::ClusterSigner;

/// The API group of CertificateSigningRequests.
pub(crate) const GROUP: &str = "certificates.k8s.io";
/// Their resource name.
pub(crate) const RESOURCE: &str = "certificatesigningrequests";

/// Whether `res` is CertificateSigningRequests.
pub(crate) fn serves(res: &ResourceInfo) -> bool {
    res.group == GROUP && res.plural == RESOURCE
}
