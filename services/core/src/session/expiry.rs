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

use std::collections::BTreeMap;

use super::events::command_result;
use super::{SessionConfig, SessionContext, SessionError, Step, finish_session};
use crate::model::{CommandId, CommandRecord, CommandState, SessionOutcome, SessionState};
use crate::store::WriteBatch;

pub(super) fn expire(
    config: &SessionConfig,
    context: SessionContext,
    mut state: SessionState,
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
