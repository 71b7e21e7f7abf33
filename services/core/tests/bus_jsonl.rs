//! The JSONL bus over real files: one whole JSON line per event, one file per topic, durable appends;
//! consumer groups with their commits in files; the Bus conformance suite.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omadm_core::bus::conformance::{self, RawAppender, assert_nothing_more, take};
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

/// A bus in a directory of its own.
async fn fresh_bus() -> (Arc<dyn Bus>, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let bus = omadm_core::bus::open(&format!("file://{}", directory.path().display()), "omadm.").await.unwrap();
    (bus, directory)
}

mod suite {
    omadm_core::bus_conformance_tests!(super::fresh_bus);
}

/// Appends lines to the topic files directly, as another writer (or a damaged disk) could.
struct RawLines {
    directory: PathBuf,
}

#[async_trait]
impl RawAppender for RawLines {
    async fn append_raw(&self, topic: Topic, _key: &str, value: &[u8]) {
        let path = self.directory.join(format!("omadm.{}.jsonl", topic.name()));
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(value).unwrap();
        file.write_all(b"\n").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_lines_are_skipped_and_committed_past() {
    let directory = tempfile::tempdir().unwrap();
    let bus = Arc::new(JsonlBus::open(directory.path(), "omadm.").await.unwrap());
    let raw = RawLines { directory: directory.path().to_owned() };
    conformance::corrupt_records_are_skipped_and_committed_past(bus, &raw).await;
}

/// A group's commit is a small file beside the topics: the next line to read and the byte it starts at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_kept_in_offset_files() {
    let directory = tempfile::tempdir().unwrap();
    let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
    let published = vec![event("o-1", Topic::Alerts, "IMEI:1"), event("o-2", Topic::Alerts, "IMEI:1")];
    bus.publish(&published).await.unwrap();
    let mut subscription = bus.subscribe("reporting/eu west", &[Topic::Alerts]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 2).await;
    assert_eq!((deliveries[0].partition, deliveries[0].offset), (0, 0));
    assert_eq!((deliveries[1].partition, deliveries[1].offset), (0, 1));
    subscription.commit(&deliveries[..1]).await.unwrap();

    // The group's name is kept readable but cannot leave its directory.
    let offset_path = directory.path().join("consumers/reporting%2Feu%20west/omadm.alerts.offset");
    let first_line_length =
        std::fs::read_to_string(bus.topic_path(Topic::Alerts).unwrap()).unwrap().find('\n').unwrap() + 1;
    let stored: Value = serde_json::from_slice(&std::fs::read(&offset_path).unwrap()).unwrap();
    assert_eq!(stored, json!({"line": 1, "byte": first_line_length}));
    subscription.commit(&deliveries).await.unwrap();
    let stored: Value = serde_json::from_slice(&std::fs::read(&offset_path).unwrap()).unwrap();
    assert_eq!(stored["line"], json!(2));
    assert!(!directory.path().join("consumers/reporting%2Feu%20west/omadm.alerts.offset.tmp").exists());
}

/// A line still being written (no newline yet) is not delivered until it is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_being_written_waits_for_its_newline() {
    let directory = tempfile::tempdir().unwrap();
    let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
    let path = bus.topic_path(Topic::Results).unwrap().to_owned();
    let whole = serde_json::to_string(&event("w-1", Topic::Results, "IMEI:1")).unwrap();
    let (head, tail) = whole.split_at(whole.len() / 2);
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(head.as_bytes()).unwrap();

    let mut subscription = bus.subscribe("partial", &[Topic::Results]).await.unwrap();
    assert_nothing_more(subscription.as_mut(), Duration::from_millis(300)).await;
    file.write_all(tail.as_bytes()).unwrap();
    file.write_all(b"\n").unwrap();
    let deliveries = take(subscription.as_mut(), 1).await;
    assert_eq!(deliveries[0].event.id, "w-1");
}

/// A publish of this process wakes a waiting subscription at once; another process's append is seen by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_subscription_sees_appends_soon() {
    let directory = tempfile::tempdir().unwrap();
    let bus = Arc::new(JsonlBus::open(directory.path(), "omadm.").await.unwrap());
    let mut subscription = bus.subscribe("wake", &[Topic::Sessions]).await.unwrap();
    let publisher = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.publish(&[event("wake-1", Topic::Sessions, "IMEI:1")]).await.unwrap();
    });
    let started = Instant::now();
    let batch = subscription.next_batch(10, Duration::from_secs(20)).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5), "woken after {:?}", started.elapsed());

    let raw = RawLines { directory: directory.path().to_owned() };
    let line = serde_json::to_vec(&event("wake-2", Topic::Sessions, "IMEI:1")).unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw.append_raw(Topic::Sessions, "IMEI:1", &line).await;
    });
    let batch = subscription.next_batch(10, Duration::from_secs(20)).await.unwrap();
    assert_eq!(batch[0].event.id, "wake-2");
}

/// A topic file cut shorter than the group's commit (copytruncate rotation) is read again from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_read_from_its_start() {
    let directory = tempfile::tempdir().unwrap();
    let bus = JsonlBus::open(directory.path(), "omadm.").await.unwrap();
    bus.publish(&[event("t-1", Topic::Notifications, "IMEI:1"), event("t-2", Topic::Notifications, "IMEI:1")])
        .await
        .unwrap();
    let mut subscription = bus.subscribe("rotation", &[Topic::Notifications]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 2).await;
    subscription.commit(&deliveries).await.unwrap();
    drop(subscription);

    std::fs::File::options()
        .write(true)
        .open(bus.topic_path(Topic::Notifications).unwrap())
        .unwrap()
        .set_len(0)
        .unwrap();
    bus.publish(&[event("t-3", Topic::Notifications, "IMEI:1")]).await.unwrap();
    let mut subscription = bus.subscribe("rotation", &[Topic::Notifications]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 1).await;
    assert_eq!((deliveries[0].event.id.as_str(), deliveries[0].offset), ("t-3", 0));

    // Cut while subscribed: the reader notices too.
    subscription.commit(&deliveries).await.unwrap();
    std::fs::File::options()
        .write(true)
        .open(bus.topic_path(Topic::Notifications).unwrap())
        .unwrap()
        .set_len(0)
        .unwrap();
    bus.publish(&[event("t-4", Topic::Notifications, "IMEI:1")]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 1).await;
    assert_eq!(deliveries[0].event.id, "t-4");
}

/// An empty group name is refused; the same topic named twice is read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_arguments() {
    let (bus, _directory) = fresh_bus().await;
    assert!(matches!(bus.subscribe("", &[Topic::Alerts]).await, Err(BusError::Io(_))));
    bus.publish(&[event("twice-1", Topic::Alerts, "IMEI:1")]).await.unwrap();
    let mut subscription = bus.subscribe("twice", &[Topic::Alerts, Topic::Alerts]).await.unwrap();
    assert_eq!(take(subscription.as_mut(), 1).await[0].event.id, "twice-1");
    assert_nothing_more(subscription.as_mut(), Duration::from_millis(200)).await;
}
