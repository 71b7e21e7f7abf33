//! The notifier as `omadm serve` runs it in-process and as `omadm notifier` runs it alone: an operator's
//! notify request becomes a signed Package#0 datagram at the device's notify address, over real UDP, or WAP
//! Push short messages to its MSISDN through the test kit's SMSC.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_testkit::http::JsonAnswer as _;
use std::net::UdpSocket;
use std::time::Duration;

use omadm_proto::notification::{Notification, unwrap_push, verify};
use serde_json::{Value, json};

mod support;

use support::{start, terminate};

/// Registers `device_id` (notify address `udp`, AuthNoti secret) and asks for a notification; 202 expected.
fn register_and_notify(base: &str, token: &str, device_id: &str, udp: &UdpSocket) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let registered = client
            .put(format!("{base}/api/v1/devices/{device_id}"))
            .bearer_auth(token)
            .json(&json!({"password": "pw", "auth_secret": "noti-secret", "notify_address": udp.local_addr().unwrap()}))
            .send()
            .await
            .unwrap();
        assert!(registered.status().is_success(), "{}", registered.text().await.unwrap());
        let notified = client
            .post(format!("{base}/api/v1/devices/{device_id}/notify"))
            .bearer_auth(token)
            .json(&json!({"req_mos": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(notified.status(), 202);
    });
}

/// The next Package#0 datagram on `udp`, verified with the device's AuthNoti secret (signed within a minute).
fn receive(udp: &UdpSocket) -> Notification {
    udp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buffer = [0u8; 2048];
    let (length, _) = udp.recv_from(&mut buffer).expect("no Package#0 within 30 s");
    let package = unwrap_push(&buffer[..length]).unwrap();
    let now =
        u32::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    verify(package, Some(b"noti-secret"), now, Some(60)).unwrap()
}

#[test]
fn serve_sends_a_signed_package0_for_a_notify_request() {
    let data = omadm_testkit::process::data_dir();
    let served = start(data.path(), &["--server-id", "dms.example.com"]);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_and_notify(&served.base, &served.token, "IMEI:wake-me", &udp);
    let notification = receive(&udp);
    assert_eq!(notification.server_id.as_deref(), Some("dms.example.com"));
    // Never seen: its inventory is missing, so the device is asked for its MOs.
    assert!(notification.request_mos, "{notification:?}");
    assert!(terminate(served).success());

    // The outcome is an event of its own, next to the request.
    let lines = std::fs::read_to_string(data.path().join("events/omadm.notifications.jsonl")).unwrap();
    let types: Vec<String> = lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(types.contains(&"notification.requested".to_owned()), "{types:?}");
    assert!(types.contains(&"notification.sent".to_owned()), "{types:?}");
}

/// `omadm serve --notifier-smpp-*`: a device registered with only an MSISDN gets its Package#0 as SMS through the
/// SMSC (a real SMPP bind over loopback TCP), which reassembles and verifies with the device's secret.
#[test]
fn serve_sends_a_phone_its_package0_by_sms_through_the_configured_smsc() {
    use omadm_proto::notification::SmsReassembler;
    use omadm_testkit::smsc::{SmscOptions, TestSmsc};

    let smsc = TestSmsc::start(SmscOptions::default());
    let data = omadm_testkit::process::data_dir();
    let port = smsc.port().to_string();
    let flags = ["--server-id", "dms.example.com", "--notifier-smpp-host", "127.0.0.1", "--notifier-smpp-port", &port];
    let served = start(data.path(), &[&flags[..], &["--notifier-smpp-system-id", "omadm"]].concat());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let request_id = runtime.block_on(async {
        let client = reqwest::Client::new();
        let registered = client
            .put(format!("{}/api/v1/devices/IMEI:phone", served.base))
            .bearer_auth(&served.token)
            .json(&json!({"password": "pw", "auth_secret": "noti-secret", "msisdn": "+491701234567"}))
            .send()
            .await
            .unwrap();
        assert!(registered.status().is_success(), "{}", registered.text().await.unwrap());
        let notified = client
            .post(format!("{}/api/v1/devices/IMEI:phone/notify", served.base))
            .bearer_auth(&served.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(notified.status(), 202);
        notified.json::<serde_json::Value>().await.unwrap()["request_id"].as_str().unwrap().to_owned()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut reassembler = SmsReassembler::default();
    let mut push = None;
    let mut seen = 0;
    while push.is_none() {
        assert!(std::time::Instant::now() < deadline, "no complete SMS push within 30 s: {:?}", smsc.submits());
        let submits = smsc.submits();
        for submit in &submits[seen..] {
            assert_eq!(
                (submit.destination_addr.as_str(), submit.esm_class, submit.data_coding),
                ("491701234567", 0x40, 0x04)
            );
            push = push.or(reassembler.accept(&submit.destination_addr, &submit.short_message, 0).unwrap());
        }
        seen = submits.len();
        std::thread::sleep(Duration::from_millis(50));
    }
    let now =
        u32::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let notification = verify(unwrap_push(&push.unwrap()).unwrap(), Some(b"noti-secret"), now, Some(60)).unwrap();
    assert_eq!(notification.server_id.as_deref(), Some("dms.example.com"));
    assert_eq!(smsc.binds().len(), 1);
    assert_eq!(smsc.binds()[0].system_id, "omadm");
    // The SMSC's delivery receipt came back on the transceiver bind: the API shows it on the request.
    let delivery = runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let shown: serde_json::Value = client
                .get(format!("{}/api/v1/notifications/{request_id}", served.base))
                .bearer_auth(&served.token)
                .json_answer()
                .await;
            if !shown["delivery"].is_null() {
                assert_eq!(shown["state"], "sent");
                break shown["delivery"].clone();
            }
            assert!(std::time::Instant::now() < deadline, "no delivery report within 30 s: {shown}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!((delivery["delivered"].as_bool(), delivery["status"].as_str()), (Some(true), Some("DELIVRD")));
    assert_eq!(delivery["transport"], "sms");
    assert!(terminate(served).success());
}

/// `omadm notifier` replicas beside an `omadm gateway`, on one redis-server and one tansu broker: the request the
/// gateway's API commits reaches the notifier through Kafka and the device gets its datagram; the notifier stops
/// on SIGTERM with exit 0.
#[test]
fn the_notifier_role_runs_alone_beside_a_gateway() {
    use omadm_testkit::kafka::KafkaBroker;
    use omadm_testkit::ports::free_port;
    use omadm_testkit::process::{self, Output};
    use omadm_testkit::redis::RedisServer;

    const TOKEN: &str = "notifier-role-admin-token";
    let redis = RedisServer::start();
    let broker = KafkaBroker::start();
    let prefix = omadm_testkit::kafka::unique_prefix();
    let bus = format!("kafka://{}", broker.brokers());
    let (port, internal_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = process::command(env!("CARGO_BIN_EXE_omadm"));
    gateway
        .arg("gateway")
        .args(["--listen", &format!("127.0.0.1:{port}"), "--internal-listen", &format!("127.0.0.1:{internal_port}")])
        .args(["--ops-listen", "none", "--store", &redis.url(), "--bus", &bus, "--topic-prefix", &prefix])
        .args(["--content", "memory://"])
        .args(broker.client_setting_args())
        .args(["--admin-token", TOKEN, "--public-url", &base, "--server-id", "dms.cluster.example"])
        .env("RUST_LOG", "warn");
    let mut gateway = process::Spawned::spawn(gateway, Output::Lines);
    gateway.wait_for_line(Duration::from_secs(60), |line| line.starts_with("try: "));

    let ops_port = free_port();
    let mut notifier = process::command(env!("CARGO_BIN_EXE_omadm"));
    notifier
        .arg("notifier")
        .args(["--store", &redis.url(), "--bus", &bus, "--topic-prefix", &prefix])
        .args(["--ops-listen", &format!("127.0.0.1:{ops_port}"), "--server-id", "dms.cluster.example"])
        .args(broker.client_setting_args())
        .env("RUST_LOG", "warn");
    let mut notifier = process::Spawned::spawn(notifier, Output::Lines);
    let banner = notifier.wait_for_line(Duration::from_secs(60), |line| line.starts_with("ops: "));
    assert!(banner[0].starts_with("omadm notifier: consuming notification.requested"), "{banner:?}");

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_and_notify(&base, TOKEN, "IMEI:wake-me-too", &udp);
    let notification = receive(&udp);
    assert_eq!(notification.server_id.as_deref(), Some("dms.cluster.example"));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // The outcome (and its count) is recorded once the datagram has left: it may trail the device's receipt.
        let metrics = format!("http://127.0.0.1:{ops_port}/metrics");
        omadm_testkit::wait::eventually("the notifier to count its outcome", Duration::from_secs(10), async || {
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            text.contains("omadm_notifications_total{outcome=\"sent\",transport=\"udp\"} 1")
        })
        .await;
        let ready = reqwest::get(format!("http://127.0.0.1:{ops_port}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
    });
    let exit = notifier.terminate(Duration::from_secs(20)).expect("the notifier did not stop within 20 s");
    assert!(exit.success(), "{exit:?}");
    gateway.kill();
}

/// `omadm serve --gcm-sender-id ... --notifier-push-url ...`: the bootstrap hands out the RegURL the binary
/// serves, omadm-client registers its RegID there, and a notify request reaches the push gateway with the
/// configured credential, its `data.SMS` a Package#0 signed with the device's secret.
#[test]
fn serve_pushes_a_registered_device_its_package0_through_the_push_gateway() {
    use omadm_testkit::push::{PushGatewayOptions, TestPushGateway};

    let gateway = TestPushGateway::start(PushGatewayOptions::default());
    let data = omadm_testkit::process::data_dir();
    let url = gateway.url();
    let flags = ["--server-id", "dms.example.com", "--gcm-sender-id", "42", "--notifier-push-url", &url];
    let served =
        start(data.path(), &[&flags[..], &["--notifier-push-auth-header", "Authorization: Bearer t0ken"]].concat());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let registered = client
            .put(format!("{}/api/v1/devices/IMEI:android", served.base))
            .bearer_auth(&served.token)
            .json(&json!({"password": "pw", "auth_secret": "noti-secret"}))
            .send()
            .await
            .unwrap();
        assert!(registered.status().is_success(), "{}", registered.text().await.unwrap());

        let account = omadm_client::device::ServerAccount {
            server_id: "dms.example.com".to_owned(),
            package1_url: format!("{}/dm", served.base),
        };
        let mut device =
            omadm_client::device::Device::new(omadm_testkit::fixtures::devinfo("IMEI:android"), "pw", account).unwrap();
        let transport = omadm_client::transport::Transport::new(device.credentials.clone()).unwrap();
        omadm_client::bootstrap::client_initiated(&mut device, &transport, &served.base).await.unwrap();
        let gcm = omadm_client::push::gcm_push(&device).unwrap();
        assert_eq!(gcm.registration_url, format!("{}/push/gcm/register", served.base));
        omadm_client::push::register(&device, &transport, "fcm-token:android").await.unwrap();

        let shown: Value = client
            .get(format!("{}/api/v1/devices/IMEI:android", served.base))
            .bearer_auth(&served.token)
            .json_answer()
            .await;
        assert!(shown["push_registered_at"].as_u64().is_some(), "{shown}");
        assert_eq!(shown["notify"], json!(["push", "udp", "sms"]));
        assert!(!shown.to_string().contains("fcm-token"), "the RegID is not shown");
        let notified = client
            .post(format!("{}/api/v1/devices/IMEI:android/notify", served.base))
            .bearer_auth(&served.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(notified.status(), 202);
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing reached the push gateway within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pushed = &gateway.requests()[0];
    assert_eq!(
        (pushed.token.as_deref(), pushed.authorization.as_deref()),
        (Some("fcm-token:android"), Some("Bearer t0ken"))
    );
    let package = omadm_proto::notification::decode_base64(pushed.sms.as_deref().unwrap()).unwrap();
    let now =
        u32::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let notification = verify(&package, Some(b"noti-secret"), now, Some(60)).unwrap();
    assert_eq!(notification.server_id.as_deref(), Some("dms.example.com"));
    assert!(terminate(served).success());
}
