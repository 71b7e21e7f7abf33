//! The redb tables of the embedded store, their keys, and the JSON codec of their records.
//!
//! Every record is the model type's serde JSON, so the Redis engine and this
//! one keep the same bytes. Keys are typed tuples that redb orders element by
//! element, which gives each device a contiguous key range:
//!
//! ```text
//! devices                  device id                          -> Device
//! commands                 (device id, command id)            -> CommandRecord
//! queued_commands          (device id, command id)            -> ()           index of state = queued
//! next_command_id          device id                          -> u64          never reset, so ids are never reused
//! pending_commands         device id                          -> u64          queued + sent, kept by every write
//! open_sessions            session id                         -> SessionState
//! open_sessions_by_device  (device id, session id)            -> ()
//! session_history          (device id, started at, session id) -> SessionSummary
//! mirrors                  device id                          -> MirrorRecord
//! alerts                   (device id, alert id)              -> AlertRecord
//! next_alert_id            device id                          -> u64          never reset
//! repository               path                               -> RepositoryItem
//! upload_sizes             path                               -> (device id, bytes)   device uploads only
//! upload_usage             device id                          -> (bytes, items)       of its uploads
//! outbox                   sequence                           -> Event
//! outbox_ids               event id                           -> sequence
//! meta                     name                               -> u64          schema_version, outbox_next_sequence,
//!                                                                              upload_total_bytes
//! leases                   device id                          -> (node id, epoch, expires at)
//! lease_epochs             device id                          -> u64          last epoch granted; never reset
//! nodes                    node id                            -> (internal url, expires at)
//! ephemeral                once/count key                     -> (expires at, value)   see `ephemeral`
//! ephemeral_expiry         (expires at, once/count/value key) -> ()           pruning order
//! remembered               value key                          -> (expires at, text)    `Store::remember`
//! device_terms             (index term, device id)            -> ()           `embedded::index`
//! term_counts              index term                         -> devices
//! terms_of_device          device id                          -> its index terms (JSON)
//! sequences                counter key                        -> u64          `next_sequence`; never reset
//! notifications            request id                         -> (expires at, NotificationRecord)
//! notification_expiry      (expires at, request id)           -> ()           pruning order
//! latest_notifications     device id                          -> (request id, sent at)   its newest sent request
//! scheduled                (due at, event id)                 -> Event        until released into the outbox
//! scheduled_ids            event id                           -> due at
//! ```

use redb::{ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// Raised when the layout below changes incompatibly; `open` refuses other versions.
pub const SCHEMA_VERSION: u64 = 1;

pub const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
pub const COMMANDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("commands");
pub const QUEUED_COMMANDS: TableDefinition<(&str, u64), ()> = TableDefinition::new("queued_commands");
pub const NEXT_COMMAND_ID: TableDefinition<&str, u64> = TableDefinition::new("next_command_id");
pub const PENDING_COMMANDS: TableDefinition<&str, u64> = TableDefinition::new("pending_commands");
pub const OPEN_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("open_sessions");
pub const OPEN_SESSIONS_BY_DEVICE: TableDefinition<(&str, &str), ()> = TableDefinition::new("open_sessions_by_device");
/// The state of each device's most recently ended session, so a late Package#3 for it gets 410, not 404.
pub const ENDED_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("ended_sessions");
/// Device id -> the id of its session in `ended_sessions` (one per device keeps the table bounded).
pub const LAST_ENDED_SESSION: TableDefinition<&str, &str> = TableDefinition::new("last_ended_session");
pub const SESSION_HISTORY: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("session_history");
pub const MIRRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("mirrors");
pub const ALERTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alerts");
pub const NEXT_ALERT_ID: TableDefinition<&str, u64> = TableDefinition::new("next_alert_id");
pub const REPOSITORY: TableDefinition<&str, &[u8]> = TableDefinition::new("repository");
/// The device upload stored at a path: its owner and size, for the upload quotas.
pub const UPLOAD_SIZES: TableDefinition<&str, (&str, u64)> = TableDefinition::new("upload_sizes");
/// Bytes and items of each device's uploads.
pub const UPLOAD_USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("upload_usage");
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
pub const OUTBOX_IDS: TableDefinition<&str, u64> = TableDefinition::new("outbox_ids");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The device's session lease: holder node id, fencing epoch, expiry (ms since the epoch).
pub const LEASES: TableDefinition<&str, (&str, u64, u64)> = TableDefinition::new("leases");
/// The last epoch granted per device. Kept when a lease is released or its device deleted,
/// so the next grant is always a higher epoch and an old fence never holds again.
pub const LEASE_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("lease_epochs");
/// Live gateway nodes: internal URL and when the registration expires.
pub const NODES: TableDefinition<&str, (&str, u64)> = TableDefinition::new("nodes");

/// Keys recorded once and fixed-window counts ([`super::ephemeral`]): expiry (ms since the epoch) and value.
pub const EPHEMERAL: TableDefinition<&str, (u64, u64)> = TableDefinition::new("ephemeral");
/// The values of `Store::remember`, by stored key (`value\0{key}`), with the time they expire; their expiry
/// shares `ephemeral_expiry`.
pub const REMEMBERED: TableDefinition<&str, (u64, &str)> = TableDefinition::new("remembered");
/// The entries of `ephemeral` by expiry, so writes prune the expired ones first.
pub const EPHEMERAL_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("ephemeral_expiry");

/// The counters of `Store::next_sequence`: the last value handed out per key.
pub const SEQUENCES: TableDefinition<&str, u64> = TableDefinition::new("sequences");

/// The inventory index (`embedded::index`): each term's devices, how many, and each device's terms.
pub const DEVICE_TERMS: TableDefinition<(&str, &str), ()> = TableDefinition::new("device_terms");
pub const TERM_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("term_counts");
pub const TERMS_OF_DEVICE: TableDefinition<&str, &[u8]> = TableDefinition::new("terms_of_device");

/// Notification records by request id, with the time they may be forgotten.
pub const NOTIFICATIONS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("notifications");
/// The entries of `notifications` by expiry, so writes prune the expired ones first.
pub const NOTIFICATION_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("notification_expiry");

/// Each device's most recently sent request (`Store::latest_notification`); its record's expiry ends it too.
pub const LATEST_NOTIFICATIONS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("latest_notifications");
/// Events waiting for their time ([`crate::store::WriteBatch::scheduled`]), earliest first.
pub const SCHEDULED: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("scheduled");
/// The time each scheduled event id waits for, so scheduling an id again replaces it.
pub const SCHEDULED_IDS: TableDefinition<&str, u64> = TableDefinition::new("scheduled_ids");

pub const META_SCHEMA_VERSION: &str = "schema_version";
/// The `store::index::INDEX_VERSION` the inventory index was built with.
pub const META_INDEX_VERSION: &str = "index_version";
pub const META_OUTBOX_NEXT_SEQUENCE: &str = "outbox_next_sequence";
/// The bytes of every device upload.
pub const META_UPLOAD_TOTAL_BYTES: &str = "upload_total_bytes";

/// `device_id` followed by NUL: the smallest string greater than `device_id`.
/// Tuple keys compare element by element, so every `(device_id, x, ..)` sorts
/// before `(successor, ..)` whatever `x` is, and no other device's id falls in
/// between: `[(device_id, ""), (successor, ""))` is exactly the device's range,
/// even when another id extends it (`IMEI:1` and `IMEI:10`).
pub fn successor(device_id: &str) -> String {
    format!("{device_id}\0")
}

/// A record as stored.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|error| StoreError::Io(format!("cannot encode a record: {error}")))
}

/// A stored record; bytes that are not the expected JSON are [`StoreError::Corrupt`].
pub fn decode<T: DeserializeOwned>(table: &str, key: &dyn std::fmt::Debug, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt(format!("{table} {key:?}: {error}")))
}

/// The counter stored under `key`, or `default` when there is none.
pub fn counter<T>(table: &T, key: &str, default: u64) -> Result<u64, StoreError>
where
    T: ReadableTable<&'static str, u64>,
{
    Ok(table.get(key)?.map(|value| value.value()).unwrap_or(default))
}

impl From<redb::Error> for StoreError {
    fn from(error: redb::Error) -> Self {
        match error {
            redb::Error::Corrupted(reason) => StoreError::Corrupt(format!("database file: {reason}")),
            redb::Error::Io(io) => StoreError::Io(io.to_string()),
            redb::Error::DatabaseAlreadyOpen => {
                StoreError::Unavailable("the store is already open in another process".to_owned())
            }
            redb::Error::PreviousIo => {
                StoreError::Unavailable("an earlier I/O error left the store unusable until a restart".to_owned())
            }
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// redb has one error type per step; they all convert into [`redb::Error`].
macro_rules! from_redb_error {
    ($($error:ty),+) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::from(redb::Error::from(error))
            }
        })+
    };
}

from_redb_error!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
