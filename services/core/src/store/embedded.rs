//! The embedded store: the whole Store in one file under the data dir.
//!
//! PLACEHOLDER: the engine lands with its own change.

use std::path::Path;

use async_trait::async_trait;

use super::{Store, StoreError, WriteBatch};
use crate::bus::Event;
use crate::clock::Millis;
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand, RepositoryItem,
    SessionState, SessionSummary,
};

pub struct EmbeddedStore;

impl EmbeddedStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let _ = path;
        Ok(EmbeddedStore)
    }
}

fn missing<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("the embedded store is not built yet".to_owned()))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get_device(&self, _: &str) -> Result<Option<Device>, StoreError> {
        missing()
    }
    async fn delete_device(&self, _: &str) -> Result<bool, StoreError> {
        missing()
    }
    async fn list_devices(&self, _: &DeviceFilter, _: Option<&str>, _: usize) -> Result<DevicePage, StoreError> {
        missing()
    }
    async fn enqueue_commands(&self, _: &str, _: Vec<NewCommand>, _: Millis) -> Result<Vec<CommandId>, StoreError> {
        missing()
    }
    async fn get_command(&self, _: &str, _: CommandId) -> Result<Option<CommandRecord>, StoreError> {
        missing()
    }
    async fn list_commands(&self, _: &str, _: Option<CommandId>, _: usize) -> Result<Vec<CommandRecord>, StoreError> {
        missing()
    }
    async fn queued_commands(&self, _: &str, _: usize) -> Result<Vec<CommandRecord>, StoreError> {
        missing()
    }
    async fn pending_count(&self, _: &str) -> Result<u64, StoreError> {
        missing()
    }
    async fn get_session(&self, _: &str) -> Result<Option<SessionState>, StoreError> {
        missing()
    }
    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        missing()
    }
    async fn list_sessions(&self, _: &str, _: usize) -> Result<Vec<SessionSummary>, StoreError> {
        missing()
    }
    async fn get_mirror(&self, _: &str) -> Result<Option<MirrorRecord>, StoreError> {
        missing()
    }
    async fn list_alerts(&self, _: &str, _: usize) -> Result<Vec<AlertRecord>, StoreError> {
        missing()
    }
    async fn next_alert_id(&self, _: &str) -> Result<u64, StoreError> {
        missing()
    }
    async fn put_content(&self, _: RepositoryItem) -> Result<(), StoreError> {
        missing()
    }
    async fn get_content(&self, _: &str) -> Result<Option<RepositoryItem>, StoreError> {
        missing()
    }
    async fn delete_content(&self, _: &str) -> Result<bool, StoreError> {
        missing()
    }
    async fn commit(&self, _: WriteBatch) -> Result<(), StoreError> {
        missing()
    }
    async fn outbox(&self, _: usize) -> Result<Vec<Event>, StoreError> {
        missing()
    }
    async fn ack_outbox(&self, _: &[String]) -> Result<(), StoreError> {
        missing()
    }
    async fn outbox_len(&self) -> Result<u64, StoreError> {
        missing()
    }
}
