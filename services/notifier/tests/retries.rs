//! Retries end to end in the embedded mode: a request whose send fails is tried again after a backoff, through
//! a scheduled `notification.retry` that the outbox relay releases at its time, until it is sent or its
//! attempts run out; every attempt has its event, and the request one outcome.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;

use omadm_core::bus::Event;
use omadm_core::model::Device;
use omadm_core::store::WriteBatch;
use omadm_notifier::{Notifier, NotifierArgs, NotifierSettings};
use omadm_runtime::ops::Readiness;
use support::*;

/// A device registered with an IPv6 notify address: the notifier's IPv4 socket cannot send there, and the
/// system says so at once (a send error that may pass, as an unreachable network does).
async fn unreachable_device(store: &dyn omadm_core::store::Store, id: &str) {
    let mut device = Device::new(id, omadm_core::auth::credentials_for(id, "omadm", "password"), 0);
    device.notify_address = Some("[::1]:2948".parse().unwrap());
    device.inventory.updated_at = Some(omadm_core::clock::now_millis());
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
}

fn retry_at(event: &Event) -> Option<u64> {
    event.payload.get("retry_at").and_then(serde_json::Value::as_u64)
}

fn attempt(event: &Event) -> u64 {
    event.payload.get("attempt").and_then(serde_json::Value::as_u64).unwrap_or(1)
}

/// Whether the request's events end in an outcome (an event without `retry_at`).
fn ended(events: Option<&Vec<Event>>) -> bool {
    events.and_then(|events| events.last()).is_some_and(|last| retry_at(last).is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_are_tried_again_after_a_backoff_until_sent_or_out_of_attempts() {
    let world = embedded().await;
    let store = &*world.store;
    unreachable_device(store, "IMEI:R1").await;
    unreachable_device(store, "IMEI:R2").await;
    let settings = NotifierSettings::resolve(&NotifierArgs {
        server_id: Some(SERVER_ID.to_owned()),
        dedup_window: Some(0),
        udp_bind: Some("127.0.0.1:0".parse().unwrap()),
        max_attempts: Some(3),
        retry_delay: Some(1),
        retry_max_delay: Some(2),
        ..NotifierArgs::default()
    })
    .unwrap();
    let readiness = Arc::new(Readiness::new());
    let notifier = Notifier::start(world.store.clone(), world.bus.clone(), settings, readiness).await.unwrap();
    let mut observer = Observer::start(&world.bus).await;
    let never = request(store, "IMEI:R1", false).await;
    let later = request(store, "IMEI:R2", false).await;

    // R2's first attempt fails; then the device registers an address that works, and the retry reaches it.
    observer.wait_until(|outcomes| outcomes.contains_key(&later)).await;
    let first = observer.outcome(&later).clone();
    assert_eq!(
        (first.event_type.as_str(), first.payload["reason"].as_str()),
        ("notification.failed", Some("transport_error"))
    );
    let first_retry_at = retry_at(&first).expect("a failure that may pass is tried again");
    assert_eq!(attempt(&first), 1);
    let waiting = store.get_notification(&later).await.unwrap().unwrap();
    assert_eq!(
        (waiting.state(), waiting.next_attempt_at, waiting.attempts.len()),
        ("retrying", Some(first_retry_at), 1)
    );
    assert!(waiting.outcome.is_none());
    let listening = ListeningDevice::register(store, "IMEI:R2", None).await;

    observer.wait_until(|outcomes| ended(outcomes.get(&never)) && ended(outcomes.get(&later))).await;
    let received = listening.receive(PATIENCE).await.expect("the retry reaches the device's new address");
    let sent = observer.outcomes[&later].last().unwrap().clone();
    assert_eq!((sent.event_type.as_str(), attempt(&sent)), ("notification.sent", 2));
    assert_eq!(received.notification.notification_id, sent.payload["notification_id"].as_u64().map(|id| id as u16));
    assert!(sent.timestamp >= first_retry_at, "the retry waited for its time");
    let record = store.get_notification(&later).await.unwrap().unwrap();
    assert_eq!((record.state(), record.attempts.len(), record.next_attempt_at), ("sent", 1, None));

    // R1 never becomes reachable: attempts 1 and 2 fail and are tried again, the third is the outcome.
    let events = observer.outcomes[&never].clone();
    let summary: Vec<(String, u64, bool)> =
        events.iter().map(|event| (event.event_type.clone(), attempt(event), retry_at(event).is_some())).collect();
    assert_eq!(
        summary,
        [
            ("notification.failed".to_owned(), 1, true),
            ("notification.failed".to_owned(), 2, true),
            ("notification.failed".to_owned(), 3, false)
        ]
    );
    for pair in events.windows(2) {
        let due = retry_at(&pair[0]).unwrap();
        assert!(pair[1].timestamp >= due, "attempt {} came before its time", attempt(&pair[1]));
        // Backoff: 1 s, then 2 s, each within a fifth either way.
        let delay = due - pair[0].timestamp;
        let nominal = 1000 << (attempt(&pair[0]) - 1);
        assert!(
            (nominal * 4 / 5..=nominal * 6 / 5).contains(&delay),
            "delay {delay} ms after attempt {}",
            attempt(&pair[0])
        );
    }
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "each attempt's event has an id of its own");
    assert!(ids.contains(format!("notification:IMEI:R1:{never}:failed").as_str()), "the outcome keeps the plain id");
    let record = store.get_notification(&never).await.unwrap().unwrap();
    assert_eq!((record.state(), record.attempts.len()), ("failed", 2));
    assert_eq!(record.outcome.unwrap().reason.as_deref(), Some("transport_error"));
    let retrying = omadm_notifier::metrics::metrics().notifications.with_label_values(&["udp", "retrying"]).get();
    assert!(retrying >= 3, "omadm_notifications_total{{outcome=\"retrying\"}} counts the attempts tried again");

    notifier.stop().await;
    world.relay.stop().await;
}
