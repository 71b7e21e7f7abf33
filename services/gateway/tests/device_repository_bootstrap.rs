//! `/repo/{path}` (operator content with content negotiation, device uploads), `/bootstrap`, and auto-registration,
//! over real HTTP.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;

use device_support::{
    AuthMode, DEVICE_ID_HEADER, SimulatedDevice, TestServer, assert_refused, authorization, http, read_package2,
};
use omadm_core::model::ContentSource;
use omadm_proto::mo::{DmAccount, ManagementObject as _};
use omadm_proto::package::InitiationPackage;
use omadm_proto::package::media::DMMO_JSON;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};

const DEVICE: &str = "IMEI:493005100592800";
const OTHER: &str = "IMEI:356938035643809";
const PASSWORD: &str = "s3cret";

async fn put_item(server: &TestServer, path: &str, content_type: &str, source: ContentSource, device: Option<&str>) {
    let body = b"{\"x\": 1}";
    let uploader = if source == ContentSource::Device { device } else { None };
    omadm_testkit::fixtures::publish(&*server.store, &server.state.content, path, content_type, body, uploader).await;
}

#[actix_rt::test]
async fn operator_content_is_served_with_content_negotiation() {
    let server = TestServer::start(|_, _| {}).await;
    put_item(&server, "fw/manifest.json", "application/json", ContentSource::Operator, None).await;
    put_item(&server, "up/IMEI:1/tree.json", "application/json", ContentSource::Device, Some("IMEI:1")).await;
    let client = http();
    let get = |path: &str, accept: Option<&str>| {
        let mut request = client.get(server.url(path));
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        request.send()
    };

    for accept in [None, Some("*/*"), Some("application/json"), Some("text/plain;q=0.9, application/*;q=0.5")] {
        let response = get("/repo/fw/manifest.json", accept).await.unwrap();
        assert_eq!(response.status(), 200, "{accept:?}");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.bytes().await.unwrap().as_ref(), b"{\"x\": 1}");
    }
    assert_refused(get("/repo/fw/manifest.json", Some("text/plain")).await.unwrap(), 406, "Accept").await;
    assert_refused(get("/repo/fw/manifest.json", Some("*/*, application/json;q=0")).await.unwrap(), 406, "Accept")
        .await;
    assert_refused(get("/repo/fw/none.json", None).await.unwrap(), 404, "no repository content").await;
    // A device's upload is not served to anyone who knows its path.
    assert_refused(get("/repo/up/IMEI:1/tree.json", None).await.unwrap(), 404, "no repository content").await;
}

#[actix_rt::test]
async fn devices_upload_with_authentication_and_never_over_others_content() {
    let server = TestServer::start(|config, _| config.uploads.max_item_bytes = 1024).await;
    server.register(DEVICE, PASSWORD).await;
    server.register(OTHER, PASSWORD).await;
    put_item(&server, "fw/manifest.json", "application/json", ContentSource::Operator, None).await;
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let other = SimulatedDevice::new(OTHER, PASSWORD, AuthMode::Basic);
    // The ServerURI `.../up/[DevID]/tree.json` as the device substitutes it.
    let url = server.url("/repo/up/IMEI%3A493005100592800/tree.json");

    let anonymous = http().put(&url).header(CONTENT_TYPE, "application/json").body("{}").send().await.unwrap();
    assert_refused(anonymous, 401, "authentication required").await;
    assert_eq!(device.upload(&server, "PUT", &url).await, 201);
    assert_eq!(device.upload(&server, "POST", &url).await, 204);
    assert_eq!(other.upload(&server, "PUT", &url).await, 403);
    assert_eq!(device.upload(&server, "PUT", &server.url("/repo/fw/manifest.json")).await, 403);
    assert_eq!(device.upload(&server, "PUT", &server.url("/repo/up//x")).await, 400);

    let stored = server.store.get_content("up/IMEI:493005100592800/tree.json").await.unwrap().unwrap();
    assert_eq!(stored.source, ContentSource::Device);
    assert_eq!(stored.device_id.as_deref(), Some(DEVICE));
    let bytes = omadm_testkit::fixtures::content_bytes(&server.state.content, &stored).await;
    assert_eq!(bytes, br#"{"Settings": {"Volume": 7}}"#);
    let operator = server.store.get_content("fw/manifest.json").await.unwrap().unwrap();
    assert_eq!(operator.source, ContentSource::Operator);

    // Over the limit of one device upload, in its own folder (a path it may not write is 403 before any byte).
    let client = http();
    let path = "/repo/up/IMEI%3A493005100592800/big.bin";
    let auth = authorization(&client, &server, AuthMode::Basic, "PUT", path, DEVICE, PASSWORD).await;
    let response = client
        .put(server.url(path))
        .header(DEVICE_ID_HEADER, DEVICE)
        .header(AUTHORIZATION, auth)
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_refused(response, 413, "limit").await;
    assert!(server.store.get_content("up/IMEI:493005100592800/big.bin").await.unwrap().is_none());

    // One event per stored upload.
    server.drain_outbox().await;
    let uploads: Vec<_> =
        server.topic_lines("results").into_iter().filter(|event| event["type"] == "content.uploaded").collect();
    assert_eq!(uploads.len(), 2);
    assert_eq!(uploads[0]["key"], DEVICE);
    assert_eq!(uploads[0]["payload"]["method"], "PUT");
    assert_eq!(uploads[1]["payload"]["method"], "POST");
}

#[actix_rt::test]
async fn bootstrap_is_served_to_an_authenticated_device_with_its_own_secret() {
    let server = TestServer::start(|_, _| {}).await;
    server.register(DEVICE, PASSWORD).await;
    let client = http();
    let path = "/bootstrap?DevID=IMEI%3A493005100592800&MCC=240&MNC=01";

    assert_refused(client.get(server.url(path)).send().await.unwrap(), 401, "authentication required").await;
    let auth = authorization(&client, &server, AuthMode::Basic, "GET", "/bootstrap", DEVICE, PASSWORD).await;
    let response = client.get(server.url("/bootstrap?MCC=240")).header(AUTHORIZATION, auth).send().await.unwrap();
    assert_refused(response, 400, "DevID").await;

    let mut secrets = Vec::new();
    for mode in [AuthMode::DigestSha256, AuthMode::Basic] {
        let auth = authorization(&client, &server, mode, "GET", path, DEVICE, PASSWORD).await;
        let response = client.get(server.url(path)).header(AUTHORIZATION, auth).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], DMMO_JSON);
        let document: serde_json::Value = response.json().await.unwrap();
        let account = DmAccount::from_dmmo_document(&document["MO"][0]).unwrap();
        account.check_bootstrap().unwrap();
        assert_eq!(account.server_id, "omadm-test");
        assert!(account.permits_moid("urn:oma:mo:oma-dm-devinfo:1.2"));
        secrets.push(account.notification_auth.unwrap().secret);
        assert_eq!(document["CMD"][0][0], "DEFAULT");
        assert_eq!(document["CMD"][0][2], "urn:oma:mo:oma-scomo:1.0");
    }
    // The secret was generated once, stored, and handed out the same way again.
    assert_eq!(secrets[0], secrets[1]);
    assert_eq!(secrets[0].len(), 64);
    let device = server.store.get_device(DEVICE).await.unwrap().unwrap();
    assert_eq!(device.auth_secret.as_deref(), Some(secrets[0].as_str()));

    // A header naming another device than DevID.
    let auth = authorization(&client, &server, AuthMode::Basic, "GET", path, DEVICE, PASSWORD).await;
    let response =
        client.get(server.url(path)).header(AUTHORIZATION, auth).header(DEVICE_ID_HEADER, OTHER).send().await.unwrap();
    assert_refused(response, 400, "different devices").await;
}

#[actix_rt::test]
async fn auto_registration_admits_devices_that_know_the_factory_password() {
    let server = TestServer::start(|config, _| config.auto_register_password = Some("factory".to_owned())).await;
    let newcomer = SimulatedDevice::new(DEVICE, "factory", AuthMode::DigestSha256);
    let reply = read_package2(newcomer.send_package1(&server, &InitiationPackage::default()).await).await;
    assert!(!reply.commands.is_empty());
    let registered = server.store.get_device(DEVICE).await.unwrap().unwrap();
    assert_eq!(registered.credentials, omadm_core::auth::credentials_for(DEVICE, "omadm", "factory"));

    let guesser = SimulatedDevice::new(OTHER, "not the factory password", AuthMode::Basic);
    let response = guesser.send_package1(&server, &InitiationPackage::default()).await;
    assert_refused(response, 401, "authentication required").await;
    assert!(server.store.get_device(OTHER).await.unwrap().is_none());

    // Off by default: the same factory password admits nobody.
    let closed = TestServer::start(|_, _| {}).await;
    let response = newcomer.send_package1(&closed, &InitiationPackage::default()).await;
    assert_refused(response, 401, "authentication required").await;
}
