//! The nodeipam controller: gives every Node a pod CIDR (`spec.podCIDR`,
//! `spec.podCIDRs`) carved from the cluster CIDR, once; a deleted node's block is free
//! again (Kubernetes' `pkg/controller/nodeipam/ipam/range_allocator.go`). The set of
//! used blocks is always rebuilt from the node cache, plus allocations written but
//! not seen yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::{Event, EventType, Recorder, Reporter};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::applier;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use serde_json::json;

use crate::informers::itself;
use crate::{Context, Error};

mod cidr;

use cidr::Blocks;

struct State {
    ctx: Arc<Context>,
    blocks: Blocks,
    nodes: Store<Node>,
    /// Blocks written to nodes that the cache may not show yet: node name -> block.
    pending: Mutex<HashMap<String, u64>>,
    recorder: Recorder,
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let blocks = Blocks::new(&ctx.config.cluster_cidr, ctx.config.node_cidr_mask_size)
        .map_err(Error::Invalid)?;
    let nodes = ctx.informers.get::<Node>().await;
    let state = Arc::new(State {
        recorder: Recorder::new(
            ctx.client.clone(),
            Reporter {
                controller: "node-controller".into(),
                instance: None,
            },
        ),
        ctx,
        blocks,
        nodes: nodes.store(),
        pending: Mutex::new(HashMap::new()),
    });
    let store = state.nodes.clone();
    applier(
        |node, state| Box::pin(reconcile(node, state)),
        error_policy,
        state,
        store,
        nodes.trigger(itself),
        kube::runtime::controller::Config::default(),
    )
    .for_each(|_| async {})
    .await;
    Ok(())
}

/// The first free block given the used ones.
fn first_free(blocks: &Blocks, used: &std::collections::HashSet<u64>) -> Option<u64> {
    (0..blocks.len()).find(|i| !used.contains(i))
}

#[tracing::instrument(skip_all, fields(object = node.metadata.name.as_deref().unwrap_or_default()))]
async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    let nodes = state.nodes.state();
    let chosen = {
        let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Forget pending blocks of nodes that are gone or now show their CIDR.
        let waiting: std::collections::HashSet<&str> = nodes
            .iter()
            .filter(|x| x.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none())
            .filter_map(|x| x.metadata.name.as_deref())
            .collect();
        pending.retain(|n, _| waiting.contains(n.as_str()));
        let mut used: std::collections::HashSet<u64> = nodes
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
            .filter_map(|c| state.blocks.index_of(c))
            .collect();
        if has_cidr || node.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        if pending.contains_key(&name) {
            // Written already; wait for the cache to show it.
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        used.extend(pending.values().copied());
        let free = first_free(&state.blocks, &used);
        if let Some(i) = free {
            pending.insert(name.clone(), i);
        }
        free
    };
    let Some(index) = chosen else {
        return exhausted(&state, &node).await;
    };
    let cidr = state.blocks.block(index);
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    tracing::debug!(cidr = %cidr, "allocating pod CIDR");
    let api: Api<Node> = Api::all(state.ctx.client.clone());
    if let Err(e) = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        state
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        return Err(Error::Api {
            context: format!("setting podCIDR of node {name}"),
            source: e,
        });
    }
    Ok(Action::await_change())
}

async fn exhausted(state: &State, node: &Node) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    tracing::warn!(node = %name, cidr = %state.ctx.config.cluster_cidr, "no pod CIDR left for node");
    let _ = state
        .recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "CIDRNotAvailable".into(),
                note: Some(format!("Node {name} status is now: CIDRNotAvailable")),
                action: "AllocateCIDR".into(),
                secondary: None,
            },
            &node.object_ref(&()),
        )
        .await;
    Ok(Action::requeue(Duration::from_secs(30)))
}

fn error_policy(_node: Arc<Node>, err: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(error = %err, "nodeipam reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
