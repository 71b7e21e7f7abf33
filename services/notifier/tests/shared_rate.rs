//! Shared send rates: two transports as two replicas would hold them, one rate key in one redis-server, send
//! no faster together than the rate allows; every datagram still arrives.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_notifier::metrics::metrics;
use omadm_notifier::plan::Destination;
use omadm_notifier::rate::SharedRate;
use omadm_notifier::transport::{Dispatch, Transport, UdpTransport};
use omadm_testkit::redis::RedisServer;

const RATE: u32 = 20;
const PER_REPLICA: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_rate_through_the_store() {
    let redis = RedisServer::start();
    let store = omadm_core::store::open(&redis.url()).await.unwrap();
    let device = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let destination = Destination::Udp(device.local_addr().unwrap());
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let rate = SharedRate::new(store.clone(), "udp", "datagrams", RATE).unwrap();
        let transport = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap().with_rate(Some(rate));
        replicas.push(Arc::new(transport));
    }
    let waited_before = metrics().rate_wait_seconds.with_label_values(&["udp"]).get();

    let started = Instant::now();
    let sends = replicas.iter().map(|replica| {
        let (replica, destination) = (Arc::clone(replica), destination.clone());
        tokio::spawn(async move {
            for index in 0..PER_REPLICA {
                let dispatch = Dispatch { device_id: "IMEI:rate", request_id: "r", notification_id: 1 };
                replica.send(&destination, &[0xA5, u8::try_from(index).unwrap()], &dispatch).await.unwrap();
            }
        })
    });
    for send in futures_util::future::join_all(sends).await {
        send.unwrap();
    }
    let elapsed = started.elapsed();

    // 40 datagrams at 20 a second, one second's burst to start: the last 20 wait a twentieth of a second each.
    // Each replica alone would have sent its 20 in the burst, at once.
    assert!(elapsed >= Duration::from_millis(900), "40 sends at a shared 20/s took only {elapsed:?}");
    let waited = metrics().rate_wait_seconds.with_label_values(&["udp"]).get() - waited_before;
    assert!(waited > 0.5, "the sends waited {waited} s for tokens");
    let mut received = 0;
    let mut buffer = [0u8; 512];
    while received < 2 * PER_REPLICA {
        tokio::time::timeout(Duration::from_secs(5), device.recv_from(&mut buffer)).await.unwrap().unwrap();
        received += 1;
    }
    assert_eq!(received, 2 * PER_REPLICA);
}
