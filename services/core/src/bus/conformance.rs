//! The Bus conformance suite: the promises of [`Bus`] and [`Subscription`], checked against any engine.
//!
//! Each check takes a fresh bus (no events on its topics yet) and panics on
//! the first broken promise. [`crate::bus_conformance_tests!`] turns them into
//! one `#[tokio::test]` each:
//!
//! ```text
//! async fn fresh_bus() -> (Arc<dyn Bus>, Guard) { ... }   // Guard: a TempDir, a broker...
//! omadm_core::bus_conformance_tests!(fresh_bus);
//! ```
//!
//! [`corrupt_records_are_skipped_and_committed_past`] needs to write records
//! the bus would never write, so each engine's tests call it with a
//! [`RawAppender`] of their own. Nothing here depends on how fast the engine
//! is: waits are generous deadlines, never expected durations.
//!
//! Built for tests only (`cfg(test)` or the `conformance` feature, which the
//! crate's own integration tests enable through their dev-dependency).

// Test support: a broken promise is reported by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;

use super::{Bus, Delivery, Event, SCHEMA_VERSION, Subscription, Topic};
use crate::metrics::metrics;

/// The longest a check waits for deliveries it expects (a consumer group may first have to be formed).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Generates one `#[tokio::test]` per check; `$fresh` is an async fn returning
/// `(Arc<dyn Bus>, guard)`, the guard kept alive for the test (e.g. a TempDir).
#[macro_export]
macro_rules! bus_conformance_tests {
    ($fresh:path) => {
        $crate::bus_conformance_tests!(@tests $fresh;
            round_trip_keeps_every_field,
            per_key_order,
            two_groups_each_get_everything,
            commit_then_resubscribe_resumes_after_the_commit,
            an_empty_wait_returns_empty_within_the_wait,
            publish_of_many_events_completes
        );
    };
    (@tests $fresh:path; $($check:ident),+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (bus, _guard) = $fresh().await;
                $crate::bus::conformance::$check(bus).await;
            }
        )+
    };
}

/// Writes a record as it is, bypassing the bus: how an engine's test puts garbage on a topic.
#[async_trait]
pub trait RawAppender: Send + Sync {
    /// Appends `value` to `topic` under `key` (on Kafka, the partition of `key`).
    async fn append_raw(&self, topic: Topic, key: &str, value: &[u8]);
}

// ---- Fixtures -------------------------------------------------------------------------------

/// An event whose payload carries `sequence`, a newline, non-ASCII text and nesting.
pub fn event(id: &str, topic: Topic, key: &str, sequence: u64) -> Event {
    Event {
        id: id.to_owned(),
        event_type: "command.result".to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp: 1_700_000_000_000 + sequence,
        topic,
        key: key.to_owned(),
        payload: json!({
            "device_id": key,
            "sequence": sequence,
            "text": "line one\nline two é ✓",
            "nested": {"list": [1, 2.5, null, true, {"deep": "x"}], "empty": {}},
        }),
    }
}

/// Takes exactly `count` deliveries, however many batches and however long (up to [`PATIENCE`]) that needs.
pub async fn take(subscription: &mut dyn Subscription, count: usize) -> Vec<Delivery> {
    let started = Instant::now();
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        assert!(
            started.elapsed() < PATIENCE,
            "only {} of {count} deliveries within {PATIENCE:?}: {:?}",
            taken.len(),
            taken.iter().map(|delivery: &Delivery| delivery.event.id.as_str()).collect::<Vec<_>>()
        );
        let batch = subscription.next_batch(count - taken.len(), Duration::from_secs(1)).await.unwrap();
        assert!(batch.len() <= count - taken.len(), "a batch holds at most `max` deliveries");
        taken.extend(batch);
    }
    taken
}

/// Asserts that nothing more comes within `wait`.
pub async fn assert_nothing_more(subscription: &mut dyn Subscription, wait: Duration) {
    let batch = subscription.next_batch(100, wait).await.unwrap();
    let ids: Vec<&str> = batch.iter().map(|delivery| delivery.event.id.as_str()).collect();
    assert!(batch.is_empty(), "unexpected deliveries {ids:?}");
}

fn ids(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|delivery| delivery.event.id.as_str()).collect()
}

// ---- Checks ---------------------------------------------------------------------------------

/// Every topic: what is published comes back field for field, once, with a position.
pub async fn round_trip_keeps_every_field(bus: Arc<dyn Bus>) {
    let published: Vec<Event> = Topic::ALL
        .into_iter()
        .flat_map(|topic| {
            (0..2).map(move |index| event(&format!("rt-{}-{index}", topic.name()), topic, &format!("IMEI:{index}"), 7))
        })
        .collect();
    bus.publish(&published).await.unwrap();
    bus.publish(&[]).await.unwrap();

    let mut subscription = bus.subscribe("conf-round-trip", &Topic::ALL).await.unwrap();
    let deliveries = take(subscription.as_mut(), published.len()).await;
    let received: BTreeMap<&str, &Event> =
        deliveries.iter().map(|delivery| (delivery.event.id.as_str(), &delivery.event)).collect();
    assert_eq!(received.len(), published.len(), "each event once: {:?}", ids(&deliveries));
    for event in &published {
        assert_eq!(received.get(event.id.as_str()), Some(&event), "{}", event.id);
    }
    for delivery in &deliveries {
        assert!(delivery.partition >= 0 && delivery.offset >= 0, "{delivery:?}");
    }
    subscription.commit(&deliveries).await.unwrap();
    assert_nothing_more(subscription.as_mut(), Duration::from_millis(500)).await;
}

/// The events of one key come in publish order, from one partition, with increasing offsets.
pub async fn per_key_order(bus: Arc<dyn Bus>) {
    const KEYS: u64 = 8;
    const PER_KEY: u64 = 25;
    // Five publishes, each interleaving every key.
    for round in 0..5 {
        let batch: Vec<Event> = (0..PER_KEY / 5)
            .flat_map(|step| {
                let sequence = round * (PER_KEY / 5) + step;
                (0..KEYS).map(move |key| {
                    event(&format!("order-{key}-{sequence}"), Topic::Results, &format!("device-{key}"), sequence)
                })
            })
            .collect();
        bus.publish(&batch).await.unwrap();
    }
    let mut subscription = bus.subscribe("conf-order", &[Topic::Results]).await.unwrap();
    let deliveries = take(subscription.as_mut(), (KEYS * PER_KEY) as usize).await;
    let mut by_key: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for delivery in &deliveries {
        by_key.entry(delivery.event.key.as_str()).or_default().push(delivery);
    }
    assert_eq!(by_key.len(), KEYS as usize);
    for (key, deliveries) in by_key {
        let sequences: Vec<u64> =
            deliveries.iter().map(|delivery| delivery.event.payload["sequence"].as_u64().unwrap()).collect();
        assert_eq!(sequences, (0..PER_KEY).collect::<Vec<_>>(), "order of {key}");
        let partitions: BTreeSet<i32> = deliveries.iter().map(|delivery| delivery.partition).collect();
        assert_eq!(partitions.len(), 1, "{key} lives on one partition");
        assert!(deliveries.windows(2).all(|pair| pair[0].offset < pair[1].offset), "offsets of {key} increase");
    }
}

/// Two groups on the same topics each get every event; one group's commits do not move the other.
pub async fn two_groups_each_get_everything(bus: Arc<dyn Bus>) {
    let published: Vec<Event> = (0..30)
        .map(|index| {
            let topic = if index % 2 == 0 { Topic::Alerts } else { Topic::Sessions };
            event(&format!("groups-{index}"), topic, &format!("device-{}", index % 4), index)
        })
        .collect();
    bus.publish(&published).await.unwrap();
    let expected: BTreeSet<&str> = published.iter().map(|event| event.id.as_str()).collect();

    let topics = [Topic::Alerts, Topic::Sessions];
    let mut first = bus.subscribe("conf-group-a", &topics).await.unwrap();
    let mut second = bus.subscribe("conf-group-b", &topics).await.unwrap();
    let (first_deliveries, second_deliveries) =
        tokio::join!(take(first.as_mut(), published.len()), take(second.as_mut(), published.len()));
    assert_eq!(ids(&first_deliveries).into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(ids(&second_deliveries).into_iter().collect::<BTreeSet<_>>(), expected);

    first.commit(&first_deliveries).await.unwrap();
    drop(second);
    // Group b committed nothing: its next member starts over.
    let mut second_again = bus.subscribe("conf-group-b", &topics).await.unwrap();
    let again = take(second_again.as_mut(), published.len()).await;
    assert_eq!(ids(&again).into_iter().collect::<BTreeSet<_>>(), expected);
    assert_nothing_more(first.as_mut(), Duration::from_millis(500)).await;
}

/// A new member of a group starts after the group's last commit; what was delivered but not committed comes again.
pub async fn commit_then_resubscribe_resumes_after_the_commit(bus: Arc<dyn Bus>) {
    let key = "IMEI:resume";
    let published: Vec<Event> =
        (0..10).map(|index| event(&format!("resume-{index}"), Topic::Notifications, key, index)).collect();
    bus.publish(&published).await.unwrap();
    let all_ids: Vec<String> = published.iter().map(|event| event.id.clone()).collect();

    let mut first = bus.subscribe("conf-resume", &[Topic::Notifications]).await.unwrap();
    let deliveries = take(first.as_mut(), 10).await;
    assert_eq!(ids(&deliveries), all_ids, "one key: publish order");
    // Processed the first six only: committing the sixth commits the five before it too.
    first.commit(std::slice::from_ref(&deliveries[5])).await.unwrap();
    drop(first);

    let mut second = bus.subscribe("conf-resume", &[Topic::Notifications]).await.unwrap();
    let again = take(second.as_mut(), 4).await;
    assert_eq!(ids(&again), all_ids[6..], "the uncommitted ones, in order");
    assert_nothing_more(second.as_mut(), Duration::from_millis(500)).await;
    // An older delivery committed after a newer one does not move the group back.
    second.commit(&again).await.unwrap();
    second.commit(std::slice::from_ref(&again[0])).await.unwrap();
    drop(second);

    let later =
        vec![event("resume-10", Topic::Notifications, key, 10), event("resume-11", Topic::Notifications, key, 11)];
    bus.publish(&later).await.unwrap();
    let mut third = bus.subscribe("conf-resume", &[Topic::Notifications]).await.unwrap();
    let fresh = take(third.as_mut(), 2).await;
    assert_eq!(ids(&fresh), ["resume-10", "resume-11"], "only what came after the commit");
    assert_nothing_more(third.as_mut(), Duration::from_millis(500)).await;
}

/// With nothing to deliver, `next_batch` waits about `wait` and returns an empty batch; an event then comes.
pub async fn an_empty_wait_returns_empty_within_the_wait(bus: Arc<dyn Bus>) {
    let mut subscription = bus.subscribe("conf-empty", &[Topic::Campaigns]).await.unwrap();
    for wait in [Duration::from_millis(300), Duration::from_millis(50), Duration::ZERO] {
        let started = Instant::now();
        let batch = subscription.next_batch(10, wait).await.unwrap();
        let elapsed = started.elapsed();
        assert!(batch.is_empty(), "{batch:?}");
        assert!(elapsed + Duration::from_millis(20) >= wait, "returned after {elapsed:?}, before the wait of {wait:?}");
        assert!(elapsed < wait + Duration::from_secs(2), "returned after {elapsed:?} for a wait of {wait:?}");
    }
    let arrived = event("empty-then-one", Topic::Campaigns, "campaign-1", 1);
    bus.publish(std::slice::from_ref(&arrived)).await.unwrap();
    let deliveries = take(subscription.as_mut(), 1).await;
    assert_eq!(deliveries[0].event, arrived);
    // A max of 0 takes nothing, even with an event waiting.
    bus.publish(&[event("empty-then-two", Topic::Campaigns, "campaign-1", 2)]).await.unwrap();
    assert!(subscription.next_batch(0, Duration::from_millis(100)).await.unwrap().is_empty());
}

/// 5,000 events in one publish are all acknowledged, then all consumed once; prints the rates.
pub async fn publish_of_many_events_completes(bus: Arc<dyn Bus>) {
    const EVENTS: u64 = 5_000;
    let events: Vec<Event> = (0..EVENTS)
        .map(|index| event(&format!("many-{index}"), Topic::Results, &format!("device-{}", index % 500), index))
        .collect();
    let started = Instant::now();
    bus.publish(&events).await.unwrap();
    let elapsed = started.elapsed();
    println!(
        "published {EVENTS} events in one call in {:.3} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    // Smaller publishes, as the outbox relay makes them.
    let started = Instant::now();
    for chunk in events.chunks(500) {
        let again: Vec<Event> =
            chunk.iter().map(|event| Event { id: format!("{}-again", event.id), ..event.clone() }).collect();
        bus.publish(&again).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "published {EVENTS} events in calls of 500 in {:.3} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let mut subscription = bus.subscribe("conf-many", &[Topic::Results]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 2 * EVENTS as usize).await;
    let elapsed = started.elapsed();
    println!(
        "consumed {} events in {:.3} s (joining the group included): {:.0} events/s",
        deliveries.len(),
        elapsed.as_secs_f64(),
        deliveries.len() as f64 / elapsed.as_secs_f64()
    );
    let distinct: BTreeSet<&str> = deliveries.iter().map(|delivery| delivery.event.id.as_str()).collect();
    assert_eq!(distinct.len(), 2 * EVENTS as usize, "each event once");
    subscription.commit(&deliveries).await.unwrap();
}

/// Records that are not events of their topic are counted, skipped and committed past, never stopping the group,
/// never costing it an event. Uses the campaigns topic: the only check that puts corrupt records there.
pub async fn corrupt_records_are_skipped_and_committed_past(bus: Arc<dyn Bus>, raw: &dyn RawAppender) {
    let key = "campaign-corrupt";
    let corrupt = || metrics().bus_corrupt_records.with_label_values(&["campaigns"]).get();
    let corrupt_before = corrupt();
    let first = event("corrupt-e1", Topic::Campaigns, key, 1);
    let second = event("corrupt-e2", Topic::Campaigns, key, 2);
    // Another topic's event on this one is not an event of this topic either.
    let misplaced = serde_json::to_vec(&event("corrupt-misplaced", Topic::Alerts, key, 9)).unwrap();

    raw.append_raw(Topic::Campaigns, key, b"not json at all").await;
    bus.publish(std::slice::from_ref(&first)).await.unwrap();
    raw.append_raw(Topic::Campaigns, key, &misplaced).await;
    raw.append_raw(Topic::Campaigns, key, br#"{"id":"half an event"}"#).await;
    bus.publish(std::slice::from_ref(&second)).await.unwrap();

    let mut subscription = bus.subscribe("conf-corrupt", &[Topic::Campaigns]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 2).await;
    assert_eq!(ids(&deliveries), ["corrupt-e1", "corrupt-e2"]);
    assert_eq!(corrupt() - corrupt_before, 3, "each corrupt record counted once");
    // Committing the first event commits past the two corrupt records after it, not past the second event.
    subscription.commit(std::slice::from_ref(&deliveries[0])).await.unwrap();
    drop(subscription);

    let mut subscription = bus.subscribe("conf-corrupt", &[Topic::Campaigns]).await.unwrap();
    let again = take(subscription.as_mut(), 1).await;
    assert_eq!(ids(&again), ["corrupt-e2"]);
    assert_nothing_more(subscription.as_mut(), Duration::from_millis(500)).await;
    assert_eq!(corrupt() - corrupt_before, 3, "committed past: not read again");
    subscription.commit(&again).await.unwrap();

    // A corrupt record with nothing uncommitted before it is committed past at once.
    raw.append_raw(Topic::Campaigns, key, b"\xff\xfe not utf-8").await;
    let started = Instant::now();
    while corrupt() - corrupt_before < 4 {
        assert!(started.elapsed() < PATIENCE, "the lone corrupt record was not read");
        assert_nothing_more(subscription.as_mut(), Duration::from_millis(200)).await;
    }
    drop(subscription);
    let third = event("corrupt-e3", Topic::Campaigns, key, 3);
    bus.publish(std::slice::from_ref(&third)).await.unwrap();
    let mut subscription = bus.subscribe("conf-corrupt", &[Topic::Campaigns]).await.unwrap();
    let last = take(subscription.as_mut(), 1).await;
    assert_eq!(ids(&last), ["corrupt-e3"]);
    assert_eq!(corrupt() - corrupt_before, 4, "the lone corrupt record was committed past");
}
