//! `POST /api/v1/devices/{devid}/notify`: ask for a Package#0 to wake the device up.
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

use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::bus::relay::OutboxWaker;
use omadm_core::clock::now_millis;
#[cfg(test)]
use omadm_core::usecase::notify::notification_event;
use omadm_core::usecase::notify::{NotificationRequest, NotifyError, request_notification};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{parse_json, read_body_limited};
use super::checked_device_id;
use crate::{AppState, HttpError};

/// Body of `POST .../notify`; an empty body means all defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// Ask the device to list its MOs (REQ-MOS) in its Package#1.
    #[serde(default)]
    pub req_mos: bool,
}

/// Answer of `POST .../notify`: the id of the queued event.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyAccepted {
    pub id: String,
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
    let id = request_notification(&*state.store, notification, now_millis()).await.map_err(|error| match error {
        NotifyError::UnknownDevice(_) => HttpError::not_found(error.to_string()),
        NotifyError::Store { source, .. } => HttpError::from(source),
    })?;
    if let Some(relay) = request.app_data::<OutboxWaker>() {
        relay.wake();
    }
    Ok(HttpResponse::Accepted().json(NotifyAccepted { id }))
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
