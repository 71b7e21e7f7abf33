//! Package#3 (5.2.4, Appendix E): statuses matched to the commands they answer, GET results into the mirror, then the next Package#2.
//!
//! ```text
//! Package#2  [["CONT", ".../dm/s/{sid}"], ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//"], ["HGET", "https://.../repo/cfg"]]
//! Package#3  {"Status": [[200], [200], [201, "urn:oma:mo:oma-cfg:1.0/c7/"]]}  + part name="2" (dmmo+json)
//!             CONT ok    GET -> mirror   HGET -> extra keeps the location
//! ```
//!
//! The i-th status answers the i-th command of the last Package#2 (5.2.4).
//! A Package#3 that does not fit that Package#2 is refused whole and changes
//! nothing, so the device may send a corrected one or the session expires
//! and its commands go back to the queue.

use std::collections::BTreeMap;

use omadm_proto::command::Command;
use omadm_proto::mo::{DevInfo, SessionInfo};
use omadm_proto::multipart::MultipartResponse;
use omadm_proto::package::RequestPackage;
use omadm_proto::status::{ApplicationClass, StatusClass, StatusCode};

use super::alerts::answer_alerts;
use super::events::command_result;
use super::mirror::{MirrorEditor, result_data};
use super::outbound::take_queued;
use super::{SessionConfig, SessionContext, SessionError, Step, finish_session};
use crate::model::{CommandId, CommandRecord, CommandState, SessionOutcome, SessionState};
use crate::store::WriteBatch;

/// Done for 2xx and 3xx (and the application codes 12xx, 13xx), failed otherwise.
pub fn state_for_status(code: StatusCode) -> CommandState {
    match code.class() {
        StatusClass::Successful
        | StatusClass::Redirection
        | StatusClass::Application(ApplicationClass::Successful | ApplicationClass::Redirection) => CommandState::Done,
        _ => CommandState::Failed,
    }
}

/// Whether answering `command` with `code` touches the mirror.
fn touches_mirror(command: &Command, code: StatusCode) -> bool {
    match command {
        Command::Get(_) => code == StatusCode::OK || code == StatusCode::NOT_MODIFIED,
        Command::Hget(hget) => code.is_success() && hget.client_uri().is_some(),
        Command::Delete(_) | Command::Exec(_) => code.is_success(),
        _ => false,
    }
}

pub(super) fn respond(
    config: &SessionConfig,
    context: SessionContext,
    mut state: SessionState,
    response: MultipartResponse,
) -> Result<Step, SessionError> {
    if state.ended {
        return Err(SessionError::Ended);
    }
    let (expected, received) = (state.awaiting.len(), response.package.statuses.len());
    if expected != received {
        return Err(SessionError::StatusCountMismatch { expected, received });
    }
    let sent_commands: Vec<Command> = state.awaiting.iter().map(|sent| sent.command.clone()).collect();
    response.check_against_request(&sent_commands).map_err(|error| SessionError::InvalidResults(error.to_string()))?;

    let now = context.now;
    let mut batch = WriteBatch::default();
    let mut device = context.device;
    let mut records: BTreeMap<CommandId, CommandRecord> =
        context.awaiting.into_iter().map(|record| (record.id, record)).collect();
    let needs_mirror = state
        .awaiting
        .iter()
        .zip(&response.package.statuses)
        .any(|(sent, status)| touches_mirror(&sent.command, status.code));
    let mut mirror = needs_mirror.then(|| MirrorEditor::load(&context.mirror));
    let (mut devinfo_read, mut devinfo_root_read, mut session_info_read) = (false, false, false);
    let mut answered = 0u32;

    for (position, (sent, status)) in (1usize..).zip(state.awaiting.iter().zip(&response.package.statuses)) {
        let code = status.code;
        let part = response.part_for(position);
        let mut data = part.map(|part| result_data(&part.content_type, &part.body));
        if let Some(mirror) = mirror.as_mut() {
            match &sent.command {
                Command::Get(get) if code == StatusCode::OK || code == StatusCode::NOT_MODIFIED => {
                    let uri = get.client_uri();
                    match (&data, part) {
                        (Some(result), Some(part)) if code == StatusCode::OK => {
                            mirror.store_get_result(uri, result, &part.body);
                        }
                        _ if code == StatusCode::NOT_MODIFIED => data = mirror.not_modified_data(uri),
                        _ => {}
                    }
                    devinfo_read |= uri.moid == DevInfo::MOID;
                    devinfo_root_read |= uri.moid == DevInfo::MOID && uri.path.is_empty();
                    session_info_read |= uri.moid == SessionInfo::MOID;
                }
                Command::Hget(hget) if code.is_success() => {
                    if let Some(uri) = hget.client_uri() {
                        mirror.instance_changed_on_device(uri);
                    }
                }
                Command::Delete(delete) if code.is_success() => mirror.apply_delete(delete.client_uri()),
                Command::Exec(exec) if code.is_success() => mirror.instance_changed_on_device(exec.client_uri()),
                _ => {}
            }
        }
        let Some(command_id) = sent.command_id else { continue };
        // Only a record this session sent and still awaits is answered: a
        // final record never changes again, whatever a device repeats.
        let Some(record) = records.get_mut(&command_id) else { continue };
        if record.state != CommandState::Sent || record.session_id.as_deref() != Some(state.id.as_str()) {
            continue;
        }
        record.state = state_for_status(code);
        record.status = Some(code.as_u16());
        record.extra = status.extra.clone();
        record.data = data;
        record.updated_at = now;
        batch.events.push(command_result(record, now));
        batch.commands.push(record.clone());
        answered = answered.saturating_add(1);
    }

    let mut updated_mirror = None;
    if let Some(mirror) = mirror {
        let mut inventory = device.inventory.clone();
        if devinfo_read && mirror.read_devinfo(&mut inventory) && devinfo_root_read {
            inventory.updated_at = Some(now);
        }
        if session_info_read {
            mirror.read_session_info(&mut inventory);
        }
        if inventory != device.inventory {
            device.inventory = inventory;
            device.updated_at = now;
            batch.devices.push(device.clone());
        }
        if let Some(record) = mirror.into_record(now) {
            updated_mirror = Some(record.clone());
            batch.mirrors.push((device.id.clone(), record));
        }
    }

    let alerts =
        answer_alerts(config, &device.id, &state.id, response.package.alert.as_ref(), context.next_alert_id, now);
    batch.events.extend(alerts.events);
    batch.alerts = alerts.records;

    state.packages = state.packages.saturating_add(1);
    state.last_activity = now;
    state.commands_answered = state.commands_answered.saturating_add(answered);

    // Validators learned from this Package#3 already apply to the next Package#2.
    let mirror_now = updated_mirror.as_ref().unwrap_or(&context.mirror);
    let taken = take_queued(config, &context.queued, mirror_now, &state.id, now);
    batch.events.extend(taken.events);
    batch.commands.extend(taken.records);
    if taken.sent.is_empty() {
        let reply = RequestPackage { commands: vec![Command::End], alert_statuses: alerts.statuses };
        finish_session(&mut state, SessionOutcome::Ended, now, &mut batch, 0, 0);
        return Ok(Step { reply: Some(reply), batch, ended: true });
    }
    state.awaiting = taken.sent;
    let reply = RequestPackage {
        commands: state.awaiting.iter().map(|sent| sent.command.clone()).collect(),
        alert_statuses: alerts.statuses,
    };
    batch.sessions.push(state);
    Ok(Step { reply: Some(reply), batch, ended: false })
}
