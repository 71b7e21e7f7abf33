//! A Store that forwards every call to another, with the caller's code on the way: the one wrapper that
//! decorators and tests build on (run something right before a commit, refuse a call, spread the outbox over
//! several stores), so no one writes the forwarding of every Store method again.
//!
//! ```text
//! struct FailCommits;
//! impl Interpose for FailCommits {
//!     fn before(&self, method: &'static str) -> Result<(), StoreError> { ... }   // every call, by name
//! }
//! let store: Arc<dyn Store> = Interposed::new(inner, FailCommits);
//! ```

use std::sync::Arc;

use async_trait::async_trait;

use super::{SessionLoad, Store, StoreError, WriteBatch};
use crate::bus::Event;
use crate::clock::Millis;
use crate::cluster::{LeaseRequest, NodeInfo};
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand,
    NotificationRecord, Record, RecordCounts, RepositoryItem, SessionState, SessionSummary,
};

/// What a caller puts between an [`Interposed`] store and its inner one; every method forwards unless overridden.
#[async_trait]
pub trait Interpose: Send + Sync {
    /// Runs before every async call, with the Store method's name (`"commit"`); an error is returned instead of
    /// calling the inner store.
    fn before(&self, _method: &'static str) -> Result<(), StoreError> {
        Ok(())
    }
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

/// `inner`, with [`Interpose`] code on the way to it.
pub struct Interposed<I: Interpose> {
    inner: Arc<dyn Store>,
    interposer: I,
}

impl<I: Interpose> Interposed<I> {
    pub fn new(inner: Arc<dyn Store>, interposer: I) -> Arc<Interposed<I>> {
        Arc::new(Interposed { inner, interposer })
    }

    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    pub fn interposer(&self) -> &I {
        &self.interposer
    }
}

#[async_trait]
impl<I: Interpose + 'static> Store for Interposed<I> {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.interposer.before("get_device")?;
        self.inner.get_device(device_id).await
    }
    async fn get_device_with_counts(
        &self,
        device_id: &str,
        windows: &[(&str, Millis)],
        now: Millis,
    ) -> Result<(Option<Device>, Vec<u64>), StoreError> {
        self.interposer.before("get_device")?;
        for _ in windows {
            self.interposer.before("count_in_window")?;
        }
        self.inner.get_device_with_counts(device_id, windows, now).await
    }
    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError> {
        self.interposer.before("delete_device")?;
        self.inner.delete_device(device_id).await
    }
    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        self.interposer.before("list_devices")?;
        self.inner.list_devices(filter, after, limit).await
    }
    async fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError> {
        self.interposer.before("count_devices")?;
        self.inner.count_devices(filter).await
    }
    async fn enqueue_commands(
        &self,
        device_id: &str,
        commands: Vec<NewCommand>,
        now: Millis,
    ) -> Result<Vec<CommandId>, StoreError> {
        self.interposer.before("enqueue_commands")?;
        self.inner.enqueue_commands(device_id, commands, now).await
    }
    async fn get_command(&self, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError> {
        self.interposer.before("get_command")?;
        self.inner.get_command(device_id, id).await
    }
    async fn list_commands(
        &self,
        device_id: &str,
        after: Option<CommandId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.interposer.before("list_commands")?;
        self.inner.list_commands(device_id, after, limit).await
    }
    async fn queued_commands(&self, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        self.interposer.before("queued_commands")?;
        self.inner.queued_commands(device_id, limit).await
    }
    async fn pending_count(&self, device_id: &str) -> Result<u64, StoreError> {
        self.interposer.before("pending_count")?;
        self.inner.pending_count(device_id).await
    }
    async fn get_session(&self, device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError> {
        self.interposer.before("get_session")?;
        self.inner.get_session(device_id, session_id).await
    }
    async fn load_session(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        queue_limit: usize,
        lease: &LeaseRequest,
    ) -> Result<SessionLoad, StoreError> {
        self.interposer.before("load_session")?;
        self.inner.load_session(device_id, awaiting, queue_limit, lease).await
    }
    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        self.interposer.before("open_sessions")?;
        self.inner.open_sessions().await
    }
    async fn list_sessions(&self, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        self.interposer.before("list_sessions")?;
        self.inner.list_sessions(device_id, limit).await
    }
    async fn get_mirror(&self, device_id: &str) -> Result<Option<MirrorRecord>, StoreError> {
        self.interposer.before("get_mirror")?;
        self.inner.get_mirror(device_id).await
    }
    async fn get_notification(&self, request_id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        self.interposer.before("get_notification")?;
        self.inner.get_notification(request_id).await
    }
    async fn latest_notification(&self, device_id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        self.interposer.before("latest_notification")?;
        self.inner.latest_notification(device_id).await
    }
    async fn list_alerts(&self, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        self.interposer.before("list_alerts")?;
        self.inner.list_alerts(device_id, limit).await
    }
    async fn next_alert_id(&self, device_id: &str) -> Result<u64, StoreError> {
        self.interposer.before("next_alert_id")?;
        self.inner.next_alert_id(device_id).await
    }
    async fn put_content(&self, item: RepositoryItem) -> Result<(), StoreError> {
        self.interposer.before("put_content")?;
        self.inner.put_content(item).await
    }
    async fn get_content(&self, path: &str) -> Result<Option<RepositoryItem>, StoreError> {
        self.interposer.before("get_content")?;
        self.inner.get_content(path).await
    }
    async fn delete_content(&self, path: &str) -> Result<bool, StoreError> {
        self.interposer.before("delete_content")?;
        self.inner.delete_content(path).await
    }
    async fn upload_usage(&self, device_id: &str) -> Result<super::UploadUsage, StoreError> {
        self.interposer.before("upload_usage")?;
        self.inner.upload_usage(device_id).await
    }
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.interposer.before("commit")?;
        self.interposer.commit(&*self.inner, batch).await
    }
    fn outbox_shards(&self) -> u32 {
        self.interposer.outbox_shards(&*self.inner)
    }
    fn outbox_shard_of(&self, event_key: &str) -> u32 {
        self.interposer.outbox_shard_of(&*self.inner, event_key)
    }
    async fn outbox(&self, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.interposer.before("outbox")?;
        self.interposer.outbox(&*self.inner, shard, limit).await
    }
    async fn ack_outbox(&self, shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        self.interposer.before("ack_outbox")?;
        self.interposer.ack_outbox(&*self.inner, shard, event_ids).await
    }
    async fn outbox_lengths(&self, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        self.interposer.before("outbox_lengths")?;
        self.interposer.outbox_lengths(&*self.inner, shards).await
    }
    async fn release_due_events(&self, shard: u32, now: Millis, limit: usize) -> Result<usize, StoreError> {
        self.interposer.before("release_due_events")?;
        self.inner.release_due_events(shard, now, limit).await
    }
    async fn record_once(&self, key: &str, ttl: Millis, now: Millis) -> Result<bool, StoreError> {
        self.interposer.before("record_once")?;
        self.inner.record_once(key, ttl, now).await
    }
    async fn count_in_window(&self, key: &str, hits: u64, window: Millis, now: Millis) -> Result<u64, StoreError> {
        self.interposer.before("count_in_window")?;
        self.inner.count_in_window(key, hits, window, now).await
    }
    async fn get_record(&self, scope: &str, collection: &str, key: &str) -> Result<Option<Record>, StoreError> {
        self.interposer.before("get_record")?;
        self.inner.get_record(scope, collection, key).await
    }

    async fn get_records(
        &self,
        scope: &str,
        collection: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Record>>, StoreError> {
        self.interposer.before("get_records")?;
        self.inner.get_records(scope, collection, keys).await
    }

    async fn list_records(
        &self,
        scope: &str,
        collection: &str,
        label: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.interposer.before("list_records")?;
        self.inner.list_records(scope, collection, label, after, limit).await
    }

    async fn count_records(
        &self,
        scope: &str,
        collection: &str,
        labels: &[String],
    ) -> Result<RecordCounts, StoreError> {
        self.interposer.before("count_records")?;
        self.inner.count_records(scope, collection, labels).await
    }

    async fn remember(&self, key: &str, value: &str, ttl: Millis, now: Millis) -> Result<(), StoreError> {
        self.interposer.before("remember")?;
        self.inner.remember(key, value, ttl, now).await
    }

    async fn recall(&self, key: &str, now: Millis) -> Result<Option<String>, StoreError> {
        self.interposer.before("recall")?;
        self.inner.recall(key, now).await
    }

    async fn take_rate_token(&self, key: &str, per_second: u32, now: Millis) -> Result<Millis, StoreError> {
        self.interposer.before("take_rate_token")?;
        self.inner.take_rate_token(key, per_second, now).await
    }
    async fn next_sequence(&self, key: &str) -> Result<u64, StoreError> {
        self.interposer.before("next_sequence")?;
        self.inner.next_sequence(key).await
    }
    async fn heartbeat(&self, node: &NodeInfo, ttl: Millis, now: Millis) -> Result<Vec<NodeInfo>, StoreError> {
        self.interposer.before("heartbeat")?;
        self.inner.heartbeat(node, ttl, now).await
    }
    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.interposer.before("leave")?;
        self.inner.leave(node_id).await
    }
}
