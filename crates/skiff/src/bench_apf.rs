//! `skiff bench apf`: one user floods the API server with concurrent list requests
//! while another user gets one object over and over; the second user's latency is
//! compared with its latency on an idle server, with API Priority and Fairness on
//! and (the baseline, same run) with only the max-in-flight limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams, PostParams};

use crate::bench::{cm, ms, percentile, run_concurrent, start_server};

/// A user's client: a certificate signed by the bench server's CA, no retries (a
/// 429 is counted, not hidden).
async fn user_client(dir: &Path, user: &str) -> anyhow::Result<kube::Client> {
    let tls = dir.join("server/tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).context("reading the cluster CA");
    let (ca_cert, ca_key) = (read("ca.crt")?, read("ca.key")?);
    let (cert, key) = apiserver::sign_client_cert(&ca_cert, &ca_key, user, &[])?;
    let admin = kube::config::Kubeconfig::read_from(dir.join("kubeconfig.yaml"))?;
    let server = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .context("the admin kubeconfig names no server")?;
    let path: PathBuf = dir.join(format!("{user}.kubeconfig"));
    apiserver::write_kubeconfig(&path, &server, &ca_cert, &cert, &key, 0o600)?;
    let kc = kube::config::Kubeconfig::read_from(&path)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.default_retry = false;
    Ok(kube::Client::try_from(cfg)?)
}

/// What one mode measured.
struct Outcome {
    mode: &'static str,
    idle: Vec<Duration>,
    under_flood: Vec<Duration>,
    quiet_failed: usize,
    served: Vec<Duration>,
    rejected: usize,
    other_errors: usize,
    flood_wall: Duration,
}

fn is_429(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 429)
}

async fn measure(
    mode: &'static str,
    extra: &[&str],
    objects: usize,
    flood: usize,
) -> anyhow::Result<Outcome> {
    eprintln!("==> {mode}: starting skiff server");
    let srv = start_server(extra).await?;
    let admin = srv.client.clone();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for ns in ["apf-flood", "apf-quiet"] {
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.into());
        namespaces.create(&PostParams::default(), &n).await?;
    }
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "apf-bench-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flooder"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "quiet"},
        ],
    }))?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    eprintln!("==> {mode}: creating {objects} ConfigMaps to list");
    let flood_api: Api<ConfigMap> = Api::namespaced(admin.clone(), "apf-flood");
    let a = flood_api.clone();
    run_concurrent(objects, 32, move |i| {
        let a = a.clone();
        async move {
            a.create(&PostParams::default(), &cm(format!("cm-{i:05}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    Api::<ConfigMap>::namespaced(admin.clone(), "apf-quiet")
        .create(&PostParams::default(), &cm("target".into()))
        .await?;

    let flooder: Api<ConfigMap> =
        Api::namespaced(user_client(srv.dir(), "flooder").await?, "apf-flood");
    let quiet: Api<ConfigMap> =
        Api::namespaced(user_client(srv.dir(), "quiet").await?, "apf-quiet");
    // The binding reaches the authorizer's index.
    let deadline = Instant::now() + Duration::from_secs(10);
    while quiet.get("target").await.is_err()
        || flooder.list(&ListParams::default().limit(1)).await.is_err()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the users never got their view rights"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!("==> {mode}: the quiet user's get on an idle server");
    let mut idle = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        quiet.get("target").await?;
        idle.push(t.elapsed());
    }
    idle.sort();

    eprintln!("==> {mode}: {flood} concurrent lists of {objects} objects by one user");
    let done = Arc::new(AtomicBool::new(false));
    // The quiet user runs on a thread and runtime of its own, so that the flood's
    // responses arriving in this process do not delay its measurements.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let base = Instant::now();
    let quiet_thread = {
        let done = done.clone();
        let dir = srv.dir().to_path_buf();
        std::thread::spawn(move || -> anyhow::Result<(Vec<Duration>, usize)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let quiet: Api<ConfigMap> =
                    Api::namespaced(user_client(&dir, "quiet").await?, "apf-quiet");
                // Connected and warm before the flood starts.
                quiet.get("target").await?;
                let _ = ready_tx.send(());
                let mut lat = Vec::new();
                let mut failed = 0usize;
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match quiet.get("target").await {
                        Ok(_) => {
                            let took = t.elapsed();
                            if took > Duration::from_millis(50) {
                                eprintln!(
                                    "    slow quiet get: {} ms, started {} ms after the quiet user's start",
                                    took.as_millis(),
                                    t.duration_since(base).as_millis()
                                );
                            }
                            lat.push(took)
                        }
                        Err(_) => failed += 1,
                    }
                }
                Ok((lat, failed))
            })
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .context("the quiet user's client did not get ready")?;
    let started = Instant::now();
    eprintln!(
        "    flood starts {} ms after the quiet user's start",
        started.duration_since(base).as_millis()
    );
    let mut tasks = Vec::with_capacity(flood);
    let flood_client = user_client(srv.dir(), "flooder").await?;
    let url = "/api/v1/namespaces/apf-flood/configmaps";
    for _ in 0..flood {
        let c = flood_client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let req = http::Request::get(url).body(Vec::new())?;
            // The body is counted, not decoded: the flood's client stays cheap.
            let r = c.request_text(req).await;
            Ok::<_, anyhow::Error>((
                t.elapsed(),
                r.map(|body| body.matches("\"name\":\"cm-").count()),
            ))
        }));
    }
    let mut served = Vec::new();
    let (mut rejected, mut other_errors) = (0usize, 0usize);
    for t in tasks {
        let (lat, r) = t.await??;
        match r {
            Ok(n) if n == objects => served.push(lat),
            Ok(n) => anyhow::bail!("a list returned {n} of the {objects} ConfigMaps"),
            Err(e) if is_429(&e) => rejected += 1,
            Err(e) => {
                other_errors += 1;
                if other_errors == 1 {
                    eprintln!("    first non-429 error of the flood: {e}");
                }
            }
        }
    }
    let flood_wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (mut under_flood, quiet_failed) = quiet_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the quiet user's thread panicked"))??;
    under_flood.sort();
    served.sort();
    Ok(Outcome {
        mode,
        idle,
        under_flood,
        quiet_failed,
        served,
        rejected,
        other_errors,
        flood_wall,
    })
}

/// Runs the flood with priority and fairness on, then with it off.
pub(crate) async fn apf(objects: usize, flood: usize) -> anyhow::Result<()> {
    let objects = objects.clamp(1, 100_000);
    let mut outcomes = Vec::new();
    for (mode, extra) in [
        ("priority and fairness (default)", &[][..]),
        (
            "max-in-flight only (--enable-priority-and-fairness=false)",
            &["--enable-priority-and-fairness=false"][..],
        ),
    ] {
        outcomes.push(measure(mode, extra, objects, flood).await?);
    }
    println!("## API Priority and Fairness: a flood of lists vs another user's get\n");
    println!(
        "One user (`flooder`, RBAC view) sends {flood} list requests at once, each listing {objects} ConfigMaps; meanwhile another user (`quiet`) gets one ConfigMap again and again until the flood is over. Both are ordinary users (global-default priority level). Clients do not retry 429s.\n"
    );
    println!(
        "| mode | quiet get, idle p50 / p99 | quiet get under flood p50 / p99 (n) | quiet p50 ratio | quiet gets failed | flood lists served / 429 / other | served list p50 / p99 | flood wall |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let ratio = percentile(&o.under_flood, 0.5).as_secs_f64()
            / percentile(&o.idle, 0.5).as_secs_f64().max(1e-9);
        println!(
            "| {} | {} / {} ms | {} / {} ms ({}) | {:.1}× | {} | {} / {} / {} | {} / {} ms | {:.1} s |",
            o.mode,
            ms(percentile(&o.idle, 0.5)),
            ms(percentile(&o.idle, 0.99)),
            ms(percentile(&o.under_flood, 0.5)),
            ms(percentile(&o.under_flood, 0.99)),
            o.under_flood.len(),
            ratio,
            o.quiet_failed,
            o.served.len(),
            o.rejected,
            o.other_errors,
            ms(percentile(&o.served, 0.5)),
            ms(percentile(&o.served, 0.99)),
            o.flood_wall.as_secs_f64(),
        );
    }
    Ok(())
}
