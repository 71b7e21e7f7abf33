//! The notifier end to end in the embedded mode: the embedded store, the JSONL bus, the outbox relay, real UDP.
//!
//! A request made through the core use case reaches the bus through the outbox, the notifier sends the device a
//! WAP Push datagram that decodes into a verified Package#0, and the outcome event reaches the bus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use omadm_core::bus::{Event, Topic};
use omadm_core::clock::now_millis;
use omadm_core::store::WriteBatch;
use omadm_notifier::Notifier;
use omadm_runtime::ops::Readiness;
use support::*;

fn sent_count() -> u64 {
    omadm_notifier::metrics::metrics().notifications.with_label_values(&["udp", "sent"]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_become_verified_datagrams_and_every_request_gets_its_outcome() {
    let world = embedded().await;
    let store = &*world.store;
    let signed = ListeningDevice::register(store, "IMEI:1", Some("device secret")).await;
    let unsigned = ListeningDevice::register(store, "IMEI:2", None).await;
    let mut silent = omadm_core::model::Device::new("IMEI:3", omadm_core::auth::credentials_for("IMEI:3", "r", "p"), 0);
    silent.notify_address = None;
    store.commit(WriteBatch { devices: vec![silent], ..WriteBatch::default() }).await.unwrap();
    let gone = ListeningDevice::register(store, "IMEI:4", None).await;

    let first = request(store, &signed.id, false).await;
    let repeat = request(store, &signed.id, false).await;
    let plain = request(store, &unsigned.id, true).await;
    let no_address = request(store, "IMEI:3", false).await;
    let unknown = request(store, &gone.id, false).await;
    assert!(store.delete_device(&gone.id).await.unwrap());
    // A request event nobody could have written through the use case: the payload is not a request.
    let malformed = Event {
        id: "notify:IMEI:5:broken".to_owned(),
        event_type: "notification.requested".to_owned(),
        schema_version: 1,
        timestamp: now_millis(),
        topic: Topic::Notifications,
        key: "IMEI:5".to_owned(),
        payload: serde_json::json!({"device_id": ["not", "a", "string"]}),
    };
    store.commit(WriteBatch { events: vec![malformed], ..WriteBatch::default() }).await.unwrap();

    let sent_before = sent_count();
    let readiness = Arc::new(Readiness::new());
    let notifier =
        Notifier::start(world.store.clone(), world.bus.clone(), settings(60), readiness.clone()).await.unwrap();
    let mut observer = Observer::start(&world.bus).await;
    observer.wait_for(&[first.clone(), repeat.clone(), plain.clone(), no_address.clone(), unknown.clone()]).await;
    observer.wait_for(&["notify:IMEI:5:broken".to_owned()]).await;

    let received = signed.receive(PATIENCE).await.expect("the signed device is notified");
    assert!(received.notification.digest.is_some(), "signed with the device's AuthSecret (verified on receipt)");
    assert_eq!(received.notification.notification_id, Some(1), "the device's first NOTIFICATION-ID");
    assert!(!received.notification.request_mos, "fresh inventory, not asked");
    assert!(signed.receive(Duration::from_millis(500)).await.is_none(), "the repeat was collapsed, not sent");
    let received = unsigned.receive(PATIENCE).await.expect("the unsigned device is notified");
    assert!(received.notification.digest.is_none());
    assert!(received.notification.request_mos, "asked for REQ-MOS");

    let sent = observer.outcome(&first);
    assert_eq!(sent.event_type, "notification.sent");
    assert_eq!(sent.id, format!("notification:IMEI:1:{first}:sent"));
    assert_eq!((sent.payload["transport"].as_str(), sent.payload["signed"].as_bool()), (Some("udp"), Some(true)));
    assert_eq!(sent.payload["notification_id"], 1);
    let collapsed = observer.outcome(&repeat);
    assert_eq!(collapsed.event_type, "notification.collapsed");
    assert_eq!(collapsed.payload["collapsed_into"].as_str(), Some(first.as_str()));
    assert_eq!(observer.outcome(&plain).payload["request_mos"], true);
    let failures = [(&no_address, "no_transport"), (&unknown, "unknown_device")];
    for (request_id, reason) in failures {
        let failed = observer.outcome(request_id);
        assert_eq!(
            (failed.event_type.as_str(), failed.payload["reason"].as_str()),
            ("notification.failed", Some(reason))
        );
    }
    let broken = observer.outcome("notify:IMEI:5:broken");
    assert_eq!(broken.payload["reason"], "invalid_request");
    assert_eq!(broken.key, "IMEI:5");
    assert!(sent_count() >= sent_before + 2, "omadm_notifications_total counts the sends");

    // Each outcome landed in its request's notification record, in the batch that wrote its event.
    let record = |request_id: String| async move { store.get_notification(&request_id).await.unwrap().unwrap() };
    let first_record = record(first.clone()).await;
    assert_eq!((first_record.state(), first_record.device_id.as_str()), ("sent", "IMEI:1"));
    let outcome = first_record.outcome.unwrap();
    assert_eq!((outcome.transport.as_deref(), outcome.notification_id), (Some("udp"), Some(1)));
    assert_eq!(outcome.at, sent.payload["sent_at"].as_u64().unwrap());
    let repeat_record = record(repeat.clone()).await;
    assert_eq!(repeat_record.state(), "collapsed");
    assert_eq!(repeat_record.outcome.unwrap().collapsed_into.as_deref(), Some(first.as_str()));
    let plain_record = record(plain.clone()).await;
    assert_eq!((plain_record.state(), plain_record.request_mos), ("sent", true));
    for (request_id, reason) in failures {
        let failed = record(request_id.clone()).await;
        let outcome = failed.outcome.clone().unwrap();
        assert_eq!((failed.state(), outcome.reason.as_deref()), ("failed", Some(reason)), "{failed:?}");
        assert!(outcome.detail.is_some_and(|detail| !detail.is_empty()));
    }
    assert_eq!(readiness.verdict(), Ok(()));

    // A later request, past the window of the first, gets the next id.
    notifier.stop().await;
    let notifier = Notifier::start(world.store.clone(), world.bus.clone(), settings(0), readiness).await.unwrap();
    let later = request(store, &signed.id, false).await;
    observer.wait_for(std::slice::from_ref(&later)).await;
    assert_eq!(observer.outcome(&later).event_type, "notification.sent");
    let received = signed.receive(PATIENCE).await.unwrap();
    assert_eq!(received.notification.notification_id, Some(2));
    notifier.stop().await;
    world.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_stopped_before_its_outcomes_were_stored_loses_no_request() {
    let world = embedded().await;
    let store = &*world.store;
    let devices = [
        ListeningDevice::register(store, "IMEI:10", Some("s10")).await,
        ListeningDevice::register(store, "IMEI:11", Some("s11")).await,
    ];
    let requests = [request(store, &devices[0].id, false).await, request(store, &devices[1].id, false).await];

    // The first notifier sends, but cannot store the outcomes: its batch is never committed.
    let failing = omadm_testkit::store::with_faults(world.store.clone());
    failing.interposer().fail_next("commit", u64::MAX);
    let readiness = Arc::new(Readiness::new());
    // No dedup window, so only the batch's own memory keeps a retried batch from sending again.
    let first = Notifier::start(failing.clone(), world.bus.clone(), settings(0), readiness.clone()).await.unwrap();
    for device in &devices {
        let received = device.receive(PATIENCE).await.expect("sent before the outcome could be stored");
        assert_eq!(received.notification.notification_id, Some(1));
    }
    let raised = tokio::time::timeout(PATIENCE, async {
        while readiness.verdict().is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(raised.is_ok(), "readiness reports that outcomes cannot be stored");
    assert!(readiness.verdict().unwrap_err().starts_with("notifier: "));
    // The batch is handled again every second (the consumer loop's pause); its requests are not sent again.
    let retries_before = failing.interposer().calls("commit");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(failing.interposer().calls("commit") > retries_before, "the batch was handled again meanwhile");
    for device in &devices {
        assert!(device.receive(Duration::from_millis(200)).await.is_none(), "{}: sent once", device.id);
    }
    first.stop().await;

    // A restart gets the same requests again and sends them (next ids), with their outcomes this time.
    let second =
        Notifier::start(world.store.clone(), world.bus.clone(), settings(60), readiness.clone()).await.unwrap();
    let mut observer = Observer::start(&world.bus).await;
    observer.wait_for(&requests).await;
    for (device, request_id) in devices.iter().zip(&requests) {
        let received = device.receive(PATIENCE).await.expect("delivered by the restarted notifier");
        assert_eq!(received.notification.notification_id, Some(2));
        let outcomes = &observer.outcomes[request_id];
        assert_eq!(outcomes.len(), 1, "one outcome per request: {outcomes:?}");
        assert_eq!(outcomes[0].event_type, "notification.sent");
        assert_eq!(outcomes[0].payload["notification_id"], 2);
    }
    assert_eq!(readiness.verdict(), Ok(()), "cleared once outcomes are stored");
    second.stop().await;
    world.relay.stop().await;
}

/// A request delivered again after its outcome was stored (as when a replica stored its batch and died before
/// committing the offsets) is skipped: the device gets one Package#0 and the request keeps its one outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_delivered_again_after_its_outcome_was_stored_is_skipped() {
    use omadm_core::session::events::{NotificationRequested, notification_requested};

    let world = embedded().await;
    let store = &*world.store;
    let device = ListeningDevice::register(store, "IMEI:again", None).await;
    let notifier =
        Notifier::start(world.store.clone(), world.bus.clone(), settings(0), Arc::new(Readiness::new())).await.unwrap();
    let mut observer = Observer::start(&world.bus).await;
    let first = request(store, &device.id, false).await;
    observer.wait_for(std::slice::from_ref(&first)).await;
    assert!(device.receive(Duration::from_secs(10)).await.is_some(), "the first Package#0");

    // The same request event once more, straight onto the topic, then a new request behind it.
    let record = store.get_notification(&first).await.unwrap().unwrap();
    let again = notification_requested(NotificationRequested {
        device_id: record.device_id.clone(),
        request_id: record.request_id.clone(),
        requested_at: record.requested_at,
        requested_by: record.requested_by.clone(),
        request_mos: record.request_mos,
        preferred_con_types: Vec::new(),
        attempt: 1,
    });
    world.bus.publish(&[again]).await.unwrap();
    let behind = request(store, &device.id, false).await;
    observer.wait_for(std::slice::from_ref(&behind)).await;

    let received = device.receive_all(Duration::from_millis(500)).await;
    assert_eq!(received.len(), 1, "one Package#0 for the new request, none for the repeat: {received:?}");
    assert_eq!(observer.outcomes[&first].len(), 1, "{:#?}", observer.summary());
    let kept = store.get_notification(&first).await.unwrap().unwrap();
    assert_eq!(kept.outcome, record.outcome, "the stored outcome stands");
    notifier.stop().await;
    world.relay.stop().await;
}
