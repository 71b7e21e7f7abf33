//! The Redis engine on a 3-node Redis Cluster each test starts for itself: the conformance suite and what only a cluster has.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support {
    pub mod redis_checks;
}

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_core::bus::Topic;
use omadm_core::model::{CommandState, ContentSource, RepositoryItem, SessionOutcome};
use omadm_core::store::conformance::{self, alert, device, event, get_command, open_session};
use omadm_core::store::{RedisStore, Store, StoreError, StoreOptions, WriteBatch};
use omadm_testkit::redis_cluster::{RedisCluster, cli};

/// A store on a cluster of its own, so every check starts from an empty keyspace.
async fn fresh_store() -> (Arc<dyn Store>, RedisCluster) {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    assert!(store.is_cluster());
    (Arc::new(store), cluster)
}

async fn start_cluster() -> RedisCluster {
    tokio::task::spawn_blocking(RedisCluster::start).await.unwrap()
}

/// The same, opened with `options`.
async fn fresh_store_with(options: StoreOptions) -> (Arc<dyn Store>, RedisCluster) {
    let cluster = start_cluster().await;
    let store = RedisStore::connect_with(&cluster.url(), &options).await.unwrap();
    (Arc::new(store), cluster)
}

omadm_core::store_conformance_tests!(fresh_store, fresh_store_with);

/// Every check on one shared store, and two stores under different prefixes do not see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_store_and_prefixes_separate() {
    let (store, cluster) = fresh_store().await;
    conformance::run_all(store.clone()).await;
    let other = RedisStore::connect_with_prefix(&cluster.url(), "other").await.unwrap();
    assert_eq!(other.get_device("conf-dev-1").await.unwrap(), None);
    assert!(store.get_device("conf-dev-1").await.unwrap().is_some());
    assert!(other.open_sessions().await.unwrap().is_empty());
    assert_eq!(other.outbox_len().await.unwrap(), 0);
}

/// `redis+cluster://h:p,h:p` and a comma list of `redis://` URLs both open the cluster engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_by_url() {
    let cluster = start_cluster().await;
    let listed: Vec<String> = cluster.nodes.iter().map(|node| node.url()).collect();
    for url in [cluster.url(), listed.join(",")] {
        let store = omadm_core::store::open(&url).await.unwrap();
        assert_eq!(store.outbox_shards(), 16_384, "{url}");
        store.commit(WriteBatch { devices: vec![device("url-1")], ..WriteBatch::default() }).await.unwrap();
        assert_eq!(store.get_device("url-1").await.unwrap(), Some(device("url-1")));
    }
}

/// Device ids of `count` different slots served by every node.
fn devices_on_every_node(cluster: &RedisCluster, count: usize) -> Vec<String> {
    let mut ports = BTreeSet::new();
    let mut slots = BTreeSet::new();
    let mut chosen = Vec::new();
    for index in 0.. {
        let device_id = format!("spread-{index}");
        let slot = cluster.key_slot(&device_id);
        let port = cluster.port_serving(slot);
        if !slots.insert(slot) || (ports.contains(&port) && ports.len() < 3) {
            continue;
        }
        ports.insert(port);
        chosen.push(device_id);
        if chosen.len() == count {
            break;
        }
    }
    assert_eq!(ports.len(), 3, "the devices spread over the three nodes");
    chosen
}

/// The engine's slot of a device and of its outbox shard is the slot Redis computes, and the
/// outbox keys it writes for a shard really are in that slot, on the node serving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_and_outbox_keys_agree_with_the_cluster() {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    let devices = devices_on_every_node(&cluster, 6);
    for device_id in &devices {
        let slot = cluster.key_slot(&format!("omadm:{{{device_id}}}:device"));
        assert_eq!(store.outbox_shard_of(device_id), slot, "{device_id}");
        let event = event(&format!("slot-e-{device_id}"), Topic::Results, device_id);
        store.commit(WriteBatch { events: vec![event], ..WriteBatch::default() }).await.unwrap();
        let port = cluster.port_serving(slot);
        let keys = cli(port, &["--scan", "--pattern", "omadm:*outbox-order"]);
        let ours: Vec<&str> = keys.lines().filter(|key| cluster.key_slot(key) == slot).collect();
        assert_eq!(ours.len(), 1, "one outbox of slot {slot} on its node: {keys}");
        assert_eq!(cli(port, &["ZRANGE", ours[0], "0", "-1"]).trim(), format!("slot-e-{device_id}"));
    }
}

/// One batch writing devices of different slots on different nodes: every device's writes land,
/// each device's events are in its own slot's outbox in order, its open session is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_across_slots_lands_in_each_slot() {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    let devices = devices_on_every_node(&cluster, 5);
    for device_id in &devices {
        store.enqueue_commands(device_id, vec![get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man")], 1).await.unwrap();
    }
    let mut batch = WriteBatch::default();
    for device_id in &devices {
        batch.devices.push(device(device_id));
        batch.sessions.push(open_session(&format!("{device_id}-s"), device_id, 10));
        let mut sent = store.get_command(device_id, 1).await.unwrap().unwrap();
        sent.state = CommandState::Sent;
        batch.commands.push(sent);
        batch.alerts.push(alert(device_id, 1));
        for index in 0..3 {
            batch.events.push(event(&format!("{device_id}-e-{index}"), Topic::Results, device_id));
        }
        batch.contents.push(RepositoryItem {
            path: format!("up/{device_id}"),
            content_type: "text/plain".to_owned(),
            blob: "items/stored-elsewhere".to_owned(),
            size: device_id.len() as u64,
            sha256: "0".repeat(64),
            source: ContentSource::Device,
            device_id: Some(device_id.clone()),
            stored_at: 1,
        });
    }
    store.commit(batch.clone()).await.unwrap();

    let open: BTreeSet<String> = store.open_sessions().await.unwrap().into_iter().map(|state| state.id).collect();
    for device_id in &devices {
        assert_eq!(store.get_device(device_id).await.unwrap(), Some(device(device_id)));
        assert!(open.contains(&format!("{device_id}-s")));
        assert!(store.queued_commands(device_id, 10).await.unwrap().is_empty());
        assert_eq!(store.pending_count(device_id).await.unwrap(), 1);
        assert_eq!(store.next_alert_id(device_id).await.unwrap(), 2);
        assert!(store.get_content(&format!("up/{device_id}")).await.unwrap().is_some());
        let shard = store.outbox_shard_of(device_id);
        let ids: Vec<String> = store.outbox(shard, 10).await.unwrap().into_iter().map(|event| event.id).collect();
        assert_eq!(ids, (0..3).map(|index| format!("{device_id}-e-{index}")).collect::<Vec<_>>());
    }
    assert_eq!(store.outbox_len().await.unwrap(), 3 * devices.len() as u64);
    let listed = store.list_devices(&Default::default(), None, 100).await.unwrap();
    assert_eq!(listed.devices.len(), devices.len());

    // Ending every session in one batch empties the open-sessions index of each slot.
    let ended = WriteBatch {
        ended_sessions: batch
            .sessions
            .iter()
            .map(|state| conformance::ended_session(state, 20, SessionOutcome::Ended))
            .collect(),
        ..WriteBatch::default()
    };
    store.commit(ended).await.unwrap();
    assert!(store.open_sessions().await.unwrap().is_empty());
}

/// Two stores on one cluster are two gateway nodes: leases, take-over and fencing between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_across_two_nodes() {
    let cluster = start_cluster().await;
    let node_a = RedisStore::connect(&cluster.url()).await.unwrap();
    let node_b = RedisStore::connect(&cluster.url()).await.unwrap();
    support::redis_checks::fencing_across_two_nodes(&node_a, &node_b).await;
}

/// load_session + commit: two requests per Package#3 exchange, on a cluster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_exchange_is_two_round_trips() {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    support::redis_checks::package_exchange_is_two_round_trips(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_of_many_devices() {
    let (store, _cluster) = fresh_store().await;
    support::redis_checks::open_sessions_of_many_devices(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_still_admits_its_holder() {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    support::redis_checks::a_lapsed_lease_still_admits_its_holder(&store).await;
}

/// Reading the length of all 16,384 outbox shards is one pipeline per node (plus CLUSTER SLOTS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_lengths_of_every_shard() {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    let devices = devices_on_every_node(&cluster, 9);
    for (index, device_id) in devices.iter().enumerate() {
        let events = (0..=index).map(|number| event(&format!("len-{device_id}-{number}"), Topic::Results, device_id));
        store.commit(WriteBatch { events: events.collect(), ..WriteBatch::default() }).await.unwrap();
    }
    let shards: Vec<u32> = (0..store.outbox_shards()).collect();
    let before = store.round_trips();
    let started = Instant::now();
    let lengths = store.outbox_lengths(&shards).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(store.round_trips() - before, 4, "CLUSTER SLOTS, then one pipeline per node");
    println!("outbox_lengths of {} shards: {elapsed:?}", shards.len());
    for (index, device_id) in devices.iter().enumerate() {
        assert_eq!(lengths[store.outbox_shard_of(device_id) as usize], index as u64 + 1);
    }
    assert_eq!(lengths.iter().sum::<u64>(), (1..=devices.len() as u64).sum::<u64>());
}

/// A node dies: calls on its slots fail with Unavailable while the others work; it comes back
/// on the same port with its cluster config: calls work again without a new store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_a_node_restarts() {
    let mut cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    let devices = devices_on_every_node(&cluster, 3);
    for device_id in &devices {
        store.commit(WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() }).await.unwrap();
    }
    let victim_port = cluster.nodes[1].port();
    let (on_victim, elsewhere): (Vec<&String>, Vec<&String>) =
        devices.iter().partition(|device_id| cluster.port_serving(cluster.key_slot(device_id)) == victim_port);
    assert!(!on_victim.is_empty() && !elsewhere.is_empty());

    cluster.nodes[1].kill();
    let failed = store.get_device(on_victim[0]).await;
    assert!(matches!(failed, Err(StoreError::Unavailable(_))), "{failed:?}");
    assert!(store.get_device(elsewhere[0]).await.unwrap().is_some(), "other nodes still answer");

    cluster.nodes[1].restart();
    tokio::task::spawn_blocking({
        let ports: Vec<u16> = cluster.nodes.iter().map(|node| node.port()).collect();
        move || wait_cluster_ok(&ports)
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.commit(WriteBatch { devices: vec![device(on_victim[0])], ..WriteBatch::default() }).await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the store did not recover: {error}"),
        }
    }
    // The node kept no data (no persistence); what is written after is read back.
    assert_eq!(store.get_device(on_victim[0]).await.unwrap(), Some(device(on_victim[0])));
}

fn wait_cluster_ok(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        while !cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the cluster did not heal");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The requests of every Store call, as docs/cluster.md lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_every_call() {
    let cluster = start_cluster().await;
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    support::redis_checks::round_trips_of_every_call(&store).await;
}

/// Package#3 exchange rates for the docs (`cargo test -p omadm-core --test NAME -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn exchange_rates() {
    let cluster = start_cluster().await;
    let store = Arc::new(RedisStore::connect(&cluster.url()).await.unwrap());
    support::redis_checks::exchange_rates(store, "cluster", 32, 200).await;
}
