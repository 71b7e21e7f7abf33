//! The consumer loop on real buses: the JSONL files and Kafka (a tansu broker of the test's own).
//!
//! Each test publishes events, runs the loop with a handler that fails before it succeeds (or always fails),
//! stops it, and joins the same group again to see what was committed: a batch is committed only after its
//! handler returned Ok, so the failing one comes back and the handled one does not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omadm_core::bus::{Bus, Delivery, Event, SCHEMA_VERSION, Topic};
use omadm_runtime::consumer::{BatchHandler, ConsumerLoop, ConsumerOptions, HandlerError};
use omadm_testkit::kafka::KafkaBroker;

fn event(index: usize) -> Event {
    Event {
        id: format!("test:{index}"),
        event_type: "command.result".to_owned(),
        schema_version: SCHEMA_VERSION,
        timestamp: 1_700_000_000_000,
        topic: Topic::Results,
        key: "IMEI:1".to_owned(),
        payload: serde_json::json!({"index": index}),
    }
}

/// Fails its first `failures` calls, then records the event ids it was handed.
struct Recorder {
    failures: usize,
    calls: Arc<Mutex<usize>>,
    handled: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl BatchHandler for Recorder {
    async fn handle(&mut self, deliveries: &[Delivery]) -> Result<(), HandlerError> {
        *self.calls.lock().unwrap() += 1;
        if self.failures > 0 {
            self.failures -= 1;
            return Err(HandlerError("not yet".to_owned()));
        }
        self.handled.lock().unwrap().extend(deliveries.iter().map(|delivery| delivery.event.id.clone()));
        Ok(())
    }
}

fn quick() -> ConsumerOptions {
    ConsumerOptions { batch_size: 10, poll_wait: Duration::from_millis(200), retry_pause: Duration::from_millis(50) }
}

async fn wait_until(what: &str, deadline: Duration, condition: impl Fn() -> bool) {
    omadm_testkit::wait::eventually(what, deadline, async || condition()).await;
}

/// Ids the group `group` still gets: what no member committed.
async fn uncommitted(bus: &Arc<dyn Bus>, group: &str, patience: Duration) -> Vec<String> {
    let mut subscription = bus.subscribe(group, &[Topic::Results]).await.unwrap();
    let started = Instant::now();
    let mut ids = Vec::new();
    while started.elapsed() < patience {
        let batch = subscription.next_batch(10, Duration::from_millis(200)).await.unwrap();
        ids.extend(batch.into_iter().map(|delivery| delivery.event.id));
    }
    ids
}

async fn handled_batches_are_committed_and_failed_ones_come_back(bus: Arc<dyn Bus>, patience: Duration) {
    bus.publish(&[event(1), event(2), event(3)]).await.unwrap();

    // Fails twice, then handles: the batch is handed over again until it is handled, and committed.
    let calls = Arc::new(Mutex::new(0));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder { failures: 2, calls: Arc::clone(&calls), handled: Arc::clone(&handled) };
    let consumer = ConsumerLoop::start(&bus, "handles", &[Topic::Results], recorder, quick()).await.unwrap();
    wait_until("all three handled", patience * 4, || handled.lock().unwrap().len() == 3).await;
    consumer.stop().await;
    assert!(*calls.lock().unwrap() >= 3, "two failed calls before the one that handled");
    assert_eq!(*handled.lock().unwrap(), ["test:1", "test:2", "test:3"]);
    assert_eq!(uncommitted(&bus, "handles", patience).await, Vec::<String>::new(), "handled means committed");

    // Always fails: nothing is committed, so the group gets every event again.
    let calls = Arc::new(Mutex::new(0));
    let recorder = Recorder { failures: usize::MAX, calls: Arc::clone(&calls), handled: Arc::default() };
    let consumer = ConsumerLoop::start(&bus, "fails", &[Topic::Results], recorder, quick()).await.unwrap();
    wait_until("a few failed tries", patience * 4, || *calls.lock().unwrap() >= 2).await;
    consumer.stop().await;
    let mut again = uncommitted(&bus, "fails", patience).await;
    again.sort();
    assert_eq!(again, ["test:1", "test:2", "test:3"], "a batch whose handler failed stays uncommitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_jsonl_bus() {
    let dir = tempfile::tempdir().unwrap();
    let bus = omadm_core::bus::open(dir.path().join("events").to_str().unwrap(), "omadm.").await.unwrap();
    handled_batches_are_committed_and_failed_ones_come_back(bus, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka() {
    let broker = KafkaBroker::start();
    let bus = omadm_core::bus::open_with(&broker.url(), &broker.bus_options(1)).await.unwrap();
    // A new Kafka group's first fetch waits for its partitions to be assigned: more patience than on files.
    handled_batches_are_committed_and_failed_ones_come_back(bus, Duration::from_secs(8)).await;
}
