//! The events a session produces (docs/events.md): typed payloads and the [`Event`] envelopes around them.
//!
//! ```text
//! session.started  sessions  session:{sid}:started
//! command.result   results   result:{device}:{command id}:{attempt}
//! alert.received   alerts    alert:{device}:{alert id}
//! session.ended    sessions  session:{sid}:ended
//! ```
//!
//! The session emits those four. The device edge and the operator API emit
//! two more, built here so that every schema of docs/events.md has one source:
//!
//! ```text
//! content.uploaded        results        upload:{device}:{path}:{stored_at}
//! notification.requested  notifications  notify:{device}:{request id}
//! ```
//!
//! The notifier answers each request with one outcome:
//!
//! ```text
//! notification.sent       notifications  notification:{device}:{request id}:sent
//! notification.failed     notifications  notification:{device}:{request id}:failed
//! notification.collapsed  notifications  notification:{device}:{request id}:collapsed
//! ```
//!
//! The device edge records what the push service registration of a device became (D.2.4):
//!
//! ```text
//! push.registered         notifications  push:{device}:registered:{registered_at}
//! push.unregistered       notifications  push:{device}:unregistered:{unregistered_at}
//! ```
//!
//! Ids are derived from what the event is about, never from a clock or a
//! counter of the emitter, so a step that is retried after a failed commit
//! produces the same ids and consumers can drop repeats. Every event is keyed
//! by the device id: all of one device's events land in one partition, in order.

use omadm_proto::command::Command;
use omadm_proto::package::AlertItem;
use serde::{Deserialize, Serialize};

use crate::bus::{Event, SCHEMA_VERSION, Topic};
use crate::clock::Millis;
use crate::model::{
    AlertRecord, CommandId, CommandOrigin, CommandRecord, CommandResultData, CommandState, SessionOutcome,
    SessionSummary,
};

/// `session.started`.
pub const SESSION_STARTED: &str = "session.started";
/// `session.ended`, with the outcome `ended` or `expired`.
pub const SESSION_ENDED: &str = "session.ended";
/// `command.result`: a queued command reached a final state.
pub const COMMAND_RESULT: &str = "command.result";
/// `alert.received`: one Generic Alert item and the status it was answered with.
pub const ALERT_RECEIVED: &str = "alert.received";
/// `content.uploaded`: a device stored data in the Data Repository (HPUT/HPOST to `/repo/...`).
pub const CONTENT_UPLOADED: &str = "content.uploaded";
/// `notification.requested`: someone asked for a Package#0 to wake the device.
pub const NOTIFICATION_REQUESTED: &str = "notification.requested";
/// `notification.retry`: the notifier's own next attempt at a request whose attempt failed, released at its time.
pub const NOTIFICATION_RETRY: &str = "notification.retry";
/// `notification.sent`: a Package#0 left for the device.
pub const NOTIFICATION_SENT: &str = "notification.sent";
/// `notification.failed`: no Package#0 left for this request, and why.
pub const NOTIFICATION_FAILED: &str = "notification.failed";
/// `notification.answered`: the device's first session after a Package#0 was sent to it started.
pub const NOTIFICATION_ANSWERED: &str = "notification.answered";
/// `notification.delivered`: the transport reported the Package#0 delivered to the device (an SMS receipt).
pub const NOTIFICATION_DELIVERED: &str = "notification.delivered";
/// `notification.undelivered`: the transport reported the Package#0 could not be delivered (expired, rejected...).
pub const NOTIFICATION_UNDELIVERED: &str = "notification.undelivered";
/// `notification.collapsed`: the request joined one already in flight for the device; nothing more was sent.
pub const NOTIFICATION_COLLAPSED: &str = "notification.collapsed";
/// `push.registered`: the device registered a RegID at its RegURL.
pub const PUSH_REGISTERED: &str = "push.registered";
/// `push.unregistered`: the device's RegID was cleared (it unregistered, or the push gateway no longer knows it).
pub const PUSH_UNREGISTERED: &str = "push.unregistered";

/// GET data larger than this (as JSON text) is left out of `command.result`
/// (`data_omitted` is set): events stay small enough for any broker, and the
/// operator API serves the full data from the command record.
pub const MAX_EVENT_DATA_BYTES: usize = 64 * 1024;

/// Payload of `session.started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStarted {
    pub device_id: String,
    pub session_id: String,
    pub started_at: Millis,
    /// Generic Alert items the Package#1 carried.
    pub alerts: usize,
    /// How many MOs the Package#1 listed in MOS; absent when it sent no MOS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_objects: Option<usize>,
    /// True when the server asked for DevInfo and SessionInfo in this session.
    pub inventory_requested: bool,
    /// Queued commands put in the first Package#2.
    pub commands_sent: usize,
}

/// Payload of `session.ended`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    pub device_id: String,
    pub session_id: String,
    pub outcome: SessionOutcome,
    pub started_at: Millis,
    pub ended_at: Millis,
    pub duration_ms: Millis,
    /// Packages received (the Package#1 included).
    pub packages: u32,
    /// Queued commands the device answered in the session.
    pub commands_answered: u32,
    /// On expiry: unanswered commands put back in the queue.
    pub commands_requeued: u32,
    /// On expiry: unanswered commands that had used up their attempts.
    pub commands_expired: u32,
}

/// Payload of `command.result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub device_id: String,
    /// The session that sent the command the last time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub command_id: CommandId,
    /// Which send this result is for (1 for the first).
    pub attempt: u32,
    pub command: Command,
    pub origin: CommandOrigin,
    /// The campaign that queued the command, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// `done`, `failed` or `expired`.
    pub state: CommandState,
    /// The device's status code; absent when the command expired unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<serde_json::Value>,
    /// The GET result, when there is one of at most [`MAX_EVENT_DATA_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<CommandResultData>,
    /// True when there is a GET result too large to carry here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_omitted: bool,
}

/// Payload of `alert.received`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertReceived {
    pub device_id: String,
    pub session_id: String,
    pub alert_id: u64,
    /// The status answered in AlertStatus: 200, 202 or 415.
    pub status: u16,
    /// The importance, `informational` when the item states none.
    pub mark: String,
    /// The item as the device sent it (wire field names).
    pub item: AlertItem,
}

pub(crate) fn envelope(
    id: String,
    event_type: &str,
    topic: Topic,
    key: &str,
    timestamp: Millis,
    payload: impl Serialize,
) -> Event {
    Event {
        id,
        event_type: event_type.to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp,
        topic,
        key: key.to_owned(),
        // Serializing these plain structs cannot fail (all map keys are strings).
        payload: serde_json::to_value(payload).unwrap_or_default(),
    }
}

/// `session:{sid}:started` on `sessions`.
pub fn session_started(payload: SessionStarted) -> Event {
    let id = format!("session:{}:started", payload.session_id);
    let (key, timestamp) = (payload.device_id.clone(), payload.started_at);
    envelope(id, SESSION_STARTED, Topic::Sessions, &key, timestamp, payload)
}

/// `session:{sid}:ended` on `sessions`, from the summary the batch stores.
pub fn session_ended(summary: &SessionSummary, commands_requeued: u32, commands_expired: u32) -> Event {
    let ended_at = summary.ended_at.unwrap_or(summary.started_at);
    let payload = SessionEnded {
        device_id: summary.device_id.clone(),
        session_id: summary.id.clone(),
        outcome: summary.outcome,
        started_at: summary.started_at,
        ended_at,
        duration_ms: ended_at.saturating_sub(summary.started_at),
        packages: summary.packages,
        commands_answered: summary.commands_answered,
        commands_requeued,
        commands_expired,
    };
    envelope(
        format!("session:{}:ended", summary.id),
        SESSION_ENDED,
        Topic::Sessions,
        &summary.device_id,
        ended_at,
        payload,
    )
}

/// `result:{device}:{command id}:{attempt}` on `results`, for a record in a final state.
pub fn command_result(record: &CommandRecord, now: Millis) -> Event {
    let data_size = record.data.as_ref().map(|data| serde_json::to_vec(data).map_or(usize::MAX, |bytes| bytes.len()));
    let data_omitted = data_size.is_some_and(|size| size > MAX_EVENT_DATA_BYTES);
    let payload = CommandResult {
        device_id: record.device_id.clone(),
        session_id: record.session_id.clone(),
        command_id: record.id,
        attempt: record.attempts,
        command: record.command.clone(),
        origin: record.origin,
        campaign_id: record.campaign_id.clone(),
        state: record.state,
        status: record.status,
        extra: record.extra.clone(),
        data: if data_omitted { None } else { record.data.clone() },
        data_omitted,
    };
    let id = format!("result:{}:{}:{}", record.device_id, record.id, record.attempts);
    envelope(id, COMMAND_RESULT, Topic::Results, &record.device_id, now, payload)
}

/// `alert:{device}:{alert id}` on `alerts`.
pub fn alert_received(alert: &AlertRecord) -> Event {
    let payload = AlertReceived {
        device_id: alert.device_id.clone(),
        session_id: alert.session_id.clone(),
        alert_id: alert.id,
        status: alert.status,
        mark: alert.item.effective_mark().as_str().to_owned(),
        item: alert.item.clone(),
    };
    let id = format!("alert:{}:{}", alert.device_id, alert.id);
    envelope(id, ALERT_RECEIVED, Topic::Alerts, &alert.device_id, alert.received_at, payload)
}

/// Payload of `content.uploaded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentUploaded {
    pub device_id: String,
    /// Path below `/repo/`, ServerURI parameters as the device substituted them.
    pub path: String,
    /// `PUT` (HPUT) or `POST` (HPOST).
    pub method: String,
    pub content_type: String,
    pub size: u64,
    pub stored_at: Millis,
}

/// `upload:{device}:{path}:{stored_at}` on `results`.
pub fn content_uploaded(payload: ContentUploaded) -> Event {
    let id = format!("upload:{}:{}:{}", payload.device_id, payload.path, payload.stored_at);
    let (key, timestamp) = (payload.device_id.clone(), payload.stored_at);
    envelope(id, CONTENT_UPLOADED, Topic::Results, &key, timestamp, payload)
}

/// Payload of `notification.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRequested {
    pub device_id: String,
    /// Chosen by the requester, unique per device: a repeat of the same request keeps its id.
    pub request_id: String,
    pub requested_at: Millis,
    /// Who asked: `operator` (the API) or `campaign`.
    pub requested_by: String,
    /// Ask the device to list its MOs in the Package#1 (REQ-MOS).
    #[serde(default)]
    pub request_mos: bool,
    /// PREFERRED-CON-TYPE, highest priority first (`mobile`, `wireless`, `wireline`, `any` last); empty: the
    /// device's own preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_con_types: Vec<String>,
    /// Which attempt this is: 1 (left out) for the request itself, 2 and up in a `notification.retry`.
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

fn is_first_attempt(attempt: &u32) -> bool {
    *attempt <= 1
}

/// Payload of `notification.sent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSent {
    pub device_id: String,
    pub request_id: String,
    /// The transport that took the package: `udp`.
    pub transport: String,
    /// The package's NOTIFICATION-ID.
    pub notification_id: u16,
    /// True when the package carries a SHA256-DIGEST (the device has an AuthSecret).
    pub signed: bool,
    /// True when the package carries REQ-MOS.
    pub request_mos: bool,
    pub sent_at: Millis,
    /// The attempt that sent it: 1 (left out) unless earlier ones failed.
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
}

/// Payload of `notification.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub device_id: String,
    pub request_id: String,
    /// The transport that was tried; absent when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// `unknown_device`, `no_transport`, `invalid_request`, `transport_error` or `transport_rejected`.
    pub reason: String,
    /// The reason in words, for people.
    pub detail: String,
    pub failed_at: Millis,
    /// The attempt that failed: 1 (left out) for the first.
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
    /// When the next attempt is due; absent when this failure is the request's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
}

/// Payload of `notification.answered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationAnswered {
    pub device_id: String,
    pub request_id: String,
    /// The session whose Package#1 answered.
    pub session_id: String,
    /// The transport and NOTIFICATION-ID of the Package#0 it answered.
    pub transport: String,
    pub notification_id: u16,
    pub sent_at: Millis,
    /// When the session started.
    pub answered_at: Millis,
}

/// Payload of `notification.collapsed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationCollapsed {
    pub device_id: String,
    pub request_id: String,
    /// The request in flight whose Package#0 answers this one too.
    pub collapsed_into: String,
    pub collapsed_at: Millis,
}

/// `notify:{device}:{request id}` on `notifications`.
pub fn notification_requested(payload: NotificationRequested) -> Event {
    let id = format!("notify:{}:{}", payload.device_id, payload.request_id);
    let (key, timestamp) = (payload.device_id.clone(), payload.requested_at);
    envelope(id, NOTIFICATION_REQUESTED, Topic::Notifications, &key, timestamp, payload)
}

/// `notification:{device}:{request id}:sent` on `notifications`.
pub fn notification_sent(payload: NotificationSent) -> Event {
    let id = format!("notification:{}:{}:sent", payload.device_id, payload.request_id);
    let (key, timestamp) = (payload.device_id.clone(), payload.sent_at);
    envelope(id, NOTIFICATION_SENT, Topic::Notifications, &key, timestamp, payload)
}

/// `notify:{device}:{request id}:attempt:{attempt}` on `notifications`: the request again, as attempt `attempt`.
pub fn notification_retry(payload: NotificationRequested, at: Millis) -> Event {
    let id = format!("notify:{}:{}:attempt:{}", payload.device_id, payload.request_id, payload.attempt);
    let key = payload.device_id.clone();
    envelope(id, NOTIFICATION_RETRY, Topic::Notifications, &key, at, payload)
}

/// `notification:{device}:{request id}:failed` on `notifications` when the failure is the request's outcome;
/// `notification:{device}:{request id}:attempt:{attempt}:failed` for a failed attempt that is tried again
/// (`retry_at`).
pub fn notification_failed(payload: NotificationFailed) -> Event {
    let id = match payload.retry_at {
        None => format!("notification:{}:{}:failed", payload.device_id, payload.request_id),
        Some(_) => {
            format!("notification:{}:{}:attempt:{}:failed", payload.device_id, payload.request_id, payload.attempt)
        }
    };
    let (key, timestamp) = (payload.device_id.clone(), payload.failed_at);
    envelope(id, NOTIFICATION_FAILED, Topic::Notifications, &key, timestamp, payload)
}

/// `notification:{device}:{request id}:answered` on `notifications`.
pub fn notification_answered(payload: NotificationAnswered) -> Event {
    let id = format!("notification:{}:{}:answered", payload.device_id, payload.request_id);
    let (key, timestamp) = (payload.device_id.clone(), payload.answered_at);
    envelope(id, NOTIFICATION_ANSWERED, Topic::Notifications, &key, timestamp, payload)
}

/// `notification:{device}:{request id}:delivered` (or `:undelivered`) on `notifications`.
pub fn notification_delivery(payload: crate::model::NotificationDelivery) -> Event {
    let (suffix, event_type) = if payload.delivered {
        ("delivered", NOTIFICATION_DELIVERED)
    } else {
        ("undelivered", NOTIFICATION_UNDELIVERED)
    };
    let id = format!("notification:{}:{}:{suffix}", payload.device_id, payload.request_id);
    let (key, timestamp) = (payload.device_id.clone(), payload.at);
    envelope(id, event_type, Topic::Notifications, &key, timestamp, payload)
}

/// `notification:{device}:{request id}:collapsed` on `notifications`.
pub fn notification_collapsed(payload: NotificationCollapsed) -> Event {
    let id = format!("notification:{}:{}:collapsed", payload.device_id, payload.request_id);
    let (key, timestamp) = (payload.device_id.clone(), payload.collapsed_at);
    envelope(id, NOTIFICATION_COLLAPSED, Topic::Notifications, &key, timestamp, payload)
}

/// Payload of `push.registered`. The RegID itself stays in the device record: events are read widely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRegistered {
    pub device_id: String,
    /// True when the device had another RegID before (the push service gave it a new one).
    pub replaced: bool,
    pub registered_at: Millis,
}

/// Payload of `push.unregistered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushUnregistered {
    pub device_id: String,
    /// `device` (a POST to the UnRegURL) or `push_gateway` (the gateway answered that the RegID is unregistered).
    pub by: String,
    pub unregistered_at: Millis,
}

/// `push:{device}:registered:{registered_at}` on `notifications`.
pub fn push_registered(payload: PushRegistered) -> Event {
    let id = format!("push:{}:registered:{}", payload.device_id, payload.registered_at);
    let (key, timestamp) = (payload.device_id.clone(), payload.registered_at);
    envelope(id, PUSH_REGISTERED, Topic::Notifications, &key, timestamp, payload)
}

/// `push:{device}:unregistered:{unregistered_at}` on `notifications`.
pub fn push_unregistered(payload: PushUnregistered) -> Event {
    let id = format!("push:{}:unregistered:{}", payload.device_id, payload.unregistered_at);
    let (key, timestamp) = (payload.device_id.clone(), payload.unregistered_at);
    envelope(id, PUSH_UNREGISTERED, Topic::Notifications, &key, timestamp, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: serde_json::Value) -> CommandRecord {
        CommandRecord {
            id: 7,
            device_id: "IMEI:1".to_owned(),
            command: Command::from_json(&serde_json::json!(["GET", "urn:oma:mo:a:1.0//X"])).unwrap(),
            origin: CommandOrigin::Operator,
            campaign_id: None,
            state: CommandState::Done,
            status: Some(200),
            extra: Vec::new(),
            data: Some(CommandResultData { content_type: "text/plain".to_owned(), value, base64: false }),
            session_id: Some("s".to_owned()),
            attempts: 2,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn small_data_travels_in_the_result_and_large_data_is_left_out() {
        let small = command_result(&record(serde_json::json!("on")), 5);
        assert_eq!(small.id, "result:IMEI:1:7:2");
        assert_eq!((small.timestamp, small.topic, small.key.as_str()), (5, Topic::Results, "IMEI:1"));
        assert_eq!(small.payload["data"]["value"], serde_json::json!("on"));
        assert!(small.payload.get("data_omitted").is_none());

        let large = command_result(&record(serde_json::json!("x".repeat(MAX_EVENT_DATA_BYTES))), 5);
        assert!(large.payload.get("data").is_none());
        assert_eq!(large.payload["data_omitted"], serde_json::json!(true));
        assert_eq!(large.payload["status"], serde_json::json!(200));
    }
}
