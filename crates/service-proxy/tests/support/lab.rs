//! Two network namespaces for root tests: "the node", where the rules go, and "the
//! pods", with the backends; removed on drop, rules of the test's prefix too.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use service_proxy::{Commands, ProxyConfig, cleanup_with};

use crate::netns::{Netns, Server, require_root, unique};

/// Two namespaces joined by a veth pair: `node` (10.249.X.1, where the rules go, with
/// a route for the Service CIDR 10.248.X.0/24 towards `pods`) and `pods`
/// (10.249.X.2-4, the backends, routing the Service CIDR through `node`).
pub struct Lab {
    // Dropped first: servers stop before their namespace goes.
    pub servers: Vec<Server>,
    pub node: Netns,
    pub pods: Netns,
    pub x: u8,
}

impl Lab {
    pub fn new() -> Self {
        require_root();
        let id = unique();
        let x = (id % 200) as u8 + 20;
        let node = Netns::new(&format!("skf-node-{id:08x}"));
        let pods = Netns::new(&format!("skf-pods-{id:08x}"));
        node.ip(&[
            "link", "add", "vnode", "type", "veth", "peer", "name", "vpods", "netns", &pods.name,
        ]);
        node.ip(&["addr", "add", &format!("10.249.{x}.1/24"), "dev", "vnode"]);
        node.ip(&["link", "set", "vnode", "up"]);
        for host in 2..=4 {
            pods.ip(&[
                "addr",
                "add",
                &format!("10.249.{x}.{host}/24"),
                "dev",
                "vpods",
            ]);
        }
        pods.ip(&["link", "set", "vpods", "up"]);
        // Connecting from the node needs a route for the VIPs (kube-proxy assumes one).
        node.ip(&[
            "route",
            "add",
            &format!("10.248.{x}.0/24"),
            "via",
            &format!("10.249.{x}.2"),
        ]);
        // Pods reach VIPs through the node, which forwards after DNAT.
        pods.ip(&[
            "route",
            "add",
            &format!("10.248.{x}.0/24"),
            "via",
            &format!("10.249.{x}.1"),
        ]);
        node.exec("/usr/sbin/sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        Self {
            servers: Vec::new(),
            node,
            pods,
            x,
        }
    }

    pub fn pod_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 249, self.x, host)
    }

    pub fn vip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 248, self.x, host)
    }

    pub fn serve(&mut self, host: u8, port: u16) {
        let server = Server::start(
            &self.pods,
            SocketAddrV4::new(self.pod_ip(host), port),
            &format!("backend-{host}\n"),
        );
        self.servers.push(server);
    }

    pub fn config(&self, prefix: &str, service_cidr: &str) -> ProxyConfig {
        ProxyConfig {
            prefix: prefix.into(),
            node_name: "node-a".into(),
            node_ips: vec![Ipv4Addr::new(10, 249, self.x, 1)],
            service_cidrs: vec![service_cidr.parse().expect("cidr")],
            cluster_cidr: Some(format!("10.249.{}.0/24", self.x).parse().expect("cidr")),
            localhost_nodeports: true,
            command_prefix: vec![
                "/usr/sbin/ip".into(),
                "netns".into(),
                "exec".into(),
                self.node.name.clone(),
            ],
            ..ProxyConfig::default()
        }
    }
}

/// Removes the instance's rules when the test ends, however it ends.
pub struct Cleanup {
    pub netns: String,
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = cleanup_with(&Commands::in_netns(&self.netns), &self.prefix);
    }
}

pub fn prefix() -> String {
    format!("SKF{:04x}-", unique() & 0xffff)
}
