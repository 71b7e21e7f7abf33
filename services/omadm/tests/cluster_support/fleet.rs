//! Driving a cluster as its users do: operators queue commands through the API, devsim's fleet runs sessions
//! against every node, and a Bus consumer reads `omadm.results`; then what the API shows is compared with what
//! reached the bus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_client::retry::{RetryPolicy, ServerSelection};
use omadm_core::bus::{BusOptions, Topic};
use omadm_devsim::fumo::FirmwareBehaviour;
use omadm_devsim::profile::FleetProfile;
use omadm_devsim::report::{Collector, Report};
use omadm_devsim::schedule::Bounds;
use omadm_devsim::sim::RunConfig;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::ADMIN_TOKEN;

pub const PASSWORD: &str = "cluster-secret";

/// The GETs queued per device: three leaves of DevInfo, one per Package#2 with `--max-commands-per-package 1`.
pub fn three_gets() -> Value {
    json!([
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"],
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//Mod"],
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//Man"]
    ])
}

pub fn profile(devices: u32, prefix: &str) -> FleetProfile {
    FleetProfile::from_flags(devices, prefix, PASSWORD, "SIM-1", "1.0.0")
}

/// A devsim run over `servers` with retries generous enough to ride out a node's death or a store restart.
pub fn run_config(servers: Vec<String>, selection: ServerSelection, bounds: Bounds, concurrency: usize) -> RunConfig {
    RunConfig {
        servers,
        selection,
        retry: RetryPolicy {
            max_retries: 30,
            max_retry_after: Duration::from_secs(5),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            down_for: Duration::from_secs(10),
        },
        server_id: "omadm".to_owned(),
        auth_secret: None,
        report_devices: false,
        bounds,
        concurrency,
        notify_port: None,
        firmware: FirmwareBehaviour { fail_rate: 0.0, duration: Duration::from_millis(1), keep_version: false },
        alert_rate: 0.0,
        progress: false,
    }
}

/// Registers the fleet through the API of every node in turn; panics with the failure counts.
pub async fn register(servers: &[String], profile: &FleetProfile) {
    let collector = Arc::new(Collector::new().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let failed = omadm_devsim::register::register_fleet(
        &http,
        servers,
        ADMIN_TOKEN,
        profile,
        32,
        &Default::default(),
        &collector,
    )
    .await;
    let report = collector.report(profile.devices, Duration::ZERO);
    assert_eq!(failed, 0, "registrations failed: {:?}", report.errors);
}

/// One operator API call; `None` when no node answered.
pub async fn api(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut request = http.request(method, format!("{base}{path}")).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Queues `commands` for every device of `profile` (device i through server i mod n), 32 calls at a time.
/// Returns device id -> the command ids the API acknowledged (201).
pub async fn enqueue(servers: &[String], profile: &FleetProfile, commands: &Value) -> BTreeMap<String, Vec<u64>> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let permits = Arc::new(Semaphore::new(32));
    let mut tasks = JoinSet::new();
    for index in 0..profile.devices {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let device_id = profile.device(index).device_id;
        let base = servers[index as usize % servers.len()].clone();
        let (http, body) = (http.clone(), json!({ "commands": commands }));
        tasks.spawn(async move {
            let _permit = permit;
            let path = format!("/api/v1/devices/{device_id}/commands");
            let answer = api(&http, &base, reqwest::Method::POST, &path, Some(&body)).await;
            let Some((201, body)) = answer else { panic!("queuing commands for {device_id} on {base}: {answer:?}") };
            let ids = body["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect();
            (device_id, ids)
        });
    }
    let mut acknowledged = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (device_id, ids) = done.unwrap();
        acknowledged.insert(device_id, ids);
    }
    acknowledged
}

/// Every command record of every device of `profile` as the API shows it, read through `base`.
pub async fn commands_of(base: &str, profile: &FleetProfile) -> BTreeMap<String, Vec<Value>> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let permits = Arc::new(Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for index in 0..profile.devices {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let device_id = profile.device(index).device_id;
        let (http, base) = (http.clone(), base.to_owned());
        tasks.spawn(async move {
            let _permit = permit;
            let path = format!("/api/v1/devices/{device_id}/commands?limit=1000");
            let answer = api(&http, &base, reqwest::Method::GET, &path, None).await;
            let Some((200, body)) = answer else { panic!("listing the commands of {device_id}: {answer:?}") };
            (device_id, body["commands"].as_array().unwrap().clone())
        });
    }
    let mut all = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (device_id, commands) = done.unwrap();
        all.insert(device_id, commands);
    }
    all
}

/// True for a command the server will not send again: answered (`done`, `failed`) or given up (`expired`).
pub fn is_final(command: &Value) -> bool {
    matches!(command["state"].as_str(), Some("done" | "failed" | "expired"))
}

/// What a consumer of `omadm.results` saw.
#[derive(Debug, Default)]
pub struct ResultsSeen {
    /// Deliveries of `command.result` events, repeats included.
    pub deliveries: u64,
    /// Distinct event ids.
    pub ids: BTreeSet<String>,
    /// (device id, command id) -> the distinct event ids about it.
    pub by_command: BTreeMap<(String, u64), BTreeSet<String>>,
}

/// Consumes `results` from the oldest event, in a new consumer group that never commits (so it fetches whole
/// record batches from start to end), until every (device, command) of `expected` has a result event,
/// or until `within` passes (the caller compares and reports what is missing).
pub async fn consume_results(
    bus_url: &str,
    topic_prefix: &str,
    settings: &[(String, String)],
    expected: &BTreeSet<(String, u64)>,
    within: Duration,
) -> ResultsSeen {
    let options = BusOptions {
        topic_prefix: topic_prefix.to_owned(),
        kafka_settings: settings.to_vec(),
        ..BusOptions::default()
    };
    let bus = omadm_core::bus::open_with(bus_url, &options)
        .await
        .unwrap_or_else(|error| panic!("cannot open the bus {bus_url}: {error}"));
    let group = format!("cluster-test-{}", omadm_testkit::ports::free_port());
    let mut subscription = bus
        .subscribe(&group, &[Topic::Results])
        .await
        .unwrap_or_else(|error| panic!("cannot subscribe to {topic_prefix}results on {bus_url}: {error}"));
    let mut seen = ResultsSeen::default();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let batch = subscription.next_batch(1000, Duration::from_secs(1)).await.unwrap();
        for delivery in &batch {
            let event = &delivery.event;
            if event.event_type != "command.result" {
                continue;
            }
            seen.deliveries += 1;
            seen.ids.insert(event.id.clone());
            let device_id = event.payload["device_id"].as_str().unwrap_or_default().to_owned();
            let command_id = event.payload["command_id"].as_u64().unwrap_or_default();
            seen.by_command.entry((device_id, command_id)).or_default().insert(event.id.clone());
        }
        if expected.iter().all(|key| seen.by_command.contains_key(key)) {
            break;
        }
    }
    seen
}

/// Runs the fleet; the report comes back with the collector's counts.
pub async fn run(profile: FleetProfile, config: RunConfig) -> (Report, Arc<Collector>) {
    let collector = Arc::new(Collector::new().unwrap());
    let report = omadm_devsim::sim::run(profile, config, Arc::clone(&collector)).await;
    (report, collector)
}
