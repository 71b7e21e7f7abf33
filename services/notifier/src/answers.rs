//! Closing sent notifications as answered: the device's first session that starts at or after the send.
//!
//! ```text
//! session.started {device, session, started_at}          (own consumer group on the sessions topic, read no
//!     -> Store::latest_notification(device)              sooner than ANSWER_GRACE after the session started)
//!     -> sent at or before started_at, not answered yet? -> notification.answered + the record's `answered`
//!        (one WriteBatch per batch of sessions) -> ConsumerLoop commits the batch's offsets
//! dispatcher, before it stores a batch's sends
//!     -> get_device: last_session_id moved since the send was planned? -> that session's start time
//!     -> the same rule -> the answered record and notification.answered go into the dispatcher's batch
//! ```
//!
//! DM 2.0's Package#1 does not say whether a notification caused it (DM 1.2's server-initiated alert is gone),
//! so the device's first session after the send is the answer; a device that was due to call anyway answers
//! too. A woken device often calls before the dispatcher has stored the send (it stores a batch's sends once
//! they are all out): such sessions are matched by the dispatcher itself, which reads the device again before it
//! stores the batch. The consumer's grace covers the milliseconds between that read and the store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omadm_core::bus::{Delivery, Event};
use omadm_core::clock::{Millis, now_millis};
use omadm_core::model::{NotificationAnswer, NotificationRecord, NotificationState};
use omadm_core::session::events::{NotificationAnswered, SESSION_STARTED, SessionStarted, notification_answered};
use omadm_core::store::{Store, StoreError, WriteBatch};
use omadm_runtime::consumer::{BatchHandler, HandlerError};

use crate::metrics::metrics;

/// The consumer group of the answer matching, apart from the dispatchers' `omadm-notifier`.
pub const ANSWERS_CONSUMER_GROUP: &str = "omadm-notifier-answers";
/// The consumer reads a session start no sooner than this after it: the dispatcher's read of the device and the
/// store of its batch are done by then ([`check_sessions_during_dispatch`]).
pub const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// A session start, as far as answering goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStart<'a> {
    pub device_id: &'a str,
    pub session_id: &'a str,
    pub started_at: Millis,
}

/// What a session start makes of the device's latest notification: the answered record and its event, or
/// nothing (not sent, already answered, or sent after the session started). Pure.
pub fn answer(record: &NotificationRecord, session: SessionStart<'_>) -> Option<(NotificationRecord, Event)> {
    let outcome = record.outcome.as_ref().filter(|outcome| outcome.state == NotificationState::Sent)?;
    if record.answered.is_some() || outcome.at > session.started_at || record.device_id != session.device_id {
        return None;
    }
    let answered = NotificationRecord {
        answered: Some(NotificationAnswer { session_id: session.session_id.to_owned(), at: session.started_at }),
        ..record.clone()
    };
    let event = notification_answered(NotificationAnswered {
        device_id: record.device_id.clone(),
        request_id: record.request_id.clone(),
        session_id: session.session_id.to_owned(),
        transport: outcome.transport.clone().unwrap_or_default(),
        notification_id: outcome.notification_id.unwrap_or_default(),
        sent_at: outcome.at,
        answered_at: session.started_at,
    });
    Some((answered, event))
}

/// Logs and counts one answer.
fn observe(record: &NotificationRecord, session: SessionStart<'_>) {
    let outcome = record.outcome.as_ref();
    let transport = outcome.and_then(|outcome| outcome.transport.as_deref()).unwrap_or_default();
    let after_ms = session.started_at.saturating_sub(outcome.map_or(session.started_at, |outcome| outcome.at));
    tracing::info!(
        device_id = %session.device_id,
        session_id = %session.session_id,
        request_id = %record.request_id,
        after_ms,
        "notification answered"
    );
    metrics().answer_seconds.with_label_values(&[transport]).observe(after_ms as f64 / 1000.0);
}

/// A sent notification's record, and the device's last session id when its send was planned: a session the
/// device started since may have begun before the record is stored, where the consumer cannot find it.
pub(crate) struct SentBeforeStored<'a> {
    pub(crate) record: &'a mut NotificationRecord,
    pub(crate) last_session_before: Option<String>,
}

/// The dispatcher's half: each device whose last session moved since its send was planned gets that session
/// matched to the send, the answered record in place of `record`; returns the notification.answered events.
pub(crate) async fn check_sessions_during_dispatch(
    store: &dyn Store,
    sent: Vec<SentBeforeStored<'_>>,
) -> Result<Vec<Event>, StoreError> {
    let mut events = Vec::new();
    for SentBeforeStored { record, last_session_before } in sent {
        let Some(device) = store.get_device(&record.device_id).await? else { continue };
        let Some(session_id) = device.last_session_id.filter(|id| Some(id) != last_session_before.as_ref()) else {
            continue;
        };
        let started_at = match store.get_session(&device.id, &session_id).await? {
            Some(open) => open.started_at,
            None => {
                let history = store.list_sessions(&device.id, 1).await?;
                match history.into_iter().find(|summary| summary.id == session_id) {
                    Some(ended) => ended.started_at,
                    None => continue,
                }
            }
        };
        let session = SessionStart { device_id: &device.id, session_id: &session_id, started_at };
        if let Some((answered, event)) = answer(record, session) {
            observe(&answered, session);
            *record = answered;
            events.push(event);
        }
    }
    Ok(events)
}

/// The batch handler of the sessions topic.
pub(crate) struct Answers {
    pub(crate) store: Arc<dyn Store>,
}

#[async_trait]
impl BatchHandler for Answers {
    async fn handle(&mut self, deliveries: &[Delivery]) -> Result<(), HandlerError> {
        let mut records = Vec::new();
        let mut events = Vec::new();
        // Two sessions of one device in a batch: the first answers, the store has not seen it yet.
        let mut answered: HashSet<String> = HashSet::new();
        let newest = deliveries
            .iter()
            .filter(|delivery| delivery.event.event_type == SESSION_STARTED)
            .map(|delivery| delivery.event.timestamp)
            .max();
        if let Some(newest) = newest {
            let due = newest.saturating_add(ANSWER_GRACE.as_millis() as Millis);
            let wait = due.saturating_sub(now_millis()).min(ANSWER_GRACE.as_millis() as Millis);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        for delivery in deliveries {
            if delivery.event.event_type != SESSION_STARTED {
                continue;
            }
            let Ok(started) = serde_json::from_value::<SessionStarted>(delivery.event.payload.clone()) else {
                tracing::warn!(event_id = %delivery.event.id, "unreadable session.started skipped");
                continue;
            };
            if answered.contains(&started.device_id) {
                continue;
            }
            let latest = self.store.latest_notification(&started.device_id).await;
            let latest = latest.map_err(|error| HandlerError(error.to_string()))?;
            let session = SessionStart {
                device_id: &started.device_id,
                session_id: &started.session_id,
                started_at: started.started_at,
            };
            let Some((record, event)) = latest.as_ref().and_then(|record| answer(record, session)) else {
                continue;
            };
            observe(&record, session);
            answered.insert(started.device_id.clone());
            records.push(record);
            events.push(event);
        }
        if events.is_empty() {
            return Ok(());
        }
        let batch = WriteBatch { events, notifications: records, ..WriteBatch::default() };
        self.store.commit(batch).await.map_err(|error| HandlerError(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use omadm_core::model::NotificationOutcome;

    use super::*;

    fn sent_at(at: u64) -> NotificationRecord {
        NotificationRecord {
            request_id: "r1".to_owned(),
            device_id: "IMEI:1".to_owned(),
            requested_at: at - 5,
            requested_by: "operator".to_owned(),
            outcome: Some(NotificationOutcome {
                state: NotificationState::Sent,
                at,
                transport: Some("udp".to_owned()),
                notification_id: Some(7),
                reason: None,
                detail: None,
                collapsed_into: None,
            }),
            ..NotificationRecord::default()
        }
    }

    fn started(at: u64) -> SessionStart<'static> {
        SessionStart { device_id: "IMEI:1", session_id: "s1", started_at: at }
    }

    #[test]
    fn the_first_session_after_the_send_answers_it_once() {
        let (record, event) = answer(&sent_at(1_000), started(1_250)).unwrap();
        assert_eq!(record.answered, Some(NotificationAnswer { session_id: "s1".to_owned(), at: 1_250 }));
        assert_eq!(event.id, "notification:IMEI:1:r1:answered");
        assert_eq!(
            (event.payload["notification_id"].as_u64(), event.payload["sent_at"].as_u64()),
            (Some(7), Some(1_000))
        );
        assert_eq!(answer(&record, started(1_300)), None, "already answered");
        assert_eq!(answer(&sent_at(1_000), started(999)), None, "a session that started before the send");
        let failed = NotificationRecord { outcome: None, ..sent_at(1_000) };
        assert_eq!(answer(&failed, started(2_000)), None, "nothing was sent");
        let other = SessionStart { device_id: "IMEI:2", ..started(2_000) };
        assert_eq!(answer(&sent_at(1_000), other), None, "another device's session");
    }
}
