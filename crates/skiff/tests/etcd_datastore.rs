//! `skiff server --datastore-endpoint http://...` stores everything in a real etcd:
//! kubectl works the same, and the data is still there after a restart.

#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/server.rs"]
mod support;

use support::{Options, TestServer};

#[test]
fn kubectl_works_on_an_etcd_datastore_and_data_survives_restart() {
    let etcd = etcd::TestEtcd::start();
    let mut s = TestServer::start_with(Options {
        args: vec!["--datastore-endpoint".into(), etcd.client_url.clone()],
    });
    s.kubectl_ok(&["create", "namespace", "on-etcd"]);
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: on-etcd\ndata:\n  k: v\n");
    let out = s.kubectl_ok(&[
        "get",
        "cm",
        "-n",
        "on-etcd",
        "c",
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(out, "v");
    s.kubectl_ok(&["label", "cm", "-n", "on-etcd", "c", "x=y"]);
    assert_eq!(s.terminate(), Some(0), "clean shutdown on SIGTERM");
    s.spawn_and_wait();
    let out = s.kubectl_ok(&[
        "get",
        "cm",
        "-n",
        "on-etcd",
        "c",
        "-o",
        "jsonpath={.metadata.labels.x}",
    ]);
    assert_eq!(out, "y");
}
