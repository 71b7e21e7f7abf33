//! The JSONL bus over real files: one whole JSON line per event, one file per topic, durable appends.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;

use omadm_core::bus::{Bus, BusError, Event, JsonlBus, SCHEMA_VERSION, Topic};
use omadm_core::metrics::metrics;
use serde_json::{Value, json};

fn event(id: &str, topic: Topic, key: &str) -> Event {
    Event {
        id: id.to_owned(),
        event_type: "command.result".to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp: 1_700_000_000_123,
        topic,
        key: key.to_owned(),
        // A payload with a newline and unicode: it must stay inside one line.
        payload: json!({"device_id": key, "text": "line one\nline two é", "list": [1, {"deep": true}]}),
    }
}

/// The lines of a topic file, each parsed back into an event after checking its fields.
fn read_events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "the file ends with a whole line");
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}"));
            let fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
            let mut sorted = fields.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, ["id", "key", "payload", "schema_version", "timestamp", "topic", "type"], "{line}");
            serde_json::from_value(value).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn open_creates_one_file_per_topic_with_the_prefix() {
    let directory = tempfile::tempdir().unwrap();
    let events_directory = directory.path().join("events");
    let bus = JsonlBus::open(&events_directory, "omadm.").await.unwrap();
    for topic in Topic::ALL {
        let path = events_directory.join(format!("omadm.{}.jsonl", topic.name()));
        assert!(path.is_file(), "{} exists", path.display());
        assert_eq!(bus.topic_path(topic), Some(path.as_path()));
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
    let custom = JsonlBus::open(directory.path(), "lab-").await.unwrap();
    assert!(directory.path().join("lab-alerts.jsonl").is_file());
    assert_eq!(custom.directory(), directory.path());
}

#[tokio::test]
async fn each_event_is_one_line_in_its_topic_file() {
    let directory = tempfile::tempdir().unwrap();
    let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
    let published = vec![
        event("r-1", Topic::Results, "IMEI:1"),
        event("a-1", Topic::Alerts, "IMEI:1"),
        event("r-2", Topic::Results, "IMEI:2"),
        event("s-1", Topic::Sessions, "IMEI:2"),
    ];
    bus.publish(&published).await.unwrap();
    bus.publish(&[]).await.unwrap();

    let results = read_events(bus.topic_path(Topic::Results).unwrap());
    assert_eq!(results, vec![published[0].clone(), published[2].clone()]);
    assert_eq!(read_events(bus.topic_path(Topic::Alerts).unwrap()), vec![published[1].clone()]);
    assert_eq!(read_events(bus.topic_path(Topic::Sessions).unwrap()), vec![published[3].clone()]);
    assert!(read_events(bus.topic_path(Topic::Notifications).unwrap()).is_empty());

    // The exact wire form of one line.
    let first_line = std::fs::read_to_string(bus.topic_path(Topic::Results).unwrap()).unwrap();
    let first_line = first_line.lines().next().unwrap();
    assert!(first_line.starts_with(r#"{"id":"r-1","type":"command.result","schema_version":1,"timestamp":1700000000123,"topic":"results","key":"IMEI:1","payload":"#), "{first_line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_never_interleave_lines() {
    const PUBLISHERS: usize = 16;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 5;
    let directory = tempfile::tempdir().unwrap();
    let bus = Arc::new(JsonlBus::open(directory.path(), "omadm.").await.unwrap());
    let mut tasks = Vec::new();
    for publisher in 0..PUBLISHERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let events: Vec<Event> = (0..PER_BATCH)
                    .map(|index| {
                        let topic = if index % 2 == 0 { Topic::Results } else { Topic::Sessions };
                        // A large payload makes a torn write likely if lines were not written whole.
                        let mut event =
                            event(&format!("p{publisher}-b{batch}-e{index}"), topic, &format!("dev-{publisher}"));
                        event.payload = json!({"filler": "x".repeat(8_192), "publisher": publisher});
                        event
                    })
                    .collect();
                bus.publish(&events).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut all = read_events(bus.topic_path(Topic::Results).unwrap());
    all.extend(read_events(bus.topic_path(Topic::Sessions).unwrap()));
    assert_eq!(all.len(), PUBLISHERS * BATCHES * PER_BATCH);
    let mut ids: Vec<&str> = all.iter().map(|event| event.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), PUBLISHERS * BATCHES * PER_BATCH, "each event exactly once");
    // Each publisher's events keep their order within a topic.
    for topic in [Topic::Results, Topic::Sessions] {
        let events = read_events(bus.topic_path(topic).unwrap());
        for publisher in 0..PUBLISHERS {
            let prefix = format!("p{publisher}-");
            let order: Vec<&str> =
                events.iter().map(|event| event.id.as_str()).filter(|id| id.starts_with(&prefix)).collect();
            let mut sorted = order.clone();
            sorted.sort_by_key(|id| {
                let parts: Vec<usize> = id.split('-').skip(1).map(|part| part[1..].parse().unwrap()).collect();
                (parts[0], parts[1])
            });
            assert_eq!(order, sorted, "publisher {publisher} on {}", topic.name());
        }
    }
}

#[tokio::test]
async fn reopening_appends_after_existing_lines() {
    let directory = tempfile::tempdir().unwrap();
    let first = event("first", Topic::Alerts, "IMEI:1");
    let second = event("second", Topic::Alerts, "IMEI:1");
    {
        let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
        bus.publish(std::slice::from_ref(&first)).await.unwrap();
    }
    let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
    bus.publish(std::slice::from_ref(&second)).await.unwrap();
    assert_eq!(read_events(bus.topic_path(Topic::Alerts).unwrap()), vec![first, second]);
}

/// The only test on the campaigns topic, so the counters it reads move for its events alone.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_failing_file_is_an_error_counted_and_healed_by_the_next_publish() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("omadm.campaigns.jsonl");
    // Every write to /dev/full fails with ENOSPC: a full disk on demand.
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
    let published_before = metrics().events_published.with_label_values(&["campaigns"]).get();
    let errors_before = metrics().bus_errors.with_label_values(&["campaigns"]).get();

    let lost = event("c-1", Topic::Campaigns, "campaign-1");
    let result = bus.publish(std::slice::from_ref(&lost)).await;
    assert!(matches!(result, Err(BusError::Io(_))), "{result:?}");
    assert_eq!(metrics().bus_errors.with_label_values(&["campaigns"]).get(), errors_before + 1);
    assert_eq!(metrics().events_published.with_label_values(&["campaigns"]).get(), published_before);

    // The disk is "fixed": the next publish opens the path again and writes whole lines.
    std::fs::remove_file(&path).unwrap();
    let retried = vec![lost, event("c-2", Topic::Campaigns, "campaign-1")];
    bus.publish(&retried).await.unwrap();
    assert_eq!(read_events(&path), retried);
    assert_eq!(metrics().events_published.with_label_values(&["campaigns"]).get(), published_before + 2);
}
