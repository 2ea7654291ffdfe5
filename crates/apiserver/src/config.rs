//! Configuration of the API server.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// Plain configuration with k3s-like defaults.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Address to listen on.
    pub bind_address: IpAddr,
    /// HTTPS port.
    pub port: u16,
    /// Where certificates live (`<data-dir>/server/tls`).
    pub tls_dir: PathBuf,
    /// Extra names for the serving certificate (hostname, bind address, ...).
    pub extra_sans: Vec<String>,
    /// Service virtual IP range, e.g. 10.43.0.0/16.
    pub service_cidr: String,
    /// NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// Static bearer tokens: (token, user, uid, groups), Kubernetes' token-auth-file format.
    pub static_tokens: Vec<StaticToken>,
    /// Largest accepted request body in bytes (3 MiB like kube-apiserver).
    pub max_request_bytes: usize,
    /// Seats for concurrent non-long-running requests (kube-apiserver's
    /// max-requests-inflight plus max-mutating-requests-inflight).
    pub max_requests_inflight: usize,
    /// Compact the store history older than this many seconds.
    pub compaction_interval_secs: u64,
    /// The secret of the join token nodes present to get their certificates
    /// (`POST /v1-skiff/node-credentials`); `None` switches joining off.
    pub join_token: Option<String>,
    /// Authorizers asked in order after the privileged group `system:masters`
    /// (`--authorization-mode`).
    pub authorization_modes: Vec<crate::AuthorizationMode>,
    /// API Priority and Fairness (`--enable-priority-and-fairness`): requests are
    /// classified by FlowSchemas and queued fairly per priority level, sharing
    /// `max_requests_inflight` seats; off, that many requests run at once and the
    /// rest get 429 at once.
    pub enable_priority_and_fairness: bool,
    /// The endpoint address of the `kubernetes` Service (kube-apiserver's
    /// `--advertise-address`); none: the bind address, 127.0.0.1 when unspecified.
    pub advertise_address: Option<IpAddr>,
    /// The audit policy and log (`--audit-*`); off by default.
    pub audit: crate::AuditConfig,
}

/// One static bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticToken {
    /// The secret token.
    pub token: String,
    /// User name.
    pub user: String,
    /// User UID.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl StaticToken {
    /// Parses Kubernetes' token-auth-file: `token,user,uid[,"group1,group2"]` per line.
    pub fn parse_file(contents: &str) -> Result<Vec<StaticToken>, String> {
        let mut out = Vec::new();
        for (i, line) in contents.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields: Vec<String> = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            if fields.len() < 3 {
                return Err(format!("line {}: want token,user,uid[,\"groups\"]", i + 1));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            out.push(StaticToken {
                token: fields[0].clone(),
                user: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
            });
        }
        Ok(out)
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 6443,
            tls_dir: PathBuf::from("/var/lib/skiff/server/tls"),
            extra_sans: Vec::new(),
            service_cidr: "10.43.0.0/16".into(),
            node_port_range: (30000, 32767),
            cluster_domain: "cluster.local".into(),
            static_tokens: Vec::new(),
            max_request_bytes: 3 * 1024 * 1024,
            max_requests_inflight: 600,
            compaction_interval_secs: 300,
            join_token: None,
            authorization_modes: vec![
                crate::AuthorizationMode::Node,
                crate::AuthorizationMode::Rbac,
            ],
            enable_priority_and_fairness: true,
            advertise_address: None,
            audit: crate::AuditConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_parse_with_quoted_groups() {
        let t =
            StaticToken::parse_file("abc,alice,1,\"dev,ops\"\n# c\nxyz,bob,2\n").expect("parses");
        assert_eq!(t[0].groups, vec!["dev", "ops"]);
        assert_eq!(t[1].user, "bob");
        assert!(t[1].groups.is_empty());
    }
}
