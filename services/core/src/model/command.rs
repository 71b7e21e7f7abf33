//! A DM command queued for a device, and what became of it.

use omadm_proto::command::Command;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// Per-device, increasing from 1 in queue order; (device id, command id) is unique fleet-wide.
pub type CommandId = u64;

/// A command to queue, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCommand {
    pub command: Command,
    pub origin: CommandOrigin,
    /// The campaign that queued it, carried into its record and its `command.result` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
}

/// Who asked for the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOrigin {
    /// Through the operator API (or a campaign).
    Operator,
    /// By the server itself to keep DevInfo/SessionInfo current.
    Inventory,
}

/// Lifecycle: queued -> sent -> done | failed; sent -> queued again when the
/// session dies before the device answered (at-least-once); queued | sent ->
/// expired when it could not be delivered within its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Queued,
    Sent,
    /// The device answered with a 2xx or 3xx status.
    Done,
    /// The device answered with a 4xx or 5xx status.
    Failed,
    Expired,
}

impl CommandState {
    /// Done, failed and expired commands never change again.
    pub fn is_final(self) -> bool {
        matches!(self, CommandState::Done | CommandState::Failed | CommandState::Expired)
    }
}

/// A GET result as the device sent it (one Appendix E part).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResultData {
    /// The part's media type, e.g. `application/dmmo+json` or `text/plain`.
    pub content_type: String,
    /// JSON for JSON media types, otherwise the text (base64 for non-UTF-8 bytes, see `base64`).
    pub value: serde_json::Value,
    /// True when `value` is a base64 string of bytes that were not UTF-8.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
}

/// A queued command and its outcome, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub id: CommandId,
    pub device_id: String,
    pub command: Command,
    pub origin: CommandOrigin,
    /// The campaign that queued it ([`NewCommand::campaign_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    pub state: CommandState,
    /// The device's status code once answered (or 304 kept as done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Extra status values, e.g. the location an HGET without ClientURI stored at (201).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<serde_json::Value>,
    /// The GET result, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<CommandResultData>,
    /// The session that last sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// How many times it was sent.
    #[serde(default)]
    pub attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl CommandRecord {
    /// The record of `command` as queued for `device_id` under `id` at `now`: what every engine stores.
    pub fn queued(device_id: &str, id: CommandId, command: NewCommand, now: Millis) -> CommandRecord {
        CommandRecord {
            id,
            device_id: device_id.to_owned(),
            command: command.command,
            origin: command.origin,
            campaign_id: command.campaign_id,
            state: CommandState::Queued,
            status: None,
            extra: Vec::new(),
            data: None,
            session_id: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        }
    }
}
