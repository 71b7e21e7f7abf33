//! How a [`WriteBatch`] becomes Redis writes: one Lua script (`lua/commit.lua`) per slot group, plus global steps.
//!
//! Every write of a batch belongs to a device (its keys carry `{device id}`)
//! or to an outbox shard (an event goes to the shard of its key), and so to a
//! slot. On Redis Cluster the writes are grouped by slot and each group is one
//! script: its fence and outbox bound are checked before anything is written,
//! then its writes applied, its events appended to its slot's outbox, and the
//! lease renewed or released, all atomically. Writes to global keys (the
//! device index for devices registered outside a session step, repository
//! items) go in a step of their own before the groups, so that a crash
//! between the two leaves only harmless leftovers (an index entry without its
//! record, which listing skips; an item no event announces, which a retry
//! replaces). On a standalone server everything, global keys included, is one
//! group: one script, atomic as a whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::keys::Keys;
use crate::cluster::Fence;
use crate::model::{CommandState, Device, NotificationState, RecordWrite};
use crate::store::index::device_terms;
use crate::store::{StoreError, UploadCharge, WriteBatch};

/// The ops of one `commit.lua` invocation, its keys numbered as they first appear.
#[derive(Debug, Default)]
pub struct ScriptOps {
    pub keys: Vec<String>,
    numbers: HashMap<String, usize>,
    pub args: Vec<Vec<u8>>,
}

impl ScriptOps {
    /// Appends `code`, then its keys (as KEYS indexes), then its other arguments: the layout `commit.lua` reads.
    pub fn op(&mut self, code: &str, keys: &[&str], args: &[&[u8]]) {
        self.args.push(code.as_bytes().to_vec());
        for key in keys {
            let number = match self.numbers.get(*key) {
                Some(number) => *number,
                None => {
                    self.keys.push((*key).to_owned());
                    self.numbers.insert((*key).to_owned(), self.keys.len());
                    self.keys.len()
                }
            };
            self.args.push(number.to_string().into_bytes());
        }
        self.args.extend(args.iter().map(|arg| arg.to_vec()));
    }

    /// The check (and, unless `mode` is `check`, the renewal or release) of a fence.
    pub fn fence(&mut self, keys: &Keys, fence: &Fence, mode: FenceMode) {
        let ttl = fence.ttl.max(1).to_string();
        let epoch = fence.epoch.to_string();
        self.op(
            "FENCE",
            &[&keys.lease(&fence.device_id), &keys.fencing(&fence.device_id)],
            &[fence.node_id.as_bytes(), epoch.as_bytes(), ttl.as_bytes(), mode.as_str().as_bytes()],
        );
    }
}

/// What a fence op does once its check passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceMode {
    Renew,
    Release,
    /// Only check (the pre-check before a cluster commit's global step).
    Check,
}

impl FenceMode {
    fn as_str(self) -> &'static str {
        match self {
            FenceMode::Renew => "renew",
            FenceMode::Release => "release",
            FenceMode::Check => "check",
        }
    }

    pub fn of(fence: &Fence) -> FenceMode {
        if fence.release { FenceMode::Release } else { FenceMode::Renew }
    }
}

/// A global write of a cluster commit, sent before the slot groups.
#[derive(Debug, Clone, PartialEq)]
pub enum GlobalWrite {
    /// Device ids to add to the device index.
    IndexDevices(Vec<String>),
    /// A repository item: key and JSON.
    Content(String, Vec<u8>),
    /// A notification request's device: key, device id, expiry (ms since the epoch).
    NotificationDevice(String, String, u64),
    /// A device joins (or leaves) an inventory index term.
    Term { term: String, device_id: String, joined: bool },
}

/// The Redis writes of one batch.
#[derive(Debug, Default)]
pub struct CommitPlan {
    /// Applied first, on Redis Cluster only (on a standalone server they are in the one group).
    pub global: Vec<GlobalWrite>,
    /// One script per slot group (shard number; everything is group 0 on a standalone server).
    pub groups: BTreeMap<u32, ScriptOps>,
    /// The group that checks the batch's fence.
    pub fence_group: Option<u32>,
    /// On Redis Cluster, the upload charge, run before everything else (its key has a slot of its own);
    /// on a standalone server it is in the one group.
    pub charge: Option<ScriptOps>,
    /// On Redis Cluster, each written device's index terms: the terms it joins are added before the groups
    /// run, those it leaves removed after (their keys are in other slots), so a crash between leaves only
    /// entries that listing skips. On a standalone server the one group moves them (the TERMS op).
    pub terms: Vec<(String, BTreeSet<String>)>,
    /// The groups whose record writes expect a revision: on Redis Cluster they run before the other groups, so a
    /// conflict there writes nothing of the batch.
    pub record_groups: BTreeSet<u32>,
    /// The (scope, collection) of each record revisions key, to name a conflict the script reports.
    pub record_collections: HashMap<String, (String, String)>,
}

impl ScriptOps {
    /// The check (before any write) and the charge of an upload against its quotas.
    pub fn upload_charge(&mut self, keys: &Keys, charge: &UploadCharge) {
        let numbers = [
            charge.bytes,
            charge.limits.max_bytes_per_device,
            charge.limits.max_items_per_device,
            charge.limits.max_total_bytes,
        ]
        .map(|number| number.to_string());
        self.op(
            "QUOTA",
            &[&keys.upload_usage()],
            &[
                charge.device_id.as_bytes(),
                charge.path.as_bytes(),
                numbers[0].as_bytes(),
                numbers[1].as_bytes(),
                numbers[2].as_bytes(),
                numbers[3].as_bytes(),
            ],
        );
    }

    /// Releases the share of the device upload stored at `path`, if any.
    pub fn upload_release(&mut self, keys: &Keys, path: &str) {
        self.op("RELEASE", &[&keys.upload_usage()], &[path.as_bytes()]);
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|error| StoreError::Io(format!("cannot encode a record: {error}")))
}

/// The index moves of a written device: the TERMS op in its group on a standalone server; on a cluster its
/// terms stored in its group and the moves left to [`CommitPlan::terms`].
fn index_terms(keys: &Keys, plan: &mut CommitPlan, device: &Device) -> Result<(), StoreError> {
    let terms = device_terms(device);
    let ops = plan.groups.entry(keys.shard_of_device(&device.id)).or_default();
    if keys.is_cluster() {
        ops.op("SET", &[&keys.device_terms(&device.id)], &[&encode(&terms)?]);
        plan.terms.push((device.id.clone(), terms));
    } else {
        let term_prefix = keys.term_prefix();
        let args: [&[u8]; 3] = [term_prefix.as_bytes(), device.id.as_bytes(), &encode(&terms)?];
        ops.op("TERMS", &[&keys.device_terms(&device.id)], &args);
    }
    Ok(())
}

/// A plan that only indexes `devices` (their records stay as they are): building the index of devices written
/// before it existed.
pub fn index_plan(keys: &Keys, devices: &[Device]) -> Result<CommitPlan, StoreError> {
    let mut plan = CommitPlan::default();
    for device in devices {
        index_terms(keys, &mut plan, device)?;
    }
    Ok(plan)
}

/// Builds the plan of `batch`. `outbox_limit` is the bound of one outbox shard; each device that gains
/// an ended session keeps its newest `history_per_device` summaries (the older go in the same script).
pub fn plan(
    keys: &Keys,
    batch: &WriteBatch,
    outbox_limit: u64,
    history_per_device: usize,
) -> Result<CommitPlan, StoreError> {
    let cluster = keys.is_cluster();
    let mut plan = CommitPlan::default();
    let group_of = |device_id: &str| keys.shard_of_device(device_id);
    let fenced_device = batch.fence.as_ref().map(|fence| fence.device_id.as_str());
    // Devices whose open sessions change: their shard's open-sessions index follows, last in their group.
    let mut session_devices: BTreeSet<&str> = BTreeSet::new();

    let mut new_devices = Vec::new();
    for device in &batch.devices {
        let ops = plan.groups.entry(group_of(&device.id)).or_default();
        ops.op("SET", &[&keys.device(&device.id)], &[&encode(device)?]);
        index_terms(keys, &mut plan, device)?;
        let ops = plan.groups.entry(group_of(&device.id)).or_default();
        if !cluster {
            ops.op("ZADD", &[&keys.device_index()], &[b"0", device.id.as_bytes()]);
        } else if fenced_device != Some(device.id.as_str()) {
            // A fenced batch's device exists and is indexed: its lease was granted by a load that found it,
            // and deleting a device drops its lease. Other devices may be new: index first.
            new_devices.push(device.id.clone());
        }
    }
    if !new_devices.is_empty() {
        plan.global.push(GlobalWrite::IndexDevices(new_devices));
    }
    for session in &batch.sessions {
        let ops = plan.groups.entry(group_of(&session.device_id)).or_default();
        ops.op("HSET", &[&keys.sessions(&session.device_id)], &[session.id.as_bytes(), &encode(session)?]);
        session_devices.insert(&session.device_id);
    }
    // After the upserts, so a batch that opens and ends a session leaves it ended.
    for summary in &batch.ended_sessions {
        let device_id = summary.device_id.as_str();
        let ops = plan.groups.entry(group_of(device_id)).or_default();
        ops.op("HDEL", &[&keys.sessions(device_id)], &[summary.id.as_bytes()]);
        ops.op("HSET", &[&keys.history(device_id)], &[summary.id.as_bytes(), &encode(summary)?]);
        let started_at = summary.started_at.to_string();
        ops.op("ZADD", &[&keys.history_order(device_id)], &[started_at.as_bytes(), summary.id.as_bytes()]);
        // The final state, when the batch carries it, of the device's latest ended session only.
        if let Some(final_state) = batch.sessions.iter().find(|session| session.id == summary.id) {
            ops.op("SET", &[&keys.ended(device_id)], &[&encode(final_state)?]);
        }
        session_devices.insert(device_id);
    }
    let history_devices: BTreeSet<&str> =
        batch.ended_sessions.iter().map(|summary| summary.device_id.as_str()).collect();
    let keep = history_per_device.max(1).to_string();
    for device_id in history_devices {
        let ops = plan.groups.entry(group_of(device_id)).or_default();
        ops.op("PRUNE", &[&keys.history_order(device_id), &keys.history(device_id)], &[keep.as_bytes()]);
    }
    for record in &batch.commands {
        let device_id = record.device_id.as_str();
        let ops = plan.groups.entry(group_of(device_id)).or_default();
        let id = record.id.to_string();
        let id = id.as_bytes();
        ops.op("HSET", &[&keys.commands(device_id)], &[id, &encode(record)?]);
        ops.op("ZADD", &[&keys.command_ids(device_id)], &[id, id]);
        if record.state == CommandState::Queued {
            ops.op("ZADD", &[&keys.queued(device_id)], &[id, id]);
        } else {
            ops.op("ZREM", &[&keys.queued(device_id)], &[id]);
        }
        // The pending count is a set of ids: a state change needs no read of the previous state.
        if record.state.is_final() {
            ops.op("SREM", &[&keys.pending(device_id)], &[id]);
        } else {
            ops.op("SADD", &[&keys.pending(device_id)], &[id]);
        }
        ops.op("RAISE", &[&keys.last_command_id(device_id)], &[id]);
    }
    for (device_id, mirror) in &batch.mirrors {
        let ops = plan.groups.entry(group_of(device_id)).or_default();
        ops.op("SET", &[&keys.mirror(device_id)], &[&encode(mirror)?]);
    }
    for alert in &batch.alerts {
        let device_id = alert.device_id.as_str();
        let ops = plan.groups.entry(group_of(device_id)).or_default();
        let id = alert.id.to_string();
        ops.op("ZREMSCORE", &[&keys.alerts(device_id)], &[id.as_bytes()]);
        ops.op("ZADD", &[&keys.alerts(device_id)], &[id.as_bytes(), &encode(alert)?]);
        ops.op("RAISE", &[&keys.last_alert_id(device_id)], &[id.as_bytes()]);
    }
    for item in &batch.contents {
        if cluster {
            plan.global.push(GlobalWrite::Content(keys.content(&item.path), encode(item)?));
        } else {
            plan.groups.entry(0).or_default().op("SET", &[&keys.content(&item.path)], &[&encode(item)?]);
        }
    }
    // Both keys expire when the record does (PXAT: by the record's own times, as the embedded engine judges).
    for record in &batch.notifications {
        let device_id = record.device_id.as_str();
        let expires_at = record.expires_at();
        let expires = expires_at.to_string();
        let device_key = keys.notification_device(&record.request_id);
        if cluster {
            plan.global.push(GlobalWrite::NotificationDevice(device_key, device_id.to_owned(), expires_at));
        } else {
            plan.groups.entry(0).or_default().op(
                "SETPXAT",
                &[&device_key],
                &[device_id.as_bytes(), expires.as_bytes()],
            );
        }
        let ops = plan.groups.entry(group_of(device_id)).or_default();
        let record_key = keys.notification(device_id, &record.request_id);
        ops.op("SETPXAT", &[&record_key], &[&encode(record)?, expires.as_bytes()]);
        if let Some(outcome) = record.outcome.as_ref().filter(|outcome| outcome.state == NotificationState::Sent) {
            let sent_at = outcome.at.to_string();
            ops.op(
                "LATEST",
                &[&keys.latest_notification(device_id)],
                &[record.request_id.as_bytes(), sent_at.as_bytes(), expires.as_bytes()],
            );
        }
    }
    for delivery in &batch.deliveries {
        let expires = delivery.at.saturating_add(crate::model::NOTIFICATION_RETENTION_MILLIS).to_string();
        let key = keys.notification_delivery(&delivery.device_id, &delivery.request_id);
        let ops = plan.groups.entry(group_of(&delivery.device_id)).or_default();
        ops.op("SETPXAT", &[&key], &[&encode(delivery)?, expires.as_bytes()]);
    }
    if let Some(charge) = &batch.upload {
        if cluster {
            let mut ops = ScriptOps::default();
            ops.upload_charge(keys, charge);
            plan.charge = Some(ops);
        } else {
            plan.groups.entry(0).or_default().upload_charge(keys, charge);
        }
    }
    for device_id in session_devices {
        let shard = group_of(device_id);
        let ops = plan.groups.entry(shard).or_default();
        ops.op("OPEN", &[&keys.sessions(device_id), &keys.open_devices(shard)], &[device_id.as_bytes()]);
    }
    let mut events_by_shard: BTreeMap<u32, Vec<(&str, Vec<u8>)>> = BTreeMap::new();
    for event in &batch.events {
        events_by_shard.entry(keys.shard_of_device(&event.key)).or_default().push((&event.id, encode(event)?));
    }
    let limit = outbox_limit.to_string();
    for (shard, events) in events_by_shard {
        let count = events.len().to_string();
        let mut args: Vec<&[u8]> = vec![limit.as_bytes(), count.as_bytes()];
        for (id, json) in &events {
            args.push(id.as_bytes());
            args.push(json);
        }
        plan.groups.entry(shard).or_default().op(
            "OUTBOX",
            &[&keys.outbox_events(shard), &keys.outbox_order(shard), &keys.outbox_sequence(shard)],
            &args,
        );
    }
    for scheduled in &batch.scheduled {
        let shard = keys.shard_of_device(&scheduled.event.key);
        let due_at = scheduled.due_at.to_string();
        plan.groups.entry(shard).or_default().op(
            "SCHEDULE",
            &[&keys.scheduled_order(shard), &keys.scheduled_events(shard)],
            &[due_at.as_bytes(), scheduled.event.id.as_bytes(), &encode(&scheduled.event)?],
        );
    }
    for write in &batch.records {
        record_op(keys, &mut plan, write)?;
    }
    if let Some(fence) = &batch.fence {
        let shard = group_of(&fence.device_id);
        plan.groups.entry(shard).or_default().fence(keys, fence, FenceMode::of(fence));
        plan.fence_group = Some(shard);
    }
    Ok(plan)
}

/// The RECORD op of one record write, in the group of its scope.
fn record_op(keys: &Keys, plan: &mut CommitPlan, write: &RecordWrite) -> Result<(), StoreError> {
    let (scope, collection, key, expected, json, labels, mode) = match write {
        RecordWrite::Put(put) => {
            let record = &put.record;
            let mut stored = record.clone();
            // The revision lives in its own hash (HINCRBY), so the script need not rewrite the JSON.
            stored.revision = 0;
            let labels: Vec<&String> = record.labels.iter().collect();
            (
                &record.scope,
                &record.collection,
                &record.key,
                put.expected_revision,
                encode(&stored)?,
                encode(&labels)?,
                "put",
            )
        }
        RecordWrite::Delete { scope, collection, key } => {
            (scope, collection, key, None, Vec::new(), b"[]".to_vec(), "del")
        }
    };
    let shard = keys.shard_of_device(scope);
    let revisions = keys.record_revisions(scope, collection);
    if expected.is_some() {
        plan.record_groups.insert(shard);
    }
    plan.record_collections.insert(revisions.clone(), (scope.clone(), collection.clone()));
    let expected = expected.map(|revision| revision.to_string()).unwrap_or_default();
    let prefix = keys.record_label_prefix(scope, collection);
    plan.groups.entry(shard).or_default().op(
        "RECORD",
        &[
            &keys.record_values(scope, collection),
            &revisions,
            &keys.record_labels_of(scope, collection),
            &keys.record_keys(scope, collection),
        ],
        &[key.as_bytes(), expected.as_bytes(), prefix.as_bytes(), &json, &labels, mode.as_bytes()],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Event, SCHEMA_VERSION, Topic};
    use crate::model::{Credentials, Device, SessionState};
    use crate::store::redis::slot::key_slot;

    fn event(id: &str, key: &str) -> Event {
        Event {
            id: id.to_owned(),
            event_type: "command.result".to_owned(),
            schema_version: SCHEMA_VERSION,
            timestamp: 1,
            topic: Topic::Results,
            key: key.to_owned(),
            payload: serde_json::json!({}),
        }
    }

    fn session(id: &str, device_id: &str) -> SessionState {
        SessionState {
            id: id.to_owned(),
            device_id: device_id.to_owned(),
            started_at: 1,
            last_activity: 1,
            packages: 1,
            awaiting: Vec::new(),
            ended: false,
            commands_answered: 0,
            replay: None,
        }
    }

    fn device(id: &str) -> Device {
        let credentials = Credentials { realm: "r".to_owned(), ha1_md5: String::new(), ha1_sha256: String::new() };
        Device::new(id, credentials, 1)
    }

    #[test]
    fn cluster_groups_writes_by_slot_and_every_key_of_a_group_shares_its_slot() {
        let keys = Keys::new("omadm", true);
        let fence = Fence { device_id: "a".to_owned(), node_id: "n".to_owned(), epoch: 3, ttl: 100, release: false };
        let batch = WriteBatch {
            devices: vec![device("a"), device("b")],
            sessions: vec![session("s-a", "a"), session("s-b", "b")],
            events: vec![event("e-1", "a"), event("e-2", "b"), event("e-3", "a")],
            fence: Some(fence),
            ..WriteBatch::default()
        };
        let plan = plan(&keys, &batch, 10, 50).unwrap();
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.fence_group, Some(keys.shard_of_device("a")));
        // Only the unfenced device is indexed in a step of its own.
        assert_eq!(plan.global, vec![GlobalWrite::IndexDevices(vec!["b".to_owned()])]);
        for (shard, ops) in &plan.groups {
            for key in &ops.keys {
                assert_eq!(u32::from(key_slot(key.as_bytes())), *shard, "{key}");
            }
        }
    }

    #[test]
    fn standalone_is_one_group_with_the_global_keys() {
        let keys = Keys::new("omadm", false);
        let batch = WriteBatch {
            devices: vec![device("a"), device("b")],
            events: vec![event("e-1", "a"), event("e-2", "b")],
            ..WriteBatch::default()
        };
        let plan = plan(&keys, &batch, 10, 50).unwrap();
        assert!(plan.global.is_empty());
        assert_eq!(plan.groups.len(), 1);
        let ops = &plan.groups[&0];
        assert!(ops.keys.contains(&keys.device_index()));
        // One OUTBOX op carries both events; keys are listed once.
        assert_eq!(ops.args.iter().filter(|arg| arg.as_slice() == b"OUTBOX").count(), 1);
        let unique: BTreeSet<&String> = ops.keys.iter().collect();
        assert_eq!(unique.len(), ops.keys.len());
    }
}
