//! A DM session as stored between packages, and its summary once ended.

use omadm_proto::command::Command;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::model::CommandId;

/// The state of an open session, written at every package boundary before the
/// Package#2 leaves, so any node can go on with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Unguessable id, the last segment of the session URL `/dm/s/{id}`.
    pub id: String,
    pub device_id: String,
    pub started_at: Millis,
    /// Last package received; the session expires `timeout` after it.
    pub last_activity: Millis,
    /// Packages received in this session (Package#1 counts).
    pub packages: u32,
    /// The commands of the last Package#2, in order; the next Package#3 answers them.
    pub awaiting: Vec<SentCommand>,
    /// True once END was sent: a further Package#3 is refused.
    pub ended: bool,
    /// Commands answered in this session.
    #[serde(default)]
    pub commands_answered: u32,
    /// The last Package#3 and the Package#2 it produced, so a retransmitted
    /// Package#3 (its Package#2 was lost) gets the same answer without a second step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<PackageReplay>,
}

/// What a retransmission of the last Package#3 is answered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageReplay {
    /// SHA-256 of the Package#3 body as received, hex.
    pub package3_sha256: String,
    /// The Package#2 sent for it, as sent.
    pub package2: String,
}

/// One command of the last Package#2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentCommand {
    /// The queued command it came from; `None` for commands of the session
    /// itself (CONT) that have no record.
    pub command_id: Option<CommandId>,
    pub command: Command,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionOutcome {
    Active,
    /// The server sent END.
    Ended,
    /// The device went silent; unanswered commands went back to the queue.
    Expired,
}

/// What `GET /api/v1/devices/{id}/sessions` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: String,
    pub device_id: String,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Millis>,
    pub outcome: SessionOutcome,
    pub packages: u32,
    pub commands_answered: u32,
}
