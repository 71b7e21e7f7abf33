//! The Redis engine against the Store conformance suite, on a redis-server each test starts for itself.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support {
    pub mod redis_checks;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use omadm_core::store::conformance;
use omadm_core::store::{RedisStore, Store, StoreError, StoreOptions, WriteBatch};
use omadm_testkit::redis::RedisServer;

/// A store on a server of its own, so every check starts from an empty keyspace.
async fn fresh_store() -> (Arc<dyn Store>, RedisServer) {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    (Arc::new(store), server)
}

/// The same, opened with `options`.
async fn fresh_store_with(options: StoreOptions) -> (Arc<dyn Store>, RedisServer) {
    let server = RedisServer::start();
    let store = RedisStore::connect_with(&server.url(), &options).await.unwrap();
    (Arc::new(store), server)
}

omadm_core::store_conformance_tests!(fresh_store, fresh_store_with);

/// Every check on one shared store, and two stores under different prefixes do not see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_store_and_prefixes_separate() {
    let (store, server) = fresh_store().await;
    conformance::run_all(store.clone()).await;
    let other = RedisStore::connect_with_prefix(&server.url(), "other").await.unwrap();
    assert_eq!(other.get_device("conf-dev-1").await.unwrap(), None);
    assert!(store.get_device("conf-dev-1").await.unwrap().is_some());
    assert!(other.open_sessions().await.unwrap().is_empty());
}

/// `store::open` picks the Redis engine for redis:// URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_by_url() {
    let server = RedisServer::start();
    let store = omadm_core::store::open(&server.url()).await.unwrap();
    store.commit(WriteBatch { devices: vec![conformance::device("url-1")], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(store.get_device("url-1").await.unwrap(), Some(conformance::device("url-1")));
}

/// No server behind the URL: Unavailable, not a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_is_unavailable() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let result = RedisStore::connect(&url).await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{:?}", result.err());
}

/// A stored record that is not the expected JSON reads as Corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_is_corrupt() {
    let server = RedisServer::start();
    let store = RedisStore::connect_with_prefix(&server.url(), "bad").await.unwrap();
    let mut raw = redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET").arg("bad:{dev-x}:device").arg("{not json").query_async(&mut raw).await.unwrap();
    let result = store.get_device("dev-x").await;
    assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
}

/// The server dies: calls fail with Unavailable; it comes back on the same port: calls work again by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    store.commit(WriteBatch { devices: vec![conformance::device("re-1")], ..WriteBatch::default() }).await.unwrap();
    assert!(store.get_device("re-1").await.unwrap().is_some());

    server.kill();
    let failed = store.get_device("re-1").await;
    assert!(matches!(failed, Err(StoreError::Unavailable(_))), "{failed:?}");
    let failed = store.commit(WriteBatch { devices: vec![conformance::device("re-2")], ..WriteBatch::default() }).await;
    assert!(matches!(failed, Err(StoreError::Unavailable(_))), "{failed:?}");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.commit(WriteBatch { devices: vec![conformance::device("re-3")], ..WriteBatch::default() }).await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the store did not recover: {error}"),
        }
    }
    // The server keeps nothing across restarts here (no persistence); what is written after is read back.
    assert_eq!(store.get_device("re-3").await.unwrap(), Some(conformance::device("re-3")));
}

/// Two stores on one server are two gateway nodes: leases, take-over and fencing between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_across_two_nodes() {
    let server = RedisServer::start();
    let node_a = RedisStore::connect(&server.url()).await.unwrap();
    let node_b = RedisStore::connect(&server.url()).await.unwrap();
    support::redis_checks::fencing_across_two_nodes(&node_a, &node_b).await;
}

/// load_session + commit: two requests per Package#3 exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_exchange_is_two_round_trips() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    assert!(!store.is_cluster());
    assert_eq!(store.outbox_shards(), 1);
    support::redis_checks::package_exchange_is_two_round_trips(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_of_many_devices() {
    let (store, _server) = fresh_store().await;
    support::redis_checks::open_sessions_of_many_devices(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_still_admits_its_holder() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    support::redis_checks::a_lapsed_lease_still_admits_its_holder(&store).await;
}

/// A prefix with braces would move keys to other slots: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_with_braces_is_refused() {
    let server = RedisServer::start();
    let result = RedisStore::connect_with_prefix(&server.url(), "a{b}").await;
    assert!(matches!(result, Err(StoreError::UnsupportedUrl(_))), "{:?}", result.err());
}

/// The requests of every Store call, as docs/cluster.md lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_every_call() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    support::redis_checks::round_trips_of_every_call(&store).await;
}

/// Package#3 exchange rates for the docs (`cargo test -p omadm-core --test NAME -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn exchange_rates() {
    let server = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    support::redis_checks::exchange_rates(store, "standalone", 32, 200).await;
}
