//! The next Package#2's commands: queued commands taken in order, up to the per-package limit, with cache validators added.
//!
//! ```text
//! queue  [#7 GET DevDetail] [#8 EXEC Reboot] [#9 GET FwV]      max_commands_per_package = 2
//! sent   ["GET", "urn:...devdetail:1.0//?cv=Xy..."], ["EXEC", "urn:...//Reboot"]      #9 waits for the next Package#2
//! ```

use omadm_proto::command::Command;

use super::SessionConfig;
use super::events::command_result;
use super::mirror::add_cache_validators;
use crate::bus::Event;
use crate::clock::Millis;
use crate::model::{CommandRecord, CommandState, MirrorRecord, SentCommand};

/// Queued commands moved to `sent` by one step.
#[derive(Debug, Default)]
pub(super) struct TakenCommands {
    /// What the Package#2 carries, in queue order.
    pub(super) sent: Vec<SentCommand>,
    /// Their records, now `sent`, plus any refused (see below), to write.
    pub(super) records: Vec<CommandRecord>,
    /// `command.result` events of refused records.
    pub(super) events: Vec<Event>,
}

/// Why a queued CONT or END is refused instead of sent: the session sends
/// them itself, and a queued END would end the session without a Package#3,
/// so the commands before it could never be answered.
pub const SESSION_COMMAND_REFUSED: &str = "CONT and END are sent by the session itself and cannot be queued";

/// Takes up to `max_commands_per_package` (at least 1) commands in state
/// queued from the head of the queue and marks them sent in `session_id`.
pub(super) fn take_queued(
    config: &SessionConfig,
    queued: &[CommandRecord],
    mirror: &MirrorRecord,
    session_id: &str,
    now: Millis,
) -> TakenCommands {
    let limit = config.max_commands_per_package.max(1);
    let mut taken = TakenCommands::default();
    for record in queued.iter().filter(|record| record.state == CommandState::Queued) {
        if taken.sent.len() >= limit {
            break;
        }
        let mut record = record.clone();
        record.updated_at = now;
        if matches!(record.command, Command::Cont(_) | Command::End) {
            record.state = CommandState::Failed;
            record.extra = vec![serde_json::Value::String(SESSION_COMMAND_REFUSED.to_owned())];
            taken.events.push(command_result(&record, now));
            taken.records.push(record);
            continue;
        }
        record.state = CommandState::Sent;
        record.attempts = record.attempts.saturating_add(1);
        record.session_id = Some(session_id.to_owned());
        taken
            .sent
            .push(SentCommand { command_id: Some(record.id), command: add_cache_validators(mirror, &record.command) });
        taken.records.push(record);
    }
    taken
}

#[cfg(test)]
mod tests {
    use omadm_proto::command::Command;

    use super::*;
    use crate::model::CommandOrigin;

    fn config(max: usize) -> SessionConfig {
        SessionConfig { max_commands_per_package: max, ..SessionConfig::example() }
    }

    fn record(id: u64, state: CommandState) -> CommandRecord {
        CommandRecord {
            id,
            device_id: "d".to_owned(),
            command: Command::from_json(&serde_json::json!(["EXEC", "urn:oma:mo:a:1.0//Run"])).unwrap(),
            origin: CommandOrigin::Operator,
            campaign_id: None,
            state,
            status: None,
            extra: Vec::new(),
            data: None,
            session_id: None,
            attempts: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn takes_queued_records_in_order_up_to_the_limit_and_at_least_one() {
        let queue = [record(1, CommandState::Done), record(2, CommandState::Queued), record(3, CommandState::Queued)];
        let taken = take_queued(&config(0), &queue, &MirrorRecord::default(), "s", 9);
        assert_eq!(taken.sent.iter().map(|sent| sent.command_id).collect::<Vec<_>>(), [Some(2)]);
        assert_eq!(taken.records.len(), 1);
        let sent = &taken.records[0];
        assert_eq!(
            (sent.state, sent.attempts, sent.session_id.as_deref(), sent.updated_at),
            (CommandState::Sent, 1, Some("s"), 9)
        );
        let taken = take_queued(&config(5), &queue, &MirrorRecord::default(), "s", 9);
        assert_eq!(taken.sent.len(), 2);
        assert!(taken.events.is_empty());
    }
}
