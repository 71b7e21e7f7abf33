//! Hardening of the device edge and the operator API over real HTTP, on the embedded store and on a
//! redis-server of the test's own: upload ownership, strict percent-decoding, one device-id rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::Engine as _;
use omadm_testkit::redis::RedisServer;
use serde_json::json;

mod api_support;

use api_support::TestServer;

const PASSWORD: &str = "s3cret";

/// The API test server, on the store at `store_url` or an embedded one.
async fn start(store_url: Option<&str>) -> TestServer {
    TestServer::start_on(TestServer::options(), store_url).await
}

/// Registers `device_id_in_path` (as it stands in the URL) with [`PASSWORD`]; the status.
async fn register(server: &TestServer, device_id_in_path: &str) -> u16 {
    server
        .api(reqwest::Method::PUT, &format!("/api/v1/devices/{device_id_in_path}"))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A device upload with Basic (the user-pass split after the OMADM-DevID).
async fn upload(server: &TestServer, device_id: &str, method: reqwest::Method, path: &str) -> (u16, String) {
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{device_id}:{PASSWORD}"));
    let response = server
        .client
        .request(method, server.url(path))
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

async fn uploads_go_only_where_the_server_sent_them(server: &TestServer) {
    let (owner, intruder) = ("IMEI:1", "IMEI:2");
    assert_eq!(register(server, owner).await, 201);
    assert_eq!(register(server, intruder).await, 201);

    // The intruder cannot claim the owner's folder: the owner keeps its own path.
    let (status, body) = upload(server, intruder, reqwest::Method::PUT, "/repo/up/IMEI%3A1/tree.json").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("up/IMEI:2/"), "{body}");
    assert!(server.state.store.get_content("up/IMEI:1/tree.json").await.unwrap().is_none());
    assert_eq!(upload(server, owner, reqwest::Method::PUT, "/repo/up/IMEI%3A1/tree.json").await.0, 201);
    assert_eq!(upload(server, owner, reqwest::Method::POST, "/repo/up/IMEI%3A1/tree.json").await.0, 204);
    assert_eq!(upload(server, intruder, reqwest::Method::PUT, "/repo/up/IMEI%3A1/tree.json").await.0, 403);

    // A path of nobody's folder that no command named: refused, so nobody can squat an operator path.
    let (status, body) = upload(server, owner, reqwest::Method::PUT, "/repo/fw/v3.bin").await;
    assert_eq!(status, 403, "{body}");
    assert!(server.state.store.get_content("fw/v3.bin").await.unwrap().is_none());
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
    let (status, body) = upload(server, owner, reqwest::Method::PUT, "/repo/up/IMEI%3A1/policy.json").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operator content"), "{body}");
    let kept = server.state.store.get_content("up/IMEI:1/policy.json").await.unwrap().unwrap();
    assert_eq!((kept.source, kept.size), (omadm_core::model::ContentSource::Operator, 2));
    let read = server.api(reqwest::Method::GET, "/api/v1/repository/up/IMEI:1/policy.json").send().await.unwrap();
    assert_eq!(read.text().await.unwrap(), "{}");
}

async fn paths_that_are_not_utf8_are_refused(server: &TestServer) {
    assert_eq!(register(server, "%FF%FE").await, 400);
    assert_eq!(register(server, "dev%C0%AF").await, 400);
    assert_eq!(register(server, "IMEI:9").await, 201);
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
    let (status, _) = upload(server, "IMEI:9", reqwest::Method::PUT, "/repo/up/IMEI%3A9/%FF").await;
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

async fn the_api_registers_only_ids_the_edge_accepts(server: &TestServer) {
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
    assert_eq!(register(server, &long).await, 400);
    assert_eq!(register(server, &"d".repeat(256)).await, 201);
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
