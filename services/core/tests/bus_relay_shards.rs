//! The outbox relay over a store whose outbox has several shards: order per shard, ownership, shard hints.
//!
//! The store is several real embedded stores side by side, one per outbox
//! shard (`Shards` below, on the test kit's Store wrapper: events go to the
//! store of their key's shard, everything else to the first), which is the outbox shape of Redis Cluster
//! (a shard per slot) without a cluster; the Redis Cluster tests run the same
//! relay against real slots.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omadm_core::bus::relay::{OutboxRelay, RelayConfig, ShardOwnership};
use omadm_core::bus::{Bus, Event, JsonlBus, Topic};
use omadm_core::cluster::{NodeInfo, rendezvous_owner};
use omadm_core::store::conformance::event;
use omadm_core::store::interpose::{Interpose, Interposed};
use omadm_core::store::{EmbeddedStore, Store, StoreError, WriteBatch};

const SHARDS: u32 = 4;

/// One embedded store per outbox shard; the first (the test store's inner one) also holds everything that is
/// not an event.
struct Shards {
    shards: Vec<Arc<EmbeddedStore>>,
}

impl Shards {
    async fn open(directory: &Path) -> Shards {
        let mut shards = Vec::new();
        for shard in 0..SHARDS {
            shards.push(Arc::new(EmbeddedStore::open(&directory.join(format!("shard-{shard}"))).await.unwrap()));
        }
        Shards { shards }
    }

    fn shard(&self, shard: u32) -> Result<&EmbeddedStore, StoreError> {
        self.shards
            .get(shard as usize)
            .map(|store| &**store)
            .ok_or_else(|| StoreError::Unavailable(format!("no shard {shard}")))
    }
}

/// FNV-1a of the key, modulo the shard count.
fn shard_of(key: &str) -> u32 {
    let hash = key
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    (hash % u64::from(SHARDS)) as u32
}

#[async_trait]
impl Interpose for Shards {
    /// Not atomic across shards (these tests commit events only).
    async fn commit(&self, home: &dyn Store, mut batch: WriteBatch) -> Result<(), StoreError> {
        let mut by_shard: BTreeMap<u32, Vec<Event>> = BTreeMap::new();
        for event in std::mem::take(&mut batch.events) {
            by_shard.entry(shard_of(&event.key)).or_default().push(event);
        }
        home.commit(batch).await?;
        for (shard, events) in by_shard {
            self.shard(shard)?.commit(WriteBatch { events, ..WriteBatch::default() }).await?;
        }
        Ok(())
    }
    fn outbox_shards(&self, _home: &dyn Store) -> u32 {
        SHARDS
    }
    fn outbox_shard_of(&self, _home: &dyn Store, event_key: &str) -> u32 {
        shard_of(event_key)
    }
    async fn outbox(&self, _home: &dyn Store, shard: u32, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.shard(shard)?.outbox(0, limit).await
    }
    async fn ack_outbox(&self, _home: &dyn Store, shard: u32, event_ids: &[String]) -> Result<(), StoreError> {
        self.shard(shard)?.ack_outbox(0, event_ids).await
    }
    async fn outbox_lengths(&self, _home: &dyn Store, shards: &[u32]) -> Result<Vec<u64>, StoreError> {
        let mut lengths = Vec::with_capacity(shards.len());
        for shard in shards {
            lengths.push(self.shard(*shard)?.outbox_len().await?);
        }
        Ok(lengths)
    }
}

fn read_events(path: &Path) -> Vec<Event> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(|line| serde_json::from_str(line).unwrap()).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("{error}"),
    }
}

async fn store_and_bus(directory: &Path) -> (Arc<dyn Store>, Arc<JsonlBus>) {
    let shards = Shards::open(&directory.join("store")).await;
    let home: Arc<dyn Store> = shards.shards[0].clone();
    let store: Arc<dyn Store> = Interposed::new(home, shards);
    let bus = Arc::new(JsonlBus::open(&directory.join("events"), "omadm.").await.unwrap());
    (store, bus)
}

/// Only pokes and drains move events (the sweep interval is an hour).
fn config(ownership: ShardOwnership) -> RelayConfig {
    RelayConfig {
        batch_size: 3,
        poll_interval: Duration::from_secs(3_600),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ownership,
        release_interval: Duration::from_secs(1),
    }
}

/// A device id whose events go to `shard`, the `index`th such.
fn key_in(shard: u32, index: usize) -> String {
    (0..).map(|number| format!("IMEI:{number}")).filter(|key| shard_of(key) == shard).nth(index).unwrap()
}

/// Commits `per_device` events for each of `devices` keys of every shard, one commit per
/// round, devices interleaved; returns them in commit order.
async fn commit_everywhere(store: &Arc<dyn Store>, devices: usize, per_device: usize, tag: &str) -> Vec<Event> {
    let mut committed = Vec::new();
    for round in 0..per_device {
        let mut events = Vec::new();
        for shard in 0..SHARDS {
            for index in 0..devices {
                let key = key_in(shard, index);
                events.push(event(&format!("{tag}-{key}-{round}"), Topic::Results, &key));
            }
        }
        committed.extend(events.clone());
        store.commit(WriteBatch { events, ..WriteBatch::default() }).await.unwrap();
    }
    committed
}

fn in_shard(events: &[Event], shard: u32) -> Vec<Event> {
    events.iter().filter(|event| shard_of(&event.key) == shard).cloned().collect()
}

async fn lengths(store: &Arc<dyn Store>) -> Vec<u64> {
    store.outbox_lengths(&(0..SHARDS).collect::<Vec<_>>()).await.unwrap()
}

/// Polls `condition` for up to five seconds.
async fn eventually(what: &str, condition: impl AsyncFnMut() -> bool) {
    omadm_testkit::wait::eventually(what, Duration::from_secs(5), condition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_is_published_each_event_once_in_order_per_shard() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    let committed = commit_everywhere(&store, 3, 4, "all").await;
    assert!(lengths(&store).await.iter().all(|length| *length == 12), "{:?}", lengths(&store).await);

    let relay = OutboxRelay::spawn_with(store.clone(), bus.clone() as Arc<dyn Bus>, config(ShardOwnership::all()));
    relay.drain().await.unwrap();
    let published = read_events(bus.topic_path(Topic::Results).unwrap());
    assert_eq!(published.len(), committed.len(), "each event once");
    for shard in 0..SHARDS {
        assert_eq!(in_shard(&published, shard), in_shard(&committed, shard), "commit order within shard {shard}");
    }
    assert_eq!(lengths(&store).await, vec![0; SHARDS as usize]);
    relay.stop().await;
}

/// Two nodes, each relaying the shards rendezvous hashing gives it: a node's drain
/// empties its shards only; together they publish everything, each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_relay_only_the_shards_they_own() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    let nodes: Vec<NodeInfo> = ["node-a", "node-b"]
        .iter()
        .map(|id| NodeInfo { id: (*id).to_owned(), internal_url: format!("http://{id}") })
        .collect();
    let owner = |shard: u32| rendezvous_owner(&nodes, &shard.to_string()).unwrap().id.clone();
    let a_shards: Vec<u32> = (0..SHARDS).filter(|shard| owner(*shard) == "node-a").collect();
    assert!(!a_shards.is_empty() && a_shards.len() < SHARDS as usize, "both nodes own shards: {a_shards:?}");
    let ownership_of = |node: &'static str| {
        let nodes = nodes.clone();
        ShardOwnership::new(move |shard| {
            rendezvous_owner(&nodes, &shard.to_string()).is_some_and(|owner| owner.id == node)
        })
    };
    let committed = commit_everywhere(&store, 2, 3, "own").await;

    let relay_a = OutboxRelay::spawn_with(store.clone(), bus.clone() as Arc<dyn Bus>, config(ownership_of("node-a")));
    relay_a.drain().await.unwrap();
    for (shard, length) in (0..SHARDS).zip(lengths(&store).await) {
        let expected = if a_shards.contains(&shard) { 0 } else { 6 };
        assert_eq!(length, expected, "shard {shard} after node-a's drain");
    }
    let relay_b = OutboxRelay::spawn_with(store.clone(), bus.clone() as Arc<dyn Bus>, config(ownership_of("node-b")));
    relay_b.drain().await.unwrap();
    assert_eq!(lengths(&store).await, vec![0; SHARDS as usize]);

    let published = read_events(bus.topic_path(Topic::Results).unwrap());
    assert_eq!(published.len(), committed.len(), "each event once");
    for shard in 0..SHARDS {
        assert_eq!(in_shard(&published, shard), in_shard(&committed, shard));
    }
    relay_a.stop().await;
    relay_b.stop().await;
}

/// `wake_shard` publishes that shard now and nothing else; a hint for a shard the
/// node does not own does nothing; `wake` looks at every owned shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_hint_publishes_that_shard_only() {
    let directory = tempfile::tempdir().unwrap();
    let (store, bus) = store_and_bus(directory.path()).await;
    // This node owns every shard but the last.
    let relay = OutboxRelay::spawn_with(
        store.clone(),
        bus.clone() as Arc<dyn Bus>,
        config(ShardOwnership::new(|shard| shard + 1 < SHARDS)),
    );
    relay.drain().await.unwrap();
    let waker = relay.waker();
    let results = bus.topic_path(Topic::Results).unwrap().to_owned();
    let committed = commit_everywhere(&store, 1, 2, "hint").await;

    waker.wake_shard(1);
    eventually("shard 1 published", async || read_events(&results) == in_shard(&committed, 1)).await;
    waker.wake_shard(SHARDS - 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lengths(&store).await, vec![2, 0, 2, 2], "only the hinted shard moved");

    waker.wake();
    eventually("every owned shard published", async || lengths(&store).await == vec![0, 0, 0, 2]).await;
    let published = read_events(&results);
    for shard in 0..SHARDS - 1 {
        assert_eq!(in_shard(&published, shard), in_shard(&committed, shard));
    }
    assert!(in_shard(&published, SHARDS - 1).is_empty(), "another node's shard is left to it");
    relay.stop().await;
}
