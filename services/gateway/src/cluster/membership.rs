//! Membership: the task that heartbeats this node into the Store and keeps its view of the live nodes current.
//!
//! ```text
//! let membership = edge.join_cluster().await?;   // first heartbeat, then one every heartbeat_interval
//! ...
//! membership.leave().await;                      // SIGTERM: peers take this node's devices at once
//! ```
//!
//! Each heartbeat registers the node until `now + node_ttl` and returns the
//! live nodes. When a node disappears from that list (it left, or stopped
//! heartbeating), the sessions it held are orphans: this node adopts the open
//! sessions whose device it now owns, so their expiry still runs even if the
//! device never comes back. A heartbeat that fails (the store is down) keeps
//! the last view; `/readyz` turns 503 once none got through for a node TTL.

use std::sync::Arc;
use std::time::Duration;

use omadm_core::clock;
use omadm_core::metrics::metrics;
use omadm_core::store::{Store, StoreError};
use tokio::sync::oneshot;

use super::Cluster;
use crate::device::DeviceEdge;

/// The running heartbeat task of this node.
pub struct Membership {
    cluster: Arc<Cluster>,
    store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<actix_web::rt::task::JoinHandle<()>>,
}

impl Membership {
    /// Heartbeats once (so the view is current before the node serves), then every interval.
    /// Must be called within the actix system: orphaned sessions get actors on this arbiter.
    pub(crate) async fn start(
        cluster: Arc<Cluster>,
        store: Arc<dyn Store>,
        edge: DeviceEdge,
    ) -> Result<Membership, StoreError> {
        let nodes = heartbeat(&cluster, store.as_ref()).await?;
        cluster.apply_heartbeat(nodes);
        cluster.set_membership_running(true);
        tracing::info!(node_id = cluster.node_id(), live_nodes = cluster.live_nodes().len(), "joined the cluster");
        let (stop, stopped) = oneshot::channel();
        let task = actix_web::rt::spawn(beat(Arc::clone(&cluster), Arc::clone(&store), edge, stopped));
        Ok(Membership { cluster, store, stop: Some(stop), task: Some(task) })
    }

    /// Stops heartbeating and removes this node from the live nodes at once (graceful shutdown).
    pub async fn leave(mut self) {
        self.stop_task().await;
        let node_id = self.cluster.node_id().to_owned();
        match tokio::time::timeout(self.cluster.config().node_ttl, self.store.leave(&node_id)).await {
            Ok(Ok(())) => tracing::info!(node_id, "left the cluster"),
            Ok(Err(error)) => tracing::warn!(%error, "could not leave the cluster; peers notice within a node TTL"),
            Err(_) => tracing::warn!("leaving the cluster timed out; peers notice within a node TTL"),
        }
    }

    /// Stops heartbeating without leaving, as a killed process would: peers notice within a node TTL.
    pub async fn abandon(mut self) {
        self.stop_task().await;
    }

    async fn stop_task(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.cluster.set_membership_running(false);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One heartbeat, bounded by the node TTL (a hung store must not look like a live one).
async fn heartbeat(cluster: &Cluster, store: &dyn Store) -> Result<Vec<omadm_core::cluster::NodeInfo>, StoreError> {
    let config = cluster.config();
    let ttl = u64::try_from(config.node_ttl.as_millis()).unwrap_or(u64::MAX);
    let beat = store.heartbeat(cluster.me(), ttl, clock::now_millis());
    match tokio::time::timeout(config.node_ttl, beat).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!("heartbeat not answered within {} ms", ttl))),
    }
}

async fn beat(cluster: Arc<Cluster>, store: Arc<dyn Store>, edge: DeviceEdge, mut stopped: oneshot::Receiver<()>) {
    let interval = cluster.config().heartbeat_interval.max(Duration::from_millis(10));
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stopped => return,
        }
        match heartbeat(&cluster, store.as_ref()).await {
            Ok(nodes) => {
                if failing {
                    tracing::info!("heartbeats get through again");
                    failing = false;
                }
                let left = cluster.apply_heartbeat(nodes);
                if !left.is_empty() {
                    tracing::info!(?left, "nodes left the cluster; adopting the sessions this node now owns");
                    let edge = edge.clone();
                    actix_web::rt::spawn(async move {
                        if let Err(error) = edge.adopt_orphans().await {
                            tracing::warn!(%error, "could not adopt orphaned sessions; the devices' next packages will");
                        }
                    });
                }
            }
            Err(error) => {
                metrics().store_errors.with_label_values(&["heartbeat"]).inc();
                if !failing {
                    tracing::warn!(%error, "heartbeat failed; keeping the last view of the cluster");
                    failing = true;
                }
            }
        }
    }
}
