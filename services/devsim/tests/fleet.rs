//! omadm-devsim against the real `omadm serve` binary over sockets: a 1,000-device run with registration,
//! the FUMO path reported through the server, and a session started by a Package#0 over real UDP on loopback.

// Test helpers: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use omadm_proto::notification::Notification;
use omadm_testkit::ports::free_udp_port;
use omadm_testkit::process::{self, Served};
use serde_json::{Value, json};

const TOKEN: &str = "devsim-test-token";

/// A running `omadm serve` (killed when dropped) on a fresh port, with the test's admin token.
fn serve(data_dir: &Path) -> Served {
    process::serve(&process::omadm_binary(), data_dir, &["--admin-token", TOKEN])
}

fn devsim(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omadm-devsim"));
    command
        .args(args)
        .env_remove("OMADM_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn report_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!("no JSON report ({error}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}

async fn api(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_registered_devices_all_finish_their_sessions() {
    let data = omadm_testkit::process::data_dir();
    let served = serve(data.path());
    let report_file = data.path().join("report.json");
    let port = free_udp_port().to_string();
    let report_path = report_file.to_str().unwrap();
    let args = [
        "--server",
        &served.base,
        "--devices",
        "1000",
        "--id-prefix",
        "fleet-",
        "--register",
        "--admin-token",
        TOKEN,
        "--concurrency",
        "32",
        "--sessions-per-device",
        "1",
        "--notify-port",
        &port,
        "--report",
        report_path,
    ];
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let output =
        tokio::task::spawn_blocking(move || devsim(&args.iter().map(String::as_str).collect::<Vec<_>>()).output())
            .await
            .unwrap()
            .unwrap();
    let report = report_of(&output);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report["devices"], 1000);
    assert_eq!(report["registered"], 1000, "{report}");
    assert_eq!(report["sessions_ok"], 1000, "{report}");
    assert_eq!(report["sessions_failed"], 0, "{report}");
    assert_eq!(report["errors"], json!({}), "{report}");
    assert!(report["packages"].as_u64().unwrap() >= 1000, "{report}");
    assert!(report["sessions_per_s"].as_f64().unwrap() > 0.0, "{report}");
    for which in ["exchange", "session"] {
        let latency = &report["latency_ms"][which];
        let (p50, p99, max) =
            (latency["p50"].as_f64().unwrap(), latency["p99"].as_f64().unwrap(), latency["max"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{which}: {latency}");
    }
    // Every status the devices gave is a success.
    for (status, _) in report["commands_by_status"].as_object().unwrap() {
        assert!(status.starts_with('2'), "{report}");
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(written, report);

    // The server saw them: registered, and each with one ended session.
    let device = api(reqwest::Method::GET, format!("{}/api/v1/devices/fleet-000999", served.base), None).await;
    assert_eq!(device["inventory"]["mod"], "SIM-1", "{device}");
    assert_eq!(device["last_session"]["outcome"], "ended", "{device}");
    // Registered with its own notification address: 127.x.y.z at the fleet's notify port.
    let address = format!("{}:{port}", omadm_devsim::profile::notify_address(999));
    assert_eq!(device["notify_address"], address.as_str(), "{device}");
    let sessions =
        api(reqwest::Method::GET, format!("{}/api/v1/devices/fleet-000500/sessions", served.base), None).await;
    assert_eq!(sessions.to_string().matches("\"outcome\"").count(), 1, "{sessions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firmware_update_reports_its_result_code_to_the_server() {
    let data = omadm_testkit::process::data_dir();
    let served = serve(data.path());
    let device_id = "fw-000000";
    api(reqwest::Method::PUT, format!("{}/api/v1/devices/{device_id}", served.base), Some(json!({"password": "pw"})))
        .await;
    let client = reqwest::Client::new();
    let put = |path: &str, content_type: &str, body: Vec<u8>| {
        client
            .put(format!("{}/api/v1/repository/{path}", served.base))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert!(put("fw/r2.bin", "application/octet-stream", vec![7; 4096]).await.unwrap().status().is_success());
    let fumo = json!({"MOID": "urn:oma:mo:oma-fumo:1.0", "MIID": "fw", "MOData": {
        "PkgName": "R2", "PkgVersion": "2.0.0", "Download": {}, "Update": {},
        "DownloadAndUpdate": {"PkgURL": format!("{}/repo/fw/r2.bin", served.base)}, "State": 10}});
    let response = put("fw/r2.json", "application/dmmo+json", serde_json::to_vec(&fumo).unwrap()).await.unwrap();
    assert!(response.status().is_success());
    api(
        reqwest::Method::POST,
        format!("{}/api/v1/devices/{device_id}/commands", served.base),
        Some(json!({"commands": [
            ["HGET", format!("{}/repo/fw/r2.json", served.base), "urn:oma:mo:oma-fumo:1.0/fw/"],
            ["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate"]
        ]})),
    )
    .await;
    let base = served.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        devsim(&[
            "--server",
            &base,
            "--devices",
            "1",
            "--id-prefix",
            "fw-",
            "--password",
            "pw",
            "--no-notify",
            "--fw-fail-rate",
            "1",
            "--fw-duration-ms",
            "20",
        ])
        .output()
    })
    .await
    .unwrap()
    .unwrap();
    let report = report_of(&output);
    assert!(output.status.success(), "{report}");
    // 410 (update failed) comes only after a successful download: no PkgURL gives 411, a failed download 412/500.
    assert_eq!(report["firmware"], json!({"succeeded": 0, "failed": 1}), "{report}");
    // The EXEC's session, then the one reporting the result.
    assert_eq!(report["sessions_ok"], 2, "{report}");
    let alerts = api(reqwest::Method::GET, format!("{}/api/v1/devices/{device_id}/alerts", served.base), None).await;
    let text = alerts.to_string();
    assert!(text.contains("org.openmobilealliance.dm.firmwareupdate.downloadandupdate"), "{text}");
    assert!(text.contains("410"), "{text}");
    let commands =
        api(reqwest::Method::GET, format!("{}/api/v1/devices/{device_id}/commands", served.base), None).await;
    let statuses: Vec<&Value> =
        commands["commands"].as_array().unwrap().iter().map(|command| &command["status"]).collect();
    assert!(statuses.contains(&&json!(202)), "{commands}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package0_over_udp_starts_a_session_and_repeats_are_dropped() {
    let data = omadm_testkit::process::data_dir();
    let served = serve(data.path());
    let port = free_udp_port();
    let child = devsim(&[
        "--server",
        &served.base,
        "--devices",
        "2",
        "--id-prefix",
        "nt-",
        "--register",
        "--admin-token",
        TOKEN,
        "--sessions-per-device",
        "0",
        "--duration",
        "4",
        "--notify-port",
        &port.to_string(),
    ])
    .spawn()
    .unwrap();
    let package = Notification {
        server_id: Some("omadm".into()),
        notification_id: Some(7),
        request_mos: true,
        ..Notification::default()
    }
    .encode()
    .unwrap();
    let pdu = omadm_proto::notification::wrap_push(&package, 1);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Device 1 listens on 127.0.0.3; resend (same NOTIFICATION-ID) until it is surely bound: repeats are dropped.
    for _ in 0..10 {
        sender.send_to(&pdu, ("127.0.0.3", port)).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let report = report_of(&output);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["notifications_received"], 1, "{report}");
    assert_eq!(report["sessions_ok"], 1, "{report}");
    assert_eq!(report["registered"], 2, "{report}");
    let sessions = api(reqwest::Method::GET, format!("{}/api/v1/devices/nt-000001/sessions", served.base), None).await;
    assert_eq!(sessions.to_string().matches("\"outcome\"").count(), 1, "{sessions}");
    let none = api(reqwest::Method::GET, format!("{}/api/v1/devices/nt-000000/sessions", served.base), None).await;
    assert_eq!(none.to_string().matches("\"outcome\"").count(), 0, "{none}");
}

/// Issue 11's fleet test: 1,000 devsim devices registered with their UDP addresses and AuthNoti secret; one API
/// call notifies them all; the in-process notifier signs and sends each its Package#0; every device verifies it
/// and opens its session; the API's outcome and devsim's report agree device by device. A Package#0 signed with
/// another secret is dropped by the device and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_api_call_wakes_a_thousand_devices_over_udp_and_each_opens_its_session() {
    use std::collections::BTreeSet;
    use std::io::BufRead;

    const DEVICES: usize = 1000;
    let data = omadm_testkit::process::data_dir();
    let served = serve(data.path());
    let port = free_udp_port();
    let mut child = devsim(&[
        "--server",
        &served.base,
        "--devices",
        &DEVICES.to_string(),
        "--id-prefix",
        "wake-",
        "--register",
        "--admin-token",
        TOKEN,
        "--auth-secret",
        "fleet-noti-secret",
        "--report-devices",
        "--concurrency",
        "32",
        "--sessions-per-device",
        "0",
        "--duration",
        "30",
        "--notify-port",
        &port.to_string(),
    ])
    .spawn()
    .unwrap();
    // Package#0 goes out only once every device's socket is bound: UDP keeps nothing for a socket not yet there.
    let stderr = child.stderr.take().unwrap();
    let (listening, stderr_lines) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut listening = Some(listening);
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("devices listening for notifications") {
                if let Some(listening) = listening.take() {
                    let _ = listening.send(());
                }
            }
            lines.push(line);
        }
        lines
    });
    tokio::time::timeout(Duration::from_secs(60), stderr_lines).await.expect("devsim never listened").unwrap();

    let answer = api(
        reqwest::Method::POST,
        format!("{}/api/v1/notifications", served.base),
        Some(json!({"filter": {"tags": {"source": "devsim"}}, "req_mos": false})),
    )
    .await;
    assert_eq!(answer["requested"], DEVICES, "{answer}");
    assert_eq!(answer["truncated"], false, "{answer}");
    let request_ids: Vec<String> =
        answer["request_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    assert_eq!(request_ids.len(), DEVICES);

    // A Package#0 in the server's name signed with a secret the device does not hold: dropped, counted.
    let forged =
        Notification { server_id: Some("omadm".into()), notification_id: Some(40_000), ..Notification::default() }
            .encode_signed(b"not-the-fleet-secret", omadm_client::notification::system_clock())
            .unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&omadm_proto::notification::wrap_push(&forged, 9), ("127.0.0.2", port)).unwrap();

    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let report = report_of(&output);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["registered"], DEVICES, "{report}");
    assert_eq!(report["notifications_received"], DEVICES, "{report}");
    assert_eq!(report["sessions_ok"], DEVICES, "{report}");
    assert_eq!(report["sessions_failed"], 0, "{report}");
    assert_eq!(report["notifications_dropped"], json!({"wrong_digest": 1}), "{report}");
    let notified: BTreeSet<String> =
        report["notified_devices"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    let expected: BTreeSet<String> = (0..DEVICES).map(|index| format!("wake-{index:06}")).collect();
    assert_eq!(notified, expected);

    // Device by device, the server says the same: one request each, sent over UDP, and the session it started.
    let mut requested_devices = BTreeSet::new();
    for request_id in &request_ids {
        let record =
            api(reqwest::Method::GET, format!("{}/api/v1/notifications/{request_id}", served.base), None).await;
        assert_eq!(record["state"], "sent", "{record}");
        assert_eq!(record["transport"], "udp", "{record}");
        assert!(requested_devices.insert(record["device_id"].as_str().unwrap().to_owned()), "{record}");
    }
    assert_eq!(requested_devices, notified);
    let mut last_sessions = std::collections::BTreeMap::new();
    for device_id in &notified {
        let device = api(reqwest::Method::GET, format!("{}/api/v1/devices/{device_id}", served.base), None).await;
        assert_eq!(device["last_session"]["outcome"], "ended", "{device}");
        last_sessions.insert(device_id.clone(), device["last_session"]["id"].as_str().unwrap().to_owned());
    }
    // The session each device opened answered its notification (notification.answered, through the sessions
    // topic): the record names that session, started no earlier than the send.
    for request_id in &request_ids {
        let url = format!("{}/api/v1/notifications/{request_id}", served.base);
        let mut record = api(reqwest::Method::GET, url.clone(), None).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while record["answered"].is_null() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            record = api(reqwest::Method::GET, url.clone(), None).await;
        }
        let device_id = record["device_id"].as_str().unwrap();
        assert_eq!(record["answered"]["session_id"].as_str(), Some(last_sessions[device_id].as_str()), "{record}");
        assert!(record["answered"]["at"].as_u64() >= record["outcome_at"].as_u64(), "{record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_devices_fail_with_401_and_the_exit_code_says_so() {
    let data = omadm_testkit::process::data_dir();
    let served = serve(data.path());
    let base = served.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        devsim(&["--server", &base, "--devices", "3", "--id-prefix", "unknown-", "--no-notify"]).output()
    })
    .await
    .unwrap()
    .unwrap();
    let report = report_of(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(report["sessions_ok"], 0, "{report}");
    assert_eq!(report["sessions_failed"], 3, "{report}");
    assert_eq!(report["errors"], json!({"http_401": 3}), "{report}");
}

/// A base URL nothing listens on: a port that was bound, then released.
fn refused_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_spread_over_several_addresses_fail_over_from_a_dead_one() {
    let data = omadm_testkit::process::data_dir();
    let served = serve(data.path());
    let dead = refused_base();
    for (prefix, extra) in [("sticky-", None), ("random-", Some("--random-server"))] {
        let servers = format!("{},{dead}", served.base);
        let mut args = vec![
            "--server",
            &servers,
            "--devices",
            "40",
            "--id-prefix",
            prefix,
            "--register",
            "--admin-token",
            TOKEN,
            "--sessions-per-device",
            "2",
            "--no-notify",
        ];
        args.extend(extra);
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let output =
            tokio::task::spawn_blocking(move || devsim(&args.iter().map(String::as_str).collect::<Vec<_>>()).output())
                .await
                .unwrap()
                .unwrap();
        let report = report_of(&output);
        assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(report["registered"], 40, "{report}");
        assert_eq!(report["sessions_ok"], 80, "{report}");
        // Half the devices start at the dead address: each fails over once, then passes it over for a while.
        let failovers = report["failovers"].as_u64().unwrap();
        if extra.is_none() {
            assert_eq!(failovers, 20, "{report}");
        } else {
            assert!(failovers >= 1, "{report}");
        }
        assert_eq!(report["retries"], report["failovers"], "{report}");
        assert_eq!(report["unavailable_answers"], 0, "{report}");
    }
}

#[test]
fn help_documents_every_flag_and_bad_flags_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_omadm-devsim")).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--server",
        "--devices",
        "--id-prefix",
        "--password",
        "--register",
        "--admin-token",
        "--model",
        "--fwv",
        "--profile",
        "--sessions-per-device",
        "--session-interval-ms",
        "--concurrency",
        "--duration",
        "--notify-port",
        "--no-notify",
        "--server-id",
        "--auth-secret",
        "--report-devices",
        "--fw-fail-rate",
        "--fw-duration-ms",
        "--alert-rate",
        "--report",
        "--random-server",
        "--max-retries",
        "--max-retry-after",
    ] {
        assert!(help.contains(&format!("{flag} ")), "{flag} missing from --help:\n{help}");
    }
    // Only on notification, with no time bound, would never end: refused before anything runs.
    let unbounded = Command::new(env!("CARGO_BIN_EXE_omadm-devsim"))
        .args(["--server", "http://127.0.0.1:9", "--sessions-per-device", "0", "--no-notify"])
        .output()
        .unwrap();
    assert_eq!(unbounded.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unbounded.stderr).contains("--duration"));
    let too_many = Command::new(env!("CARGO_BIN_EXE_omadm-devsim"))
        .args(["--server", "x", "--devices", "100001"])
        .output()
        .unwrap();
    assert_eq!(too_many.status.code(), Some(2));
}
