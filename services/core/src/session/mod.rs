//! The DM session state machine (5.2, 5.4.8, 5.4.9, Appendix E, section 12), pure.
//!
//! Each step takes the stored state, what the device sent, the device's queue
//! head and `now`, and returns the Package#2 to answer with and the writes to
//! commit before it leaves. No clock, no I/O: the gateway's session actor
//! loads, calls [`step`], commits the batch, then replies.
//!
//! PLACEHOLDER: the contract below is fixed; the machine itself lands with its own change.

use omadm_proto::multipart::MultipartResponse;
use omadm_proto::package::{InitiationPackage, RequestPackage};
use omadm_proto::status::StatusCode;

use crate::clock::Millis;
use crate::model::{CommandRecord, Device, MirrorRecord, SessionState};
use crate::store::WriteBatch;

/// Server policy for sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// At most this many queued commands per Package#2 (CONT and inventory GETs not counted).
    pub max_commands_per_package: usize,
    /// Base of session URLs handed to devices in CONT, e.g. `https://dm.example.com/dm/s/`.
    pub session_url_base: String,
    /// A session silent this long expires and its unanswered commands go back to the queue.
    pub session_timeout: Millis,
    /// DevInfo/SessionInfo older than this are read again (GET) at the next session.
    pub inventory_max_age: Millis,
    /// A command sent this many times without an answer expires instead of being queued again.
    pub max_attempts: u32,
    /// Alert MIME types answered 200/202; any other gets 415 (5.3). Empty means every type is accepted.
    pub supported_alert_mime_types: Vec<String>,
}

/// What happened to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A Package#1 opened a new session with this id.
    Initiation { session_id: String, package: InitiationPackage },
    /// A Package#3 (with its GET result parts) answered the last Package#2.
    Response { state: SessionState, response: MultipartResponse },
    /// The session went silent past the timeout.
    Expiry { state: SessionState },
}

/// Everything the step may read besides the event.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionContext {
    pub device: Device,
    pub mirror: MirrorRecord,
    /// The head of the device's queue (state queued), in order, at least
    /// `max_commands_per_package` long when the queue has that many.
    pub queued: Vec<CommandRecord>,
    /// The records of the commands the session is awaiting an answer for (state sent).
    pub awaiting: Vec<CommandRecord>,
    /// The id the next alert of this device gets.
    pub next_alert_id: u64,
    pub now: Millis,
}

/// The result of a step: the Package#2 to send (none on expiry) and the writes
/// to commit before sending it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub reply: Option<RequestPackage>,
    pub batch: WriteBatch,
    /// True when the reply carries END (or the session expired).
    pub ended: bool,
}

/// A Package#3 the session cannot accept. Nothing is written; the device gets
/// the HTTP status and may retry or start over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session has ended")]
    Ended,
    #[error("{received} statuses answer a Package#2 of {expected} commands")]
    StatusCountMismatch { expected: usize, received: usize },
    #[error("invalid GET results: {0}")]
    InvalidResults(String),
}

impl SessionError {
    /// The HTTP status of the refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            SessionError::Ended => 410,
            SessionError::StatusCountMismatch { .. } | SessionError::InvalidResults(_) => 400,
        }
    }
}

/// Runs one step of the session.
pub fn step(config: &SessionConfig, context: SessionContext, event: SessionEvent) -> Result<Step, SessionError> {
    let _ = (config, context, StatusCode::OK);
    match event {
        SessionEvent::Initiation { .. } | SessionEvent::Response { .. } => Ok(Step {
            reply: Some(RequestPackage::new(vec![omadm_proto::command::Command::End])),
            batch: WriteBatch::default(),
            ended: true,
        }),
        SessionEvent::Expiry { .. } => Ok(Step { reply: None, batch: WriteBatch::default(), ended: true }),
    }
}
