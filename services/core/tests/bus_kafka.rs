//! The Kafka engine against the Bus conformance suite and its own promises, on a real Kafka-protocol broker.
//!
//! Each test starts its own tansu on a free loopback port (omadm-testkit's `kafka`),
//! or uses `OMADM_TEST_KAFKA=host:9092` (Apache Kafka, say) under topic names of its own.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod session_support;
mod support {
    pub mod event_schemas;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omadm_core::bus::conformance::{self, PATIENCE, RawAppender, take};
use omadm_core::bus::{Bus, BusError, BusOptions, Event, KafkaBus, Topic};
use omadm_core::metrics::metrics;
use omadm_core::session::events::{
    ContentUploaded, NotificationCollapsed, NotificationFailed, NotificationRequested, NotificationSent,
    content_uploaded, notification_collapsed, notification_failed, notification_requested, notification_sent,
};
use omadm_testkit::kafka::{KafkaBroker, unique_prefix};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use support::event_schemas::{check_documented_value, documented, events_of_sessions};

/// Three partitions (so that order per key is tested across several) and what the broker needs.
fn options(broker: &KafkaBroker, prefix: &str) -> BusOptions {
    BusOptions {
        topic_prefix: prefix.to_owned(),
        partitions: 3,
        kafka_settings: broker.client_settings(),
        ..BusOptions::default()
    }
}

/// A bus under a prefix of its own, on a broker of its own (unless external).
async fn fresh_bus() -> (Arc<dyn Bus>, KafkaBroker) {
    let broker = KafkaBroker::start();
    let bus = omadm_core::bus::open_with(&broker.url(), &options(&broker, &unique_prefix())).await.unwrap();
    (bus, broker)
}

mod suite {
    omadm_core::bus_conformance_tests!(super::fresh_bus);
}

/// Writes raw records with the partitioner the bus uses, so a key lands where the bus puts its events.
struct RawProducer {
    producer: FutureProducer,
    prefix: String,
}

#[async_trait]
impl RawAppender for RawProducer {
    async fn append_raw(&self, topic: Topic, key: &str, value: &[u8]) {
        let topic = format!("{}{}", self.prefix, topic.name());
        let record = FutureRecord::to(&topic).key(key).payload(value);
        self.producer.send(record, Duration::from_secs(30)).await.map_err(|(error, _)| error).unwrap();
    }
}

fn raw_producer(broker: &KafkaBroker, prefix: &str) -> RawProducer {
    let producer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    RawProducer { producer, prefix: prefix.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_are_skipped_and_committed_past() {
    let broker = KafkaBroker::start();
    let prefix = unique_prefix();
    let bus = omadm_core::bus::open_with(&broker.url(), &options(&broker, &prefix)).await.unwrap();
    conformance::corrupt_records_are_skipped_and_committed_past(bus, &raw_producer(&broker, &prefix)).await;
}

/// Reads every record of `topics` with a plain consumer of its own (not the bus's), up to `count`.
async fn read_raw(broker: &KafkaBroker, topics: &[String], count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", format!("raw-{}", unique_prefix()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).unwrap();
    let started = Instant::now();
    let mut messages = Vec::new();
    while messages.len() < count {
        let remaining = PATIENCE.saturating_sub(started.elapsed());
        let message = tokio::time::timeout(remaining, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records", messages.len()))
            .unwrap();
        messages.push(message.detach());
    }
    tokio::task::spawn_blocking(move || drop(consumer)).await.unwrap();
    messages
}

/// What reaches Kafka: the JSONL line as value, the event key, id/type/schema_version headers, the
/// event's timestamp, the documented topic; and every value passes the JSON Schemas of docs/events.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_documented_events_with_key_headers_and_timestamp() {
    let broker = KafkaBroker::start();
    let prefix = unique_prefix();
    let bus = KafkaBus::connect(broker.brokers(), &options(&broker, &prefix)).await.unwrap();
    let mut events = events_of_sessions();
    events.push(content_uploaded(ContentUploaded {
        device_id: "IMEI:1".to_owned(),
        path: "uploads/IMEI%3A1/devinfo".to_owned(),
        method: "PUT".to_owned(),
        content_type: "application/dmmo+json".to_owned(),
        size: 12,
        stored_at: 1_700_000_000_000,
    }));
    events.push(notification_requested(NotificationRequested {
        device_id: "IMEI:1".to_owned(),
        request_id: "r-1".to_owned(),
        requested_at: 1_700_000_000_000,
        requested_by: "operator".to_owned(),
        request_mos: false,
        preferred_con_types: vec!["mobile".to_owned()],
        attempt: 1,
    }));
    events.push(notification_sent(NotificationSent {
        device_id: "IMEI:1".to_owned(),
        request_id: "r-1".to_owned(),
        transport: "udp".to_owned(),
        notification_id: 1,
        signed: true,
        request_mos: false,
        sent_at: 1_700_000_000_001,
        attempt: 1,
    }));
    events.push(notification_failed(NotificationFailed {
        device_id: "IMEI:1".to_owned(),
        request_id: "r-2".to_owned(),
        transport: None,
        reason: "unknown_device".to_owned(),
        detail: "no device".to_owned(),
        failed_at: 1_700_000_000_002,
        attempt: 1,
        retry_at: None,
    }));
    events.push(notification_collapsed(NotificationCollapsed {
        device_id: "IMEI:1".to_owned(),
        request_id: "r-3".to_owned(),
        collapsed_into: "r-1".to_owned(),
        collapsed_at: 1_700_000_000_003,
    }));
    let types: std::collections::BTreeSet<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types.len(), 9, "every event type: {types:?}");
    bus.publish(&events).await.unwrap();

    let topics: Vec<String> = Topic::ALL.iter().map(|topic| bus.topic_name(*topic)).collect();
    let messages = read_raw(&broker, &topics, events.len()).await;
    let by_id: BTreeMap<&str, &Event> = events.iter().map(|event| (event.id.as_str(), event)).collect();
    let documented = documented();
    for message in &messages {
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        check_documented_value(&documented, &value);
        let event = by_id[value["id"].as_str().unwrap()];
        assert_eq!(message.payload().unwrap(), serde_json::to_vec(event).unwrap(), "the value is the JSONL line");
        assert_eq!(message.topic(), format!("{prefix}{}", event.topic.name()));
        assert_eq!(message.key(), Some(event.key.as_bytes()));
        assert_eq!(message.timestamp().to_millis(), Some(event.timestamp as i64));
        let headers = message.headers().unwrap();
        let header_values: BTreeMap<&str, &[u8]> =
            headers.iter().map(|header| (header.key, header.value.unwrap_or_default())).collect();
        let expected = BTreeMap::from([
            ("id", event.id.as_bytes()),
            ("type", event.event_type.as_bytes()),
            ("schema_version", b"1".as_slice()),
        ]);
        assert_eq!(header_values, expected);
    }
    let distinct: std::collections::BTreeSet<String> = messages
        .iter()
        .map(|message| {
            serde_json::from_slice::<Value>(message.payload().unwrap()).unwrap()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(distinct.len(), events.len(), "each event once");
}

/// Topics are created at start with the configured partitions; opening again over existing topics is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_the_configured_partitions() {
    let broker = KafkaBroker::start();
    let prefix = unique_prefix();
    let options = BusOptions { partitions: 4, client_id: "omadm-test".to_owned(), ..options(&broker, &prefix) };
    let bus = KafkaBus::connect(broker.brokers(), &options).await.unwrap();
    let again = KafkaBus::connect(broker.brokers(), &options).await.unwrap();
    again.publish(&[conformance::event("created-1", Topic::Alerts, "IMEI:1", 1)]).await.unwrap();

    let brokers = broker.brokers().to_owned();
    let names: Vec<String> = Topic::ALL.iter().map(|topic| bus.topic_name(*topic)).collect();
    let partitions = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let metadata = client.fetch_metadata(None, Duration::from_secs(30)).unwrap();
        names
            .iter()
            .map(|name| {
                let topic = metadata.topics().iter().find(|topic| topic.name() == name);
                (name.clone(), topic.map(|topic| topic.partitions().len()))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (name, count) in partitions {
        assert_eq!(count, Some(4), "{name}");
    }
    assert_eq!(bus.topic_name(Topic::Results), format!("{prefix}results"));
}

/// `bus::open` takes kafka:// URLs; a URL without brokers is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_by_url() {
    let broker = KafkaBroker::start();
    let prefix = unique_prefix();
    let bus = omadm_core::bus::open(&broker.url(), &prefix).await.unwrap();
    let published = conformance::event("url-1", Topic::Sessions, "IMEI:1", 1);
    bus.publish(std::slice::from_ref(&published)).await.unwrap();
    let mut subscription = bus.subscribe("url-group", &[Topic::Sessions]).await.unwrap();
    assert_eq!(take(subscription.as_mut(), 1).await[0].event, published);
    for url in ["kafka://", "kafka:///", "kafka://no-port"] {
        let result = omadm_core::bus::open(url, &prefix).await;
        assert!(matches!(result, Err(BusError::UnsupportedUrl(_))), "{url}: {:?}", result.err());
    }
    assert!(matches!(bus.subscribe("", &[Topic::Sessions]).await, Err(BusError::Io(_))));
}

/// A broker that is gone: publish fails as Unavailable (not a hang, not a panic) and the failures are
/// counted; once the broker is back the same bus publishes again, recreating the topics it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_is_unavailable_and_the_bus_recovers_when_it_is_back() {
    let mut broker = KafkaBroker::start();
    if broker.is_external() {
        eprintln!("skipped: an external broker cannot be killed by the tests");
        return;
    }
    let prefix = unique_prefix();
    // Short delivery timeouts, through the operator's settings, so that failing takes seconds.
    let mut options = options(&broker, &prefix);
    options.kafka_settings.push(("message.timeout.ms".to_owned(), "1500".to_owned()));
    let bus = KafkaBus::connect(broker.brokers(), &options).await.unwrap();
    bus.publish(&[conformance::event("dead-0", Topic::Sessions, "IMEI:dead", 0)]).await.unwrap();
    let failed_before = metrics().bus_records_sent.with_label_values(&["sessions", "failed"]).get();
    let retried_before = metrics().bus_records_sent.with_label_values(&["sessions", "retried"]).get();
    let timed_out_before = metrics().bus_delivery_failures.with_label_values(&["sessions", "timed_out"]).get();

    broker.kill();
    let started = Instant::now();
    let lost = conformance::event("dead-1", Topic::Sessions, "IMEI:dead", 1);
    let result = bus.publish(std::slice::from_ref(&lost)).await;
    assert!(matches!(result, Err(BusError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "failed after {:?}", started.elapsed());
    assert_eq!(metrics().bus_records_sent.with_label_values(&["sessions", "failed"]).get(), failed_before + 1);
    assert_eq!(metrics().bus_records_sent.with_label_values(&["sessions", "retried"]).get(), retried_before + 2);
    assert!(
        metrics().bus_delivery_failures.with_label_values(&["sessions", "timed_out"]).get() >= timed_out_before + 3
    );

    broker.restart();
    let started = Instant::now();
    while let Err(error) = bus.publish(std::slice::from_ref(&lost)).await {
        assert!(started.elapsed() < PATIENCE, "the bus did not recover: {error}");
    }
    let mut subscription = bus.subscribe("dead-group", &[Topic::Sessions]).await.unwrap();
    assert_eq!(take(subscription.as_mut(), 1).await[0].event, lost);
}

/// One event per publish call waits for its acknowledgement each time: prints that rate beside the batch rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_one_event_per_call() {
    const EVENTS: u64 = 300;
    let (bus, _broker) = fresh_bus().await;
    let started = Instant::now();
    for index in 0..EVENTS {
        bus.publish(&[conformance::event(&format!("single-{index}"), Topic::Alerts, "IMEI:1", index)]).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "published {EVENTS} events one per call in {:.3} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    let mut subscription = bus.subscribe("single-group", &[Topic::Alerts]).await.unwrap();
    let deliveries = take(subscription.as_mut(), EVENTS as usize).await;
    let sequences: Vec<u64> =
        deliveries.iter().map(|delivery| delivery.event.payload["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, (0..EVENTS).collect::<Vec<_>>());
}

/// How the broker goes down mid-run in a durability test.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// SIGKILL: nothing is flushed.
    Kill,
    /// SIGTERM (SIGKILL after 5 s): the broker shuts down as an orchestrator's rollout stops it. tansu 0.6.0
    /// keeps serving its connected producer through the 5 s, so the events of that grace count as before the
    /// outage and the SIGKILL ends it.
    Stop,
}

/// Broker durability: events published while the broker (tansu on its PostgreSQL engine, over a PostgreSQL
/// server of the test's own) goes down and is started again. Every publish the bus reported done is read back
/// by a new group afterwards; publishes that failed while it was down may or may not have landed (at least
/// once), but none that succeeded is lost.
async fn nothing_acknowledged_is_lost_across(outage: Outage) {
    const BEFORE_OUTAGE: usize = 60;
    const AFTER_RESTART: usize = 60;
    let mut broker = KafkaBroker::start_durable();
    let bus = omadm_core::bus::open_with(&broker.url(), &options(&broker, &unique_prefix())).await.unwrap();
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let enough = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (bus, acknowledged, enough) = (Arc::clone(&bus), Arc::clone(&acknowledged), Arc::clone(&enough));
        tokio::spawn(async move {
            let (mut sequence, mut failed) = (0u64, 0usize);
            while !enough.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Event> = (0..3)
                    .map(|offset| {
                        let sequence = sequence + offset;
                        let device = format!("IMEI:durable-{}", sequence % 7);
                        conformance::event(&format!("durable-{sequence}"), Topic::Results, &device, sequence)
                    })
                    .collect();
                sequence += 3;
                match bus.publish(&batch).await {
                    Ok(()) => acknowledged.lock().unwrap().extend(batch.into_iter().map(|event| event.id)),
                    Err(_) => failed += 1,
                }
            }
            failed
        })
    };
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < BEFORE_OUTAGE {
        assert!(started.elapsed() < PATIENCE, "the bus published too slowly before the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match outage {
        Outage::Kill => broker.kill(),
        Outage::Stop => broker.stop(),
    }
    // Counted once the broker is gone: what it acknowledged while shutting down counts as before the outage.
    let at_outage = acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    let resumed = Instant::now();
    while acknowledged.lock().unwrap().len() < at_outage + AFTER_RESTART {
        assert!(resumed.elapsed() < PATIENCE * 2, "publishing did not resume after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    enough.store(true, std::sync::atomic::Ordering::Relaxed);
    let failed = tokio::time::timeout(PATIENCE, publisher).await.expect("the publisher stopped").unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    let mut subscription = bus.subscribe("durable-readers", &[Topic::Results]).await.unwrap();
    let mut missing: std::collections::BTreeSet<String> = acknowledged.iter().cloned().collect();
    let mut read = 0usize;
    let reading = Instant::now();
    while !missing.is_empty() {
        assert!(
            reading.elapsed() < PATIENCE,
            "{} acknowledged events were lost across the broker's restart ({outage:?}): {:?}",
            missing.len(),
            missing.iter().take(10).collect::<Vec<_>>()
        );
        for delivery in subscription.next_batch(500, Duration::from_secs(1)).await.unwrap() {
            missing.remove(&delivery.event.id);
            read += 1;
        }
    }
    println!(
        "durable broker ({outage:?}): {} events acknowledged ({at_outage} before the outage), {failed} publish calls \
         failed while it was down, {read} read back by a new group, none of the acknowledged lost",
        acknowledged.len()
    );
}

/// A broker stopped as a rollout stops it (SIGTERM) and started again keeps everything it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_broker_acknowledged_is_lost_across_a_stop_and_restart() {
    nothing_acknowledged_is_lost_across(Outage::Stop).await;
}

/// The same across a SIGKILL, which gives the broker no chance to flush anything: what it acknowledged was
/// already committed in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_broker_acknowledged_is_lost_across_a_kill_and_restart() {
    nothing_acknowledged_is_lost_across(Outage::Kill).await;
}
