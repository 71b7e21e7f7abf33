//! What `omadm serve` keeps to operators: `/metrics` only on the ops listener, a data dir (store, events,
//! secrets) only its owner can read, and a data dir others can read refused with one clear line.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

mod support;

use support::{refused, start, terminate};

#[test]
fn metrics_are_served_on_the_ops_listener_only() {
    let data = omadm_testkit::process::data_dir();
    let served = start(data.path(), &[]);
    let ops = served.ops_base.clone().expect("the banner names the ops listener");
    assert_ne!(ops, served.base);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        // A wrong login, so the auth failure counters have moved before the scrape.
        let failed = client
            .post(format!("{}/dm", served.base))
            .header("OMADM-DevID", "IMEI:does-it-exist")
            .header("Content-Type", omadm_proto::package::media::INITIATION_JSON)
            .header("Authorization", "Basic SU1FSTpkb2VzLWl0LWV4aXN0Om5v")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), 401);
        let on_device_port = client.get(format!("{}/metrics", served.base)).send().await.unwrap();
        assert_eq!(on_device_port.status(), 404);
        let scraped = client.get(format!("{ops}/metrics")).send().await.unwrap();
        assert_eq!(scraped.status(), 200);
        let text = scraped.text().await.unwrap();
        assert!(text.contains("omadm_auth_failures_total"), "{text}");
        // The probes answer on both: load balancers probe the port they send devices to.
        for base in [&served.base, &ops] {
            assert_eq!(client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
        }
        // The ops listener serves nothing else: no operator API there.
        let api = client.get(format!("{ops}/api/v1/devices")).bearer_auth(&served.token).send().await.unwrap();
        assert_eq!(api.status(), 404);
    });
    assert!(terminate(served).success());

    let no_ops = start(data.path(), &["--ops-listen", "none"]);
    assert_eq!(no_ops.ops_base, None, "{:?}", no_ops.banner);
    assert!(no_ops.banner.iter().any(|line| line.starts_with("ops: none")), "{:?}", no_ops.banner);
    assert!(terminate(no_ops).success());
}

#[cfg(unix)]
#[test]
fn the_data_dir_and_every_file_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("omadm-data");
    let served = start(&data, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // A device with secrets, and an event, so the store and an event file hold something.
        let client = reqwest::Client::new();
        let registered = client
            .put(format!("{}/api/v1/devices/IMEI:private", served.base))
            .bearer_auth(&served.token)
            .json(&json!({"password": "pw", "auth_secret": "c2VjcmV0"}))
            .send()
            .await
            .unwrap();
        assert!(registered.status().is_success(), "{}", registered.status());
        let notified = client
            .post(format!("{}/api/v1/devices/IMEI:private/notify", served.base))
            .bearer_auth(&served.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(notified.status(), 202);
    });
    assert!(terminate(served).success());

    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut files = 0;
    let mut pending = vec![data.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                pending.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    // admin-token, nonce-key, store.redb and the event files at least.
    assert!(files >= 4, "{files} files");
    assert!(std::fs::metadata(data.join("events/omadm.notifications.jsonl")).unwrap().len() > 0);
}

#[cfg(unix)]
#[test]
fn a_data_dir_others_can_read_is_refused_with_one_line() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = refused(data.path(), &[]);
    assert!(stderr.starts_with("omadm: error: data dir "), "{stderr}");
    assert!(stderr.contains("chmod 700") && stderr.contains("--allow-shared-data-dir"), "{stderr}");
    assert!(!data.path().join("store").exists(), "nothing may be written before the refusal");

    // The operator's explicit choice: it starts.
    let served = start(data.path(), &["--allow-shared-data-dir"]);
    assert!(terminate(served).success());
}
