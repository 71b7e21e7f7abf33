//! The device edge: `/dm` and `/dm/s/{sid}` (session actors), `/repo/{path}` and `/bootstrap`.
//!
//! Contract used by the server: [`DeviceEdge::new`], [`DeviceEdge::configure`], [`DeviceEdge::recover`].
//!
//! ```text
//! POST /dm           Package#1, HTTP auth (Basic or Digest) + OMADM-DevID -> Package#2 (CONT /dm/s/{sid} first)
//! POST /dm/s/{sid}   Package#3 (JSON or multipart GET results) + OMADM-DevID -> next Package#2
//! GET  /repo/{path}  operator content, negotiated on Accept, streamed (ETag, Range, If-Range; HEAD too)
//! PUT  /repo/{path}  device upload (HPUT), HTTP auth; POST likewise (HPOST)
//! GET  /bootstrap?DevID=..&MCC=..&MNC=..   DMAcc + DEFAULT commands, HTTP auth
//! POST /push/gcm/register     RegId form (D.2.4), HTTP auth -> 204, the device's RegID stored
//! POST /push/gcm/unregister   RegId form, HTTP auth -> 204, the RegID cleared
//! ```
//!
//! Handlers are thin: they check headers, authenticate, read bounded bodies,
//! parse with omadm-proto, and hand the package to the session driver
//! (`omadm_core::session::driver`) through the session's actor ([`session`]);
//! the driver commits the step's batch before the Package#2 leaves. See docs/device-edge.md.
//!
//! In a cluster ([`DeviceEdge::clustered`]) the same routes forward what
//! belongs to another node (see `dm`), and [`DeviceEdge::configure_internal`]
//! serves them on the internal listener for requests forwarded by peers.

mod authenticate;
mod body;
mod bootstrap;
mod dm;
pub mod push;
mod repository;
mod session;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use omadm_core::clock::Millis;
use omadm_core::locks::KeyedLocks;
use omadm_core::session::driver::{OpenSession, SessionDriver};

use crate::AppState;
use crate::cluster::{Cluster, Membership};

pub use repository::accepts_media_type;

/// Knobs of the device edge that the shared configuration does not carry.
#[derive(Debug, Clone)]
pub struct DeviceEdgeOptions {
    /// A client that takes longer than this to send its body gets 408.
    pub body_read_timeout: Duration,
    /// Digest nonces older than this are stale (the client retries with a fresh one).
    pub nonce_max_age: Millis,
    /// How many recent sessions of a device are searched to tell an ended session (410) from an unknown one (404).
    pub ended_session_lookback: usize,
}

impl Default for DeviceEdgeOptions {
    /// 30 s to send a body, 5 minute nonces, 50 sessions of history.
    fn default() -> Self {
        DeviceEdgeOptions {
            body_read_timeout: Duration::from_secs(30),
            nonce_max_age: 5 * 60 * 1000,
            ended_session_lookback: 50,
        }
    }
}

/// Pokes the outbox relay, when the server gave one (`OutboxWaker` app data), so the events a
/// request just committed reach the bus now rather than at the relay's next poll.
/// The device's record read under its lock (a session step, a push registration and a secret's generation of
/// one device never interleave on a node); 410 when it is no longer registered.
pub(crate) async fn locked_device(
    shared: &EdgeShared,
    device_id: &str,
) -> Result<(tokio::sync::OwnedMutexGuard<()>, omadm_core::model::Device), crate::HttpError> {
    let guard = shared.device_locks.lock(device_id).await;
    let device =
        shared.state.store.get_device(device_id).await.map_err(crate::error::store_failure("get_device"))?.ok_or_else(
            || crate::HttpError::new(actix_web::http::StatusCode::GONE, "the device is no longer registered"),
        )?;
    Ok((guard, device))
}

pub(crate) fn wake_outbox_relay(request: &actix_web::HttpRequest) {
    if let Some(waker) = request.app_data::<omadm_core::bus::relay::OutboxWaker>() {
        waker.wake();
    }
}

/// `/dm/s/{sid}`: a session id that does not percent-decode to valid UTF-8 is 400, never another session's id.
fn session_resource() -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource("/dm/s/{sid}")
        .wrap(actix_web::middleware::from_fn(crate::path::require_utf8_path))
        .route(web::post().to(dm::package3))
}

/// What every device handler and session actor shares, created once per process.
pub(crate) struct EdgeShared {
    pub state: web::Data<AppState>,
    pub options: DeviceEdgeOptions,
    /// Open sessions of this process, by session id.
    pub sessions: Arc<session::SessionRegistry>,
    /// One package (or bootstrap, or expiry) of a device at a time: loads, step and commit never interleave
    /// (the driver takes it for every step).
    pub device_locks: Arc<KeyedLocks>,
    /// This node's view of the cluster (a cluster of one for `omadm serve`).
    pub cluster: Arc<Cluster>,
    /// Pokes the outbox relay with the shard of each event a step commits (set by the server).
    pub outbox_waker: Arc<std::sync::OnceLock<omadm_core::bus::relay::OutboxWaker>>,
    /// Runs every session step over the store.
    pub driver: SessionDriver,
}

/// The device-facing routes and the registry of session actors, created once per process.
#[derive(Clone)]
pub struct DeviceEdge {
    shared: Arc<EdgeShared>,
}

impl DeviceEdge {
    pub fn new(state: web::Data<AppState>) -> Self {
        Self::with_options(state, DeviceEdgeOptions::default())
    }

    /// A node of its own: it owns every device and never forwards.
    pub fn with_options(state: web::Data<AppState>, options: DeviceEdgeOptions) -> Self {
        Self::clustered(state, options, Arc::new(Cluster::single_node()))
    }

    /// A node of `cluster`: requests of devices it does not own go to their owners.
    pub fn clustered(state: web::Data<AppState>, options: DeviceEdgeOptions, cluster: Arc<Cluster>) -> Self {
        let sessions = Arc::new(session::SessionRegistry::default());
        let device_locks = Arc::new(KeyedLocks::default());
        let outbox_waker = Arc::new(std::sync::OnceLock::new());
        let host = session::EdgeHost {
            cluster: cluster.clone(),
            outbox_waker: outbox_waker.clone(),
            sessions: sessions.clone(),
        };
        let driver =
            SessionDriver::new(state.store.clone(), state.config.session.clone(), Arc::new(host), device_locks.clone());
        DeviceEdge {
            shared: Arc::new(EdgeShared { state, options, sessions, device_locks, cluster, outbox_waker, driver }),
        }
    }

    /// This node's view of the cluster.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.shared.cluster
    }

    /// From now on every step that commits events wakes the relay for their shards (the first waker set stays).
    pub fn set_outbox_waker(&self, waker: omadm_core::bus::relay::OutboxWaker) {
        let _ = self.shared.outbox_waker.set(waker);
    }

    /// Registers the device routes (called for every worker).
    pub fn configure(&self, config: &mut web::ServiceConfig) {
        config
            .app_data(web::Data::from(self.shared.clone()))
            .app_data(web::Data::from(self.shared.cluster.clone()))
            .service(web::resource("/dm").route(web::post().to(dm::package1)))
            .service(session_resource())
            .service(
                web::resource("/repo/{path:.+}")
                    .route(web::get().to(repository::download))
                    .route(web::head().to(repository::download))
                    .route(web::put().to(repository::upload))
                    .route(web::post().to(repository::upload)),
            )
            .service(web::resource("/bootstrap").route(web::get().to(bootstrap::bootstrap)))
            .service(web::resource(push::REGISTER_PATH).route(web::post().to(push::register)))
            .service(web::resource(push::UNREGISTER_PATH).route(web::post().to(push::unregister)));
    }

    /// Registers the routes of the internal listener: the DM routes, for requests peers forward here
    /// (the server checks their token first).
    pub fn configure_internal(&self, config: &mut web::ServiceConfig) {
        config
            .app_data(web::Data::from(self.shared.clone()))
            .app_data(web::Data::from(self.shared.cluster.clone()))
            .app_data(crate::cluster::forward::InternalListener)
            .service(web::resource("/dm").route(web::post().to(dm::package1)))
            .service(session_resource());
    }

    /// After a start: re-arms the expiry of every open session whose device this node owns.
    /// Call it from within the actix system (the actors run on the calling arbiter).
    pub async fn recover(&self) -> Result<(), omadm_core::store::StoreError> {
        let adopted = self.adopt_orphans().await?;
        tracing::info!(open_sessions = adopted, "re-armed the expiry of open sessions");
        Ok(())
    }

    /// Starts an actor for every open session whose device this node owns and that has none here,
    /// so its expiry runs even if the device never comes back (after a restart, or when a node left).
    /// An actor whose session turns out to be held by a live peer stops at its first step.
    pub async fn adopt_orphans(&self) -> Result<usize, omadm_core::store::StoreError> {
        let open = self.shared.state.store.open_sessions().await.inspect_err(|_| {
            omadm_core::metrics::metrics().store_errors.with_label_values(&["open_sessions"]).inc();
        })?;
        let me = self.shared.cluster.node_id().to_owned();
        let mut adopted = 0;
        for state in open.into_iter().filter(|state| !state.ended) {
            if self.shared.sessions.get(&state.id).is_some() || self.shared.cluster.owner_of(&state.device_id).id != me
            {
                continue;
            }
            session::SessionRegistry::adopt(&self.shared, OpenSession::rehydrated(state));
            adopted += 1;
        }
        Ok(adopted)
    }

    /// Joins the cluster: a first heartbeat, then the membership task (see [`Membership`]).
    /// Call it from within the actix system, before [`DeviceEdge::recover`].
    pub async fn join_cluster(&self) -> Result<Membership, omadm_core::store::StoreError> {
        Membership::start(self.shared.cluster.clone(), self.shared.state.store.clone(), self.clone()).await
    }

    /// Sessions with a live actor in this process.
    pub fn active_sessions(&self) -> usize {
        self.shared.sessions.len()
    }
}
