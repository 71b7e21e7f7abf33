//! The notifier role: a consumer loop on the notifications topic whose handler dispatches each request and
//! makes its outcome durable before the batch is committed.
//!
//! ```text
//! notification.requested | .retry -> get_device -> plan -> in flight? -> next_sequence -> package -> send
//!     -> notification.sent | .failed | .collapsed   (one WriteBatch of the batch's outcomes, through the outbox,
//!                                                    with each request's notification record carrying its outcome)
//!      | notification.failed {retry_at} + a scheduled notification.retry at retry_at (an attempt that may pass)
//!     -> ConsumerLoop commits the batch's offsets
//! ```
//!
//! Before a batch is stored, each device sent to is read again: a session it started since is matched to the
//! send there ([`crate::answers`]).
//!
//! A retry is durable from the commit of the failed attempt: the store keeps it out of the outbox until its
//! time (`WriteBatch::scheduled`), and the outbox relay releases it onto the topic, where a replica takes it like
//! any request. So a request waiting for its next attempt holds no partition and no memory.
//!
//! A store failure fails the whole batch (the loop hands it over again, and the outcomes already reached are
//! reused, so nothing is sent twice); a request the notifier cannot serve (unknown device, no address, a
//! malformed event, a refused send) becomes `notification.failed`, never a stuck partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use omadm_core::bus::{Bus, Delivery, Event, Topic};
use omadm_core::clock::{Millis, now_millis};
use omadm_core::model::{NotificationAttempt, NotificationOutcome, NotificationRecord, NotificationState};
use omadm_core::session::events::{
    NotificationCollapsed, NotificationFailed, NotificationRequested, NotificationSent, notification_collapsed,
    notification_failed, notification_retry, notification_sent,
};
use omadm_core::store::{ScheduledEvent, Store, StoreError, WriteBatch};
use omadm_runtime::consumer::{BatchHandler, ConsumerLoop, ConsumerOptions, HandlerError};
use omadm_runtime::ops::Readiness;
use tracing::Instrument as _;

use crate::NotifierError;
use crate::answers::{ANSWERS_CONSUMER_GROUP, Answers, SentBeforeStored, check_sessions_during_dispatch};
use crate::metrics::metrics;
use crate::plan::{self, Admission, InFlight, PackageRules, Refusal, RetryPolicy};
use crate::push::PushTransport;
use crate::rate::SharedRate;
use crate::settings::{CONSUMER_GROUP, NotifierSettings};
use crate::sms::SmppTransport;
use crate::transport::{Dispatch, Transport, UdpTransport};

/// The readiness condition the notifier raises while it cannot make outcomes durable.
const READINESS_CONDITION: &str = "notifier";

/// A running notifier; [`Notifier::stop`] ends it after the batch in hand.
pub struct Notifier {
    consumer: ConsumerLoop,
    /// Matches sessions to the notifications they answer ([`crate::answers`]).
    answers: ConsumerLoop,
}

impl Notifier {
    /// Binds the UDP transport (and sets up the SMS one when an SMSC is configured), joins the consumer group `omadm-notifier` on the notifications topic and starts
    /// dispatching.
    pub async fn start(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        settings: NotifierSettings,
        readiness: Arc<Readiness>,
    ) -> Result<Notifier, NotifierError> {
        let udp = UdpTransport::bind(settings.udp_bind)
            .await
            .map_err(|error| NotifierError::Transport(format!("cannot bind {}: {error}", settings.udp_bind)))?;
        let udp = udp.with_rate(SharedRate::new(store.clone(), "udp", "datagrams", settings.udp_rate));
        let mut transports: Vec<Arc<dyn Transport>> = vec![Arc::new(udp)];
        // No SMSC configured, no SMS transport: a device reachable only by SMS gets `no_transport`.
        if let Some(smpp) = &settings.smpp {
            let sms = SmppTransport::new(smpp.clone(), store.clone());
            tracing::info!(smsc = %sms.smsc(), system_id = %smpp.system_id, tps = smpp.tps, "SMS transport configured");
            transports.push(Arc::new(sms));
        }
        // No push gateway configured, no push transport: a RegID alone reaches nothing.
        if let Some(push) = &settings.push {
            let push = PushTransport::new(push.clone(), store.clone())?;
            tracing::info!(gateway = %push.url(), "push transport configured");
            transports.push(Arc::new(push));
        }
        tracing::info!(server_id = %settings.server_id, transports = ?transports.iter().map(|transport| transport.name()).collect::<Vec<_>>(), "notifier starting");
        let handler = Dispatcher {
            store,
            retry: settings.retry,
            rules: settings.package_rules(transports.iter().map(|transport| transport.name()).collect()),
            transports,
            in_flight: InFlight::new(settings.dedup_window_millis()),
            handled: HashMap::new(),
            readiness,
        };
        let options = ConsumerOptions { batch_size: settings.batch_size, ..ConsumerOptions::default() };
        let answers = Answers { store: handler.store.clone() };
        let consumer = ConsumerLoop::start(&bus, CONSUMER_GROUP, &[Topic::Notifications], handler, options.clone())
            .await
            .map_err(NotifierError::Bus)?;
        let answers = ConsumerLoop::start(&bus, ANSWERS_CONSUMER_GROUP, &[Topic::Sessions], answers, options)
            .await
            .map_err(NotifierError::Bus)?;
        Ok(Notifier { consumer, answers })
    }

    /// Stops consuming: the batches in hand are finished (and committed if their outcomes were stored).
    pub async fn stop(self) {
        self.consumer.stop().await;
        self.answers.stop().await;
    }
}

/// The batch handler.
struct Dispatcher {
    store: Arc<dyn Store>,
    retry: RetryPolicy,
    /// One per kind of destination, found by [`Transport::name`].
    transports: Vec<Arc<dyn Transport>>,
    rules: PackageRules,
    in_flight: InFlight,
    /// Outcomes of the batch in hand by event id: a batch handled again (its outcomes could not be stored)
    /// reuses them, so nothing is sent twice. Emptied once a batch's outcomes are stored.
    handled: HashMap<String, Outcome>,
    readiness: Arc<Readiness>,
}

/// One request's outcome (or its attempt's, when it is tried again), before it is durable.
#[derive(Clone)]
struct Outcome {
    event: Event,
    /// The request's notification record with this outcome, stored with the event.
    record: NotificationRecord,
    /// The next attempt, when this one failed and is tried again: stored with the event, released at its time.
    retry: Option<ScheduledEvent>,
    transport: &'static str,
    /// `sent`, `failed`, `collapsed`, or `retrying` for an attempt that failed and is tried again.
    kind: &'static str,
    /// For a send: the device's last session id when the send was planned, to find a session that answers it
    /// before it is stored ([`check_sessions_during_dispatch`]).
    last_session_at_send: Option<Option<String>>,
}

/// What an attempt leaves in the request's record besides its outcome: the attempts that failed before it.
fn record_of(request: &NotificationRequested, earlier: Vec<NotificationAttempt>) -> NotificationRecord {
    NotificationRecord {
        request_id: request.request_id.clone(),
        device_id: request.device_id.clone(),
        requested_at: request.requested_at,
        requested_by: request.requested_by.clone(),
        request_mos: request.request_mos,
        outcome: None,
        attempts: earlier,
        ..NotificationRecord::default()
    }
}

impl Outcome {
    /// A final outcome.
    fn new(
        event: Event,
        request: &NotificationRequested,
        earlier: Vec<NotificationAttempt>,
        outcome: NotificationOutcome,
        transport: &'static str,
    ) -> Self {
        let kind = outcome.state.as_str();
        let record = NotificationRecord { outcome: Some(outcome), ..record_of(request, earlier) };
        Outcome { event, record, retry: None, transport, kind, last_session_at_send: None }
    }
}

#[async_trait]
impl BatchHandler for Dispatcher {
    async fn handle(&mut self, deliveries: &[Delivery]) -> Result<(), HandlerError> {
        let mut outcomes = Vec::new();
        for delivery in deliveries {
            if let Some(outcome) = self.handled.get(&delivery.event.id) {
                outcomes.push(outcome.clone());
                continue;
            }
            let Some(request) = plan::read_request(&delivery.event) else { continue };
            let outcome = match request {
                Ok(request) => {
                    let span = tracing::info_span!(
                        "notification",
                        device_id = %request.device_id,
                        request_id = %request.request_id,
                        attempt = request.attempt
                    );
                    self.dispatch(&request).instrument(span).await
                }
                Err(refusal) => Ok(Some(malformed(&delivery.event, &refusal))),
            };
            match outcome {
                Ok(Some(outcome)) => {
                    self.handled.insert(delivery.event.id.clone(), outcome.clone());
                    outcomes.push(outcome);
                }
                Ok(None) => {}
                Err(error) => return Err(self.unavailable(error)),
            }
        }
        if outcomes.is_empty() {
            self.handled.clear();
            return Ok(());
        }
        let sent = outcomes.iter_mut().filter_map(|outcome| {
            let last_session_before = outcome.last_session_at_send.clone()?;
            Some(SentBeforeStored { record: &mut outcome.record, last_session_before })
        });
        let answered = match check_sessions_during_dispatch(&*self.store, sent.collect()).await {
            Ok(answered) => answered,
            Err(error) => return Err(self.unavailable(error)),
        };
        let events = outcomes.iter().map(|outcome| outcome.event.clone()).chain(answered).collect();
        let notifications = outcomes.iter().map(|outcome| outcome.record.clone()).collect();
        let scheduled = outcomes.iter().filter_map(|outcome| outcome.retry.clone()).collect();
        let batch = WriteBatch { events, notifications, scheduled, ..WriteBatch::default() };
        if let Err(error) = self.store.commit(batch).await {
            return Err(self.unavailable(error));
        }
        self.handled.clear();
        self.readiness.clear(READINESS_CONDITION);
        for outcome in &outcomes {
            metrics().notifications.with_label_values(&[outcome.transport, outcome.kind]).inc();
        }
        Ok(())
    }
}

impl Dispatcher {
    /// One request (or one retry of it) to its outcome; `Ok(None)` for one whose request already has its
    /// outcome or has passed this attempt (delivered again after a replica stored its batch but died before
    /// committing the offsets, or a retry released twice); `Err` only when the store failed (the batch is handled
    /// again).
    async fn dispatch(&mut self, request: &NotificationRequested) -> Result<Option<Outcome>, StoreError> {
        let started = Instant::now();
        // The record is read for every request, not only retries: a request handled again by another replica
        // could otherwise get a second, different outcome (collapsed there, sent here).
        let record = self.store.get_notification(&request.request_id).await?;
        let earlier = match record {
            Some(record)
                if record.outcome.is_some()
                    || record.attempts.iter().any(|attempt| attempt.attempt >= request.attempt) =>
            {
                tracing::info!(state = record.state(), "request already past this attempt: nothing to do");
                return Ok(None);
            }
            Some(record) => record.attempts,
            // Past its retention (or written by a version that kept no record): served without its history.
            None => Vec::new(),
        };
        let device = self.store.get_device(&request.device_id).await?;
        let last_session = device.as_ref().and_then(|device| device.last_session_id.clone());
        let now = now_millis();
        let plan = match plan::plan(request, device.as_ref(), &self.rules, now) {
            Ok(plan) => plan,
            Err(refusal) => return Ok(Some(self.failed(request, earlier, None, &refusal, now))),
        };
        let transport = plan.destination.transport();
        match self.in_flight.admit(&request.device_id, &request.request_id, last_session.as_deref(), now) {
            Admission::Send => {}
            Admission::AlreadySent { notification_id, sent_at } => {
                let sent = sent(request, earlier, transport, notification_id, &plan, sent_at);
                return Ok(Some(Outcome { last_session_at_send: Some(last_session), ..sent }));
            }
            Admission::Collapse { into } => {
                tracing::info!(collapsed_into = %into, "notification collapsed into the one in flight");
                let event = notification_collapsed(NotificationCollapsed {
                    device_id: request.device_id.clone(),
                    request_id: request.request_id.clone(),
                    collapsed_into: into.clone(),
                    collapsed_at: now,
                });
                let outcome = NotificationOutcome {
                    state: NotificationState::Collapsed,
                    at: now,
                    transport: Some(transport.to_owned()),
                    notification_id: None,
                    reason: None,
                    detail: None,
                    collapsed_into: Some(into),
                };
                return Ok(Some(Outcome::new(event, request, earlier, outcome, transport)));
            }
        }
        let counter = plan::notification_id_counter(&self.rules.server_id, &request.device_id);
        let notification_id = plan::notification_id(self.store.next_sequence(&counter).await?);
        let package = match plan.package(notification_id, now) {
            Ok(package) => package,
            Err(refusal) => return Ok(Some(self.failed(request, earlier, Some(transport), &refusal, now))),
        };
        // The device's destinations in turn: the first send that succeeds is the outcome; one package, one id.
        let mut errors: Vec<String> = Vec::new();
        let mut any_may_pass = false;
        let mut last_transport = transport;
        for destination in std::iter::once(&plan.destination).chain(&plan.fallbacks) {
            let transport = destination.transport();
            last_transport = transport;
            let Some(sender) = self.transports.iter().find(|candidate| candidate.name() == transport).cloned() else {
                errors.push(format!("no {transport} transport is configured"));
                continue;
            };
            let dispatch = Dispatch { device_id: &request.device_id, request_id: &request.request_id, notification_id };
            match sender.send(destination, &package, &dispatch).await {
                Ok(()) => {
                    metrics().dispatch_seconds.with_label_values(&[transport]).observe(started.elapsed().as_secs_f64());
                    if !errors.is_empty() {
                        metrics().notification_fallbacks.with_label_values(&[transport]).inc();
                        tracing::info!(transport, failed = %errors.join("; "), "notification sent after a fallback");
                    }
                    let at_send = last_session.as_deref();
                    self.in_flight.sent(&request.device_id, &request.request_id, notification_id, at_send, now);
                    tracing::info!(transport, notification_id, signed = plan.secret.is_some(), "notification sent");
                    let sent = sent(request, earlier, transport, notification_id, &plan, now);
                    return Ok(Some(Outcome { last_session_at_send: Some(last_session), ..sent }));
                }
                Err(error) => {
                    tracing::warn!(%error, transport, "notification not sent");
                    any_may_pass |= error.may_pass();
                    errors.push(error.to_string());
                }
            }
        }
        let detail = errors.join("; ");
        let refusal = if any_may_pass { Refusal::Transport(detail) } else { Refusal::TransportRejected(detail) };
        Ok(Some(self.failed(request, earlier, Some(last_transport), &refusal, now)))
    }

    /// A failed attempt: the request's outcome, or, when the failure may pass and attempts are left, one attempt
    /// of it with the next scheduled.
    fn failed(
        &self,
        request: &NotificationRequested,
        earlier: Vec<NotificationAttempt>,
        transport: Option<&'static str>,
        refusal: &Refusal,
        now: Millis,
    ) -> Outcome {
        let retry_at = self.retry.next_attempt_at(&request.request_id, request.attempt, refusal, now);
        let Some(retry_at) = retry_at else {
            return failed(request, earlier, transport, refusal, now);
        };
        tracing::info!(reason = refusal.reason(), detail = %refusal, retry_at, "notification attempt failed; trying again later");
        let event = failed_event(request, transport, refusal, now, Some(retry_at));
        let mut attempts = earlier;
        attempts.push(NotificationAttempt {
            attempt: request.attempt,
            at: now,
            transport: transport.map(str::to_owned),
            reason: refusal.reason().to_owned(),
            detail: refusal.to_string(),
        });
        let record = NotificationRecord { next_attempt_at: Some(retry_at), ..record_of(request, attempts) };
        let next = NotificationRequested { attempt: request.attempt.saturating_add(1), ..request.clone() };
        let retry = ScheduledEvent { due_at: retry_at, event: notification_retry(next, retry_at) };
        Outcome {
            event,
            record,
            retry: Some(retry),
            transport: transport.unwrap_or("none"),
            kind: "retrying",
            last_session_at_send: None,
        }
    }

    fn unavailable(&self, error: StoreError) -> HandlerError {
        self.readiness.raise(READINESS_CONDITION, format!("cannot store notification outcomes: {error}"));
        HandlerError(error.to_string())
    }
}

fn sent(
    request: &NotificationRequested,
    earlier: Vec<NotificationAttempt>,
    transport: &'static str,
    notification_id: u16,
    plan: &plan::Plan,
    sent_at: Millis,
) -> Outcome {
    let event = notification_sent(NotificationSent {
        device_id: request.device_id.clone(),
        request_id: request.request_id.clone(),
        transport: transport.to_owned(),
        notification_id,
        signed: plan.secret.is_some(),
        request_mos: plan.notification.request_mos,
        sent_at,
        attempt: request.attempt,
    });
    let outcome = NotificationOutcome {
        state: NotificationState::Sent,
        at: sent_at,
        transport: Some(transport.to_owned()),
        notification_id: Some(notification_id),
        reason: None,
        detail: None,
        collapsed_into: None,
    };
    Outcome::new(event, request, earlier, outcome, transport)
}

/// `notification.failed` for this attempt of `request`; `retry_at` when another attempt follows.
fn failed_event(
    request: &NotificationRequested,
    transport: Option<&'static str>,
    refusal: &Refusal,
    now: Millis,
    retry_at: Option<Millis>,
) -> Event {
    notification_failed(NotificationFailed {
        device_id: request.device_id.clone(),
        request_id: request.request_id.clone(),
        transport: transport.map(str::to_owned),
        reason: refusal.reason().to_owned(),
        detail: refusal.to_string(),
        failed_at: now,
        attempt: request.attempt,
        retry_at,
    })
}

/// The request's outcome: failed.
fn failed(
    request: &NotificationRequested,
    earlier: Vec<NotificationAttempt>,
    transport: Option<&'static str>,
    refusal: &Refusal,
    now: Millis,
) -> Outcome {
    tracing::info!(reason = refusal.reason(), detail = %refusal, "notification failed");
    let event = failed_event(request, transport, refusal, now, None);
    let outcome = NotificationOutcome {
        state: NotificationState::Failed,
        at: now,
        transport: transport.map(str::to_owned),
        notification_id: None,
        reason: Some(refusal.reason().to_owned()),
        detail: Some(refusal.to_string()),
        collapsed_into: None,
    };
    Outcome::new(event, request, earlier, outcome, transport.unwrap_or("none"))
}

/// The outcome of an event that is not a readable request: named after the event (its key is the device id).
fn malformed(event: &Event, refusal: &Refusal) -> Outcome {
    tracing::warn!(event_id = %event.id, detail = %refusal, "malformed notification request");
    let request_id =
        event.payload.get("request_id").and_then(|id| id.as_str()).filter(|id| !id.is_empty()).unwrap_or(&event.id);
    let device_id = if event.key.is_empty() { "unknown" } else { event.key.as_str() };
    let request = NotificationRequested {
        device_id: device_id.to_owned(),
        request_id: request_id.to_owned(),
        requested_at: event.timestamp,
        requested_by: String::new(),
        request_mos: false,
        preferred_con_types: Vec::new(),
        attempt: 1,
    };
    failed(&request, Vec::new(), None, refusal, now_millis())
}
