//! The notifier end to end in cluster mode: a Redis store and a Kafka bus (tansu), each started by the test.
//!
//! Two notifiers in one consumer group share the partitions (each sends from a socket of its own, so a
//! datagram's source port tells who sent it); one that is stopped after sending but before its outcomes were
//! stored loses no request: the other takes its partitions over and delivers them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_core::bus::Bus;
use omadm_core::bus::relay::OutboxRelay;
use omadm_core::store::Store;
use omadm_notifier::{Notifier, NotifierSettings};
use omadm_runtime::ops::Readiness;
use omadm_testkit::kafka::KafkaBroker;
use omadm_testkit::ports::free_udp_port;
use omadm_testkit::redis::RedisServer;
use support::*;

const DEVICES: usize = 12;

/// Requests one notification per device; returns the request ids.
async fn request_all(store: &dyn Store, devices: &[ListeningDevice]) -> Vec<String> {
    let mut requests = Vec::new();
    for device in devices {
        requests.push(request(store, &device.id, false).await);
    }
    requests
}

/// Who sent each device the datagrams waiting on its socket.
async fn senders(devices: &[ListeningDevice]) -> BTreeMap<String, Vec<SocketAddr>> {
    let mut senders = BTreeMap::new();
    for device in devices {
        let received = device.receive_all(Duration::from_millis(300)).await;
        senders.insert(device.id.clone(), received.iter().map(|one| one.from).collect());
    }
    senders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifiers_share_the_partitions_and_a_stopped_one_loses_no_request() {
    let redis = RedisServer::start();
    let store = omadm_core::store::open(&redis.url()).await.unwrap();
    let broker = KafkaBroker::start();
    let bus: Arc<dyn Bus> = omadm_core::bus::open_with(&broker.url(), &broker.bus_options(3)).await.unwrap();
    let relay = OutboxRelay::spawn(store.clone(), bus.clone());
    let mut devices = Vec::new();
    for index in 0..DEVICES {
        devices.push(ListeningDevice::register(&*store, &format!("IMEI:35{index:04}"), Some("secret")).await);
    }

    // No dedup window: every round notifies every device again.
    let first_store = omadm_testkit::store::with_faults(store.clone());
    let readiness = Arc::new(Readiness::new());
    let first_address: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let first_settings = NotifierSettings { udp_bind: first_address, ..settings(0) };
    let first = Notifier::start(first_store.clone(), bus.clone(), first_settings, readiness.clone()).await.unwrap();
    let second = Notifier::start(store.clone(), bus.clone(), settings(0), readiness.clone()).await.unwrap();
    let mut observer = Observer::start(&bus).await;

    // Rounds until both members hold partitions: each device is served by one of them, both serve some.
    let deadline = Instant::now() + Duration::from_secs(120);
    let shared = loop {
        let requests = request_all(&*store, &devices).await;
        // A request's outcome is stored after its datagram left: once every outcome is in, so are the datagrams.
        observer.wait_for(&requests).await;
        let senders = senders(&devices).await;
        eprintln!("round: {senders:?}");
        assert!(
            requests.iter().all(|id| observer.outcome(id).event_type == "notification.sent"),
            "{:?}",
            observer.summary()
        );
        let ports: BTreeSet<SocketAddr> = senders.values().flatten().copied().collect();
        if ports.len() == 2 && senders.values().all(|from| from.len() == 1) {
            break senders;
        }
        assert!(Instant::now() < deadline, "the group never shared its partitions: {senders:?}");
    };

    let ports: BTreeSet<SocketAddr> = shared.values().flatten().copied().collect();
    assert!(ports.contains(&first_address), "{ports:?}");

    // The first notifier keeps sending but can no longer store outcomes; then it stops without committing.
    first_store.interposer().fail_next("commit", u64::MAX);
    let requests = request_all(&*store, &devices).await;
    // The second's outcomes come in; the first's cannot, so give its datagrams the same time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let senders = senders(&devices).await;
    eprintln!("first failing: {senders:?}");
    let served_by_first: Vec<&str> = devices
        .iter()
        .filter(|device| senders[&device.id].contains(&first_address))
        .map(|device| device.id.as_str())
        .collect();
    assert!(!served_by_first.is_empty(), "the first notifier sent before its commits failed: {senders:?}");
    for device in &served_by_first {
        let from_first = senders[*device].iter().filter(|from| **from == first_address).count();
        assert_eq!(from_first, 1, "{device}: a batch handled again is not sent again: {senders:?}");
    }
    first.stop().await;

    // The second takes the first's partitions over from their last commit and sends those requests again.
    observer.wait_for(&requests).await;
    for (device, request_id) in devices.iter().zip(&requests) {
        let outcomes = &observer.outcomes[request_id];
        assert_eq!(outcomes[0].event_type, "notification.sent", "{request_id}: {outcomes:?}");
        let again: Vec<SocketAddr> =
            device.receive_all(Duration::from_secs(2)).await.iter().map(|one| one.from).collect();
        let all: Vec<SocketAddr> = senders[&device.id].iter().chain(&again).copied().collect();
        assert!(all.iter().any(|from| *from != first_address), "{}: delivered by the second: {all:?}", device.id);
        if served_by_first.contains(&device.id.as_str()) {
            assert!(!again.is_empty(), "{}: the request the first could not finish was sent again", device.id);
        }
    }
    // On Redis too, each request's record carries the outcome its event announced.
    for request_id in &requests {
        let record = store.get_notification(request_id).await.unwrap().unwrap();
        let announced = &observer.outcomes[request_id][0];
        assert_eq!(record.state(), "sent", "{record:?}");
        let notification_id = record.outcome.as_ref().and_then(|outcome| outcome.notification_id);
        assert_eq!(notification_id.map(u64::from), announced.payload["notification_id"].as_u64(), "{record:?}");
    }
    second.stop().await;
    relay.stop().await;
    drop(redis);
}
