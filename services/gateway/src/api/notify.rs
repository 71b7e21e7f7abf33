//! `POST /api/v1/devices/{devid}/notify`: ask for a Package#0 to wake the device up;
//! `POST /api/v1/notifications`: the same for a list of devices or every device a filter matches;
//! `GET /api/v1/notifications/{request_id}`: what became of a request.
//!
//! Dispatch is the notifier's job; here the request becomes a
//! `notification.requested` event on the notifications topic, keyed by the
//! device id, written through the store's outbox so it is never lost once 202 is answered
//! (`omadm_core::usecase::notify`; this handler parses and answers):
//!
//! ```text
//! {"id": "notify:IMEI:1:5f0c...", "type": "notification.requested", "schema_version": 1,
//!  "timestamp": 1700000000000, "topic": "notifications", "key": "IMEI:1",
//!  "payload": {"device_id": "IMEI:1", "request_id": "5f0c...", "requested_at": 1700000000000,
//!              "requested_by": "operator", "request_mos": true}}
//! ```
//!
//! The answer carries the event id (`id`) and the request id (`request_id`), the key of the
//! notification record the request was committed with; the notifier replaces it with the outcome.

use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::bus::relay::OutboxWaker;
use omadm_core::clock::now_millis;
use omadm_core::model::DeviceFilter;
use omadm_core::model::{NotificationRecord, NotificationState, is_request_id};
#[cfg(test)]
use omadm_core::usecase::notify::notification_event;
use omadm_core::usecase::notify::{
    DeviceSelection, NotificationRequest, NotifyError, request_notification, request_notifications,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{parse_json, read_body_limited};
use super::{checked_device_id, store_failure};
use crate::{AppState, HttpError};

/// Body of `POST .../notify`; an empty body means all defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// Ask the device to list its MOs (REQ-MOS) in its Package#1.
    #[serde(default)]
    pub req_mos: bool,
}

/// Answer of `POST .../notify`: the id of the queued event and the request's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyAccepted {
    /// The `notification.requested` event's id (`notify:<devid>:<request_id>`).
    pub id: String,
    /// The request id: `GET /api/v1/notifications/{request_id}` shows the request and its outcome.
    pub request_id: String,
}

/// Body of `POST /api/v1/notifications`: exactly one of `device_ids` and `filter`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkNotifyRequest {
    /// Notify these devices (1 to 1000 ids); ids of no registered device are listed back as `unknown`.
    #[serde(default, deserialize_with = "present")]
    pub device_ids: Option<Vec<String>>,
    /// Notify every registered device this matches (`{}`: every device).
    #[serde(default, deserialize_with = "present")]
    pub filter: Option<BulkFilter>,
    /// Ask each device to list its MOs (REQ-MOS) in its Package#1.
    #[serde(default)]
    pub req_mos: bool,
}

/// The inventory and tag filters of `GET /api/v1/devices`, as a body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    #[serde(default, deserialize_with = "present")]
    pub man: Option<String>,
    #[serde(default, rename = "mod", deserialize_with = "present")]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub fwv: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub swv: Option<String>,
    #[serde(default, rename = "devtype", deserialize_with = "present")]
    pub dev_type: Option<String>,
    /// Tags the device must all carry, key to value.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// A member that may be left out but, when given, is not null (the document says so).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Device ids one `POST /api/v1/notifications` may list.
pub const MAX_BULK_DEVICE_IDS: usize = 1000;

/// Answer of `POST /api/v1/notifications`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkNotifyAccepted {
    /// Notifications requested, one per device.
    pub requested: u64,
    /// Their request ids, the first 1000 in request order.
    pub request_ids: Vec<String>,
    /// Listed device ids of no registered device (the first 1000).
    pub unknown: Vec<String>,
    /// True when `request_ids` or `unknown` leave some out.
    pub truncated: bool,
}

/// Where a request is: `requested` until the notifier's first attempt, `retrying` while an attempt that failed
/// waits for the next, then its outcome.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStateView {
    Requested,
    Retrying,
    Sent,
    Failed,
    Collapsed,
}

/// A notification request and its outcome, as `GET /api/v1/notifications/{request_id}` shows it. The outcome
/// fields are null while the state is `requested`, and those that do not apply to the outcome stay null.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub request_id: String,
    pub device_id: String,
    pub state: NotificationStateView,
    /// Milliseconds since the epoch.
    pub requested_at: u64,
    /// Who asked (`operator`).
    pub requested_by: String,
    /// Whether the Package#0 asks the device for its MO list.
    pub request_mos: bool,
    /// When the outcome was reached (sent, failed or collapsed), in milliseconds since the epoch.
    pub outcome_at: Option<u64>,
    /// The transport that carried (or was to carry) the Package#0: `udp`.
    pub transport: Option<String>,
    /// The Package#0's NOTIFICATION-ID, when sent.
    #[schema(minimum = 0, maximum = 65535)]
    pub notification_id: Option<u16>,
    /// Why it failed: `unknown_device`, `no_address`, `transport`, ... (docs/notifier.md).
    pub reason: Option<String>,
    /// The failure in words.
    pub detail: Option<String>,
    /// The request id of the notification in flight this one collapsed into.
    pub collapsed_into: Option<String>,
    /// The attempts that failed and were tried again, oldest first (the outcome is the last attempt's).
    pub attempts: Vec<NotificationAttemptView>,
    /// When the next attempt is due, while the state is `retrying` (milliseconds since the epoch).
    pub next_attempt_at: Option<u64>,
    /// The device's first session after the Package#0 was sent (`notification.answered`); null until then.
    pub answered: Option<NotificationAnswerView>,
    /// What the transport reported of the Package#0's delivery (an SMSC's delivery receipt:
    /// `notification.delivered` or `.undelivered`); null until it does, and always for UDP.
    pub delivery: Option<NotificationDeliveryView>,
}

/// A transport's report on a sent Package#0.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDeliveryView {
    /// Whether the message reached the device.
    pub delivered: bool,
    /// The transport's word for it (SMPP `stat`: `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, ...).
    pub status: String,
    /// `sms`.
    pub transport: String,
    /// The transport's id of the message reported on (the SMSC's message_id of the push's last segment).
    pub message_id: String,
    /// When the report arrived, in milliseconds since the epoch.
    pub at: u64,
}

/// The session that answered a sent notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationAnswerView {
    pub session_id: String,
    /// When the session started, in milliseconds since the epoch.
    pub at: u64,
}

/// One failed attempt of a request that was tried again.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationAttemptView {
    /// 1 for the first.
    #[schema(minimum = 1)]
    pub attempt: u32,
    /// When it failed, in milliseconds since the epoch.
    pub at: u64,
    /// The last transport tried.
    pub transport: Option<String>,
    /// `transport_error`.
    pub reason: String,
    pub detail: String,
}

impl From<NotificationRecord> for NotificationView {
    fn from(record: NotificationRecord) -> Self {
        let outcome = record.outcome;
        let state = match outcome.as_ref().map(|outcome| outcome.state) {
            None if record.next_attempt_at.is_some() => NotificationStateView::Retrying,
            None => NotificationStateView::Requested,
            Some(NotificationState::Sent) => NotificationStateView::Sent,
            Some(NotificationState::Failed) => NotificationStateView::Failed,
            Some(NotificationState::Collapsed) => NotificationStateView::Collapsed,
        };
        let outcome = outcome.as_ref();
        NotificationView {
            request_id: record.request_id,
            device_id: record.device_id,
            state,
            requested_at: record.requested_at,
            requested_by: record.requested_by,
            request_mos: record.request_mos,
            outcome_at: outcome.map(|outcome| outcome.at),
            transport: outcome.and_then(|outcome| outcome.transport.clone()),
            notification_id: outcome.and_then(|outcome| outcome.notification_id),
            reason: outcome.and_then(|outcome| outcome.reason.clone()),
            detail: outcome.and_then(|outcome| outcome.detail.clone()),
            collapsed_into: outcome.and_then(|outcome| outcome.collapsed_into.clone()),
            attempts: record
                .attempts
                .into_iter()
                .map(|attempt| NotificationAttemptView {
                    attempt: attempt.attempt,
                    at: attempt.at,
                    transport: attempt.transport,
                    reason: attempt.reason,
                    detail: attempt.detail,
                })
                .collect(),
            next_attempt_at: record.next_attempt_at,
            answered: record
                .answered
                .map(|answer| NotificationAnswerView { session_id: answer.session_id, at: answer.at }),
            delivery: record.delivery.map(|delivery| NotificationDeliveryView {
                delivered: delivery.delivered,
                status: delivery.status,
                transport: delivery.transport,
                message_id: delivery.message_id,
                at: delivery.at,
            }),
        }
    }
}

/// Queue a DM notification (Package#0) for a device.
#[utoipa::path(post, path = "/api/v1/devices/{devid}/notify", tag = "devices",
    params(("devid" = String, Path, description = "DevID")),
    request_body(content = NotifyRequest, description = "Optional: a missing or empty body means {}"),
    responses(
        (status = 202, description = "Queued as a notification.requested event", body = NotifyAccepted),
        (status = 400, description = "Invalid body", body = super::schema::ErrorBody),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.post_notify", skip_all, fields(device_id = %device_id))]
pub(super) async fn post_notify(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let body = read_body_limited(&request, payload, state.config.max_body_bytes).await?;
    let notify: NotifyRequest =
        if body.iter().all(u8::is_ascii_whitespace) { NotifyRequest::default() } else { parse_json(&request, &body)? };
    let notification = NotificationRequest {
        device_id,
        request_mos: notify.req_mos,
        requested_by: "operator",
        preferred_con_types: &[],
        nonce: rand::random::<u128>(),
    };
    let requested =
        request_notification(&*state.store, notification, now_millis()).await.map_err(|error| match error {
            NotifyError::UnknownDevice(_) => HttpError::not_found(error.to_string()),
            NotifyError::Store { source, .. } => HttpError::from(source),
        })?;
    if let Some(relay) = request.app_data::<OutboxWaker>() {
        relay.wake();
    }
    Ok(HttpResponse::Accepted().json(NotifyAccepted { id: requested.event_id, request_id: requested.request_id }))
}

/// Queue one DM notification (Package#0) per device: the listed ones, or every device a filter matches
/// (walked page by page, never the whole fleet at once).
#[utoipa::path(post, path = "/api/v1/notifications", tag = "devices",
    request_body(content = BulkNotifyRequest, description = "Exactly one of device_ids and filter"),
    responses(
        (status = 202, description = "Queued, one notification.requested event per device", body = BulkNotifyAccepted),
        (status = 400, description = "Invalid body: neither or both of device_ids and filter, a bad device id", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.post_notifications", skip_all)]
pub(super) async fn post_notifications(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let body = read_body_limited(&request, payload, state.config.max_body_bytes).await?;
    let bulk: BulkNotifyRequest = parse_json(&request, &body)?;
    let filter;
    let selection = match (&bulk.device_ids, bulk.filter) {
        (Some(device_ids), None) => {
            if device_ids.is_empty() || device_ids.len() > MAX_BULK_DEVICE_IDS {
                return Err(HttpError::bad_request(format!(
                    "device_ids lists {} ids: 1 to {MAX_BULK_DEVICE_IDS} are taken",
                    device_ids.len()
                )));
            }
            for device_id in device_ids {
                checked_device_id(device_id)?;
            }
            DeviceSelection::Ids(device_ids)
        }
        (None, Some(given)) => {
            filter = DeviceFilter {
                man: given.man,
                model: given.model,
                fwv: given.fwv,
                swv: given.swv,
                dev_type: given.dev_type,
                tags: given.tags.into_iter().collect(),
            };
            DeviceSelection::Filter(&filter)
        }
        _ => return Err(HttpError::bad_request("give exactly one of device_ids and filter")),
    };
    let mut nonce = rand::random::<u128>;
    let outcome = request_notifications(&*state.store, selection, bulk.req_mos, "operator", now_millis(), &mut nonce)
        .await
        .map_err(|error| match error {
            NotifyError::UnknownDevice(_) => HttpError::not_found(error.to_string()),
            NotifyError::Store { source, .. } => HttpError::from(source),
        })?;
    if let Some(relay) = request.app_data::<OutboxWaker>() {
        relay.wake();
    }
    Ok(HttpResponse::Accepted().json(BulkNotifyAccepted {
        requested: outcome.requested,
        request_ids: outcome.request_ids,
        unknown: outcome.unknown,
        truncated: outcome.truncated,
    }))
}

/// A notification request and its outcome; kept 7 days after its last change.
#[utoipa::path(get, path = "/api/v1/notifications/{request_id}", tag = "devices",
    params(("request_id" = String, Path, description = "The request_id POST .../notify answered")),
    responses(
        (status = 200, description = "The request and its outcome", body = NotificationView),
        (status = 400, description = "Not a request id (32 lowercase hex digits)", body = super::schema::ErrorBody),
        (status = 404, description = "Unknown request id, or one past its retention", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.get_notification", skip_all, fields(request_id = %request_id, device_id))]
pub(super) async fn get_notification(
    state: web::Data<AppState>,
    request_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    if !is_request_id(&request_id) {
        return Err(HttpError::bad_request(format!(
            "request id {:?} is not 32 lowercase hex digits",
            request_id.as_str()
        )));
    }
    let record = state.store.get_notification(&request_id).await.map_err(store_failure("get_notification"))?;
    let Some(record) = record else {
        return Err(HttpError::not_found(format!("no notification request {:?}", request_id.as_str())));
    };
    tracing::Span::current().record("device_id", record.device_id.as_str());
    Ok(HttpResponse::Ok().json(NotificationView::from(record)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm_core::bus::Topic;

    #[test]
    fn event_shape() {
        let event = notification_event("IMEI:1", true, 1_700_000_000_000, 0xab);
        assert_eq!(event.id, "notify:IMEI:1:000000000000000000000000000000ab");
        assert_eq!(event.topic, Topic::Notifications);
        assert_eq!(event.key, "IMEI:1");
        assert_eq!(event.payload["request_mos"], true);
        assert_eq!(event.payload["requested_by"], "operator");
        assert_eq!(event.payload["device_id"], "IMEI:1");
    }
}
