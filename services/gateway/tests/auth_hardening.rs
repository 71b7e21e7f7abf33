//! Authentication hardening over real HTTP, on the embedded and the Redis store: Digest replays refused,
//! failed logins throttled per device and per source address, wrong API tokens per address, each with 429 +
//! Retry-After, and no metric that tells unknown ids from known.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;
use omadm_testkit::redis as redis_server;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::web;
use device_support::{AuthMode, DEVICE_ID_HEADER, base_config, digest_answer, http};
use omadm_core::auth::{DEFAULT_REALM, credentials_for};
use omadm_core::model::Device;
use omadm_core::store::{Store, WriteBatch};
use omadm_gateway::device::{DeviceEdge, DeviceEdgeOptions};
use omadm_gateway::server::ServerOptions;
use omadm_gateway::{AppState, AuthThrottleConfig, GatewayConfig};
use omadm_proto::package::media::INITIATION_JSON;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

/// The gateway's full server (device edge and operator API) over `store` with `throttle`; returns its base URL.
async fn serve(
    store: Arc<dyn Store>,
    events: &std::path::Path,
    throttle: AuthThrottleConfig,
) -> (String, omadm_gateway::server::Server) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = GatewayConfig { auth_throttle: throttle, ..base_config(&base) };
    let bus = omadm_core::bus::open(events.to_str().unwrap(), "omadm.").await.unwrap();
    let content = omadm_core::content::ContentEngine::open("memory://").unwrap();
    let state = web::Data::new(AppState { store, bus, content, config });
    let edge = DeviceEdge::with_options(state.clone(), DeviceEdgeOptions::default());
    let options = ServerOptions { workers: Some(1), ..ServerOptions::default() };
    let server = omadm_gateway::server::run(state, edge, listener, options).await.unwrap();
    (base, server)
}

fn per_device(max_failures: u64) -> AuthThrottleConfig {
    AuthThrottleConfig { max_failures_per_device: max_failures, ..AuthThrottleConfig::default() }
}

/// The `Retry-After` of a 429, checked to lie within the throttle's 5 minute window.
fn retry_after(response: &reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let seconds: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&seconds), "{seconds}");
    seconds
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
    let (base, server) = serve(store.clone(), temp.path(), per_device(3)).await;
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
    retry_after(&package1(&base, &device_id, Some(&right)).await);

    // An unknown id fails exactly like a known one: same status, same metric label.
    let unknown = format!("IMEI:{tag}2");
    let before = omadm_core::metrics::metrics().render();
    let wrong = digest(&base, &unknown, "guess").await;
    assert_eq!(package1(&base, &unknown, Some(&wrong)).await.status(), 401);
    let after = omadm_core::metrics::metrics().render();
    assert!(!after.contains("unknown_device"), "{after}");
    assert_ne!(before, after);
    server.stop().await.unwrap();
}

/// Failures spread over many device ids from one address are throttled by the address; wrong API tokens from
/// one address too, after which even the right token waits for the window.
async fn address_scenario(store: Arc<dyn Store>, tag: &str) {
    let temp = tempfile::tempdir().unwrap();
    let throttle = AuthThrottleConfig {
        max_failures_per_device: 100,
        max_failures_per_address: 4,
        max_api_token_failures_per_address: 3,
        ..AuthThrottleConfig::default()
    };
    let (base, server) = serve(store.clone(), temp.path(), throttle).await;
    let device_id = format!("IMEI:{tag}1");
    let device = Device::new(&device_id, credentials_for(&device_id, DEFAULT_REALM, "s3cret"), 1);
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let throttled_before = omadm_core::metrics::metrics().auth_throttled.with_label_values(&["address"]).get();

    // Four guesses, each at another id (no per-device limit is reached), then the address is throttled:
    // even a registered device with its right password waits.
    for index in 0..4 {
        let guessed = format!("IMEI:{tag}9{index}");
        let wrong = digest(&base, &guessed, "guess").await;
        assert_eq!(package1(&base, &guessed, Some(&wrong)).await.status(), 401);
    }
    let right = digest(&base, &device_id, "s3cret").await;
    retry_after(&package1(&base, &device_id, Some(&right)).await);
    let throttled_after = omadm_core::metrics::metrics().auth_throttled.with_label_values(&["address"]).get();
    assert!(throttled_after > throttled_before);

    // The operator API: three wrong tokens are 401, then 429 from this address, the right token included.
    let devices = format!("{base}/api/v1/devices");
    for guess in ["guess-1", "guess-2", "guess-3"] {
        assert_eq!(http().get(&devices).bearer_auth(guess).send().await.unwrap().status(), 401);
    }
    let admin_token = base_config(&base).admin_token;
    retry_after(&http().get(&devices).bearer_auth(&admin_token).send().await.unwrap());
    server.stop().await.unwrap();
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

#[actix_rt::test]
async fn address_and_api_token_throttles_on_the_embedded_store() {
    let temp = tempfile::tempdir().unwrap();
    let store = omadm_core::store::open(temp.path().join("store").to_str().unwrap()).await.unwrap();
    address_scenario(store, "49300530").await;
}

#[actix_rt::test]
async fn address_and_api_token_throttles_on_the_redis_store() {
    let server = redis_server::RedisServer::start();
    let store = omadm_core::store::open(&server.url()).await.unwrap();
    address_scenario(store, "49300540").await;
}
