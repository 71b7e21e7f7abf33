//! Authentication hardening over real HTTP, on the embedded and the Redis store: Digest replays refused,
//! failed logins throttled per device with 429 + Retry-After, and no metric that tells unknown ids from known.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;
use omadm_testkit::redis as redis_server;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use device_support::{AuthMode, DEVICE_ID_HEADER, base_config, digest_answer, http};
use omadm_core::auth::{DEFAULT_REALM, credentials_for};
use omadm_core::model::Device;
use omadm_core::store::{Store, WriteBatch};
use omadm_gateway::AppState;
use omadm_gateway::device::{DeviceEdge, DeviceEdgeOptions};
use omadm_proto::package::media::INITIATION_JSON;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

/// A bare server with the device routes over `store`; returns its base URL.
async fn serve(store: Arc<dyn Store>, events: &std::path::Path) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = base_config(&base);
    config.auth_throttle.max_failures_per_device = 3;
    let bus = omadm_core::bus::open(events.to_str().unwrap(), "omadm.").await.unwrap();
    let state = web::Data::new(AppState { store, bus, config });
    let edge = DeviceEdge::with_options(state.clone(), DeviceEdgeOptions::default());
    let server = HttpServer::new(move || {
        let edge = edge.clone();
        App::new().app_data(state.clone()).configure(move |config| edge.configure(config))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (base, handle)
}

async fn package1(base: &str, device_id: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = http()
        .post(format!("{base}/dm"))
        .header(CONTENT_TYPE, INITIATION_JSON)
        .header(DEVICE_ID_HEADER, device_id)
        .body("{}");
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request.send().await.unwrap()
}

async fn digest(base: &str, device_id: &str, password: &str) -> String {
    let challenge = package1(base, device_id, None).await;
    assert_eq!(challenge.status(), 401);
    digest_answer(&challenge, AuthMode::DigestSha256, "POST", "/dm", device_id, password)
}

async fn scenario(store: Arc<dyn Store>, tag: &str) {
    let temp = tempfile::tempdir().unwrap();
    let (base, handle) = serve(store.clone(), temp.path()).await;
    let device_id = format!("IMEI:{tag}1");
    let device = Device::new(&device_id, credentials_for(&device_id, DEFAULT_REALM, "s3cret"), 1);
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();

    // A captured Digest header opens one session; its replay gets 401 with a fresh challenge.
    let header = digest(&base, &device_id, "s3cret").await;
    assert_eq!(package1(&base, &device_id, Some(&header)).await.status(), 200);
    let replay = package1(&base, &device_id, Some(&header)).await;
    assert_eq!(replay.status(), 401);
    assert!(replay.headers().get_all("www-authenticate").iter().any(|v| v.to_str().unwrap().contains("nonce=")));
    let replayed_metric = omadm_core::metrics::metrics().auth_failures.with_label_values(&["replayed"]).get();
    assert!(replayed_metric >= 1);

    // The replay counted as a failure; two wrong passwords more are answered 401 (3 in all), then 429
    // with Retry-After, even with the right password.
    for _ in 0..2 {
        let wrong = digest(&base, &device_id, "guess").await;
        assert_eq!(package1(&base, &device_id, Some(&wrong)).await.status(), 401);
    }
    let right = digest(&base, &device_id, "s3cret").await;
    let throttled = package1(&base, &device_id, Some(&right)).await;
    assert_eq!(throttled.status(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");

    // An unknown id fails exactly like a known one: same status, same metric label.
    let unknown = format!("IMEI:{tag}2");
    let before = omadm_core::metrics::metrics().render();
    let wrong = digest(&base, &unknown, "guess").await;
    assert_eq!(package1(&base, &unknown, Some(&wrong)).await.status(), 401);
    let after = omadm_core::metrics::metrics().render();
    assert!(!after.contains("unknown_device"), "{after}");
    assert_ne!(before, after);
    handle.stop(false).await;
}

#[actix_rt::test]
async fn replay_and_throttle_on_the_embedded_store() {
    let temp = tempfile::tempdir().unwrap();
    let store = omadm_core::store::open(temp.path().join("store").to_str().unwrap()).await.unwrap();
    scenario(store, "49300510").await;
}

#[actix_rt::test]
async fn replay_and_throttle_on_the_redis_store() {
    let server = redis_server::RedisServer::start();
    let store = omadm_core::store::open(&server.url()).await.unwrap();
    scenario(store, "49300520").await;
}
