//! Building and running the server: TLS with optional client certificates, HTTP/1.1
//! and HTTP/2, one task per connection, graceful shutdown, background compaction.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::allocator::{Allocator, Cidr};
use crate::authn::{Identity, TokenAuthenticator, identity_from_certificate};
use crate::authz::{Authorizer, Chain};
use crate::storage::Storage;
use crate::{ApiServerConfig, Error, Pki};

/// Shared state of one API server.
pub(crate) struct State {
    pub config: ApiServerConfig,
    /// What is served: the built-in resources and those of established CRDs.
    pub registry: Arc<crate::crd::ServedResources>,
    pub storage: Storage,
    pub allocator: Allocator,
    pub tokens: TokenAuthenticator,
    pub token_issuer: crate::tokens::TokenIssuer,
    pub authorizer: Box<dyn Authorizer>,
    /// The RBAC index (roles and bindings), fed by the watch cache.
    pub rbac: Arc<crate::rbac::RbacCache>,
    /// Namespaces and service accounts for admission, fed by the watch cache.
    pub admission_objects: Arc<crate::admission::objects::AdmissionObjects>,
    pub inflight: Arc<Semaphore>,
    /// API Priority and Fairness, unless switched off.
    pub flow_control: Option<Arc<crate::flowcontrol::FlowControl>>,
    pub shutdown: watch::Receiver<bool>,
    pub watch_cache: Arc<crate::watch_cache::WatchCache>,
    /// Client towards node agents (logs, exec, port-forward).
    pub node_client: crate::rest::node_proxy::NodeClient,
    /// The cluster CA and join token, for nodes joining.
    pub join: crate::join::Joiner,
    /// The cluster CA as the signer of CertificateSigningRequests.
    pub csr_signer: crate::csr::ClusterSigner,
    /// The audit policy and log writer, when auditing is on.
    pub audit: Option<crate::audit::Auditor>,
    ready: AtomicBool,
    requests: AtomicU64,
    /// Metrics of components in the same process, appended to `/metrics`.
    extra_metrics: std::sync::RwLock<Vec<MetricsSource>>,
}

/// Renders Prometheus text for the API server's `/metrics`.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

impl State {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn metrics_text(&self) -> String {
        let mut text = format!(
            "# HELP apiserver_request_total Requests served.\n# TYPE apiserver_request_total counter\napiserver_request_total {}\n",
            self.requests.load(Ordering::Relaxed)
        );
        if let Some(fc) = &self.flow_control {
            text.push_str(&fc.metrics_text());
        }
        let sources = self.extra_metrics.read().unwrap_or_else(|e| e.into_inner());
        for source in sources.iter() {
            text.push_str(&source());
        }
        text
    }
}

/// A built API server, listening but not yet serving.
pub struct ApiServer {
    state: Arc<State>,
    listener: TcpListener,
    tls: TlsAcceptor,
    shutdown_tx: watch::Sender<bool>,
}

/// Resolves when the API server is ready (see [`ApiServer::readiness`]).
#[derive(Clone)]
pub struct Readiness(Arc<State>);

impl Readiness {
    /// Waits until bootstrap has finished.
    pub async fn wait(&self) {
        while !self.0.ready.load(Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.0.ready.load(Ordering::Acquire))
            .finish()
    }
}

/// Handle to a server running in the background (tests and embedding).
pub struct RunningApiServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl RunningApiServer {
    /// Stops the server and waits for it.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.shutdown_tx.send(true);
        self.task.await.unwrap_or(Ok(()))
    }
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, Error> {
    let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving_cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes()) {
        roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

impl ApiServer {
    /// Builds the server: TLS, listener, allocators, default objects.
    pub async fn build(
        config: ApiServerConfig,
        store: Arc<dyn Store>,
        pki: &Pki,
    ) -> Result<Self, Error> {
        let cidr = Cidr::parse(&config.service_cidr).map_err(Error::Config)?;
        if config.node_port_range.0 > config.node_port_range.1 {
            return Err(Error::Config(format!(
                "node port range {}-{} is empty",
                config.node_port_range.0, config.node_port_range.1
            )));
        }
        let tls = TlsAcceptor::from(Arc::new(tls_config(pki)?));
        let node_client = crate::rest::node_proxy::NodeClient::new(pki)?;
        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let token_issuer = crate::tokens::TokenIssuer::new(
            &pki.service_account_key,
            &pki.service_account_public_key,
            format!("https://kubernetes.default.svc.{}", config.cluster_domain),
        )?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let from = store.current_revision().await?;
        let watch_cache =
            crate::watch_cache::WatchCache::start(store.clone(), from, shutdown_rx.clone());
        let rbac =
            crate::rbac::RbacCache::start(store.clone(), watch_cache.clone(), shutdown_rx.clone())
                .await?;
        let written = Arc::new(crate::storage::WriteMark::new(
            crate::admission::objects::AdmissionObjects::PREFIXES,
        ));
        let admission_objects = crate::admission::objects::AdmissionObjects::start(
            store.clone(),
            watch_cache.clone(),
            written.clone(),
            shutdown_rx.clone(),
        )
        .await?;
        let registry = Arc::new(crate::crd::ServedResources::new());
        let node_authorizer = if config
            .authorization_modes
            .contains(&crate::AuthorizationMode::Node)
        {
            let graph = crate::node_authz::NodeGraph::start(
                store.clone(),
                watch_cache.clone(),
                shutdown_rx.clone(),
            )
            .await?;
            Some(crate::node_authz::NodeAuthorizer::new(graph))
        } else {
            None
        };
        let flow_control = if config.enable_priority_and_fairness {
            let fc = crate::flowcontrol::FlowControl::new(
                u32::try_from(config.max_requests_inflight).unwrap_or(u32::MAX),
                crate::flowcontrol::QUEUE_WAIT_LIMIT,
            );
            crate::feed::follow(
                fc.clone(),
                store.clone(),
                watch_cache.clone(),
                shutdown_rx.clone(),
            )
            .await?;
            Some(fc)
        } else {
            None
        };
        let authorizer = Chain::new(
            &config.authorization_modes,
            &crate::rbac::RbacAuthorizer::new(rbac.clone()),
            node_authorizer.as_ref(),
        );
        let state = Arc::new(State {
            allocator: Allocator::new(cidr, config.node_port_range),
            tokens: TokenAuthenticator::new(&config.static_tokens),
            token_issuer,
            authorizer: Box::new(authorizer),
            rbac,
            admission_objects,
            inflight: Arc::new(Semaphore::new(config.max_requests_inflight)),
            flow_control,
            storage: Storage {
                store,
                served: registry.clone(),
                written,
            },
            registry,
            shutdown: shutdown_rx,
            watch_cache,
            node_client,
            join: crate::join::Joiner::new(config.join_token.clone(), pki),
            csr_signer: crate::csr::ClusterSigner::new(&pki.ca_cert, &pki.ca_key),
            audit: crate::audit::Auditor::start(&config.audit)?,
            ready: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            extra_metrics: std::sync::RwLock::new(Vec::new()),
            config,
        });
        Ok(Self {
            state,
            listener,
            tls,
            shutdown_tx,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Io("listener".into(), e))
    }

    /// Adds metrics of a component running in the same process to `/metrics`.
    pub fn add_metrics(&self, source: MetricsSource) {
        self.state
            .extra_metrics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// A handle that resolves once the server has finished bootstrapping (what
    /// `/readyz` reports), for components started in the same process.
    pub fn readiness(&self) -> Readiness {
        Readiness(self.state.clone())
    }

    /// Runs in the background until [`RunningApiServer::stop`].
    pub fn spawn(self) -> Result<RunningApiServer, Error> {
        let addr = self.local_addr()?;
        let shutdown_tx = self.shutdown_tx.clone();
        let mut rx = self.shutdown_tx.subscribe();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.wait_for(|v| *v).await;
        }));
        Ok(RunningApiServer {
            addr,
            shutdown_tx,
            task,
        })
    }

    /// Serves until `shutdown` completes, then drains connections for up to 5 s.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            state,
            listener,
            tls,
            shutdown_tx,
        } = self;
        // Serve health checks at once; readiness follows bootstrap.
        let boot_state = state.clone();
        let boot = tokio::spawn(async move {
            let r = crate::bootstrap::run(&boot_state).await;
            if r.is_ok() {
                boot_state.ready.store(true, Ordering::Release);
            }
            r
        });
        let compactor = tokio::spawn(compact_loop(state.clone()));
        let aggregator = tokio::spawn(crate::rbac::aggregate_cluster_roles(state.clone()));
        let crds = tokio::spawn(crate::crd::controller::run(state.clone()));
        let flow_status = tokio::spawn(crate::flowcontrol::keep_status(state.clone()));
        let csrs = tokio::spawn(crate::csr::run(state.clone()));
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        let mut boot = Some(boot);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = async { boot.as_mut().expect("checked").await }, if boot.is_some() => {
                    boot = None;
                    match r {
                        Ok(Ok(())) => tracing::info!("API server ready"),
                        Ok(Err(e)) => { tracing::error!(error = %e, "bootstrap failed"); break; }
                        Err(e) => { tracing::error!(error = %e, "bootstrap task failed"); break; }
                    }
                }
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                    };
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(serve_connection(state.clone(), tls.clone(), tcp, peer));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        let _ = shutdown_tx.send(true);
        compactor.abort();
        aggregator.abort();
        crds.abort();
        flow_status.abort();
        csrs.abort();
        drop(listener);
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            conns.abort_all();
        }
        Ok(())
    }
}

async fn serve_connection(
    state: Arc<State>,
    tls: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let cert_identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| identity_from_certificate(c.as_ref()));
    let svc_state = state.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = svc_state.clone();
        let cert_identity = cert_identity.clone();
        async move {
            state.requests.fetch_add(1, Ordering::Relaxed);
            let auth_header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let who: Result<Identity, ()> = match cert_identity {
                Some(id) => Ok(id),
                None => match state.tokens.authenticate(auth_header.as_deref()) {
                    Some(Ok(id)) => Ok(id),
                    Some(Err(())) => {
                        crate::authn::service_account_identity(&state, auth_header.as_deref()).await
                    }
                    None => Ok(Identity::anonymous()),
                },
            };
            Ok::<_, std::convert::Infallible>(
                crate::handler::handle(state, who, peer.ip(), req).await,
            )
        }
    });
    let mut shutdown = state.shutdown.clone();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        }
        _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Compacts history older than one interval, like kube-apiserver's compactor.
async fn compact_loop(state: Arc<State>) {
    let every = Duration::from_secs(state.config.compaction_interval_secs.max(1));
    let mut previous = None;
    loop {
        tokio::time::sleep(every).await;
        let current = match state.storage.store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading revision for compaction failed");
                continue;
            }
        };
        if let Some(prev) = previous {
            match state.storage.store.compact(prev).await {
                Ok(()) => tracing::debug!(revision = prev, "compacted"),
                Err(e) => tracing::warn!(error = %e, revision = prev, "compaction failed"),
            }
        }
        previous = Some(current);
    }
}
