//! Node loss in cluster mode, with real processes: three `omadm gateway` nodes share a redis-server and a
//! Kafka-protocol broker; 2,000 devsim devices run multi-package sessions spread over all nodes (a node drawn
//! at random per request, so most packages are forwarded to the device's owner); one node is SIGKILLed in the
//! middle. Every session completes, every command is final in the API, and `omadm.results` carries exactly one
//! distinct event id per command result (repeats on the wire only with the same id).
//!
//! `OMADM_CLUSTER_DEVICES` changes the fleet size (default 2,000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod cluster_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use cluster_support::fleet::{self, is_final};
use omadm_client::retry::ServerSelection;
use omadm_devsim::schedule::Bounds;

/// A device's commands and sessions as a surviving node's API shows them, for a failure message.
async fn explain(cluster: &Cluster, device_id: &str) -> String {
    let (_, commands) =
        cluster.api(0, reqwest::Method::GET, &format!("/api/v1/devices/{device_id}/commands"), None).await;
    let (_, sessions) =
        cluster.api(0, reqwest::Method::GET, &format!("/api/v1/devices/{device_id}/sessions"), None).await;
    format!("{device_id} commands: {commands}\n{device_id} sessions: {sessions}")
}

fn fleet_size() -> u32 {
    std::env::var("OMADM_CLUSTER_DEVICES").ok().and_then(|value| value.parse().ok()).unwrap_or(2000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_loses_no_session_and_no_result() {
    let started = Instant::now();
    let devices = fleet_size();
    let mut cluster = Cluster::start(3, &["--max-commands-per-package", "1"]).await;
    let servers = cluster.bases();
    let profile = fleet::profile(devices, "fo-");
    fleet::register(&servers, &profile).await;
    let acknowledged = fleet::enqueue(&servers, &profile, &fleet::three_gets()).await;
    let setup = started.elapsed();

    let bounds = Bounds { sessions_per_device: 1, interval: Duration::ZERO, duration: None };
    let config = fleet::run_config(servers.clone(), ServerSelection::RandomPerRequest, bounds, 64);
    let collector = std::sync::Arc::new(omadm_devsim::report::Collector::new().unwrap());
    let run = tokio::spawn(omadm_devsim::sim::run(profile.clone(), config, std::sync::Arc::clone(&collector)));

    // SIGKILL node 2 once a third of the sessions are done: the others are in flight on every node.
    let kill_at = u64::from(devices / 3);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, failed) = collector.progress();
        if ok + failed >= kill_at {
            break;
        }
        assert!(Instant::now() < deadline, "only {ok} sessions ok, {failed} failed after 120 s:\n{}", cluster.logs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_after = collector.progress();
    cluster.gateways[1].kill();
    let report = run.await.unwrap();
    let run_time = started.elapsed() - setup;

    if report.sessions_failed > 0 {
        let first = &report.failure_samples[0].device_id;
        panic!(
            "{} sessions failed: {:?}, e.g. {:?}\n{}\n{}",
            report.sessions_failed,
            report.errors,
            report.failure_samples,
            explain(&cluster, first).await,
            cluster.logs(40)
        );
    }
    assert_eq!(report.sessions_ok, u64::from(devices), "{report:?}");
    assert!(report.failovers > 0, "no device ever met the dead node: {report:?}");

    // The API (through a surviving node): every queued command is final and answered once.
    let commands = fleet::commands_of(&cluster.gateways[0].base, &profile).await;
    let mut expected = BTreeSet::new();
    let mut not_done = Vec::new();
    for (device_id, ids) in &acknowledged {
        let records = &commands[device_id];
        for id in ids {
            let record = records.iter().find(|record| record["id"].as_u64() == Some(*id));
            let record = record.unwrap_or_else(|| panic!("command {id} of {device_id} is gone: {records:?}"));
            if record["state"] != "done" || record["status"] != 200 {
                not_done.push(device_id.clone());
            }
        }
    }
    if let Some(device_id) = not_done.first() {
        panic!(
            "{} devices have commands not done after their session ended OK, e.g. {device_id}:\n{}\nreport {report:?}",
            not_done.len(),
            explain(&cluster, device_id).await,
        );
    }
    for (device_id, records) in &commands {
        for record in records.iter().filter(|record| is_final(record)) {
            expected.insert((device_id.clone(), record["id"].as_u64().unwrap()));
        }
    }
    let queued: usize = acknowledged.values().map(Vec::len).sum();
    assert!(expected.len() >= queued, "{} final commands, {queued} queued by the operator", expected.len());

    // The bus: one distinct result id per final command, nothing else.
    let seen = fleet::consume_results(
        &cluster.broker.url(),
        &cluster.topic_prefix,
        &cluster.broker.client_settings(),
        &expected,
        Duration::from_secs(90),
    )
    .await;
    let missing: Vec<&(String, u64)> = expected.iter().filter(|key| !seen.by_command.contains_key(*key)).collect();
    assert!(
        missing.is_empty(),
        "{} results never reached the bus, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<_> = seen.by_command.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "commands with more than one result id: {:?}", &twice[..twice.len().min(5)]);
    let unknown: Vec<_> = seen.by_command.keys().filter(|key| !expected.contains(*key)).collect();
    assert!(
        unknown.is_empty(),
        "results of commands the API does not show as final: {:?}",
        &unknown[..unknown.len().min(5)]
    );
    assert_eq!(seen.ids.len(), expected.len());

    println!(
        "cluster failover: {devices} devices on 3 nodes, node-2 SIGKILLed after {} sessions; sessions ok {}, \
         failed {}; packages {}; retries {}, failovers {}, 503/429 answers {}; run {:.1} s (setup {:.1} s); \
         command results {} (API) = {} distinct ids on {}results ({} deliveries)",
        killed_after.0 + killed_after.1,
        report.sessions_ok,
        report.sessions_failed,
        report.packages,
        report.retries,
        report.failovers,
        report.unavailable_answers,
        run_time.as_secs_f64(),
        setup.as_secs_f64(),
        expected.len(),
        seen.ids.len(),
        cluster.topic_prefix,
        seen.deliveries,
    );
}
