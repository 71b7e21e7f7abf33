//! Queue DM commands for a device: all or none, each checked before any is queued.
//!
//! A command is refused when its syntax is wrong (by omadm-proto, naming its
//! position), when it is CONT or END (the session runs them itself), or when
//! the device's DMDAC, as its mirror shows it, would refuse it from our server id.

use omadm_proto::command::{Command, CommandName};

use crate::access::AccessControl;
use crate::clock::Millis;
use crate::metrics::metrics;
use crate::model::{CommandId, CommandOrigin, NewCommand};
use crate::store::{Store, StoreError};

/// Most commands one request may queue.
pub const MAX_COMMANDS_PER_REQUEST: usize = 1000;

/// Why commands were not queued; nothing was.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("commands must hold at least one command")]
    Empty,
    #[error("more than {MAX_COMMANDS_PER_REQUEST} commands in one request")]
    TooMany,
    /// The command at `index` is not a valid DM command.
    #[error("commands[{index}]: {reason}")]
    Invalid { index: usize, reason: String },
    /// CONT or END at `index`.
    #[error("commands[{index}]: {name} cannot be queued: the server sends CONT and END itself to run the session")]
    SessionFlow { index: usize, name: &'static str },
    /// The device's access control would refuse the command at `index`.
    #[error("commands[{index}]: {reason}")]
    Denied { index: usize, reason: String },
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    /// A store operation failed (counted under `operation` in `omadm_store_errors_total`).
    #[error("{operation}: {source}")]
    Store { operation: &'static str, source: StoreError },
}

impl QueueError {
    /// The caller's input is wrong (as opposed to refused by the device's rights, or unknown, or the store failing).
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            QueueError::Empty | QueueError::TooMany | QueueError::Invalid { .. } | QueueError::SessionFlow { .. }
        )
    }
}

/// Parses and checks commands in their Package#2 array form: the first bad one refuses them all.
pub fn parse_commands(values: &[serde_json::Value]) -> Result<Vec<Command>, QueueError> {
    if values.is_empty() {
        return Err(QueueError::Empty);
    }
    if values.len() > MAX_COMMANDS_PER_REQUEST {
        return Err(QueueError::TooMany);
    }
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let command =
                Command::from_json(value).map_err(|error| QueueError::Invalid { index, reason: error.to_string() })?;
            match command.command_name() {
                CommandName::Cont | CommandName::End => Err(QueueError::SessionFlow { index, name: command.name() }),
                _ => Ok(command),
            }
        })
        .collect()
}

/// Queues `commands` for `device_id` after checking them against the device's access control
/// for `server_id`; returns their ids, in order, and counts them in `omadm_commands_queued_total`.
pub async fn queue_commands(
    store: &dyn Store,
    server_id: &str,
    device_id: &str,
    commands: Vec<Command>,
    origin: CommandOrigin,
    now: Millis,
) -> Result<Vec<CommandId>, QueueError> {
    let device = store.get_device(device_id).await.map_err(store_error("get_device"))?;
    if device.is_none() {
        return Err(QueueError::UnknownDevice(device_id.to_owned()));
    }
    let mirror = store.get_mirror(device_id).await.map_err(store_error("get_mirror"))?;
    if let Some(mirror) = &mirror {
        // Read the DMDAC instances once for the whole request.
        let access = AccessControl::from_mirror(mirror);
        for (index, command) in commands.iter().enumerate() {
            if let Err(refusal) = access.check(server_id, command) {
                return Err(QueueError::Denied { index, reason: refusal.to_string() });
            }
        }
    }
    let names: Vec<&'static str> = commands.iter().map(Command::name).collect();
    let new_commands = commands.into_iter().map(|command| NewCommand { command, origin, campaign_id: None }).collect();
    let ids = store.enqueue_commands(device_id, new_commands, now).await.map_err(store_error("enqueue_commands"))?;
    let origin_label = origin_label(origin);
    for name in names {
        metrics().commands_queued.with_label_values(&[name, origin_label]).inc();
    }
    tracing::info!(count = ids.len(), "commands queued");
    Ok(ids)
}

/// The `origin` label of `omadm_commands_queued_total`.
fn origin_label(origin: CommandOrigin) -> &'static str {
    match origin {
        CommandOrigin::Operator => "operator",
        CommandOrigin::Inventory => "inventory",
    }
}

fn store_error(operation: &'static str) -> impl FnOnce(StoreError) -> QueueError {
    move |source| {
        metrics().store_errors.with_label_values(&[operation]).inc();
        QueueError::Store { operation, source }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::model::{CommandState, Device};
    use crate::store::{EmbeddedStore, WriteBatch};

    #[test]
    fn commands_are_checked_in_order_with_their_position() {
        let good = [
            json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]),
            json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"]),
        ];
        assert_eq!(parse_commands(&good).unwrap().len(), 2);
        let bad = [json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]), json!(["FROB", "x"])];
        let error = parse_commands(&bad).unwrap_err();
        assert!(error.is_invalid());
        assert!(error.to_string().starts_with("commands[1]: unknown command"), "{error}");
        let end = parse_commands(&[json!(["END"])]).unwrap_err();
        assert_eq!(
            end.to_string(),
            "commands[0]: END cannot be queued: the server sends CONT and END itself to run the session"
        );
        let cont = parse_commands(&[json!(["CONT", "https://dms.example.com/dm/s/1"])]).unwrap_err();
        assert!(matches!(cont, QueueError::SessionFlow { index: 0, name: "CONT" }), "{cont}");
        assert!(matches!(parse_commands(&[]), Err(QueueError::Empty)));
        let too_many = vec![json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]); MAX_COMMANDS_PER_REQUEST + 1];
        assert_eq!(parse_commands(&too_many).unwrap_err().to_string(), "more than 1000 commands in one request");
    }

    #[tokio::test]
    async fn queued_in_order_for_a_known_device_only() {
        let directory = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
        let commands = parse_commands(&[json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])]).unwrap();
        let unknown = queue_commands(&*store, "dms", "IMEI:1", commands.clone(), CommandOrigin::Operator, 5).await;
        assert!(matches!(unknown, Err(QueueError::UnknownDevice(id)) if id == "IMEI:1"));

        let device = Device::new("IMEI:1", crate::auth::credentials_for("IMEI:1", "omadm", "p"), 0);
        store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
        let mut two = commands.clone();
        two.extend(commands);
        let ids = queue_commands(&*store, "dms", "IMEI:1", two, CommandOrigin::Operator, 5).await.unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids[0] < ids[1]);
        let record = store.get_command("IMEI:1", ids[1]).await.unwrap().unwrap();
        assert_eq!(
            (record.state, record.origin, record.created_at),
            (CommandState::Queued, CommandOrigin::Operator, 5)
        );
    }
}
