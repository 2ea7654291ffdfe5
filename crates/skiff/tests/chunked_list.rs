//! Chunked lists: `limit`/`continue` pages cover every object exactly once at one
//! revision; kubectl's --chunk-size lists everything; selectors filter pages.

#[path = "support/server.rs"]
mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use support::TestServer;

#[tokio::test]
async fn pages_cover_every_object_once_at_one_revision() {
    let s = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    for i in 0..23 {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(format!("cm-{i:02}"));
        c.metadata.labels = Some(
            [(
                "parity".to_string(),
                if i % 2 == 0 { "even" } else { "odd" }.to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &c)
            .await
            .expect("create");
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let mut lp = ListParams::default().limit(5);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.expect("page");
        if pages == 0 {
            first_rv = page.metadata.resource_version.clone();
            // A write between pages must not show up in later pages.
            let mut late = ConfigMap::default();
            late.metadata.name = Some("zz-late".into());
            api.create(&PostParams::default(), &late)
                .await
                .expect("late create");
        }
        assert!(page.items.len() <= 5);
        pages += 1;
        names.extend(
            page.items
                .into_iter()
                .map(|c| c.metadata.name.unwrap_or_default()),
        );
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    assert_eq!(pages, 5);
    // Every namespace also holds the cluster CA, as in Kubernetes.
    names.retain(|n| n != "kube-root-ca.crt");
    let expected: Vec<String> = (0..23).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(names, expected);
    assert!(first_rv.is_some());
    let odd = api
        .list(&ListParams::default().labels("parity=odd").limit(4))
        .await
        .expect("odd page");
    assert_eq!(odd.items.len(), 4);
    assert!(odd.items.iter().all(|c| {
        c.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l["parity"] == "odd")
    }));
}

#[test]
fn kubectl_chunked_get_lists_everything() {
    let s = TestServer::start();
    let mut yaml = String::new();
    for i in 0..30 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k-{i}\n"
        ));
    }
    s.apply(&yaml);
    let out = s.kubectl_ok(&["get", "cm", "--chunk-size=7", "-o", "name"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("configmap/k-"))
            .count(),
        30,
        "{out}"
    );
    let out = s.kubectl_ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=k-7",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "configmap/k-7");
    let err = s.kubectl_err(&["get", "cm", "--field-selector", "spec.nope=1"]);
    assert!(
        err.contains("field label not supported: spec.nope"),
        "{err}"
    );
}
