//! Cluster coordination, pure: who the nodes are, which node owns a device, and the lease that fences its writes.
//!
//! A device's session has one owner at a time. Rendezvous hashing over the
//! live nodes names the preferred owner (so every node computes the same
//! answer from the same membership, and a node leaving moves only its own
//! devices). The owner then holds a lease in the Store: a holder node id and a
//! fencing epoch that rises whenever the lease changes hands. Every write of a
//! session step carries the epoch it was loaded under ([`Fence`]); the Store
//! refuses it when the lease has since moved, so a node that was presumed dead
//! cannot apply a step twice. See docs/cluster.md.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::clock::Millis;

/// A gateway node as it registers itself: its id and where other nodes forward device requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique per process lifetime (a restarted process registers under a new id).
    pub id: String,
    /// Base URL of the node's internal listener, e.g. `http://10.0.0.7:8081`.
    pub internal_url: String,
}

/// The node that should own `key` (a device id) among `nodes`: the one with the
/// highest rendezvous weight. `None` only when `nodes` is empty.
pub fn rendezvous_owner<'a>(nodes: &'a [NodeInfo], key: &str) -> Option<&'a NodeInfo> {
    nodes.iter().max_by_key(|node| (rendezvous_weight(&node.id, key), node.id.as_str()))
}

/// The weight of `node_id` for `key`: the first 8 bytes of SHA-256(node id, 0, key).
pub fn rendezvous_weight(node_id: &str, key: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(node_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    digest.first_chunk::<8>().map_or(0, |first| u64::from_be_bytes(*first))
}

/// What a node asks for when it loads a device for a session step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The asking node.
    pub node_id: String,
    /// How long the lease lasts without a further load or commit renewing it.
    pub ttl: Millis,
    /// The nodes the asker believes alive (itself included). A lease held by a
    /// node not in this list is taken over, with a new epoch.
    pub live_nodes: Vec<String>,
    pub now: Millis,
}

/// A lease the Store granted: `node_id` owns the device's session under `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub device_id: String,
    pub node_id: String,
    /// Rises by one each time the lease is granted to a node that did not hold it.
    pub epoch: u64,
}

/// Carried by a [`crate::store::WriteBatch`] of a session step: the batch is
/// applied only while `node_id` still holds the device's lease under `epoch`
/// (otherwise the commit fails with `StoreError::Fenced` and writes nothing).
/// A successful commit renews the lease for `ttl`, or releases it when `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub device_id: String,
    pub node_id: String,
    pub epoch: u64,
    pub ttl: Millis,
    /// The session ended: the lease is dropped with the commit.
    pub release: bool,
}

impl Fence {
    /// The fence of a step loaded under `lease`.
    pub fn of(lease: &Lease, ttl: Millis, release: bool) -> Fence {
        Fence { device_id: lease.device_id.clone(), node_id: lease.node_id.clone(), epoch: lease.epoch, ttl, release }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[&str]) -> Vec<NodeInfo> {
        ids.iter().map(|id| NodeInfo { id: (*id).to_owned(), internal_url: format!("http://{id}") }).collect()
    }

    #[test]
    fn every_node_computes_the_same_owner_whatever_the_order() {
        let forward = nodes(&["a", "b", "c"]);
        let backward = nodes(&["c", "b", "a"]);
        for index in 0..200 {
            let key = format!("IMEI:{index}");
            assert_eq!(rendezvous_owner(&forward, &key), rendezvous_owner(&backward, &key));
        }
    }

    #[test]
    fn a_leaving_node_moves_only_its_own_devices() {
        let all = nodes(&["a", "b", "c"]);
        let without_b = nodes(&["a", "c"]);
        let mut moved = 0;
        for index in 0..3000 {
            let key = format!("IMEI:{index}");
            let before = rendezvous_owner(&all, &key).map(|node| node.id.clone());
            let after = rendezvous_owner(&without_b, &key).map(|node| node.id.clone());
            if before.as_deref() == Some("b") {
                moved += 1;
            } else {
                assert_eq!(before, after, "{key} moved although its owner stayed");
            }
        }
        // About a third of the devices were b's.
        assert!((800..1200).contains(&moved), "{moved}");
    }

    #[test]
    fn no_nodes_no_owner() {
        assert!(rendezvous_owner(&[], "IMEI:1").is_none());
    }
}
