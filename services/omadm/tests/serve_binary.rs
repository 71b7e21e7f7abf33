//! The built `omadm serve`: starts on a free port, prints where and how to authenticate, serves the API,
//! stops with exit 0 on SIGTERM after draining events, and keeps token and devices across a restart.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
