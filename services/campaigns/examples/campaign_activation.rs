//! How fast a campaign over a large fleet is activated, and what that costs the orchestrator in memory.
//! DEVICES devices are registered (default 1,000,000, all of maker ACME), then a campaign targets them all
//! (`man=ACME`) and the campaigns role, in this process, selects the target: a device record, its membership and
//! a `campaign.device_changed` event per device, committed a page at a time with the campaign's cursor, while
//! starts (queued commands and notification requests) flow at the campaign's rate, and the outbox relay
//! publishes the events to JSONL files as in `omadm serve`. The baseline, in the same
//! run, is a read-only walk of the same target through the inventory index: the selection cannot be faster.
//! Embedded first (a temp dir), then on a redis-server of its own on a free loopback port.
//!
//! ```text
//! cargo run --release -p omadm-campaigns --example campaign_activation -- [DEVICES] [STARTS_PER_MINUTE] [ENGINES]
//! ```
//!
//! ENGINES is `embedded,redis` (the default), `embedded` or `redis`.
//!
//! Resident memory (VmRSS) is sampled as the selection passes each quarter of the target: a streamed
//! selection keeps the orchestrator's own share flat (the embedded engine's page cache lives in the same process
//! and is part of the figure there).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_campaigns::{CampaignsSettings, Orchestrator};
use omadm_core::bus::relay::OutboxRelay;
use omadm_core::bus::{Bus, JsonlBus};
use omadm_core::campaign::records::get_campaign;
use omadm_core::campaign::{CampaignSpec, control};
use omadm_core::clock::now_millis;
use omadm_core::model::DeviceFilter;
use omadm_core::store::{EmbeddedStore, RedisStore, Store};
use omadm_testkit::fixtures::{register_fleet, walk_devices};
use omadm_testkit::redis::RedisServer;

/// Devices per registration commit.
const REGISTER_BATCH: usize = 1_000;
/// Devices per page of the baseline walk (the selection's page).
const WALK_PAGE: usize = 1_000;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().map_or(1_000_000, |count| count.parse().expect("DEVICES is a number"));
    let rate: u32 = args.next().map_or(60_000, |rate| rate.parse().expect("STARTS_PER_MINUTE is a number"));
    let engines = args.next().unwrap_or_else(|| "embedded,redis".to_owned());
    let directory = tempfile::tempdir().unwrap();
    if engines.split(',').any(|engine| engine == "embedded") {
        let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&directory.path().join("store")).await.unwrap());
        run("embedded", embedded, directory.path(), devices, rate).await;
    }
    if engines.split(',').any(|engine| engine == "redis") {
        let redis = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
        run("redis", store, directory.path(), devices, rate).await;
        println!("redis used_memory after the run: {} bytes", used_memory(&redis.url()).await);
        println!("redis commandstats: {}", script_time(&redis.url()).await);
    }
}

/// The process's resident set in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut connection).await.unwrap();
    info.lines().find_map(|line| line.strip_prefix("used_memory:")).and_then(|value| value.trim().parse().ok()).unwrap()
}

/// What Redis reports of the scripts it ran (EVALSHA: calls, total and per-call time).
async fn script_time(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await.unwrap();
    info.lines().filter(|line| line.starts_with("cmdstat_evalsha:")).collect::<Vec<_>>().join("; ")
}

async fn run(engine: &str, store: Arc<dyn Store>, directory: &std::path::Path, devices: usize, rate: u32) {
    let started = Instant::now();
    register_fleet(store.as_ref(), devices, REGISTER_BATCH).await;
    let registered = started.elapsed();
    let target = DeviceFilter { man: Some("ACME".to_owned()), ..DeviceFilter::default() };
    let (walked, walk_time) = walk_devices(store.as_ref(), &target, WALK_PAGE).await;
    assert_eq!(walked, devices);

    let bus: Arc<dyn Bus> =
        Arc::new(JsonlBus::open(&directory.join(format!("events-{engine}")), "omadm").await.unwrap());
    // The relay publishes the outbox as `omadm serve` does: a selection's events must leave the store, or a
    // million of them would fill the campaign's outbox shard.
    let relay = OutboxRelay::spawn(Arc::clone(&store), Arc::clone(&bus));
    let settings = CampaignsSettings::default();
    let orchestrator = Orchestrator::start(Arc::clone(&store), bus, settings).await.unwrap();
    let spec = CampaignSpec::from_json(
        serde_json::json!({"name": "activation", "target": {"filter": {"man": "ACME"}},
            "action": {"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]]},
            "policy": {"max_in_flight": 1_000_000, "max_starts_per_minute": rate, "device_deadline_s": 86_400}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let rss_before = rss_mib();
    let activated = Instant::now();
    let id = format!("cmp-activation-{engine}");
    control::create(store.as_ref(), id.clone(), spec, control::Descriptors::default(), None, now_millis())
        .await
        .unwrap();
    let mut quarters = Vec::new();
    let mut peak = rss_before;
    let campaign = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rss = rss_mib();
        peak = peak.max(rss);
        let campaign = get_campaign(store.as_ref(), &id).await.unwrap().unwrap().value;
        let selected = campaign.progress.selected as usize;
        while quarters.len() < 4 && selected * 4 >= devices * (quarters.len() + 1) {
            quarters.push(rss);
        }
        if campaign.progress.selection_done {
            break campaign;
        }
        assert!(activated.elapsed() < Duration::from_secs(600), "selection stalled at {selected}");
    };
    let activation = activated.elapsed();
    orchestrator.stop().await;
    relay.stop().await;
    assert_eq!(campaign.progress.selected as usize, devices);
    let per_second = devices as f64 / activation.as_secs_f64();
    let walk_rate = walked as f64 / walk_time.as_secs_f64();
    let quarters: Vec<String> = quarters.iter().map(|rss| format!("{rss:.0}")).collect();
    println!(
        "{engine}: {devices} devices registered in {:.1} s; campaign activated (every device selected) in {:.2} s: \
         {per_second:.0} devices/s, {} started meanwhile at {rate}/min; baseline: the target walked read-only in \
         {:.2} s ({walk_rate:.0} devices/s), activation at {:.2} of the walk's rate; RSS MiB before {rss_before:.0}, \
         at each quarter {}, peak {peak:.0}",
        registered.as_secs_f64(),
        activation.as_secs_f64(),
        campaign.progress.started,
        walk_time.as_secs_f64(),
        per_second / walk_rate,
        quarters.join(" / "),
    );
}
