//! The rule sets of the larger default roles (Kubernetes' v1.33 bootstrap policy),
//! and the union of the `system:controller:*` roles Skiff's controller manager needs.

use super::*;

pub(super) fn aggregate_to_edit() -> Vec<R> {
    vec![
        rule(READ).groups(&[CORE]).resources(&[
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "secrets",
            "services/proxy",
        ]),
        rule(&["impersonate"])
            .groups(&[CORE])
            .resources(&["serviceaccounts"]),
        rule(WRITE).groups(&[CORE]).resources(&[
            "pods",
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
        ]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["pods/eviction"]),
        rule(WRITE).groups(&[CORE]).resources(&[
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["serviceaccounts/token"]),
        rule(WRITE).groups(&[APPS]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ]),
        rule(WRITE)
            .groups(&[AUTOSCALING])
            .resources(&["horizontalpodautoscalers"]),
        rule(WRITE)
            .groups(&[BATCH])
            .resources(&["cronjobs", "jobs"]),
        rule(WRITE).groups(&[EXTENSIONS]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "ingresses",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicationcontrollers/scale",
        ]),
        rule(WRITE)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets"]),
        rule(WRITE)
            .groups(&[NETWORKING])
            .resources(&["ingresses", "networkpolicies"]),
        rule(READ_WRITE)
            .groups(&[COORDINATION])
            .resources(&["leases"]),
    ]
}

pub(super) fn aggregate_to_view() -> Vec<R> {
    vec![
        rule(READ).groups(&[CORE]).resources(&[
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ]),
        rule(READ).groups(&[CORE]).resources(&[
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ]),
        rule(READ).groups(&[CORE]).resources(&["namespaces"]),
        rule(READ)
            .groups(&[DISCOVERY])
            .resources(&["endpointslices"]),
        rule(READ).groups(&[APPS]).resources(&[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ]),
        rule(READ).groups(&[AUTOSCALING]).resources(&[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ]),
        rule(READ).groups(&[BATCH]).resources(&[
            "cronjobs",
            "cronjobs/status",
            "jobs",
            "jobs/status",
        ]),
        rule(READ).groups(&[EXTENSIONS]).resources(&[
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "ingresses",
            "ingresses/status",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "replicationcontrollers/scale",
        ]),
        rule(READ)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ).groups(&[NETWORKING]).resources(&[
            "ingresses",
            "ingresses/status",
            "networkpolicies",
        ]),
    ]
}

pub(super) fn kube_controller_manager() -> Vec<R> {
    vec![
        events_rule(),
        rule(&["create"])
            .groups(&[COORDINATION])
            .resources(&["leases"]),
        rule(&["get", "update"])
            .groups(&[COORDINATION])
            .resources(&["leases"])
            .names(&["kube-controller-manager"]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["secrets", "serviceaccounts"]),
        rule(&["delete"]).groups(&[CORE]).resources(&["secrets"]),
        rule(&["get"]).groups(&[CORE]).resources(&[
            "configmaps",
            "namespaces",
            "secrets",
            "serviceaccounts",
        ]),
        rule(&["update"])
            .groups(&[CORE])
            .resources(&["secrets", "serviceaccounts"]),
        rule(&["create"])
            .groups(&[AUTHENTICATION])
            .resources(&["tokenreviews"]),
        rule(&["create"])
            .groups(&[AUTHORIZATION])
            .resources(&["subjectaccessreviews"]),
        rule(&["list", "watch"]).groups(&["*"]).resources(&["*"]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["serviceaccounts/token"]),
    ]
}

pub(super) fn kube_scheduler() -> Vec<R> {
    vec![
        events_rule(),
        rule(&["create"])
            .groups(&[COORDINATION])
            .resources(&["leases"]),
        rule(&["get", "update"])
            .groups(&[COORDINATION])
            .resources(&["leases"])
            .names(&["kube-scheduler"]),
        rule(READ).groups(&[CORE]).resources(&["nodes"]),
        rule(&["delete", "get", "list", "watch"])
            .groups(&[CORE])
            .resources(&["pods"]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["bindings", "pods/binding"]),
        rule(&["patch", "update"])
            .groups(&[CORE])
            .resources(&["pods/status"]),
        rule(READ)
            .groups(&[CORE])
            .resources(&["replicationcontrollers", "services"]),
        rule(READ)
            .groups(&[APPS, EXTENSIONS])
            .resources(&["replicasets"]),
        rule(READ).groups(&[APPS]).resources(&["statefulsets"]),
        rule(READ)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets"]),
        rule(READ)
            .groups(&[CORE])
            .resources(&["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["create"])
            .groups(&[AUTHENTICATION])
            .resources(&["tokenreviews"]),
        rule(&["create"])
            .groups(&[AUTHORIZATION])
            .resources(&["subjectaccessreviews"]),
        rule(READ).groups(&[STORAGE]).resources(&["csinodes"]),
        rule(READ).groups(&[CORE]).resources(&["namespaces"]),
        rule(READ).groups(&[STORAGE]).resources(&["csidrivers"]),
        rule(READ)
            .groups(&[STORAGE])
            .resources(&["csistoragecapacities"]),
    ]
}

/// The `system:controller:*` roles of the controllers Skiff's controller manager runs
/// (Kubernetes' rules for each, in one role), and the service load balancer status
/// (the service controller's role).
pub(super) fn skiff_controller_manager() -> Vec<R> {
    let cr = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        // namespace-controller
        rule(&["delete", "get", "list", "watch"])
            .groups(&[CORE])
            .resources(&["namespaces"]),
        rule(&["update"])
            .groups(&[CORE])
            .resources(&["namespaces/finalize", "namespaces/status"]),
        rule(&["delete", "deletecollection", "get", "list", "watch"])
            .groups(&["*"])
            .resources(&["*"]),
        // generic-garbage-collector
        rule(&["delete", "get", "list", "patch", "update", "watch"])
            .groups(&["*"])
            .resources(&["*"]),
        // service-account-controller
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["serviceaccounts"]),
        // root-ca-cert-publisher
        rule(&["create", "update"])
            .groups(&[CORE])
            .resources(&["configmaps"]),
        // replicaset-controller, replication-controller, deployment-controller
        rule(&["get", "list", "update", "watch"])
            .groups(&[APPS, EXTENSIONS])
            .resources(&["replicasets", "deployments"]),
        rule(&["update"]).groups(&[APPS, EXTENSIONS]).resources(&[
            "replicasets/status",
            "replicasets/finalizers",
            "deployments/status",
            "deployments/finalizers",
        ]),
        rule(cr)
            .groups(&[APPS, EXTENSIONS])
            .resources(&["replicasets"]),
        rule(&["get", "list", "update", "watch"])
            .groups(&[CORE])
            .resources(&["replicationcontrollers"]),
        rule(&["update"]).groups(&[CORE]).resources(&[
            "replicationcontrollers/status",
            "replicationcontrollers/finalizers",
        ]),
        rule(&[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ])
        .groups(&[CORE])
        .resources(&["pods"]),
        // statefulset-controller, daemon-set-controller
        rule(READ)
            .groups(&[APPS, EXTENSIONS])
            .resources(&["statefulsets", "daemonsets"]),
        rule(&["update"]).groups(&[APPS, EXTENSIONS]).resources(&[
            "statefulsets/status",
            "statefulsets/finalizers",
            "daemonsets/status",
            "daemonsets/finalizers",
        ]),
        rule(cr).groups(&[APPS]).resources(&["controllerrevisions"]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["pods/binding"]),
        rule(&["update"])
            .groups(&[CORE])
            .resources(&["pods/finalizers"]),
        rule(&["create", "delete", "get", "list", "update", "watch"])
            .groups(&[CORE])
            .resources(&["persistentvolumeclaims"]),
        // job-controller, cronjob-controller, ttl-after-finished-controller
        rule(&["delete", "get", "list", "patch", "update", "watch"])
            .groups(&[BATCH])
            .resources(&["jobs"]),
        rule(&["create"]).groups(&[BATCH]).resources(&["jobs"]),
        rule(&["update"])
            .groups(&[BATCH])
            .resources(&["jobs/status", "jobs/finalizers"]),
        rule(&["get", "list", "update", "watch"])
            .groups(&[BATCH])
            .resources(&["cronjobs"]),
        rule(&["update"])
            .groups(&[BATCH])
            .resources(&["cronjobs/status", "cronjobs/finalizers"]),
        // endpoint-controller, endpointslice-controller
        rule(READ).groups(&[CORE]).resources(&["services", "nodes"]),
        rule(&["create", "delete", "get", "list", "update", "watch"])
            .groups(&[CORE])
            .resources(&["endpoints"]),
        rule(&["create"])
            .groups(&[CORE])
            .resources(&["endpoints/restricted"]),
        rule(&["update"])
            .groups(&[CORE])
            .resources(&["services/finalizers"]),
        rule(&["create", "delete", "get", "list", "update", "watch"])
            .groups(&[DISCOVERY])
            .resources(&["endpointslices"]),
        // node-controller (node IPAM and lifecycle), pod-garbage-collector
        rule(&["delete", "get", "list", "patch", "update", "watch"])
            .groups(&[CORE])
            .resources(&["nodes"]),
        rule(&["patch", "update"])
            .groups(&[CORE])
            .resources(&["nodes/status", "pods/status"]),
        // disruption-controller, horizontal-pod-autoscaler
        rule(READ)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets"]),
        rule(&["update"])
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets/status"]),
        rule(&["get", "update"])
            .groups(&["*"])
            .resources(&["*/scale"]),
        rule(READ)
            .groups(&[AUTOSCALING])
            .resources(&["horizontalpodautoscalers"]),
        rule(&["update"])
            .groups(&[AUTOSCALING])
            .resources(&["horizontalpodautoscalers/status"]),
        rule(&["list", "watch"])
            .groups(&["metrics.k8s.io"])
            .resources(&["pods"]),
        rule(READ)
            .groups(&["custom.metrics.k8s.io", "external.metrics.k8s.io"])
            .resources(&["*"]),
        // resourcequota-controller
        rule(&["update"])
            .groups(&[CORE])
            .resources(&["resourcequotas/status"]),
        // persistent-volume-binder, pv-protection-controller, pvc-protection-controller
        rule(&["create", "delete", "get", "list", "update", "watch"])
            .groups(&[CORE])
            .resources(&["persistentvolumes"]),
        rule(&["update"])
            .groups(&[CORE])
            .resources(&["persistentvolumes/status", "persistentvolumeclaims/status"]),
        rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]),
        rule(&["watch"]).groups(&[CORE]).resources(&["events"]),
        // service-controller (LoadBalancer status)
        rule(&["patch", "update"])
            .groups(&[CORE])
            .resources(&["services/status"]),
        events_rule(),
    ]
}
