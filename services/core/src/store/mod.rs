//! The Store: everything the server must not lose, behind one trait with engines chosen by URL.
//!
//! `file:///var/lib/omadm` (or a plain path) opens the embedded engine;
//! `redis://host:port` the Redis engine. Both pass the same conformance suite
//! (`store::conformance`, feature `conformance`; run by `tests/store_embedded.rs` and `tests/store_redis.rs`).
//!
//! Writes that belong together are one [`WriteBatch`], applied atomically: a
//! session step's session state, command outcomes, mirror, alerts and the
//! events they produce (the outbox) land together or not at all. On Redis
//! Cluster a batch is atomic per device (all of a device's keys share a slot);
//! a batch that spans devices or global records is applied device by device.
//!
//! Short-lived shared records have two general calls: [`Store::record_once`]
//! (a key seen once within a TTL: the Digest replay cache) and
//! [`Store::count_in_window`] (hits of a key per fixed window: throttles);
//! lasting counters have one, [`Store::next_sequence`] (the notifier's NOTIFICATION-IDs).
//!
//! Cluster coordination lives here too, because it is shared state: node
//! membership ([`Store::heartbeat`]), the per-device session lease granted by
//! [`Store::load_session`] and checked by [`WriteBatch::fence`]
//! (see [`crate::cluster`]).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod embedded;
pub mod index;
pub mod interpose;
mod redis;

use async_trait::async_trait;

use crate::bus::Event;
use crate::clock::Millis;
use crate::cluster::{Fence, Lease, LeaseRequest, NodeInfo};
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand,
    NotificationDelivery, NotificationRecord, Record, RecordCounts, RecordWrite, RepositoryItem, SessionState,
    SessionSummary,
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
    /// The batch's [`Fence`] no longer holds: another node took the device's
    /// lease. Nothing was written; the step must not be answered.
    #[error("the lease of device {device_id:?} moved to another node; nothing written")]
    Fenced { device_id: String },
    /// The outbox shard this batch's events go to holds its bound of unpublished
    /// events (the bus has been down for long): nothing was written.
    #[error("the outbox is full ({len} events waiting); nothing written")]
    OutboxFull { len: u64 },
    /// The batch's [`UploadCharge`] would take a device's uploads, or all device uploads, past their
    /// quota: nothing was written.
    #[error("the upload is over {quota}; nothing written")]
    QuotaExceeded { quota: UploadQuotaKind },
    /// A [`RecordWrite`] of the batch expected another revision of its record (another writer replaced it since
    /// it was read): nothing was written. The writer reads again and decides again.
    #[error("record {collection}/{key} of {scope:?} changed since it was read; nothing written")]
    Conflict { scope: String, collection: String, key: String },
}

/// Which upload quota a refused [`UploadCharge`] would have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadQuotaKind {
    /// The bytes one device's uploads may hold.
    DeviceBytes,
    /// How many items one device's uploads may be.
    DeviceItems,
    /// The bytes all device uploads together may hold.
    TotalBytes,
}

impl UploadQuotaKind {
    /// Metric label (`omadm_uploads_refused_total{reason}`), also the word the Redis engine's script answers.
    pub fn label(self) -> &'static str {
        match self {
            UploadQuotaKind::DeviceBytes => "device_bytes",
            UploadQuotaKind::DeviceItems => "device_items",
            UploadQuotaKind::TotalBytes => "total_bytes",
        }
    }

    pub fn from_label(label: &str) -> Option<UploadQuotaKind> {
        [UploadQuotaKind::DeviceBytes, UploadQuotaKind::DeviceItems, UploadQuotaKind::TotalBytes]
            .into_iter()
            .find(|kind| kind.label() == label)
    }
}

impl std::fmt::Display for UploadQuotaKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            UploadQuotaKind::DeviceBytes => "the device's upload quota in bytes",
            UploadQuotaKind::DeviceItems => "the device's upload quota in items",
            UploadQuotaKind::TotalBytes => "the cap on the bytes of all device uploads",
        })
    }
}

/// The limits an upload is charged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_bytes_per_device: u64,
    pub max_items_per_device: u64,
    pub max_total_bytes: u64,
}

/// A device upload's share of the upload quotas, charged in the batch that writes its content.
///
/// The store keeps, per path, the size and owner of the device upload stored there, per device the
/// bytes and items of its uploads, and the bytes of all device uploads. Charging replaces what the
/// path held (its bytes are released first), and is refused with [`StoreError::QuotaExceeded`] when
/// a total would pass its limit; the check and the counters move with the content, atomically.
/// Operator writes (`put_content`, `delete_content`) over a device upload release its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCharge {
    pub device_id: String,
    /// The repository path the batch writes (one of its `contents`).
    pub path: String,
    /// The size of the content written there.
    pub bytes: u64,
    pub limits: UploadLimits,
}

/// What a device's uploads hold, as [`Store::upload_usage`] tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadUsage {
    /// The device's upload bytes and items.
    pub device_bytes: u64,
    pub device_items: u64,
    /// The bytes of every device's uploads.
    pub total_bytes: u64,
}

/// The quota a charge would pass, judged on what its path holds (`previous`: owner and bytes) and the counters.
pub fn quota_refusal(
    charge: &UploadCharge,
    previous: Option<(&str, u64)>,
    usage: UploadUsage,
) -> Option<UploadQuotaKind> {
    let (released_own_bytes, released_own_items, released_total) = match previous {
        Some((owner, bytes)) if owner == charge.device_id => (bytes, 1, bytes),
        Some((_, bytes)) => (0, 0, bytes),
        None => (0, 0, 0),
    };
    let device_bytes = usage.device_bytes.saturating_sub(released_own_bytes).saturating_add(charge.bytes);
    let device_items = usage.device_items.saturating_sub(released_own_items).saturating_add(1);
    let total_bytes = usage.total_bytes.saturating_sub(released_total).saturating_add(charge.bytes);
    if total_bytes > charge.limits.max_total_bytes {
        Some(UploadQuotaKind::TotalBytes)
    } else if device_bytes > charge.limits.max_bytes_per_device {
        Some(UploadQuotaKind::DeviceBytes)
    } else if device_items > charge.limits.max_items_per_device {
        Some(UploadQuotaKind::DeviceItems)
    } else {
        None
    }
}

/// Knobs of a store engine that the URL does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Unpublished events one outbox shard may hold; a commit that would go past it fails with `OutboxFull`.
    pub outbox_limit_per_shard: u64,
    /// Ended sessions kept in each device's history (at least 1): the write that adds a summary
    /// deletes the device's oldest ones beyond it, so replayed Package#1s cannot grow the store.
    pub session_history_per_device: usize,
}

/// Summaries of ended sessions kept per device unless told otherwise: the window the device edge
/// searches to tell an ended session (410) from an unknown one (404).
pub const DEFAULT_SESSION_HISTORY_PER_DEVICE: usize = 50;

impl Default for StoreOptions {
    /// One million events per shard; 50 ended sessions per device.
    fn default() -> Self {
        StoreOptions {
            outbox_limit_per_shard: 1_000_000,
            session_history_per_device: DEFAULT_SESSION_HISTORY_PER_DEVICE,
        }
    }
}

/// What one session step reads, in one round trip where the engine can.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSnapshot {
    /// The lease the load granted or renewed.
    pub lease: Lease,
    pub device: Device,
    pub mirror: MirrorRecord,
    /// The first `queue_limit` queued commands, in queue order.
    pub queued: Vec<CommandRecord>,
    /// The records of the awaited command ids that still exist, in the order asked.
    pub awaiting: Vec<CommandRecord>,
    /// The id the next alert of this device gets.
    pub next_alert_id: u64,
}

/// The answer of [`Store::load_session`].
#[derive(Debug, Clone, PartialEq)]
pub enum SessionLoad {
    /// No such device (nothing was leased).
    UnknownDevice,
    /// A live node other than the asker holds the device's lease: the step belongs there.
    LeaseHeld {
        node_id: String,
        epoch: u64,
    },
    Loaded(Box<SessionSnapshot>),
}

/// Writes applied in one atomic step. Empty fields change nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Devices to create or replace.
    pub devices: Vec<Device>,
    /// Open sessions to create or replace.
    pub sessions: Vec<SessionState>,
    /// Sessions that ended or expired: removed from the open sessions, kept in
    /// the device's session history (its newest `StoreOptions::session_history_per_device`).
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
    /// Notification records to create or replace, matched by request id: a request lands with its
    /// `notification.requested` event, its outcome with the outcome event. Each is kept until its
    /// [`NotificationRecord::expires_at`] (judged by the wall clock), then forgotten.
    pub notifications: Vec<NotificationRecord>,
    /// Delivery reports to set on their requests' records ([`NotificationRecord::delivery`]); a later write of a
    /// record that carries no delivery keeps the one set. A report on a request whose record the store does not hold
    /// (never written, or past its retention) is dropped.
    pub deliveries: Vec<NotificationDelivery>,
    /// Events to put in the outbox later, at their `due_at` (a notification's next attempt): kept in the
    /// shard of their key until [`Store::release_due_events`] moves them into the outbox. An event id already
    /// scheduled is replaced (its new time holds).
    pub scheduled: Vec<ScheduledEvent>,
    /// The upload quota share of a device upload among `contents`: checked before anything is written.
    pub upload: Option<UploadCharge>,
    /// Records of roles to create, replace or remove, each with its labels; a put whose expected revision does
    /// not hold fails the batch with [`StoreError::Conflict`] before anything is written.
    pub records: Vec<RecordWrite>,
    /// Commands to append to devices' queues in this batch (ids given by the store as by
    /// [`Store::enqueue_commands`]), so a queue entry lands with the record that asked for it.
    pub enqueued: Vec<EnqueuedCommands>,
    /// For a session step: the lease the step was loaded under. The batch is
    /// applied only while it still holds (else `StoreError::Fenced`).
    pub fence: Option<Fence>,
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
            && self.notifications.is_empty()
            && self.deliveries.is_empty()
            && self.scheduled.is_empty()
            && self.upload.is_none()
            && self.records.is_empty()
            && self.enqueued.is_empty()
            && self.fence.is_none()
    }
}

/// Commands appended to one device's queue by a [`WriteBatch`], created at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueuedCommands {
    pub device_id: String,
    pub commands: Vec<NewCommand>,
    pub now: Millis,
}

/// An event that enters the outbox at `due_at` (ms since the epoch), not before.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledEvent {
    pub due_at: Millis,
    pub event: Event,
}

/// [`Store::get_device_with_counts`] as separate reads, sent at once.
pub(crate) async fn device_and_counts_one_by_one<S: Store + ?Sized>(
    store: &S,
    device_id: &str,
    windows: &[(&str, Millis)],
    now: Millis,
) -> Result<(Option<Device>, Vec<u64>), StoreError> {
    let counts =
        futures_util::future::join_all(windows.iter().map(|(key, window)| store.count_in_window(key, 0, *window, now)));
    let (device, counts) = futures_util::future::join(store.get_device(device_id), counts).await;
    Ok((device?, counts.into_iter().collect::<Result<_, _>>()?))
}

/// The state of the server. Every method is safe to call concurrently; the
/// embedded engine never blocks the calling async worker (it runs its
/// transactions on blocking threads).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Devices.
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;
    /// [`Store::get_device`] and the counts (as `count_in_window` with `hits` = 0) of `windows` (key, window
    /// length) at `now`, read together: what authenticating a device reads. One round trip on a Redis server (a
    /// pipeline); elsewhere (the default, and a Redis Cluster, where the keys are in different slots) the reads
    /// are made one by one, all at once.
    async fn get_device_with_counts(
        &self,
        device_id: &str,
        windows: &[(&str, Millis)],
        now: Millis,
    ) -> Result<(Option<Device>, Vec<u64>), StoreError> {
        device_and_counts_one_by_one(self, device_id, windows, now).await
    }
    /// Removes the device and everything that belongs to it (queue, sessions, mirror, alerts).
    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError>;
    /// Devices in id order after `after`, at most `limit`, that match `filter`.
    /// A filter with any field or tag walks the inventory index ([`index`]) by its rarest term, not the
    /// registry; either way memory stays bounded by `limit`, and a page may end short of `limit` with a cursor
    /// when the walk's budget is spent.
    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError>;

    /// How many devices match `filter`: from the index's count of a single term (or the registry's size for an
    /// empty filter) at once; a filter of several terms walks its rarest term's devices.
    async fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError>;

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
    /// An open session of the device, or its most recently ended one when the batch
    /// that ended it carried its final state (so a late Package#3 gets 410, not 404).
    async fn get_session(&self, device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError>;
    /// Everything a session step of `device_id` reads, after granting (or renewing)
    /// the device's lease to `lease.node_id`: granted when nobody holds it, when the
    /// asker holds it (same epoch, renewed for `lease.ttl`), or when the holder is not
    /// in `lease.live_nodes` (taken over, epoch + 1). Otherwise `LeaseHeld`.
    /// Nothing is leased for an unknown device.
    async fn load_session(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        queue_limit: usize,
        lease: &LeaseRequest,
    ) -> Result<SessionLoad, StoreError>;
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
    /// What `device_id`'s uploads, and all device uploads, hold (see [`UploadCharge`]).
    async fn upload_usage(&self, device_id: &str) -> Result<UploadUsage, StoreError>;

    // Notifications.
    /// The record of a notification request (see [`WriteBatch::notifications`]); None for an unknown request id
    /// or one past its retention.
    async fn get_notification(&self, request_id: &str) -> Result<Option<NotificationRecord>, StoreError>;
    /// The device's most recently sent request (the newest record written with a `sent` outcome), while its
    /// record is kept: what the device's next session answers.
    async fn latest_notification(&self, device_id: &str) -> Result<Option<NotificationRecord>, StoreError>;

    // Records of roles (see [`Record`]).
    async fn get_record(&self, scope: &str, collection: &str, key: &str) -> Result<Option<Record>, StoreError>;
    /// The records of `keys` (same order, `None` where there is none), in one round trip.
    async fn get_records(
        &self,
        scope: &str,
        collection: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Record>>, StoreError>;
    /// Records of the collection in key order after `after`, at most `limit`: all of them, or those carrying `label`.
    async fn list_records(
        &self,
        scope: &str,
        collection: &str,
        label: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;
    /// How many records the collection holds, and how many carry each of `labels`, in one round trip, without
    /// walking them.
    async fn count_records(&self, scope: &str, collection: &str, labels: &[String])
    -> Result<RecordCounts, StoreError>;

    // Atomic writes and the outbox.
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// How many shards the outbox has (numbered from 0): 1, or one per Redis Cluster slot.
    fn outbox_shards(&self) -> u32 {
        1
    }
    /// The shard an event with this key (`Event::key`, a device id) is written to.
    fn outbox_shard_of(&self, _event_key: &str) -> u32 {
        0
    }
    /// Up to `limit` events of one shard committed but not yet acknowledged by the Bus, in commit order.
    async fn outbox(&self, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Drops events of one shard that the Bus has accepted.
    async fn ack_outbox(&self, shard: u32, event_ids: &[String]) -> Result<(), StoreError>;
    /// Events waiting in each of `shards` (same order), for the relay's sweep.
    async fn outbox_lengths(&self, shards: &[u32]) -> Result<Vec<u64>, StoreError>;
    /// Moves the events of `shard` scheduled at or before `now` ([`WriteBatch::scheduled`]) into its outbox,
    /// earliest first, at most `limit`, atomically (an event is moved once, whoever else releases), and
    /// returns how many moved. Fewer move when the outbox is near its bound; the rest wait for a later call.
    async fn release_due_events(&self, shard: u32, now: Millis, limit: usize) -> Result<usize, StoreError>;
    /// Events waiting in the whole outbox (for the backlog metric).
    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let shards: Vec<u32> = (0..self.outbox_shards()).collect();
        Ok(self.outbox_lengths(&shards).await?.iter().sum())
    }

    // Cluster membership.
    /// Registers `node` (or refreshes it) as alive until `now + ttl`, and returns
    /// every node alive at `now`, itself included, ordered by id.
    async fn heartbeat(&self, node: &NodeInfo, ttl: Millis, now: Millis) -> Result<Vec<NodeInfo>, StoreError>;
    /// Removes `node_id` from the live nodes at once (clean shutdown).
    async fn leave(&self, node_id: &str) -> Result<(), StoreError>;

    // Short-lived records, shared by every node (replay caches, rate limits).
    /// Records `key` until `now + ttl` and tells whether it was new: true when it was not
    /// recorded, or its record had expired at `now`. Of concurrent calls with one key, one sees
    /// true. One round trip; expiry is judged by `now`.
    async fn record_once(&self, key: &str, ttl: Millis, now: Millis) -> Result<bool, StoreError>;
    /// Adds `hits` to the count of `key` in the fixed window that `now` falls in (windows of
    /// `window` ms, starting at multiples of it since the epoch) and returns that window's count,
    /// these hits included; `hits` = 0 reads it without writing. A window's count is forgotten
    /// when the window ends. One round trip.
    async fn count_in_window(&self, key: &str, hits: u64, window: Millis, now: Millis) -> Result<u64, StoreError>;
    /// Keeps `value` under `key` until `now + ttl` (replacing what the key held): a short-lived reference that any
    /// node can [`Store::recall`], such as the request an SMSC's message id belongs to. One round trip.
    async fn remember(&self, key: &str, value: &str, ttl: Millis, now: Millis) -> Result<(), StoreError>;
    /// The value [`Store::remember`] keeps under `key`, while it lives at `now`. One round trip.
    async fn recall(&self, key: &str, now: Millis) -> Result<Option<String>, StoreError>;
    /// Takes one token from the bucket `key`, which refills at `per_second` tokens a second (at least 1) and holds
    /// one second's worth at most: `Ok(0)` when a token was taken, else the milliseconds until one is due (nothing
    /// is taken then). One bucket for every caller of the store: a rate shared by all replicas. A bucket idle for
    /// a minute is forgotten (it would be full again). Time is the callers' `now`; a caller whose clock lags the
    /// bucket's refills nothing until it catches up. One round trip. The arithmetic is [`take_rate_token`].
    async fn take_rate_token(&self, key: &str, per_second: u32, now: Millis) -> Result<Millis, StoreError>;

    // Counters, shared by every node.
    /// Adds one to the counter `key` and returns its new value: 1 the first time, then 2, 3, ... Of concurrent
    /// calls with one key each gets a value of its own; a counter is never reset (deleting a device keeps it).
    /// One round trip.
    async fn next_sequence(&self, key: &str) -> Result<u64, StoreError>;
}

/// A token bucket of [`Store::take_rate_token`]: the tokens it holds (a fraction too) when last counted, at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateBucket {
    pub tokens: f64,
    pub at: Millis,
}

/// How long a bucket is kept after its last take (ms): long enough to have filled up again.
pub const RATE_BUCKET_KEEP_MILLIS: Millis = 60_000;

/// One take from `bucket` (`None`: a new, full one) at `now`: the bucket after it and the wait, 0 when a token
/// was taken. Pure; the Redis engine's `rate_token.lua` is the same arithmetic.
pub fn take_rate_token(bucket: Option<RateBucket>, per_second: u32, now: Millis) -> (RateBucket, Millis) {
    let rate = f64::from(per_second.max(1));
    let mut bucket = bucket.unwrap_or(RateBucket { tokens: rate, at: now });
    if now > bucket.at {
        bucket.tokens = (bucket.tokens + (now - bucket.at) as f64 * rate / 1000.0).min(rate);
        bucket.at = now;
    }
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        return (bucket, 0);
    }
    let wait = ((1.0 - bucket.tokens) * 1000.0 / rate).ceil().max(1.0) as Millis;
    (bucket, wait)
}

/// When the fixed window of `window` ms that `now` falls in ends (see [`Store::count_in_window`]).
pub fn window_end(window: Millis, now: Millis) -> Millis {
    let window = window.max(1);
    (now - now % window).saturating_add(window)
}

/// A `Retry-After` for a refusal by a fixed window at `now`: the seconds until the window ends, rounded up, at least 1.
pub fn retry_after_seconds(window: Millis, now: Millis) -> u64 {
    window_end(window, now).saturating_sub(now).div_ceil(1000).max(1)
}

/// Opens the store named by `url` with [`StoreOptions::default`].
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(url, &StoreOptions::default()).await
}

/// Opens the store named by `url`: `file:///path` or a bare path for the embedded engine;
/// `redis://host:port[/db]` for one Redis server; `redis+cluster://host:port,host:port,...`
/// (or several comma-separated `redis://` URLs) for Redis Cluster.
pub async fn open_with(url: &str, options: &StoreOptions) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("redis://") || url.starts_with("redis+cluster://") {
        return Ok(std::sync::Arc::new(RedisStore::connect_with(url, options).await?));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(std::sync::Arc::new(EmbeddedStore::open_with(std::path::Path::new(path), options).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(device_id: &str, bytes: u64) -> UploadCharge {
        UploadCharge {
            device_id: device_id.to_owned(),
            path: "up/d/x".to_owned(),
            bytes,
            limits: UploadLimits { max_bytes_per_device: 100, max_items_per_device: 2, max_total_bytes: 150 },
        }
    }

    fn usage(device_bytes: u64, device_items: u64, total_bytes: u64) -> UploadUsage {
        UploadUsage { device_bytes, device_items, total_bytes }
    }

    #[test]
    fn quotas_judge_what_the_upload_leaves_behind() {
        assert_eq!(quota_refusal(&charge("d", 100), None, usage(0, 0, 0)), None, "up to a limit is fine");
        assert_eq!(quota_refusal(&charge("d", 101), None, usage(0, 0, 0)), Some(UploadQuotaKind::DeviceBytes));
        assert_eq!(quota_refusal(&charge("d", 1), None, usage(10, 2, 10)), Some(UploadQuotaKind::DeviceItems));
        assert_eq!(quota_refusal(&charge("d", 1), None, usage(0, 0, 150)), Some(UploadQuotaKind::TotalBytes));
        // Replacing its own item: the old bytes and the item are given back first.
        assert_eq!(quota_refusal(&charge("d", 100), Some(("d", 60)), usage(60, 2, 60)), None);
        // Replacing another device's item frees the total, not this device's share.
        assert_eq!(
            quota_refusal(&charge("d", 50), Some(("e", 50)), usage(60, 1, 150)),
            Some(UploadQuotaKind::DeviceBytes)
        );
        assert_eq!(quota_refusal(&charge("d", 40), Some(("e", 50)), usage(60, 1, 150)), None);
    }

    #[test]
    fn labels_round_trip_and_retry_after_waits_for_the_window_end() {
        for kind in [UploadQuotaKind::DeviceBytes, UploadQuotaKind::DeviceItems, UploadQuotaKind::TotalBytes] {
            assert_eq!(UploadQuotaKind::from_label(kind.label()), Some(kind));
        }
        assert_eq!(UploadQuotaKind::from_label("other"), None);
        assert_eq!(retry_after_seconds(60_000, 120_000), 60);
        assert_eq!(retry_after_seconds(60_000, 179_999), 1);
    }
}
