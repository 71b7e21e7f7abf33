//! The Redis engine of the Store: the same promises as the embedded engine, on a standalone Redis or a Redis Cluster.
//!
//! One connection ([`connection::Connection`]: a reconnecting multiplexed
//! connection to one server, or the async Redis Cluster client) carries every
//! call. Every key of a device carries the hash tag `{device id}` ([`keys`]),
//! so on Redis Cluster one device's keys share a slot and one Lua script can
//! read or write them all atomically: `load_session` (lease grant and every
//! read of a session step) and `commit` (fence check, outbox bound, writes,
//! events, lease renewal, one script per slot group, see [`commit`]) are one
//! round trip each, the two round trips of a Package#3 exchange on its owner.
//! Events go to the outbox shard of their key's slot (16,384 shards on a
//! cluster, one on a standalone server), in the same script as the state they
//! describe. Records are the same serde JSON as the embedded engine. The
//! keyspace, what is atomic where and the round trips of every call are in
//! docs/cluster.md and docs/store.md.

mod commit;
mod connection;
mod keys;
mod slot;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures_util::future::join_all;
use redis::{Cmd, FromRedisValue, Pipeline, Script, ScriptInvocation, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::commit::{CommitPlan, FenceMode, GlobalWrite, ScriptOps};
use self::connection::{Connection, Counted, parse_target, unavailable};
use self::keys::Keys;
use super::index::{INDEX_VERSION, filter_terms, term_changes};
use super::{SessionLoad, SessionSnapshot, Store, StoreError, StoreOptions, WriteBatch};
use crate::bus::Event;
use crate::clock::Millis;
use crate::cluster::{Fence, Lease, LeaseRequest, NodeInfo};
use crate::metrics::metrics;
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand,
    NotificationRecord, Record, RecordCounts, RepositoryItem, SessionOutcome, SessionState, SessionSummary,
};

/// The key prefix unless told otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "omadm";

/// Records `list_devices` looks at per call (as the embedded engine): bounds one request's work.
const LIST_SCAN_BUDGET: usize = 10_000;

/// Device ids fetched per round trip while `list_devices` scans.
const LIST_CHUNK: usize = 500;

static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/commit.lua")));
static LOAD_SESSION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/load_session.lua")));
static COMMAND_PAGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/command_page.lua")));
static LIST_SESSIONS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/list_sessions.lua")));
static DELETE_DEVICE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/delete_device.lua")));
static OUTBOX_READ: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/outbox_read.lua")));
static OUTBOX_ACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/outbox_ack.lua")));
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
static RECORD_ONCE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/record_once.lua")));
static COUNT_IN_WINDOW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/count_in_window.lua")));
static RELEASE_DUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release_due.lua")));
static RATE_TOKEN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rate_token.lua")));

/// Every script, loaded into the server (every node of a cluster) when the store connects.
static SCRIPTS: [&LazyLock<Script>; 12] = [
    &COMMIT,
    &LOAD_SESSION,
    &COMMAND_PAGE,
    &LIST_SESSIONS,
    &DELETE_DEVICE,
    &OUTBOX_READ,
    &OUTBOX_ACK,
    &HEARTBEAT,
    &RECORD_ONCE,
    &COUNT_IN_WINDOW,
    &RELEASE_DUE,
    &RATE_TOKEN,
];

/// The Redis engine of [`Store`]. Cheap to share behind an `Arc`; any number
/// of processes may use the same Redis with the same prefix.
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
    options: StoreOptions,
    /// Requests sent so far (see [`RedisStore::round_trips`]).
    requests: Arc<AtomicU64>,
}

/// How one slot group's script answered.
#[derive(Debug)]
enum GroupOutcome {
    /// Written; how many keys its `DEL` ops deleted.
    Applied(u64),
    Fenced,
    OutboxFull(u64),
    QuotaExceeded(crate::store::UploadQuotaKind),
    /// A record's revision was not the one expected: its revisions key and record key.
    Conflict(String, String),
}

impl RedisStore {
    /// The records of `keys` in one collection (None where absent): their JSON and revisions, one round trip.
    async fn records_of(
        &self,
        operation: &'static str,
        scope: &str,
        collection: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values = self.keys.record_values(scope, collection);
        let mut lookup = redis::pipe();
        lookup
            .cmd("HMGET")
            .arg(&values)
            .arg(keys)
            .cmd("HMGET")
            .arg(self.keys.record_revisions(scope, collection))
            .arg(keys);
        let (records, revisions): (Vec<Option<Vec<u8>>>, Vec<Option<u64>>) = self.pipeline(operation, &lookup).await?;
        records
            .into_iter()
            .zip(revisions)
            .map(|(bytes, revision)| match bytes {
                None => Ok(None),
                Some(bytes) => {
                    let mut record: Record = Self::decode(operation, &values, &bytes)?;
                    record.revision = revision.unwrap_or(0);
                    Ok(Some(record))
                }
            })
            .collect()
    }
}

/// The records of `commands` queued for `device_id` with ids from `first_id`.
fn queued_records(device_id: &str, first_id: CommandId, commands: Vec<NewCommand>, now: Millis) -> Vec<CommandRecord> {
    (first_id..).zip(commands).map(|(id, new_command)| CommandRecord::queued(device_id, id, new_command, now)).collect()
}

impl RedisStore {
    /// Connects to `url` with the default key prefix: `redis://[user:password@]host:port[/db]` for
    /// one server; `redis+cluster://[user:password@]host:port,host:port,...` or several comma-separated
    /// `redis://` URLs for the seed nodes of a Redis Cluster. A server that cannot be reached gives
    /// [`StoreError::Unavailable`]; a URL the client rejects [`StoreError::UnsupportedUrl`].
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        Self::open(url, DEFAULT_KEY_PREFIX, options).await
    }

    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, DEFAULT_KEY_PREFIX, &StoreOptions::default()).await
    }

    /// Connects with every key under `prefix` (several stores may share one Redis or one cluster).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open(url, prefix, &StoreOptions::default()).await
    }

    /// Connects with every key under `prefix` and the given options. The prefix must not
    /// contain braces (they would change the keys' hash tags).
    pub async fn open(url: &str, prefix: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::UnsupportedUrl(format!("the key prefix {prefix:?} must not contain braces")));
        }
        let target = parse_target(url)?;
        let connection = Connection::open(&target).await.inspect_err(|error| {
            metrics().store_errors.with_label_values(&["open"]).inc();
            tracing::warn!(%error, "cannot connect the redis store");
        })?;
        let cluster = matches!(connection, Connection::Cluster(_));
        if cluster {
            // The table of outbox shard tags, computed once per process, off the async workers.
            let _ = tokio::task::spawn_blocking(|| slot::tag_of_slot(0)).await;
        }
        let store = RedisStore {
            connection,
            keys: Keys::new(prefix, cluster),
            options: options.clone(),
            requests: Arc::new(AtomicU64::new(0)),
        };
        store.load_scripts().await?;
        store.build_index_if_missing().await?;
        tracing::info!(prefix, cluster, "redis store connected");
        Ok(store)
    }

    /// Indexes the devices written before the inventory index existed (or under another [`INDEX_VERSION`]):
    /// the first node to connect walks the device index in chunks; one that connects meanwhile does the same
    /// work again, which changes nothing.
    async fn build_index_if_missing(&self) -> Result<(), StoreError> {
        let version: Option<u64> = self.call("open", &Cmd::get(self.keys.index_version())).await?;
        if version == Some(INDEX_VERSION) {
            return Ok(());
        }
        let everything = DeviceFilter::default();
        let mut after: Option<String> = None;
        let mut built = 0;
        loop {
            let page = self
                .walk_devices(&self.keys.device_index(), &everything, after.as_deref(), LIST_CHUNK, usize::MAX)
                .await?;
            if !page.devices.is_empty() {
                built += page.devices.len();
                self.apply(commit::index_plan(&self.keys, &page.devices)?, None).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let _: () = self.call("open", &Cmd::set(self.keys.index_version(), INDEX_VERSION)).await?;
        if built > 0 {
            tracing::info!(devices = built, version = INDEX_VERSION, "inventory index built");
        }
        Ok(())
    }

    /// Loads every script now, so that calls go out as one EVALSHA each from the start. A server
    /// that lost them (a restart, a new cluster node) answers NOSCRIPT and gets them again
    /// (SCRIPT LOAD, then the EVALSHA again: two more requests, once).
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let loads = SCRIPTS.iter().map(|script| {
            let mut connection = self.counted("open");
            async move { script.prepare_invoke().load_async(&mut connection).await }
        });
        for loaded in join_all(loads).await {
            loaded.map_err(|error| Self::failed("open", error))?;
        }
        Ok(())
    }

    /// Whether the store runs on Redis Cluster (one outbox shard per slot).
    pub fn is_cluster(&self) -> bool {
        self.keys.is_cluster()
    }

    /// How many requests this store has sent to Redis so far (each pipeline or script call is one;
    /// concurrent calls to several nodes count one each). Also `omadm_redis_round_trips_total{operation}`.
    pub fn round_trips(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn counted(&self, operation: &'static str) -> Counted {
        Counted::new(self.connection.clone(), operation, Arc::clone(&self.requests))
    }

    /// Counts and logs a failure of `operation`.
    fn failed(operation: &'static str, error: redis::RedisError) -> StoreError {
        metrics().store_errors.with_label_values(&[operation]).inc();
        tracing::warn!(operation, %error, "redis store operation failed");
        unavailable(error)
    }

    async fn call<T: FromRedisValue>(&self, operation: &'static str, command: &Cmd) -> Result<T, StoreError> {
        command.query_async(&mut self.counted(operation)).await.map_err(|error| Self::failed(operation, error))
    }

    /// A pipeline whose commands all touch one slot.
    async fn pipeline<T: FromRedisValue>(&self, operation: &'static str, pipeline: &Pipeline) -> Result<T, StoreError> {
        pipeline.query_async(&mut self.counted(operation)).await.map_err(|error| Self::failed(operation, error))
    }

    async fn script(&self, operation: &'static str, invocation: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        invocation.invoke_async(&mut self.counted(operation)).await.map_err(|error| Self::failed(operation, error))
    }

    async fn per_slot(&self, operation: &'static str, requests: Vec<(u16, Cmd)>) -> Result<Vec<Value>, StoreError> {
        self.counted(operation).per_slot(requests).await.map_err(|error| Self::failed(operation, error))
    }

    /// The key of `key`'s count in the window (of `window` ms) that `now` falls in, and when that window ends.
    fn window_counter(&self, key: &str, window: Millis, now: Millis) -> (String, Millis) {
        let window = window.max(1);
        let end = super::window_end(window, now);
        (self.keys.window_count(key, window, end - window), end)
    }

    /// The slot of a shard number (shards are slots on a cluster; one shard, any slot, otherwise).
    fn slot_of_shard(shard: u32) -> u16 {
        u16::try_from(shard).unwrap_or(0)
    }

    /// The ZSET a listing walks: the device index for a filter without terms, else its rarest term's; None when
    /// a term finds no device (nothing can match).
    async fn walked_index(&self, filter: &DeviceFilter) -> Result<Option<String>, StoreError> {
        let terms = filter_terms(filter);
        if terms.is_empty() {
            return Ok(Some(self.keys.device_index()));
        }
        Ok(self.rarest_term(&terms).await?.filter(|(_, count)| *count > 0).map(|(term, _)| self.keys.term(&term)))
    }

    /// The term of `terms` that finds the fewest devices, and how many (one ZCARD each: a filter has a few).
    async fn rarest_term(&self, terms: &[String]) -> Result<Option<(String, u64)>, StoreError> {
        let mut rarest: Option<(String, u64)> = None;
        for term in terms {
            let count: u64 = integer(self.call("list_devices", &Cmd::zcard(self.keys.term(term))).await?)?;
            if rarest.as_ref().is_none_or(|(_, least)| count < *least) {
                rarest = Some((term.clone(), count));
            }
        }
        Ok(rarest)
    }

    /// Devices of the id ZSET `walked` after `after` that match `filter`, in chunks, reading at most `budget`
    /// ids (a page may end short of `limit` with a cursor).
    async fn walk_devices(
        &self,
        walked: &str,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<DevicePage, StoreError> {
        let mut page = Vec::new();
        let mut cursor = after.map(str::to_owned);
        let mut last_scanned: Option<String> = None;
        let mut scanned = 0;
        loop {
            let lower = cursor.as_ref().map_or_else(|| "-".to_owned(), |cursor| format!("({cursor}"));
            let range = Cmd::zrangebylex_limit(walked, lower, "+", 0, LIST_CHUNK as isize);
            let ids: Vec<String> = self.call("list_devices", &range).await?;
            if ids.is_empty() {
                return Ok(DevicePage { devices: page, next: None });
            }
            // One pipeline on a server; on a cluster one per node, sent at once.
            let reads = ids
                .iter()
                .map(|id| (Self::slot_of_shard(self.keys.shard_of_device(id)), Cmd::get(self.keys.device(id))))
                .collect();
            let records = self.per_slot("list_devices", reads).await?.into_iter().map(bytes);
            let chunk_was_full = ids.len() == LIST_CHUNK;
            for (id, bytes) in ids.into_iter().zip(records) {
                // Another record exists: stop here with a cursor when the page is full or the budget spent.
                if page.len() == limit || scanned == budget {
                    return Ok(DevicePage { devices: page, next: last_scanned });
                }
                scanned += 1;
                last_scanned = Some(id.clone());
                // Deleted between the two round trips (or indexed by a write that did not finish): skipped.
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

    /// A notification record with its delivery report, both under the device's tag: one MGET.
    async fn notification_with_delivery(
        &self,
        operation: &'static str,
        device_id: &str,
        request_id: &str,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        let key = self.keys.notification(device_id, request_id);
        let delivery_key = self.keys.notification_delivery(device_id, request_id);
        let mut command = redis::cmd("MGET");
        command.arg(&key).arg(&delivery_key);
        let (record, delivery): (Option<Vec<u8>>, Option<Vec<u8>>) = self.call(operation, &command).await?;
        let Some(record) = record else { return Ok(None) };
        let mut record: NotificationRecord = Self::decode(operation, &key, &record)?;
        if let Some(delivery) = delivery {
            record.delivery = Some(Self::decode(operation, &delivery_key, &delivery)?);
        }
        Ok(Some(record))
    }

    /// Decodes a record read back, counting a corrupt one under `operation`.
    fn decode<T: DeserializeOwned>(operation: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|error| {
            metrics().store_errors.with_label_values(&[operation]).inc();
            StoreError::Corrupt(format!("{key}: {error}"))
        })
    }

    /// Decodes every record of `values` (all must be present: a missing one is a broken index).
    fn decode_records<T: DeserializeOwned>(
        operation: &'static str,
        key: &str,
        values: Vec<Value>,
    ) -> Result<Vec<T>, StoreError> {
        values
            .into_iter()
            .map(|value| match bytes(value) {
                Some(bytes) => Self::decode(operation, key, &bytes),
                None => Err(StoreError::Corrupt(format!("an index of {key} names a missing record"))),
            })
            .collect()
    }

    /// Runs one slot group's `commit.lua`.
    async fn run_group(&self, operation: &'static str, ops: &ScriptOps) -> Result<GroupOutcome, StoreError> {
        let mut invocation = COMMIT.prepare_invoke();
        for key in &ops.keys {
            invocation.key(key);
        }
        for arg in &ops.args {
            invocation.arg(arg.as_slice());
        }
        let reply = array(self.script(operation, &invocation).await?)?;
        let mut items = reply.into_iter();
        match items.next().and_then(string).as_deref() {
            Some("OK") => Ok(GroupOutcome::Applied(items.next().map(integer).transpose()?.unwrap_or(0))),
            Some("FENCED") => Ok(GroupOutcome::Fenced),
            Some("FULL") => Ok(GroupOutcome::OutboxFull(items.next().map(integer).transpose()?.unwrap_or(0))),
            Some("QUOTA") => {
                let label = items.next().and_then(string).unwrap_or_default();
                crate::store::UploadQuotaKind::from_label(&label)
                    .map(GroupOutcome::QuotaExceeded)
                    .ok_or_else(|| StoreError::Unavailable(format!("redis: unknown upload quota {label:?}")))
            }
            Some("CONFLICT") => {
                let revisions = items.next().and_then(string).unwrap_or_default();
                Ok(GroupOutcome::Conflict(revisions, items.next().and_then(string).unwrap_or_default()))
            }
            other => Err(StoreError::Unavailable(format!("redis: commit script answered {other:?}"))),
        }
    }

    /// The global step of a cluster commit: each write to its own key, one pipeline per node, all at once.
    async fn run_global(&self, writes: &[GlobalWrite]) -> Result<(), StoreError> {
        let requests = writes
            .iter()
            .map(|write| {
                let (key, command) = match write {
                    GlobalWrite::IndexDevices(ids) => {
                        let key = self.keys.device_index();
                        let mut command = redis::cmd("ZADD");
                        command.arg(&key);
                        for id in ids {
                            command.arg(0).arg(id);
                        }
                        (key, command)
                    }
                    GlobalWrite::Content(key, json) => (key.clone(), redis::Cmd::set(key, json.as_slice())),
                    GlobalWrite::Term { term, device_id, joined: true } => {
                        let key = self.keys.term(term);
                        let mut command = redis::cmd("ZADD");
                        command.arg(&key).arg(0).arg(device_id);
                        (key, command)
                    }
                    GlobalWrite::Term { term, device_id, joined: false } => {
                        let key = self.keys.term(term);
                        let command = Cmd::zrem(&key, device_id);
                        (key, command)
                    }
                    GlobalWrite::NotificationDevice(key, device_id, expires_at) => {
                        let mut command = redis::cmd("SET");
                        command.arg(key).arg(device_id).arg("PXAT").arg(*expires_at);
                        (key.clone(), command)
                    }
                };
                (slot::key_slot(key.as_bytes()), command)
            })
            .collect::<Vec<(u16, Cmd)>>();
        // One pipeline per node, sent at once (a single write goes alone, without reading the slot table).
        if let [(_, command)] = requests.as_slice() {
            let _: Value = self.call("commit", command).await?;
            return Ok(());
        }
        self.per_slot("commit", requests).await?;
        Ok(())
    }

    /// Applies a plan: on a cluster the fence pre-check (only when there are global writes),
    /// the global step, the fence's group, then the other groups at once.
    async fn apply(&self, plan: CommitPlan, fence: Option<&Fence>) -> Result<(), StoreError> {
        let fenced = |fence: Option<&Fence>| StoreError::Fenced {
            device_id: fence.map(|fence| fence.device_id.clone()).unwrap_or_default(),
        };
        if let (Some(fence), false) = (fence, plan.global.is_empty()) {
            // Global keys live in other slots: the fence is checked before they are written too.
            let mut check = ScriptOps::default();
            check.fence(&self.keys, fence, FenceMode::Check);
            if let GroupOutcome::Fenced = self.run_group("commit", &check).await? {
                metrics().store_leases.with_label_values(&["fenced"]).inc();
                return Err(fenced(Some(fence)));
            }
        }
        if let Some(charge) = &plan.charge {
            // Before any other write: a refused charge writes nothing.
            if let GroupOutcome::QuotaExceeded(quota) = self.run_group("commit", charge).await? {
                return Err(StoreError::QuotaExceeded { quota });
            }
        }
        let mut global = plan.global;
        let left = self.join_terms(&plan.terms, &mut global).await?;
        if !global.is_empty() {
            self.run_global(&global).await?;
        }
        let conflict = |revisions: String, key: String| {
            let (scope, collection) = plan.record_collections.get(&revisions).cloned().unwrap_or_default();
            StoreError::Conflict { scope, collection, key }
        };
        let mut groups = plan.groups;
        // The fence's group first, then those that check record revisions: a refusal there writes nothing else.
        let first: Vec<u32> = plan.fence_group.into_iter().chain(plan.record_groups.iter().copied()).collect();
        for shard in first {
            let Some(ops) = groups.remove(&shard) else { continue };
            match self.run_group("commit", &ops).await? {
                GroupOutcome::Applied(_) => {}
                GroupOutcome::Fenced => {
                    metrics().store_leases.with_label_values(&["fenced"]).inc();
                    return Err(fenced(fence));
                }
                GroupOutcome::OutboxFull(len) => return Err(StoreError::OutboxFull { len }),
                GroupOutcome::QuotaExceeded(quota) => return Err(StoreError::QuotaExceeded { quota }),
                GroupOutcome::Conflict(revisions, key) => return Err(conflict(revisions, key)),
            }
        }
        let outcomes = join_all(groups.values().map(|ops| self.run_group("commit", ops))).await;
        let mut full = None;
        for outcome in outcomes {
            match outcome? {
                GroupOutcome::Applied(_) => {}
                GroupOutcome::OutboxFull(len) => full = Some(len),
                GroupOutcome::QuotaExceeded(quota) => return Err(StoreError::QuotaExceeded { quota }),
                GroupOutcome::Fenced => return Err(fenced(fence)),
                GroupOutcome::Conflict(revisions, key) => return Err(conflict(revisions, key)),
            }
        }
        if let Some(len) = full {
            return Err(StoreError::OutboxFull { len });
        }
        if !left.is_empty() {
            self.run_global(&left).await?;
        }
        Ok(())
    }

    /// On Redis Cluster, the index moves of the batch's devices: their stored terms read, the terms they join
    /// added to `global` (written before the groups), the ZREMs of the terms they leave returned (for after).
    async fn join_terms(
        &self,
        terms: &[(String, BTreeSet<String>)],
        global: &mut Vec<GlobalWrite>,
    ) -> Result<Vec<GlobalWrite>, StoreError> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // A session step writes one device: one GET, not a slot-table read and a pipeline.
        let stored = match terms {
            [(id, _)] => vec![self.call::<Value>("commit", &Cmd::get(self.keys.device_terms(id))).await?],
            _ => {
                let reads = terms
                    .iter()
                    .map(|(id, _)| {
                        (Self::slot_of_shard(self.keys.shard_of_device(id)), Cmd::get(self.keys.device_terms(id)))
                    })
                    .collect();
                self.per_slot("commit", reads).await?
            }
        };
        let mut left = Vec::new();
        for ((device_id, after), stored) in terms.iter().zip(stored) {
            let before: BTreeSet<String> = match bytes(stored) {
                Some(json) => Self::decode("commit", &self.keys.device_terms(device_id), &json)?,
                None => BTreeSet::new(),
            };
            let (leaves, joins) = term_changes(&before, after);
            global.extend(joins.into_iter().map(|term| GlobalWrite::Term {
                term,
                device_id: device_id.clone(),
                joined: true,
            }));
            left.extend(leaves.into_iter().map(|term| GlobalWrite::Term {
                term,
                device_id: device_id.clone(),
                joined: false,
            }));
        }
        Ok(left)
    }

    /// A page of command records from one of the device's id indexes.
    async fn command_page(
        &self,
        operation: &'static str,
        index: String,
        device_id: &str,
        lowest: String,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let commands = self.keys.commands(device_id);
        let mut invocation = COMMAND_PAGE.prepare_invoke();
        invocation.key(&index).key(&commands).arg(lowest).arg(limit);
        let values = array(self.script(operation, &invocation).await?)?;
        Self::decode_records(operation, &commands, values)
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|error| StoreError::Io(format!("cannot encode a record: {error}")))
}

/// The bytes of a bulk or simple string reply; `None` for nil.
fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

fn string(value: Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes).ok())
}

fn integer(value: Value) -> Result<u64, StoreError> {
    let unexpected = |value: &Value| StoreError::Unavailable(format!("redis: expected a number, got {value:?}"));
    match value {
        Value::Int(number) => u64::try_from(number).map_err(|_| unexpected(&Value::Int(number))),
        Value::Nil => Ok(0),
        other => string(other.clone()).and_then(|text| text.parse().ok()).ok_or_else(|| unexpected(&other)),
    }
}

/// The items of an array reply (nil is empty).
fn array(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(StoreError::Unavailable(format!("redis: expected an array, got {other:?}"))),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        let key = self.keys.device(device_id);
        let bytes: Option<Vec<u8>> = self.call("get_device", &Cmd::get(&key)).await?;
        bytes.map(|bytes| Self::decode("get_device", &key, &bytes)).transpose()
    }

    /// One pipeline on a server, counted as one `get_device` round trip. On a cluster the keys are in different
    /// slots: the client routes each read itself (a pipeline per node would first read the slot table).
    async fn get_device_with_counts(
        &self,
        device_id: &str,
        windows: &[(&str, Millis)],
        now: Millis,
    ) -> Result<(Option<Device>, Vec<u64>), StoreError> {
        if self.keys.is_cluster() {
            return super::device_and_counts_one_by_one(self, device_id, windows, now).await;
        }
        let device_key = self.keys.device(device_id);
        let mut reads = redis::pipe();
        reads.get(&device_key);
        for (key, window) in windows {
            reads.get(self.window_counter(key, *window, now).0);
        }
        let values: Vec<Value> = self.pipeline("get_device", &reads).await?;
        let mut values = values.into_iter();
        let device =
            values.next().and_then(bytes).map(|bytes| Self::decode("get_device", &device_key, &bytes)).transpose()?;
        let counts = values.map(integer).collect::<Result<Vec<_>, _>>()?;
        if counts.len() != windows.len() {
            return Err(StoreError::Unavailable(format!(
                "redis: {} counts for {} windows in a get_device pipeline",
                counts.len(),
                windows.len()
            )));
        }
        Ok((device, counts))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError> {
        let keys = &self.keys;
        let shard = keys.shard_of_device(device_id);
        // On a cluster the terms are read first and left after the record is gone: a crash between leaves index
        // entries that listing skips (their device is missing). On a server the script leaves them.
        let terms: Vec<String> = if keys.is_cluster() {
            let stored: Option<Vec<u8>> = self.call("delete_device", &Cmd::get(keys.device_terms(device_id))).await?;
            match stored {
                Some(json) => Self::decode("delete_device", &keys.device_terms(device_id), &json)?,
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let mut invocation = DELETE_DEVICE.prepare_invoke();
        invocation.key(keys.device(device_id)).key(keys.open_devices(shard)).key(keys.fencing(device_id));
        // The id counters and the lease epoch stay: a device registered again never reuses a
        // command or alert id, and a node still holding an old fence stays fenced.
        for key in [
            keys.commands(device_id),
            keys.command_ids(device_id),
            keys.queued(device_id),
            keys.pending(device_id),
            keys.sessions(device_id),
            keys.history(device_id),
            keys.history_order(device_id),
            keys.ended(device_id),
            keys.mirror(device_id),
            keys.alerts(device_id),
            keys.lease(device_id),
            keys.device_terms(device_id),
        ] {
            invocation.key(key);
        }
        invocation.arg(device_id);
        if keys.is_cluster() {
            invocation.arg("0");
        } else {
            invocation.key(keys.device_index()).arg("1").arg(keys.term_prefix());
        }
        let existed = integer(self.script("delete_device", &invocation).await?)? > 0;
        if keys.is_cluster() {
            // The record is gone first: a crash here leaves index entries that listing skips.
            let mut left =
                vec![(slot::key_slot(keys.device_index().as_bytes()), Cmd::zrem(keys.device_index(), device_id))];
            for term in terms {
                let key = keys.term(&term);
                left.push((slot::key_slot(key.as_bytes()), Cmd::zrem(&key, device_id)));
            }
            self.per_slot("delete_device", left).await?;
        }
        Ok(existed)
    }

    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        let Some(walked) = self.walked_index(filter).await? else { return Ok(DevicePage::default()) };
        self.walk_devices(&walked, filter, after, limit.max(1), LIST_SCAN_BUDGET).await
    }

    async fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError> {
        let terms = filter_terms(filter);
        if terms.is_empty() {
            return integer(self.call("count_devices", &Cmd::zcard(self.keys.device_index())).await?);
        }
        let Some((term, count)) = self.rarest_term(&terms).await? else { return Ok(0) };
        if terms.len() == 1 || count == 0 {
            return Ok(count);
        }
        let walked = self.keys.term(&term);
        let mut matching = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.walk_devices(&walked, filter, after.as_deref(), LIST_CHUNK, usize::MAX).await?;
            matching += page.devices.len() as u64;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(matching),
            }
        }
    }

    #[tracing::instrument(level = "debug", skip(self, commands))]
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
        // INCRBY reserves the ids: concurrent enqueues get distinct ones; a failure after it only skips ids.
        let last: u64 = self.call("enqueue_commands", &Cmd::incr(self.keys.last_command_id(device_id), count)).await?;
        let first_id = last.saturating_sub(count) + 1;
        let mut ops = ScriptOps::default();
        let mut ids = Vec::with_capacity(commands.len());
        for record in queued_records(device_id, first_id, commands, now) {
            let id_text = record.id.to_string();
            let id_bytes = id_text.as_bytes();
            ops.op("HSET", &[&self.keys.commands(device_id)], &[id_bytes, &encode(&record)?]);
            ops.op("ZADD", &[&self.keys.command_ids(device_id)], &[id_bytes, id_bytes]);
            ops.op("ZADD", &[&self.keys.queued(device_id)], &[id_bytes, id_bytes]);
            ops.op("SADD", &[&self.keys.pending(device_id)], &[id_bytes]);
            ids.push(record.id);
        }
        self.run_group("enqueue_commands", &ops).await?;
        Ok(ids)
    }

    async fn get_command(&self, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError> {
        let key = self.keys.commands(device_id);
        let bytes: Option<Vec<u8>> = self.call("get_command", &Cmd::hget(&key, id)).await?;
        bytes.map(|bytes| Self::decode("get_command", &key, &bytes)).transpose()
    }

    async fn list_commands(
        &self,
        device_id: &str,
        after: Option<CommandId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let lowest = after.map_or_else(|| "-inf".to_owned(), |after| format!("({after}"));
        self.command_page("list_commands", self.keys.command_ids(device_id), device_id, lowest, limit).await
    }

    async fn queued_commands(&self, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        self.command_page("queued_commands", self.keys.queued(device_id), device_id, "-inf".to_owned(), limit).await
    }

    async fn pending_count(&self, device_id: &str) -> Result<u64, StoreError> {
        self.call("pending_count", &Cmd::scard(self.keys.pending(device_id))).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get_session(&self, device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError> {
        let sessions = self.keys.sessions(device_id);
        let mut lookup = redis::pipe();
        lookup.hget(&sessions, session_id).get(self.keys.ended(device_id));
        let (open, ended): (Option<Vec<u8>>, Option<Vec<u8>>) = self.pipeline("get_session", &lookup).await?;
        if let Some(bytes) = open {
            return Self::decode("get_session", &sessions, &bytes).map(Some);
        }
        let Some(bytes) = ended else { return Ok(None) };
        let state: SessionState = Self::decode("get_session", &self.keys.ended(device_id), &bytes)?;
        Ok((state.id == session_id).then_some(state))
    }

    #[tracing::instrument(level = "debug", skip(self, awaiting, lease), fields(node_id = %lease.node_id))]
    async fn load_session(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        queue_limit: usize,
        lease: &LeaseRequest,
    ) -> Result<SessionLoad, StoreError> {
        const OPERATION: &str = "load_session";
        let keys = &self.keys;
        let commands = keys.commands(device_id);
        let mut invocation = LOAD_SESSION.prepare_invoke();
        invocation
            .key(keys.lease(device_id))
            .key(keys.fencing(device_id))
            .key(keys.device(device_id))
            .key(keys.mirror(device_id))
            .key(keys.queued(device_id))
            .key(&commands)
            .key(keys.last_alert_id(device_id));
        invocation.arg(&lease.node_id).arg(lease.ttl.max(1)).arg(queue_limit).arg(lease.live_nodes.len());
        for node in &lease.live_nodes {
            invocation.arg(node);
        }
        for id in awaiting {
            invocation.arg(*id);
        }
        let mut reply = array(self.script(OPERATION, &invocation).await?)?.into_iter();
        let mut next = || reply.next().unwrap_or(Value::Nil);
        match string(next()).as_deref() {
            Some("UNKNOWN") => Ok(SessionLoad::UnknownDevice),
            Some("HELD") => {
                let node_id = string(next()).unwrap_or_default();
                let epoch = integer(next())?;
                metrics().store_leases.with_label_values(&["held"]).inc();
                Ok(SessionLoad::LeaseHeld { node_id, epoch })
            }
            Some("LOADED") => {
                let epoch = integer(next())?;
                let outcome = match string(next()).as_deref() {
                    Some("renewed") => "renewed",
                    Some("taken_over") => "taken_over",
                    _ => "granted",
                };
                metrics().store_leases.with_label_values(&[outcome]).inc();
                let device_key = keys.device(device_id);
                let Some(device_bytes) = bytes(next()) else {
                    return Err(StoreError::Unavailable("redis: load_session lost the device record".to_owned()));
                };
                let device = Self::decode(OPERATION, &device_key, &device_bytes)?;
                let mirror = match bytes(next()) {
                    Some(bytes) => Self::decode(OPERATION, &keys.mirror(device_id), &bytes)?,
                    None => MirrorRecord::default(),
                };
                let queued = Self::decode_records(OPERATION, &commands, array(next())?)?;
                // Awaited ids without a record are skipped (the command was deleted with its device's history).
                let awaiting = array(next())?
                    .into_iter()
                    .filter_map(bytes)
                    .map(|bytes| Self::decode(OPERATION, &commands, &bytes))
                    .collect::<Result<Vec<CommandRecord>, StoreError>>()?;
                let next_alert_id = integer(next())?.saturating_add(1);
                let lease = Lease { device_id: device_id.to_owned(), node_id: lease.node_id.clone(), epoch };
                Ok(SessionLoad::Loaded(Box::new(SessionSnapshot {
                    lease,
                    device,
                    mirror,
                    queued,
                    awaiting,
                    next_alert_id,
                })))
            }
            other => Err(StoreError::Unavailable(format!("redis: load_session script answered {other:?}"))),
        }
    }

    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        const OPERATION: &str = "open_sessions";
        let indexes: Vec<(u16, Cmd)> = (0..self.keys.shards())
            .map(|shard| (Self::slot_of_shard(shard), Cmd::smembers(self.keys.open_devices(shard))))
            .collect();
        let mut device_ids = BTreeSet::new();
        for members in self.per_slot(OPERATION, indexes).await? {
            device_ids.extend(array(members)?.into_iter().filter_map(string));
        }
        let reads: Vec<(u16, Cmd)> = device_ids
            .iter()
            .map(|device_id| {
                let shard = self.keys.shard_of_device(device_id);
                (Self::slot_of_shard(shard), Cmd::hvals(self.keys.sessions(device_id)))
            })
            .collect();
        let mut states = Vec::new();
        for (device_id, values) in device_ids.iter().zip(self.per_slot(OPERATION, reads).await?) {
            let key = self.keys.sessions(device_id);
            states.extend(Self::decode_records::<SessionState>(OPERATION, &key, array(values)?)?);
        }
        Ok(states)
    }

    async fn list_sessions(&self, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        const OPERATION: &str = "list_sessions";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = &self.keys;
        let mut invocation = LIST_SESSIONS.prepare_invoke();
        invocation.key(keys.sessions(device_id)).key(keys.history_order(device_id)).key(keys.history(device_id));
        invocation.arg(limit);
        let mut reply = array(self.script(OPERATION, &invocation).await?)?.into_iter();
        let open = array(reply.next().unwrap_or(Value::Nil))?;
        let ended = array(reply.next().unwrap_or(Value::Nil))?;
        let open: Vec<SessionState> = Self::decode_records(OPERATION, &keys.sessions(device_id), open)?;
        let mut summaries: Vec<SessionSummary> = Self::decode_records(OPERATION, &keys.history(device_id), ended)?;
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
        let bytes: Option<Vec<u8>> = self.call("get_mirror", &Cmd::get(&key)).await?;
        bytes.map(|bytes| Self::decode("get_mirror", &key, &bytes)).transpose()
    }

    /// Two round trips: the request's device, then its record (keyed under the device's tag).
    async fn get_notification(&self, request_id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        let device_key = self.keys.notification_device(request_id);
        let device_id: Option<String> = self.call("get_notification", &Cmd::get(&device_key)).await?;
        let Some(device_id) = device_id else { return Ok(None) };
        self.notification_with_delivery("get_notification", &device_id, request_id).await
    }

    async fn latest_notification(&self, device_id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        let pointer = self.keys.latest_notification(device_id);
        let request_id: Option<String> = self.call("latest_notification", &Cmd::hget(&pointer, "request_id")).await?;
        let Some(request_id) = request_id else { return Ok(None) };
        self.notification_with_delivery("latest_notification", device_id, &request_id).await
    }

    async fn list_alerts(&self, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.alerts(device_id);
        let values: Vec<Vec<u8>> = self.call("list_alerts", &Cmd::zrevrange(&key, 0, limit as isize - 1)).await?;
        values.iter().map(|bytes| Self::decode("list_alerts", &key, bytes)).collect()
    }

    async fn next_alert_id(&self, device_id: &str) -> Result<u64, StoreError> {
        let last: Option<u64> = self.call("next_alert_id", &Cmd::get(self.keys.last_alert_id(device_id))).await?;
        Ok(last.unwrap_or(0).saturating_add(1))
    }

    /// An operator write: the share of a device upload it replaces is released with it, in one script on a
    /// standalone server; on a cluster (the counters have a slot of their own) just before it, so a crash
    /// between them leaves the old upload uncounted, never a quota held by nothing.
    async fn put_content(&self, item: RepositoryItem) -> Result<(), StoreError> {
        let content = self.keys.content(&item.path);
        let mut ops = ScriptOps::default();
        ops.upload_release(&self.keys, &item.path);
        if self.keys.is_cluster() {
            self.run_group("put_content", &ops).await?;
            let () = self.call("put_content", &Cmd::set(content, encode(&item)?)).await?;
        } else {
            ops.op("SET", &[&content], &[&encode(&item)?]);
            self.run_group("put_content", &ops).await?;
        }
        Ok(())
    }

    async fn upload_usage(&self, device_id: &str) -> Result<crate::store::UploadUsage, StoreError> {
        let mut command = redis::cmd("HMGET");
        command
            .arg(self.keys.upload_usage())
            .arg(format!("bytes:{device_id}"))
            .arg(format!("items:{device_id}"))
            .arg("total");
        let values: Vec<Option<u64>> = self.call("upload_usage", &command).await?;
        let value = |index: usize| values.get(index).copied().flatten().unwrap_or(0);
        Ok(crate::store::UploadUsage { device_bytes: value(0), device_items: value(1), total_bytes: value(2) })
    }

    async fn get_content(&self, path: &str) -> Result<Option<RepositoryItem>, StoreError> {
        let key = self.keys.content(path);
        let bytes: Option<Vec<u8>> = self.call("get_content", &Cmd::get(&key)).await?;
        bytes.map(|bytes| Self::decode("get_content", &key, &bytes)).transpose()
    }

    /// Like `put_content`: one script on a standalone server; on a cluster the release, then the delete.
    async fn delete_content(&self, path: &str) -> Result<bool, StoreError> {
        let content = self.keys.content(path);
        let mut ops = ScriptOps::default();
        ops.upload_release(&self.keys, path);
        if self.keys.is_cluster() {
            self.run_group("delete_content", &ops).await?;
            let deleted: u64 = self.call("delete_content", &Cmd::del(content)).await?;
            return Ok(deleted > 0);
        }
        ops.op("DEL", &[&content], &[]);
        match self.run_group("delete_content", &ops).await? {
            GroupOutcome::Applied(deleted) => Ok(deleted > 0),
            other => Err(StoreError::Unavailable(format!("redis: delete_content answered {other:?}"))),
        }
    }

    async fn get_record(&self, scope: &str, collection: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let mut found = self.records_of("get_record", scope, collection, &[key.to_owned()]).await?;
        Ok(found.pop().flatten())
    }

    async fn get_records(
        &self,
        scope: &str,
        collection: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Record>>, StoreError> {
        self.records_of("get_records", scope, collection, keys).await
    }

    async fn list_records(
        &self,
        scope: &str,
        collection: &str,
        label: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match label {
            Some(label) => self.keys.record_label(scope, collection, label),
            None => self.keys.record_keys(scope, collection),
        };
        let start = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let page: Vec<String> = self
            .call(
                "list_records",
                Cmd::new().arg("ZRANGEBYLEX").arg(&index).arg(start).arg("+").arg("LIMIT").arg(0).arg(limit),
            )
            .await?;
        let records = self.records_of("list_records", scope, collection, &page).await?;
        // A key of the index whose record is gone was deleted between the two reads: skipped.
        Ok(records.into_iter().flatten().collect())
    }

    async fn count_records(
        &self,
        scope: &str,
        collection: &str,
        labels: &[String],
    ) -> Result<RecordCounts, StoreError> {
        let mut counts = redis::pipe();
        counts.zcard(self.keys.record_keys(scope, collection));
        for label in labels {
            counts.zcard(self.keys.record_label(scope, collection, label));
        }
        let figures: Vec<u64> = self.pipeline("count_records", &counts).await?;
        let mut figures = figures.into_iter();
        let total = figures.next().unwrap_or(0);
        Ok(RecordCounts { total, labels: figures.collect() })
    }

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(device_id = batch.fence.as_ref().map(|fence| fence.device_id.as_str()))
    )]
    async fn commit(&self, mut batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Commands queued by the batch: their ids reserved first (as enqueue_commands does; a refused batch only
        // skips ids), then written by the batch's scripts like any command record.
        let enqueued = std::mem::take(&mut batch.enqueued);
        let reservations = enqueued.iter().filter(|queue| !queue.commands.is_empty()).map(|queue| {
            let command = Cmd::incr(self.keys.last_command_id(&queue.device_id), queue.commands.len() as u64);
            async move { self.call::<u64>("commit", &command).await }
        });
        let lasts = join_all(reservations).await.into_iter().collect::<Result<Vec<u64>, StoreError>>()?;
        for (queue, last) in enqueued.into_iter().filter(|queue| !queue.commands.is_empty()).zip(lasts) {
            let first_id = last.saturating_sub(queue.commands.len() as u64) + 1;
            batch.commands.extend(queued_records(&queue.device_id, first_id, queue.commands, queue.now));
        }
        let plan = commit::plan(
            &self.keys,
            &batch,
            self.options.outbox_limit_per_shard,
            self.options.session_history_per_device,
        )?;
        let result = self.apply(plan, batch.fence.as_ref()).await;
        match &result {
            Err(StoreError::OutboxFull { len }) => tracing::warn!(len, "outbox shard full: commit refused"),
            Err(StoreError::Fenced { device_id }) => tracing::info!(device_id, "stale fence: commit refused"),
            _ => {}
        }
        result
    }

    fn outbox_shards(&self) -> u32 {
        self.keys.shards()
    }

    fn outbox_shard_of(&self, event_key: &str) -> u32 {
        self.keys.shard_of_device(event_key)
    }

    async fn outbox(&self, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        if limit == 0 || shard >= self.keys.shards() {
            return Ok(Vec::new());
        }
        let events = self.keys.outbox_events(shard);
        let mut invocation = OUTBOX_READ.prepare_invoke();
        invocation.key(self.keys.outbox_order(shard)).key(&events).arg(limit);
        let values = array(self.script("outbox", &invocation).await?)?;
        // Read atomically with the order: every id has its event.
        Self::decode_records("outbox", &events, values)
    }

    async fn ack_outbox(&self, shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        if event_ids.is_empty() || shard >= self.keys.shards() {
            return Ok(());
        }
        let mut invocation = OUTBOX_ACK.prepare_invoke();
        invocation.key(self.keys.outbox_order(shard)).key(self.keys.outbox_events(shard));
        for id in event_ids {
            invocation.arg(id);
        }
        self.script("ack_outbox", &invocation).await?;
        Ok(())
    }

    async fn release_due_events(&self, shard: u32, now: Millis, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 || shard >= self.keys.shards() {
            return Ok(0);
        }
        let mut invocation = RELEASE_DUE.prepare_invoke();
        invocation
            .key(self.keys.scheduled_order(shard))
            .key(self.keys.scheduled_events(shard))
            .key(self.keys.outbox_events(shard))
            .key(self.keys.outbox_order(shard))
            .key(self.keys.outbox_sequence(shard))
            .arg(now)
            .arg(limit)
            .arg(self.options.outbox_limit_per_shard);
        let released = integer(self.script("release_due_events", &invocation).await?)?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    async fn outbox_lengths(&self, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        let existing: Vec<u32> = shards.iter().copied().filter(|shard| *shard < self.keys.shards()).collect();
        let requests = existing
            .iter()
            .map(|shard| (Self::slot_of_shard(*shard), Cmd::zcard(self.keys.outbox_order(*shard))))
            .collect();
        let mut lengths = self.per_slot("outbox_len", requests).await?.into_iter();
        shards
            .iter()
            .map(
                |shard| if *shard < self.keys.shards() { integer(lengths.next().unwrap_or(Value::Nil)) } else { Ok(0) },
            )
            .collect()
    }

    async fn heartbeat(&self, node: &NodeInfo, ttl: Millis, now: Millis) -> Result<Vec<NodeInfo>, StoreError> {
        let mut invocation = HEARTBEAT.prepare_invoke();
        invocation.key(self.keys.nodes()).key(self.keys.node_urls());
        invocation.arg(&node.id).arg(&node.internal_url).arg(now.saturating_add(ttl)).arg(now);
        let mut reply = array(self.script("heartbeat", &invocation).await?)?.into_iter();
        let ids = array(reply.next().unwrap_or(Value::Nil))?;
        let urls = array(reply.next().unwrap_or(Value::Nil))?;
        let mut nodes: Vec<NodeInfo> = ids
            .into_iter()
            .zip(urls)
            .filter_map(|(id, url)| Some(NodeInfo { id: string(id)?, internal_url: string(url)? }))
            .collect();
        nodes.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(nodes)
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        let mut ops = ScriptOps::default();
        ops.op("ZREM", &[&self.keys.nodes()], &[node_id.as_bytes()]);
        ops.op("HDEL", &[&self.keys.node_urls()], &[node_id.as_bytes()]);
        self.run_group("leave", &ops).await?;
        Ok(())
    }

    async fn record_once(&self, key: &str, ttl: Millis, now: Millis) -> Result<bool, StoreError> {
        let ttl = ttl.max(1);
        let mut invocation = RECORD_ONCE.prepare_invoke();
        invocation.key(self.keys.once(key)).arg(now).arg(now.saturating_add(ttl)).arg(ttl);
        Ok(integer(self.script("record_once", &invocation).await?)? == 1)
    }

    async fn count_in_window(&self, key: &str, hits: u64, window: Millis, now: Millis) -> Result<u64, StoreError> {
        let (counter, end) = self.window_counter(key, window, now);
        let window = window.max(1);
        if hits == 0 {
            return integer(self.call("count_in_window", &Cmd::get(&counter)).await?);
        }
        // Kept a window past its end, so callers whose clocks lag a little still find it.
        let keep_for = end.saturating_sub(now).saturating_add(window);
        let mut invocation = COUNT_IN_WINDOW.prepare_invoke();
        invocation.key(&counter).arg(hits).arg(keep_for);
        integer(self.script("count_in_window", &invocation).await?)
    }

    /// The expiry goes in the value: reads judge it by the caller's clock, as the embedded engine does.
    async fn remember(&self, key: &str, value: &str, ttl: Millis, now: Millis) -> Result<(), StoreError> {
        let ttl = ttl.max(1);
        let stored = format!("{}\n{value}", now.saturating_add(ttl));
        let command = redis::cmd("SET").arg(self.keys.remembered(key)).arg(stored).arg("PX").arg(ttl).to_owned();
        let _: () = self.call("remember", &command).await?;
        Ok(())
    }

    async fn recall(&self, key: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let stored: Option<String> = self.call("recall", &Cmd::get(self.keys.remembered(key))).await?;
        Ok(stored.and_then(|stored| {
            let (expires_at, value) = stored.split_once('\n')?;
            (expires_at.parse::<Millis>().ok()? > now).then(|| value.to_owned())
        }))
    }

    async fn take_rate_token(&self, key: &str, per_second: u32, now: Millis) -> Result<Millis, StoreError> {
        let mut invocation = RATE_TOKEN.prepare_invoke();
        invocation.key(self.keys.rate_bucket(key)).arg(now).arg(per_second.max(1)).arg(super::RATE_BUCKET_KEEP_MILLIS);
        integer(self.script("take_rate_token", &invocation).await?)
    }

    /// INCR is atomic on its key's node, on a cluster as on one server.
    async fn next_sequence(&self, key: &str) -> Result<u64, StoreError> {
        integer(self.call("next_sequence", &Cmd::incr(self.keys.sequence(key), 1)).await?)
    }
}
