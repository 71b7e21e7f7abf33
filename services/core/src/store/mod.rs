//! The Store: everything the server must not lose, behind one trait with engines chosen by URL.
//!
//! `file:///var/lib/omadm` (or a plain path) opens the embedded engine;
//! `redis://host:port` the Redis engine. Both pass the same conformance suite
//! (`store::conformance`, feature `conformance`; run by `tests/store_embedded.rs` and `tests/store_redis.rs`).
//!
//! Writes that belong together are one [`WriteBatch`], applied atomically: a
//! session step's session state, command outcomes, mirror, alerts and the
//! events they produce (the outbox) land together or not at all.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod embedded;
mod redis;

use async_trait::async_trait;

use crate::bus::Event;
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand, RepositoryItem,
    SessionState, SessionSummary,
};

pub use embedded::EmbeddedStore;
pub use redis::RedisStore;

/// Why a store operation failed. None of these is the caller's fault: the
/// HTTP edge answers 503 and counts them in `omadm_store_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("store is unavailable: {0}")]
    Unavailable(String),
    #[error("unsupported store URL {0:?}")]
    UnsupportedUrl(String),
}

/// Writes applied in one atomic step. Empty fields change nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Devices to create or replace.
    pub devices: Vec<Device>,
    /// Open sessions to create or replace.
    pub sessions: Vec<SessionState>,
    /// Sessions that ended or expired: removed from the open sessions, kept in
    /// the device's session history.
    pub ended_sessions: Vec<SessionSummary>,
    /// Command records to replace (state, status, data...), matched by (device_id, id).
    pub commands: Vec<CommandRecord>,
    /// (device id, mirror) to replace.
    pub mirrors: Vec<(String, MirrorRecord)>,
    /// Alerts to append (their ids are set by the caller from `next_alert_id`).
    pub alerts: Vec<AlertRecord>,
    /// Data Repository items to create or replace (a device upload lands with its event).
    pub contents: Vec<RepositoryItem>,
    /// Events to hand to the Bus once the batch is durable (the outbox).
    pub events: Vec<Event>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.sessions.is_empty()
            && self.ended_sessions.is_empty()
            && self.commands.is_empty()
            && self.mirrors.is_empty()
            && self.alerts.is_empty()
            && self.contents.is_empty()
            && self.events.is_empty()
    }
}

/// The state of the server. Every method is safe to call concurrently; the
/// embedded engine never blocks the calling async worker (it runs its
/// transactions on blocking threads).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Devices.
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;
    /// Removes the device and everything that belongs to it (queue, sessions, mirror, alerts).
    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError>;
    /// Devices in id order after `after`, at most `limit`, that match `filter`.
    /// Streams through the registry: memory stays bounded by `limit`.
    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError>;

    // Command queues.
    /// Appends commands to the device's queue in order and returns their ids.
    async fn enqueue_commands(
        &self,
        device_id: &str,
        commands: Vec<NewCommand>,
        now: crate::clock::Millis,
    ) -> Result<Vec<CommandId>, StoreError>;
    async fn get_command(&self, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError>;
    /// Commands in id order after `after`, at most `limit`.
    async fn list_commands(
        &self,
        device_id: &str,
        after: Option<CommandId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError>;
    /// The first `limit` queued commands, in queue order.
    async fn queued_commands(&self, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError>;
    /// How many commands are queued or sent (not final).
    async fn pending_count(&self, device_id: &str) -> Result<u64, StoreError>;

    // Sessions.
    /// An open session, or the device's most recently ended one when the batch
    /// that ended it carried its final state (so a late Package#3 gets 410, not 404).
    async fn get_session(&self, session_id: &str) -> Result<Option<SessionState>, StoreError>;
    /// Every open session, for the expiry sweep after a restart.
    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError>;
    /// The device's most recent sessions, newest first.
    async fn list_sessions(&self, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError>;

    // MO mirror and alerts.
    async fn get_mirror(&self, device_id: &str) -> Result<Option<MirrorRecord>, StoreError>;
    /// The device's most recent alerts, newest first.
    async fn list_alerts(&self, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError>;
    /// The id the next alert of this device gets (ids increase from 1).
    async fn next_alert_id(&self, device_id: &str) -> Result<u64, StoreError>;

    // Data Repository.
    async fn put_content(&self, item: RepositoryItem) -> Result<(), StoreError>;
    async fn get_content(&self, path: &str) -> Result<Option<RepositoryItem>, StoreError>;
    async fn delete_content(&self, path: &str) -> Result<bool, StoreError>;

    // Atomic writes and the outbox.
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Up to `limit` events committed but not yet acknowledged by the Bus, oldest first.
    async fn outbox(&self, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Drops events the Bus has accepted.
    async fn ack_outbox(&self, event_ids: &[String]) -> Result<(), StoreError>;
    /// Events waiting in the outbox (for the backlog metric).
    async fn outbox_len(&self) -> Result<u64, StoreError>;
}

/// Opens the store named by `url`: `file:///path` or a bare path for the embedded engine,
/// `redis://host:port[/db]` for the Redis engine.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("redis://") {
        return Ok(std::sync::Arc::new(RedisStore::connect(url).await?));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(std::sync::Arc::new(EmbeddedStore::open(std::path::Path::new(path)).await?))
}
