//! A firmware campaign in cluster mode, with real processes: one `omadm gateway`, one `omadm notifier` and two
//! `omadm campaigns` replicas share a store and a Kafka-protocol broker; a devsim fleet listens for its
//! Package#0 on loopback. Mid-campaign something dies:
//!
//! - the campaigns replica that is starting devices (SIGKILL): the survivor takes the campaign's lease and the
//!   killed one's partitions;
//! - on a Redis Cluster of three primaries with a replica each, the primary that serves the campaign's device
//!   records (SIGKILL): its replica is promoted and every process's client follows the new map.
//!
//! Either way the campaign completes with every device updated exactly once (devsim counts each update it runs),
//! none skipped, and each device's final outcome on `omadm.campaigns` once. A start whose commit the failover
//! cut in two (the campaign's slot written, the device's queue and notification not) leaves its device
//! `notified` with nothing to do: its deadline (60 s here) and one retry of `timed_out` start it again.
//!
//! `OMADM_CLUSTER_CAMPAIGN_DEVICES` changes the fleet size (default 400).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::fleet::{self, PASSWORD};
use cluster_support::{ADMIN_TOKEN, Cluster};
use omadm_client::retry::ServerSelection;
use omadm_core::bus::{BusOptions, Topic};
use omadm_devsim::profile::FleetProfile;
use omadm_devsim::register::NotifyRegistration;
use omadm_devsim::report::Collector;
use omadm_devsim::schedule::Bounds;
use omadm_testkit::ports::{free_port, free_udp_port};
use omadm_testkit::process::{self, Output, Spawned};
use omadm_testkit::redis_cluster::{ClusterShape, RedisCluster};
use serde_json::{Value, json};

/// Partitions of every topic: several per replica, so the survivor has some to take over.
const PARTITIONS: &str = "4";
/// Devices succeeded before the starting replica is killed: the campaign is well under way.
const KILL_AFTER_SUCCEEDED: u64 = 80;

fn fleet_size() -> u32 {
    std::env::var("OMADM_CLUSTER_CAMPAIGN_DEVICES").ok().and_then(|value| value.parse().ok()).unwrap_or(400)
}

/// An `omadm notifier` or `omadm campaigns` process on the cluster's backends, once its banner is out.
struct Role {
    process: Spawned,
    ops: String,
}

fn start_role(cluster: &Cluster, role: &str, name: &str, extra: &[&str]) -> Role {
    let ops_port = free_port();
    let mut command = process::command(env!("CARGO_BIN_EXE_omadm"));
    command
        .arg(role)
        .args(["--store", &cluster.store_url, "--bus", &cluster.broker.url()])
        .args(["--topic-prefix", &cluster.topic_prefix, "--kafka-partitions", PARTITIONS, "--node-id", name])
        .args(["--ops-listen", &format!("127.0.0.1:{ops_port}")])
        .args(cluster.broker.client_setting_args())
        .args(extra)
        .env("RUST_LOG", "warn");
    let mut process = Spawned::spawn(command, Output::Lines);
    process.wait_for_line(Duration::from_secs(60), |line| line.starts_with("ops: "));
    Role { process, ops: format!("http://127.0.0.1:{ops_port}") }
}

/// Devices a campaigns replica has started (records it wrote as `notified`), from its `/metrics`.
async fn started_by(http: &reqwest::Client, replica: &Role) -> u64 {
    let Ok(answer) = http.get(format!("{}/metrics", replica.ops)).send().await else { return 0 };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("omadm_campaign_devices_total{") && line.contains("state=\"notified\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The campaign as the API shows it; a 503 (the store failing over) is asked again for up to 30 s.
async fn campaign(cluster: &Cluster, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, campaign) = cluster.api(0, reqwest::Method::GET, &format!("/api/v1/campaigns/{id}"), None).await;
        if status == 200 {
            return campaign;
        }
        assert!(status == 503 && Instant::now() < deadline, "{status} {campaign}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `campaign.device_changed` events of `campaign_id` into a final state, read from the oldest in a group of
/// its own until `devices` devices have one or `within` passes: device id -> the distinct event ids.
async fn final_outcomes(cluster: &Cluster, campaign_id: &str, devices: usize) -> BTreeMap<String, BTreeSet<String>> {
    let options = BusOptions {
        topic_prefix: cluster.topic_prefix.clone(),
        kafka_settings: cluster.broker.client_settings(),
        ..BusOptions::default()
    };
    let bus = omadm_core::bus::open_with(&cluster.broker.url(), &options).await.unwrap();
    let group = format!("cluster-campaign-test-{}", free_port());
    let mut subscription = bus.subscribe(&group, &[Topic::Campaigns]).await.unwrap();
    let mut outcomes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && outcomes.len() < devices {
        for delivery in subscription.next_batch(1000, Duration::from_secs(1)).await.unwrap() {
            let event = &delivery.event;
            let payload = &event.payload;
            let is_final = ["succeeded", "failed", "timed_out", "skipped"].iter().any(|state| payload["to"] == *state);
            if event.event_type == "campaign.device_changed" && payload["campaign_id"] == campaign_id && is_final {
                let device_id = payload["device_id"].as_str().unwrap().to_owned();
                outcomes.entry(device_id).or_default().insert(event.id.clone());
            }
        }
    }
    outcomes
}

/// What dies mid-campaign.
enum Fault<'a> {
    CampaignsReplica,
    RedisPrimary(&'a mut RedisCluster),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigns_replica_killed_mid_campaign_neither_skips_nor_doubles_a_device() {
    let cluster = Cluster::start(1, &["--kafka-partitions", PARTITIONS]).await;
    campaign_through(&cluster, Fault::CampaignsReplica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_primary_killed_mid_campaign_loses_and_doubles_nothing() {
    let mut redis = RedisCluster::start_with(ClusterShape { primaries: 3, replicas_per_primary: 1 });
    let cluster = Cluster::start_on(1, &["--kafka-partitions", PARTITIONS], Some(redis.url())).await;
    campaign_through(&cluster, Fault::RedisPrimary(&mut redis)).await;
}

async fn campaign_through(cluster: &Cluster, fault: Fault<'_>) {
    let devices = fleet_size();
    let servers = cluster.bases();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let _notifier = start_role(cluster, "notifier", "notifier-1", &[]);
    let replica_flags = ["--campaigns-tick-ms", "100", "--campaigns-lease-s", "2"];
    let mut replicas = [
        start_role(cluster, "campaigns", "campaigns-1", &replica_flags),
        start_role(cluster, "campaigns", "campaigns-2", &replica_flags),
    ];

    let answer = http
        .put(format!("{}/api/v1/repository/fw/sim-2.bin", servers[0]))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 1024])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());

    // The fleet: registered with its notification address, a first session each (DevInfo, MOS), then waiting.
    let profile = FleetProfile::from_flags(devices, "cc-", PASSWORD, "SIM-1", "1.0.0");
    let notify_port = free_udp_port();
    let collector = Arc::new(Collector::new().unwrap());
    let registration = NotifyRegistration { port: Some(notify_port), auth_secret: None };
    let failed =
        omadm_devsim::register::register_fleet(&http, &servers, ADMIN_TOKEN, &profile, 32, &registration, &collector)
            .await;
    assert_eq!(failed, 0, "registrations failed");
    let bounds = Bounds { sessions_per_device: 1, interval: Duration::ZERO, duration: Some(Duration::from_secs(300)) };
    let mut config = fleet::run_config(servers.clone(), ServerSelection::Sticky, bounds, 64);
    config.notify_port = Some(notify_port);
    let run = tokio::spawn(omadm_devsim::sim::run(profile.clone(), config, Arc::clone(&collector)));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, counted) = cluster.api(0, reqwest::Method::GET, "/api/v1/counts/devices?mod=SIM-1", None).await;
        if counted["count"] == json!(devices) {
            break;
        }
        assert!(Instant::now() < deadline, "the fleet's inventory never arrived: {counted}\n{}", cluster.logs(30));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let body = json!({"name": "sim-2", "target": {"filter": {"mod": "SIM-1", "fwv": "1.0.0"}},
        "action": {"firmware": {"url": "fw/sim-2.bin", "version": "2.0.0"}},
        "policy": {"max_starts_per_minute": 1200, "max_in_flight": 100, "device_deadline_s": 60,
                   "retries": {"timed_out": 2}, "retry_backoff_s": 1}});
    let (status, created) = cluster.api(0, reqwest::Method::POST, "/api/v1/campaigns", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // Kill the replica that is starting devices now, once the campaign is well under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = campaign(cluster, &id).await;
        if now["counts"]["succeeded"].as_u64() >= Some(KILL_AFTER_SUCCEEDED) {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign never got going: {now}\n{}", cluster.logs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_kill = campaign(cluster, &id).await;
    let killed = match fault {
        Fault::CampaignsReplica => {
            let victim = loop {
                let before = [started_by(&http, &replicas[0]).await, started_by(&http, &replicas[1]).await];
                tokio::time::sleep(Duration::from_millis(300)).await;
                let after = [started_by(&http, &replicas[0]).await, started_by(&http, &replicas[1]).await];
                if let Some(index) = (0..2).find(|index| after[*index] > before[*index]) {
                    break index;
                }
                assert!(Instant::now() < deadline, "no replica is starting devices");
            };
            replicas[victim].process.kill();
            format!("campaigns-{}", victim + 1)
        }
        Fault::RedisPrimary(redis) => {
            // The primary of the slot the campaign's device records hash to ({campaign id}).
            let port = redis.port_serving(redis.key_slot(&format!("{{{id}}}")));
            let node = redis.nodes.iter_mut().find(|node| node.port() == port).unwrap();
            node.kill();
            format!("the Redis primary on port {port}")
        }
    };

    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        let now = campaign(cluster, &id).await;
        if now["state"] != json!("running") {
            break now;
        }
        assert!(Instant::now() < deadline, "the campaign never finished after the kill: {now}\n{}", cluster.logs(30));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(done["state"], json!("completed"), "{done}");
    let counts = &done["counts"];
    assert_eq!(counts["succeeded"], json!(devices), "every device updated, none skipped: {done}");
    for state in ["failed", "timed_out", "skipped"] {
        assert_eq!(counts[state], json!(0), "{state}: {done}");
    }

    // devsim ran each device's update once: a second start would have run it again.
    let report = collector.report(devices, Duration::ZERO);
    run.abort();
    assert_eq!(
        (report.firmware.succeeded, report.firmware.failed),
        (u64::from(devices), 0),
        "updates run by the fleet: {:?}",
        report.firmware
    );

    // The campaigns topic: one final outcome per device, no more.
    let outcomes = final_outcomes(cluster, &id, devices as usize).await;
    assert_eq!(outcomes.len(), devices as usize, "devices with a final outcome on the topic");
    let twice: Vec<_> = outcomes.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "devices with more than one final outcome: {:?}", &twice[..twice.len().min(5)]);
    println!(
        "cluster campaign: {devices} devices, {killed} SIGKILLed at {} succeeded / {} started; completed with \
         {} succeeded; the fleet ran {} updates",
        at_kill["counts"]["succeeded"], at_kill["started"], counts["succeeded"], report.firmware.succeeded,
    );
}
