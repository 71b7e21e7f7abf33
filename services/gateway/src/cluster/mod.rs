//! Cluster mode of the gateway: this node's view of the live nodes, who owns a device or an outbox shard, and health.
//!
//! Every node heartbeats into the Store ([`membership`]) and keeps the list
//! of live nodes it gets back. The owner of a device is the rendezvous owner
//! of its id among those nodes ([`omadm_core::cluster::rendezvous_owner`]):
//! every node computes the same answer from the same membership. A node that
//! cannot be reached when a request is forwarded to it is *suspect*: left
//! out of this node's view until it has had a node TTL to heartbeat again,
//! so this node takes its devices over meanwhile (the lease and the fence of
//! the Store make that safe). A single node (`omadm serve`) is a cluster of
//! one: it owns everything and never forwards. See docs/cluster.md.

pub mod forward;
pub mod membership;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use omadm_core::bus::relay::ShardOwnership;
use omadm_core::clock::Millis;
use omadm_core::cluster::{LeaseRequest, NodeInfo, rendezvous_owner};
use omadm_core::metrics::metrics;
use rand::Rng as _;

pub use forward::{Forwarder, INTERNAL_TOKEN_HEADER};
pub use membership::Membership;

/// How this node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Unique per process (see [`random_node_id`]) unless the operator names it.
    pub node_id: String,
    /// Base URL of this node's internal listener as peers reach it (`http://10.0.0.7:8081`);
    /// empty when the node has none, and then peers never forward to it.
    pub internal_url: String,
    /// Shared secret peers put in [`INTERNAL_TOKEN_HEADER`]; the internal listener refuses requests without it.
    pub internal_token: String,
    /// How often the node heartbeats into the Store.
    pub heartbeat_interval: Duration,
    /// A node that has not heartbeated for this long is not alive any more.
    pub node_ttl: Duration,
    /// A device's session lease lasts this long after the last load or commit that renewed it.
    pub lease_ttl: Duration,
    /// A forwarded request must be answered within this time, else the owner counts as unreachable.
    pub forward_timeout: Duration,
    /// The store admits this process only (the embedded engine locks its file): the node is the whole
    /// cluster whatever the heartbeats say, so a restart does not wait for its previous life's registration to lapse.
    pub sole_process: bool,
}

impl ClusterConfig {
    /// A node of its own: random id, no internal listener, default timings.
    pub fn single_node() -> ClusterConfig {
        ClusterConfig {
            node_id: random_node_id(),
            internal_url: String::new(),
            internal_token: String::new(),
            heartbeat_interval: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            forward_timeout: Duration::from_secs(10),
            sole_process: true,
        }
    }
}

/// `node-` and 64 random bits in hex: a fresh id per process, so a restarted
/// node never inherits the leases of its previous life.
pub fn random_node_id() -> String {
    format!("node-{}", hex::encode(rand::rng().random::<[u8; 8]>()))
}

/// Where a device request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node handles it.
    Here,
    /// Another live node owns the device: forward to it.
    Forward(NodeInfo),
}

/// This node's membership and view of the cluster, shared by the device edge, the relay and `/readyz`.
pub struct Cluster {
    config: ClusterConfig,
    me: NodeInfo,
    view: Mutex<View>,
    forwarder: Forwarder,
}

#[derive(Default)]
struct View {
    /// The nodes of the last successful heartbeat (this node included).
    nodes: Vec<NodeInfo>,
    /// Nodes that did not answer a forwarded request, with when that happened.
    suspects: HashMap<String, Instant>,
    /// When this node's last heartbeat was accepted; `None` before the first one.
    last_heartbeat: Option<Instant>,
    /// Whether a membership task runs (else heartbeats do not count for readiness).
    membership_running: bool,
    /// Outbox shards that refused a commit as full, with the length they had then.
    full_shards: HashMap<u32, u64>,
    /// Which shards this node owns, computed for the live node ids they were computed for
    /// (the relay asks for every shard at each sweep: 16,384 on Redis Cluster).
    shard_owners: (Vec<String>, HashMap<u32, bool>),
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Cluster {
        let me = NodeInfo { id: config.node_id.clone(), internal_url: config.internal_url.clone() };
        let forwarder = Forwarder::new(&config);
        let view = View { nodes: vec![me.clone()], ..View::default() };
        Cluster { config, me, view: Mutex::new(view), forwarder }
    }

    /// A node of its own (`omadm serve`, tests): it owns every device.
    pub fn single_node() -> Cluster {
        Cluster::new(ClusterConfig::single_node())
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn node_id(&self) -> &str {
        &self.me.id
    }

    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    pub(crate) fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // A poisoned view only means a thread panicked mid-update; the data is still usable.
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a suspect stays out of the view: a node TTL for it to heartbeat again, plus one
    /// heartbeat interval for this node to have seen that.
    fn suspicion(&self) -> Duration {
        self.config.node_ttl + self.config.heartbeat_interval
    }

    /// The nodes this node believes alive, itself always included, ordered by id.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        let mut view = self.view();
        self.live_nodes_of(&mut view)
    }

    fn live_nodes_of(&self, view: &mut View) -> Vec<NodeInfo> {
        let suspicion = self.suspicion();
        view.suspects.retain(|_, since| since.elapsed() < suspicion);
        let mut nodes: Vec<NodeInfo> =
            view.nodes.iter().filter(|node| !view.suspects.contains_key(&node.id)).cloned().collect();
        if !nodes.iter().any(|node| node.id == self.me.id) {
            nodes.push(self.me.clone());
        }
        nodes.sort_by(|left, right| left.id.cmp(&right.id));
        nodes
    }

    /// A live node by id (not this one).
    pub fn peer(&self, node_id: &str) -> Option<NodeInfo> {
        self.live_nodes().into_iter().find(|node| node.id == node_id && node.id != self.me.id)
    }

    /// The live node that should own `key` (a device id, or `shard:{n}`).
    pub fn owner_of(&self, key: &str) -> NodeInfo {
        let nodes = self.live_nodes();
        rendezvous_owner(&nodes, key).cloned().unwrap_or_else(|| self.me.clone())
    }

    /// Where a request of `device_id` goes: here, or to its owner when that is a peer one can forward to.
    pub fn route(&self, device_id: &str) -> Route {
        let owner = self.owner_of(device_id);
        if owner.id == self.me.id || owner.internal_url.is_empty() { Route::Here } else { Route::Forward(owner) }
    }

    /// Whether this node relays outbox shard `shard`.
    pub fn owns_shard(&self, shard: u32) -> bool {
        let mut view = self.view();
        let nodes = self.live_nodes_of(&mut view);
        if view.shard_owners.0.len() != nodes.len()
            || view.shard_owners.0.iter().zip(&nodes).any(|(known, node)| *known != node.id)
        {
            view.shard_owners = (nodes.iter().map(|node| node.id.clone()).collect(), HashMap::new());
        }
        if let Some(owned) = view.shard_owners.1.get(&shard) {
            return *owned;
        }
        let owned = rendezvous_owner(&nodes, &format!("shard:{shard}")).is_none_or(|owner| owner.id == self.me.id);
        view.shard_owners.1.insert(shard, owned);
        owned
    }

    /// The relay's view of [`Cluster::owns_shard`], following membership as it changes.
    pub fn shard_ownership(self: &Arc<Self>) -> ShardOwnership {
        let cluster = Arc::clone(self);
        ShardOwnership::new(move |shard| cluster.owns_shard(shard))
    }

    /// What this node asks the Store for when it loads a device for a session step.
    pub fn lease_request(&self, now: Millis) -> LeaseRequest {
        LeaseRequest {
            node_id: self.me.id.clone(),
            ttl: duration_millis(self.config.lease_ttl),
            live_nodes: self.live_nodes().into_iter().map(|node| node.id).collect(),
            now,
        }
    }

    /// The lease TTL in milliseconds, for the fence of a step.
    pub fn lease_ttl_millis(&self) -> Millis {
        duration_millis(self.config.lease_ttl)
    }

    /// `node_id` did not answer: leave it out of the view for a while (it heartbeats back in by itself).
    pub fn suspect(&self, node_id: &str) {
        if node_id == self.me.id {
            return;
        }
        let mut view = self.view();
        view.suspects.insert(node_id.to_owned(), Instant::now());
        let live = view.nodes.iter().filter(|node| !view.suspects.contains_key(&node.id)).count().max(1);
        metrics().live_nodes.set(i64::try_from(live).unwrap_or(i64::MAX));
        tracing::warn!(node_id, "peer unreachable: suspect until it heartbeats again");
    }

    /// Takes the node list of an accepted heartbeat; returns the ids that were live before and are gone now.
    pub(crate) fn apply_heartbeat(&self, mut nodes: Vec<NodeInfo>) -> Vec<String> {
        if self.config.sole_process {
            nodes.retain(|node| node.id == self.me.id);
        }
        if !nodes.iter().any(|node| node.id == self.me.id) {
            nodes.push(self.me.clone());
        }
        let mut view = self.view();
        let now_ids: HashSet<&str> = nodes.iter().map(|node| node.id.as_str()).collect();
        let left: Vec<String> =
            view.nodes.iter().filter(|node| !now_ids.contains(node.id.as_str())).map(|node| node.id.clone()).collect();
        let live = nodes.iter().filter(|node| !view.suspects.contains_key(&node.id)).count();
        metrics().live_nodes.set(i64::try_from(live).unwrap_or(i64::MAX));
        view.nodes = nodes;
        view.last_heartbeat = Some(Instant::now());
        left
    }

    pub(crate) fn set_membership_running(&self, running: bool) {
        self.view().membership_running = running;
    }

    /// Why this node should not get traffic now, if it should not: its heartbeats are not getting through
    /// (its peers are taking its devices over), or its outbox is full.
    pub fn degraded(&self) -> Option<String> {
        let view = self.view();
        if view.membership_running {
            match view.last_heartbeat {
                None => return Some("not joined the cluster yet".to_owned()),
                Some(at) if at.elapsed() > self.config.node_ttl => {
                    return Some(format!("no heartbeat accepted for {} ms", at.elapsed().as_millis()));
                }
                Some(_) => {}
            }
        }
        if !view.full_shards.is_empty() {
            return Some("the outbox is full".to_owned());
        }
        None
    }

    /// A commit was refused because outbox shard `shard` holds `len` events.
    pub(crate) fn outbox_full(&self, shard: u32, len: u64) {
        self.view().full_shards.insert(shard, len);
    }

    /// A commit with events of `shard` went through: it is not full.
    pub(crate) fn outbox_accepted(&self, shard: u32) {
        let mut view = self.view();
        if !view.full_shards.is_empty() {
            view.full_shards.remove(&shard);
        }
    }

    /// The shards known full, with their length when they refused.
    pub(crate) fn full_shards(&self) -> Vec<(u32, u64)> {
        self.view().full_shards.iter().map(|(shard, len)| (*shard, *len)).collect()
    }

    /// After a probe: `shard` is below the length it refused at (the relay drained some).
    pub(crate) fn shard_drained(&self, shard: u32) {
        self.view().full_shards.remove(&shard);
    }
}

fn duration_millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo { id: id.to_owned(), internal_url: format!("http://{id}.internal") }
    }

    fn cluster(id: &str) -> Cluster {
        Cluster::new(ClusterConfig {
            node_id: id.to_owned(),
            internal_url: format!("http://{id}.internal"),
            sole_process: false,
            ..ClusterConfig::single_node()
        })
    }

    #[test]
    fn a_single_node_owns_everything_and_never_forwards() {
        let alone = Cluster::single_node();
        for index in 0..100 {
            assert_eq!(alone.route(&format!("IMEI:{index}")), Route::Here);
        }
        assert!(alone.owns_shard(0));
        assert_eq!(alone.lease_request(7).live_nodes, vec![alone.node_id().to_owned()]);
    }

    #[test]
    fn devices_spread_over_the_live_nodes_and_suspects_are_left_out() {
        let a = cluster("a");
        assert!(a.apply_heartbeat(vec![node("a"), node("b"), node("c")]).is_empty());
        let mut owners = HashMap::new();
        for index in 0..300 {
            let owner = a.owner_of(&format!("IMEI:{index}")).id;
            *owners.entry(owner).or_insert(0) += 1;
        }
        assert_eq!(owners.len(), 3, "{owners:?}");

        let shards_of_a = (0..64).filter(|shard| a.owns_shard(*shard)).count();
        assert!((5..40).contains(&shards_of_a), "{shards_of_a}");
        a.suspect("b");
        assert_eq!(a.live_nodes(), vec![node("a"), node("c")]);
        // b's shards moved: a owns more than before, and the cache followed.
        assert!((0..64).filter(|shard| a.owns_shard(*shard)).count() > shards_of_a);
        for index in 0..300 {
            assert_ne!(a.owner_of(&format!("IMEI:{index}")).id, "b");
        }
        assert_eq!(a.peer("b"), None);
        assert_eq!(a.peer("c"), Some(node("c")));
        // Suspecting oneself is meaningless.
        a.suspect("a");
        assert!(a.live_nodes().contains(&node("a")));
    }

    #[test]
    fn a_sole_process_ignores_other_registrations() {
        let alone = Cluster::single_node();
        alone.apply_heartbeat(vec![node("previous-life"), alone.me().clone()]);
        assert_eq!(alone.live_nodes(), vec![alone.me().clone()]);
    }

    #[test]
    fn nodes_that_leave_are_reported() {
        let a = cluster("a");
        a.apply_heartbeat(vec![node("a"), node("b"), node("c")]);
        assert_eq!(a.apply_heartbeat(vec![node("a"), node("c")]), vec!["b".to_owned()]);
        // The store's answer without this node (its registration raced with a leave) still has it.
        a.apply_heartbeat(vec![node("c")]);
        assert!(a.live_nodes().contains(&node("a")));
    }

    #[test]
    fn readiness_follows_heartbeats_and_full_shards() {
        let a = cluster("a");
        assert_eq!(a.degraded(), None, "no membership task: heartbeats do not count");
        a.set_membership_running(true);
        assert!(a.degraded().is_some());
        a.apply_heartbeat(vec![node("a")]);
        assert_eq!(a.degraded(), None);
        a.outbox_full(3, 10);
        assert_eq!(a.degraded().as_deref(), Some("the outbox is full"));
        assert_eq!(a.full_shards(), vec![(3, 10)]);
        a.outbox_accepted(3);
        assert_eq!(a.degraded(), None);
    }
}
