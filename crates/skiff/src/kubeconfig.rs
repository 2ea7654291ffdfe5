//! `skiff kubeconfig create`: a kubeconfig for a user, with a client certificate
//! signed by the cluster CA of a server's data dir (CN = the user, O = each group),
//! which RBAC then grants through bindings to that user or those groups.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

/// Flags of `skiff kubeconfig`.
#[derive(Args, Debug, Clone)]
pub struct KubeconfigArgs {
    #[command(subcommand)]
    command: KubeconfigCommand,
}

#[derive(Subcommand, Debug, Clone)]
enum KubeconfigCommand {
    /// Signs a client certificate for a user and prints (or writes) its kubeconfig.
    Create(CreateArgs),
}

#[derive(Args, Debug, Clone)]
struct CreateArgs {
    /// The user name (the certificate's CN), as RBAC bindings name it.
    #[arg(long)]
    user: String,
    /// A group of the user (the certificate's O); repeat for several.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// The server's data dir, which holds the cluster CA.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// The API server URL written into the kubeconfig (default: the one in the
    /// data dir's admin kubeconfig).
    #[arg(long)]
    server: Option<String>,
    /// Days the certificate is valid (Kubernetes' signer gives a year).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Writes the kubeconfig to this file (mode 0600) instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

/// Runs `skiff kubeconfig ...`.
pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    match args.command {
        KubeconfigCommand::Create(args) => create(args),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let user = args.user.trim();
    if user.is_empty() {
        bail!("--user must not be empty");
    }
    if let Some(g) = args.groups.iter().find(|g| g.trim().is_empty()) {
        bail!("--group must not be empty (got {g:?})");
    }
    let tls = args.data_dir.join("server/tls");
    let read = |file: &str| {
        let path = tls.join(file);
        fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}: run this on the server machine, as root, with --data-dir of `skiff server`",
                path.display()
            )
        })
    };
    let (ca_cert, ca_key) = (read("ca.crt")?, read("ca.key")?);
    let server = match args.server {
        Some(s) => s,
        None => admin_server_url(&args.data_dir.join("kubeconfig.yaml"))?,
    };
    let groups: Vec<&str> = args.groups.iter().map(|g| g.trim()).collect();
    let not_after = std::time::SystemTime::now()
        + std::time::Duration::from_secs(u64::from(args.days) * 86_400);
    let (cert, key) = apiserver::sign_user_cert(&ca_cert, &ca_key, user, &groups, not_after)?;
    match args.output {
        Some(path) => {
            apiserver::write_kubeconfig(&path, &server, &ca_cert, &cert, &key, 0o600)?;
            eprintln!("wrote {} for user {user:?}", path.display());
        }
        None => print!(
            "{}",
            apiserver::kubeconfig_yaml(&server, &ca_cert, &cert, &key)
        ),
    }
    Ok(())
}

/// The server URL of the admin kubeconfig `skiff server` wrote.
fn admin_server_url(path: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} for the server URL: pass --server https://HOST:PORT",
            path.display()
        )
    })?;
    let config: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    config["clusters"][0]["cluster"]["server"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "{} names no server: pass --server https://HOST:PORT",
                path.display()
            )
        })
}
