//! The built `omadm serve`: starts on a free port, prints where and how to authenticate, serves the API,
//! stops with exit 0 on SIGTERM after draining events, and keeps token and devices across a restart.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use omadm_testkit::http::JsonAnswer as _;
use serde_json::{Value, json};

mod support;

use support::{refused, start, terminate};

#[test]
fn serve_runs_stops_on_sigterm_and_keeps_its_state() {
    let data = omadm_testkit::process::data_dir();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();

    let first = start(data.path(), &[]);
    assert_eq!(first.token.len(), 64, "{:?}", first.banner);
    assert!(first.banner.iter().any(|line| line.contains(&format!("curl -H 'Authorization: Bearer {}'", first.token))));
    let token_file = data.path().join("admin-token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), first.token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    runtime.block_on(async {
        let health = client.get(format!("{}/healthz", first.base)).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let unauthorized = client.get(format!("{}/api/v1/devices", first.base)).send().await.unwrap();
        assert_eq!(unauthorized.status(), 401);
        let registered = client
            .put(format!("{}/api/v1/devices/IMEI:42", first.base))
            .bearer_auth(&first.token)
            .json(&json!({"password": "pw", "tags": {"fleet": "lab"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
        let notified = client
            .post(format!("{}/api/v1/devices/IMEI:42/notify", first.base))
            .bearer_auth(&first.token)
            .json(&json!({"req_mos": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(notified.status(), 202);
    });
    let exit = terminate(first);
    assert!(exit.success(), "exit status {exit:?}");

    // The outbox was drained to the JSONL bus before exit.
    let notifications = std::fs::read_to_string(data.path().join("events/omadm.notifications.jsonl")).unwrap();
    let event: Value = serde_json::from_str(notifications.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "notification.requested");
    assert_eq!(event["key"], "IMEI:42");

    // Same data dir: same token, same device.
    let second = start(data.path(), &[]);
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    assert_eq!(second.token, token);
    runtime.block_on(async {
        let device: Value = client
            .get(format!("{}/api/v1/devices/IMEI:42", second.base))
            .bearer_auth(&second.token)
            .json_answer()
            .await;
        assert_eq!(device["tags"], json!({"fleet": "lab"}));
    });
    assert!(terminate(second).success());
}

#[test]
fn a_given_admin_token_is_used_and_not_printed() {
    let data = omadm_testkit::process::data_dir();
    let served = start(data.path(), &["--admin-token", "given-token-123"]);
    assert!(served.banner.iter().all(|line| !line.contains("given-token-123")), "{:?}", served.banner);
    assert!(!data.path().join("admin-token").exists());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let ok =
            client.get(format!("{}/api/v1/devices", served.base)).bearer_auth("given-token-123").send().await.unwrap();
        assert_eq!(ok.status(), 200);
    });
    assert!(terminate(served).success());
}

#[test]
fn bad_settings_fail_with_one_line() {
    let data = omadm_testkit::process::data_dir();
    let stderr = refused(data.path(), &["--max-commands-per-package", "0"]);
    assert!(stderr.starts_with("omadm: error: --max-commands-per-package"), "{stderr}");
}

/// Abuse does not fill the disk with logs: thousands of failed logins with long URLs and `User-Agent`s, API
/// calls with a wrong token and requests the HTTP layer cannot parse leave a few capped lines at the default
/// level, not a line (or two) per request.
#[test]
fn abuse_writes_a_bounded_log_at_the_default_level() {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    use omadm_testkit::process::{self, Output, Spawned};

    const FAILED_LOGINS: usize = 2_000;
    let data = omadm_testkit::process::data_dir();
    let port = omadm_testkit::ports::free_port();
    let log = data.path().join("omadm.log");
    let mut command = process::command(process::omadm_binary());
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--ops-listen", "none", "--data-dir"])
        .arg(data.path())
        .args(["--admin-token", "log-volume-admin-token"])
        // The default filter, as an operator runs it.
        .env_remove("RUST_LOG");
    let mut served = Spawned::spawn(command, Output::LogFile(log.clone()));
    served.wait_for_listener(port, Duration::from_secs(60));
    let idle_bytes = std::fs::metadata(&log).unwrap().len();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let long = "x".repeat(8_000);
        let mut tasks = tokio::task::JoinSet::new();
        for attempt in 0..FAILED_LOGINS {
            let (client, long) = (client.clone(), long.clone());
            tasks.spawn(async move {
                let package = json!({"SessionID": 1, "MsgID": 1, "CMD": [["ALERT", "1201"]]});
                let login = client
                    .post(format!("http://127.0.0.1:{port}/dm?{long}"))
                    .header("User-Agent", &long)
                    .header("OMADM-DevID", format!("IMEI:{attempt}"))
                    .basic_auth(format!("IMEI:{attempt}"), Some("wrong"))
                    .header("content-type", "application/vnd.oma.dm.initiation+json")
                    .body(package.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!([401, 429].contains(&login.status().as_u16()), "{}", login.status());
                let api = client
                    .get(format!("http://127.0.0.1:{port}/api/v1/devices?{long}"))
                    .bearer_auth("not-the-token")
                    .send()
                    .await
                    .unwrap();
                assert!([401, 429].contains(&api.status().as_u16()), "{}", api.status());
            });
            while tasks.len() >= 32 {
                tasks.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    for _ in 0..50 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"POST /dm HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
            .unwrap();
        let mut answer = Vec::new();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    }
    assert!(served.terminate(Duration::from_secs(20)).is_some_and(|exit| exit.success()));

    let text = std::fs::read_to_string(&log).unwrap();
    let written = text.len() as u64 - idle_bytes;
    // Two thousand failures each way: one summary line per interval, each line capped.
    assert!(written < 16 * 1024, "{written} bytes of log for {FAILED_LOGINS} failed logins:\n{text}");
    let summaries = text.lines().filter(|line| line.contains("authentication failures")).count();
    assert!((1..=3).contains(&summaries), "{summaries} summary lines:\n{text}");
    assert!(text.lines().all(|line| line.len() < 2_048), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
}
