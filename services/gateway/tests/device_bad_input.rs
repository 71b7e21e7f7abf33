//! Bad input at the device edge, each over real HTTP: the right 4xx with a one-line reason, the session state
//! unchanged, and the server still serving afterwards. Never a 500 for a client mistake.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;

use std::time::Duration;

use device_support::{
    AuthMode, DEVICE_ID_HEADER, SimulatedDevice, TestServer, assert_refused, authorization, http, read_package2,
};
use omadm_core::auth::issue_nonce;
use omadm_core::clock;
use omadm_core::model::CommandState;
use omadm_proto::command::Command;
use omadm_proto::multipart::GetResultPart;
use omadm_proto::package::media::{INITIATION_JSON, RESPONSE_JSON};
use omadm_proto::package::{CommandStatus, InitiationPackage, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEVICE: &str = "IMEI:493005100592800";
const PASSWORD: &str = "s3cret";

/// Sends `body` as a Package#1 of `device_id` with Basic credentials.
async fn post_package1(server: &TestServer, device_id: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    let client = http();
    let auth = authorization(&client, server, AuthMode::Basic, "POST", "/dm", device_id, PASSWORD).await;
    client
        .post(server.url("/dm"))
        .header(CONTENT_TYPE, content_type)
        .header(DEVICE_ID_HEADER, device_id)
        .header(AUTHORIZATION, auth)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Opens a session with one queued EXEC: the Package#2 and the session URL.
async fn open_session(server: &TestServer, device: &SimulatedDevice) -> (RequestPackage, String) {
    server.enqueue(DEVICE, serde_json::json!([["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"]])).await;
    let reply = read_package2(device.send_package1(server, &InitiationPackage::default()).await).await;
    let Command::Cont(cont) = &reply.commands[0] else { panic!("{reply:?}") };
    let url = cont.server_uri().to_string();
    (reply, url)
}

fn all_ok(reply: &RequestPackage, count: usize) -> ResponsePackage {
    let _ = reply;
    ResponsePackage::new((0..count).map(|_| CommandStatus::new(StatusCode::OK)).collect())
}

async fn server_with_device() -> TestServer {
    let server = TestServer::start(|config, options| {
        config.max_body_bytes = 4096;
        options.body_read_timeout = Duration::from_millis(300);
    })
    .await;
    server.register(DEVICE, PASSWORD).await;
    server
}

#[actix_rt::test]
async fn package1_header_and_body_mistakes() {
    let server = server_with_device().await;
    let client = http();

    // Wrong media type, before anything else.
    let response = post_package1(&server, DEVICE, "application/json", b"{}".to_vec()).await;
    assert_refused(response, 415, INITIATION_JSON).await;
    // Missing OMADM-DevID.
    let response =
        client.post(server.url("/dm")).header(CONTENT_TYPE, INITIATION_JSON).body("{}").send().await.unwrap();
    assert_refused(response, 400, "OMADM-DevID").await;
    // OMADM-DevID not the authenticated user: 401, like any other credential failure.
    let auth = authorization(&client, &server, AuthMode::Basic, "POST", "/dm", DEVICE, PASSWORD).await;
    let response = client
        .post(server.url("/dm"))
        .header(CONTENT_TYPE, INITIATION_JSON)
        .header(DEVICE_ID_HEADER, "IMEI:1")
        .header(AUTHORIZATION, auth)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get_all(WWW_AUTHENTICATE).iter().count(), 3);
    assert_refused(response, 401, "authentication required").await;
    // Invalid JSON, deep nesting, a body over the limit.
    let response = post_package1(&server, DEVICE, INITIATION_JSON, b"{\"MOS\": [".to_vec()).await;
    assert_refused(response, 400, "not valid JSON").await;
    let deep = format!("{{\"Alert\": {}{}}}", "[".repeat(100), "]".repeat(100));
    let response = post_package1(&server, DEVICE, INITIATION_JSON, deep.into_bytes()).await;
    assert_refused(response, 400, "nested deeper").await;
    let response = post_package1(&server, DEVICE, INITIATION_JSON, vec![b' '; 5000]).await;
    assert_refused(response, 413, "limit").await;
    let response = post_package1(&server, DEVICE, INITIATION_JSON, br#"{"MOS": "x"}"#.to_vec()).await;
    assert_refused(response, 400, "MOS").await;

    // Nothing of that opened a session; a good Package#1 still works.
    assert!(server.store.list_sessions(DEVICE, 10).await.unwrap().is_empty());
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let transcript = device.run_session(&server, &InitiationPackage::default()).await;
    assert_eq!(transcript.packages.last().unwrap().commands, vec![Command::End]);
}

#[actix_rt::test]
async fn credentials_unknown_devices_and_stale_nonces_get_the_same_401() {
    let server = server_with_device().await;
    let client = http();
    let send = |authorization: Option<String>, device_id: &'static str| {
        let mut request = client
            .post(server.url("/dm"))
            .header(CONTENT_TYPE, INITIATION_JSON)
            .header(DEVICE_ID_HEADER, device_id)
            .body("{}");
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request.send()
    };
    let challenges = |response: &reqwest::Response| -> Vec<String> {
        response.headers().get_all(WWW_AUTHENTICATE).iter().map(|value| value.to_str().unwrap().to_owned()).collect()
    };

    let missing = send(None, DEVICE).await.unwrap();
    let values = challenges(&missing);
    assert!(values[0].starts_with("Digest realm=\"omadm\"") && values[0].contains("SHA-256"), "{values:?}");
    assert!(values[1].contains("algorithm=MD5"));
    assert!(values[2].starts_with("Basic"));
    assert_refused(missing, 401, "authentication required").await;

    let wrong = authorization(&client, &server, AuthMode::DigestSha256, "POST", "/dm", DEVICE, "guess").await;
    let response = send(Some(wrong), DEVICE).await.unwrap();
    assert!(!challenges(&response)[0].contains("stale"));
    assert_refused(response, 401, "authentication required").await;

    let unknown = authorization(&client, &server, AuthMode::Basic, "POST", "/dm", "IMEI:1", PASSWORD).await;
    let response = send(Some(unknown), "IMEI:1").await.unwrap();
    assert_refused(response, 401, "authentication required").await;

    let response = send(Some("Bearer abc".to_owned()), DEVICE).await.unwrap();
    assert_refused(response, 401, "authentication required").await;
    let response = send(Some("Digest username=\"x".to_owned()), DEVICE).await.unwrap();
    assert_refused(response, 401, "authentication required").await;

    // The right password on a nonce ten minutes old: stale=true, so the client retries without asking anyone.
    let old_nonce = issue_nonce(b"test nonce key", clock::now_millis() - 600_000);
    let old_challenge = format!("Digest realm=\"omadm\", qop=\"auth\", algorithm=SHA-256, nonce=\"{old_nonce}\"");
    let mut prompt = digest_auth::parse(&old_challenge).unwrap();
    let context = digest_auth::AuthContext::new_post(DEVICE, PASSWORD, "/dm", Option::<&[u8]>::None);
    let stale = prompt.respond(&context).unwrap().to_header_string();
    let response = send(Some(stale), DEVICE).await.unwrap();
    let values = challenges(&response);
    assert!(values[0].ends_with("stale=true") && values[1].ends_with("stale=true"), "{values:?}");
    assert_refused(response, 401, "authentication required").await;

    assert!(server.store.list_sessions(DEVICE, 10).await.unwrap().is_empty());
    let metrics = omadm_core::metrics::metrics().render();
    for reason in ["missing", "bad_credentials", "unsupported_scheme", "malformed", "stale_nonce"] {
        assert!(metrics.contains(&format!("omadm_auth_failures_total{{reason=\"{reason}\"}}")), "{reason}");
    }
    // The unknown device counts as bad_credentials: no label tells which ids exist.
    assert!(!metrics.contains("unknown_device"), "{metrics}");
}

#[actix_rt::test]
async fn package3_mistakes_leave_the_session_usable() {
    let server = server_with_device().await;
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let (reply, url) = open_session(&server, &device).await;
    let count = reply.commands.len();
    let client = http();
    let post = |content_type: &'static str, device_id: Option<&'static str>, body: Vec<u8>| {
        let mut request = client.post(&url).header(CONTENT_TYPE, content_type).body(body);
        if let Some(device_id) = device_id {
            request = request.header(DEVICE_ID_HEADER, device_id);
        }
        request.send()
    };
    let good = all_ok(&reply, count).to_json_bytes().unwrap();

    assert_refused(post("text/plain", Some(DEVICE), good.clone()).await.unwrap(), 415, "Package#3").await;
    assert_refused(post(RESPONSE_JSON, None, good.clone()).await.unwrap(), 400, "OMADM-DevID").await;
    assert_refused(post(RESPONSE_JSON, Some("IMEI:1"), good.clone()).await.unwrap(), 403, "another device").await;
    assert_refused(post(RESPONSE_JSON, Some(DEVICE), b"{\"Status\": [".to_vec()).await.unwrap(), 400, "JSON").await;
    let deep = format!("{{\"Status\": {}{}}}", "[".repeat(100), "]".repeat(100)).into_bytes();
    assert_refused(post(RESPONSE_JSON, Some(DEVICE), deep).await.unwrap(), 400, "nested deeper").await;
    assert_refused(post(RESPONSE_JSON, Some(DEVICE), vec![b' '; 5000]).await.unwrap(), 413, "limit").await;

    // Fewer and more statuses than commands.
    let fewer = all_ok(&reply, count - 1);
    assert_refused(device.send_package3(&url, &fewer, &[]).await, 400, "statuses").await;
    let more = all_ok(&reply, count + 1);
    assert_refused(device.send_package3(&url, &more, &[]).await, 400, "statuses").await;
    // A multipart part for position 1, which is CONT, not a GET.
    let parts = [GetResultPart::new(1, "text/plain", "x")];
    let response = device.send_package3(&url, &all_ok(&reply, count), &parts).await;
    assert_refused(response, 400, "GET").await;

    // Still the same session, still awaiting the same commands: the right answer is accepted.
    let state = server.store.get_session(DEVICE, url.rsplit('/').next().unwrap()).await.unwrap().unwrap();
    assert_eq!(state.awaiting.len(), count);
    assert_eq!(state.packages, 1);
    let mut transcript = device_support::SessionTranscript::default();
    let (package3, parts) = device.answer(&server, &reply, &mut transcript).await;
    let next = read_package2(device.send_package3(&url, &package3, &parts).await).await;
    assert_eq!(next.commands, vec![Command::End]);

    // The session ended: the same Package#3 again (its Package#2 was lost) gets the same END; any
    // other Package#3 is 410; an id never issued is 404.
    let again = read_package2(device.send_package3(&url, &package3, &parts).await).await;
    assert_eq!(again.commands, vec![Command::End]);
    let other = all_ok(&reply, count);
    assert_refused(device.send_package3(&url, &other, &[]).await, 410, "ended").await;
    let unknown = format!("{}/dm/s/{}", server.base, "0".repeat(32));
    assert_refused(device.send_package3(&unknown, &package3, &[]).await, 404, "no such session").await;
    let commands = server.store.list_commands(DEVICE, None, 10).await.unwrap();
    assert!(commands.iter().all(|record| record.state == CommandState::Done), "{commands:?}");
}

#[actix_rt::test]
async fn a_slow_client_gets_408_and_the_server_goes_on() {
    let server = server_with_device().await;
    let client = http();
    let auth = authorization(&client, &server, AuthMode::Basic, "POST", "/dm", DEVICE, PASSWORD).await;
    let address = server.base.strip_prefix("http://").unwrap().to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /dm HTTP/1.1\r\nHost: {address}\r\nContent-Type: {INITIATION_JSON}\r\n{DEVICE_ID_HEADER}: {DEVICE}\r\n\
         Authorization: {auth}\r\nContent-Length: 100\r\n\r\n{{\"MOS\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");

    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::Basic);
    let transcript = device.run_session(&server, &InitiationPackage::default()).await;
    assert_eq!(transcript.packages.last().unwrap().commands, vec![Command::End]);
}
