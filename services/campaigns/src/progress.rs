//! One device through a campaign, pure: how its state moves on what the device does (a session, a command's
//! result, the FUMO result alert, the version read back) and on time (its deadline), retries included.
//!
//! ```text
//! pending -> notified -> in_session -> executing -> verifying -> succeeded
//!                    \-> failed (command refused, FUMO result code, version_mismatch) -> pending (retry) | failed
//!                    \-> timed_out (deadline)                                          -> pending (retry) | timed_out
//! ```

use omadm_core::campaign::{Action, Campaign, CampaignDevice, DeviceState, Policy};
use omadm_core::clock::Millis;
use omadm_core::model::{CommandResultData, CommandState};
use omadm_proto::command::{Command, CommandName};

/// What happened to a device, as the campaigns role reads it from the device's events.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent<'a> {
    /// The device opened a session.
    SessionStarted,
    /// A command the campaign queued reached a final state.
    CommandResult {
        command: &'a Command,
        state: CommandState,
        status: Option<u16>,
        data: Option<&'a CommandResultData>,
    },
    /// The FUMO Generic Alert: the update's result code.
    FumoResult { code: u16 },
    /// The version the device reports, read after its success alert (its inventory, refreshed since).
    VersionReported { fwv: String },
}

/// What the shell does besides writing the device's new record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    None,
    /// Read the version back: queue the FwV GET and wake the device.
    ReadVersion,
}

/// The device after `event`, or `None` when the event changes nothing (a repeat, or not its step).
pub fn on_event(
    campaign: &Campaign,
    device: &CampaignDevice,
    event: &DeviceEvent<'_>,
    now: Millis,
) -> Option<(CampaignDevice, FollowUp)> {
    if device.state.is_final() || device.state == DeviceState::Pending {
        return None;
    }
    let mut next = device.clone();
    let firmware = matches!(campaign.spec.action, Action::Firmware(_));
    match event {
        DeviceEvent::SessionStarted => {
            if device.state != DeviceState::Notified {
                return None;
            }
            next.state = DeviceState::InSession;
            next.note(now, "session", None);
        }
        DeviceEvent::CommandResult { command, state, status, data } => {
            let detail = format!("{} {}", command.name(), status.map_or("expired".to_owned(), |code| code.to_string()));
            next.note(now, "command", Some(detail));
            let refused = !matches!(state, CommandState::Done);
            if refused {
                let reason = if *state == CommandState::Expired { "command_expired" } else { "command_failed" };
                return Some((fail(campaign, &next, status.unwrap_or(0), reason, now), FollowUp::None));
            }
            if firmware {
                match command.command_name() {
                    CommandName::Exec if matches!(device.state, DeviceState::Notified | DeviceState::InSession) => {
                        next.state = DeviceState::Executing;
                    }
                    CommandName::Get if device.state == DeviceState::Verifying => {
                        let reported = data.and_then(|data| reported_fwv(&data.value));
                        return verify(campaign, &next, reported.as_deref(), now);
                    }
                    _ => {}
                }
            } else {
                next.answered += 1;
                if next.answered as usize >= campaign.spec.commands().len() {
                    next.state = DeviceState::Succeeded;
                    next.result_code = *status;
                    next.note(now, "outcome", Some("succeeded".to_owned()));
                } else if device.state == DeviceState::Notified {
                    next.state = DeviceState::InSession;
                }
            }
        }
        DeviceEvent::FumoResult { code } => {
            if !firmware || device.state == DeviceState::Verifying {
                return None;
            }
            next.note(now, "alert", Some(format!("FUMO result {code}")));
            next.result_code = Some(*code);
            if !(200..300).contains(code) {
                return Some((fail(campaign, &next, *code, "result_code", now), FollowUp::None));
            }
            next.state = DeviceState::Verifying;
            next.verify_since = now;
            return Some((next, FollowUp::ReadVersion));
        }
        DeviceEvent::VersionReported { fwv } => {
            if device.state != DeviceState::Verifying {
                return None;
            }
            return verify(campaign, &next, Some(fwv), now);
        }
    }
    Some((next, FollowUp::None))
}

/// The FwV a GET answer carries: a dmmo+json document (`{"MOData": {"FwV": "2.0"}, ...}`) or plain text.
fn reported_fwv(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.trim().to_owned()),
        serde_json::Value::Object(document) => match document.get("MOData").and_then(|data| data.get("FwV")) {
            Some(serde_json::Value::String(fwv)) => Some(fwv.trim().to_owned()),
            _ => None,
        },
        _ => None,
    }
}

fn verify(
    campaign: &Campaign,
    device: &CampaignDevice,
    reported: Option<&str>,
    now: Millis,
) -> Option<(CampaignDevice, FollowUp)> {
    let Action::Firmware(firmware) = &campaign.spec.action else { return None };
    let mut next = device.clone();
    next.note(now, "verified", reported.map(|version| format!("FwV {version}")));
    if reported == Some(firmware.version.as_str()) {
        next.state = DeviceState::Succeeded;
        next.note(now, "outcome", Some("succeeded".to_owned()));
        Some((next, FollowUp::None))
    } else {
        let code = next.result_code.unwrap_or(200);
        Some((fail(campaign, &next, code, "version_mismatch", now), FollowUp::None))
    }
}

/// The device after it failed for `reason`: pending again while the policy has retries left for the kind, with
/// an exponential back-off; failed otherwise.
pub fn fail(campaign: &Campaign, device: &CampaignDevice, code: u16, reason: &str, now: Millis) -> CampaignDevice {
    let timed_out = reason == "deadline";
    let mut next = device.clone();
    next.result_code = if code == 0 { None } else { Some(code) };
    next.reason = Some(reason.to_owned());
    let policy: &Policy = &campaign.spec.policy;
    let allowed = if timed_out { policy.retries.timed_out } else { policy.retries.failed };
    if device.attempt <= allowed {
        let backoff_s = policy.retry_backoff_s.saturating_mul(1 << device.attempt.saturating_sub(1).min(20));
        next.state = DeviceState::Pending;
        next.not_before = now.saturating_add(backoff_s.saturating_mul(1000));
        next.note(now, "retry", Some(format!("{reason}; attempt {} after {backoff_s} s", device.attempt + 1)));
    } else {
        next.state = if timed_out { DeviceState::TimedOut } else { DeviceState::Failed };
        next.note(now, "outcome", Some(format!("{} ({reason})", next.state.name())));
    }
    next
}

/// The device once its deadline passed without an outcome, if it has.
pub fn on_deadline(campaign: &Campaign, device: &CampaignDevice, now: Millis) -> Option<CampaignDevice> {
    (device.state.is_in_flight() && device.deadline_at > 0 && now >= device.deadline_at)
        .then(|| fail(campaign, device, 0, "deadline", now))
}

#[cfg(test)]
mod tests {
    use omadm_core::campaign::control::{Descriptors, new_campaign};
    use omadm_core::campaign::{CampaignSpec, Progress};

    use super::*;

    fn campaign(action: serde_json::Value, policy: serde_json::Value) -> Campaign {
        let spec = CampaignSpec::from_json(
            &serde_json::to_vec(&serde_json::json!({"name": "t", "target": {"devices": ["d1"]},
                "action": action, "policy": policy}))
            .unwrap(),
        )
        .unwrap();
        let mut campaign = new_campaign("cmp-1".into(), spec, Descriptors::default(), None, 0);
        campaign.progress = Progress::default();
        campaign
    }

    fn firmware(policy: serde_json::Value) -> Campaign {
        campaign(serde_json::json!({"firmware": {"url": "fw/x.bin", "version": "2.0"}}), policy)
    }

    fn notified() -> CampaignDevice {
        let mut device = CampaignDevice::new("d1", 0, 0);
        device.state = DeviceState::Notified;
        device.attempt = 1;
        device.deadline_at = 10_000;
        device
    }

    fn exec() -> Command {
        Command::from_json(&serde_json::json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate"])).unwrap()
    }

    fn version_get() -> Command {
        Command::from_json(&serde_json::json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"])).unwrap()
    }

    fn step(campaign: &Campaign, device: &CampaignDevice, event: DeviceEvent<'_>) -> CampaignDevice {
        on_event(campaign, device, &event, 5).expect("a change").0
    }

    #[test]
    fn a_firmware_update_succeeds_only_when_the_version_reads_back() {
        let campaign = firmware(serde_json::json!({}));
        let device = step(&campaign, &notified(), DeviceEvent::SessionStarted);
        assert_eq!(device.state, DeviceState::InSession);
        assert_eq!(
            on_event(&campaign, &device, &DeviceEvent::SessionStarted, 6),
            None,
            "a second session changes nothing"
        );
        let command = exec();
        let result =
            DeviceEvent::CommandResult { command: &command, state: CommandState::Done, status: Some(202), data: None };
        let device = step(&campaign, &device, result);
        assert_eq!(device.state, DeviceState::Executing);
        let (verifying, follow_up) = on_event(&campaign, &device, &DeviceEvent::FumoResult { code: 200 }, 7).unwrap();
        assert_eq!((verifying.state, follow_up), (DeviceState::Verifying, FollowUp::ReadVersion));
        let get = version_get();
        let document = CommandResultData {
            content_type: "application/dmmo+json".into(),
            value: serde_json::json!({"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MOData": {"FwV": "2.0"}}),
            base64: false,
        };
        let answered = DeviceEvent::CommandResult {
            command: &get,
            state: CommandState::Done,
            status: Some(200),
            data: Some(&document),
        };
        assert_eq!(step(&campaign, &verifying, answered).state, DeviceState::Succeeded, "the FwV GET's document");
        let done = step(&campaign, &verifying, DeviceEvent::VersionReported { fwv: "2.0".into() });
        assert_eq!(done.state, DeviceState::Succeeded);
        let old = step(&campaign, &verifying, DeviceEvent::VersionReported { fwv: "1.0".into() });
        assert_eq!((old.state, old.reason.as_deref()), (DeviceState::Failed, Some("version_mismatch")));
    }

    #[test]
    fn failures_retry_with_backoff_until_the_policy_allows_no_more() {
        let campaign = firmware(serde_json::json!({"retries": {"failed": 1}, "retry_backoff_s": 10}));
        let failed = step(&campaign, &notified(), DeviceEvent::FumoResult { code: 410 });
        assert_eq!((failed.state, failed.result_code, failed.not_before), (DeviceState::Pending, Some(410), 10_005));
        let mut second = failed.clone();
        second.state = DeviceState::Executing;
        second.attempt = 2;
        let last = step(&campaign, &second, DeviceEvent::FumoResult { code: 410 });
        assert_eq!((last.state, last.reason.as_deref()), (DeviceState::Failed, Some("result_code")));
    }

    #[test]
    fn deadlines_time_devices_out_and_refused_commands_fail_them() {
        let campaign = firmware(serde_json::json!({}));
        assert_eq!(on_deadline(&campaign, &notified(), 9_999), None);
        assert_eq!(on_deadline(&campaign, &notified(), 10_000).unwrap().state, DeviceState::TimedOut);
        let command = exec();
        let refused = DeviceEvent::CommandResult {
            command: &command,
            state: CommandState::Failed,
            status: Some(405),
            data: None,
        };
        let device = step(&campaign, &notified(), refused);
        assert_eq!((device.state, device.result_code), (DeviceState::Failed, Some(405)));
    }

    #[test]
    fn a_command_campaign_succeeds_when_every_command_is_answered() {
        let campaign = campaign(
            serde_json::json!({"commands": [["EXEC", "urn:oma:mo:x:1.0//A"], ["EXEC", "urn:oma:mo:x:1.0//B"]]}),
            serde_json::json!({}),
        );
        let command = exec();
        let done = || DeviceEvent::CommandResult {
            command: &command,
            state: CommandState::Done,
            status: Some(200),
            data: None,
        };
        let one = step(&campaign, &notified(), done());
        assert_eq!(one.state, DeviceState::InSession);
        assert_eq!(step(&campaign, &one, done()).state, DeviceState::Succeeded);
        assert_eq!(on_event(&campaign, &one, &DeviceEvent::FumoResult { code: 200 }, 1), None);
    }
}
