//! Conformance of the client against the real server: the gateway's device edge over real HTTP on 127.0.0.1,
//! the embedded store in a temp dir. Commands are queued in the store as the operator API would; the client runs
//! a session; the test checks what the server recorded and what the device's tree holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::web;
use omadm_client::device::{BrowserHook, Device, ExecOutcome, ExecutableNode, ServerAccount};
use omadm_client::session::{SessionError, SessionRequest, run_session};
use omadm_client::transport::Transport;
use omadm_core::model::{CommandRecord, RepositoryItem};
use omadm_core::session::SessionConfig;
use omadm_core::store::Store;
use omadm_gateway::device::{DeviceEdge, DeviceEdgeOptions};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig};
use omadm_proto::package::AlertItem;
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{LeafValue, Node};
use omadm_testkit::fixtures::devinfo;
use serde_json::json;

const SERVER_ID: &str = "omadm-test";

struct TestServer {
    base: String,
    store: Arc<dyn Store>,
    content: omadm_core::content::ContentEngine,
    handle: actix_web::dev::ServerHandle,
    _temp: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let store = omadm_core::store::open(temp.path().join("store").to_str().unwrap()).await.unwrap();
        let bus = omadm_core::bus::open(temp.path().join("events").to_str().unwrap(), "omadm.").await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = GatewayConfig {
            session: SessionConfig {
                max_commands_per_package: 3,
                ..omadm_testkit::config::session(&format!("{base}/dm/s/"))
            },
            bootstrap: BootstrapConfig {
                server_id: SERVER_ID.to_owned(),
                defaults: vec![(format!("{base}/repo/defaults/example"), "urn:oma:mo:example-jit:1.0".to_owned())],
                ..omadm_testkit::config::bootstrap()
            },
            ..omadm_testkit::config::gateway(&base)
        };
        let content = omadm_core::content::ContentEngine::directory(&temp.path().join("content")).unwrap();
        let state = web::Data::new(AppState { store: store.clone(), bus, content: content.clone(), config });
        let edge = DeviceEdge::with_options(state.clone(), DeviceEdgeOptions::default());
        let handle = omadm_testkit::edge::serve(state, edge, listener, 1);
        TestServer { base, store, content, handle, _temp: temp }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn register(&self, device_id: &str, password: &str) {
        omadm_testkit::fixtures::register(&*self.store, device_id, password).await;
    }

    async fn enqueue(&self, device_id: &str, commands: serde_json::Value) {
        omadm_testkit::fixtures::enqueue(&*self.store, device_id, commands).await;
    }

    async fn publish(&self, path: &str, content_type: &str, body: &[u8]) {
        omadm_testkit::fixtures::publish(&*self.store, &self.content, path, content_type, body, None).await;
    }

    async fn bytes(&self, item: &RepositoryItem) -> Vec<u8> {
        omadm_testkit::fixtures::content_bytes(&self.content, item).await
    }

    /// (command name, status) of every command recorded for the device, in queue order.
    async fn statuses(&self, device_id: &str) -> Vec<(String, Option<u16>)> {
        let records: Vec<CommandRecord> = self.store.list_commands(device_id, None, 1000).await.unwrap();
        records.iter().map(|record| (record.command.name().to_owned(), record.status)).collect()
    }
}

fn device(server: &TestServer, device_id: &str) -> Device {
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: server.url("/dm") };
    Device::new(devinfo(device_id), "s3cret", account).unwrap()
}

struct Reboot;
#[async_trait::async_trait]
impl ExecutableNode for Reboot {
    async fn execute(&self, _client_uri: &str) -> ExecOutcome {
        ExecOutcome { status: StatusCode::OK, alert: Some(AlertItem::new("urn:example:at:rebooted")) }
    }
}

struct RecordingBrowser(Mutex<Vec<String>>);
impl BrowserHook for RecordingBrowser {
    fn open(&self, url: &str) {
        self.0.lock().unwrap().push(url.to_owned());
    }
}

#[actix_rt::test]
async fn every_command_succeeds_against_the_server() {
    let server = TestServer::start().await;
    let device_id = "IMEI:490154203237518";
    server.register(device_id, "s3cret").await;
    let settings =
        json!({"MOID": "urn:oma:mo:example-settings:1.0", "MIID": "main", "MOData": {"Volume": 7, "Reboot": null}});
    server.publish("settings.json", "application/dmmo+json", &serde_json::to_vec(&settings).unwrap()).await;
    server.publish("motd.txt", "text/plain", b"hello").await;
    let jit = json!({"MOID": "urn:oma:mo:example-jit:1.0", "MIID": "", "MOData": {"Mode": "auto"}});
    server.publish("defaults/example", "application/dmmo+json", &serde_json::to_vec(&jit).unwrap()).await;
    let repo = server.url("/repo");
    server
        .enqueue(
            device_id,
            json!([
                ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//"],
                ["HGET", format!("{repo}/settings.json"), "urn:oma:mo:example-settings:1.0/cfg/"],
                ["HGET", format!("{repo}/settings.json")],
                ["HGET", format!("{repo}/motd.txt"), "urn:oma:mo:example-settings:1.0/cfg/Motd"],
                ["HPUT", format!("{repo}/up/[DevID]/[MCC]/tree.json"), "urn:oma:mo:example-settings:1.0/cfg/"],
                ["HPOST", format!("{repo}/up/[DevID]/devinfo.json"), "urn:oma:mo:oma-dm-devinfo:1.2//FwV"],
                ["EXEC", "urn:oma:mo:example-settings:1.0/cfg/Reboot", format!("{repo}/alerts/[DevID]")],
                ["EXEC", "urn:oma:mo:example-settings:1.0/cfg/Reboot"],
                ["SHOW", format!("{repo}/info?d=[DevID]")],
                ["DEFAULT", format!("{repo}/defaults/example"), "urn:oma:mo:example-jit:1.0"],
                ["GET", "urn:oma:mo:example-jit:1.0//Mode"],
                ["DELETE", "urn:oma:mo:example-settings:1.0/cfg/Motd"]
            ]),
        )
        .await;
    let mut device = device(&server, device_id);
    // The EXEC target arrives with the first HGET; the executable behind it is the device maker's.
    device.register_executable("urn:oma:mo:example-settings:1.0/cfg/Reboot", Arc::new(Reboot));
    let browser = Arc::new(RecordingBrowser(Mutex::new(Vec::new())));
    device.set_browser(browser.clone());
    let transport = Transport::new(device.credentials.clone()).unwrap();
    let report =
        run_session(&mut device, &transport, SessionRequest { request_mos: true, alerts: Vec::new() }).await.unwrap();
    assert!(report.packages >= 4, "{report:?}");

    let statuses = server.statuses(device_id).await;
    let codes: Vec<u16> = statuses.iter().map(|(_, status)| status.unwrap()).collect();
    assert_eq!(codes, vec![200, 200, 201, 200, 200, 200, 200, 200, 200, 200, 200, 200], "{statuses:?}");
    let records = server.store.list_commands(device_id, None, 100).await.unwrap();
    assert_eq!(records[2].extra, vec![json!("urn:oma:mo:example-settings:1.0/main/")]);

    // The tree: HGET stored the instance, the leaf was deleted, JIT made the default instance.
    let cfg = device.tree.instance("urn:oma:mo:example-settings:1.0", "cfg").unwrap();
    assert_eq!(cfg.get(&["Volume"]), Some(&Node::Leaf(LeafValue::Int(7))));
    assert!(cfg.get(&["Motd"]).is_none());
    assert!(device.tree.instance("urn:oma:mo:example-settings:1.0", "main").is_some());
    assert!(device.tree.instance("urn:oma:mo:example-jit:1.0", "").is_some());

    // Uploads and the posted alert landed in the repository under the substituted paths.
    let upload = server.store.get_content(&format!("up/{device_id}/-1/tree.json")).await.unwrap().unwrap();
    let uploaded: serde_json::Value = serde_json::from_slice(&server.bytes(&upload).await).unwrap();
    assert_eq!(uploaded[0]["MOData"]["Volume"], 7);
    assert!(server.store.get_content(&format!("up/{device_id}/devinfo.json")).await.unwrap().is_some());
    let posted = server.store.get_content(&format!("alerts/{device_id}")).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&server.bytes(&posted).await).contains("urn:example:at:rebooted"));

    // The EXEC without ServerURI sent its alert in the Package#3; the server recorded it and answered it.
    let alerts = server.store.list_alerts(device_id, 10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].item.alert_type, "urn:example:at:rebooted");
    assert_eq!(report.alert_statuses.len(), 1);

    // The mirror holds the DevInfo the GET returned; MOS reached the inventory.
    let mirror = server.store.get_mirror(device_id).await.unwrap().unwrap();
    assert!(mirror.tree.to_string().contains("IMEI:490154203237518"));
    let registered = server.store.get_device(device_id).await.unwrap().unwrap();
    assert!(registered.supported_objects.len() >= 4, "{:?}", registered.supported_objects);

    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(browser.0.lock().unwrap().as_slice(), [format!("{repo}/info?d=IMEI%3A490154203237518")]);
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn error_paths_get_the_appendix_c_statuses() {
    let server = TestServer::start().await;
    let device_id = "IMEI:490154203237519";
    server.register(device_id, "s3cret").await;
    server.publish("motd.txt", "text/plain", b"hello").await;
    let grab = json!({"MOID": "urn:oma:mo:oma-dm-dmdac:1.0", "MOData": {"MOID": "urn:oma:mo:oma-dm-dmacc:2.0",
        "1": {"MIID": SERVER_ID, "MAID": format!("serverid:{SERVER_ID}"), "AccessRights": 15}}});
    server.publish("grab.json", "application/dmmo+json", &serde_json::to_vec(&grab).unwrap()).await;
    let repo = server.url("/repo");
    server
        .enqueue(
            device_id,
            json!([
                ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//NoSuchNode"],
                ["DELETE", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"],
                ["EXEC", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"],
                ["HGET", format!("{repo}/missing.json"), "urn:oma:mo:example:1.0/a/X"],
                ["HGET", format!("{repo}/motd.txt")],
                ["HGET", format!("{repo}/motd.txt"), "urn:oma:mo:oma-dm-dmacc:2.0/omadm-test/Name"],
                ["HGET", format!("{repo}/grab.json")],
                ["DELETE", "urn:oma:mo:oma-dm-dmdac:1.0/dmacc/"],
                ["SHOW", format!("{repo}/info")]
            ]),
        )
        .await;
    let mut device = device(&server, device_id);
    let transport = Transport::new(device.credentials.clone()).unwrap();
    run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();
    let codes: Vec<Option<u16>> = server.statuses(device_id).await.into_iter().map(|(_, status)| status).collect();
    let expected = [404, 405, 405, 404, 415, 403, 403, 403, 406].map(Some);
    assert_eq!(codes, expected);
    // Nothing the refusals touched changed.
    assert!(device.tree.instance("urn:oma:mo:oma-dm-dmdac:1.0", "dmacc").is_some());
    assert_eq!(device.tree.instances_of("urn:oma:mo:oma-dm-dmdac:1.0").count(), 1);
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn a_wrong_password_is_refused_with_401() {
    let server = TestServer::start().await;
    server.register("dev-wrong", "right").await;
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: server.url("/dm") };
    let mut device = Device::new(devinfo("dev-wrong"), "wrong", account).unwrap();
    let transport = Transport::new(device.credentials.clone()).unwrap();
    let error = run_session(&mut device, &transport, SessionRequest::default()).await.unwrap_err();
    assert!(matches!(error, SessionError::Refused { status: 401, .. }), "{error}");
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn once_the_inventory_is_fresh_a_session_has_no_commands() {
    let server = TestServer::start().await;
    server.register("dev-idle", "s3cret").await;
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: server.url("/dm") };
    let mut device = Device::new(devinfo("dev-idle"), "s3cret", account).unwrap();
    let transport = Transport::new(device.credentials.clone()).unwrap();
    let first = run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();
    // The server reads the inventory (GETs answered 200 with data) in the first session only.
    assert!(first.commands.iter().all(|command| command.status == StatusCode::OK), "{first:?}");
    for _ in 0..2 {
        let report = run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();
        assert!(report.commands.is_empty(), "{report:?}");
    }
    // One challenge for three sessions: the cached Digest challenge is answered up front with the next nc.
    assert_eq!(transport.challenges_answered(), 1);
    let sessions = server.store.list_sessions("dev-idle", 10).await.unwrap();
    assert_eq!(sessions.len(), 3);
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn client_initiated_bootstrap_then_a_session() {
    let server = TestServer::start().await;
    let device_id = "IMEI:490154203237520";
    server.register(device_id, "s3cret").await;
    let account = ServerAccount { server_id: "factory".to_owned(), package1_url: "http://127.0.0.1:9/none".to_owned() };
    let mut device = Device::new(devinfo(device_id), "s3cret", account).unwrap();
    device.network.mcc = Some("240".to_owned());
    let transport = Transport::new(device.credentials.clone()).unwrap();
    let outcome = omadm_client::bootstrap::client_initiated(&mut device, &transport, &server.base).await.unwrap();
    assert_eq!(outcome.server_id, SERVER_ID);
    assert_eq!(outcome.defaults, vec!["urn:oma:mo:example-jit:1.0".to_owned()]);
    assert_eq!(device.account.package1_url, server.url("/dm"));
    let installed = device.tree.instance("urn:oma:mo:oma-dm-dmacc:2.0", SERVER_ID).unwrap();
    assert!(installed.get(&["AuthNoti", "AuthSecret"]).is_some());
    // The installed account works: a session runs against the server it names.
    run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();

    // A wrong password is refused and installs nothing.
    let account = ServerAccount { server_id: "factory".to_owned(), package1_url: "http://127.0.0.1:9/none".to_owned() };
    let mut intruder = Device::new(devinfo(device_id), "wrong", account).unwrap();
    let transport = Transport::new(intruder.credentials.clone()).unwrap();
    let error = omadm_client::bootstrap::client_initiated(&mut intruder, &transport, &server.base).await.unwrap_err();
    assert!(matches!(error, omadm_client::bootstrap::BootstrapError::Refused { status: 401 }), "{error}");
    assert!(intruder.tree.instance("urn:oma:mo:oma-dm-dmacc:2.0", SERVER_ID).is_none());
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn a_valid_notification_over_udp_starts_a_session_with_mos() {
    use omadm_client::notification::{NotificationInbox, NotificationPolicy, system_clock};
    use omadm_proto::notification::{Notification, wrap_push};

    let server = TestServer::start().await;
    let device_id = "IMEI:490154203237521";
    server.register(device_id, "s3cret").await;
    let account = ServerAccount { server_id: "factory".to_owned(), package1_url: "http://127.0.0.1:9/none".to_owned() };
    let mut device = Device::new(devinfo(device_id), "s3cret", account).unwrap();
    let transport = Transport::new(device.credentials.clone()).unwrap();
    omadm_client::bootstrap::client_initiated(&mut device, &transport, &server.base).await.unwrap();
    // The AuthNoti secret the bootstrap installed is what the inbox verifies Package#0 with.
    let accounts = device.notification_accounts();
    let secret = accounts.iter().find(|account| account.server_id == SERVER_ID).unwrap().auth_secret.clone().unwrap();
    let (inbox, mut accepted) = NotificationInbox::new(device_id, accounts, NotificationPolicy::default(), 8);
    let listener = inbox.listen_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();

    let sign = |secret: &str, id: u16| {
        let package = Notification {
            server_id: Some(SERVER_ID.into()),
            notification_id: Some(id),
            request_mos: true,
            ..Notification::default()
        };
        wrap_push(&package.encode_signed(secret.as_bytes(), system_clock()).unwrap(), 1)
    };
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A forged one (wrong secret) is dropped; the genuine one comes out.
    socket.send_to(&sign("not the secret", 1), listener.local_address()).await.unwrap();
    socket.send_to(&sign(&secret, 2), listener.local_address()).await.unwrap();
    let notification = tokio::time::timeout(std::time::Duration::from_secs(5), accepted.recv()).await.unwrap().unwrap();
    assert_eq!(notification.notification_id, Some(2));
    assert!(notification.request_mos);

    assert!(server.store.get_device(device_id).await.unwrap().unwrap().supported_objects.is_empty());
    run_session(&mut device, &transport, SessionRequest::for_notification(&notification)).await.unwrap();
    let registered = server.store.get_device(device_id).await.unwrap().unwrap();
    assert!(!registered.supported_objects.is_empty(), "REQ-MOS made the device send its MOs");
    listener.stop().await;
    server.handle.stop(true).await;
}
