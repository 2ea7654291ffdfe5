//! `skiff server`: flags named as k3s users know them, data dir set-up (lock, token,
//! certificates, kubeconfig), datastore choice, and the API server's run loop.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use apiserver::{ApiServer, ApiServerConfig, Pki, PkiConfig};
use clap::Args;

/// Components `--disable` knows; the ones not built yet are accepted so that
/// configurations keep working as they arrive.
const COMPONENTS: &[&str] = &[
    "scheduler",
    "controllers",
    "dns",
    "proxy",
    "serving",
    "metrics",
    "ui",
];

/// Flags of `skiff server`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory for all state: datastore, certificates, kubeconfig, token.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address the API server listens on (all interfaces by default, as
    /// kube-apiserver and k3s do, so pods and other machines reach it).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Address published as the endpoint of the `kubernetes` Service, which pods
    /// reach the API through (default: the bind address, or the node IP when
    /// listening on all interfaces).
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Where to write the admin kubeconfig (default <data-dir>/kubeconfig.yaml).
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// File mode of the written kubeconfig, in octal.
    #[arg(long, default_value = "0600")]
    pub write_kubeconfig_mode: String,
    /// Pod network range.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Service virtual IP range; its first address is the `kubernetes` Service.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Range of ports for NodePort Services, as LOW-HIGH.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Shared secret nodes use to join (default: generated). The full join token,
    /// `K10<CA hash>::server:<secret>`, is written to <data-dir>/token.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// More names or addresses for the API server's certificate (the ones agents
    /// use in --server), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Static bearer tokens for users, one `token,user,uid,"group1,group2"` per line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Datastore: empty for embedded SQLite, or etcd endpoints `http(s)://host:2379,...`.
    #[arg(long, default_value = "")]
    pub datastore_endpoint: String,
    /// Do not run a node agent on this machine.
    #[arg(long)]
    pub disable_agent: bool,
    /// Components not to run, comma separated (scheduler, controllers, dns, proxy, serving, metrics, ui).
    #[arg(long, value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Seconds without a node Lease renewal before a node is marked unreachable.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    #[command(flatten)]
    pub eviction: crate::components::EvictionArgs,
    #[command(flatten)]
    pub dns: crate::dns::DnsArgs,
    /// This machine as a node (its agent runs unless --disable-agent).
    #[command(flatten)]
    pub node: crate::agent::NodeArgs,
    /// Seconds of store history kept for watches before compaction.
    #[arg(long, default_value_t = 300, hide = true)]
    pub compaction_interval: u64,
    /// Authorizers asked in order, comma separated: Node, RBAC, AlwaysAllow,
    /// AlwaysDeny (system:masters is always allowed).
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,
    /// API Priority and Fairness: classify requests by FlowSchemas and queue them
    /// fairly per priority level (`false`: at most the in-flight limits run at once,
    /// the rest get 429 at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_priority_and_fairness: bool,
    /// Non-mutating requests in flight; with priority and fairness, this plus
    /// --max-mutating-requests-inflight is the seats the priority levels share.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests in flight (see --max-requests-inflight).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Audit log file, `-` for standard output; events are written only with an
    /// --audit-policy-file.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// Audit policy (audit.k8s.io/v1 Policy): which requests are logged, at which level.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Megabytes the audit log may reach before it is rotated; 0: never.
    #[arg(long, default_value_t = 100)]
    pub audit_log_maxsize: u64,
    /// Rotated audit logs kept; 0: all.
    #[arg(long, default_value_t = 100)]
    pub audit_log_maxbackup: usize,
    /// Days rotated audit logs are kept, by the time in their names; 0: no limit.
    #[arg(long, default_value_t = 366)]
    pub audit_log_maxage: u64,
}

/// The audit settings from the `--audit-*` flags; a policy file that does not load
/// is an error.
fn audit_config(args: &ServerArgs) -> anyhow::Result<apiserver::AuditConfig> {
    let policy = match &args.audit_policy_file {
        Some(p) => {
            let policy = apiserver::AuditPolicy::load(p)
                .map_err(|e| anyhow::anyhow!("--audit-policy-file {}: {e}", p.display()))?;
            for w in policy.warnings() {
                tracing::warn!("--audit-policy-file {}: {w}", p.display());
            }
            Some(policy)
        }
        None => None,
    };
    match (&policy, &args.audit_log_path) {
        (None, Some(path)) => tracing::warn!(
            "--audit-log-path {} is set without --audit-policy-file: no audit events will be written",
            path.display()
        ),
        (Some(_), None) => tracing::warn!(
            "--audit-policy-file is set without --audit-log-path: no audit events will be written"
        ),
        _ => {}
    }
    Ok(apiserver::AuditConfig {
        policy,
        log_path: args.audit_log_path.clone(),
        max_size_mb: args.audit_log_maxsize,
        max_backups: args.audit_log_maxbackup,
        max_age_days: args.audit_log_maxage,
    })
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (lo, hi) = s
        .split_once('-')
        .with_context(|| format!("--service-node-port-range {s:?}: want LOW-HIGH"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .with_context(|| format!("--service-node-port-range {s:?}: bad low port"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .with_context(|| format!("--service-node-port-range {s:?}: bad high port"))?;
    if lo == 0 || lo > hi {
        bail!("--service-node-port-range {s:?}: low must be ≥1 and ≤ high");
    }
    Ok((lo, hi))
}

fn random_token() -> String {
    use std::io::Read as _;
    let mut buf = [0u8; 24];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The join token: the secret from `--token` (bare or a full token for this CA), else
/// from `<data-dir>/token`, else a new one; written back as the full token, which
/// pins this cluster's CA.
fn join_token(
    flag: Option<&str>,
    path: &std::path::Path,
    ca_cert: &str,
) -> anyhow::Result<apiserver::join::JoinToken> {
    use apiserver::join::JoinToken;
    let secret = match flag {
        Some(t) => {
            let token = JoinToken::parse(t).context("--token")?;
            if token.ca_hash.is_some() && !token.pins(ca_cert) {
                bail!(
                    "--token names another cluster's CA; pass the bare secret or this cluster's token from {}",
                    path.display()
                );
            }
            token.secret
        }
        None => match fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => {
                JoinToken::parse(&t)
                    .with_context(|| format!("reading {}", path.display()))?
                    .secret
            }
            _ => random_token(),
        },
    };
    let token = JoinToken::new(ca_cert, &secret);
    fs::write(path, format!("{token}\n")).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("protecting {}", path.display()))?;
    Ok(token)
}

/// Labels node `name` `node-role.kubernetes.io/control-plane` once it exists (k3s's
/// server does the same for its nodes).
async fn label_control_plane(
    kubeconfig: std::path::PathBuf,
    name: String,
    readiness: apiserver::Readiness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use k8s_openapi::api::core::v1::Node;
    readiness.wait().await;
    let client = match crate::components::client_from(&kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot label the server's node");
            return;
        }
    };
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let patch =
        serde_json::json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}});
    loop {
        match nodes
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(node = %name, "labelled the server's node control-plane");
                return;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::debug!(error = %e, "labelling the server's node; retrying"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
    }
}

/// Where pods reach the API server: `--advertise-address`, else the bind address,
/// else (listening everywhere) the node's IP.
fn advertise_address(args: &ServerArgs) -> IpAddr {
    match args.advertise_address {
        Some(ip) => ip,
        None if args.bind_address.is_unspecified() => args
            .node
            .node_ip
            .unwrap_or_else(crate::agent::default_node_ip),
        None => args.bind_address,
    }
}

fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<crate::pidlock::PidLock> {
    crate::pidlock::PidLock::take(&dir.join("server.lock"), |pid| {
        format!(
            "another skiff server (pid {pid}) is already using data dir {}; stop it first or pass a different --data-dir",
            dir.display()
        )
    })
}

async fn open_store(
    args: &ServerArgs,
    server_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn store::Store>> {
    if args.datastore_endpoint.is_empty() {
        let db_dir = server_dir.join("db");
        fs::create_dir_all(&db_dir).with_context(|| format!("creating {}", db_dir.display()))?;
        let s = store::SqliteStore::open(store::SqliteConfig::new(db_dir.join("state.db")))
            .await
            .with_context(|| format!("opening the SQLite datastore in {}", db_dir.display()))?;
        Ok(Arc::new(s))
    } else {
        let endpoints: Vec<String> = args
            .datastore_endpoint
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                bail!(
                    "--datastore-endpoint {e:?}: only etcd endpoints (http:// or https://) are supported"
                );
            }
        }
        let cfg = store::EtcdConfig {
            endpoints: endpoints.clone(),
            ..store::EtcdConfig::default()
        };
        let s = store::EtcdStore::connect(cfg).await.with_context(|| {
            format!(
                "connecting to etcd at {}; is it running?",
                endpoints.join(",")
            )
        })?;
        Ok(Arc::new(s))
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
    }
}

/// Runs `skiff server` until SIGTERM/SIGINT.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    for d in &args.disable {
        if !COMPONENTS.contains(&d.as_str()) {
            bail!(
                "--disable {d:?}: unknown component; known: {}",
                COMPONENTS.join(", ")
            );
        }
    }
    let node_ports = parse_port_range(&args.service_node_port_range)?;
    let authorization_modes = apiserver::AuthorizationMode::parse_list(&args.authorization_mode)
        .map_err(|e| anyhow::anyhow!("--authorization-mode {:?}: {e}", args.authorization_mode))?;
    let audit = audit_config(&args)?;
    let mode = u32::from_str_radix(args.write_kubeconfig_mode.trim_start_matches("0o"), 8)
        .with_context(|| {
            format!(
                "--write-kubeconfig-mode {:?}: want an octal mode like 0600",
                args.write_kubeconfig_mode
            )
        })?;
    let data_dir = &args.data_dir;
    fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "creating data dir {} (run as root or pass --data-dir)",
            data_dir.display()
        )
    })?;
    let _ = fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700));
    let server_dir = data_dir.join("server");
    fs::create_dir_all(&server_dir)
        .with_context(|| format!("creating {}", server_dir.display()))?;
    let _lock = lock_data_dir(&server_dir)?;

    let first_service_ip = {
        let base = args.service_cidr.split('/').next().unwrap_or_default();
        let ip: std::net::Ipv4Addr = base.parse().with_context(|| {
            format!("--service-cidr {:?} is not an IPv4 CIDR", args.service_cidr)
        })?;
        std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string()
    };
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut sans = vec![
        "127.0.0.1".to_string(),
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", args.cluster_domain),
        first_service_ip,
    ];
    if !hostname.is_empty() {
        sans.push(hostname);
    }
    if args.bind_address.is_unspecified() {
        // Agents on other machines reach it at this machine's address.
        let node_ip = args
            .node
            .node_ip
            .unwrap_or_else(crate::agent::default_node_ip);
        if !node_ip.is_loopback() {
            sans.push(node_ip.to_string());
        }
    } else {
        sans.push(args.bind_address.to_string());
    }
    sans.extend(args.tls_san.iter().map(|s| s.trim().to_owned()));
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    let pki = Pki::load_or_create(&PkiConfig {
        dir: server_dir.join("tls"),
        sans,
    })?;
    let token_path = data_dir.join("token");
    let token = join_token(args.token.as_deref(), &token_path, &pki.ca_cert)?;

    let static_tokens = match &args.token_auth_file {
        Some(p) => {
            let text = fs::read_to_string(p)
                .with_context(|| format!("reading --token-auth-file {}", p.display()))?;
            apiserver::StaticToken::parse_file(&text)
                .map_err(|e| anyhow::anyhow!("--token-auth-file {}: {e}", p.display()))?
        }
        None => Vec::new(),
    };

    let store = open_store(&args, &server_dir).await?;
    let config = ApiServerConfig {
        bind_address: args.bind_address,
        port: args.https_listen_port,
        tls_dir: server_dir.join("tls"),
        extra_sans: Vec::new(),
        service_cidr: args.service_cidr.clone(),
        node_port_range: node_ports,
        cluster_domain: args.cluster_domain.clone(),
        static_tokens,
        compaction_interval_secs: args.compaction_interval,
        join_token: Some(token.secret.clone()),
        authorization_modes,
        enable_priority_and_fairness: args.enable_priority_and_fairness,
        max_requests_inflight: (args.max_requests_inflight + args.max_mutating_requests_inflight)
            .max(1),
        audit,
        advertise_address: Some(advertise_address(&args)),
        ..ApiServerConfig::default()
    };
    let server = ApiServer::build(config, store, &pki).await?;
    let addr = server.local_addr()?;
    // Components in this process start once bootstrap is done (no 500s from /readyz).
    let readiness = server.readiness();
    let host = if args.bind_address.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.bind_address.to_string()
    };
    let url = if host.contains(':') {
        format!("https://[{host}]:{}", addr.port())
    } else {
        format!("https://{host}:{}", addr.port())
    };
    let kubeconfig = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(|| data_dir.join("kubeconfig.yaml"));
    apiserver::write_kubeconfig(
        &kubeconfig,
        &url,
        &pki.ca_cert,
        &pki.admin_cert,
        &pki.admin_key,
        mode,
    )?;
    // The scheduler, controller manager and cluster DNS have identities of their
    // own (k3s's <data-dir>/server/cred/ layout).
    let cred_dir = server_dir.join("cred");
    let scheduler_kubeconfig = cred_dir.join("scheduler.kubeconfig");
    let controller_kubeconfig = cred_dir.join("controller.kubeconfig");
    let dns_kubeconfig = cred_dir.join("dns.kubeconfig");
    apiserver::write_kubeconfig(
        &scheduler_kubeconfig,
        &url,
        &pki.ca_cert,
        &pki.scheduler_cert,
        &pki.scheduler_key,
        0o600,
    )?;
    apiserver::write_kubeconfig(
        &controller_kubeconfig,
        &url,
        &pki.ca_cert,
        &pki.controller_manager_cert,
        &pki.controller_manager_key,
        0o600,
    )?;
    apiserver::write_kubeconfig(
        &dns_kubeconfig,
        &url,
        &pki.ca_cert,
        &pki.cluster_dns_cert,
        &pki.cluster_dns_key,
        0o600,
    )?;
    tracing::info!(
        url = %url,
        kubeconfig = %kubeconfig.display(),
        datastore = if args.datastore_endpoint.is_empty() { "sqlite" } else { "etcd" },
        startup_ms = started.elapsed().as_millis() as u64,
        "Skiff API server listening; run: kubectl --kubeconfig {} get ns",
        kubeconfig.display()
    );
    tracing::info!(
        token = %token_path.display(),
        "nodes join with: skiff agent --server {url} --token {token}"
    );
    // Control-plane clients in this process, talking to the server over HTTPS.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = if args.disable_agent {
        None
    } else {
        let (lock, agent_kubeconfig, agent_config) =
            crate::agent::prepare_embedded(&crate::agent::Embedded {
                data_dir: data_dir.clone(),
                url: url.clone(),
                ca_cert: pki.ca_cert.clone(),
                ca_key: pki.ca_key.clone(),
                cluster_cidr: args.cluster_cidr.clone(),
                service_cidr: args.service_cidr.clone(),
                cluster_domain: args.cluster_domain.clone(),
                node: args.node.clone(),
            })?;
        // A node may not give itself a role (NodeRestriction): the server labels its
        // own node, with the controller manager's identity, once it registered.
        tokio::spawn(label_control_plane(
            controller_kubeconfig.clone(),
            agent_config.node_name.clone(),
            readiness.clone(),
            stop_rx.clone(),
        ));
        let stop = stop_rx.clone();
        let ready = readiness.clone();
        // The proxy (with NodePorts on 127.0.0.1 unless switched off), or none.
        let proxy = (!args.disable.iter().any(|d| d == "proxy"))
            .then_some(!args.node.no_localhost_nodeports);
        Some(tokio::spawn(async move {
            ready.wait().await;
            if let Err(e) =
                crate::agent::run_embedded(lock, agent_kubeconfig, agent_config, proxy, stop).await
            {
                tracing::error!(error = %format!("{e:#}"), "the node agent stopped");
            }
        }))
    };
    // The cluster DNS answers at this machine's address (where agents and pods reach
    // the server); the kube-dns Service at --cluster-dns forwards there.
    let dns = if args.disable.iter().any(|d| d == "dns") {
        None
    } else {
        let service_ip = match args.node.cluster_dns {
            Some(ip) => ip,
            None => crate::agent::tenth_address(&args.service_cidr)?,
        };
        let endpoint_ip = if args.bind_address.is_unspecified() || args.bind_address.is_loopback() {
            args.node
                .node_ip
                .unwrap_or_else(crate::agent::default_node_ip)
        } else {
            args.bind_address
        };
        let (published, config) =
            crate::dns::prepare(&args.dns, service_ip, endpoint_ip, &args.cluster_domain)?;
        // Query counts and latency on the API server's /metrics.
        let metrics = config.metrics.clone();
        server.add_metrics(std::sync::Arc::new(move || {
            metrics.snapshot().render_prometheus()
        }));
        let (kc, stop, ready) = (dns_kubeconfig, stop_rx.clone(), readiness.clone());
        Some(tokio::spawn(async move {
            ready.wait().await;
            match crate::components::client_from(&kc).await {
                Ok(client) => crate::dns::run(client, published, config, stop).await,
                Err(e) => tracing::error!(error = %e, "cannot start the cluster DNS"),
            }
        }))
    };
    let controller_config = controllers::ControllerManagerConfig {
        cluster_cidr: args.cluster_cidr.clone(),
        node_monitor_grace_period: std::time::Duration::from_secs(args.node_monitor_grace_period),
        node_eviction: args.eviction.limits(),
        root_ca: Some(pki.ca_cert.clone()),
        ..Default::default()
    };
    let disabled = args.disable.clone();
    let components = tokio::spawn(async move {
        readiness.wait().await;
        match crate::components::spawn_embedded(
            &scheduler_kubeconfig,
            &controller_kubeconfig,
            controller_config,
            &disabled,
            stop_rx,
        )
        .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the scheduler and controllers");
                Vec::new()
            }
        }
    });
    server
        .run(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
        .await?;
    if let Some(agent) = agent {
        // containerd gets 10 s to stop; pods keep running.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), agent).await;
    }
    if let Some(dns) = dns {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), dns).await;
    }
    if let Ok(tasks) = components.await {
        for t in tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), t).await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}
