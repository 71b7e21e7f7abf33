//! Package#0 through a push service (Appendix D.2), end to end over real HTTP in the embedded mode: the gateway's
//! device edge hands out Push/GCM in the bootstrap and takes registrations at the URLs it names, omadm-client
//! registers its RegID there, the notifier sends the Package#0 to the test push gateway (FCM HTTP v1 shape),
//! and the device's own filter accepts what arrived.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use omadm_client::device::{Device as ClientDevice, ServerAccount};
use omadm_client::notification::{NotificationFilter, NotificationPolicy};
use omadm_client::transport::Transport;
use omadm_core::model::{Device, NotifyTransport};
use omadm_core::store::{Store, WriteBatch};
use omadm_gateway::device::DeviceEdge;
use omadm_gateway::device::push::{REGISTER_PATH, UNREGISTER_PATH};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig, GcmOffer};
use omadm_notifier::{Notifier, NotifierArgs, NotifierSettings};
use omadm_proto::notification::{decode_base64, verify};
use omadm_runtime::ops::Readiness;
use omadm_testkit::push::{PushGatewayOptions, TestPushGateway};
use support::*;

const PASSWORD: &str = "device password";
const CREDENTIAL: &str = "Bearer test-push-credential";

/// The device edge on a loopback port over `world`'s store and bus, offering Push/GCM in its bootstrap.
fn serve_edge(world: &Embedded, content_dir: &std::path::Path) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = GatewayConfig {
        bootstrap: BootstrapConfig {
            server_id: SERVER_ID.to_owned(),
            gcm: Some(GcmOffer { sender_id: "1234567890".to_owned(), registration_parameters: Some("fleet=m".into()) }),
            ..omadm_testkit::config::bootstrap()
        },
        ..omadm_testkit::config::gateway(&base)
    };
    let content = omadm_core::content::ContentEngine::directory(content_dir).unwrap();
    let state = web::Data::new(AppState { store: world.store.clone(), bus: world.bus.clone(), content, config });
    let edge = DeviceEdge::new(state.clone());
    edge.set_outbox_waker(world.relay.waker());
    (base.clone(), omadm_testkit::edge::serve(state, edge, listener, 1))
}

/// A device registered by the operator with a UDP notify address too (the fallback), bootstrapped by
/// omadm-client against the edge: its DMAcc holds the AuthNoti secret and Push/GCM.
async fn bootstrapped_device(store: &dyn Store, base: &str, id: &str) -> (ClientDevice, Transport, ListeningDevice) {
    let listening = ListeningDevice::register(store, id, None).await;
    let mut device = store.get_device(id).await.unwrap().unwrap();
    device.credentials = omadm_core::auth::credentials_for(id, omadm_core::auth::DEFAULT_REALM, PASSWORD);
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: format!("{base}/dm") };
    let mut client = ClientDevice::new(omadm_testkit::fixtures::devinfo(id), PASSWORD, account).unwrap();
    let transport = Transport::new(client.credentials.clone()).unwrap();
    omadm_client::bootstrap::client_initiated(&mut client, &transport, base).await.unwrap();
    // The secret the bootstrap handed out is the one the notifier signs with.
    let secret = store.get_device(id).await.unwrap().unwrap().auth_secret;
    (client, transport, ListeningDevice { secret, ..listening })
}

fn push_settings(url: &str, timeout: u64) -> NotifierSettings {
    NotifierSettings::resolve(&NotifierArgs {
        server_id: Some(SERVER_ID.to_owned()),
        dedup_window: Some(0),
        udp_bind: Some("127.0.0.1:0".parse().unwrap()),
        push_url: Some(url.to_owned()),
        push_auth_header: Some(format!("Authorization: {CREDENTIAL}")),
        push_timeout: Some(timeout),
        // One attempt: each request's first outcome is its last, and no retry reaches a later phase's gateway.
        max_attempts: Some(1),
        ..NotifierArgs::default()
    })
    .unwrap()
}

fn push_sends(outcome: &str) -> u64 {
    omadm_notifier::metrics::metrics().push_sends.with_label_values(&[outcome]).get()
}

async fn registration(store: &dyn Store, id: &str) -> Option<String> {
    store.get_device(id).await.unwrap().unwrap().push_registration.map(|registration| registration.registration_id)
}

#[actix_rt::test]
async fn a_registered_device_is_notified_through_the_push_gateway_until_it_unregisters() {
    let world = embedded().await;
    let content = tempfile::tempdir().unwrap();
    let (base, edge) = serve_edge(&world, content.path());
    let store = &*world.store;
    let (client, transport, listening) = bootstrapped_device(store, &base, "IMEI:700").await;

    // The bootstrap named the routes the edge mounts.
    let gcm = omadm_client::push::gcm_push(&client).expect("the bootstrap carried Push/GCM");
    assert_eq!(gcm.registration_url, format!("{base}{REGISTER_PATH}"));
    assert_eq!(gcm.unregistration_url, format!("{base}{UNREGISTER_PATH}"));
    assert_eq!(gcm.sender_id, "1234567890");

    omadm_client::push::register(&client, &transport, "token:700-a").await.unwrap();
    let stored = store.get_device("IMEI:700").await.unwrap().unwrap().push_registration.unwrap();
    assert_eq!(stored.registration_id, "token:700-a");
    assert!(stored.registered_at > 0);

    let gateway = TestPushGateway::start(PushGatewayOptions::default());
    let readiness = Arc::new(Readiness::new());
    let notifier =
        Notifier::start(world.store.clone(), world.bus.clone(), push_settings(&gateway.url(), 10), readiness.clone())
            .await
            .unwrap();
    let mut observer = Observer::start(&world.bus).await;

    // Push first: the Package#0 reaches the gateway, in the FCM v1 shape, with the configured credential.
    let first = request(store, "IMEI:700", false).await;
    observer.wait_for(std::slice::from_ref(&first)).await;
    let sent = observer.outcome(&first);
    assert_eq!((sent.event_type.as_str(), sent.payload["transport"].as_str()), ("notification.sent", Some("push")));
    let requests = gateway.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let pushed = &requests[0];
    assert_eq!(pushed.authorization.as_deref(), Some(CREDENTIAL));
    assert!(pushed.content_type.as_deref().unwrap().starts_with("application/json"));
    assert_eq!(pushed.token.as_deref(), Some("token:700-a"), "the token is the RegID");
    let package = decode_base64(pushed.sms.as_deref().unwrap()).unwrap();
    let secret = listening.secret.clone().expect("the bootstrap gave the device a secret");
    let now = u32::try_from(omadm_core::clock::now_millis() / 1000).unwrap();
    let verified = verify(&package, Some(secret.as_bytes()), now, Some(60)).unwrap();
    assert_eq!((verified.server_id.as_deref(), verified.notification_id), (Some(SERVER_ID), Some(1)));
    // The device's own filter accepts the message as the push service delivers it (its data object).
    let mut filter = NotificationFilter::new(client.notification_accounts(), NotificationPolicy::default());
    let accepted = filter.receive_push_message(&pushed.body["message"], now).unwrap();
    assert_eq!((accepted.server_id.as_str(), accepted.notification_id), (SERVER_ID, Some(1)));
    assert!(listening.receive(Duration::from_millis(300)).await.is_none(), "push went, UDP did not");

    // Unregistered: the next notification no longer goes to push; it falls back to UDP.
    omadm_client::push::unregister(&client, &transport, "token:700-a").await.unwrap();
    assert_eq!(registration(store, "IMEI:700").await, None);
    let second = request(store, "IMEI:700", false).await;
    observer.wait_for(std::slice::from_ref(&second)).await;
    assert_eq!(observer.outcome(&second).payload["transport"], "udp");
    assert!(listening.receive(PATIENCE).await.is_some(), "the datagram arrived");
    assert_eq!(gateway.requests().len(), 1, "nothing more went to the push gateway");

    // A push-only device that unregistered has no transport.
    let mut device = store.get_device("IMEI:700").await.unwrap().unwrap();
    device.notify_order = vec![NotifyTransport::Push];
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let third = request(store, "IMEI:700", false).await;
    observer.wait_for(std::slice::from_ref(&third)).await;
    assert_eq!(observer.outcome(&third).payload["reason"], "no_transport");

    // A RegID the gateway answers UNREGISTERED (404) for is cleared, and that send fails over to what is next.
    let mut device = store.get_device("IMEI:700").await.unwrap().unwrap();
    device.notify_order = vec![NotifyTransport::Push, NotifyTransport::Udp];
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    omadm_client::push::register(&client, &transport, "token:700-b").await.unwrap();
    gateway.unregister("token:700-b");
    let unregistered_before = push_sends("unregistered");
    let fourth = request(store, "IMEI:700", false).await;
    observer.wait_for(std::slice::from_ref(&fourth)).await;
    assert_eq!(observer.outcome(&fourth).payload["transport"], "udp", "fell back after the 404");
    assert!(listening.receive(PATIENCE).await.is_some());
    assert_eq!(gateway.requests().last().unwrap().status, 404);
    assert_eq!(registration(store, "IMEI:700").await, None, "the stale RegID was cleared");
    assert_eq!(push_sends("unregistered"), unregistered_before + 1);

    // The device edge's events reached the bus: registered, unregistered (by the device), registered, and
    // unregistered (by the push gateway).
    let fifth = request(store, "IMEI:700", false).await;
    observer.wait_for(std::slice::from_ref(&fifth)).await;
    let push_events: Vec<(String, String)> = observer
        .others
        .iter()
        .map(|event| (event.event_type.clone(), event.payload["by"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected = [
        ("push.registered", ""),
        ("push.unregistered", "device"),
        ("push.registered", ""),
        ("push.unregistered", "push_gateway"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    assert_eq!(push_events, expected);
    assert!(observer.others.iter().all(|event| event.key == "IMEI:700"));
    assert_eq!(readiness.verdict(), Ok(()));

    notifier.stop().await;
    edge.stop(true).await;
    world.relay.stop().await;
}

#[actix_rt::test]
async fn an_unreachable_or_slow_push_gateway_becomes_a_failure_with_its_reason() {
    let world = embedded().await;
    let content = tempfile::tempdir().unwrap();
    let (base, edge) = serve_edge(&world, content.path());
    let store = &*world.store;
    let (client, transport, _listening) = bootstrapped_device(store, &base, "IMEI:701").await;
    omadm_client::push::register(&client, &transport, "token:701").await.unwrap();
    let mut device: Device = store.get_device("IMEI:701").await.unwrap().unwrap();
    device.notify_order = vec![NotifyTransport::Push];
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let mut observer = Observer::start(&world.bus).await;
    let readiness = Arc::new(Readiness::new());

    // Nothing listens on the gateway's port.
    let closed = omadm_testkit::ports::free_port();
    let url = format!("http://127.0.0.1:{closed}/v1/projects/omadm-test/messages:send");
    let errors_before = push_sends("error");
    let notifier = Notifier::start(world.store.clone(), world.bus.clone(), push_settings(&url, 5), readiness.clone())
        .await
        .unwrap();
    let unreachable = request(store, "IMEI:701", false).await;
    observer.wait_for(std::slice::from_ref(&unreachable)).await;
    let failed = observer.outcome(&unreachable);
    assert_eq!(failed.event_type, "notification.failed");
    assert_eq!(
        (failed.payload["reason"].as_str(), failed.payload["transport"].as_str()),
        (Some("transport_error"), Some("push"))
    );
    let detail = failed.payload["detail"].as_str().unwrap();
    assert!(detail.contains("cannot connect"), "{detail}");
    assert_eq!(push_sends("error"), errors_before + 1);
    assert_eq!(registration(store, "IMEI:701").await.as_deref(), Some("token:701"), "kept: the gateway said nothing");
    notifier.stop().await;

    // A gateway slower than the timeout: the send gives up after it, and the notifier goes on.
    let slow = TestPushGateway::start(PushGatewayOptions { delay: Duration::from_secs(4) });
    let timeouts_before = push_sends("timeout");
    let notifier =
        Notifier::start(world.store.clone(), world.bus.clone(), push_settings(&slow.url(), 1), readiness.clone())
            .await
            .unwrap();
    let started = std::time::Instant::now();
    let timed_out = request(store, "IMEI:701", false).await;
    observer.wait_for(std::slice::from_ref(&timed_out)).await;
    assert!(started.elapsed() < Duration::from_secs(4), "not held for the gateway's delay: {:?}", started.elapsed());
    let failed = observer.outcome(&timed_out);
    assert_eq!(failed.payload["reason"], "transport_error");
    assert!(failed.payload["detail"].as_str().unwrap().contains("no answer within 1 s"), "{failed:?}");
    assert_eq!(push_sends("timeout"), timeouts_before + 1);

    // A gateway that refuses (503) keeps the RegID and says so.
    drop(slow);
    notifier.stop().await;
    let refusing = TestPushGateway::start(PushGatewayOptions::default());
    refusing.fail_with(Some(503));
    let notifier =
        Notifier::start(world.store.clone(), world.bus.clone(), push_settings(&refusing.url(), 5), readiness.clone())
            .await
            .unwrap();
    let refused = request(store, "IMEI:701", false).await;
    observer.wait_for(std::slice::from_ref(&refused)).await;
    let detail = observer.outcome(&refused).payload["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("HTTP 503"), "{detail}");
    assert_eq!(registration(store, "IMEI:701").await.as_deref(), Some("token:701"));

    notifier.stop().await;
    edge.stop(true).await;
    world.relay.stop().await;
}

#[actix_rt::test]
async fn the_registration_endpoints_authenticate_like_a_package1_and_refuse_bad_forms() {
    let world = embedded().await;
    let content = tempfile::tempdir().unwrap();
    let (base, edge) = serve_edge(&world, content.path());
    let store = &*world.store;
    let (client, transport, _listening) = bootstrapped_device(store, &base, "IMEI:702").await;
    let http = reqwest::Client::new();
    let url = format!("{base}{REGISTER_PATH}");
    let form = "application/x-www-form-urlencoded;charset=UTF-8";
    let post = |body: String, content_type: &'static str, password: Option<&'static str>| {
        let mut request =
            http.post(&url).header("Content-Type", content_type).header("OMADM-DevID", "IMEI:702").body(body);
        if let Some(password) = password {
            request = request.basic_auth("IMEI:702", Some(password));
        }
        async move { request.send().await.unwrap() }
    };

    let unauthenticated = post("RegId=t1".to_owned(), form, None).await;
    assert_eq!(unauthenticated.status(), 401);
    assert!(unauthenticated.headers().get("www-authenticate").is_some(), "challenges, as for a Package#1");
    assert_eq!(post("RegId=t1".to_owned(), form, Some("wrong password")).await.status(), 401);
    assert_eq!(registration(store, "IMEI:702").await, None, "nothing stored without the credentials");

    assert_eq!(post("RegId=t1".to_owned(), "application/json", Some(PASSWORD)).await.status(), 415);
    let latin1 = "application/x-www-form-urlencoded;charset=ISO-8859-1";
    assert_eq!(post("RegId=t1".to_owned(), latin1, Some(PASSWORD)).await.status(), 415);
    for bad in [
        String::new(),
        "fleet=m".to_owned(),
        "RegId=".to_owned(),
        "RegId=a&RegId=b".to_owned(),
        format!("RegId={}", "t".repeat(omadm_core::model::MAX_PUSH_REGISTRATION_ID_BYTES + 1)),
    ] {
        let answer = post(bad.clone(), form, Some(PASSWORD)).await;
        assert_eq!(answer.status(), 400, "{}", &bad[..bad.len().min(40)]);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|reason| !reason.is_empty()));
    }
    let oversized = post(format!("RegId={}", "t".repeat(20 * 1024)), form, Some(PASSWORD)).await;
    assert_eq!(oversized.status(), 413);
    assert_eq!(registration(store, "IMEI:702").await, None);

    // Basic with the device's password, the same as Digest through omadm-client.
    assert_eq!(post("RegId=t1&fleet=m".to_owned(), form, Some(PASSWORD)).await.status(), 204);
    assert_eq!(registration(store, "IMEI:702").await.as_deref(), Some("t1"));
    // An unregister naming another RegId leaves the held one alone; the right one clears it.
    omadm_client::push::unregister(&client, &transport, "t0").await.unwrap();
    assert_eq!(registration(store, "IMEI:702").await.as_deref(), Some("t1"));
    omadm_client::push::unregister(&client, &transport, "t1").await.unwrap();
    assert_eq!(registration(store, "IMEI:702").await, None);
    // Unregistering again is no error.
    omadm_client::push::unregister(&client, &transport, "t1").await.unwrap();

    edge.stop(true).await;
    world.relay.stop().await;
}
