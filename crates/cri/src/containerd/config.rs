//! containerd's configuration file (version 2), private to one agent.

use std::fmt::Write as _;
use std::path::Path;

use super::Config;

/// runc, as Debian installs it (crun fails on this machine's hybrid cgroup layout).
const RUNC: &str = "/usr/sbin/runc";
/// The CNI plugins, as Debian's containernetworking-plugins installs them.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// containerd plugins not loaded: snapshotters other than overlayfs and native.
const UNUSED_PLUGINS: [&str; 4] = [
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
];

/// The text of `config.toml` for `config`.
///
/// Every path containerd would otherwise share with a system containerd (root, state,
/// sockets, opt, runc's root) lives under `config.dir`, so several agents (or tests)
/// run side by side.
pub(crate) fn render(config: &Config) -> String {
    let root = config.root_dir();
    let state = config.state_dir();
    let socket = config.socket();
    let opt = config.dir.join("opt");
    let runc_root = config.dir.join("runc");
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("# Written by the Skiff node agent; rewritten at every start.".into());
    line("version = 2".into());
    line(format!("root = {}", path(&root)));
    line(format!("state = {}", path(&state)));
    line("required_plugins = [\"io.containerd.grpc.v1.cri\"]".into());
    // Snapshotters this machine has no use for; they only log warnings.
    line(format!(
        "disabled_plugins = [{}]",
        UNUSED_PLUGINS.map(string).join(", ")
    ));
    line(String::new());
    line("[grpc]".into());
    line(format!("  address = {}", path(&socket)));
    line(String::new());
    line("[plugins.\"io.containerd.internal.v1.opt\"]".into());
    line(format!("  path = {}", path(&opt)));
    line(String::new());
    line("[plugins.\"io.containerd.grpc.v1.cri\"]".into());
    line(format!(
        "  sandbox_image = {}",
        string(&config.sandbox_image)
    ));
    line("  stream_server_address = \"127.0.0.1\"".into());
    line("  stream_server_port = \"0\"".into());
    line("  disable_tcp_service = true".into());
    line("  netns_mounts_under_state_dir = true".into());
    // Root here lacks CAP_SYS_RESOURCE: without this, the pause container's
    // oom_score_adj of -998 is refused and every RunPodSandbox fails.
    line("  restrict_oom_score_adj = true".into());
    line(String::new());
    line("[plugins.\"io.containerd.grpc.v1.cri\".containerd]".into());
    line("  snapshotter = \"overlayfs\"".into());
    line("  default_runtime_name = \"runc\"".into());
    line(String::new());
    line("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]".into());
    line("  runtime_type = \"io.containerd.runc.v2\"".into());
    line(String::new());
    line("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]".into());
    line(format!("  BinaryName = {}", string(RUNC)));
    line(format!("  Root = {}", path(&runc_root)));
    line("  SystemdCgroup = false".into());
    line(String::new());
    line("[plugins.\"io.containerd.grpc.v1.cri\".cni]".into());
    line(format!("  bin_dir = {}", string(CNI_BIN_DIR)));
    line(format!("  conf_dir = {}", path(&config.cni_conf_dir)));
    line("  max_conf_num = 1".into());
    if let Some(hosts) = &config.registry_config_path {
        // Mirrors and TLS per registry, as `<hosts>/<host>/hosts.toml`; read at each pull.
        line(String::new());
        line("[plugins.\"io.containerd.grpc.v1.cri\".registry]".into());
        line(format!("  config_path = {}", path(hosts)));
    }
    out
}

fn path(p: &Path) -> String {
    string(&p.to_string_lossy())
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> String {
        render(&Config::new(
            "/var/lib/skiff/agent/containerd",
            "/var/lib/skiff/agent/cni",
        ))
    }

    #[test]
    fn every_path_is_under_the_agents_directory() {
        let text = rendered();
        for expected in [
            "root = \"/var/lib/skiff/agent/containerd/root\"",
            "state = \"/var/lib/skiff/agent/containerd/state\"",
            "address = \"/var/lib/skiff/agent/containerd/containerd.sock\"",
            "path = \"/var/lib/skiff/agent/containerd/opt\"",
            "Root = \"/var/lib/skiff/agent/containerd/runc\"",
            "conf_dir = \"/var/lib/skiff/agent/cni\"",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
    }

    #[test]
    fn the_oom_score_adjustment_is_restricted() {
        assert!(rendered().contains("restrict_oom_score_adj = true"));
    }

    #[test]
    fn the_sandbox_image_is_the_local_pause_image() {
        let expected = format!("sandbox_image = \"{}\"", crate::image::PAUSE_IMAGE);
        assert!(rendered().contains(&expected));
    }

    #[test]
    fn registry_hosts_are_read_from_the_agents_directory() {
        assert!(
            rendered().contains("config_path = \"/var/lib/skiff/agent/containerd/certs.d\""),
            "{}",
            rendered()
        );
        let mut config = Config::new("/d", "/c");
        config.registry_config_path = None;
        assert!(!render(&config).contains("config_path"));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
