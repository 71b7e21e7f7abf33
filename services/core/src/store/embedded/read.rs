//! Read transactions of the embedded store: each runs on a redb snapshot, on a blocking thread.

use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{
    ALERTS, COMMANDS, DEVICES, ENDED_SESSIONS, MIRRORS, NEXT_ALERT_ID, OPEN_SESSIONS, OPEN_SESSIONS_BY_DEVICE, OUTBOX,
    PENDING_COMMANDS, QUEUED_COMMANDS, REPOSITORY, SESSION_HISTORY, counter, decode, successor,
};
use super::tables::{LATEST_NOTIFICATIONS, META, META_UPLOAD_TOTAL_BYTES, NOTIFICATIONS, SCHEDULED, UPLOAD_USAGE};
use crate::bus::Event;
use crate::model::{
    AlertRecord, CommandId, CommandRecord, Device, DeviceFilter, DevicePage, MirrorRecord, NotificationRecord,
    RepositoryItem, SessionOutcome, SessionState, SessionSummary,
};
use crate::store::StoreError;

pub fn device(database: &Database, device_id: &str) -> Result<Option<Device>, StoreError> {
    let transaction = database.begin_read()?;
    let devices = transaction.open_table(DEVICES)?;
    let Some(bytes) = devices.get(device_id)? else {
        return Ok(None);
    };
    decode("devices", &device_id, bytes.value()).map(Some)
}

/// Walks the registry in id order from the cursor. At most `scan_budget`
/// records are looked at per call, so a filter that matches few devices
/// returns a short (even empty) page with a cursor instead of reading the
/// whole registry in one go. `next` is the id of the last record looked at.
pub fn list_devices(
    database: &Database,
    filter: &DeviceFilter,
    after: Option<&str>,
    limit: usize,
    scan_budget: usize,
) -> Result<DevicePage, StoreError> {
    let limit = limit.max(1);
    let scan_budget = scan_budget.max(1);
    let transaction = database.begin_read()?;
    let devices = transaction.open_table(DEVICES)?;
    let lower = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let mut page = Vec::new();
    let mut last_scanned: Option<String> = None;
    for (scanned, entry) in devices.range::<&str>((lower, Bound::Unbounded))?.enumerate() {
        // Another record exists: stop here with a cursor when the page is full or the budget spent.
        if page.len() == limit || scanned == scan_budget {
            return Ok(DevicePage { devices: page, next: last_scanned });
        }
        let (key, value) = entry?;
        let device: Device = decode("devices", &key.value(), value.value())?;
        last_scanned = Some(key.value().to_owned());
        if filter.matches(&device) {
            page.push(device);
        }
    }
    Ok(DevicePage { devices: page, next: None })
}

/// A notification record; one past its expiry that no write has pruned yet counts as gone.
pub fn notification(
    database: &Database,
    request_id: &str,
    now: crate::clock::Millis,
) -> Result<Option<NotificationRecord>, StoreError> {
    let transaction = database.begin_read()?;
    let table = transaction.open_table(NOTIFICATIONS)?;
    let Some(entry) = table.get(request_id)? else {
        return Ok(None);
    };
    let (expires_at, bytes) = entry.value();
    if expires_at <= now {
        return Ok(None);
    }
    decode("notifications", &request_id, bytes).map(Some)
}

/// The device's most recently sent request, read in one snapshot with its record.
pub fn latest_notification(
    database: &Database,
    device_id: &str,
    now: crate::clock::Millis,
) -> Result<Option<NotificationRecord>, StoreError> {
    let transaction = database.begin_read()?;
    let latest = transaction.open_table(LATEST_NOTIFICATIONS)?.get(device_id)?.map(|entry| entry.value().0.to_owned());
    let Some(request_id) = latest else {
        return Ok(None);
    };
    let table = transaction.open_table(NOTIFICATIONS)?;
    let Some(entry) = table.get(request_id.as_str())? else {
        return Ok(None);
    };
    let (expires_at, bytes) = entry.value();
    if expires_at <= now {
        return Ok(None);
    }
    decode("notifications", &request_id, bytes).map(Some)
}

pub fn command(database: &Database, device_id: &str, id: CommandId) -> Result<Option<CommandRecord>, StoreError> {
    let transaction = database.begin_read()?;
    let commands = transaction.open_table(COMMANDS)?;
    let Some(bytes) = commands.get((device_id, id))? else {
        return Ok(None);
    };
    decode("commands", &(device_id, id), bytes.value()).map(Some)
}

pub fn list_commands(
    database: &Database,
    device_id: &str,
    after: Option<CommandId>,
    limit: usize,
) -> Result<Vec<CommandRecord>, StoreError> {
    if after == Some(CommandId::MAX) || limit == 0 {
        return Ok(Vec::new());
    }
    let transaction = database.begin_read()?;
    let commands = transaction.open_table(COMMANDS)?;
    let lower = match after {
        Some(after) => Bound::Excluded((device_id, after)),
        None => Bound::Included((device_id, 0)),
    };
    let mut records = Vec::new();
    for entry in commands.range::<(&str, u64)>((lower, Bound::Included((device_id, CommandId::MAX))))?.take(limit) {
        let (key, value) = entry?;
        records.push(decode("commands", &key.value(), value.value())?);
    }
    Ok(records)
}

/// Reads the queued index, not the device's history: the cost is `limit` lookups.
pub fn queued_commands(database: &Database, device_id: &str, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
    let transaction = database.begin_read()?;
    queued_in(&transaction.open_table(QUEUED_COMMANDS)?, &transaction.open_table(COMMANDS)?, device_id, limit)
}

/// The first `limit` queued commands of the device in `queued` (the index) and `commands`,
/// from a read or a write transaction.
pub fn queued_in<Queued, Commands>(
    queued: &Queued,
    commands: &Commands,
    device_id: &str,
    limit: usize,
) -> Result<Vec<CommandRecord>, StoreError>
where
    Queued: ReadableTable<(&'static str, u64), ()>,
    Commands: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    let mut records = Vec::new();
    for entry in queued.range::<(&str, u64)>((device_id, 0)..=(device_id, CommandId::MAX))?.take(limit) {
        let (key, _) = entry?;
        let key = key.value();
        let Some(bytes) = commands.get(key)? else {
            return Err(StoreError::Corrupt(format!("queued_commands {key:?} names no command")));
        };
        records.push(decode("commands", &key, bytes.value())?);
    }
    Ok(records)
}

pub fn pending_count(database: &Database, device_id: &str) -> Result<u64, StoreError> {
    let transaction = database.begin_read()?;
    counter(&transaction.open_table(PENDING_COMMANDS)?, device_id, 0)
}

/// The open session, or the kept final state of an ended one, when it belongs to `device_id`.
pub fn session(database: &Database, device_id: &str, session_id: &str) -> Result<Option<SessionState>, StoreError> {
    let transaction = database.begin_read()?;
    let sessions = transaction.open_table(OPEN_SESSIONS)?;
    let state: SessionState = if let Some(bytes) = sessions.get(session_id)? {
        decode("open_sessions", &session_id, bytes.value())?
    } else {
        let ended = transaction.open_table(ENDED_SESSIONS)?;
        let Some(bytes) = ended.get(session_id)? else {
            return Ok(None);
        };
        decode("ended_sessions", &session_id, bytes.value())?
    };
    Ok(Some(state).filter(|state| state.device_id == device_id))
}

pub fn open_sessions(database: &Database) -> Result<Vec<SessionState>, StoreError> {
    let transaction = database.begin_read()?;
    let sessions = transaction.open_table(OPEN_SESSIONS)?;
    let mut states = Vec::new();
    for entry in sessions.iter()? {
        let (key, value) = entry?;
        states.push(decode("open_sessions", &key.value(), value.value())?);
    }
    Ok(states)
}

/// The device's open sessions (as `active` summaries) and its history, newest first.
pub fn list_sessions(database: &Database, device_id: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
    let transaction = database.begin_read()?;
    let by_device = transaction.open_table(OPEN_SESSIONS_BY_DEVICE)?;
    let open = transaction.open_table(OPEN_SESSIONS)?;
    let history = transaction.open_table(SESSION_HISTORY)?;
    let end = successor(device_id);
    let mut summaries = Vec::new();
    for entry in by_device.range::<(&str, &str)>((device_id, "")..(end.as_str(), ""))? {
        let (key, _) = entry?;
        let (_, session_id) = key.value();
        let Some(bytes) = open.get(session_id)? else {
            return Err(StoreError::Corrupt(format!("open_sessions_by_device names a missing session {session_id:?}")));
        };
        let state: SessionState = decode("open_sessions", &session_id, bytes.value())?;
        summaries.push(SessionSummary {
            id: state.id,
            device_id: state.device_id,
            started_at: state.started_at,
            ended_at: None,
            outcome: SessionOutcome::Active,
            packages: state.packages,
            commands_answered: state.commands_answered,
        });
    }
    for entry in history.range::<(&str, u64, &str)>((device_id, 0, "")..(end.as_str(), 0, ""))?.rev().take(limit) {
        let (key, value) = entry?;
        summaries.push(decode("session_history", &key.value(), value.value())?);
    }
    summaries.sort_by(|left, right| right.started_at.cmp(&left.started_at).then_with(|| right.id.cmp(&left.id)));
    summaries.truncate(limit);
    Ok(summaries)
}

pub fn mirror(database: &Database, device_id: &str) -> Result<Option<MirrorRecord>, StoreError> {
    let transaction = database.begin_read()?;
    let mirrors = transaction.open_table(MIRRORS)?;
    let Some(bytes) = mirrors.get(device_id)? else {
        return Ok(None);
    };
    decode("mirrors", &device_id, bytes.value()).map(Some)
}

pub fn list_alerts(database: &Database, device_id: &str, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
    let transaction = database.begin_read()?;
    let alerts = transaction.open_table(ALERTS)?;
    let mut records = Vec::new();
    for entry in alerts.range::<(&str, u64)>((device_id, 0)..=(device_id, u64::MAX))?.rev().take(limit) {
        let (key, value) = entry?;
        records.push(decode("alerts", &key.value(), value.value())?);
    }
    Ok(records)
}

pub fn next_alert_id(database: &Database, device_id: &str) -> Result<u64, StoreError> {
    let transaction = database.begin_read()?;
    counter(&transaction.open_table(NEXT_ALERT_ID)?, device_id, 1)
}

pub fn upload_usage(database: &Database, device_id: &str) -> Result<crate::store::UploadUsage, StoreError> {
    let transaction = database.begin_read()?;
    let (device_bytes, device_items) =
        transaction.open_table(UPLOAD_USAGE)?.get(device_id)?.map(|usage| usage.value()).unwrap_or((0, 0));
    let total_bytes = counter(&transaction.open_table(META)?, META_UPLOAD_TOTAL_BYTES, 0)?;
    Ok(crate::store::UploadUsage { device_bytes, device_items, total_bytes })
}

pub fn content(database: &Database, path: &str) -> Result<Option<RepositoryItem>, StoreError> {
    let transaction = database.begin_read()?;
    let repository = transaction.open_table(REPOSITORY)?;
    let Some(bytes) = repository.get(path)? else {
        return Ok(None);
    };
    decode("repository", &path, bytes.value()).map(Some)
}

/// The oldest `limit` events of the outbox (the engine's one shard).
pub fn outbox(database: &Database, limit: usize) -> Result<Vec<Event>, StoreError> {
    let transaction = database.begin_read()?;
    let outbox = transaction.open_table(OUTBOX)?;
    let mut events = Vec::new();
    for entry in outbox.iter()?.take(limit) {
        let (key, value) = entry?;
        events.push(decode("outbox", &key.value(), value.value())?);
    }
    Ok(events)
}

pub fn outbox_len(database: &Database) -> Result<u64, StoreError> {
    let transaction = database.begin_read()?;
    Ok(transaction.open_table(OUTBOX)?.len()?)
}

/// When the earliest scheduled event is due, if any is scheduled.
pub fn first_scheduled(database: &Database) -> Result<Option<u64>, StoreError> {
    let transaction = database.begin_read()?;
    let scheduled = transaction.open_table(SCHEDULED)?;
    let first = scheduled.first()?.map(|(key, _)| key.value().0);
    Ok(first)
}
