//! Watch: kubectl get -w prints changes as they happen; kube-rs watches resume from a
//! resourceVersion, see selector transitions, and get 410 Gone after compaction.

#[path = "support/server.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use support::{Options, TestServer};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c
}

#[test]
fn kubectl_get_watch_prints_changes_as_they_happen() {
    let s = TestServer::start();
    let mut child = Command::new("/usr/bin/kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .arg("--cache-dir")
        .arg(s.data_dir().join("watch-cache"))
        .args(["get", "cm", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Let kubectl list and start watching, then create, change and delete.
    std::thread::sleep(Duration::from_millis(800));
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: live\ndata:\n  k: v\n");
    s.kubectl_ok(&["label", "cm", "live", "a=b"]);
    s.kubectl_ok(&["delete", "cm", "live"]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline
        && !seen.iter().any(|l: &String| l.starts_with("DELETED"))
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.first()
            .is_some_and(|h| h.contains("EVENT") && h.contains("NAME") && h.contains("DATA")),
        "{seen:?}"
    );
    let events: Vec<&str> = seen
        .iter()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some("live"))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(events, vec!["ADDED", "MODIFIED", "DELETED"], "{seen:?}");
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_follows_selectors() {
    let s = TestServer::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("a", &[("team", "x")]))
        .await
        .expect("create a");
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.clone().expect("list rv");
    api.create(&PostParams::default(), &cm("b", &[("team", "x")]))
        .await
        .expect("create b");
    // Relabel a out of the selector: a selector watch sees it DELETED.
    let mut a = api.get("a").await.expect("get a");
    a.metadata.labels = Some([("team".to_string(), "y".to_string())].into());
    api.replace("a", &PostParams::default(), &a)
        .await
        .expect("relabel a");

    let wp = WatchParams::default().labels("team=x").timeout(5);
    let events: Vec<_> = tokio::time::timeout(
        Duration::from_secs(10),
        api.watch(&wp, &rv)
            .await
            .expect("watch")
            .take(2)
            .try_collect::<Vec<_>>(),
    )
    .await
    .expect("events in time")
    .expect("watch ok");
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap_or_default()),
            WatchEvent::Modified(o) => (
                "MODIFIED".into(),
                o.metadata.name.clone().unwrap_or_default(),
            ),
            WatchEvent::Deleted(o) => (
                "DELETED".into(),
                o.metadata.name.clone().unwrap_or_default(),
            ),
            other => (format!("{other:?}"), String::new()),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("ADDED".into(), "b".into()), ("DELETED".into(), "a".into())]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_410_gone() {
    let s = TestServer::start_with(Options {
        args: vec!["--compaction-interval".into(), "1".into()],
    });
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("c0", &[]))
        .await
        .expect("create");
    let old_rv = first.metadata.resource_version.expect("rv");
    for i in 1..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), &[]))
            .await
            .expect("create");
    }
    // Two compaction ticks: the second compacts to the revision seen at the first.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    api.create(&PostParams::default(), &cm("late", &[]))
        .await
        .expect("create");
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &old_rv)
        .await
        .expect("watch call")
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event");
    match first {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watcher_sees_the_initial_list_and_changes() {
    use kube::runtime::watcher::{self, Event};
    let s = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .expect("create");
    let mut w = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .expect("event")
            .expect("ok")
        {
            Some(Event::InitApply(o)) => init.push(o.metadata.name.unwrap_or_default()),
            Some(Event::InitDone) => break,
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    assert!(init.contains(&"one".to_string()), "{init:?}");
    api.create(&PostParams::default(), &cm("two", &[]))
        .await
        .expect("create");
    let next = tokio::time::timeout(Duration::from_secs(10), w.try_next())
        .await
        .expect("event")
        .expect("ok");
    match next {
        Some(Event::Apply(o)) => assert_eq!(o.metadata.name.as_deref(), Some("two")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_watch_sends_initial_events_then_a_bookmark() {
    use kube::runtime::watcher::{self, Event};
    let s = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    for n in ["s1", "s2"] {
        api.create(&PostParams::default(), &cm(n, &[]))
            .await
            .expect("create");
    }
    let cfg = watcher::Config::default().streaming_lists();
    let mut w = watcher::watcher(api.clone(), cfg).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .expect("event in time")
            .expect("ok")
        {
            Some(Event::InitApply(o)) => init.push(o.metadata.name.unwrap_or_default()),
            Some(Event::InitDone) => break,
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    // Every namespace also holds the cluster CA, as in Kubernetes.
    init.retain(|n| n != "kube-root-ca.crt");
    init.sort();
    assert_eq!(init, vec!["s1", "s2"]);
}
