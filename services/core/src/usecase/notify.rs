//! Request a DM notification (Package#0) for a device: a `notification.requested` event in the outbox.
//!
//! Dispatch is the notifier's job; here the request becomes an event on the
//! notifications topic, keyed by the device id, written through the store's
//! outbox so it is never lost once the request is accepted (docs/events.md),
//! and a notification record (state `requested`) in the same commit, which the
//! notifier's outcome later replaces (docs/notifier.md).

use crate::bus::Event;
use crate::clock::Millis;
use crate::metrics::metrics;
use crate::model::{DeviceFilter, NotificationRecord};
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

/// What a committed request is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The `notification.requested` event's id (`notify:<device id>:<request id>`).
    pub event_id: String,
    /// The key of its notification record (`Store::get_notification`).
    pub request_id: String,
}

/// Commits the `notification.requested` event of `request` for a registered device, with its notification
/// record. The caller wakes its outbox relay, if it has one, so the event leaves now.
pub async fn request_notification(
    store: &dyn Store,
    request: NotificationRequest<'_>,
    now: Millis,
) -> Result<Requested, NotifyError> {
    let device = store.get_device(request.device_id).await.map_err(store_error("get_device"))?;
    if device.is_none() {
        return Err(NotifyError::UnknownDevice(request.device_id.to_owned()));
    }
    let mut pending = PendingRequests::default();
    let requested = pending.add(&request, now);
    pending.commit(store).await?;
    Ok(requested)
}

/// Requests built but not committed yet: their events and records, in request order.
#[derive(Default)]
struct PendingRequests {
    batch: WriteBatch,
    requested: Vec<Requested>,
}

impl PendingRequests {
    /// Adds `request`; what it will be known by once committed.
    fn add(&mut self, request: &NotificationRequest<'_>, now: Millis) -> Requested {
        let requested = add_request(&mut self.batch, request, now);
        self.requested.push(requested.clone());
        requested
    }

    fn len(&self) -> usize {
        self.requested.len()
    }

    /// One commit of every pending request (events and records together); what was committed, in order.
    async fn commit(&mut self, store: &dyn Store) -> Result<Vec<Requested>, NotifyError> {
        if self.requested.is_empty() {
            return Ok(Vec::new());
        }
        store.commit(std::mem::take(&mut self.batch)).await.map_err(store_error("commit"))?;
        let committed = std::mem::take(&mut self.requested);
        metrics().notifications_requested.inc_by(committed.len() as u64);
        for requested in &committed {
            tracing::info!(event_id = %requested.event_id, request_id = %requested.request_id, "notification requested");
        }
        Ok(committed)
    }
}

/// Adds `request`'s `notification.requested` event and its notification record to `batch`, for a caller that
/// commits them with writes of its own (a campaign starting a device); the device must be registered.
pub fn add_request(batch: &mut WriteBatch, request: &NotificationRequest<'_>, now: Millis) -> Requested {
    let event = notification_event_by(request, now);
    let request_id = request_id_of(request.nonce);
    batch.notifications.push(NotificationRecord {
        request_id: request_id.clone(),
        device_id: request.device_id.to_owned(),
        requested_at: now,
        requested_by: request.requested_by.to_owned(),
        request_mos: request.request_mos,
        outcome: None,
        ..NotificationRecord::default()
    });
    let requested = Requested { event_id: event.id.clone(), request_id };
    batch.events.push(event);
    requested
}

/// Which devices one bulk request notifies.
#[derive(Debug, Clone, Copy)]
pub enum DeviceSelection<'a> {
    /// These ids; unknown ones are reported, not requested.
    Ids(&'a [String]),
    /// Every registered device the filter matches, walked page by page.
    Filter(&'a DeviceFilter),
}

/// Request ids (and unknown device ids) a bulk answer lists at most; the count covers them all.
pub const BULK_LISTED_IDS: usize = 1000;

/// Devices read per `list_devices` page while walking a filter: what a bulk request holds in memory.
const BULK_PAGE: usize = 500;

/// What a bulk request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkRequested {
    /// Notifications requested (one per device).
    pub requested: u64,
    /// The first [`BULK_LISTED_IDS`] of their request ids, in request order.
    pub request_ids: Vec<String>,
    /// Listed ids of no registered device (at most [`BULK_LISTED_IDS`]).
    pub unknown: Vec<String>,
    /// True when more was requested (or unknown) than is listed.
    pub truncated: bool,
}

impl BulkRequested {
    fn add(&mut self, requested: Requested) {
        self.requested += 1;
        if self.request_ids.len() < BULK_LISTED_IDS {
            self.request_ids.push(requested.request_id);
        } else {
            self.truncated = true;
        }
    }

    fn add_unknown(&mut self, device_id: &str) {
        if self.unknown.len() < BULK_LISTED_IDS {
            self.unknown.push(device_id.to_owned());
        } else {
            self.truncated = true;
        }
    }
}

/// Requests committed per store write in a bulk request: one round trip (and, on the embedded store, one fsync)
/// for this many devices instead of one each.
const BULK_COMMIT: usize = 100;

/// Requests one notification per selected device, each with its event and record as [`request_notification`]
/// writes them, [`BULK_COMMIT`] to a commit; a filter is walked [`BULK_PAGE`] devices at a time, so the fleet is
/// never in memory. A store failure stops the walk: the requests committed before it stand (their events are in
/// the outbox), those of the failed commit were not made.
pub async fn request_notifications(
    store: &dyn Store,
    selection: DeviceSelection<'_>,
    request_mos: bool,
    requested_by: &str,
    now: Millis,
    nonce: &mut (dyn FnMut() -> u128 + Send),
) -> Result<BulkRequested, NotifyError> {
    let mut outcome = BulkRequested::default();
    let mut pending = PendingRequests::default();
    fn one<'a>(device_id: &'a str, request_mos: bool, requested_by: &'a str, nonce: u128) -> NotificationRequest<'a> {
        NotificationRequest { device_id, request_mos, requested_by, preferred_con_types: &[], nonce }
    }
    match selection {
        DeviceSelection::Ids(device_ids) => {
            for device_id in device_ids {
                let device = store.get_device(device_id).await.map_err(store_error("get_device"))?;
                if device.is_none() {
                    outcome.add_unknown(device_id);
                    continue;
                }
                pending.add(&one(device_id, request_mos, requested_by, nonce()), now);
                if pending.len() >= BULK_COMMIT {
                    pending.commit(store).await?.into_iter().for_each(|requested| outcome.add(requested));
                }
            }
        }
        DeviceSelection::Filter(filter) => {
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .list_devices(filter, after.as_deref(), BULK_PAGE)
                    .await
                    .map_err(store_error("list_devices"))?;
                // The page has just read these devices: one deleted since gets a request the notifier fails as
                // unknown_device, as one deleted after its request would.
                for device in &page.devices {
                    pending.add(&one(&device.id, request_mos, requested_by, nonce()), now);
                    if pending.len() >= BULK_COMMIT {
                        pending.commit(store).await?.into_iter().for_each(|requested| outcome.add(requested));
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
    }
    pending.commit(store).await?.into_iter().for_each(|requested| outcome.add(requested));
    tracing::info!(requested = outcome.requested, unknown = outcome.unknown.len(), "notifications requested in bulk");
    Ok(outcome)
}

fn request_id_of(nonce: u128) -> String {
    format!("{nonce:032x}")
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
        request_id: request_id_of(request.nonce),
        requested_at: now,
        requested_by: request.requested_by.to_owned(),
        request_mos: request.request_mos,
        preferred_con_types: request.preferred_con_types.to_vec(),
        attempt: 1,
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
        // Now, not a made-up time: a record past its retention is not read back.
        let now = crate::clock::now_millis();
        let requested = request_notification(&*store, request, now).await.unwrap();
        let id = requested.event_id;
        assert_eq!(id, "notify:IMEI:1:000000000000000000000000000000ab");
        assert_eq!(requested.request_id, "000000000000000000000000000000ab");
        let record = store.get_notification(&requested.request_id).await.unwrap().unwrap();
        assert_eq!((record.state(), record.device_id.as_str(), record.requested_at), ("requested", "IMEI:1", now));
        assert_eq!((record.requested_by.as_str(), record.request_mos), ("campaign", true));
        let outbox = store.outbox(0, 10).await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!((outbox[0].id.as_str(), outbox[0].topic), (id.as_str(), Topic::Notifications));
        assert_eq!(outbox[0].payload["requested_by"], "campaign");
        assert_eq!(outbox[0].payload["request_mos"], true);
        assert_eq!(outbox[0].payload["preferred_con_types"], serde_json::json!(["wireless"]));
    }

    #[test]
    fn a_bulk_answer_lists_a_bounded_number_of_ids_and_counts_them_all() {
        let mut outcome = BulkRequested::default();
        for index in 0..BULK_LISTED_IDS + 2 {
            outcome.add(Requested { event_id: String::new(), request_id: index.to_string() });
        }
        assert_eq!((outcome.requested, outcome.request_ids.len()), ((BULK_LISTED_IDS + 2) as u64, BULK_LISTED_IDS));
        assert!(outcome.truncated);
        assert_eq!(outcome.request_ids.last().map(String::as_str), Some("999"), "the first ones, in order");
        let mut unknown = BulkRequested::default();
        for _ in 0..BULK_LISTED_IDS {
            unknown.add_unknown("x");
        }
        assert!(!unknown.truncated, "exactly the bound is not truncated");
        unknown.add_unknown("y");
        assert_eq!((unknown.unknown.len(), unknown.truncated), (BULK_LISTED_IDS, true));
    }

    #[tokio::test]
    async fn a_bulk_filter_walks_every_page_and_a_list_reports_unknown_ids() {
        let directory = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
        let devices: Vec<Device> = (0..BULK_PAGE + 3)
            .map(|index| {
                let id = format!("IMEI:{index:04}");
                let mut device = Device::new(&id, crate::auth::credentials_for(&id, "omadm", "p"), 0);
                if index % 2 == 0 {
                    device.tags.insert("fleet".to_owned(), "even".to_owned());
                }
                device
            })
            .collect();
        store.commit(WriteBatch { devices, ..WriteBatch::default() }).await.unwrap();
        let mut counter = 0u128;
        let mut nonce = move || {
            counter += 1;
            counter
        };
        let now = crate::clock::now_millis();
        let filter = DeviceFilter { tags: vec![("fleet".to_owned(), "even".to_owned())], ..DeviceFilter::default() };
        let even = request_notifications(&*store, DeviceSelection::Filter(&filter), false, "operator", now, &mut nonce)
            .await
            .unwrap();
        assert_eq!(even.requested, (BULK_PAGE as u64 + 3).div_ceil(2), "past the first page");
        for request_id in &even.request_ids {
            assert!(store.get_notification(request_id).await.unwrap().is_some(), "every commit of the walk stored");
        }
        let last = store.get_notification(even.request_ids.last().unwrap()).await.unwrap().unwrap();
        assert_eq!(last.device_id, format!("IMEI:{:04}", BULK_PAGE + 2));
        let ids = ["IMEI:0001".to_owned(), "IMEI:none".to_owned()];
        let listed = request_notifications(&*store, DeviceSelection::Ids(&ids), true, "operator", now, &mut nonce)
            .await
            .unwrap();
        assert_eq!((listed.requested, listed.unknown.as_slice()), (1, &["IMEI:none".to_owned()][..]));
        assert!(store.get_notification(&listed.request_ids[0]).await.unwrap().unwrap().request_mos);
    }
}
