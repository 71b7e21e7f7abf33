//! The writes of the embedded store, each applied inside a redb write transaction it is given.
//!
//! The writer thread ([`super::writer`]) opens the transaction, applies one
//! write or a group of them, and commits (fsync) once for the group. Every
//! function here takes its input by reference, so a group that fails part way
//! can be applied again one write at a time.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::Deserialize;

use super::coordination;
use super::tables::{
    ALERTS, COMMANDS, DEVICES, ENDED_SESSIONS, LAST_ENDED_SESSION, META, META_OUTBOX_NEXT_SEQUENCE, MIRRORS,
    NEXT_ALERT_ID, NEXT_COMMAND_ID, OPEN_SESSIONS, OPEN_SESSIONS_BY_DEVICE, OUTBOX, OUTBOX_IDS, PENDING_COMMANDS,
    QUEUED_COMMANDS, REPOSITORY, SEQUENCES, SESSION_HISTORY, counter, decode, encode, successor,
};
use super::tables::{
    LATEST_NOTIFICATIONS, META_UPLOAD_TOTAL_BYTES, NOTIFICATION_EXPIRY, NOTIFICATIONS, SCHEDULED, SCHEDULED_IDS,
    UPLOAD_SIZES, UPLOAD_USAGE,
};
use crate::bus::Event;
use crate::clock::Millis;
use crate::model::{
    CommandId, CommandRecord, CommandState, NewCommand, NotificationDelivery, NotificationRecord, NotificationState,
    RepositoryItem,
};
use crate::store::{ScheduledEvent, StoreError, UploadCharge, UploadUsage, WriteBatch, quota_refusal};

/// The one field of a stored command the queued index and the pending count depend on.
#[derive(Deserialize)]
struct StoredState {
    state: CommandState,
}

fn is_pending(state: CommandState) -> bool {
    !state.is_final()
}

pub fn enqueue_commands(
    transaction: &WriteTransaction,
    device_id: &str,
    commands: &[NewCommand],
    now: Millis,
) -> Result<Vec<CommandId>, StoreError> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    let count = commands.len() as u64;
    let mut ids = Vec::with_capacity(commands.len());
    {
        let mut next_ids = transaction.open_table(NEXT_COMMAND_ID)?;
        let mut records = transaction.open_table(COMMANDS)?;
        let mut queued = transaction.open_table(QUEUED_COMMANDS)?;
        let mut pending = transaction.open_table(PENDING_COMMANDS)?;
        let first_id = counter(&next_ids, device_id, 1)?;
        for (id, new_command) in (first_id..).zip(commands) {
            let record = CommandRecord::queued(device_id, id, new_command.clone(), now);
            records.insert((device_id, id), encode(&record)?.as_slice())?;
            queued.insert((device_id, id), ())?;
            ids.push(id);
        }
        next_ids.insert(device_id, first_id + count)?;
        let pending_before = counter(&pending, device_id, 0)?;
        pending.insert(device_id, pending_before + count)?;
    }
    Ok(ids)
}

/// What became of a batch inside a transaction that goes on.
#[derive(Debug)]
pub enum Applied {
    Done,
    /// Turned down before anything of it was written (`Fenced`, `OutboxFull`):
    /// the transaction stays good for the other writes of its group.
    Refused(StoreError),
}

/// Applies a [`WriteBatch`]; being in one transaction, all of it becomes durable at its commit, or none of it.
/// The fence and the outbox bound are checked first, before anything is written. Each device that
/// gains an ended session keeps its newest `history_per_device` summaries; older ones go in this transaction.
pub fn commit(
    transaction: &WriteTransaction,
    batch: &WriteBatch,
    outbox_limit: u64,
    history_per_device: usize,
) -> Result<Applied, StoreError> {
    if let Some(fence) = &batch.fence
        && !coordination::fence_holds(transaction, fence)?
    {
        return Ok(Applied::Refused(StoreError::Fenced { device_id: fence.device_id.clone() }));
    }
    if let Some(waiting) = outbox_overflow(transaction, &batch.events, outbox_limit)? {
        return Ok(Applied::Refused(StoreError::OutboxFull { len: waiting }));
    }
    if let Some(charge) = &batch.upload
        && let Some(quota) = upload_refusal(transaction, charge)?
    {
        return Ok(Applied::Refused(StoreError::QuotaExceeded { quota }));
    }
    if let Some(conflict) = super::records::conflict(transaction, &batch.records)? {
        return Ok(Applied::Refused(conflict));
    }
    apply_batch(transaction, batch, history_per_device)?;
    super::records::apply(transaction, &batch.records)?;
    for enqueued in &batch.enqueued {
        enqueue_commands(transaction, &enqueued.device_id, &enqueued.commands, enqueued.now)?;
    }
    if let Some(charge) = &batch.upload {
        release_upload(transaction, &charge.path)?;
        charge_upload(transaction, charge)?;
    }
    if let Some(fence) = &batch.fence {
        coordination::renew_or_release(transaction, fence)?;
    }
    Ok(Applied::Done)
}

/// The events waiting, when adding the new ones of `events` (ids not already waiting) would pass `limit`.
fn outbox_overflow(transaction: &WriteTransaction, events: &[Event], limit: u64) -> Result<Option<u64>, StoreError> {
    if events.is_empty() {
        return Ok(None);
    }
    let outbox_ids = transaction.open_table(OUTBOX_IDS)?;
    let mut new_ids = BTreeSet::new();
    for event in events {
        if outbox_ids.get(event.id.as_str())?.is_none() {
            new_ids.insert(event.id.as_str());
        }
    }
    let waiting = transaction.open_table(OUTBOX)?.len()?;
    let fits = new_ids.is_empty() || waiting.saturating_add(new_ids.len() as u64) <= limit;
    Ok(if fits { None } else { Some(waiting) })
}

fn apply_batch(
    transaction: &WriteTransaction,
    batch: &WriteBatch,
    history_per_device: usize,
) -> Result<(), StoreError> {
    let devices = batch
        .devices
        .iter()
        .map(|device| Ok((device.id.as_str(), encode(device)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let sessions = batch
        .sessions
        .iter()
        .map(|session| Ok((session.id.as_str(), session.device_id.as_str(), encode(session)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let ended_sessions = batch
        .ended_sessions
        .iter()
        .map(|summary| Ok((summary, encode(summary)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let commands =
        batch.commands.iter().map(|record| Ok((record, encode(record)?))).collect::<Result<Vec<_>, StoreError>>()?;
    let mirrors = batch
        .mirrors
        .iter()
        .map(|(device_id, mirror)| Ok((device_id.as_str(), encode(mirror)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let alerts = batch
        .alerts
        .iter()
        .map(|alert| Ok((alert.device_id.as_str(), alert.id, encode(alert)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let contents = batch
        .contents
        .iter()
        .map(|item| Ok((item.path.as_str(), encode(item)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let events = batch
        .events
        .iter()
        .map(|event| Ok((event.id.as_str(), encode(event)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;

    if !devices.is_empty() {
        let mut table = transaction.open_table(DEVICES)?;
        for (device_id, bytes) in &devices {
            table.insert(*device_id, bytes.as_slice())?;
        }
    }
    for device in &batch.devices {
        super::index::index_device(transaction, device)?;
    }
    if !sessions.is_empty() || !ended_sessions.is_empty() {
        let mut open = transaction.open_table(OPEN_SESSIONS)?;
        let mut open_by_device = transaction.open_table(OPEN_SESSIONS_BY_DEVICE)?;
        let mut history = transaction.open_table(SESSION_HISTORY)?;
        for (session_id, device_id, bytes) in &sessions {
            open.insert(*session_id, bytes.as_slice())?;
            open_by_device.insert((*device_id, *session_id), ())?;
        }
        let mut ended_states = transaction.open_table(ENDED_SESSIONS)?;
        let mut last_ended = transaction.open_table(LAST_ENDED_SESSION)?;
        // After the upserts, so a batch that opens and ends a session leaves it ended.
        for (summary, bytes) in &ended_sessions {
            open.remove(summary.id.as_str())?;
            let final_state =
                sessions.iter().find(|(session_id, _, _)| *session_id == summary.id).map(|(_, _, bytes)| bytes);
            open_by_device.remove((summary.device_id.as_str(), summary.id.as_str()))?;
            history.insert((summary.device_id.as_str(), summary.started_at, summary.id.as_str()), bytes.as_slice())?;
            // Keep the final state (when the batch carried it) of the device's latest ended session only.
            if let Some(final_state) = final_state {
                let previous = last_ended
                    .insert(summary.device_id.as_str(), summary.id.as_str())?
                    .map(|previous| previous.value().to_owned());
                if let Some(previous) = previous.filter(|previous| previous != &summary.id) {
                    ended_states.remove(previous.as_str())?;
                }
                ended_states.insert(summary.id.as_str(), final_state.as_slice())?;
            }
        }
        let pruned_devices: BTreeSet<&str> =
            ended_sessions.iter().map(|(summary, _)| summary.device_id.as_str()).collect();
        for device_id in pruned_devices {
            prune_history(&mut history, device_id, history_per_device)?;
        }
    }
    if !commands.is_empty() {
        let mut records = transaction.open_table(COMMANDS)?;
        let mut queued = transaction.open_table(QUEUED_COMMANDS)?;
        let mut pending = transaction.open_table(PENDING_COMMANDS)?;
        let mut next_ids = transaction.open_table(NEXT_COMMAND_ID)?;
        let mut pending_changes: BTreeMap<&str, i64> = BTreeMap::new();
        for (record, bytes) in &commands {
            let key = (record.device_id.as_str(), record.id);
            let previous_state = match records.insert(key, bytes.as_slice())? {
                Some(previous) => Some(decode::<StoredState>("commands", &key, previous.value())?.state),
                None => None,
            };
            if record.state == CommandState::Queued {
                queued.insert(key, ())?;
            } else {
                queued.remove(key)?;
            }
            let change = i64::from(is_pending(record.state)) - i64::from(previous_state.is_some_and(is_pending));
            *pending_changes.entry(record.device_id.as_str()).or_default() += change;
            // A record the store did not number (written directly by a batch) still keeps ids unique.
            if record.id >= counter(&next_ids, record.device_id.as_str(), 1)? {
                next_ids.insert(record.device_id.as_str(), record.id.saturating_add(1))?;
            }
        }
        for (device_id, change) in pending_changes {
            if change == 0 {
                continue;
            }
            let before = counter(&pending, device_id, 0)?;
            pending.insert(device_id, before.saturating_add_signed(change))?;
        }
    }
    if !mirrors.is_empty() {
        let mut table = transaction.open_table(MIRRORS)?;
        for (device_id, bytes) in &mirrors {
            table.insert(*device_id, bytes.as_slice())?;
        }
    }
    if !alerts.is_empty() {
        let mut table = transaction.open_table(ALERTS)?;
        let mut next_ids = transaction.open_table(NEXT_ALERT_ID)?;
        for (device_id, id, bytes) in &alerts {
            table.insert((*device_id, *id), bytes.as_slice())?;
            if *id >= counter(&next_ids, device_id, 1)? {
                next_ids.insert(*device_id, id.saturating_add(1))?;
            }
        }
    }
    if !contents.is_empty() {
        let mut repository = transaction.open_table(REPOSITORY)?;
        for (path, bytes) in &contents {
            repository.insert(*path, bytes.as_slice())?;
        }
    }
    append_to_outbox(transaction, &events)?;
    write_notifications(transaction, &batch.notifications)?;
    write_deliveries(transaction, &batch.deliveries)?;
    schedule_events(transaction, &batch.scheduled)?;
    Ok(())
}

/// Appends encoded events (id, JSON) to the outbox in order.
fn append_to_outbox(transaction: &WriteTransaction, events: &[(&str, Vec<u8>)]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut outbox = transaction.open_table(OUTBOX)?;
    let mut outbox_ids = transaction.open_table(OUTBOX_IDS)?;
    let mut meta = transaction.open_table(META)?;
    let mut sequence = counter(&meta, META_OUTBOX_NEXT_SEQUENCE, 0)?;
    for (event_id, bytes) in events {
        // The same id is the same event (ids are stable across retries): one copy waits.
        if outbox_ids.get(*event_id)?.is_some() {
            continue;
        }
        outbox.insert(sequence, bytes.as_slice())?;
        outbox_ids.insert(*event_id, sequence)?;
        sequence += 1;
    }
    meta.insert(META_OUTBOX_NEXT_SEQUENCE, sequence)?;
    Ok(())
}

/// Keeps each event until its time; an id already scheduled moves to its new time.
fn schedule_events(transaction: &WriteTransaction, scheduled: &[ScheduledEvent]) -> Result<(), StoreError> {
    if scheduled.is_empty() {
        return Ok(());
    }
    let mut order = transaction.open_table(SCHEDULED)?;
    let mut ids = transaction.open_table(SCHEDULED_IDS)?;
    for entry in scheduled {
        let id = entry.event.id.as_str();
        let previous = ids.get(id)?.map(|due_at| due_at.value());
        if let Some(previous) = previous {
            order.remove((previous, id))?;
        }
        order.insert((entry.due_at, id), encode(&entry.event)?.as_slice())?;
        ids.insert(id, entry.due_at)?;
    }
    Ok(())
}

/// Moves the events scheduled at or before `now` into the outbox, earliest first, at most `limit` and no more
/// than the outbox's bound leaves room for; returns how many moved.
pub fn release_due_events(
    transaction: &WriteTransaction,
    now: Millis,
    limit: usize,
    outbox_limit: u64,
) -> Result<usize, StoreError> {
    let waiting = transaction.open_table(OUTBOX)?.len()?;
    let room = usize::try_from(outbox_limit.saturating_sub(waiting)).unwrap_or(usize::MAX).min(limit);
    if room == 0 {
        return Ok(0);
    }
    let mut due: Vec<(Millis, String, Vec<u8>)> = Vec::new();
    {
        let order = transaction.open_table(SCHEDULED)?;
        for entry in order.range::<(u64, &str)>(..(now.saturating_add(1), ""))?.take(room) {
            let (key, value) = entry?;
            let (due_at, id) = key.value();
            due.push((due_at, id.to_owned(), value.value().to_vec()));
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    {
        let mut order = transaction.open_table(SCHEDULED)?;
        let mut ids = transaction.open_table(SCHEDULED_IDS)?;
        for (due_at, id, _) in &due {
            order.remove((*due_at, id.as_str()))?;
            ids.remove(id.as_str())?;
        }
    }
    let events: Vec<(&str, Vec<u8>)> = due.iter().map(|(_, id, bytes)| (id.as_str(), bytes.clone())).collect();
    append_to_outbox(transaction, &events)?;
    Ok(due.len())
}

/// Expired notification records one write removes at most, so a write after a long pause stays short;
/// later writes take the rest.
const NOTIFICATION_PRUNE_PER_WRITE: usize = 1000;

/// Creates or replaces the records, each kept until its retention after this write; first prunes records
/// that expired before the newest of them was written (the batch's clock: the store keeps none).
fn write_notifications(transaction: &WriteTransaction, records: &[NotificationRecord]) -> Result<(), StoreError> {
    let Some(now) = records.iter().map(NotificationRecord::written_at).max() else {
        return Ok(());
    };
    let mut table = transaction.open_table(NOTIFICATIONS)?;
    let mut expiry = transaction.open_table(NOTIFICATION_EXPIRY)?;
    let mut latest = transaction.open_table(LATEST_NOTIFICATIONS)?;
    let mut expired = Vec::new();
    for entry in expiry.range::<(u64, &str)>((0, "")..(now, ""))?.take(NOTIFICATION_PRUNE_PER_WRITE) {
        let (key, _) = entry?;
        let (expires_at, request_id) = key.value();
        expired.push((expires_at, request_id.to_owned()));
    }
    for (expires_at, request_id) in &expired {
        expiry.remove((*expires_at, request_id.as_str()))?;
        table.remove(request_id.as_str())?;
    }
    for record in records {
        let previous = match table.get(record.request_id.as_str())? {
            Some(entry) => {
                let (expires_at, bytes) = entry.value();
                Some((expires_at, decode::<NotificationRecord>("notifications", &record.request_id, bytes)?.delivery))
            }
            None => None,
        };
        let mut kept = None;
        if let Some((previous, delivery)) = previous {
            expiry.remove((previous, record.request_id.as_str()))?;
            kept = delivery;
        }
        let expires_at = record.expires_at();
        // The delivery report arrives apart from the dispatcher's writes of the record: a write without it keeps it.
        let bytes = match (&record.delivery, kept) {
            (None, Some(delivery)) => encode(&NotificationRecord { delivery: Some(delivery), ..record.clone() })?,
            _ => encode(record)?,
        };
        table.insert(record.request_id.as_str(), (expires_at, bytes.as_slice()))?;
        expiry.insert((expires_at, record.request_id.as_str()), ())?;
        // A later write of an older request (its delivery, say) does not move the pointer back.
        if let Some(outcome) = record.outcome.as_ref().filter(|outcome| outcome.state == NotificationState::Sent) {
            let newer = latest.get(record.device_id.as_str())?.is_none_or(|entry| entry.value().1 <= outcome.at);
            if newer {
                latest.insert(record.device_id.as_str(), (record.request_id.as_str(), outcome.at))?;
            }
        }
    }
    Ok(())
}

/// Sets each report on its request's record, where the record is held and has not expired at the report's time.
fn write_deliveries(transaction: &WriteTransaction, deliveries: &[NotificationDelivery]) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let mut table = transaction.open_table(NOTIFICATIONS)?;
    for delivery in deliveries {
        let stored = match table.get(delivery.request_id.as_str())? {
            Some(entry) => {
                let (expires_at, bytes) = entry.value();
                (expires_at > delivery.at)
                    .then(|| {
                        decode::<NotificationRecord>("notifications", &delivery.request_id, bytes)
                            .map(|record| (expires_at, record))
                    })
                    .transpose()?
            }
            None => None,
        };
        let Some((expires_at, record)) = stored else { continue };
        let record = NotificationRecord { delivery: Some(delivery.clone()), ..record };
        table.insert(delivery.request_id.as_str(), (expires_at, encode(&record)?.as_slice()))?;
    }
    Ok(())
}

/// Deletes the device's oldest session summaries (by start, then id) beyond its newest `keep`.
fn prune_history(
    history: &mut redb::Table<(&'static str, u64, &'static str), &'static [u8]>,
    device_id: &str,
    keep: usize,
) -> Result<(), StoreError> {
    let end = successor(device_id);
    let range = (device_id, 0, "")..(end.as_str(), 0, "");
    let stored = history.range::<(&str, u64, &str)>(range.clone())?.count();
    let mut excess = stored.saturating_sub(keep);
    if excess == 0 {
        return Ok(());
    }
    history.retain_in::<(&str, u64, &str), _>(range, |_, _| {
        let delete = excess > 0;
        excess = excess.saturating_sub(1);
        !delete
    })?;
    Ok(())
}

/// Removes the device with its commands, sessions, mirror, alerts and lease. The id
/// counters and the lease epoch stay, so a device registered again under the same
/// id never reuses a command or alert id (event ids built from them stay unique)
/// and no fence of its former sessions holds again.
pub fn delete_device(transaction: &WriteTransaction, device_id: &str) -> Result<bool, StoreError> {
    let end = successor(device_id);
    let existed;
    {
        existed = transaction.open_table(DEVICES)?.remove(device_id)?.is_some();
        let device_commands = (device_id, 0)..=(device_id, CommandId::MAX);
        transaction.open_table(COMMANDS)?.retain_in::<(&str, u64), _>(device_commands.clone(), |_, _| false)?;
        transaction.open_table(QUEUED_COMMANDS)?.retain_in::<(&str, u64), _>(device_commands, |_, _| false)?;
        transaction.open_table(PENDING_COMMANDS)?.remove(device_id)?;

        let mut open_by_device = transaction.open_table(OPEN_SESSIONS_BY_DEVICE)?;
        let mut open = transaction.open_table(OPEN_SESSIONS)?;
        let mut session_ids = Vec::new();
        for entry in open_by_device.range::<(&str, &str)>((device_id, "")..(end.as_str(), ""))? {
            session_ids.push(entry?.0.value().1.to_owned());
        }
        for session_id in &session_ids {
            open.remove(session_id.as_str())?;
        }
        open_by_device.retain_in::<(&str, &str), _>((device_id, "")..(end.as_str(), ""), |_, _| false)?;
        let last_ended = transaction.open_table(LAST_ENDED_SESSION)?.remove(device_id)?.map(|id| id.value().to_owned());
        if let Some(last_ended) = last_ended {
            transaction.open_table(ENDED_SESSIONS)?.remove(last_ended.as_str())?;
        }
        transaction
            .open_table(SESSION_HISTORY)?
            .retain_in::<(&str, u64, &str), _>((device_id, 0, "")..(end.as_str(), 0, ""), |_, _| false)?;

        transaction.open_table(MIRRORS)?.remove(device_id)?;
        transaction
            .open_table(ALERTS)?
            .retain_in::<(&str, u64), _>((device_id, 0)..=(device_id, u64::MAX), |_, _| false)?;
        coordination::forget_lease(transaction, device_id)?;
        super::index::unindex_device(transaction, device_id)?;
    }
    Ok(existed)
}

/// The quota a charge would pass, judged on what its path holds now.
fn upload_refusal(
    transaction: &WriteTransaction,
    charge: &UploadCharge,
) -> Result<Option<crate::store::UploadQuotaKind>, StoreError> {
    let sizes = transaction.open_table(UPLOAD_SIZES)?;
    let previous = sizes.get(charge.path.as_str())?.map(|entry| {
        let (owner, bytes) = entry.value();
        (owner.to_owned(), bytes)
    });
    let (device_bytes, device_items) = transaction
        .open_table(UPLOAD_USAGE)?
        .get(charge.device_id.as_str())?
        .map(|usage| usage.value())
        .unwrap_or((0, 0));
    let total_bytes = counter(&transaction.open_table(META)?, META_UPLOAD_TOTAL_BYTES, 0)?;
    let usage = UploadUsage { device_bytes, device_items, total_bytes };
    Ok(quota_refusal(charge, previous.as_ref().map(|(owner, bytes)| (owner.as_str(), *bytes)), usage))
}

/// Adds a device's usage change (bytes and items, signed) and the total's.
fn add_usage(transaction: &WriteTransaction, device_id: &str, bytes: i64, items: i64) -> Result<(), StoreError> {
    let mut usage = transaction.open_table(UPLOAD_USAGE)?;
    let (device_bytes, device_items) = usage.get(device_id)?.map(|usage| usage.value()).unwrap_or((0, 0));
    let updated = (device_bytes.saturating_add_signed(bytes), device_items.saturating_add_signed(items));
    if updated == (0, 0) {
        usage.remove(device_id)?;
    } else {
        usage.insert(device_id, updated)?;
    }
    let mut meta = transaction.open_table(META)?;
    let total = counter(&meta, META_UPLOAD_TOTAL_BYTES, 0)?;
    meta.insert(META_UPLOAD_TOTAL_BYTES, total.saturating_add_signed(bytes))?;
    Ok(())
}

/// The device upload at `path`, if any, no longer counts against its owner's quota and the total.
fn release_upload(transaction: &WriteTransaction, path: &str) -> Result<(), StoreError> {
    let previous = transaction.open_table(UPLOAD_SIZES)?.remove(path)?.map(|entry| {
        let (owner, bytes) = entry.value();
        (owner.to_owned(), bytes)
    });
    if let Some((owner, bytes)) = previous {
        add_usage(transaction, &owner, -i64::try_from(bytes).unwrap_or(i64::MAX), -1)?;
    }
    Ok(())
}

fn charge_upload(transaction: &WriteTransaction, charge: &UploadCharge) -> Result<(), StoreError> {
    transaction.open_table(UPLOAD_SIZES)?.insert(charge.path.as_str(), (charge.device_id.as_str(), charge.bytes))?;
    add_usage(transaction, &charge.device_id, i64::try_from(charge.bytes).unwrap_or(i64::MAX), 1)
}

/// An operator write: a device upload it replaces no longer counts against the upload quotas.
pub fn put_content(transaction: &WriteTransaction, item: &RepositoryItem) -> Result<(), StoreError> {
    release_upload(transaction, &item.path)?;
    let bytes = encode(item)?;
    transaction.open_table(REPOSITORY)?.insert(item.path.as_str(), bytes.as_slice())?;
    Ok(())
}

pub fn delete_content(transaction: &WriteTransaction, path: &str) -> Result<bool, StoreError> {
    release_upload(transaction, path)?;
    Ok(transaction.open_table(REPOSITORY)?.remove(path)?.is_some())
}

/// Adds one to the counter `key` and returns the new value (1 for a new counter).
pub fn next_sequence(transaction: &WriteTransaction, key: &str) -> Result<u64, StoreError> {
    let mut sequences = transaction.open_table(SEQUENCES)?;
    let value = counter(&sequences, key, 0)?.saturating_add(1);
    sequences.insert(key, value)?;
    Ok(value)
}

/// Drops the events the Bus accepted; ids not in the outbox (acked twice) are ignored.
pub fn ack_outbox(transaction: &WriteTransaction, event_ids: &[String]) -> Result<(), StoreError> {
    if event_ids.is_empty() {
        return Ok(());
    }
    {
        let mut outbox = transaction.open_table(OUTBOX)?;
        let mut outbox_ids = transaction.open_table(OUTBOX_IDS)?;
        for event_id in event_ids {
            let Some(sequence) = outbox_ids.remove(event_id.as_str())?.map(|sequence| sequence.value()) else {
                continue;
            };
            outbox.remove(sequence)?;
        }
    }
    Ok(())
}
