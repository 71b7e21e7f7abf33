//! Cluster coordination in the embedded store: session leases with fencing epochs, and node membership.
//!
//! Each function runs inside the write transaction it is given (on the writer
//! thread), so a lease decision and the reads or writes it guards are one
//! atomic step. Expiry is judged by the caller's `now` (`LeaseRequest::now`,
//! `heartbeat`'s `now`). A commit carries no `now`: its fence renews the lease
//! from the process's wall clock, never shortening it.

use redb::{ReadableTable, WriteTransaction};

use super::read::queued_in;
use super::tables::{
    COMMANDS, DEVICES, LEASE_EPOCHS, LEASES, MIRRORS, NEXT_ALERT_ID, NODES, QUEUED_COMMANDS, counter, decode,
};
use crate::clock::{Millis, now_millis};
use crate::cluster::{Fence, Lease, LeaseRequest, NodeInfo};
use crate::model::{CommandId, Device, MirrorRecord};
use crate::store::{SessionLoad, SessionSnapshot, StoreError};

/// Grants (or renews) the device's lease to the asker and reads what its session step needs.
/// Nothing is written when the device is unknown or another live node holds an unexpired lease.
pub fn load_session(
    transaction: &WriteTransaction,
    device_id: &str,
    awaiting: &[CommandId],
    queue_limit: usize,
    request: &LeaseRequest,
) -> Result<SessionLoad, StoreError> {
    let device: Device = {
        let devices = transaction.open_table(DEVICES)?;
        let Some(bytes) = devices.get(device_id)? else {
            return Ok(SessionLoad::UnknownDevice);
        };
        decode("devices", &device_id, bytes.value())?
    };

    let epoch = {
        let mut leases = transaction.open_table(LEASES)?;
        let holder = leases.get(device_id)?.map(|entry| {
            let (node_id, epoch, expires_at) = entry.value();
            (node_id.to_owned(), epoch, expires_at)
        });
        let epoch = match holder {
            Some((node_id, epoch, _)) if node_id == request.node_id => epoch,
            Some((node_id, epoch, expires_at)) if expires_at > request.now && request.live_nodes.contains(&node_id) => {
                return Ok(SessionLoad::LeaseHeld { node_id, epoch });
            }
            // Free, expired, or held by a node the asker knows to be gone: a new epoch.
            _ => {
                let mut epochs = transaction.open_table(LEASE_EPOCHS)?;
                let epoch = counter(&epochs, device_id, 0)?.saturating_add(1);
                epochs.insert(device_id, epoch)?;
                epoch
            }
        };
        leases.insert(device_id, (request.node_id.as_str(), epoch, request.now.saturating_add(request.ttl)))?;
        epoch
    };

    let mirror = match transaction.open_table(MIRRORS)?.get(device_id)? {
        Some(bytes) => decode("mirrors", &device_id, bytes.value())?,
        None => MirrorRecord::default(),
    };
    let commands = transaction.open_table(COMMANDS)?;
    let queued = queued_in(&transaction.open_table(QUEUED_COMMANDS)?, &commands, device_id, queue_limit)?;
    let mut awaiting_records = Vec::with_capacity(awaiting.len());
    for id in awaiting {
        if let Some(bytes) = commands.get((device_id, *id))? {
            awaiting_records.push(decode("commands", &(device_id, *id), bytes.value())?);
        }
    }
    let next_alert_id = counter(&transaction.open_table(NEXT_ALERT_ID)?, device_id, 1)?;
    Ok(SessionLoad::Loaded(Box::new(SessionSnapshot {
        lease: Lease { device_id: device_id.to_owned(), node_id: request.node_id.clone(), epoch },
        device,
        mirror,
        queued,
        awaiting: awaiting_records,
        next_alert_id,
    })))
}

/// Whether `fence` still holds: its node holds the device's lease under its epoch.
/// Expiry does not matter here: a lease that expired without anyone taking it
/// over saw no other writer (any grant to another node raises the epoch).
pub fn fence_holds(transaction: &WriteTransaction, fence: &Fence) -> Result<bool, StoreError> {
    let leases = transaction.open_table(LEASES)?;
    let holds = leases.get(fence.device_id.as_str())?.is_some_and(|entry| {
        let (node_id, epoch, _) = entry.value();
        node_id == fence.node_id && epoch == fence.epoch
    });
    Ok(holds)
}

/// After a commit under `fence` (checked by [`fence_holds`]): drops the lease, or renews it for the fence's ttl.
pub fn renew_or_release(transaction: &WriteTransaction, fence: &Fence) -> Result<(), StoreError> {
    let mut leases = transaction.open_table(LEASES)?;
    if fence.release {
        leases.remove(fence.device_id.as_str())?;
        return Ok(());
    }
    let expires_before = leases.get(fence.device_id.as_str())?.map_or(0, |entry| entry.value().2);
    let expires_at = now_millis().saturating_add(fence.ttl).max(expires_before);
    leases.insert(fence.device_id.as_str(), (fence.node_id.as_str(), fence.epoch, expires_at))?;
    Ok(())
}

/// Drops the device's lease (its epoch counter stays), when the device is deleted.
pub fn forget_lease(transaction: &WriteTransaction, device_id: &str) -> Result<(), StoreError> {
    transaction.open_table(LEASES)?.remove(device_id)?;
    Ok(())
}

/// Registers `node` until `now + ttl`, drops registrations expired at `now`, and returns the live nodes by id.
pub fn heartbeat(
    transaction: &WriteTransaction,
    node: &NodeInfo,
    ttl: Millis,
    now: Millis,
) -> Result<Vec<NodeInfo>, StoreError> {
    let mut nodes = transaction.open_table(NODES)?;
    nodes.insert(node.id.as_str(), (node.internal_url.as_str(), now.saturating_add(ttl)))?;
    let mut live = Vec::new();
    let mut expired = Vec::new();
    for entry in nodes.iter()? {
        let (id, value) = entry?;
        let (internal_url, expires_at) = value.value();
        if expires_at > now {
            live.push(NodeInfo { id: id.value().to_owned(), internal_url: internal_url.to_owned() });
        } else {
            expired.push(id.value().to_owned());
        }
    }
    for id in expired {
        nodes.remove(id.as_str())?;
    }
    Ok(live)
}

pub fn leave(transaction: &WriteTransaction, node_id: &str) -> Result<(), StoreError> {
    transaction.open_table(NODES)?.remove(node_id)?;
    Ok(())
}
