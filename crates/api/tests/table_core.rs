//! `kubectl get` for core, networking, storage, RBAC and cluster kinds.

use api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use api::table::{column_definitions, row_cells};
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

fn names(group: &str, kind: &str) -> Vec<String> {
    column_definitions(group, kind)
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn shown(group: &str, kind: &str, obj: &Value, column: &str) -> Value {
    let index = column_definitions(group, kind)
        .iter()
        .position(|c| c.name == column)
        .unwrap_or_else(|| panic!("{kind} has no column {column}"));
    row_cells(group, kind, obj, now())[index].clone()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "creationTimestamp": ago(10 * 60)})
}

#[test]
fn namespace_shows_its_phase() {
    let ns = json!({"metadata": meta("team-a"), "status": {"phase": "Terminating"}});
    assert_eq!(
        row_cells("", "Namespace", &ns, now()),
        vec![json!("team-a"), json!("Terminating"), json!("10m")]
    );
    let fresh = json!({"metadata": meta("team-b")});
    assert_eq!(shown("", "Namespace", &fresh, "Status"), json!("Active"));
}

fn node(ready: Option<&str>, unschedulable: bool, labels: Value) -> Value {
    let conditions = match ready {
        Some(status) => json!([
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": status},
        ]),
        None => json!([]),
    };
    json!({
        "metadata": {"name": "node-1", "creationTimestamp": ago(45 * 86400), "labels": labels},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": conditions,
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0-21-amd64", "containerRuntimeVersion": "containerd://1.7.15"},
        },
    })
}

#[test]
fn ready_control_plane_node_shows_ready_roles_and_version() {
    let n = node(
        Some("True"),
        false,
        json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}),
    );
    assert_eq!(
        row_cells("", "Node", &n, now()),
        vec![
            json!("node-1"),
            json!("Ready"),
            json!("control-plane,master"),
            json!("45d"),
            json!("v1.33.1"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0-21-amd64"),
            json!("containerd://1.7.15"),
        ]
    );
    assert_eq!(
        names("", "Node"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
}

#[test]
fn cordoned_node_shows_scheduling_disabled() {
    let n = node(Some("True"), true, json!({}));
    assert_eq!(
        shown("", "Node", &n, "Status"),
        json!("Ready,SchedulingDisabled")
    );
    assert_eq!(shown("", "Node", &n, "Roles"), json!("<none>"));
}

#[test]
fn node_not_ready_or_without_ready_condition() {
    assert_eq!(
        shown("", "Node", &node(Some("False"), false, json!({})), "Status"),
        json!("NotReady")
    );
    assert_eq!(
        shown(
            "",
            "Node",
            &node(Some("Unknown"), true, json!({})),
            "Status"
        ),
        json!("NotReady,SchedulingDisabled")
    );
    assert_eq!(
        shown("", "Node", &node(None, false, json!({})), "Status"),
        json!("Unknown")
    );
    let bare = json!({"metadata": {"name": "n"}});
    assert_eq!(shown("", "Node", &bare, "OS-Image"), json!("<unknown>"));
}

fn service(spec: Value, status: Value) -> Value {
    json!({"metadata": meta("web"), "spec": spec, "status": status})
}

#[test]
fn cluster_ip_service_shows_its_ip_ports_and_no_external_ip() {
    let svc = service(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
               "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
               "selector": {"k8s-app": "kube-dns"}}),
        json!({}),
    );
    assert_eq!(
        row_cells("", "Service", &svc, now()),
        vec![
            json!("web"),
            json!("ClusterIP"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("53/UDP,53/TCP"),
            json!("10m"),
            json!("k8s-app=kube-dns"),
        ]
    );
}

#[test]
fn node_port_service_shows_port_and_node_port() {
    let svc = service(
        json!({"type": "NodePort", "clusterIP": "10.96.1.1",
               "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}),
        json!({}),
    );
    assert_eq!(shown("", "Service", &svc, "Port(s)"), json!("80:30080/TCP"));
    assert_eq!(shown("", "Service", &svc, "Cluster-IP"), json!("10.96.1.1"));
    assert_eq!(shown("", "Service", &svc, "Selector"), json!("<none>"));
}

#[test]
fn load_balancer_service_is_pending_until_it_gets_an_address() {
    let spec = json!({"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"],
                      "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]});
    let pending = service(spec.clone(), json!({"loadBalancer": {}}));
    assert_eq!(
        shown("", "Service", &pending, "External-IP"),
        json!("<pending>")
    );
    let ready = service(
        spec,
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}}),
    );
    assert_eq!(
        shown("", "Service", &ready, "External-IP"),
        json!("203.0.113.9,lb.example.com")
    );
}

#[test]
fn headless_and_external_name_services() {
    let headless = service(
        json!({"clusterIP": "None", "clusterIPs": ["None"]}),
        json!({}),
    );
    assert_eq!(shown("", "Service", &headless, "Type"), json!("ClusterIP"));
    assert_eq!(shown("", "Service", &headless, "Cluster-IP"), json!("None"));
    assert_eq!(shown("", "Service", &headless, "Port(s)"), json!("<none>"));
    let external = service(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
        json!({}),
    );
    assert_eq!(
        shown("", "Service", &external, "Cluster-IP"),
        json!("<none>")
    );
    assert_eq!(
        shown("", "Service", &external, "External-IP"),
        json!("db.example.com")
    );
}

#[test]
fn endpoints_show_three_addresses_then_how_many_more() {
    let ep = json!({
        "metadata": meta("web"),
        "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 8080}],
        }],
    });
    assert_eq!(
        shown("", "Endpoints", &ep, "Endpoints"),
        json!("10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 1 more...")
    );
    let empty = json!({"metadata": meta("none")});
    assert_eq!(shown("", "Endpoints", &empty, "Endpoints"), json!("<none>"));
}

#[test]
fn endpoint_slice_shows_address_type_ports_and_endpoints() {
    let slice = json!({
        "metadata": meta("web-abcde"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics"}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
    });
    assert_eq!(
        row_cells("discovery.k8s.io", "EndpointSlice", &slice, now()),
        vec![
            json!("web-abcde"),
            json!("IPv4"),
            json!("8080,metrics"),
            json!("10.0.0.1,10.0.0.2"),
            json!("10m")
        ]
    );
    let empty = json!({"metadata": meta("e"), "addressType": "IPv6"});
    assert_eq!(
        shown("discovery.k8s.io", "EndpointSlice", &empty, "Ports"),
        json!("<unset>")
    );
}

#[test]
fn config_maps_secrets_and_service_accounts_count_their_entries() {
    let cm =
        json!({"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(
        row_cells("", "ConfigMap", &cm, now()),
        vec![json!("cfg"), json!(3), json!("10m")]
    );
    let secret = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls",
                        "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(
        row_cells("", "Secret", &secret, now()),
        vec![
            json!("tls"),
            json!("kubernetes.io/tls"),
            json!(2),
            json!("10m")
        ]
    );
    let opaque =
        json!({"metadata": meta("s"), "stringData": {"password": "x"}, "data": {"user": "eA=="}});
    assert_eq!(shown("", "Secret", &opaque, "Type"), json!("Opaque"));
    assert_eq!(shown("", "Secret", &opaque, "Data"), json!(2));
    let sa = json!({"metadata": meta("default"), "secrets": [{"name": "default-token"}]});
    assert_eq!(
        row_cells("", "ServiceAccount", &sa, now()),
        vec![json!("default"), json!(1), json!("10m")]
    );
}

#[test]
fn event_columns_show_last_seen_type_reason_object_message_by_default() {
    let default: Vec<String> = column_definitions("", "Event")
        .into_iter()
        .filter(|c| c.priority == 0)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        default,
        ["Last Seen", "Type", "Reason", "Object", "Message"]
    );
    assert_eq!(
        names("", "Event"),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    assert_eq!(
        column_definitions("events.k8s.io", "Event"),
        column_definitions("", "Event")
    );
}

#[test]
fn core_event_shows_ages_target_source_and_count() {
    let event = json!({
        "metadata": {"name": "web-0.17c", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(3600),
        "lastTimestamp": ago(30),
        "count": 12,
        "type": "Warning",
    });
    assert_eq!(
        row_cells("", "Event", &event, now()),
        vec![
            json!("30s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-0"),
            json!("spec.containers{app}"),
            json!("kubelet, node-1"),
            json!("Back-off restarting failed container"),
            json!("60m"),
            json!(12),
            json!("web-0.17c"),
        ]
    );
}

#[test]
fn events_k8s_io_event_uses_event_time_series_and_reporting_controller() {
    let event = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.18a"},
        "eventTime": "2024-05-01T11:50:00.123456Z",
        "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:00.000000Z"},
        "reportingController": "deployment-controller",
        "reportingInstance": "",
        "action": "Scaling",
        "reason": "ScalingReplicaSet",
        "regarding": {"kind": "Deployment", "name": "web"},
        "note": "Scaled up replica set web-5d8f to 3",
        "type": "Normal",
    });
    assert_eq!(
        row_cells("events.k8s.io", "Event", &event, now()),
        vec![
            json!("60s"),
            json!("Normal"),
            json!("ScalingReplicaSet"),
            json!("deployment/web"),
            json!(""),
            json!("deployment-controller"),
            json!("Scaled up replica set web-5d8f to 3"),
            json!("9m59s"),
            json!(4),
            json!("web.18a"),
        ]
    );
    let singleton = json!({"metadata": {"name": "x"}, "regarding": {"kind": "Node"}});
    assert_eq!(
        shown("events.k8s.io", "Event", &singleton, "Count"),
        json!(1)
    );
    assert_eq!(
        shown("events.k8s.io", "Event", &singleton, "Object"),
        json!("node")
    );
    assert_eq!(
        shown("events.k8s.io", "Event", &singleton, "Last Seen"),
        json!("<unknown>")
    );
}

#[test]
fn bound_volume_and_claim_show_capacity_modes_and_class() {
    let pv = json!({
        "metadata": meta("pv-1"),
        "spec": {"capacity": {"storage": "10240Mi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                 "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "standard"},
        "status": {"phase": "Bound"},
    });
    assert_eq!(
        row_cells("", "PersistentVolume", &pv, now()),
        vec![
            json!("pv-1"),
            json!("10Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("standard"),
            json!("<unset>"),
            json!(""),
            json!("10m"),
            json!("Filesystem"),
        ]
    );
    let pvc = json!({
        "metadata": meta("data"),
        "spec": {"volumeName": "pv-1", "storageClassName": "standard", "volumeMode": "Block",
                 "resources": {"requests": {"storage": "5Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]},
    });
    assert_eq!(
        row_cells("", "PersistentVolumeClaim", &pvc, now()),
        vec![
            json!("data"),
            json!("Bound"),
            json!("pv-1"),
            json!("10Gi"),
            json!("RWO"),
            json!("standard"),
            json!("<unset>"),
            json!("10m"),
            json!("Block"),
        ]
    );
}

#[test]
fn pending_claim_shows_no_capacity_and_deleted_one_terminating() {
    let mut pvc =
        json!({"metadata": meta("data"), "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
    assert_eq!(
        row_cells("", "PersistentVolumeClaim", &pvc, now())[1..6],
        [json!("Pending"), json!(""), json!(""), json!(""), json!("")]
    );
    pvc["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(
        shown("", "PersistentVolumeClaim", &pvc, "Status"),
        json!("Terminating")
    );
}

#[test]
fn default_storage_class_is_marked_default() {
    let sc = json!({
        "metadata": {"name": "standard", "creationTimestamp": ago(90),
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    assert_eq!(
        row_cells("storage.k8s.io", "StorageClass", &sc, now()),
        vec![
            json!("standard (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("90s"),
        ]
    );
}

#[test]
fn resource_quota_splits_requests_and_limits() {
    let quota = json!({
        "metadata": meta("compute"),
        "status": {
            "hard": {"requests.cpu": "2", "limits.memory": "4096Mi", "pods": "10", "limits.cpu": "4"},
            "used": {"requests.cpu": "500m", "limits.memory": "1Gi", "pods": "3"},
        },
    });
    assert_eq!(
        row_cells("", "ResourceQuota", &quota, now()),
        vec![
            json!("compute"),
            json!("pods: 3/10, requests.cpu: 500m/2"),
            json!("limits.cpu: 0/4, limits.memory: 1Gi/4Gi"),
            json!("10m"),
        ]
    );
}

#[test]
fn lease_priority_class_and_bindings() {
    let lease = json!({"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_abc"}});
    assert_eq!(
        row_cells("coordination.k8s.io", "Lease", &lease, now()),
        vec![json!("kube-scheduler"), json!("cp-1_abc"), json!("10m")]
    );
    let pc = json!({"metadata": meta("system-cluster-critical"), "value": 2000000000, "globalDefault": false});
    assert_eq!(
        row_cells("scheduling.k8s.io", "PriorityClass", &pc, now()),
        vec![
            json!("system-cluster-critical"),
            json!(2000000000),
            json!(false),
            json!("10m"),
            json!("PreemptLowerPriority"),
        ]
    );
    assert_eq!(
        names("scheduling.k8s.io", "PriorityClass"),
        ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    );
    let rb = json!({
        "metadata": meta("admins"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}, {"kind": "User", "name": "bob"},
        ],
    });
    assert_eq!(
        row_cells(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            &rb,
            now()
        ),
        vec![
            json!("admins"),
            json!("ClusterRole/admin"),
            json!("10m"),
            json!("alice, bob"),
            json!("ops"),
            json!("tools/ci"),
        ]
    );
    let wide: Vec<String> = column_definitions("rbac.authorization.k8s.io", "RoleBinding")
        .into_iter()
        .filter(|c| c.priority == 1)
        .map(|c| c.name)
        .collect();
    assert_eq!(wide, ["Users", "Groups", "ServiceAccounts"]);
}

#[test]
fn roles_and_limit_ranges_use_the_default_name_and_created_at_columns() {
    for (group, kind) in [
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("", "LimitRange"),
        ("example.com", "Widget"),
    ] {
        let columns = column_definitions(group, kind);
        assert_eq!(names(group, kind), ["Name", "Created At"], "{kind}");
        assert_eq!(columns[1].value_type, "date");
    }
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-04-30T08:15:00Z"}});
    assert_eq!(
        row_cells("rbac.authorization.k8s.io", "Role", &role, now()),
        vec![json!("reader"), json!("2024-04-30T08:15:00Z")]
    );
    let undated = json!({"metadata": {"name": "x"}});
    assert_eq!(
        row_cells("", "LimitRange", &undated, now())[1],
        json!("0001-01-01T00:00:00Z")
    );
}

#[test]
fn component_status_and_pod_template() {
    let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [
        {"type": "Healthy", "status": "True", "message": "ok"}
    ]});
    assert_eq!(
        row_cells("", "ComponentStatus", &cs, now()),
        vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
    );
    let pt = json!({"metadata": meta("tpl"), "template": {
        "metadata": {"labels": {"b": "2", "a": "1"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }});
    assert_eq!(
        row_cells("", "PodTemplate", &pt, now()),
        vec![json!("tpl"), json!("app"), json!("nginx"), json!("a=1,b=2")]
    );
    assert_eq!(
        names("", "PodTemplate"),
        ["Name", "Containers", "Images", "Pod Labels"]
    );
}

#[test]
fn ingress_shows_class_hosts_address_and_ports() {
    let ing = json!({
        "metadata": meta("web"),
        "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                 "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}},
    });
    assert_eq!(
        row_cells("networking.k8s.io", "Ingress", &ing, now()),
        vec![
            json!("web"),
            json!("nginx"),
            json!("a.example.com,b.example.com"),
            json!("203.0.113.7"),
            json!("80, 443"),
            json!("10m"),
        ]
    );
}

#[test]
fn admission_policies_show_their_validations_and_param_kind() {
    const G: &str = "admissionregistration.k8s.io";
    assert_eq!(
        names(G, "ValidatingAdmissionPolicy"),
        ["Name", "Validations", "ParamKind", "Age"]
    );
    let policy = json!({"metadata": meta("replica-limit"), "spec": {
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "validations": [{"expression": "true"}, {"expression": "1 == 1"}]}});
    assert_eq!(
        row_cells(G, "ValidatingAdmissionPolicy", &policy, now()),
        vec![
            json!("replica-limit"),
            json!(2),
            json!("v1/ConfigMap"),
            json!("10m")
        ]
    );
    let bare = json!({"metadata": meta("p"), "spec": {}});
    assert_eq!(
        shown(G, "ValidatingAdmissionPolicy", &bare, "ParamKind"),
        json!("<unset>")
    );
    assert_eq!(
        names(G, "ValidatingAdmissionPolicyBinding"),
        ["Name", "PolicyName", "ParamRef", "Age"]
    );
    let binding = |param_ref: Value| json!({"metadata": meta("b"), "spec": {"policyName": "replica-limit", "paramRef": param_ref}});
    for (param_ref, want) in [
        (
            json!({"name": "limits", "namespace": "apps"}),
            "apps/limits",
        ),
        (json!({"name": "limits"}), "*/limits"),
        (
            json!({"selector": {"matchLabels": {"tier": "web"}}}),
            "tier=web",
        ),
        (Value::Null, "<unset>"),
    ] {
        assert_eq!(
            row_cells(
                G,
                "ValidatingAdmissionPolicyBinding",
                &binding(param_ref),
                now()
            ),
            vec![
                json!("b"),
                json!("replica-limit"),
                json!(want),
                json!("10m")
            ]
        );
    }
}
