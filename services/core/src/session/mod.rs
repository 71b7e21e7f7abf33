//! The DM session state machine (5.2, 5.4.8, 5.4.9, Appendix E, section 12), pure.
//!
//! Each step takes the stored state, what the device sent, the device's queue
//! head and `now`, and returns the Package#2 to answer with and the writes to
//! commit before it leaves. No clock, no I/O, no randomness: the [`driver`]
//! loads, calls [`step`], commits the batch, then the shell replies.
//!
//! ```text
//! Package#1 ──Initiation──> [CONT, inventory GETs?, queued...]  or  [END]
//! Package#3 ──Response────> [queued...]                          or  [END]
//! silence   ──Expiry──────> unanswered commands queued again (or expired)
//! ```
//!
//! One file per part: `initiation` (Package#1), `response` (Package#3),
//! `expiry`, `outbound` (which queued commands go next), `alerts`, `mirror`
//! (GET results, cache validators, inventory) and [`events`]. Beside the
//! machine, [`driver`] runs it over the Store (the one part that does I/O:
//! lease, take-over, retransmission, fenced commit). The flow and
//! every decision are in docs/sessions.md; the event schemas in docs/events.md.

mod alerts;
pub mod driver;
pub mod events;
mod expiry;
mod initiation;
mod mirror;
mod outbound;
mod response;

use omadm_proto::multipart::MultipartResponse;
use omadm_proto::package::{InitiationPackage, RequestPackage};
use omadm_proto::uri::ServerUri;

use crate::clock::Millis;
use crate::model::{CommandRecord, Device, MirrorRecord, SessionOutcome, SessionState, SessionSummary};
use crate::store::WriteBatch;

pub use initiation::INVENTORY_MOIDS;
pub use mirror::validator_key;
pub use outbound::SESSION_COMMAND_REFUSED;
pub use response::state_for_status;

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

#[cfg(test)]
impl SessionConfig {
    /// What core's unit tests start from: one command per package, session URLs under
    /// `https://dm.example.com/dm/s/`, 1 ms timeouts, one attempt, every alert type accepted.
    pub(crate) fn example() -> SessionConfig {
        SessionConfig {
            max_commands_per_package: 1,
            session_url_base: "https://dm.example.com/dm/s/".to_owned(),
            session_timeout: 1,
            inventory_max_age: 1,
            max_attempts: 1,
            supported_alert_mime_types: Vec::new(),
        }
    }
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
    /// A new Package#1 of the device ends the session while it is open. Unlike an expiry, when no
    /// Package#3 of it arrived its commands go back to the queue with their attempt undone.
    Superseded { state: SessionState },
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
    /// `session_url_base` + session id is not a ServerURI: a server
    /// misconfiguration (or a session id the shell should never make).
    #[error("the session URL {0:?} is not a valid ServerURI")]
    InvalidSessionUrl(String),
}

impl SessionError {
    /// The HTTP status of the refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            SessionError::Ended => 410,
            SessionError::StatusCountMismatch { .. } | SessionError::InvalidResults(_) => 400,
            SessionError::InvalidSessionUrl(_) => 500,
        }
    }
}

/// Runs one step of the session. Pure: the same inputs give the same step.
pub fn step(config: &SessionConfig, context: SessionContext, event: SessionEvent) -> Result<Step, SessionError> {
    match event {
        SessionEvent::Initiation { session_id, package } => initiation::initiate(config, context, session_id, package),
        SessionEvent::Response { state, response } => response::respond(config, context, state, response),
        SessionEvent::Expiry { state } => expiry::expire(config, context, state),
        SessionEvent::Superseded { state } => expiry::supersede(config, context, state),
    }
}

/// When a session silent since its last package expires: the shell sends
/// [`SessionEvent::Expiry`] once `now` reaches it.
pub fn expires_at(config: &SessionConfig, state: &SessionState) -> Millis {
    state.last_activity.saturating_add(config.session_timeout)
}

/// True when the device's inventory was never read or is older than `inventory_max_age`.
pub fn inventory_due(config: &SessionConfig, device: &Device, now: Millis) -> bool {
    match device.inventory.updated_at {
        None => true,
        Some(read_at) => now.saturating_sub(read_at) >= config.inventory_max_age,
    }
}

/// The URL of a session, `{session_url_base}{session_id}`, as CONT carries it.
pub fn session_url(config: &SessionConfig, session_id: &str) -> Result<ServerUri, SessionError> {
    let url = format!("{}{session_id}", config.session_url_base);
    ServerUri::parse(&url).map_err(|_| SessionError::InvalidSessionUrl(url))
}

/// Ends the session: its final state (ended, nothing awaited) and its
/// summary go in the batch, with the `session.ended` event last.
///
/// The final state is written along with the summary so that a late
/// Package#3 finds `ended` and is refused with 410 rather than taken for an
/// unknown session.
fn finish_session(
    state: &mut SessionState,
    outcome: SessionOutcome,
    now: Millis,
    batch: &mut WriteBatch,
    commands_requeued: u32,
    commands_expired: u32,
) {
    state.ended = true;
    state.awaiting.clear();
    let summary = SessionSummary {
        id: state.id.clone(),
        device_id: state.device_id.clone(),
        started_at: state.started_at,
        ended_at: Some(now),
        outcome,
        packages: state.packages,
        commands_answered: state.commands_answered,
    };
    batch.events.push(events::session_ended(&summary, commands_requeued, commands_expired));
    batch.sessions.push(state.clone());
    batch.ended_sessions.push(summary);
}

#[cfg(test)]
mod tests {
    use omadm_proto::status::StatusCode;

    use super::*;
    use crate::model::CommandState;

    fn config() -> SessionConfig {
        SessionConfig { session_timeout: 30_000, inventory_max_age: 1_000, ..SessionConfig::example() }
    }

    #[test]
    fn status_classes_map_to_done_or_failed() {
        let state = |code: u16| state_for_status(StatusCode::new(code).unwrap());
        for code in [200, 201, 202, 204, 304, 1200, 1299, 1301] {
            assert_eq!(state(code), CommandState::Done, "{code}");
        }
        for code in [400, 403, 404, 405, 500, 503, 1000, 1400, 1500, 1999] {
            assert_eq!(state(code), CommandState::Failed, "{code}");
        }
    }

    #[test]
    fn refusals_map_to_http_statuses() {
        assert_eq!(SessionError::Ended.http_status(), 410);
        assert_eq!(SessionError::StatusCountMismatch { expected: 2, received: 1 }.http_status(), 400);
        assert_eq!(SessionError::InvalidResults("x".to_owned()).http_status(), 400);
        assert_eq!(SessionError::InvalidSessionUrl("x".to_owned()).http_status(), 500);
        assert_eq!(
            SessionError::StatusCountMismatch { expected: 2, received: 1 }.to_string(),
            "1 statuses answer a Package#2 of 2 commands"
        );
    }

    #[test]
    fn session_urls_expiry_time_and_inventory_age() {
        let config = config();
        assert_eq!(
            session_url(&config, "8f14e4").map(|url| url.to_string()),
            Ok("https://dm.example.com/dm/s/8f14e4".to_owned())
        );
        assert!(session_url(&config, "[bad]").is_err());
        let state = SessionState {
            id: "s".to_owned(),
            device_id: "d".to_owned(),
            started_at: 10,
            last_activity: 100,
            packages: 1,
            awaiting: Vec::new(),
            ended: false,
            commands_answered: 0,
            replay: None,
        };
        assert_eq!(expires_at(&config, &state), 30_100);
        let mut device = Device::new("d", crate::auth::credentials_for("d", "omadm", "p"), 0);
        assert!(inventory_due(&config, &device, 0), "never read");
        device.inventory.updated_at = Some(5_000);
        assert!(!inventory_due(&config, &device, 5_999));
        assert!(inventory_due(&config, &device, 6_000));
        assert!(!inventory_due(&config, &device, 4_000), "a clock that went back does not force a read");
    }
}
