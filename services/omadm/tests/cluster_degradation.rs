//! Backend outages in cluster mode, with real processes (two `omadm gateway` nodes, a redis-server, a
//! Kafka-protocol broker) and a devsim fleet running sessions throughout:
//!
//! - Redis stopped, then restarted on the same port: meanwhile devices get 503 + Retry-After and `/readyz` is
//!   503; both recover by themselves; every session ends and every command the API acknowledged is answered.
//! - The broker stopped, then restarted: devices keep being served (a Package#2 never waits on Kafka), the outbox
//!   backlog rises and drains after the restart, and every result produced meanwhile reaches the bus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cluster_support::Cluster;
use cluster_support::fleet;
use omadm_client::retry::ServerSelection;
use omadm_devsim::schedule::Bounds;
use omadm_testkit::kafka::KafkaBroker;
use omadm_testkit::redis::RedisServer;
use serde_json::json;

const DEVICES: u32 = 200;

/// Queues one GET at a time for devices of `profile` round robin until `stop`, through any node; records what the
/// API acknowledged (201) and counts what it refused (503 while Redis is down) or left unanswered.
async fn trickle_commands(
    servers: Vec<String>,
    profile: omadm_devsim::profile::FleetProfile,
    stop: Arc<AtomicBool>,
) -> (BTreeMap<String, Vec<u64>>, u64) {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let mut acknowledged: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut refused = 0;
    let body = json!({"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]]});
    let mut index = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let device_id = profile.device(index % profile.devices).device_id;
        let base = &servers[index as usize % servers.len()];
        let path = format!("/api/v1/devices/{device_id}/commands");
        match fleet::api(&http, base, reqwest::Method::POST, &path, Some(&body)).await {
            Some((201, answer)) => acknowledged
                .entry(device_id)
                .or_default()
                .extend(answer["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap())),
            _ => refused += 1,
        }
        index += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (acknowledged, refused)
}

/// Every acknowledged command is `done` in the API (read through `base`); returns how many there were.
async fn assert_all_done(
    base: &str,
    profile: &omadm_devsim::profile::FleetProfile,
    acknowledged: &BTreeMap<String, Vec<u64>>,
) -> usize {
    let commands = fleet::commands_of(base, profile).await;
    let mut count = 0;
    for (device_id, ids) in acknowledged {
        for id in ids {
            let record = commands[device_id].iter().find(|record| record["id"].as_u64() == Some(*id));
            let record = record.unwrap_or_else(|| panic!("acknowledged command {id} of {device_id} was lost"));
            assert_eq!(record["state"], "done", "{device_id}: {record}");
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_degrades_to_503_and_recovers_by_itself() {
    let mut cluster = Cluster::start(2, &[]).await;
    let servers = cluster.bases();
    let profile = fleet::profile(DEVICES, "rr-");
    fleet::register(&servers, &profile).await;
    let mut acknowledged = fleet::enqueue(&servers, &profile, &fleet::three_gets()).await;

    // Sessions every 2 s per device for about 16 s, and commands queued all along.
    let bounds = Bounds { sessions_per_device: 8, interval: Duration::from_secs(2), duration: None };
    let config = fleet::run_config(servers.clone(), ServerSelection::Sticky, bounds, 32);
    let run = tokio::spawn(fleet::run(profile.clone(), config));
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = tokio::spawn(trickle_commands(servers.clone(), profile.clone(), Arc::clone(&stop)));

    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.redis.stop();
    let stopped_at = Instant::now();
    let not_ready = cluster.wait_readyz(0, 503, Duration::from_secs(15)).await;
    assert!(not_ready.is_ok(), "/readyz stayed {:?} with Redis down:\n{}", not_ready, cluster.logs(20));
    // Devices meet the outage: 503 with a Retry-After they can honour.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("rr-000000:{}", fleet::PASSWORD));
    let answer = reqwest::Client::new()
        .post(format!("{}/dm", servers[0]))
        .header("OMADM-DevID", "rr-000000")
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", omadm_proto::package::media::INITIATION_JSON)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503, "Package#1 with Redis down");
    let retry_after = answer.headers().get("retry-after").and_then(|value| value.to_str().ok()).map(str::to_owned);
    assert!(retry_after.as_deref().is_some_and(|value| value.parse::<u64>().is_ok()), "Retry-After: {retry_after:?}");
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(stopped_at.elapsed())).await;
    cluster.redis.restart();
    let outage = stopped_at.elapsed();
    for index in 0..2 {
        let ready = cluster.wait_readyz(index, 200, Duration::from_secs(30)).await;
        assert!(ready.is_ok(), "node {index} /readyz {:?} 30 s after Redis came back:\n{}", ready, cluster.logs(30));
    }

    let (report, _) = run.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (trickled, refused) = trickle.await.unwrap();
    assert_eq!(report.sessions_failed, 0, "sessions failed: {:?}\n{}", report.errors, cluster.logs(30));
    assert_eq!(report.sessions_ok, u64::from(DEVICES) * 8);
    assert!(report.unavailable_answers > 0, "no device saw a 503 during a {outage:?} outage: {report:?}");
    assert!(refused > 0, "the API acknowledged everything while Redis was down");

    // One more session per device delivers what was queued last; then nothing acknowledged is missing.
    for (device_id, ids) in trickled {
        acknowledged.entry(device_id).or_default().extend(ids);
    }
    let bounds = Bounds { sessions_per_device: 1, interval: Duration::ZERO, duration: None };
    let (last, _) =
        fleet::run(profile.clone(), fleet::run_config(servers.clone(), ServerSelection::Sticky, bounds, 32)).await;
    assert_eq!(last.sessions_failed, 0, "{:?}", last.errors);
    let answered = assert_all_done(&servers[1], &profile, &acknowledged).await;
    println!(
        "redis restart: outage {:.1} s; {} sessions ok, 0 failed; {} 503/429 answers, {} retries; {answered} \
         acknowledged commands all done; {refused} API calls refused meanwhile",
        outage.as_secs_f64(),
        report.sessions_ok,
        report.unavailable_answers,
        report.retries,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_keeps_devices_served_and_the_outbox_drains_after_it() {
    let mut cluster = Cluster::start(2, &[]).await;
    if cluster.broker.is_external() {
        eprintln!("skipped: OMADM_TEST_KAFKA names an external broker this test cannot stop");
        return;
    }
    let servers = cluster.bases();
    let profile = fleet::profile(DEVICES, "br-");
    fleet::register(&servers, &profile).await;

    // Phase A, broker up: results reach the bus.
    let before = fleet::enqueue(&servers, &profile, &fleet::three_gets()).await;
    let bounds = Bounds { sessions_per_device: 1, interval: Duration::ZERO, duration: None };
    let (report, _) =
        fleet::run(profile.clone(), fleet::run_config(servers.clone(), ServerSelection::Sticky, bounds, 32)).await;
    assert_eq!(report.sessions_failed, 0, "{:?}", report.errors);
    let expected_before: BTreeSet<(String, u64)> =
        before.iter().flat_map(|(device, ids)| ids.iter().map(|id| (device.clone(), *id))).collect();
    let seen = fleet::consume_results(
        &cluster.broker.url(),
        &cluster.topic_prefix,
        &cluster.broker.client_settings(),
        &expected_before,
        Duration::from_secs(60),
    )
    .await;
    let missing = expected_before.iter().filter(|key| !seen.by_command.contains_key(*key)).count();
    assert_eq!(missing, 0, "{missing} results missing with the broker up:\n{}", cluster.logs(20));

    // Phase B, broker down: sessions go on at full speed and events pile up in the outbox.
    cluster.broker.stop();
    let stopped = Instant::now();
    let during = fleet::enqueue(&servers, &profile, &fleet::three_gets()).await;
    let (report, _) =
        fleet::run(profile.clone(), fleet::run_config(servers.clone(), ServerSelection::Sticky, bounds, 32)).await;
    assert_eq!(
        report.sessions_failed,
        0,
        "sessions failed with the broker down: {:?}\n{}",
        report.errors,
        cluster.logs(20)
    );
    assert_eq!(report.unavailable_answers, 0, "devices were refused while only the broker was down: {report:?}");
    assert!(report.latency_ms.exchange.p99 < 5_000.0, "a Package#2 waited on the broker: {:?}", report.latency_ms);
    for index in 0..2 {
        assert_eq!(cluster.readyz(index).await, Some(200), "node {index} not ready with only the broker down");
    }
    // The relay refreshes the gauge between publish attempts, and an attempt against a silent broker lasts
    // until the producer gives up: the rise shows within a minute or so.
    let rose = loop {
        let mut backlog = 0.0;
        for index in 0..2 {
            backlog += cluster.metric(index, "omadm_outbox_backlog").await.unwrap_or(0.0);
        }
        if backlog > 0.0 {
            break (stopped.elapsed(), backlog);
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(120),
            "omadm_outbox_backlog still 0 two minutes into the broker outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Broker back (the memory engine starts empty; opening the bus creates the topics as an operator's broker
    // would still have them): the backlog drains and every result of phase B arrives.
    cluster.broker.restart();
    let restarted = Instant::now();
    drop(omadm_core::bus::open(&cluster.broker.url(), &cluster.topic_prefix).await.unwrap());
    let drained = loop {
        let mut backlog = 0.0;
        for index in 0..2 {
            backlog += cluster.metric(index, "omadm_outbox_backlog").await.unwrap_or(f64::MAX);
        }
        if backlog == 0.0 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(90),
            "outbox backlog still {backlog} 90 s after the broker came back:\n{}",
            cluster.logs(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let expected_during: BTreeSet<(String, u64)> =
        during.iter().flat_map(|(device, ids)| ids.iter().map(|id| (device.clone(), *id))).collect();
    let seen = fleet::consume_results(
        &cluster.broker.url(),
        &cluster.topic_prefix,
        &cluster.broker.client_settings(),
        &expected_during,
        Duration::from_secs(60),
    )
    .await;
    let missing: Vec<_> = expected_during.iter().filter(|key| !seen.by_command.contains_key(*key)).collect();
    assert!(
        missing.is_empty(),
        "{} results of the outage never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_all_done(&servers[0], &profile, &during).await;
    println!(
        "broker restart: {} sessions with the broker down, 0 failed, exchange p99 {:.1} ms; outbox backlog {} \
         seen {:.1} s into the outage, drained {:.1} s after the restart; {} results of the outage on the bus",
        report.sessions_ok,
        report.latency_ms.exchange.p99,
        rose.1,
        rose.0.as_secs_f64(),
        drained.as_secs_f64(),
        expected_during.len(),
    );
}

/// The harness itself: Redis comes back on its port with what it acknowledged, the broker on its port.
#[test]
fn the_harness_restarts_redis_with_its_data_and_the_broker_on_the_same_ports() {
    use std::io::{Read, Write};
    let command = |port: u16, line: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        let mut answer = [0u8; 64];
        let read = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    };
    let mut redis = RedisServer::start_durable();
    assert_eq!(command(redis.port(), "SET harness kept\r\n"), "+OK\r\n");
    redis.stop();
    assert!(!redis.ping(), "Redis still answers after stop");
    redis.restart();
    assert_eq!(command(redis.port(), "GET harness\r\n"), "$4\r\nkept\r\n");

    let mut broker = KafkaBroker::start();
    let Some(port) = broker.port() else {
        return;
    };
    broker.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the broker still listens after stop");
    broker.restart();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}
