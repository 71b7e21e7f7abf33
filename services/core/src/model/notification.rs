//! The record of one notification request: what the operator asked and, once the notifier dispatched it, its outcome.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// How long a notification record is kept after its newest time (its outcome's, else its request's): 7 days.
/// Redis expires it (PXAT), the embedded engine hides it from reads and prunes it in a later write; the API
/// answers 404 for it then.
pub const NOTIFICATION_RETENTION_MILLIS: Millis = 7 * 24 * 60 * 60 * 1000;

/// The form of the request ids the operator API hands out (32 lowercase hex digits), as a regular expression.
pub const REQUEST_ID_PATTERN: &str = "^[0-9a-f]{32}$";

/// Whether `request_id` has the form of [`REQUEST_ID_PATTERN`].
pub fn is_request_id(request_id: &str) -> bool {
    request_id.len() == 32 && request_id.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// One request, keyed by its request id (the hex part of its `notification.requested` event id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub request_id: String,
    pub device_id: String,
    pub requested_at: Millis,
    pub requested_by: String,
    pub request_mos: bool,
    /// None while the notifier has not dispatched the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<NotificationOutcome>,
    /// The attempts that failed and were tried again, oldest first (the last attempt is the outcome).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<NotificationAttempt>,
    /// When the next attempt is due, while the request waits for it (no outcome yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
    /// The device's first session after the Package#0 was sent: the answer to a `sent` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<NotificationAnswer>,
    /// What the transport reported of the sent Package#0's delivery (an SMSC's delivery receipt), once it did.
    /// Set by [`crate::store::WriteBatch::deliveries`] and kept by later writes of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<NotificationDelivery>,
}

/// A transport's report on a sent Package#0 (an SMSC's delivery receipt): the payload of
/// `notification.delivered` (`delivered`) or `notification.undelivered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationDelivery {
    pub device_id: String,
    pub request_id: String,
    pub transport: String,
    /// Whether the message reached the device.
    pub delivered: bool,
    /// The transport's word for the outcome (SMPP's `stat`: DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED...).
    pub status: String,
    /// The transport's id of the message it reported on (the SMSC's message_id).
    pub message_id: String,
    /// When the report arrived.
    pub at: Millis,
}

/// The session that answered a notification (its Package#1 came after the send).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationAnswer {
    pub session_id: String,
    /// When the session started.
    pub at: Millis,
}

/// One failed attempt of a request that was tried again: the fields of its `notification.failed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationAttempt {
    /// 1 for the first.
    pub attempt: u32,
    pub at: Millis,
    /// The last transport tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    pub reason: String,
    pub detail: String,
}

/// What the notifier made of a request; the fields of its `notification.sent|failed|collapsed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    pub state: NotificationState,
    /// When it was sent, failed or collapsed.
    pub at: Millis,
    /// `udp`, ...; None when the request failed before a transport was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The Package#0's NOTIFICATION-ID, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<u16>,
    /// Why it failed (the `reason` word of `notification.failed`) and the detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request id of the notification in flight this one collapsed into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapsed_into: Option<String>,
}

/// A final outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Sent,
    Failed,
    Collapsed,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
            NotificationState::Collapsed => "collapsed",
        }
    }
}

impl NotificationRecord {
    /// `requested` until the first attempt, `retrying` while an attempt that failed waits for the next, then
    /// the outcome's state.
    pub fn state(&self) -> &'static str {
        match (&self.outcome, self.next_attempt_at) {
            (Some(outcome), _) => outcome.state.as_str(),
            (None, Some(_)) => "retrying",
            (None, None) => "requested",
        }
    }

    /// The record's newest time (its answer's, else its outcome's, else its last failed attempt's, else its
    /// request's), from which its retention runs.
    pub fn written_at(&self) -> Millis {
        let attempted = self.attempts.last().map_or(self.requested_at, |attempt| attempt.at.max(self.requested_at));
        let outcome = self.outcome.as_ref().map_or(attempted, |outcome| outcome.at.max(attempted));
        self.answered.as_ref().map_or(outcome, |answer| answer.at.max(outcome))
    }

    /// When the record may be forgotten.
    pub fn expires_at(&self) -> Millis {
        self.written_at().saturating_add(NOTIFICATION_RETENTION_MILLIS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_outcome_and_retention_runs_from_the_newest_time() {
        let mut record = NotificationRecord {
            request_id: "0".repeat(32),
            device_id: "IMEI:1".to_owned(),
            requested_at: 100,
            requested_by: "operator".to_owned(),
            request_mos: false,
            outcome: None,
            ..NotificationRecord::default()
        };
        assert_eq!((record.state(), record.expires_at()), ("requested", 100 + NOTIFICATION_RETENTION_MILLIS));
        record.attempts.push(NotificationAttempt {
            attempt: 1,
            at: 180,
            transport: Some("sms".to_owned()),
            reason: "transport_error".to_owned(),
            detail: "no bind".to_owned(),
        });
        record.next_attempt_at = Some(10_180);
        assert_eq!((record.state(), record.expires_at()), ("retrying", 180 + NOTIFICATION_RETENTION_MILLIS));
        record.next_attempt_at = None;
        record.outcome = Some(NotificationOutcome {
            state: NotificationState::Collapsed,
            at: 250,
            transport: None,
            notification_id: None,
            reason: None,
            detail: None,
            collapsed_into: Some("1".repeat(32)),
        });
        assert_eq!((record.state(), record.expires_at()), ("collapsed", 250 + NOTIFICATION_RETENTION_MILLIS));
        assert!(is_request_id(&"0123456789abcdef".repeat(2)));
        for bad in
            ["", "ABCDEF0123456789abcdef0123456789", &"0".repeat(31), &"0".repeat(33), &format!("{}g", "0".repeat(31))]
        {
            assert!(!is_request_id(bad), "{bad:?}");
        }
    }
}
