//! Decisions of the Node authorizer, and its place in the chain before RBAC.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use store::Store;
use tokio::sync::watch;

use super::graph::Graph;
use super::refs::{PodRefs, PvRefs};
use super::*;
use crate::authz::{AuthorizationMode, Chain};
use crate::request::RequestInfo;

fn node(name: &str) -> Identity {
    Identity {
        user: format!("system:node:{name}"),
        uid: String::new(),
        groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        extra: Default::default(),
    }
}

fn info(method: http::Method, path: &str, query: Option<&str>) -> RequestInfo {
    crate::request::parse(&method, path, query).expect("parses")
}

/// Node `a` runs `ns/web` (secret `s`, configmap `cm`, claim `data` bound to `pv1`
/// with a mount secret, account `runner`); node `b` runs nothing.
fn authorizer() -> NodeAuthorizer {
    let mut g = Graph::default();
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    g.set_pod(
        "ns",
        "web",
        Some(PodRefs {
            node: "a".into(),
            service_account: Some("runner".into()),
            secrets: set(&["s"]),
            config_maps: set(&["cm"]),
            claims: set(&["data"]),
        }),
    );
    g.set_volume(
        "pv1",
        Some(PvRefs {
            claim: Some(("ns".into(), "data".into())),
            secrets: [("ns".to_string(), "mount".to_string())].into(),
        }),
    );
    g.set_attachment("va1", Some("a".into()));
    NodeAuthorizer::new(NodeGraph::fixed(g))
}

fn decide(
    z: &NodeAuthorizer,
    who: &Identity,
    method: http::Method,
    path: &str,
    query: Option<&str>,
) -> Decision {
    let i = info(method, path, query);
    z.decide(&Attributes::from_request(who, &i))
}

fn get(z: &NodeAuthorizer, who: &Identity, path: &str) -> Decision {
    decide(z, who, http::Method::GET, path, None)
}

fn no_relationship(node: &str) -> Decision {
    Decision::NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

#[test]
fn a_node_reads_the_secrets_and_configmaps_of_its_pods_and_no_others() {
    let z = authorizer();
    let (a, b) = (node("a"), node("b"));
    for path in [
        "/api/v1/namespaces/ns/secrets/s",
        "/api/v1/namespaces/ns/configmaps/cm",
        "/api/v1/namespaces/ns/secrets/mount",
    ] {
        assert!(get(&z, &a, path).allowed(), "{path}");
        assert_eq!(get(&z, &b, path), no_relationship("b"), "{path}");
    }
    assert_eq!(
        get(&z, &a, "/api/v1/namespaces/ns/secrets/other"),
        no_relationship("a")
    );
    assert_eq!(
        get(&z, &a, "/api/v1/namespaces/elsewhere/secrets/s"),
        no_relationship("a")
    );
    // The name is the object's identity, not its kind's: `cm` is no secret.
    assert_eq!(
        get(&z, &a, "/api/v1/namespaces/ns/secrets/cm"),
        no_relationship("a")
    );
}

#[test]
fn one_object_may_be_listed_or_watched_by_name_but_not_all_of_them() {
    let z = authorizer();
    let a = node("a");
    let by_name = Some("fieldSelector=metadata.name%3Ds&watch=true");
    assert!(
        decide(
            &z,
            &a,
            http::Method::GET,
            "/api/v1/namespaces/ns/secrets",
            by_name
        )
        .allowed()
    );
    let by_name = Some("fieldSelector=metadata.name%3Dcm");
    assert!(
        decide(
            &z,
            &a,
            http::Method::GET,
            "/api/v1/namespaces/ns/configmaps",
            by_name
        )
        .allowed()
    );
    assert_eq!(
        get(&z, &a, "/api/v1/namespaces/ns/secrets"),
        Decision::NoOpinion("No Object name found".into())
    );
    assert_eq!(
        get(&z, &a, "/api/v1/secrets"),
        Decision::NoOpinion("can only read namespaced object of this type".into())
    );
    assert_eq!(
        decide(
            &z,
            &a,
            http::Method::PUT,
            "/api/v1/namespaces/ns/secrets/s",
            None
        ),
        Decision::NoOpinion("can only read resources of this type".into())
    );
}

#[test]
fn claims_volumes_and_attachments_may_only_be_got_when_related() {
    let z = authorizer();
    let (a, b) = (node("a"), node("b"));
    for path in [
        "/api/v1/namespaces/ns/persistentvolumeclaims/data",
        "/api/v1/persistentvolumes/pv1",
        "/apis/storage.k8s.io/v1/volumeattachments/va1",
    ] {
        assert!(get(&z, &a, path).allowed(), "{path}");
        assert_eq!(get(&z, &b, path), no_relationship("b"), "{path}");
    }
    assert_eq!(
        get(&z, &a, "/api/v1/persistentvolumes"),
        Decision::NoOpinion("can only get individual resources of this type".into())
    );
    let status = "/api/v1/namespaces/ns/persistentvolumeclaims/data/status";
    assert!(decide(&z, &a, http::Method::PATCH, status, None).allowed());
    assert_eq!(
        decide(&z, &b, http::Method::PATCH, status, None),
        no_relationship("b")
    );
    assert_eq!(
        get(&z, &a, status),
        Decision::NoOpinion("can only get/update/patch this type".into())
    );
}

#[test]
fn tokens_are_only_for_the_accounts_of_the_nodes_pods() {
    let z = authorizer();
    let (a, b) = (node("a"), node("b"));
    let token = "/api/v1/namespaces/ns/serviceaccounts/runner/token";
    assert!(decide(&z, &a, http::Method::POST, token, None).allowed());
    assert_eq!(
        decide(&z, &b, http::Method::POST, token, None),
        no_relationship("b")
    );
    assert_eq!(
        decide(
            &z,
            &a,
            http::Method::POST,
            "/api/v1/namespaces/ns/serviceaccounts/default/token",
            None
        ),
        no_relationship("a")
    );
    // Skiff's agent reads its pods' accounts for their imagePullSecrets.
    assert!(get(&z, &a, "/api/v1/namespaces/ns/serviceaccounts/runner").allowed());
    assert_eq!(
        get(&z, &b, "/api/v1/namespaces/ns/serviceaccounts/runner"),
        no_relationship("b")
    );
    assert_eq!(
        get(&z, &a, "/api/v1/namespaces/ns/serviceaccounts"),
        Decision::NoOpinion("can only create tokens for individual service accounts".into())
    );
    assert_eq!(
        decide(
            &z,
            &a,
            http::Method::PUT,
            "/api/v1/namespaces/ns/serviceaccounts/runner",
            None
        ),
        Decision::NoOpinion("can only create tokens for individual service accounts".into())
    );
}

#[test]
fn a_node_may_only_touch_its_own_lease_and_csinode() {
    let z = authorizer();
    let a = node("a");
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    assert!(get(&z, &a, &format!("{leases}/a")).allowed());
    assert!(decide(&z, &a, http::Method::PUT, &format!("{leases}/a"), None).allowed());
    // The name of a new Lease is NodeRestriction's to check.
    assert!(decide(&z, &a, http::Method::POST, leases, None).allowed());
    assert_eq!(
        decide(&z, &a, http::Method::PUT, &format!("{leases}/b"), None),
        Decision::NoOpinion(
            "can only access node lease with the same name as the requesting node".into()
        )
    );
    assert_eq!(
        get(&z, &a, leases),
        Decision::NoOpinion("can only get, create, update, patch, or delete a node lease".into())
    );
    assert_eq!(
        get(
            &z,
            &a,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/a"
        ),
        Decision::NoOpinion(
            "can only access leases in the \"kube-node-lease\" system namespace".into()
        )
    );
    let csinodes = "/apis/storage.k8s.io/v1/csinodes";
    assert!(get(&z, &a, &format!("{csinodes}/a")).allowed());
    assert!(!get(&z, &a, &format!("{csinodes}/b")).allowed());
}

#[test]
fn other_requests_are_judged_by_the_system_node_rules() {
    let z = authorizer();
    let b = node("b");
    let allowed = [
        (http::Method::POST, "/api/v1/nodes"),
        (http::Method::PATCH, "/api/v1/nodes/b/status"),
        (http::Method::GET, "/api/v1/pods"),
        (http::Method::PATCH, "/api/v1/namespaces/ns/pods/web/status"),
        (http::Method::DELETE, "/api/v1/namespaces/ns/pods/web"),
        (
            http::Method::POST,
            "/api/v1/namespaces/ns/pods/web/eviction",
        ),
        (http::Method::POST, "/api/v1/namespaces/ns/events"),
        (http::Method::GET, "/api/v1/namespaces/ns/services"),
    ];
    for (method, path) in allowed {
        assert!(
            decide(&z, &b, method.clone(), path, None).allowed(),
            "{method} {path}"
        );
    }
    let refused = [
        (http::Method::PATCH, "/api/v1/namespaces/ns/pods/web"),
        (http::Method::DELETE, "/api/v1/nodes/b"),
        (http::Method::GET, "/apis/apps/v1/deployments"),
        (
            http::Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ns/events",
        ),
        (http::Method::GET, "/metrics"),
    ];
    for (method, path) in refused {
        assert_eq!(
            decide(&z, &b, method.clone(), path, None),
            Decision::NoOpinion(String::new()),
            "{method} {path}"
        );
    }
}

#[test]
fn only_members_of_system_nodes_with_a_node_name_are_judged() {
    let z = authorizer();
    let path = "/api/v1/namespaces/ns/secrets/s";
    let mut not_in_group = node("a");
    not_in_group.groups.retain(|g| g != NODES_GROUP);
    assert_eq!(
        get(&z, &not_in_group, path),
        Decision::NoOpinion(String::new())
    );
    let user = Identity {
        user: "alice".into(),
        uid: String::new(),
        groups: vec![NODES_GROUP.into()],
        extra: Default::default(),
    };
    assert_eq!(get(&z, &user, path), Decision::NoOpinion(String::new()));
    assert_eq!(
        get(&z, &node(""), path),
        Decision::NoOpinion("unknown node for user \"system:node:\"".into())
    );
    let rules = z.rules_for(&node("a"), "ns").expect("answers");
    assert!(rules.incomplete && rules.resource_rules.is_empty());
    let rules = z.rules_for(&user, "ns").expect("answers");
    assert!(!rules.incomplete);
}

/// The API server's chain (`Node,RBAC`) over a memory store, and the sender that
/// stops its followers.
async fn chain_over(store: Arc<dyn Store>) -> (Chain, watch::Sender<bool>) {
    let from = store.current_revision().await.expect("revision");
    let (stop, shutdown) = watch::channel(false);
    let watch_cache = crate::watch_cache::WatchCache::start(store.clone(), from, shutdown.clone());
    let rbac = crate::rbac::RbacCache::start(store.clone(), watch_cache.clone(), shutdown.clone())
        .await
        .expect("the RBAC index starts");
    let graph = NodeGraph::start(store, watch_cache, shutdown)
        .await
        .expect("the graph starts");
    let chain = Chain::new(
        &[AuthorizationMode::Node, AuthorizationMode::Rbac],
        &crate::rbac::RbacAuthorizer::new(rbac),
        Some(&NodeAuthorizer::new(graph)),
    );
    (chain, stop)
}

async fn put(store: &dyn Store, key: &str, obj: serde_json::Value) {
    store
        .create(key, Bytes::from(obj.to_string()))
        .await
        .expect("create");
}

#[tokio::test]
async fn the_chain_refuses_another_nodes_secret_as_kube_apiserver_words_it_and_rbac_may_still_grant()
 {
    let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
    put(
        store.as_ref(),
        "/registry/core/pods/ns/web",
        json!({"metadata": {"name": "web", "namespace": "ns"},
               "spec": {"nodeName": "n1", "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}}),
    )
    .await;
    // Any node may read claims, through RBAC (as the local-path provisioner's
    // binding gives them).
    put(
        store.as_ref(),
        "/registry/rbac.authorization.k8s.io/clusterroles/claims",
        json!({"metadata": {"name": "claims"},
               "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["persistentvolumeclaims"]}]}),
    )
    .await;
    put(
        store.as_ref(),
        "/registry/rbac.authorization.k8s.io/clusterrolebindings/claims",
        json!({"metadata": {"name": "claims"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "claims"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": NODES_GROUP}]}),
    )
    .await;
    let (chain, _stop) = chain_over(store.clone()).await;
    let secret = info(http::Method::GET, "/api/v1/namespaces/ns/secrets/s", None);
    assert!(chain.authorize(&node("n1"), &secret).is_ok());
    let e = chain
        .authorize(&node("n2"), &secret)
        .expect_err("another node's secret");
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "secrets \"s\" is forbidden: User \"system:node:n2\" cannot get resource \"secrets\" in API group \"\" in the namespace \"ns\": no relationship found between node 'n2' and this object"
    );
    let all = info(http::Method::GET, "/api/v1/secrets", None);
    let e = chain
        .authorize(&node("n1"), &all)
        .expect_err("every secret");
    assert_eq!(
        e.message,
        "secrets is forbidden: User \"system:node:n1\" cannot list resource \"secrets\" in API group \"\" at the cluster scope: can only read namespaced object of this type"
    );
    let claims = info(
        http::Method::GET,
        "/api/v1/namespaces/ns/persistentvolumeclaims",
        None,
    );
    assert!(
        chain.authorize(&node("n2"), &claims).is_ok(),
        "RBAC decides what the Node authorizer has no opinion on"
    );

    // The pod goes: so does node n1's access.
    store
        .delete("/registry/core/pods/ns/web", None)
        .await
        .expect("delete the pod");
    let mut refused = false;
    for _ in 0..100 {
        refused = chain.authorize(&node("n1"), &secret).is_err();
        if refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the graph follows the pod's deletion");
}
