//! The embedded store: the whole Store in one redb file (`store.redb`) under the data dir.
//!
//! redb gives ACID transactions over copy-on-write B-trees; a write
//! transaction's commit returns once it is fsync'd, so whatever a method
//! returned Ok for survives `kill -9` and power loss. Reads run on tokio's
//! blocking pool; writes go to one writer thread that commits concurrent
//! writes together ([`writer`]). Neither ever runs on the async worker that
//! called. The tables and their keys are described in [`tables`] and
//! docs/store.md.
//!
//! Cluster coordination ([`coordination`]) lives in the same file: session
//! leases with their fencing epochs and node membership, so `load_session`
//! (lease + reads) and a fenced `commit` (check + writes + renewal) are each
//! one transaction. The outbox has one shard; `open_with` bounds it.

mod coordination;
mod ephemeral;
mod index;
mod read;
mod records;
mod tables;
mod windows;
mod write;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable};

use self::writer::{WriteJob, WriteOutput, Writer, WriterSettings};
use super::{SessionLoad, Store, StoreError, StoreOptions, WriteBatch};
use crate::bus::Event;
use crate::clock::Millis;
use crate::cluster::{LeaseRequest, NodeInfo};
use crate::metrics::metrics;
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NewCommand,
    NotificationRecord, Record, RecordCounts, RepositoryItem, SessionState, SessionSummary,
};

/// The file inside the data dir that holds every table.
pub const DATABASE_FILE_NAME: &str = "store.redb";

/// Records `list_devices` looks at per call unless told otherwise: bounds the
/// time one request can hold a blocking thread when a filter matches few devices.
pub const DEFAULT_LIST_SCAN_BUDGET: usize = 10_000;

/// Rate buckets held before idle ones are dropped: a few keys are in use (one per transport), so a map this
/// large means callers are making up keys.
const RATE_BUCKETS_BEFORE_PRUNE: usize = 1024;

/// The embedded engine of [`Store`]. Cheap to share behind an `Arc`; one
/// process at a time may open a data dir (the second gets
/// [`StoreError::Unavailable`]).
pub struct EmbeddedStore {
    database: Arc<Database>,
    writer: Writer,
    path: PathBuf,
    list_scan_budget: usize,
    /// `take_rate_token`'s buckets, in memory: the embedded store admits one process, and a bucket lost with it
    /// would be full again by the time the process is back.
    rate_buckets: Arc<std::sync::Mutex<HashMap<String, crate::store::RateBucket>>>,
    /// `count_in_window`'s counts, in memory for the same reason.
    window_counts: Arc<windows::WindowCounts>,
}

impl EmbeddedStore {
    /// Opens (creating when needed) the store in `directory`: the directory
    /// itself and `store.redb` inside it. After a crash redb repairs the file
    /// here, which reads it whole; that runs on a blocking thread too.
    pub async fn open_with(directory: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let directory = directory.to_owned();
        let settings = WriterSettings {
            outbox_limit: options.outbox_limit_per_shard,
            history_per_device: options.session_history_per_device.max(1),
        };
        let opened = tokio::task::spawn_blocking(move || Self::open_blocking(&directory, settings)).await;
        let result = opened.unwrap_or_else(|join_error| Err(task_failed(join_error)));
        if let Err(error) = &result {
            metrics().store_errors.with_label_values(&["open"]).inc();
            tracing::error!(%error, "cannot open the embedded store");
        }
        result
    }

    /// [`EmbeddedStore::open_with`] the default [`StoreOptions`].
    pub async fn open(directory: &Path) -> Result<Self, StoreError> {
        Self::open_with(directory, &StoreOptions::default()).await
    }

    fn open_blocking(directory: &Path, settings: WriterSettings) -> Result<Self, StoreError> {
        std::fs::create_dir_all(directory)
            .map_err(|error| StoreError::Io(format!("cannot create {}: {error}", directory.display())))?;
        let path = directory.join(DATABASE_FILE_NAME);
        let database = Database::create(&path)?;
        create_tables(&database)?;
        let database = Arc::new(database);
        let writer = Writer::start(Arc::clone(&database), settings)?;
        tracing::info!(path = %path.display(), "embedded store open");
        Ok(EmbeddedStore {
            database,
            writer,
            path,
            list_scan_budget: DEFAULT_LIST_SCAN_BUDGET,
            rate_buckets: Arc::default(),
            window_counts: Arc::default(),
        })
    }

    /// Sets how many records one `list_devices` call may look at (at least 1).
    pub fn with_list_scan_budget(mut self, records: usize) -> Self {
        self.list_scan_budget = records.max(1);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a write to the writer thread; counts its failure under `operation`.
    /// A refusal (`Fenced`, `OutboxFull`) comes back as that error, not counted:
    /// the store worked, the caller's write was not allowed.
    async fn write(&self, operation: &'static str, job: WriteJob) -> Result<WriteOutput, StoreError> {
        let result = self.writer.submit(job).await;
        match result {
            Ok(WriteOutput::Refused(refusal)) => {
                tracing::debug!(operation, %refusal, "store write refused");
                Err(refusal)
            }
            Err(error) => {
                metrics().store_errors.with_label_values(&[operation]).inc();
                tracing::warn!(operation, %error, "store write failed");
                Err(error)
            }
            Ok(output) => Ok(output),
        }
    }

    /// Runs a read on the blocking pool and counts its failure under `operation`.
    async fn run<T, Work>(&self, operation: &'static str, work: Work) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Work: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let database = Arc::clone(&self.database);
        let joined = tokio::task::spawn_blocking(move || work(&database)).await;
        let result = joined.unwrap_or_else(|join_error| Err(task_failed(join_error)));
        if let Err(error) = &result {
            metrics().store_errors.with_label_values(&[operation]).inc();
            tracing::warn!(operation, %error, "store operation failed");
        }
        result
    }
}

/// The writer answered a job with another job's kind of output: a bug, reported rather than a panic.
fn unexpected(operation: &str, output: &WriteOutput) -> StoreError {
    StoreError::Unavailable(format!("the store writer answered {operation} with {output:?}"))
}

fn task_failed(join_error: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("store task did not complete: {join_error}"))
}

/// Creates every table once, so read transactions never meet a missing one,
/// and checks the layout version of an existing file.
fn create_tables(database: &Database) -> Result<(), StoreError> {
    let transaction = database.begin_write()?;
    {
        transaction.open_table(tables::DEVICES)?;
        transaction.open_table(tables::COMMANDS)?;
        transaction.open_table(tables::QUEUED_COMMANDS)?;
        transaction.open_table(tables::NEXT_COMMAND_ID)?;
        transaction.open_table(tables::PENDING_COMMANDS)?;
        transaction.open_table(tables::OPEN_SESSIONS)?;
        transaction.open_table(tables::OPEN_SESSIONS_BY_DEVICE)?;
        transaction.open_table(tables::SESSION_HISTORY)?;
        transaction.open_table(tables::ENDED_SESSIONS)?;
        transaction.open_table(tables::LAST_ENDED_SESSION)?;
        transaction.open_table(tables::MIRRORS)?;
        transaction.open_table(tables::ALERTS)?;
        transaction.open_table(tables::NEXT_ALERT_ID)?;
        transaction.open_table(tables::REPOSITORY)?;
        transaction.open_table(tables::UPLOAD_SIZES)?;
        transaction.open_table(tables::UPLOAD_USAGE)?;
        transaction.open_table(tables::OUTBOX)?;
        transaction.open_table(tables::OUTBOX_IDS)?;
        transaction.open_table(tables::LEASES)?;
        transaction.open_table(tables::LEASE_EPOCHS)?;
        transaction.open_table(tables::NODES)?;
        transaction.open_table(tables::EPHEMERAL)?;
        transaction.open_table(tables::EPHEMERAL_EXPIRY)?;
        transaction.open_table(tables::REMEMBERED)?;
        transaction.open_table(tables::NOTIFICATIONS)?;
        transaction.open_table(tables::NOTIFICATION_EXPIRY)?;
        transaction.open_table(tables::SCHEDULED)?;
        transaction.open_table(tables::LATEST_NOTIFICATIONS)?;
        transaction.open_table(tables::SCHEDULED_IDS)?;
        transaction.open_table(tables::DEVICE_TERMS)?;
        transaction.open_table(tables::TERM_COUNTS)?;
        transaction.open_table(tables::TERMS_OF_DEVICE)?;
        records::create_tables(&transaction)?;
        let mut meta = transaction.open_table(tables::META)?;
        let stored_version = meta.get(tables::META_SCHEMA_VERSION)?.map(|version| version.value());
        match stored_version {
            None => {
                meta.insert(tables::META_SCHEMA_VERSION, tables::SCHEMA_VERSION)?;
            }
            Some(tables::SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Unavailable(format!(
                    "the store has layout version {other}, this build reads version {}",
                    tables::SCHEMA_VERSION
                )));
            }
        }
    }
    index::build_if_missing(&transaction)?;
    transaction.commit()?;
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("get_device", move |database| read::device(database, &device_id)).await
    }

    async fn delete_device(&self, device_id: &str) -> Result<bool, StoreError> {
        match self.write("delete_device", WriteJob::DeleteDevice(device_id.to_owned())).await? {
            WriteOutput::Existed(existed) => Ok(existed),
            other => Err(unexpected("delete_device", &other)),
        }
    }

    async fn list_devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        let filter = filter.clone();
        let after = after.map(str::to_owned);
        let scan_budget = self.list_scan_budget;
        self.run("list_devices", move |database| {
            match index::list(database, &filter, after.as_deref(), limit, scan_budget)? {
                Some(page) => Ok(page),
                None => read::list_devices(database, &filter, after.as_deref(), limit, scan_budget),
            }
        })
        .await
    }

    async fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.run("count_devices", move |database| index::count(database, &filter)).await
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
        let job = WriteJob::Enqueue { device_id: device_id.to_owned(), commands, now };
        match self.write("enqueue_commands", job).await? {
            WriteOutput::Ids(ids) => Ok(ids),
            other => Err(unexpected("enqueue_commands", &other)),
        }
    }

    async fn get_command(&self, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("get_command", move |database| read::command(database, &device_id, id)).await
    }

    async fn list_commands(
        &self,
        device_id: &str,
        after: Option<CommandId>,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("list_commands", move |database| read::list_commands(database, &device_id, after, limit)).await
    }

    async fn queued_commands(&self, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("queued_commands", move |database| read::queued_commands(database, &device_id, limit)).await
    }

    async fn pending_count(&self, device_id: &str) -> Result<u64, StoreError> {
        let device_id = device_id.to_owned();
        self.run("pending_count", move |database| read::pending_count(database, &device_id)).await
    }

    async fn get_session(&self, device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError> {
        let device_id = device_id.to_owned();
        let session_id = session_id.to_owned();
        self.run("get_session", move |database| read::session(database, &device_id, &session_id)).await
    }

    async fn open_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        self.run("open_sessions", read::open_sessions).await
    }

    async fn list_sessions(&self, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("list_sessions", move |database| read::list_sessions(database, &device_id, limit)).await
    }

    async fn get_mirror(&self, device_id: &str) -> Result<Option<MirrorRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("get_mirror", move |database| read::mirror(database, &device_id)).await
    }

    async fn get_notification(&self, request_id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        let request_id = request_id.to_owned();
        let now = crate::clock::now_millis();
        self.run("get_notification", move |database| read::notification(database, &request_id, now)).await
    }

    async fn latest_notification(&self, device_id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        let device_id = device_id.to_owned();
        let now = crate::clock::now_millis();
        self.run("latest_notification", move |database| read::latest_notification(database, &device_id, now)).await
    }

    async fn list_alerts(&self, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.run("list_alerts", move |database| read::list_alerts(database, &device_id, limit)).await
    }

    async fn next_alert_id(&self, device_id: &str) -> Result<u64, StoreError> {
        let device_id = device_id.to_owned();
        self.run("next_alert_id", move |database| read::next_alert_id(database, &device_id)).await
    }

    async fn put_content(&self, item: RepositoryItem) -> Result<(), StoreError> {
        self.write("put_content", WriteJob::PutContent(item)).await.map(|_| ())
    }

    async fn get_content(&self, path: &str) -> Result<Option<RepositoryItem>, StoreError> {
        let path = path.to_owned();
        self.run("get_content", move |database| read::content(database, &path)).await
    }

    async fn delete_content(&self, path: &str) -> Result<bool, StoreError> {
        match self.write("delete_content", WriteJob::DeleteContent(path.to_owned())).await? {
            WriteOutput::Existed(existed) => Ok(existed),
            other => Err(unexpected("delete_content", &other)),
        }
    }

    async fn upload_usage(&self, device_id: &str) -> Result<super::UploadUsage, StoreError> {
        let device_id = device_id.to_owned();
        self.run("upload_usage", move |database| read::upload_usage(database, &device_id)).await
    }

    async fn get_record(&self, scope: &str, collection: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let (scope, collection, keys) = (scope.to_owned(), collection.to_owned(), vec![key.to_owned()]);
        let mut found =
            self.run("get_record", move |database| records::get(database, &scope, &collection, &keys)).await?;
        Ok(found.pop().flatten())
    }
    async fn get_records(
        &self,
        scope: &str,
        collection: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let (scope, collection, keys) = (scope.to_owned(), collection.to_owned(), keys.to_vec());
        self.run("get_records", move |database| records::get(database, &scope, &collection, &keys)).await
    }
    async fn list_records(
        &self,
        scope: &str,
        collection: &str,
        label: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let (scope, collection) = (scope.to_owned(), collection.to_owned());
        let (label, after) = (label.map(str::to_owned), after.map(str::to_owned));
        self.run("list_records", move |database| {
            records::list(database, &scope, &collection, label.as_deref(), after.as_deref(), limit)
        })
        .await
    }
    async fn count_records(
        &self,
        scope: &str,
        collection: &str,
        labels: &[String],
    ) -> Result<RecordCounts, StoreError> {
        let (scope, collection, labels) = (scope.to_owned(), collection.to_owned(), labels.to_vec());
        self.run("count_records", move |database| records::count(database, &scope, &collection, &labels)).await
    }
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write("commit", WriteJob::Commit(Box::new(batch))).await.map(|_| ())
    }

    async fn load_session(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        queue_limit: usize,
        lease: &LeaseRequest,
    ) -> Result<SessionLoad, StoreError> {
        let job = WriteJob::LoadSession {
            device_id: device_id.to_owned(),
            awaiting: awaiting.to_vec(),
            queue_limit,
            request: lease.clone(),
        };
        match self.write("load_session", job).await? {
            WriteOutput::Session(load) => Ok(load),
            other => Err(unexpected("load_session", &other)),
        }
    }

    /// One shard (0): other shards are empty.
    async fn outbox(&self, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        if shard != 0 {
            return Ok(Vec::new());
        }
        self.run("outbox", move |database| read::outbox(database, limit)).await
    }

    async fn outbox_lengths(&self, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        let total = self.run("outbox_len", read::outbox_len).await?;
        Ok(shards.iter().map(|shard| if *shard == 0 { total } else { 0 }).collect())
    }

    async fn heartbeat(&self, node: &NodeInfo, ttl: Millis, now: Millis) -> Result<Vec<NodeInfo>, StoreError> {
        match self.write("heartbeat", WriteJob::Heartbeat { node: node.clone(), ttl, now }).await? {
            WriteOutput::Nodes(nodes) => Ok(nodes),
            other => Err(unexpected("heartbeat", &other)),
        }
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.write("leave", WriteJob::Leave(node_id.to_owned())).await.map(|_| ())
    }

    async fn ack_outbox(&self, shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        if event_ids.is_empty() || shard != 0 {
            return Ok(());
        }
        self.write("ack_outbox", WriteJob::AckOutbox(event_ids.to_vec())).await.map(|_| ())
    }

    async fn record_once(&self, key: &str, ttl: Millis, now: Millis) -> Result<bool, StoreError> {
        match self.write("record_once", WriteJob::RecordOnce { key: key.to_owned(), ttl, now }).await? {
            WriteOutput::New(new) => Ok(new),
            other => Err(unexpected("record_once", &other)),
        }
    }

    async fn remember(&self, key: &str, value: &str, ttl: Millis, now: Millis) -> Result<(), StoreError> {
        let job = WriteJob::Remember { key: key.to_owned(), value: value.to_owned(), ttl, now };
        self.write("remember", job).await.map(|_| ())
    }

    async fn recall(&self, key: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.run("recall", move |database| ephemeral::recall(database, &key, now)).await
    }

    /// In memory (`windows`): no blocking thread, no writer, no fsync.
    async fn count_in_window(&self, key: &str, hits: u64, window: Millis, now: Millis) -> Result<u64, StoreError> {
        Ok(self.window_counts.add(key, hits, window, now))
    }

    async fn take_rate_token(&self, key: &str, per_second: u32, now: Millis) -> Result<Millis, StoreError> {
        let mut buckets = self.rate_buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (bucket, wait) = crate::store::take_rate_token(buckets.get(key).copied(), per_second, now);
        if buckets.len() >= RATE_BUCKETS_BEFORE_PRUNE {
            buckets.retain(|_, kept| now.saturating_sub(kept.at) < crate::store::RATE_BUCKET_KEEP_MILLIS);
        }
        buckets.insert(key.to_owned(), bucket);
        Ok(wait)
    }

    /// A read first: the writer (and its fsync) is used only when something is due.
    async fn release_due_events(&self, shard: u32, now: Millis, limit: usize) -> Result<usize, StoreError> {
        if shard != 0 || limit == 0 {
            return Ok(0);
        }
        let first_due = self.run("scheduled", read::first_scheduled).await?;
        if first_due.is_none_or(|due_at| due_at > now) {
            return Ok(0);
        }
        match self.write("release_due_events", WriteJob::ReleaseDue { now, limit }).await? {
            WriteOutput::Count(released) => Ok(usize::try_from(released).unwrap_or(usize::MAX)),
            other => Err(unexpected("release_due_events", &other)),
        }
    }

    async fn next_sequence(&self, key: &str) -> Result<u64, StoreError> {
        match self.write("next_sequence", WriteJob::NextSequence(key.to_owned())).await? {
            WriteOutput::Count(value) => Ok(value),
            other => Err(unexpected("next_sequence", &other)),
        }
    }
}
