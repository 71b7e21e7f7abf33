//! One test Store wrapper: forwards every method to an inner Store, counts calls, injects failures, and lets a
//! test put its own code on the write and outbox paths.
//!
//! [`TestStore::wrap`] forwards as is; [`TestStore::with`] routes `commit`
//! and the outbox methods through an [`Interpose`] of the test's own (run
//! something right before a commit, spread the outbox over several stores).
//! [`TestStore::fail_next`] makes the next calls of a method fail with
//! `StoreError::Unavailable` before they reach the inner store, as a store
//! that went away would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use omadm_core::bus::Event;
use omadm_core::clock::Millis;
use omadm_core::cluster::{LeaseRequest, NodeInfo};
use omadm_core::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand, RepositoryItem,
    SessionState, SessionSummary,
};
use omadm_core::store::{SessionLoad, Store, StoreError, WriteBatch};

/// What a test puts on the write and outbox paths of a [`TestStore`]; every method forwards to `inner` unless
/// the test overrides it.
#[async_trait]
pub trait Interpose: Send + Sync {
    async fn commit(&self, inner: &dyn Store, batch: WriteBatch) -> Result<(), StoreError> {
        inner.commit(batch).await
    }
    fn outbox_shards(&self, inner: &dyn Store) -> u32 {
        inner.outbox_shards()
    }
    fn outbox_shard_of(&self, inner: &dyn Store, event_key: &str) -> u32 {
        inner.outbox_shard_of(event_key)
    }
    async fn outbox(&self, inner: &dyn Store, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        inner.outbox(shard, limit).await
    }
    async fn ack_outbox(&self, inner: &dyn Store, shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        inner.ack_outbox(shard, event_ids).await
    }
    async fn outbox_lengths(&self, inner: &dyn Store, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        inner.outbox_lengths(shards).await
    }
}

/// Forwards everything.
#[derive(Debug, Default)]
pub struct Forward;

impl Interpose for Forward {}

pub struct TestStore<I: Interpose = Forward> {
    inner: Arc<dyn Store>,
    interposer: I,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl TestStore<Forward> {
    /// `inner`, with calls counted and failures injectable.
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<TestStore<Forward>> {
        Self::with(inner, Forward)
    }
}

impl<I: Interpose> TestStore<I> {
    /// `inner`, with `commit` and the outbox methods going through `interposer`.
    pub fn with(inner: Arc<dyn Store>, interposer: I) -> Arc<TestStore<I>> {
        Arc::new(TestStore { inner, interposer, calls: Mutex::default(), failures: Mutex::default() })
    }

    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    pub fn interposer(&self) -> &I {
        &self.interposer
    }

    /// How many times `method` (a Store method's name, e.g. `"commit"`) was called, failed ones included.
    pub fn calls(&self, method: &str) -> u64 {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    /// The next `times` calls of `method` fail with `StoreError::Unavailable` without reaching the inner store.
    pub fn fail_next(&self, method: &'static str, times: u64) {
        *self.failures.lock().unwrap().entry(method).or_default() += times;
    }

    fn enter(&self, method: &'static str) -> Result<(), StoreError> {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
        let mut failures = self.failures.lock().unwrap();
        match failures.get_mut(method) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(StoreError::Unavailable(format!("injected failure of {method}")))
            }
            _ => Ok(()),
        }
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }
}

#[async_trait]
impl<I: Interpose + 'static> Store for TestStore<I> {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.enter("get_device")?;
        self.inner.get_device(device_id).await
    }
    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError> {
        self.enter("delete_device")?;
        self.inner.delete_device(device_id).await
    }
    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        self.enter("list_devices")?;
        self.inner.list_devices(filter, after, limit).await
    }
    async fn enqueue_commands(
        &self,
        device_id: &str,
        commands: Vec<NewCommand>,
        now: Millis,
    ) -> Result<Vec<CommandId>, StoreError> {
        self.enter("enqueue_commands")?;
        self.inner.enqueue_commands(device_id, commands, now).await
    }
    async fn get_command(&self, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError> {
        self.enter("get_command")?;
        self.inner.get_command(device_id, id).await
    }
    async fn list_commands(
        &self,
        device_id: &str,
        after: Option<CommandId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.enter("list_commands")?;
        self.inner.list_commands(device_id, after, limit).await
    }
    async fn queued_commands(&self, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        self.enter("queued_commands")?;
        self.inner.queued_commands(device_id, limit).await
    }
    async fn pending_count(&self, device_id: &str) -> Result<u64, StoreError> {
        self.enter("pending_count")?;
        self.inner.pending_count(device_id).await
    }
    async fn get_session(&self, device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError> {
        self.enter("get_session")?;
        self.inner.get_session(device_id, session_id).await
    }
    async fn load_session(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        queue_limit: usize,
        lease: &LeaseRequest,
    ) -> Result<SessionLoad, StoreError> {
        self.enter("load_session")?;
        self.inner.load_session(device_id, awaiting, queue_limit, lease).await
    }
    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        self.enter("open_sessions")?;
        self.inner.open_sessions().await
    }
    async fn list_sessions(&self, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        self.enter("list_sessions")?;
        self.inner.list_sessions(device_id, limit).await
    }
    async fn get_mirror(&self, device_id: &str) -> Result<Option<MirrorRecord>, StoreError> {
        self.enter("get_mirror")?;
        self.inner.get_mirror(device_id).await
    }
    async fn list_alerts(&self, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        self.enter("list_alerts")?;
        self.inner.list_alerts(device_id, limit).await
    }
    async fn next_alert_id(&self, device_id: &str) -> Result<u64, StoreError> {
        self.enter("next_alert_id")?;
        self.inner.next_alert_id(device_id).await
    }
    async fn put_content(&self, item: RepositoryItem) -> Result<(), StoreError> {
        self.enter("put_content")?;
        self.inner.put_content(item).await
    }
    async fn get_content(&self, path: &str) -> Result<Option<RepositoryItem>, StoreError> {
        self.enter("get_content")?;
        self.inner.get_content(path).await
    }
    async fn delete_content(&self, path: &str) -> Result<bool, StoreError> {
        self.enter("delete_content")?;
        self.inner.delete_content(path).await
    }

    async fn upload_usage(&self, device_id: &str) -> Result<omadm_core::store::UploadUsage, StoreError> {
        self.enter("upload_usage")?;
        self.inner.upload_usage(device_id).await
    }
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.enter("commit")?;
        self.interposer.commit(&*self.inner, batch).await
    }
    fn outbox_shards(&self) -> u32 {
        self.count("outbox_shards");
        self.interposer.outbox_shards(&*self.inner)
    }
    fn outbox_shard_of(&self, event_key: &str) -> u32 {
        self.count("outbox_shard_of");
        self.interposer.outbox_shard_of(&*self.inner, event_key)
    }
    async fn outbox(&self, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.enter("outbox")?;
        self.interposer.outbox(&*self.inner, shard, limit).await
    }
    async fn ack_outbox(&self, shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        self.enter("ack_outbox")?;
        self.interposer.ack_outbox(&*self.inner, shard, event_ids).await
    }
    async fn outbox_lengths(&self, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        self.enter("outbox_lengths")?;
        self.interposer.outbox_lengths(&*self.inner, shards).await
    }
    async fn record_once(&self, key: &str, ttl: Millis, now: Millis) -> Result<bool, StoreError> {
        self.enter("record_once")?;
        self.inner.record_once(key, ttl, now).await
    }
    async fn count_in_window(&self, key: &str, hits: u64, window: Millis, now: Millis) -> Result<u64, StoreError> {
        self.enter("count_in_window")?;
        self.inner.count_in_window(key, hits, window, now).await
    }
    async fn heartbeat(&self, node: &NodeInfo, ttl: Millis, now: Millis) -> Result<Vec<NodeInfo>, StoreError> {
        self.enter("heartbeat")?;
        self.inner.heartbeat(node, ttl, now).await
    }
    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.enter("leave")?;
        self.inner.leave(node_id).await
    }
}
