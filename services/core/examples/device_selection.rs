//! How fast the Store selects a slice of a large fleet by inventory. DEVICES devices are registered (default
//! 1,000,000; every tenth on FwV 1.2), then the tenth on model X1 and FwV 1.2 is listed in pages of 1,000
//! through the inventory index and counted, against a walk of the whole registry in the same run (the
//! baseline). Embedded first, then on a redis-server of its own on a free loopback port.
//!
//! ```text
//! cargo run --release -p omadm-core --example device_selection -- [DEVICES]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use omadm_core::model::DeviceFilter;
use omadm_core::store::{EmbeddedStore, RedisStore, Store};
use omadm_testkit::fixtures::{register_fleet, walk_devices};
use omadm_testkit::redis::RedisServer;

/// Devices per registration commit.
const BATCH: usize = 1_000;
/// Devices per listed page.
const PAGE: usize = 1_000;

#[tokio::main]
async fn main() {
    let devices: usize = std::env::args().nth(1).map_or(1_000_000, |count| count.parse().expect("DEVICES is a number"));
    let directory = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    run("embedded", &embedded, devices).await;
    let redis = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    run("redis", &store, devices).await;
}

async fn run(engine: &str, store: &Arc<dyn Store>, devices: usize) {
    let started = Instant::now();
    register_fleet(store.as_ref(), devices, BATCH).await;
    let registered = started.elapsed();
    let selection =
        DeviceFilter { model: Some("X1".to_owned()), fwv: Some("1.2".to_owned()), ..DeviceFilter::default() };
    let (selected, select_time) = walk_devices(store.as_ref(), &selection, PAGE).await;
    let started = Instant::now();
    let counted = store.count_devices(&selection).await.unwrap();
    let count_time = started.elapsed();
    let one_term = DeviceFilter { fwv: Some("1.2".to_owned()), ..DeviceFilter::default() };
    let started = Instant::now();
    let counted_one = store.count_devices(&one_term).await.unwrap();
    let count_one_time = started.elapsed();
    let (walked, walk_time) = walk_devices(store.as_ref(), &DeviceFilter::default(), PAGE).await;
    assert_eq!(
        (selected, counted as usize, counted_one as usize, walked),
        (devices.div_ceil(10), selected, selected, devices)
    );
    println!(
        "{engine}: {devices} devices registered in {:.1} s; {selected} selected (mod=X1&fwv=1.2) in {:.2} s \
         ({:.0} devices/s); counted in {:.3} s, one term (fwv=1.2) in {:.4} s; baseline: the whole registry \
         walked in {:.2} s ({:.0} devices/s); selecting a tenth took {:.2} of the walk's time",
        registered.as_secs_f64(),
        select_time.as_secs_f64(),
        selected as f64 / select_time.as_secs_f64(),
        count_time.as_secs_f64(),
        count_one_time.as_secs_f64(),
        walk_time.as_secs_f64(),
        walked as f64 / walk_time.as_secs_f64(),
        select_time.as_secs_f64() / walk_time.as_secs_f64(),
    );
}
