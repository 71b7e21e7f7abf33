//! `POST /api/v1/devices/{devid}/notify`, `POST /api/v1/notifications` and `GET /api/v1/notifications/{request_id}`
//! over real HTTP, on the embedded store, a Redis server and a Redis Cluster: the request's record as the API
//! shows it in each state, and bulk requests by id list and by filter.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod api_support;

use api_support::{TestServer, expect_error};
use omadm_core::model::{NotificationOutcome, NotificationRecord, NotificationState};
use omadm_core::store::WriteBatch;
use omadm_testkit::redis::RedisServer;
use omadm_testkit::redis_cluster::RedisCluster;
use reqwest::Method;
use serde_json::{Value, json};

/// Requests a notification for `device_id` and returns the answer's request id, checked against its event id.
async fn notify(server: &TestServer, device_id: &str, body: Value) -> String {
    let accepted = server.api(Method::POST, &format!("/api/v1/devices/{device_id}/notify")).json(&body).send().await;
    let accepted = accepted.unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["id"], format!("notify:{device_id}:{request_id}"), "the event id names the request");
    assert!(omadm_core::model::is_request_id(&request_id), "{request_id}");
    request_id
}

async fn view(server: &TestServer, request_id: &str) -> Value {
    let response = server.api(Method::GET, &format!("/api/v1/notifications/{request_id}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The outcome as the notifier stores it: the request's record, replaced in the batch of its outcome event.
async fn store_outcome(server: &TestServer, request_id: &str, outcome: NotificationOutcome) {
    let mut record: NotificationRecord = server.state.store.get_notification(request_id).await.unwrap().unwrap();
    record.outcome = Some(outcome);
    server.state.store.commit(WriteBatch { notifications: vec![record], ..WriteBatch::default() }).await.unwrap();
}

fn outcome(state: NotificationState, at: u64) -> NotificationOutcome {
    NotificationOutcome {
        state,
        at,
        transport: None,
        notification_id: None,
        reason: None,
        detail: None,
        collapsed_into: None,
    }
}

async fn notification_records_through_the_api(server: TestServer) {
    server.register("IMEI:n1", json!({})).await;
    server.register("IMEI:n2", json!({})).await;
    let sent = notify(&server, "IMEI:n1", json!({"req_mos": true})).await;
    let requested = view(&server, &sent).await;
    assert_eq!(requested["request_id"], sent.as_str());
    assert_eq!((requested["device_id"].as_str(), requested["state"].as_str()), (Some("IMEI:n1"), Some("requested")));
    assert_eq!(
        (requested["requested_by"].as_str(), requested["request_mos"].as_bool()),
        (Some("operator"), Some(true))
    );
    assert!(requested["requested_at"].as_u64().unwrap() > 0);
    for field in ["outcome_at", "transport", "notification_id", "reason", "detail", "collapsed_into"] {
        assert_eq!(requested[field], Value::Null, "{field} before an outcome");
    }
    // The request's event waits in the outbox, committed with the record.
    let shard = server.state.store.outbox_shard_of("IMEI:n1");
    let outbox = server.state.store.outbox(shard, 100).await.unwrap();
    assert!(outbox.iter().any(|event| event.id == format!("notify:IMEI:n1:{sent}")), "{outbox:?}");

    let at = requested["requested_at"].as_u64().unwrap() + 3;
    let delivered = NotificationOutcome {
        transport: Some("udp".to_owned()),
        notification_id: Some(4),
        ..outcome(NotificationState::Sent, at)
    };
    store_outcome(&server, &sent, delivered).await;
    let shown = view(&server, &sent).await;
    assert_eq!((shown["state"].as_str(), shown["outcome_at"].as_u64()), (Some("sent"), Some(at)));
    assert_eq!((shown["transport"].as_str(), shown["notification_id"].as_u64()), (Some("udp"), Some(4)));
    assert_eq!(shown["reason"], Value::Null);

    let failed = notify(&server, "IMEI:n2", json!({})).await;
    let refused = NotificationOutcome {
        reason: Some("no_transport".to_owned()),
        detail: Some("the device has no notify address".to_owned()),
        ..outcome(NotificationState::Failed, at)
    };
    store_outcome(&server, &failed, refused).await;
    let shown = view(&server, &failed).await;
    assert_eq!((shown["state"].as_str(), shown["reason"].as_str()), (Some("failed"), Some("no_transport")));
    assert_eq!((shown["request_mos"].as_bool(), shown["transport"].clone()), (Some(false), Value::Null));

    // An empty body is a request too.
    let bare = server.api(Method::POST, "/api/v1/devices/IMEI:n1/notify").send().await.unwrap();
    assert_eq!(bare.status(), 202);
    let collapsed = bare.json::<Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned();
    let into = NotificationOutcome { collapsed_into: Some(sent.clone()), ..outcome(NotificationState::Collapsed, at) };
    store_outcome(&server, &collapsed, into).await;
    let shown = view(&server, &collapsed).await;
    assert_eq!((shown["state"].as_str(), shown["collapsed_into"].as_str()), (Some("collapsed"), Some(sent.as_str())));

    let get = |request_id: &str| server.api(Method::GET, &format!("/api/v1/notifications/{request_id}"));
    let reason = expect_error(get(&"0".repeat(32)).send().await.unwrap(), 404).await;
    assert!(reason.contains(&"0".repeat(32)), "{reason}");
    for bad in ["nope", &sent.to_uppercase(), &format!("{sent}0"), &sent[1..]] {
        let reason = expect_error(get(bad).send().await.unwrap(), 400).await;
        assert!(reason.contains("32 lowercase hex digits"), "{reason}");
    }
    let anonymous = server.client.get(server.url(&format!("/api/v1/notifications/{sent}"))).send().await.unwrap();
    expect_error(anonymous, 401).await;
    // An unknown device gets no request and no record.
    expect_error(server.api(Method::POST, "/api/v1/devices/IMEI:none/notify").send().await.unwrap(), 404).await;
}

/// `POST /api/v1/notifications`: one request (event and record) per listed or matching device.
async fn bulk_requests_through_the_api(server: &TestServer) {
    server.register("IMEI:b1", json!({"fleet": "meters"})).await;
    server.register("IMEI:b2", json!({"fleet": "meters", "region": "eu"})).await;
    server.register("IMEI:b3", json!({"fleet": "cars"})).await;
    let bulk = |body: Value| server.api(Method::POST, "/api/v1/notifications").json(&body).send();
    let devices_of = |answer: Value| async move {
        let mut devices = Vec::new();
        for request_id in answer["request_ids"].as_array().unwrap() {
            let record = view(server, request_id.as_str().unwrap()).await;
            assert_eq!(record["state"], "requested");
            devices.push((record["device_id"].as_str().unwrap().to_owned(), record["request_mos"].as_bool().unwrap()));
        }
        devices.sort();
        devices
    };

    let listed = bulk(json!({"device_ids": ["IMEI:b3", "IMEI:gone", "IMEI:b1"], "req_mos": true})).await.unwrap();
    assert_eq!(listed.status(), 202);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!((listed["requested"].as_u64(), listed["truncated"].as_bool()), (Some(2), Some(false)));
    assert_eq!(listed["unknown"], json!(["IMEI:gone"]));
    assert_eq!(devices_of(listed).await, [("IMEI:b1".to_owned(), true), ("IMEI:b3".to_owned(), true)]);

    let matched = bulk(json!({"filter": {"tags": {"fleet": "meters"}}})).await.unwrap();
    assert_eq!(matched.status(), 202);
    let matched: Value = matched.json().await.unwrap();
    assert_eq!((matched["requested"].as_u64(), matched["unknown"].clone()), (Some(2), json!([])));
    assert_eq!(devices_of(matched).await, [("IMEI:b1".to_owned(), false), ("IMEI:b2".to_owned(), false)]);
    let one: Value =
        bulk(json!({"filter": {"tags": {"fleet": "meters", "region": "eu"}}})).await.unwrap().json().await.unwrap();
    assert_eq!(devices_of(one).await, [("IMEI:b2".to_owned(), false)]);
    let everyone: Value = bulk(json!({"filter": {}})).await.unwrap().json().await.unwrap();
    assert!(everyone["requested"].as_u64().unwrap() >= 3, "{everyone}");
    let nobody: Value = bulk(json!({"filter": {"man": "Nobody"}})).await.unwrap().json().await.unwrap();
    assert_eq!((nobody["requested"].as_u64(), nobody["request_ids"].clone()), (Some(0), json!([])));

    // Each listed request's event waits in the outbox.
    let shard = server.state.store.outbox_shard_of("IMEI:b2");
    let waiting = server.state.store.outbox(shard, 1000).await.unwrap();
    assert!(waiting.iter().filter(|event| event.key == "IMEI:b2").count() >= 3, "{waiting:?}");

    for bad in [
        json!({}),
        json!({"req_mos": true}),
        json!({"device_ids": ["IMEI:b1"], "filter": {}}),
        json!({"device_ids": []}),
        json!({"device_ids": null}),
        json!({"filter": null}),
        json!({"filter": {"man": null}}),
        json!({"filter": {"color": "red"}}),
        json!({"device_ids": ["has space"]}),
        json!({"device_ids": vec!["IMEI:b1"; 1001]}),
        json!({"device_ids": ["IMEI:b1"], "urgent": true}),
    ] {
        expect_error(bulk(bad.clone()).await.unwrap(), 400).await;
    }
}

#[actix_rt::test]
async fn records_on_the_embedded_store() {
    notification_records_through_the_api(TestServer::start().await).await;
}

#[actix_rt::test]
async fn bulk_on_the_embedded_store() {
    bulk_requests_through_the_api(&TestServer::start().await).await;
}

#[actix_rt::test]
async fn bulk_on_redis() {
    let redis = RedisServer::start();
    bulk_requests_through_the_api(&TestServer::start_on(TestServer::options(), Some(&redis.url())).await).await;
}

#[actix_rt::test]
async fn bulk_on_redis_cluster() {
    let cluster = RedisCluster::start();
    bulk_requests_through_the_api(&TestServer::start_on(TestServer::options(), Some(&cluster.url())).await).await;
}

#[actix_rt::test]
async fn records_on_redis() {
    let redis = RedisServer::start();
    notification_records_through_the_api(TestServer::start_on(TestServer::options(), Some(&redis.url())).await).await;
}

#[actix_rt::test]
async fn records_on_redis_cluster() {
    let cluster = RedisCluster::start();
    notification_records_through_the_api(TestServer::start_on(TestServer::options(), Some(&cluster.url())).await).await;
}
