//! The outbox relay between the real embedded store and the real JSONL bus.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use omadm_core::bus::relay::{OutboxRelay, RelayConfig};
use omadm_core::bus::{Bus, Event, JsonlBus, Topic};
use omadm_core::clock::now_millis;
use omadm_core::store::conformance::event;
use omadm_core::store::{EmbeddedStore, ScheduledEvent, Store, WriteBatch};

fn read_events(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

async fn store_and_bus(directory: &Path) -> (Arc<dyn Store>, Arc<JsonlBus>) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&directory.join("store")).await.unwrap());
    let bus = Arc::new(JsonlBus::open(&directory.join("events"), "omadm.").await.unwrap());
    (store, bus)
}

fn quick_config() -> RelayConfig {
    RelayConfig {
        batch_size: 7,
        poll_interval: Duration::from_secs(3_600),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

/// Polls `condition` for up to five seconds.
async fn eventually(what: &str, condition: impl AsyncFnMut() -> bool) {
    omadm_testkit::wait::eventually(what, Duration::from_secs(5), condition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_publishes_every_committed_event_as_committed_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    let mut committed = Vec::new();
    for batch in 0..6 {
        let events: Vec<Event> = (0..5)
            .map(|index| {
                let topic = if index % 2 == 0 { Topic::Results } else { Topic::Alerts };
                event(&format!("e-{batch}-{index}"), topic, &format!("IMEI:{batch}"))
            })
            .collect();
        committed.extend(events.clone());
        store.commit(WriteBatch { events, ..WriteBatch::default() }).await.unwrap();
    }
    assert_eq!(store.outbox_len().await.unwrap(), 30);

    // An hour-long interval: only drain can have moved them.
    let relay = OutboxRelay::spawn_with(store.clone(), bus.clone() as Arc<dyn Bus>, quick_config());
    relay.drain().await.unwrap();
    let on_topic = |topic: Topic| committed.iter().filter(|event| event.topic == topic).cloned().collect::<Vec<_>>();
    assert_eq!(read_events(bus.topic_path(Topic::Results).unwrap()), on_topic(Topic::Results));
    assert_eq!(read_events(bus.topic_path(Topic::Alerts).unwrap()), on_topic(Topic::Alerts));
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert!(store.outbox(0, 10).await.unwrap().is_empty());
    relay.drain().await.unwrap();
    assert_eq!(
        read_events(bus.topic_path(Topic::Results).unwrap()),
        on_topic(Topic::Results),
        "nothing published twice"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poke_or_the_interval_moves_new_events() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    let relay = OutboxRelay::spawn_with(store.clone(), bus.clone() as Arc<dyn Bus>, quick_config());
    let results = bus.topic_path(Topic::Results).unwrap().to_owned();

    let poked = event("poked", Topic::Results, "IMEI:1");
    store.commit(WriteBatch { events: vec![poked.clone()], ..WriteBatch::default() }).await.unwrap();
    relay.waker().wake_shard(store.outbox_shard_of("IMEI:1"));
    eventually("the poked event", async || read_events(&results) == vec![poked.clone()]).await;
    eventually("an empty outbox", async || store.outbox_len().await.unwrap() == 0).await;
    relay.stop().await;

    let relay = OutboxRelay::spawn_with(
        store.clone(),
        bus.clone() as Arc<dyn Bus>,
        RelayConfig { poll_interval: Duration::from_millis(20), ..quick_config() },
    );
    let ticked = event("ticked", Topic::Results, "IMEI:1");
    store.commit(WriteBatch { events: vec![ticked.clone()], ..WriteBatch::default() }).await.unwrap();
    eventually("the event found by the interval", async || {
        read_events(&results) == vec![poked.clone(), ticked.clone()]
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn stop_ends_the_task_and_later_events_wait_in_the_outbox() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    let relay = OutboxRelay::spawn(store.clone(), bus as Arc<dyn Bus>);
    let waker = relay.waker();
    relay.stop().await;
    // The task is gone; poking it is harmless and events simply wait.
    store
        .commit(WriteBatch { events: vec![event("late", Topic::Sessions, "IMEI:1")], ..WriteBatch::default() })
        .await
        .unwrap();
    waker.wake();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.outbox_len().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_is_published_after_its_time_and_not_before() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    let config = RelayConfig {
        poll_interval: Duration::from_millis(20),
        release_interval: Duration::from_millis(50),
        ..quick_config()
    };
    let relay = OutboxRelay::spawn_with(store.clone(), bus.clone() as Arc<dyn Bus>, config);
    let notifications = bus.topic_path(Topic::Notifications).unwrap().to_owned();
    let due_at = now_millis() + 1_500;
    let later = event("later", Topic::Notifications, "IMEI:7");
    let now = event("now", Topic::Notifications, "IMEI:7");
    let batch = WriteBatch {
        events: vec![now.clone()],
        scheduled: vec![ScheduledEvent { due_at, event: later.clone() }],
        ..WriteBatch::default()
    };
    store.commit(batch).await.unwrap();
    eventually("the event of the batch", async || read_events(&notifications) == vec![now.clone()]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read_events(&notifications), vec![now.clone()], "the scheduled event waits for its time");
    eventually("the scheduled event", async || read_events(&notifications) == vec![now.clone(), later.clone()]).await;
    assert!(now_millis() >= due_at, "published at or after its time");
    // The relay acknowledges the outbox after the bus took the event: the ack may land just after the read.
    eventually("the outbox emptied", async || store.outbox_len().await.unwrap() == 0).await;
    relay.stop().await;
}
