//! Type checking of decoded objects against the k8s-openapi types, so that a value of
//! the wrong JSON type (`replicas: "three"`) is a 400 like kube-apiserver's decoder
//! gives, not a stored surprise.

use k8s_openapi::api;
use serde_json::Value;

macro_rules! typed {
    ($def:expr, $obj:expr, { $($name:literal => $ty:ty,)* }) => {
        match $def {
            $($name => serde_json::from_value::<$ty>($obj.clone()).map(|_| ()).map_err(|e| e.to_string()),)*
            _ => Ok(()),
        }
    };
}

/// Checks that `obj` deserializes as the type named by `definition`.
pub(crate) fn check(definition: &str, obj: &Value) -> Result<(), String> {
    typed!(definition, obj, {
        "io.k8s.api.core.v1.Namespace" => api::core::v1::Namespace,
        "io.k8s.api.core.v1.Pod" => api::core::v1::Pod,
        "io.k8s.api.core.v1.Service" => api::core::v1::Service,
        "io.k8s.api.core.v1.Endpoints" => api::core::v1::Endpoints,
        "io.k8s.api.core.v1.ConfigMap" => api::core::v1::ConfigMap,
        "io.k8s.api.core.v1.Secret" => api::core::v1::Secret,
        "io.k8s.api.core.v1.ServiceAccount" => api::core::v1::ServiceAccount,
        "io.k8s.api.core.v1.Node" => api::core::v1::Node,
        "io.k8s.api.core.v1.Event" => api::core::v1::Event,
        "io.k8s.api.core.v1.ReplicationController" => api::core::v1::ReplicationController,
        "io.k8s.api.core.v1.PodTemplate" => api::core::v1::PodTemplate,
        "io.k8s.api.core.v1.LimitRange" => api::core::v1::LimitRange,
        "io.k8s.api.core.v1.ResourceQuota" => api::core::v1::ResourceQuota,
        "io.k8s.api.core.v1.PersistentVolume" => api::core::v1::PersistentVolume,
        "io.k8s.api.core.v1.PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim,
        "io.k8s.api.apps.v1.Deployment" => api::apps::v1::Deployment,
        "io.k8s.api.apps.v1.ReplicaSet" => api::apps::v1::ReplicaSet,
        "io.k8s.api.apps.v1.StatefulSet" => api::apps::v1::StatefulSet,
        "io.k8s.api.apps.v1.DaemonSet" => api::apps::v1::DaemonSet,
        "io.k8s.api.apps.v1.ControllerRevision" => api::apps::v1::ControllerRevision,
        "io.k8s.api.batch.v1.Job" => api::batch::v1::Job,
        "io.k8s.api.batch.v1.CronJob" => api::batch::v1::CronJob,
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler,
        "io.k8s.api.policy.v1.PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget,
        "io.k8s.api.coordination.v1.Lease" => api::coordination::v1::Lease,
        "io.k8s.api.discovery.v1.EndpointSlice" => api::discovery::v1::EndpointSlice,
        "io.k8s.api.events.v1.Event" => api::events::v1::Event,
        "io.k8s.api.scheduling.v1.PriorityClass" => api::scheduling::v1::PriorityClass,
        "io.k8s.api.rbac.v1.Role" => api::rbac::v1::Role,
        "io.k8s.api.rbac.v1.ClusterRole" => api::rbac::v1::ClusterRole,
        "io.k8s.api.rbac.v1.RoleBinding" => api::rbac::v1::RoleBinding,
        "io.k8s.api.rbac.v1.ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding,
        "io.k8s.api.storage.v1.StorageClass" => api::storage::v1::StorageClass,
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition" => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_where_an_integer_belongs_is_refused() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!(check("io.k8s.api.apps.v1.Deployment", &d).is_err());
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}});
        assert!(check("io.k8s.api.core.v1.ConfigMap", &ok).is_ok());
    }
}
