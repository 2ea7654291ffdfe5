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
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::informers::{Change, itself};
use crate::{Context, Error};

mod cidr;

use cidr::Blocks;

struct State {
    ctx: Arc<Context>,
    blocks: Blocks,
    nodes: Store<Node>,
    allocations: Mutex<Allocations>,
    recorder: Recorder,
}

/// Which blocks are taken and by which node, kept up to date from node events
/// (a reconcile reads one node, not all of them: with thousands of nodes created at
/// once, rebuilding this from the cache on every event was quadratic).
#[derive(Debug, Default)]
struct Allocations {
    owner: HashMap<u64, String>,
    of_node: HashMap<String, u64>,
    /// No block below this one is free (the search starts here).
    low: u64,
}

impl Allocations {
    /// `node` holds `block` (seen on the node, or just written to it).
    fn record(&mut self, node: &str, block: u64) {
        if let Some(old) = self.of_node.insert(node.to_string(), block)
            && old != block
        {
            self.free(old, node);
        }
        self.owner.insert(block, node.to_string());
    }

    /// Forgets `node`'s block (a write that failed).
    fn release(&mut self, node: &str) {
        if let Some(block) = self.of_node.remove(node) {
            self.free(block, node);
        }
    }

    fn free(&mut self, block: u64, node: &str) {
        if self.owner.get(&block).is_some_and(|o| o == node) {
            self.owner.remove(&block);
            self.low = self.low.min(block);
        }
    }

    /// Frees the blocks of nodes that are gone or now show another block.
    fn sweep(&mut self, holds: &dyn Fn(&str, u64) -> bool) {
        let stale: Vec<(u64, String)> = self
            .owner
            .iter()
            .filter(|(b, n)| !holds(n, **b))
            .map(|(b, n)| (*b, n.clone()))
            .collect();
        for (block, node) in stale {
            self.free(block, &node);
            if self.of_node.get(&node) == Some(&block) {
                self.of_node.remove(&node);
            }
        }
    }

    /// The lowest free block for `node`, recorded as its own. When every block looks
    /// taken, blocks whose node is gone or shows another block (`holds` says) are
    /// swept free first, in case a deletion was missed.
    fn allocate(
        &mut self,
        blocks: &Blocks,
        node: &str,
        holds: &dyn Fn(&str, u64) -> bool,
    ) -> Option<u64> {
        if self.owner.len() as u64 >= blocks.len() {
            self.sweep(holds);
        }
        let mut i = self.low;
        while i < blocks.len() {
            if !self.owner.contains_key(&i) {
                self.low = i + 1;
                self.record(node, i);
                return Some(i);
            }
            i += 1;
        }
        None
    }
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let blocks = Blocks::new(&ctx.config.cluster_cidr, ctx.config.node_cidr_mask_size)
        .map_err(Error::Invalid)?;
    let nodes = ctx.informers.get::<Node>().await;
    nodes.synced().await;
    let store = nodes.store();
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
        nodes: store.clone(),
        allocations: Mutex::new(Allocations::default()),
    });
    // Every node seen (the cached ones first) records its block; a deleted node's
    // block is free again at once, as in Kubernetes' range allocator.
    let _follow = nodes.subscribe({
        let state = state.clone();
        move |change| {
            let mut allocations = state.allocations.lock().unwrap_or_else(|e| e.into_inner());
            match change {
                Change::Applied { obj, .. } => {
                    if let (Some(name), Some(block)) =
                        (obj.metadata.name.as_deref(), block_of(&state.blocks, obj))
                    {
                        allocations.record(name, block);
                    }
                }
                Change::Deleted(obj) => {
                    allocations.release(obj.metadata.name.as_deref().unwrap_or_default());
                }
                Change::Resynced => {}
            }
        }
    });
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

/// The block a node shows in `spec.podCIDR`, when it is one of ours.
fn block_of(blocks: &Blocks, node: &Node) -> Option<u64> {
    let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?;
    blocks.index_of(cidr)
}

#[tracing::instrument(skip_all, fields(object = node.metadata.name.as_deref().unwrap_or_default()))]
async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    let chosen = {
        // A node showing its block was recorded by the informer subscription.
        if has_cidr || node.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let mut allocations = state.allocations.lock().unwrap_or_else(|e| e.into_inner());
        if allocations.of_node.contains_key(&name) {
            // Written already; wait for the cache to show it.
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        let holds = |owner: &str, block: u64| {
            state.nodes.get(&ObjectRef::new(owner)).is_some_and(|n| {
                match n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                    None | Some("") => true,
                    Some(_) => block_of(&state.blocks, &n) == Some(block),
                }
            })
        };
        allocations.allocate(&state.blocks, &name, &holds)
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
            .allocations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(&name);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_go_out_lowest_first_and_a_deleted_nodes_block_comes_back() {
        let blocks = Blocks::new("10.42.0.0/16", 24).expect("valid");
        let mut a = Allocations::default();
        let live = std::cell::RefCell::new(vec!["a", "b"]);
        let holds = |n: &str, _: u64| live.borrow().contains(&n);
        assert_eq!(a.allocate(&blocks, "a", &holds), Some(0));
        assert_eq!(a.allocate(&blocks, "b", &holds), Some(1));
        // Node a is deleted and c created: c gets a's block, not a new one.
        live.borrow_mut().retain(|n| *n != "a");
        a.release("a");
        live.borrow_mut().push("c");
        assert_eq!(a.allocate(&blocks, "c", &holds), Some(0));
        assert_eq!(a.allocate(&blocks, "d", &holds), Some(2));
    }

    #[test]
    fn a_full_range_is_swept_before_giving_up() {
        let blocks = Blocks::new("10.42.0.0/23", 24).expect("valid");
        let mut a = Allocations::default();
        let live = std::cell::RefCell::new(vec!["a", "b"]);
        let holds = |n: &str, _: u64| live.borrow().contains(&n);
        assert_eq!(a.allocate(&blocks, "a", &holds), Some(0));
        assert_eq!(a.allocate(&blocks, "b", &holds), Some(1));
        assert_eq!(
            a.allocate(&blocks, "c", &holds),
            None,
            "two blocks, both held"
        );
        // b is gone but its deletion was not seen: the full range is swept.
        live.borrow_mut().retain(|n| *n != "b");
        live.borrow_mut().push("c");
        assert_eq!(a.allocate(&blocks, "c", &holds), Some(1));
    }
}
