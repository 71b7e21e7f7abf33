//! The outbox relay when the bus fails: events wait in the store's outbox and go out once the bus recovers.
//!
//! Alone in its test binary because it reads the process-wide backlog gauge,
//! which any other relay running in the same process would move.

#![cfg(target_os = "linux")]
// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use omadm_core::bus::relay::{OutboxRelay, RelayConfig, RelayError};
use omadm_core::bus::{Bus, Event, JsonlBus, Topic};
use omadm_core::metrics::metrics;
use omadm_core::store::conformance::event;
use omadm_core::store::{EmbeddedStore, Store, WriteBatch};

fn read_events(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Polls `condition` for up to five seconds.
async fn eventually(what: &str, condition: impl AsyncFnMut() -> bool) {
    omadm_testkit::wait::eventually(what, Duration::from_secs(5), condition).await;
}

/// While the bus fails the events stay in the outbox; once it works again they go out, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bus_keeps_events_in_the_outbox_until_it_recovers() {
    let directory = tempfile::tempdir().unwrap();
    let events_directory = directory.path().join("events");
    std::fs::create_dir_all(&events_directory).unwrap();
    let results = events_directory.join("omadm.results.jsonl");
    // Writes to /dev/full fail with ENOSPC: the bus's disk is full.
    std::os::unix::fs::symlink("/dev/full", &results).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&directory.path().join("store")).await.unwrap());
    let bus = Arc::new(JsonlBus::open(&events_directory, "omadm.").await.unwrap());
    let errors_before = metrics().bus_errors.with_label_values(&["results"]).get();
    let relay = OutboxRelay::spawn_with(
        store.clone(),
        bus.clone() as Arc<dyn Bus>,
        RelayConfig {
            batch_size: 7,
            poll_interval: Duration::from_secs(3_600),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RelayConfig::default()
        },
    );

    let committed: Vec<Event> = (0..20).map(|index| event(&format!("r-{index}"), Topic::Results, "IMEI:1")).collect();
    store.commit(WriteBatch { events: committed.clone(), ..WriteBatch::default() }).await.unwrap();
    relay.notify();
    let drained = relay.drain().await;
    assert!(matches!(drained, Err(RelayError::Bus(_))), "{drained:?}");
    assert_eq!(store.outbox(0, 100).await.unwrap(), committed, "nothing acknowledged, order kept");
    // The relay keeps retrying on its own, with backoff, and keeps failing.
    eventually("more failed retries", async || {
        metrics().bus_errors.with_label_values(&["results"]).get() >= errors_before + 4
    })
    .await;
    assert_eq!(store.outbox_len().await.unwrap(), 20);
    assert_eq!(metrics().outbox_backlog.get(), 20);

    // The disk is fixed: the relay's next retry publishes everything, by itself.
    std::fs::remove_file(&results).unwrap();
    eventually("the backlog to drain", async || store.outbox_len().await.unwrap() == 0).await;
    assert_eq!(read_events(&results), committed);
    eventually("the backlog gauge to reach 0", async || metrics().outbox_backlog.get() == 0).await;
    relay.drain().await.unwrap();
    relay.stop().await;
}
