//! Hardening of the device edge and the operator API over real HTTP, on the embedded store and on a
//! redis-server of the test's own: upload ownership, strict percent-decoding, one device-id rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use base64::Engine as _;
use omadm_core::session::SessionConfig;
use omadm_core::store::Store;
use omadm_gateway::device::DeviceEdge;
use omadm_gateway::server::{self, Server, ServerOptions};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig};
use omadm_testkit::redis::RedisServer;
use serde_json::json;

const TOKEN: &str = "hardening-token";
const PASSWORD: &str = "s3cret";

struct Running {
    base: String,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    _server: Server,
    _dir: tempfile::TempDir,
}

async fn start(store_url: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = match store_url {
        Some(url) => omadm_core::store::open(url).await.unwrap(),
        None => omadm_core::store::open(&dir.path().join("store").to_string_lossy()).await.unwrap(),
    };
    let bus = omadm_core::bus::open(&dir.path().join("events").to_string_lossy(), "omadm.").await.unwrap();
    let listener = server::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = GatewayConfig {
        admin_token: TOKEN.to_owned(),
        nonce_key: vec![7; 32],
        session: SessionConfig {
            max_commands_per_package: 5,
            supported_alert_mime_types: Vec::new(),
            ..omadm_testkit::config::session(&format!("{base}/dm/s/"))
        },
        max_repository_bytes: 64 * 1024,
        bootstrap: BootstrapConfig {
            server_id: "dms.test".to_owned(),
            server_name: "test".to_owned(),
            ..omadm_testkit::config::bootstrap()
        },
        ..omadm_testkit::config::gateway(&base)
    };
    let state = web::Data::new(AppState { store: store.clone(), bus, config });
    let edge = DeviceEdge::new(state.clone());
    let options = ServerOptions {
        workers: Some(2),
        client_request_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(5),
        keep_alive: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let server = server::run(state, edge, listener, options).await.unwrap();
    Running { base, store, client: reqwest::Client::new(), _server: server, _dir: dir }
}

impl Running {
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN)
    }

    async fn register(&self, device_id_in_path: &str) -> u16 {
        self.api(reqwest::Method::PUT, &format!("/api/v1/devices/{device_id_in_path}"))
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A device upload with Basic (the user-pass split after the OMADM-DevID).
    async fn upload(&self, device_id: &str, method: reqwest::Method, path: &str) -> (u16, String) {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{device_id}:{PASSWORD}"));
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("OMADM-DevID", device_id)
            .header("Authorization", format!("Basic {credentials}"))
            .header("Content-Type", "application/json")
            .body(format!("{{\"from\": \"{device_id}\"}}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

async fn uploads_go_only_where_the_server_sent_them(server: &Running) {
    let (owner, intruder) = ("IMEI:1", "IMEI:2");
    assert_eq!(server.register(owner).await, 201);
    assert_eq!(server.register(intruder).await, 201);

    // The intruder cannot claim the owner's folder: the owner keeps its own path.
    let (status, body) = server.upload(intruder, reqwest::Method::PUT, "/repo/up/IMEI%3A1/tree.json").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("up/IMEI:2/"), "{body}");
    assert!(server.store.get_content("up/IMEI:1/tree.json").await.unwrap().is_none());
    assert_eq!(server.upload(owner, reqwest::Method::PUT, "/repo/up/IMEI%3A1/tree.json").await.0, 201);
    assert_eq!(server.upload(owner, reqwest::Method::POST, "/repo/up/IMEI%3A1/tree.json").await.0, 204);
    assert_eq!(server.upload(intruder, reqwest::Method::PUT, "/repo/up/IMEI%3A1/tree.json").await.0, 403);

    // A path of nobody's folder that no command named: refused, so nobody can squat an operator path.
    let (status, body) = server.upload(owner, reqwest::Method::PUT, "/repo/fw/v3.bin").await;
    assert_eq!(status, 403, "{body}");
    assert!(server.store.get_content("fw/v3.bin").await.unwrap().is_none());
    let operator = server
        .api(reqwest::Method::PUT, "/api/v1/repository/fw/v3.bin")
        .header("Content-Type", "application/octet-stream")
        .body("firmware")
        .send()
        .await
        .unwrap();
    assert_eq!(operator.status(), 201);
    // Operator content inside a device's folder stays the operator's.
    let placed = server
        .api(reqwest::Method::PUT, "/api/v1/repository/up/IMEI:1/policy.json")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let (status, body) = server.upload(owner, reqwest::Method::PUT, "/repo/up/IMEI%3A1/policy.json").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operator content"), "{body}");
    let kept = server.store.get_content("up/IMEI:1/policy.json").await.unwrap().unwrap();
    assert_eq!(kept.body, b"{}");
}

async fn paths_that_are_not_utf8_are_refused(server: &Running) {
    assert_eq!(server.register("%FF%FE").await, 400);
    assert_eq!(server.register("dev%C0%AF").await, 400);
    assert_eq!(server.register("IMEI:9").await, 201);
    for path in ["/api/v1/devices/%FE%FF", "/api/v1/devices/%C0%AF", "/api/v1/devices/%FF/commands"] {
        let response = server.api(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.text().await.unwrap().contains("UTF-8"), "{path}");
    }
    let deleted = server.api(reqwest::Method::DELETE, "/api/v1/devices/%FE%FF").send().await.unwrap();
    assert_eq!(deleted.status(), 400);
    let stored = server
        .api(reqwest::Method::PUT, "/api/v1/repository/fw/%FF")
        .header("Content-Type", "application/octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 400);
    let slash = server
        .api(reqwest::Method::PUT, "/api/v1/repository/fw%2Fv9.bin")
        .header("Content-Type", "application/octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    // The API reads an encoded '/' as the '/' an OpenAPI client encoded in the {path} parameter: one item.
    assert_eq!(slash.status(), 201);
    let read = server.api(reqwest::Method::GET, "/api/v1/repository/fw/v9.bin").send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap().as_ref(), b"x");
    // The device edge's URLs are the server's own, never encoded by a client library: %2F stays refused there.
    let edge_slash = server.client.get(format!("{}/repo/fw%2Fv9.bin", server.base)).send().await.unwrap();
    assert_eq!(edge_slash.status(), 400);
    let edge = server.client.get(format!("{}/repo/fw/%FE", server.base)).send().await.unwrap();
    assert_eq!(edge.status(), 400);
    let (status, _) = server.upload("IMEI:9", reqwest::Method::PUT, "/repo/up/IMEI%3A9/%FF").await;
    assert_eq!(status, 400);
    let session = server
        .client
        .post(format!("{}/dm/s/%FF%FE", server.base))
        .header("OMADM-DevID", "IMEI:9")
        .header("Content-Type", "application/vnd.oma.dm.response+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 400);
}

async fn the_api_registers_only_ids_the_edge_accepts(server: &Running) {
    for bad in ["d%C3%A9vice", "dev%201", "%F0%9F%93%B1"] {
        let response = server
            .api(reqwest::Method::PUT, &format!("/api/v1/devices/{bad}"))
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.text().await.unwrap().contains("1 to 256 visible ASCII"), "{bad}");
    }
    let long = "d".repeat(257);
    assert_eq!(server.register(&long).await, 400);
    assert_eq!(server.register(&"d".repeat(256)).await, 201);
    let edge = server
        .client
        .post(format!("{}/dm", server.base))
        .header("OMADM-DevID", "dev 1")
        .header("Content-Type", "application/vnd.oma.dm.initiation+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(edge.status(), 400);
    assert!(edge.text().await.unwrap().contains("1 to 256 visible ASCII"));
}

#[actix_rt::test]
async fn embedded_store() {
    let server = start(None).await;
    uploads_go_only_where_the_server_sent_them(&server).await;
    paths_that_are_not_utf8_are_refused(&server).await;
    the_api_registers_only_ids_the_edge_accepts(&server).await;
}

#[actix_rt::test]
async fn redis_store() {
    let redis = RedisServer::start();
    let server = start(Some(&redis.url())).await;
    uploads_go_only_where_the_server_sent_them(&server).await;
    paths_that_are_not_utf8_are_refused(&server).await;
    the_api_registers_only_ids_the_edge_accepts(&server).await;
}
