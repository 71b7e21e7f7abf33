//! Request a DM notification (Package#0) for a device: a `notification.requested` event in the outbox.
//!
//! Dispatch is the notifier's job; here the request becomes an event on the
//! notifications topic, keyed by the device id, written through the store's
//! outbox so it is never lost once the request is accepted (docs/events.md).

use crate::bus::Event;
use crate::clock::Millis;
use crate::metrics::metrics;
use crate::session::events::{NotificationRequested, notification_requested};
use crate::store::{Store, StoreError, WriteBatch};

/// A notification to request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRequest<'a> {
    pub device_id: &'a str,
    /// Ask the device to list its MOs (REQ-MOS) in its Package#1.
    pub request_mos: bool,
    /// Who asks, e.g. `operator`.
    pub requested_by: &'a str,
    /// PREFERRED-CON-TYPE names, highest priority first; empty: the device's own preference.
    pub preferred_con_types: &'a [String],
    /// Makes the request's id unique (random, from the caller).
    pub nonce: u128,
}

/// Why no notification was requested; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    /// A store operation failed (counted under `operation` in `omadm_store_errors_total`).
    #[error("{operation}: {source}")]
    Store { operation: &'static str, source: StoreError },
}

/// Commits the `notification.requested` event of `request` for a registered device; returns its id.
/// The caller wakes its outbox relay, if it has one, so the event leaves now.
pub async fn request_notification(
    store: &dyn Store,
    request: NotificationRequest<'_>,
    now: Millis,
) -> Result<String, NotifyError> {
    let device = store.get_device(request.device_id).await.map_err(store_error("get_device"))?;
    if device.is_none() {
        return Err(NotifyError::UnknownDevice(request.device_id.to_owned()));
    }
    let event = notification_event_by(&request, now);
    let id = event.id.clone();
    let batch = WriteBatch { events: vec![event], ..WriteBatch::default() };
    store.commit(batch).await.map_err(store_error("commit"))?;
    tracing::info!(event_id = %id, req_mos = request.request_mos, "notification requested");
    Ok(id)
}

/// The event an operator's request gives (docs/events.md); `nonce` makes each request's id unique.
pub fn notification_event(device_id: &str, req_mos: bool, now: Millis, nonce: u128) -> Event {
    let request = NotificationRequest {
        device_id,
        request_mos: req_mos,
        requested_by: "operator",
        preferred_con_types: &[],
        nonce,
    };
    notification_event_by(&request, now)
}

fn notification_event_by(request: &NotificationRequest<'_>, now: Millis) -> Event {
    notification_requested(NotificationRequested {
        device_id: request.device_id.to_owned(),
        request_id: format!("{:032x}", request.nonce),
        requested_at: now,
        requested_by: request.requested_by.to_owned(),
        request_mos: request.request_mos,
        preferred_con_types: request.preferred_con_types.to_vec(),
    })
}

fn store_error(operation: &'static str) -> impl FnOnce(StoreError) -> NotifyError {
    move |source| {
        metrics().store_errors.with_label_values(&[operation]).inc();
        NotifyError::Store { operation, source }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::sync::Arc;

    use super::*;
    use crate::bus::Topic;
    use crate::model::Device;
    use crate::store::EmbeddedStore;

    #[tokio::test]
    async fn the_event_goes_to_the_outbox_for_a_known_device_only() {
        let directory = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
        let types = ["wireless".to_owned()];
        let request = NotificationRequest {
            device_id: "IMEI:1",
            request_mos: true,
            requested_by: "campaign",
            preferred_con_types: &types,
            nonce: 0xab,
        };
        let unknown = request_notification(&*store, request.clone(), 7).await;
        assert!(matches!(unknown, Err(NotifyError::UnknownDevice(id)) if id == "IMEI:1"));
        assert!(store.outbox(0, 10).await.unwrap().is_empty());

        let device = Device::new("IMEI:1", crate::auth::credentials_for("IMEI:1", "omadm", "p"), 0);
        store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
        let id = request_notification(&*store, request, 7).await.unwrap();
        assert_eq!(id, "notify:IMEI:1:000000000000000000000000000000ab");
        let outbox = store.outbox(0, 10).await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!((outbox[0].id.as_str(), outbox[0].topic), (id.as_str(), Topic::Notifications));
        assert_eq!(outbox[0].payload["requested_by"], "campaign");
        assert_eq!(outbox[0].payload["request_mos"], true);
        assert_eq!(outbox[0].payload["preferred_con_types"], serde_json::json!(["wireless"]));
    }
}
