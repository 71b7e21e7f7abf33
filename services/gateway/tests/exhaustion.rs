//! What one device cannot exhaust, over real HTTP on the embedded and the Redis store: its session history
//! stays at the newest sessions, a Package#1 loop neither burns its queued commands nor outruns its session
//! rate (429 + Retry-After), and its uploads stay within their quotas (413) and all uploads within their
//! cap (507), even when sent in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;

use std::sync::Arc;
use std::time::Duration;

use device_support::{AuthMode, SimulatedDevice, TestServer, authorization, http};
use futures_util::StreamExt as _;
use omadm_core::metrics::metrics;
use omadm_core::model::{CommandState, SessionOutcome};
use omadm_core::store::{DEFAULT_SESSION_HISTORY_PER_DEVICE, Store, UploadUsage};
use omadm_gateway::UploadQuotaConfig;
use omadm_proto::command::Command;
use omadm_proto::package::InitiationPackage;
use omadm_testkit::redis::RedisServer;

const PASSWORD: &str = "s3cret";

async fn embedded() -> (Arc<dyn Store>, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let store = omadm_core::store::open(temp.path().join("store").to_str().unwrap()).await.unwrap();
    (store, temp)
}

async fn redis() -> (Arc<dyn Store>, RedisServer) {
    let server = RedisServer::start();
    let store = omadm_core::store::open(&server.url()).await.unwrap();
    (store, server)
}

/// 60 sessions one after another (each Package#1 ends the one before): the history keeps the newest 50
/// ended sessions, beside the open one.
async fn history_is_pruned(store: Arc<dyn Store>, device_id: &str) {
    let server = TestServer::start_on(store, |config, _| config.session_rate.max_sessions_per_device = 1_000).await;
    server.register(device_id, PASSWORD).await;
    let device = SimulatedDevice::new(device_id, PASSWORD, AuthMode::Basic);
    let package = InitiationPackage::default();
    for _ in 0..60 {
        assert_eq!(device.send_package1(&server, &package).await.status(), 200);
    }
    let sessions = server.store.list_sessions(device_id, 1_000).await.unwrap();
    let ended = sessions.iter().filter(|summary| summary.outcome != SessionOutcome::Active).count();
    assert_eq!(ended, DEFAULT_SESSION_HISTORY_PER_DEVICE, "{} sessions listed", sessions.len());
    assert_eq!(sessions.len(), DEFAULT_SESSION_HISTORY_PER_DEVICE + 1);
    // Newest first: what was kept is the newest.
    assert_eq!(sessions[0].outcome, SessionOutcome::Active);
    assert!(sessions.windows(2).all(|pair| pair[0].started_at >= pair[1].started_at));
    server.stop().await;
}

#[actix_rt::test]
async fn session_history_is_pruned_on_the_embedded_store() {
    let (store, _guard) = embedded().await;
    history_is_pruned(store, "IMEI:493005100600100").await;
}

#[actix_rt::test]
async fn session_history_is_pruned_on_the_redis_store() {
    let (store, _guard) = redis().await;
    history_is_pruned(store, "IMEI:493005100600200").await;
}

/// Sessions per window the burst test allows, and its window.
const BURST_RATE: u64 = 30;
const BURST_WINDOW_MS: u64 = 3_000;
const BURST: usize = 2_000;

/// 2,000 Package#1 in a burst: past the rate they get 429 with Retry-After; those accepted supersede one
/// another before any Package#3, so the queued FUMO EXEC they carried is not expired and has no attempt
/// used up; after the window a normal session delivers it.
async fn package1_burst(store: Arc<dyn Store>, device_id: &str) {
    let server = TestServer::start_on(store, |config, _| {
        config.session_rate.max_sessions_per_device = BURST_RATE;
        config.session_rate.window = BURST_WINDOW_MS;
    })
    .await;
    server.register(device_id, PASSWORD).await;
    let ids = server.enqueue(device_id, serde_json::json!([["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"]])).await;
    let device = SimulatedDevice::new(device_id, PASSWORD, AuthMode::Basic);
    let package = InitiationPackage::default();
    let limited_before = metrics().session_rate_limited.get();

    let started = std::time::Instant::now();
    let answers: Vec<(u16, Option<u64>)> = futures_util::stream::iter(0..BURST)
        .map(|_| async {
            let response = device.send_package1(&server, &package).await;
            let retry_after =
                response.headers().get("retry-after").map(|value| value.to_str().unwrap().parse().unwrap());
            (response.status().as_u16(), retry_after)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let windows = started.elapsed().as_millis() as u64 / BURST_WINDOW_MS + 2;
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count() as u64;
    let limited: Vec<u64> =
        answers.iter().filter(|(status, _)| *status == 429).map(|(_, after)| after.unwrap()).collect();
    assert_eq!(accepted + limited.len() as u64, BURST as u64, "only 200 and 429: {answers:?}");
    assert!((1..=BURST_RATE * windows).contains(&accepted), "{accepted} accepted over {windows} windows");
    assert!(limited.iter().all(|after| (1..=BURST_WINDOW_MS / 1000).contains(after)), "{limited:?}");
    assert!(metrics().session_rate_limited.get() >= limited_before + limited.len() as u64);

    // Each accepted Package#1 sent the EXEC and the next one took it back unanswered: never expired,
    // at most the one attempt of the session still open.
    let record = server.store.get_command(device_id, ids[0]).await.unwrap().unwrap();
    assert_ne!(record.state, CommandState::Expired, "{record:?}");
    assert!(record.attempts <= 1, "{record:?}");

    // After the window, a normal session gets the EXEC and its answer is recorded.
    tokio::time::sleep(Duration::from_millis(BURST_WINDOW_MS)).await;
    let transcript = device.run_session(&server, &package).await;
    let delivered =
        transcript.packages.iter().flat_map(|reply| &reply.commands).any(|command| matches!(command, Command::Exec(_)));
    assert!(delivered, "{:?}", transcript.packages);
    let record = server.store.get_command(device_id, ids[0]).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Done, "{record:?}");
    server.stop().await;
}

#[actix_rt::test]
async fn a_package1_burst_keeps_the_queued_exec_and_is_rate_limited_on_the_embedded_store() {
    let (store, _guard) = embedded().await;
    package1_burst(store, "IMEI:493005100600300").await;
}

#[actix_rt::test]
async fn a_package1_burst_keeps_the_queued_exec_and_is_rate_limited_on_the_redis_store() {
    let (store, _guard) = redis().await;
    package1_burst(store, "IMEI:493005100600400").await;
}

/// A device upload of `bytes` bytes to `up/<device>/<name>` with Basic authentication; its status.
async fn upload(server: &TestServer, device_id: &str, name: &str, bytes: usize) -> u16 {
    let path = format!("/repo/up/{device_id}/{name}");
    let client = http();
    let authorization = authorization(&client, server, AuthMode::Basic, "PUT", &path, device_id, PASSWORD).await;
    let response = client
        .put(server.url(&path))
        .header("Content-Type", "application/octet-stream")
        .header(device_support::DEVICE_ID_HEADER, device_id)
        .header("Authorization", authorization)
        .body(vec![b'u'; bytes])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        let body: serde_json::Value = response.json().await.expect("a JSON error body");
        assert!(body["error"].is_string(), "{body}");
    }
    status
}

fn refused(reason: &str) -> u64 {
    metrics().uploads_refused.with_label_values(&[reason]).get()
}

/// Per upload 1,000 bytes, per device 2,048 bytes and 3 items, 6,000 bytes for all devices.
async fn upload_quotas(store: Arc<dyn Store>, tag: &str) {
    let server = TestServer::start_on(store, |config, _| {
        config.uploads = UploadQuotaConfig {
            max_item_bytes: 1_000,
            max_bytes_per_device: 2_048,
            max_items_per_device: 3,
            max_total_bytes: 6_000,
        };
    })
    .await;
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|name| format!("quota-{tag}-{name}"));
    for device_id in [&a, &b, &c, &d] {
        server.register(device_id, PASSWORD).await;
    }
    let usage = |device_bytes, device_items, total_bytes| UploadUsage { device_bytes, device_items, total_bytes };
    let before = (refused("item_too_large"), refused("device_bytes"), refused("device_items"), refused("total_bytes"));

    // One item past its limit: 413, not stored, nothing counted.
    assert_eq!(upload(&server, &a, "big", 1_001).await, 413);
    assert_eq!(server.store.get_content(&format!("up/{a}/big")).await.unwrap(), None);
    assert_eq!(upload(&server, &a, "1", 1_000).await, 201);
    assert_eq!(upload(&server, &a, "2", 1_000).await, 201);
    // The device's bytes: 413; replacing its own item counts only the difference.
    assert_eq!(upload(&server, &a, "3", 100).await, 413);
    assert_eq!(upload(&server, &a, "1", 500).await, 204);
    assert_eq!(upload(&server, &a, "3", 100).await, 201);
    // The device's items: 413.
    assert_eq!(upload(&server, &a, "4", 1).await, 413);
    assert_eq!(server.store.get_content(&format!("up/{a}/4")).await.unwrap(), None);
    assert_eq!(server.store.upload_usage(&a).await.unwrap(), usage(1_600, 3, 1_600));

    // Twenty at once cannot overshoot the device's quota: two fit.
    let names: Vec<String> = (0..20).map(|index| format!("p{index}")).collect();
    let statuses: Vec<u16> =
        futures_util::future::join_all(names.iter().map(|name| upload(&server, &d, name, 1_000))).await;
    assert_eq!(statuses.iter().filter(|status| **status == 201).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 413).count(), 18, "{statuses:?}");
    assert_eq!(server.store.upload_usage(&d).await.unwrap(), usage(2_000, 2, 3_600));

    // The cap on all device uploads: 507, whoever asks.
    assert_eq!(upload(&server, &b, "1", 1_000).await, 201);
    assert_eq!(upload(&server, &b, "2", 1_000).await, 201);
    assert_eq!(upload(&server, &c, "1", 500).await, 507);
    assert_eq!(server.store.get_content(&format!("up/{c}/1")).await.unwrap(), None);
    assert_eq!(server.store.upload_usage(&c).await.unwrap(), usage(0, 0, 5_600));

    // Counted (at least: the metrics are the process's, and tests run side by side).
    assert!(refused("item_too_large") > before.0);
    assert!(refused("device_bytes") >= before.1 + 19);
    assert!(refused("device_items") > before.2);
    assert!(refused("total_bytes") > before.3);
    server.stop().await;
}

#[actix_rt::test]
async fn upload_quotas_hold_on_the_embedded_store() {
    let (store, _guard) = embedded().await;
    upload_quotas(store, "embedded").await;
}

#[actix_rt::test]
async fn upload_quotas_hold_on_the_redis_store() {
    let (store, _guard) = redis().await;
    upload_quotas(store, "redis").await;
}
