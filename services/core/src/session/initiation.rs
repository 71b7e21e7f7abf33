//! Package#1 (5.2.2): a new session records MOS and alerts, asks for the inventory when it is due, and sends the first commands.
//!
//! ```text
//! Package#1  {"MOS": [...], "Alert": {"Items": [...]}}
//! Package#2  {"CMD": [["CONT", "https://dm.example.com/dm/s/{sid}"],
//!                     ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//"], ["GET", "urn:oma:mo:oma-sessioninfomo:1.0//"],
//!                     ...queued commands], "AlertStatus": [200]}
//!        or  {"CMD": [["END"]], "AlertStatus": [200]}        nothing to do: the session ends at once
//! ```

use omadm_proto::command::{Command, Cont, Get};
use omadm_proto::mo::{DevInfo, SessionInfo};
use omadm_proto::package::{InitiationPackage, RequestPackage};
use omadm_proto::uri::{ClientUri, InstanceSelector};

use super::alerts::answer_alerts;
use super::events::{SessionStarted, session_started};
use super::mirror::add_cache_validators;
use super::outbound::take_queued;
use super::{SessionConfig, SessionContext, SessionError, Step, finish_session, inventory_due, session_url};
use crate::model::{SentCommand, SessionOutcome, SessionState};
use crate::store::WriteBatch;

/// The MOs the server reads itself to keep the inventory current, in the order they are asked for.
pub const INVENTORY_MOIDS: [&str; 2] = [DevInfo::MOID, SessionInfo::MOID];

pub(super) fn initiate(
    config: &SessionConfig,
    context: SessionContext,
    session_id: String,
    package: InitiationPackage,
) -> Result<Step, SessionError> {
    let now = context.now;
    let mut device = context.device;
    let mut batch = WriteBatch::default();

    let supported_objects = package.supported_objects.as_ref().map(Vec::len);
    if let Some(supported) = package.supported_objects {
        device.supported_objects = supported;
    }
    device.last_session_id = Some(session_id.clone());
    device.updated_at = now;

    let alerts = answer_alerts(config, &device.id, &session_id, package.alert.as_ref(), context.next_alert_id, now);

    let inventory_requested = inventory_due(config, &device, now);
    let mut sent = Vec::new();
    if inventory_requested {
        for moid in INVENTORY_MOIDS {
            let get = Command::Get(Get::new(ClientUri::instance_root(moid, InstanceSelector::Sole)));
            sent.push(SentCommand { command_id: None, command: add_cache_validators(&context.mirror, &get) });
        }
    }
    let taken = take_queued(config, &context.queued, &context.mirror, &session_id, now);
    let commands_sent = taken.sent.len();
    sent.extend(taken.sent);

    let mut state = SessionState {
        id: session_id.clone(),
        device_id: device.id.clone(),
        started_at: now,
        last_activity: now,
        packages: 1,
        awaiting: Vec::new(),
        ended: false,
        commands_answered: 0,
        replay: None,
    };
    batch.events.push(session_started(SessionStarted {
        device_id: device.id.clone(),
        session_id: session_id.clone(),
        started_at: now,
        alerts: alerts.records.len(),
        supported_objects,
        inventory_requested,
        commands_sent,
    }));
    batch.events.extend(alerts.events);
    batch.events.extend(taken.events);
    batch.alerts = alerts.records;
    batch.commands = taken.records;
    batch.devices.push(device);

    if sent.is_empty() {
        let reply = RequestPackage { commands: vec![Command::End], alert_statuses: alerts.statuses };
        finish_session(&mut state, SessionOutcome::Ended, now, &mut batch, 0, 0);
        return Ok(Step { reply: Some(reply), batch, ended: true });
    }
    // docs/protocol-decisions.md: CONT first in the first Package#2 names the session; the
    // client keeps using that URL for the whole session (5.4.8), so later
    // Package#2s do not repeat it.
    let cont = Command::Cont(Cont::new(session_url(config, &session_id)?));
    state.awaiting.push(SentCommand { command_id: None, command: cont });
    state.awaiting.extend(sent);
    let reply = RequestPackage {
        commands: state.awaiting.iter().map(|sent| sent.command.clone()).collect(),
        alert_statuses: alerts.statuses,
    };
    batch.sessions.push(state);
    Ok(Step { reply: Some(reply), batch, ended: false })
}
