//! The signers the API server runs and what each refuses (Kubernetes'
//! `pkg/controller/certificates/signer` verification functions):
//!
//! - `kubernetes.io/kube-apiserver-client`: client certificates for the API server;
//!   usages `client auth`, optionally `digital signature` and `key encipherment`;
//! - `kubernetes.io/kube-apiserver-client-kubelet`: node client certificates;
//!   `O=system:nodes`, `CN=system:node:<name>`, no subject alternative names.
//!
//! Requests for any other signer are someone else's and are left alone.

use super::request::Request;

/// Client certificates the API server accepts.
pub(crate) const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Node client certificates.
pub(crate) const KUBE_APISERVER_CLIENT_KUBELET: &str =
    "kubernetes.io/kube-apiserver-client-kubelet";
/// The group whose members are cluster administrators whatever RBAC says.
pub(crate) const PRIVILEGED_GROUP: &str = crate::authz::PRIVILEGED_GROUP;

/// What the server's signer does with an approved request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Another signer's request.
    NotOurs,
    /// Issue the certificate.
    Sign,
    /// Mark the request Failed (`SignerValidationFailure`) with this message.
    Refuse(String),
}

/// Kubernetes' `validAPIServerClientUsages`.
fn api_server_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// Kubernetes' `ValidateKubeletClientCSR`.
fn kubelet_client(req: &Request, usages: &[String]) -> Result<(), String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if req.dns_names > 0 {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if req.emails > 0 {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if req.ips > 0 {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if req.uris > 0 {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !req.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    let mut set: Vec<&str> = usages.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    let with_rsa = ["client auth", "digital signature", "key encipherment"];
    let without_rsa = ["client auth", "digital signature"];
    if set != with_rsa && set != without_rsa {
        return Err("usages did not match [client auth digital signature key encipherment]".into());
    }
    Ok(())
}

/// What the server's signer does with an approved request for `signer_name`.
pub(crate) fn verdict(signer_name: &str, req: &Request, usages: &[String]) -> Verdict {
    let checked = match signer_name {
        KUBE_APISERVER_CLIENT => api_server_client_usages(usages).and_then(|()| {
            // Admission refuses these at create (CertificateSubjectRestriction);
            // the signer never issues one either.
            if req.organizations.iter().any(|o| o == PRIVILEGED_GROUP) {
                Err(subject_restriction_message())
            } else {
                Ok(())
            }
        }),
        KUBE_APISERVER_CLIENT_KUBELET => kubelet_client(req, usages),
        _ => return Verdict::NotOurs,
    };
    match checked {
        Ok(()) => Verdict::Sign,
        Err(why) => Verdict::Refuse(why),
    }
}

/// Kubernetes' CertificateSubjectRestriction message.
pub(crate) fn subject_restriction_message() -> String {
    format!("use of {KUBE_APISERVER_CLIENT} signer with {PRIVILEGED_GROUP} group is not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cn: &str, orgs: &[&str]) -> Request {
        Request {
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            ..Request::default()
        }
    }

    fn u(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn api_server_clients_need_client_auth_and_nothing_beyond_signing_usages() {
        let r = req("jane", &["devs"]);
        assert_eq!(
            verdict(
                KUBE_APISERVER_CLIENT,
                &r,
                &u(&["client auth", "digital signature"])
            ),
            Verdict::Sign
        );
        assert_eq!(
            verdict(
                KUBE_APISERVER_CLIENT,
                &r,
                &u(&["server auth", "client auth"])
            ),
            Verdict::Refuse("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            verdict(KUBE_APISERVER_CLIENT, &r, &u(&["digital signature"])),
            Verdict::Refuse("missing required usage for client certificate: client auth".into())
        );
        assert_eq!(
            verdict(KUBE_APISERVER_CLIENT, &req("x", &["system:masters"]), &u(&["client auth"])),
            Verdict::Refuse(
                "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
                    .into()
            )
        );
    }

    #[test]
    fn node_clients_must_be_nodes() {
        let usages = u(&["digital signature", "client auth"]);
        assert_eq!(
            verdict(
                KUBE_APISERVER_CLIENT_KUBELET,
                &req("system:node:n1", &["system:nodes"]),
                &usages
            ),
            Verdict::Sign
        );
        assert_eq!(
            verdict(
                KUBE_APISERVER_CLIENT_KUBELET,
                &req("jane", &["system:nodes"]),
                &usages
            ),
            Verdict::Refuse("subject common name does not begin with system:node:".into())
        );
        assert_eq!(
            verdict(
                KUBE_APISERVER_CLIENT_KUBELET,
                &req("system:node:n1", &["system:masters"]),
                &usages
            ),
            Verdict::Refuse("subject organization is not system:nodes".into())
        );
        let mut with_dns = req("system:node:n1", &["system:nodes"]);
        with_dns.dns_names = 1;
        assert_eq!(
            verdict(KUBE_APISERVER_CLIENT_KUBELET, &with_dns, &usages),
            Verdict::Refuse("DNS subjectAltNames are not allowed".into())
        );
        assert_eq!(
            verdict(
                KUBE_APISERVER_CLIENT_KUBELET,
                &req("system:node:n1", &["system:nodes"]),
                &u(&["client auth"])
            ),
            Verdict::Refuse(
                "usages did not match [client auth digital signature key encipherment]".into()
            )
        );
    }

    #[test]
    fn other_signers_are_left_alone() {
        assert_eq!(
            verdict("example.com/mine", &req("x", &[]), &u(&["client auth"])),
            Verdict::NotOurs
        );
        assert_eq!(
            verdict(
                "kubernetes.io/kubelet-serving",
                &req("x", &[]),
                &u(&["server auth"])
            ),
            Verdict::NotOurs
        );
    }
}
