//! A session that went silent: its unanswered commands go back to the queue (at-least-once) or expire after their last attempt.
//!
//! ```text
//! awaiting  #7 (attempts 1)   #8 (attempts 3)          max_attempts = 3
//! after     #7 queued          #8 expired + command.result {"state": "expired"}
//! ```
//!
//! The step expires the session it is given, whenever it is called: the
//! shell decides when ([`expires_at`](super::expires_at) for a silent
//! session, or at once when the device opens a new session while an old one
//! is still open, since a device runs one session at a time).
//!
//! A session superseded by a new Package#1 before any Package#3 arrived was
//! no delivery attempt of the commands its Package#2 carried: they go back to
//! the queue with their attempt undone, so a device (or a replayed header)
//! that sends Package#1 again and again cannot use up a command's attempts.

use std::collections::BTreeMap;

use super::events::command_result;
use super::{SessionConfig, SessionContext, SessionError, Step, finish_session};
use crate::model::{CommandId, CommandRecord, CommandState, SessionOutcome, SessionState};
use crate::store::WriteBatch;

/// The device went silent past the timeout.
pub(super) fn expire(
    config: &SessionConfig,
    context: SessionContext,
    state: SessionState,
) -> Result<Step, SessionError> {
    end_open_session(config, context, state, false)
}

/// A new Package#1 of the device ends the session.
pub(super) fn supersede(
    config: &SessionConfig,
    context: SessionContext,
    state: SessionState,
) -> Result<Step, SessionError> {
    // Only Package#1 was received: no answer of the device says the Package#2 ever reached it.
    let unanswered = state.packages <= 1;
    end_open_session(config, context, state, unanswered)
}

fn end_open_session(
    config: &SessionConfig,
    context: SessionContext,
    mut state: SessionState,
    refund_attempts: bool,
) -> Result<Step, SessionError> {
    if state.ended {
        return Err(SessionError::Ended);
    }
    let now = context.now;
    let mut batch = WriteBatch::default();
    let mut records: BTreeMap<CommandId, CommandRecord> =
        context.awaiting.into_iter().map(|record| (record.id, record)).collect();
    let (mut requeued, mut expired) = (0u32, 0u32);
    for command_id in state.awaiting.iter().filter_map(|sent| sent.command_id) {
        let Some(mut record) = records.remove(&command_id) else { continue };
        if record.state != CommandState::Sent || record.session_id.as_deref() != Some(state.id.as_str()) {
            continue;
        }
        record.updated_at = now;
        if refund_attempts {
            record.attempts = record.attempts.saturating_sub(1);
        }
        if record.attempts >= config.max_attempts {
            record.state = CommandState::Expired;
            batch.events.push(command_result(&record, now));
            expired = expired.saturating_add(1);
        } else {
            record.state = CommandState::Queued;
            requeued = requeued.saturating_add(1);
        }
        batch.commands.push(record);
    }
    finish_session(&mut state, SessionOutcome::Expired, now, &mut batch, requeued, expired);
    Ok(Step { reply: None, batch, ended: true })
}
