//! The Redis engine of the Store: the same promises as the embedded engine, on a shared Redis server.
//!
//! One [`ConnectionManager`] (a multiplexed connection that reconnects by
//! itself) carries every call; writes that belong together go as one
//! MULTI/EXEC pipeline, so `commit` of a session step is one round trip.
//! Counters that must only grow and the outbox sequence are small Lua
//! snippets (EVAL) inside that same MULTI, so nothing needs a read before the
//! write. Records are the same serde JSON as the embedded engine. The key
//! layout ([`keys`]) and the round trips per call are in docs/store.md.
//! Redis Cluster is not supported yet: the per-device keys carry a hash tag
//! for it, but a commit touches keys of several slots.

mod keys;

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, RedisError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::keys::Keys;
use super::{Store, StoreError, WriteBatch};
use crate::bus::Event;
use crate::clock::Millis;
use crate::metrics::metrics;
use crate::model::{
    AlertRecord, CommandId, CommandRecord, CommandState, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand,
    RepositoryItem, SessionOutcome, SessionState, SessionSummary,
};

/// The key prefix unless told otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "omadm";

/// Records `list_devices` looks at per call (as the embedded engine): bounds one request's work.
const LIST_SCAN_BUDGET: usize = 10_000;

/// Device ids fetched per round trip while `list_devices` scans.
const LIST_CHUNK: usize = 500;

/// Raises a counter to ARGV[1] when it is lower (ids written by a batch keep later ids unique).
const RAISE_COUNTER: &str = "local current = tonumber(redis.call('GET', KEYS[1]) or '0') \
     if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end return 0";

/// Keeps the final state of the device's latest ended session only: drops the previous one.
/// KEYS: last-ended, ended-sessions; ARGV: session id, state JSON.
const KEEP_LAST_ENDED: &str = "local previous = redis.call('GET', KEYS[1]) \
     if previous and previous ~= ARGV[1] then redis.call('HDEL', KEYS[2], previous) end \
     redis.call('SET', KEYS[1], ARGV[1]) redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) return 0";

/// Appends events to the outbox in order; an id already waiting is not added twice.
/// KEYS: events hash, order zset, sequence counter; ARGV: id, JSON, id, JSON...
const OUTBOX_APPEND: &str = "for index = 1, #ARGV, 2 do \
     if redis.call('HSETNX', KEYS[1], ARGV[index], ARGV[index + 1]) == 1 then \
     redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[index]) end end return 0";

/// The Redis engine of [`Store`]. Cheap to share behind an `Arc`; any number
/// of processes may use the same Redis with the same prefix.
pub struct RedisStore {
    connection: ConnectionManager,
    keys: Keys,
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`) with the default key prefix.
    /// A server that cannot be reached gives [`StoreError::Unavailable`].
    pub async fn connect_with(url: &str, _options: &super::StoreOptions) -> Result<Self, StoreError> {
        // CONTRACT STUB: Redis Cluster URLs and options come with the cluster engine.
        Self::connect(url).await
    }

    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, DEFAULT_KEY_PREFIX).await
    }

    /// Connects with every key under `prefix` (several stores may share one Redis database).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|error| {
            StoreError::UnsupportedUrl(format!("{}: {error}", url.split('@').next_back().unwrap_or(url)))
        })?;
        // Few, short retries: a request should get its 503 quickly; the manager reconnects on the next call.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(500)
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5));
        let connection = ConnectionManager::new_with_config(client, config).await.map_err(|error| {
            metrics().store_errors.with_label_values(&["open"]).inc();
            unavailable(error)
        })?;
        tracing::info!(prefix, "redis store connected");
        Ok(RedisStore { connection, keys: Keys::new(prefix) })
    }

    /// Runs a pipeline (or a single command) and counts its failure under `operation`.
    async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        pipeline: &Pipeline,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let result = pipeline.query_async(&mut connection).await.map_err(unavailable);
        if let Err(error) = &result {
            metrics().store_errors.with_label_values(&[operation]).inc();
            tracing::warn!(operation, %error, "redis store operation failed");
        }
        result
    }

    /// Decodes a record read back, counting a corrupt one under `operation`.
    fn decode<T: DeserializeOwned>(operation: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|error| {
            metrics().store_errors.with_label_values(&[operation]).inc();
            StoreError::Corrupt(format!("{key}: {error}"))
        })
    }

    fn decode_all<T: DeserializeOwned>(
        operation: &'static str,
        key: &str,
        values: Vec<Option<Vec<u8>>>,
    ) -> Result<Vec<T>, StoreError> {
        values.into_iter().flatten().map(|bytes| Self::decode(operation, key, &bytes)).collect()
    }

    /// The command records of `ids`, in that order; an id with no record is a broken index.
    async fn commands_by_id(
        &self,
        operation: &'static str,
        device_id: &str,
        ids: &[u64],
    ) -> Result<Vec<CommandRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.commands(device_id);
        let mut fetch = redis::pipe();
        fetch.cmd("HMGET").arg(&key).arg(ids);
        let (values,): (Vec<Option<Vec<u8>>>,) = self.query(operation, &fetch).await?;
        if values.iter().any(Option::is_none) {
            return Err(StoreError::Corrupt(format!("an index of {key} names a missing command")));
        }
        Self::decode_all(operation, &key, values)
    }

    /// Adds the writes of `batch` to a MULTI pipeline.
    fn add_batch(&self, pipeline: &mut Pipeline, batch: &WriteBatch) -> Result<(), StoreError> {
        let keys = &self.keys;
        for device in &batch.devices {
            pipeline.set(keys.device(&device.id), encode(device)?).ignore();
            pipeline.zadd(keys.device_index(), &device.id, 0).ignore();
        }
        for session in &batch.sessions {
            pipeline.hset(keys.open_sessions(), &session.id, encode(session)?).ignore();
            pipeline.sadd(keys.open_sessions_of_device(&session.device_id), &session.id).ignore();
        }
        // After the upserts, so a batch that opens and ends a session leaves it ended.
        for summary in &batch.ended_sessions {
            pipeline.hdel(keys.open_sessions(), &summary.id).ignore();
            pipeline.srem(keys.open_sessions_of_device(&summary.device_id), &summary.id).ignore();
            pipeline.hset(keys.history(&summary.device_id), &summary.id, encode(summary)?).ignore();
            pipeline.zadd(keys.history_order(&summary.device_id), &summary.id, summary.started_at).ignore();
            if let Some(final_state) = batch.sessions.iter().find(|session| session.id == summary.id) {
                pipeline
                    .cmd("EVAL")
                    .arg(KEEP_LAST_ENDED)
                    .arg(2)
                    .arg(keys.last_ended(&summary.device_id))
                    .arg(keys.ended_sessions())
                    .arg(&summary.id)
                    .arg(encode(final_state)?)
                    .ignore();
            }
        }
        for record in &batch.commands {
            let device_id = record.device_id.as_str();
            pipeline.hset(keys.commands(device_id), record.id, encode(record)?).ignore();
            pipeline.zadd(keys.command_ids(device_id), record.id, record.id).ignore();
            if record.state == CommandState::Queued {
                pipeline.zadd(keys.queued(device_id), record.id, record.id).ignore();
            } else {
                pipeline.zrem(keys.queued(device_id), record.id).ignore();
            }
            if record.state.is_final() {
                pipeline.srem(keys.pending(device_id), record.id).ignore();
            } else {
                pipeline.sadd(keys.pending(device_id), record.id).ignore();
            }
            pipeline.cmd("EVAL").arg(RAISE_COUNTER).arg(1).arg(keys.last_command_id(device_id)).arg(record.id).ignore();
        }
        for (device_id, mirror) in &batch.mirrors {
            pipeline.set(keys.mirror(device_id), encode(mirror)?).ignore();
        }
        for alert in &batch.alerts {
            let key = keys.alerts(&alert.device_id);
            pipeline.zrembyscore(&key, alert.id, alert.id).ignore();
            pipeline.zadd(&key, encode(alert)?, alert.id).ignore();
            pipeline
                .cmd("EVAL")
                .arg(RAISE_COUNTER)
                .arg(1)
                .arg(keys.last_alert_id(&alert.device_id))
                .arg(alert.id)
                .ignore();
        }
        for item in &batch.contents {
            pipeline.set(keys.content(&item.path), encode(item)?).ignore();
        }
        if !batch.events.is_empty() {
            let append = pipeline.cmd("EVAL").arg(OUTBOX_APPEND).arg(3);
            append.arg(keys.outbox_events()).arg(keys.outbox_order()).arg(keys.outbox_sequence());
            for event in &batch.events {
                append.arg(&event.id).arg(encode(event)?);
            }
            append.ignore();
        }
        Ok(())
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|error| StoreError::Io(format!("cannot encode a record: {error}")))
}

/// Every Redis failure is the backend's, not the caller's: the edge answers 503.
fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

fn single(command: redis::Cmd) -> Pipeline {
    let mut pipeline = redis::pipe();
    pipeline.add_command(command);
    pipeline
}

#[async_trait]
impl Store for RedisStore {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        let key = self.keys.device(device_id);
        let (bytes,): (Option<Vec<u8>>,) = self.query("get_device", &single(redis::Cmd::get(&key))).await?;
        bytes.map(|bytes| Self::decode("get_device", &key, &bytes)).transpose()
    }

    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError> {
        let keys = &self.keys;
        // First what other keys name: the device's open sessions and its kept final state.
        let mut lookup = redis::pipe();
        lookup.smembers(keys.open_sessions_of_device(device_id)).get(keys.last_ended(device_id));
        let (open_session_ids, last_ended): (Vec<String>, Option<String>) =
            self.query("delete_device", &lookup).await?;
        let mut removal = redis::pipe();
        removal.atomic();
        removal.del(keys.device(device_id));
        removal.zrem(keys.device_index(), device_id).ignore();
        if !open_session_ids.is_empty() {
            removal.hdel(keys.open_sessions(), &open_session_ids).ignore();
        }
        if let Some(last_ended) = &last_ended {
            removal.hdel(keys.ended_sessions(), last_ended).ignore();
        }
        // The id counters stay: a device registered again never reuses a command or alert id.
        removal
            .del(&[
                keys.commands(device_id),
                keys.command_ids(device_id),
                keys.queued(device_id),
                keys.pending(device_id),
                keys.open_sessions_of_device(device_id),
                keys.history(device_id),
                keys.history_order(device_id),
                keys.last_ended(device_id),
                keys.mirror(device_id),
                keys.alerts(device_id),
            ])
            .ignore();
        let (deleted,): (u64,) = self.query("delete_device", &removal).await?;
        Ok(deleted > 0)
    }

    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        let limit = limit.max(1);
        let mut page = Vec::new();
        let mut cursor = after.map(str::to_owned);
        let mut last_scanned: Option<String> = None;
        let mut scanned = 0;
        loop {
            let lower = cursor.as_ref().map_or_else(|| "-".to_owned(), |cursor| format!("({cursor}"));
            let mut range = redis::pipe();
            range.zrangebylex_limit(self.keys.device_index(), lower, "+", 0, LIST_CHUNK as isize);
            let (ids,): (Vec<String>,) = self.query("list_devices", &range).await?;
            if ids.is_empty() {
                return Ok(DevicePage { devices: page, next: None });
            }
            let device_keys: Vec<String> = ids.iter().map(|id| self.keys.device(id)).collect();
            let mut fetch = redis::pipe();
            fetch.mget(&device_keys);
            let (records,): (Vec<Option<Vec<u8>>>,) = self.query("list_devices", &fetch).await?;
            let chunk_was_full = ids.len() == LIST_CHUNK;
            for (id, bytes) in ids.into_iter().zip(records) {
                // Another record exists: stop here with a cursor when the page is full or the budget spent.
                if page.len() == limit || scanned == LIST_SCAN_BUDGET {
                    return Ok(DevicePage { devices: page, next: last_scanned });
                }
                scanned += 1;
                last_scanned = Some(id.clone());
                // Deleted between the two round trips: not listed.
                let Some(bytes) = bytes else { continue };
                let device: Device = Self::decode("list_devices", &id, &bytes)?;
                if filter.matches(&device) {
                    page.push(device);
                }
            }
            if !chunk_was_full {
                return Ok(DevicePage { devices: page, next: None });
            }
            cursor = last_scanned.clone();
        }
    }

    async fn enqueue_commands(
        &self,
        device_id: &str,
        commands: Vec<NewCommand>,
        now: Millis,
    ) -> Result<Vec<CommandId>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let count = commands.len() as u64;
        // Reserve the ids first (atomic INCRBY): concurrent enqueues get distinct ids.
        let (last_id,): (u64,) = self
            .query("enqueue_commands", &single(redis::Cmd::incr(self.keys.last_command_id(device_id), count)))
            .await?;
        let first_id = last_id.saturating_sub(count) + 1;
        let mut writes = redis::pipe();
        writes.atomic();
        let mut ids = Vec::with_capacity(commands.len());
        for (id, new_command) in (first_id..).zip(commands) {
            let record = CommandRecord {
                id,
                device_id: device_id.to_owned(),
                command: new_command.command,
                origin: new_command.origin,
                state: CommandState::Queued,
                status: None,
                extra: Vec::new(),
                data: None,
                session_id: None,
                attempts: 0,
                created_at: now,
                updated_at: now,
            };
            writes.hset(self.keys.commands(device_id), id, encode(&record)?).ignore();
            writes.zadd(self.keys.command_ids(device_id), id, id).ignore();
            writes.zadd(self.keys.queued(device_id), id, id).ignore();
            writes.sadd(self.keys.pending(device_id), id).ignore();
            ids.push(id);
        }
        let () = self.query("enqueue_commands", &writes).await?;
        Ok(ids)
    }

    async fn get_command(&self, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError> {
        let key = self.keys.commands(device_id);
        let (bytes,): (Option<Vec<u8>>,) = self.query("get_command", &single(redis::Cmd::hget(&key, id))).await?;
        bytes.map(|bytes| Self::decode("get_command", &key, &bytes)).transpose()
    }

    async fn list_commands(
        &self,
        device_id: &str,
        after: Option<CommandId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lower = after.map_or_else(|| "-inf".to_owned(), |after| format!("({after}"));
        let mut range = redis::pipe();
        range.zrangebyscore_limit(self.keys.command_ids(device_id), lower, "+inf", 0, limit as isize);
        let (ids,): (Vec<u64>,) = self.query("list_commands", &range).await?;
        self.commands_by_id("list_commands", device_id, &ids).await
    }

    async fn queued_commands(&self, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut range = redis::pipe();
        range.zrange(self.keys.queued(device_id), 0, limit as isize - 1);
        let (ids,): (Vec<u64>,) = self.query("queued_commands", &range).await?;
        self.commands_by_id("queued_commands", device_id, &ids).await
    }

    async fn pending_count(&self, device_id: &str) -> Result<u64, StoreError> {
        let (count,): (u64,) =
            self.query("pending_count", &single(redis::Cmd::scard(self.keys.pending(device_id)))).await?;
        Ok(count)
    }

    async fn load_session(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        queue_limit: usize,
        lease: &crate::cluster::LeaseRequest,
    ) -> Result<super::SessionLoad, StoreError> {
        // CONTRACT STUB: separate round trips, no lease yet.
        let Some(device) = self.get_device(device_id).await? else { return Ok(super::SessionLoad::UnknownDevice) };
        let mirror = self.get_mirror(device_id).await?.unwrap_or_default();
        let queued = self.queued_commands(device_id, queue_limit).await?;
        let mut awaiting_records = Vec::new();
        for id in awaiting {
            if let Some(record) = self.get_command(device_id, *id).await? {
                awaiting_records.push(record);
            }
        }
        let next_alert_id = self.next_alert_id(device_id).await?;
        let lease = crate::cluster::Lease { device_id: device_id.to_owned(), node_id: lease.node_id.clone(), epoch: 1 };
        Ok(super::SessionLoad::Loaded(Box::new(super::SessionSnapshot {
            lease,
            device,
            mirror,
            queued,
            awaiting: awaiting_records,
            next_alert_id,
        })))
    }

    async fn heartbeat(
        &self,
        node: &crate::cluster::NodeInfo,
        _ttl: Millis,
        _now: Millis,
    ) -> Result<Vec<crate::cluster::NodeInfo>, StoreError> {
        // CONTRACT STUB: membership comes with the cluster engine.
        Ok(vec![node.clone()])
    }

    async fn leave(&self, _node_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn outbox_lengths(&self, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        let (count,): (u64,) = self.query("outbox_len", &single(redis::Cmd::zcard(self.keys.outbox_order()))).await?;
        Ok(shards.iter().map(|shard| if *shard == 0 { count } else { 0 }).collect())
    }

    async fn get_session(&self, _device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError> {
        let mut lookup = redis::pipe();
        lookup.hget(self.keys.open_sessions(), session_id).hget(self.keys.ended_sessions(), session_id);
        let (open, ended): (Option<Vec<u8>>, Option<Vec<u8>>) = self.query("get_session", &lookup).await?;
        open.or(ended).map(|bytes| Self::decode("get_session", session_id, &bytes)).transpose()
    }

    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        let key = self.keys.open_sessions();
        let (values,): (Vec<Vec<u8>>,) = self.query("open_sessions", &single(redis::Cmd::hvals(&key))).await?;
        values.iter().map(|bytes| Self::decode("open_sessions", &key, bytes)).collect()
    }

    async fn list_sessions(&self, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut lookup = redis::pipe();
        lookup.smembers(self.keys.open_sessions_of_device(device_id)).zrevrange(
            self.keys.history_order(device_id),
            0,
            limit as isize - 1,
        );
        let (open_ids, ended_ids): (BTreeSet<String>, Vec<String>) = self.query("list_sessions", &lookup).await?;
        let mut fetch = redis::pipe();
        // HMGET needs a field: the empty one (never a session id) keeps an empty list valid.
        fetch.cmd("HMGET").arg(self.keys.open_sessions()).arg(&open_ids).arg("");
        fetch.cmd("HMGET").arg(self.keys.history(device_id)).arg(&ended_ids).arg("");
        let (open, ended): (Vec<Option<Vec<u8>>>, Vec<Option<Vec<u8>>>) = self.query("list_sessions", &fetch).await?;
        let open: Vec<SessionState> = Self::decode_all("list_sessions", &self.keys.open_sessions(), open)?;
        let mut summaries: Vec<SessionSummary> =
            Self::decode_all("list_sessions", &self.keys.history(device_id), ended)?;
        summaries.extend(open.into_iter().map(|state| SessionSummary {
            id: state.id,
            device_id: state.device_id,
            started_at: state.started_at,
            ended_at: None,
            outcome: SessionOutcome::Active,
            packages: state.packages,
            commands_answered: state.commands_answered,
        }));
        summaries.sort_by(|left, right| right.started_at.cmp(&left.started_at).then_with(|| right.id.cmp(&left.id)));
        summaries.truncate(limit);
        Ok(summaries)
    }

    async fn get_mirror(&self, device_id: &str) -> Result<Option<MirrorRecord>, StoreError> {
        let key = self.keys.mirror(device_id);
        let (bytes,): (Option<Vec<u8>>,) = self.query("get_mirror", &single(redis::Cmd::get(&key))).await?;
        bytes.map(|bytes| Self::decode("get_mirror", &key, &bytes)).transpose()
    }

    async fn list_alerts(&self, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.alerts(device_id);
        let mut range = redis::pipe();
        range.zrevrange(&key, 0, limit as isize - 1);
        let (values,): (Vec<Vec<u8>>,) = self.query("list_alerts", &range).await?;
        values.iter().map(|bytes| Self::decode("list_alerts", &key, bytes)).collect()
    }

    async fn next_alert_id(&self, device_id: &str) -> Result<u64, StoreError> {
        let (last,): (Option<u64>,) =
            self.query("next_alert_id", &single(redis::Cmd::get(self.keys.last_alert_id(device_id)))).await?;
        Ok(last.unwrap_or(0).saturating_add(1))
    }

    async fn put_content(&self, item: RepositoryItem) -> Result<(), StoreError> {
        let () =
            self.query("put_content", &single(redis::Cmd::set(self.keys.content(&item.path), encode(&item)?))).await?;
        Ok(())
    }

    async fn get_content(&self, path: &str) -> Result<Option<RepositoryItem>, StoreError> {
        let key = self.keys.content(path);
        let (bytes,): (Option<Vec<u8>>,) = self.query("get_content", &single(redis::Cmd::get(&key))).await?;
        bytes.map(|bytes| Self::decode("get_content", &key, &bytes)).transpose()
    }

    async fn delete_content(&self, path: &str) -> Result<bool, StoreError> {
        let (deleted,): (u64,) =
            self.query("delete_content", &single(redis::Cmd::del(self.keys.content(path)))).await?;
        Ok(deleted > 0)
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        self.add_batch(&mut pipeline, &batch)?;
        let () = self.query("commit", &pipeline).await?;
        Ok(())
    }

    async fn outbox(&self, _shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut range = redis::pipe();
        range.zrange(self.keys.outbox_order(), 0, limit as isize - 1);
        let (ids,): (Vec<String>,) = self.query("outbox", &range).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut fetch = redis::pipe();
        fetch.cmd("HMGET").arg(self.keys.outbox_events()).arg(&ids);
        let (values,): (Vec<Option<Vec<u8>>>,) = self.query("outbox", &fetch).await?;
        // An event acknowledged between the two round trips is simply not returned.
        Self::decode_all("outbox", &self.keys.outbox_events(), values)
    }

    async fn ack_outbox(&self, _shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        pipeline.zrem(self.keys.outbox_order(), event_ids).ignore();
        pipeline.hdel(self.keys.outbox_events(), event_ids).ignore();
        let () = self.query("ack_outbox", &pipeline).await?;
        Ok(())
    }
}
