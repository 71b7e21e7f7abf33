//! One gateway node as `omadm serve` and `omadm gateway` run it, and as the cluster tests start it: the wiring
//! and the stop order live here once.
//!
//! ```text
//! let node = Node::start(store, bus, content, settings, NodeListeners { public, internal: Some(internal), ops: None }).await?;
//! let mut plan = ShutdownPlan::new();
//! node.stop_steps(&mut plan);   // readiness 503 -> public, internal drain -> leave cluster -> outbox drained -> ops
//! plan.run().await;
//! ```
//!
//! Start order: join the cluster (so ownership is known), start the outbox relay of the owned shards, recover
//! the open sessions, then open the internal, ops and public listeners.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use omadm_core::bus::Bus;
use omadm_core::bus::relay::{OutboxRelay, RelayConfig};
use omadm_core::content::ContentEngine;
use omadm_core::store::{Store, StoreError};
use omadm_runtime::ops::OpsServer;
use omadm_runtime::shutdown::{Phase, ShutdownPlan};

use crate::cluster::{Cluster, ClusterConfig, Membership};
use crate::device::{DeviceEdge, DeviceEdgeOptions};
use crate::ops::Readiness;
use crate::server::{self, Server, ServerOptions};
use crate::{AppState, GatewayConfig};

/// What a node runs with; the listeners come apart ([`NodeListeners`]) because the caller binds them first, to
/// know the real ports before it builds the public URL.
#[derive(Clone)]
pub struct NodeSettings {
    pub gateway: GatewayConfig,
    pub cluster: ClusterConfig,
    /// Workers and timeouts of the HTTP servers (its `outbox_waker` and `readiness` are the node's own).
    pub server: ServerOptions,
    /// `None`: no outbox relay (events stay in the outbox, as while the broker is down); else its batch and
    /// timing (the shard ownership is the node's own).
    pub relay: Option<RelayConfig>,
}

impl NodeSettings {
    /// The relay settings for `store`: steps wake the shards they wrote at once, so the sweep only finds what a
    /// dead or departed node left behind; on Redis Cluster (thousands of shards) it runs every 2 s, not 4 times a
    /// second.
    pub fn relay_for(store: &dyn Store) -> RelayConfig {
        let poll_interval =
            if store.outbox_shards() > 1 { Duration::from_secs(2) } else { RelayConfig::default().poll_interval };
        RelayConfig { poll_interval, ..RelayConfig::default() }
    }
}

/// The node's bound listeners: devices and the API (public), peers (internal), Prometheus and probes (ops).
pub struct NodeListeners {
    pub public: TcpListener,
    pub internal: Option<TcpListener>,
    pub ops: Option<TcpListener>,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot join the cluster: {0}")]
    Join(#[source] StoreError),
    #[error("cannot recover the open sessions: {0}")]
    Recover(#[source] StoreError),
    #[error("cannot start the {listener} listener: {source}")]
    Listen {
        listener: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A running node.
pub struct Node {
    edge: DeviceEdge,
    readiness: web::Data<Readiness>,
    public: Server,
    internal: Option<Server>,
    ops: Option<OpsServer>,
    membership: Membership,
    relay: Option<OutboxRelay>,
}

impl Node {
    /// Starts a node on `store`, `bus` and `content` with the listeners already bound.
    pub async fn start(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        content: ContentEngine,
        settings: NodeSettings,
        listeners: NodeListeners,
    ) -> Result<Node, NodeError> {
        let cluster = Arc::new(Cluster::new(settings.cluster));
        let state = web::Data::new(AppState {
            store: Arc::clone(&store),
            bus: Arc::clone(&bus),
            content,
            config: settings.gateway,
        });
        let edge = DeviceEdge::clustered(state.clone(), DeviceEdgeOptions::default(), Arc::clone(&cluster));
        let membership = edge.join_cluster().await.map_err(NodeError::Join)?;
        let relay = settings.relay.map(|relay| {
            let relay = RelayConfig { ownership: cluster.shard_ownership(), ..relay };
            OutboxRelay::spawn_with(Arc::clone(&store), bus, relay)
        });
        edge.recover().await.map_err(NodeError::Recover)?;
        let readiness = web::Data::new(Readiness::new());
        let options = ServerOptions {
            outbox_waker: relay.as_ref().map(OutboxRelay::waker),
            readiness: readiness.clone(),
            ..settings.server
        };
        let listen_error = |listener| move |source| NodeError::Listen { listener, source };
        let internal = match listeners.internal {
            Some(listener) => Some(
                server::run_internal(state.clone(), edge.clone(), listener, options.clone())
                    .await
                    .map_err(listen_error("internal"))?,
            ),
            None => None,
        };
        let ops = match listeners.ops {
            Some(listener) => Some(
                server::run_ops(state.clone(), Some(Arc::clone(&cluster)), listener, &options)
                    .map_err(listen_error("ops"))?,
            ),
            None => None,
        };
        let public =
            server::run(state, edge.clone(), listeners.public, options).await.map_err(listen_error("public"))?;
        Ok(Node { edge, readiness, public, internal, ops, membership, relay })
    }

    pub fn edge(&self) -> &DeviceEdge {
        &self.edge
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        self.edge.cluster()
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr()
    }

    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().map(Server::local_addr)
    }

    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(OpsServer::local_addr)
    }

    /// What `/readyz` reads on every listener of the node; other roles in the process raise conditions here.
    pub fn readiness(&self) -> web::Data<Readiness> {
        self.readiness.clone()
    }

    /// Registers the node's graceful stop in `plan`: readiness 503 (load balancers drain the node), the public
    /// then the internal listener finish what is in flight, the node leaves the cluster (peers take its devices
    /// at once), the outbox is drained to the bus, and the ops listener closes last.
    pub fn stop_steps(self, plan: &mut ShutdownPlan) {
        let Node { edge: _, readiness, public, internal, ops, membership, relay } = self;
        plan.add(Phase::StopAccepting, "readiness", async move { readiness.begin_shutdown() });
        plan.add(Phase::Drain, "public listener", stop_server(public, "public"));
        if let Some(internal) = internal {
            plan.add(Phase::Drain, "internal listener", stop_server(internal, "internal"));
        }
        plan.add(Phase::LeaveCluster, "membership", membership.leave());
        if let Some(relay) = relay {
            plan.add(Phase::FlushBus, "outbox relay", async move {
                match relay.drain().await {
                    Ok(()) => tracing::info!("outbox drained"),
                    Err(error) => tracing::warn!(%error, "outbox not drained; its events stay for the next start"),
                }
                relay.stop().await;
            });
        }
        if let Some(ops) = ops {
            plan.add(Phase::CloseStore, "ops listener", ops.stop());
        }
    }

    /// The graceful stop of [`Node::stop_steps`], alone.
    pub async fn stop(self) {
        let mut plan = ShutdownPlan::new();
        self.stop_steps(&mut plan);
        plan.run().await;
    }

    /// Stops everything at once without leaving the cluster or draining, as SIGKILL would; peers find out by
    /// a refused connection or a lapsed heartbeat.
    pub async fn kill(self) {
        self.membership.abandon().await;
        drop(self.relay);
        for server in [Some(self.public), self.internal].into_iter().flatten() {
            if let Err(error) = server.stop().await {
                tracing::warn!(%error, "a listener did not stop cleanly");
            }
        }
        if let Some(ops) = self.ops {
            ops.stop().await;
        }
    }
}

async fn stop_server(server: Server, listener: &'static str) {
    if let Err(error) = server.stop().await {
        tracing::error!(%error, listener, "a listener did not stop cleanly");
    }
}
