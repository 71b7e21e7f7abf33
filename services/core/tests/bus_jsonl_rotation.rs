//! The JSONL bus rotates topic files by size and keeps a bounded number of segments; consumer groups read
//! across segments with offsets that never go back, survive restarts, and skip (and count) what retention deleted.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use omadm_core::bus::conformance::{assert_nothing_more, take};
use omadm_core::bus::{Bus, Event, JsonlBus, JsonlRetention, SCHEMA_VERSION, Topic};
use omadm_core::metrics::metrics;
use serde_json::json;

fn event(number: usize) -> Event {
    Event {
        id: format!("r-{number}"),
        event_type: "command.result".to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp: 1_700_000_000_000 + number as u64,
        topic: Topic::Results,
        key: format!("IMEI:{}", number % 7),
        payload: json!({"n": number, "padding": "x".repeat(100)}),
    }
}

/// Segments of about three events each.
const SMALL: JsonlRetention = JsonlRetention { segment_bytes: 600, retained_segments: 100 };

async fn publish_each(bus: &JsonlBus, numbers: std::ops::Range<usize>) {
    for number in numbers {
        bus.publish(&[event(number)]).await.unwrap();
    }
}

/// The rotated segments of the results topic, oldest first, by the first line their name carries.
fn rotated_segments(directory: &Path) -> Vec<(i64, PathBuf)> {
    let mut segments: Vec<(i64, PathBuf)> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            let digits = name.strip_prefix("omadm.results.")?.strip_suffix(".jsonl")?;
            (digits.len() == 20).then(|| (digits.parse().unwrap(), path))
        })
        .collect();
    segments.sort();
    segments
}

fn line_count(path: &Path) -> i64 {
    std::fs::read_to_string(path).unwrap().lines().count() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_rotate_by_size_and_segments_are_named_by_their_first_line() {
    let directory = tempfile::tempdir().unwrap();
    let bus = JsonlBus::open_with_retention(directory.path(), "omadm.", SMALL).await.unwrap();
    let rotated_before = metrics().bus_segments_rotated.with_label_values(&["results"]).get();
    publish_each(&bus, 0..20).await;

    let segments = rotated_segments(directory.path());
    assert!(segments.len() >= 5, "20 events of ~200 bytes in 600-byte segments: {segments:?}");
    assert!(metrics().bus_segments_rotated.with_label_values(&["results"]).get() >= rotated_before + 5);
    // Each segment starts where the one before it ended, and the active file after the last one.
    let mut expected_first = 0;
    for (first_line, path) in &segments {
        assert_eq!(*first_line, expected_first, "{}", path.display());
        let size = std::fs::metadata(path).unwrap().len();
        assert!(size >= SMALL.segment_bytes, "rotated once it reached the segment size: {size}");
        expected_first += line_count(path);
    }
    let active = bus.topic_path(Topic::Results).unwrap();
    assert_eq!(expected_first + line_count(active), 20, "no event lost or repeated by rotation");
    // Topics nobody published to are not rotated.
    assert!(std::fs::read_dir(directory.path()).unwrap().all(|entry| {
        let name = entry.unwrap().file_name().into_string().unwrap();
        !name.starts_with("omadm.alerts.") || name == "omadm.alerts.jsonl"
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_across_segments_in_order_and_resumes_after_a_restart() {
    let directory = tempfile::tempdir().unwrap();
    {
        let bus = JsonlBus::open_with_retention(directory.path(), "omadm.", SMALL).await.unwrap();
        publish_each(&bus, 0..10).await;
        let mut subscription = bus.subscribe("analytics", &[Topic::Results]).await.unwrap();
        let deliveries = take(subscription.as_mut(), 10).await;
        let ids: Vec<&str> = deliveries.iter().map(|delivery| delivery.event.id.as_str()).collect();
        let expected: Vec<String> = (0..10).map(|number| format!("r-{number}")).collect();
        assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
        let offsets: Vec<i64> = deliveries.iter().map(|delivery| delivery.offset).collect();
        assert_eq!(offsets, (0..10).collect::<Vec<i64>>(), "offsets count lines across segments");
        // Committed in the middle of a rotated segment.
        subscription.commit(&deliveries[..7]).await.unwrap();
    }
    // A new process: the active file's first line follows from the segments, so numbering goes on.
    let bus = JsonlBus::open_with_retention(directory.path(), "omadm.", SMALL).await.unwrap();
    publish_each(&bus, 10..16).await;
    let mut subscription = bus.subscribe("analytics", &[Topic::Results]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 9).await;
    let resumed: Vec<(i64, String)> =
        deliveries.iter().map(|delivery| (delivery.offset, delivery.event.id.clone())).collect();
    let expected: Vec<(i64, String)> = (7..16).map(|number| (number as i64, format!("r-{number}"))).collect();
    assert_eq!(resumed, expected, "exactly the uncommitted events, in order, with their offsets");
    assert_nothing_more(subscription.as_mut(), Duration::from_millis(300)).await;

    // A group committed at the very end of a rotated segment goes on with the next one.
    subscription.commit(&deliveries).await.unwrap();
    drop(subscription);
    publish_each(&bus, 16..18).await;
    let mut subscription = bus.subscribe("analytics", &[Topic::Results]).await.unwrap();
    let deliveries = take(subscription.as_mut(), 2).await;
    assert_eq!(deliveries.iter().map(|delivery| delivery.offset).collect::<Vec<_>>(), vec![16, 17]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_segments_and_a_late_group_skips_what_was_deleted() {
    let directory = tempfile::tempdir().unwrap();
    let retention = JsonlRetention { segment_bytes: 600, retained_segments: 2 };
    let bus = JsonlBus::open_with_retention(directory.path(), "omadm.", retention).await.unwrap();
    // A group that reads the first events, then falls behind.
    publish_each(&bus, 0..2).await;
    let mut late = bus.subscribe("late", &[Topic::Results]).await.unwrap();
    let first = take(late.as_mut(), 2).await;
    late.commit(&first).await.unwrap();
    drop(late);
    let deleted_before = metrics().bus_segments_deleted.with_label_values(&["results"]).get();
    let skipped_before = metrics().bus_consumer_skipped_records.with_label_values(&["results"]).get();
    publish_each(&bus, 2..30).await;

    let segments = rotated_segments(directory.path());
    assert_eq!(segments.len(), 2, "only the newest two rotated segments are kept: {segments:?}");
    assert!(metrics().bus_segments_deleted.with_label_values(&["results"]).get() > deleted_before);
    let oldest_kept = segments[0].0;
    assert!(oldest_kept > 2, "the group's segment was deleted");

    // The late group goes on at the oldest segment kept; every kept event comes, in order, once.
    let mut late = bus.subscribe("late", &[Topic::Results]).await.unwrap();
    let deliveries = take(late.as_mut(), (30 - oldest_kept) as usize).await;
    let offsets: Vec<i64> = deliveries.iter().map(|delivery| delivery.offset).collect();
    assert_eq!(offsets, (oldest_kept..30).collect::<Vec<i64>>());
    assert_eq!(deliveries[0].event.id, format!("r-{oldest_kept}"));
    assert_nothing_more(late.as_mut(), Duration::from_millis(300)).await;
    let skipped = metrics().bus_consumer_skipped_records.with_label_values(&["results"]).get() - skipped_before;
    assert_eq!(skipped, (oldest_kept - 2) as u64, "the lines between the commit and the oldest kept are counted");
}

#[tokio::test]
async fn a_segment_size_of_zero_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let refused = JsonlBus::open_with_retention(
        directory.path(),
        "omadm.",
        JsonlRetention { segment_bytes: 0, retained_segments: 1 },
    )
    .await;
    assert!(refused.is_err());
}
