//! Firmware campaigns end to end: `omadm serve` (embedded store, JSONL events, the campaigns and notifier roles
//! in-process) and a devsim fleet over real HTTP and UDP on loopback. The campaign's figures, devsim's report and
//! the campaigns topic must agree device by device.

// Test helpers: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omadm_testkit::ports::free_udp_port;
use omadm_testkit::process::{self, Served};
use serde_json::{Value, json};

const TOKEN: &str = "campaign-test-token";

/// `omadm serve` with its notifier's default dedup window: a campaign wakes a device again to read its version
/// back seconds after the first wake-up, which the window lets through because the device had a session since.
fn serve(data_dir: &std::path::Path) -> Served {
    process::serve(&process::omadm_binary(), data_dir, &["--admin-token", TOKEN, "--campaigns-tick-ms", "100"])
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn put_package(served: &Served, path: &str, bytes: Vec<u8>) {
    let response = reqwest::Client::new()
        .put(format!("{}/api/v1/repository/{path}", served.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// A devsim fleet registered with the server, each device listening for Package#0 on its loopback address; its
/// first session (DevInfo and MOS) runs at once. Returns when every device listens.
fn fleet(served: &Served, devices: usize, prefix: &str, extra: &[&str]) -> Child {
    let port = free_udp_port().to_string();
    let count = devices.to_string();
    let mut args = vec![
        "--server",
        &served.base,
        "--devices",
        &count,
        "--id-prefix",
        prefix,
        "--register",
        "--admin-token",
        TOKEN,
        "--model",
        "X1",
        "--fwv",
        "1.0",
        "--concurrency",
        "64",
        "--sessions-per-device",
        "1",
        "--session-interval-ms",
        "1000",
        "--notify-port",
        &port,
        "--report-devices",
        "--fw-duration-ms",
        "10",
    ];
    // A flag given in `extra` replaces the default's (flag and value).
    for flag in ["--model", "--fw-duration-ms"] {
        if extra.contains(&flag) {
            let at = args.iter().position(|arg| *arg == flag).unwrap();
            args.drain(at..at + 2);
        }
    }
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_omadm-devsim"))
        .args(&args)
        .env_remove("OMADM_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (listening, listened) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("devices listening for notifications") {
                let _ = listening.send(());
                sent = true;
            }
        }
    });
    listened.recv_timeout(Duration::from_secs(120)).expect("devsim never listened");
    child
}

/// Waits until the server knows `devices` devices of model X1 (their first session read DevInfo).
async fn wait_for_inventory(served: &Served, devices: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, counted) =
            call(reqwest::Method::GET, format!("{}/api/v1/counts/devices?mod=X1", served.base), None).await;
        if counted["count"] == json!(devices) {
            return;
        }
        assert!(Instant::now() < deadline, "inventory of {devices} devices never arrived: {counted}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls the campaign until `done` holds of it.
async fn wait_for(served: &Served, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, campaign) =
            call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}", served.base), None).await;
        assert_eq!(status, 200, "{campaign}");
        if done(&campaign) {
            return campaign;
        }
        assert!(Instant::now() < deadline, "campaign never got there: {campaign}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn campaign_events(served_data: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(served_data.join("events").join("omadm.campaigns.jsonl")).unwrap();
    let mut seen = HashSet::new();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| seen.insert(event["id"].as_str().unwrap().to_owned()))
        .collect()
}

const FINAL: [&str; 4] = ["succeeded", "failed", "timed_out", "skipped"];

/// Issue 12's fleet test: 10,000 devsim devices, 5% of them failing their update; the campaign runs to
/// completion in waves at its rate; the API's counts match devsim's report device by device, and the campaigns
/// topic holds each device's final outcome exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_device_firmware_campaign_completes_and_agrees_device_by_device() {
    let devices: usize = std::env::var("OMADM_CAMPAIGN_DEVICES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 2048]).await;
    let devsim = fleet(&served, devices, "camp-", &["--fw-fail-rate", "0.05", "--duration", "600"]);
    wait_for_inventory(&served, devices).await;

    let body = json!({"name": "x1-2.0", "target": {"filter": {"mod": "X1", "fwv": "1.0"}},
        "action": {"firmware": {"url": format!("{}/repo/fw/x1-2.0.bin", served.base), "version": "2.0"}},
        "policy": {"waves": ["5%", "100%"], "max_in_flight": 2000, "max_starts_per_minute": 120000,
                   "failure_threshold": 0.2, "threshold_min_finished": 100, "device_deadline_s": 600}});
    let (status, dry) =
        call(reqwest::Method::POST, format!("{}/api/v1/campaigns?dry_run=true", served.base), Some(body.clone())).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["matched"], json!(devices), "{dry}");
    let first_wave = devices.div_ceil(20);
    assert_eq!(dry["waves"], json!([first_wave, devices - first_wave]), "{dry}");
    let (status, created) = call(reqwest::Method::POST, format!("{}/api/v1/campaigns", served.base), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let campaign =
        wait_for(&served, &id, Duration::from_secs(900), |campaign| campaign["state"] != json!("running")).await;
    if campaign["state"] != json!("completed") {
        let (_, failed) = call(
            reqwest::Method::GET,
            format!("{}/api/v1/campaigns/{id}/devices?state=failed&limit=2", served.base),
            None,
        )
        .await;
        panic!("{campaign}\n{failed}");
    }
    let counts = &campaign["counts"];
    let succeeded = counts["succeeded"].as_u64().unwrap();
    let failed = counts["failed"].as_u64().unwrap();
    assert_eq!(succeeded + failed, devices as u64, "{campaign}");
    assert_eq!(counts["timed_out"], json!(0), "{campaign}");
    assert_eq!(campaign["codes"]["410"], json!(failed), "{campaign}");

    // SIGTERM ends devsim's wait for notifications; it prints its report.
    let pid = devsim.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let output = tokio::task::spawn_blocking(move || devsim.wait_with_output()).await.unwrap().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no report ({error}): {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["firmware"]["failed"], json!(failed), "{}", report["firmware"]);
    let mut failed_by_api = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let query = after.as_ref().map_or(String::new(), |after| format!("&after={after}"));
        let (_, page) = call(
            reqwest::Method::GET,
            format!("{}/api/v1/campaigns/{id}/devices?state=failed&limit=1000{query}", served.base),
            None,
        )
        .await;
        for device in page["devices"].as_array().unwrap() {
            assert_eq!(device["result_code"], json!(410), "{device}");
            failed_by_api.insert(device["device_id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(failed_by_api.len() as u64, failed);
    let named = report["firmware_failed_devices"].as_array().cloned().unwrap_or_default();
    let failed_by_devsim: BTreeSet<String> = named.iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    assert_eq!(failed_by_api, failed_by_devsim);

    // The topic: every device's final outcome once, agreeing with the API.
    let events = campaign_events(data.path());
    let mut finals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in events.iter().filter(|event| event["type"] == json!("campaign.device_changed")) {
        let to = event["payload"]["to"].as_str().unwrap();
        if FINAL.contains(&to) {
            finals.entry(event["payload"]["device_id"].as_str().unwrap().to_owned()).or_default().push(to.to_owned());
        }
    }
    assert_eq!(finals.len(), devices);
    assert!(finals.values().all(|outcomes| outcomes.len() == 1), "a device with two final outcomes");
    let failed_on_topic: BTreeSet<String> =
        finals.iter().filter(|(_, outcomes)| outcomes[0] == "failed").map(|(id, _)| id.clone()).collect();
    assert_eq!(failed_on_topic, failed_by_api);
    let created_events = events.iter().filter(|event| event["type"] == json!("campaign.created")).count();
    assert_eq!(created_events, 1);
    // The second wave started only once the first had its success share (80%) of succeeded devices.
    let mut first_wave_successes: Vec<u64> = events
        .iter()
        .filter(|event| event["payload"]["wave"] == json!(0) && event["payload"]["to"] == json!("succeeded"))
        .map(|event| event["timestamp"].as_u64().unwrap())
        .collect();
    first_wave_successes.sort_unstable();
    let share_reached_at = first_wave_successes[(first_wave * 4).div_ceil(5) - 1];
    let second_wave_starts = events
        .iter()
        .filter(|event| event["payload"]["wave"] == json!(1) && event["payload"]["to"] == json!("notified"))
        .map(|event| event["timestamp"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(
        second_wave_starts >= share_reached_at,
        "wave 1 started at {second_wave_starts}, before {share_reached_at}"
    );
}

/// The starts (moves to `notified`; a note added while notified is not one) of a campaign's devices, their
/// timestamps in order.
fn start_times(events: &[Value]) -> Vec<u64> {
    let mut times: Vec<u64> = events
        .iter()
        .filter(|event| {
            event["type"] == json!("campaign.device_changed")
                && event["payload"]["to"] == json!("notified")
                && event["payload"]["from"] != json!("notified")
        })
        .map(|event| event["timestamp"].as_u64().unwrap())
        .collect();
    times.sort_unstable();
    times
}

fn firmware_body(served: &Served, policy: Value) -> Value {
    json!({"name": "x1-2.0", "target": {"filter": {"mod": "X1"}},
        "action": {"firmware": {"url": format!("{}/repo/fw/x1-2.0.bin", served.base), "version": "2.0"}},
        "policy": policy})
}

async fn post(served: &Served, path: &str, body: Option<Value>) -> (u16, Value) {
    call(reqwest::Method::POST, format!("{}/api/v1/campaigns{path}", served.base), body).await
}

/// Bad requests are refused naming their field; a campaign where 30% fail pauses itself at its threshold,
/// starts nothing while paused, goes on when resumed, and starts nothing more once cancelled; starts never
/// outrun the rate; a finished campaign refuses controls (409) and retries its failed devices in a follow-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_campaign_pauses_itself_resumes_and_stops_when_cancelled() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;

    let refusals = [
        (json!({"filter": {"mod": "X1", "colour": "red"}}), json!({}), "target.filter.colour"),
        (json!({}), json!({}), "target"),
        (json!({"filter": {"mod": "X1"}}), json!({"waves": ["5%", "50%"]}), "policy.waves"),
        (json!({"filter": {"mod": "X1"}}), json!({"max_starts_per_minute": 0}), "policy.max_starts_per_minute"),
        (json!({"filter": {"mod": "X1"}}), json!({"failure_threshold": 1.5}), "policy.failure_threshold"),
    ];
    for (target, policy, field) in refusals {
        let mut body = firmware_body(&served, policy);
        body["target"] = target;
        let (status, answer) = post(&served, "", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }
    let mut missing = firmware_body(&served, json!({}));
    missing["action"]["firmware"]["url"] = json!("fw/none.bin");
    let (status, answer) = post(&served, "", Some(missing)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("action.firmware.url"), "{answer}");
    let (status, _) = call(reqwest::Method::GET, format!("{}/api/v1/campaigns/cmp-nothing", served.base), None).await;
    assert_eq!(status, 404);

    let devices = 200;
    let devsim = fleet(&served, devices, "fail-", &["--fw-fail-rate", "0.3", "--duration", "300"]);
    wait_for_inventory(&served, devices).await;
    let policy = json!({"max_starts_per_minute": 600, "failure_threshold": 0.1, "threshold_min_finished": 20});
    let (status, created) = post(&served, "", Some(firmware_body(&served, policy))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let paused =
        wait_for(&served, &id, Duration::from_secs(120), |campaign| campaign["state"] != json!("running")).await;
    assert_eq!((&paused["state"], &paused["reason"]), (&json!("paused"), &json!("failure_threshold")), "{paused}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = wait_for(&served, &id, Duration::from_secs(5), |_| true).await;
    assert_eq!(still["started"], paused["started"], "a paused campaign starts nothing");

    let (status, resumed) = post(&served, &format!("/{id}/resume"), None).await;
    assert_eq!((status, &resumed["state"]), (200, &json!("running")), "{resumed}");
    let started_at_resume = resumed["started"].as_u64().unwrap();
    let going = wait_for(&served, &id, Duration::from_secs(60), |campaign| {
        campaign["started"].as_u64() > Some(started_at_resume)
    })
    .await;
    assert!(going["started"].as_u64() > Some(started_at_resume), "{going}");
    let (status, cancelled) = post(&served, &format!("/{id}/cancel"), None).await;
    assert_eq!((status, &cancelled["state"]), (200, &json!("cancelled")), "{cancelled}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = wait_for(&served, &id, Duration::from_secs(5), |_| true).await;
    assert_eq!(after["started"], cancelled["started"], "nothing starts after the cancel");
    let (status, refused) = post(&served, &format!("/{id}/pause"), None).await;
    assert_eq!(status, 409, "{refused}");

    // The rate: 600 a minute is 10 a second, with at most one second's worth saved up.
    let starts = start_times(&campaign_events(data.path()));
    assert!(!starts.is_empty());
    assert_at_most_per_second(&starts, 20, "600 a minute");
    let (status, follow_up) = post(&served, &format!("/{id}/retry"), None).await;
    assert_eq!(status, 201, "{follow_up}");
    assert_eq!(follow_up["follow_up_of"], json!(id));
    assert!(follow_up["devices"].as_u64().unwrap() > 0, "{follow_up}");
    stop(devsim).await;
}

/// Devices that report success but keep their old firmware (devsim --fw-keep-version) end `failed` with
/// `version_mismatch`: success is what the device runs, not what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_alert_without_the_new_version_is_a_version_mismatch() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;
    let devices = 20;
    let devsim = fleet(&served, devices, "stale-", &["--fw-keep-version", "--duration", "120"]);
    wait_for_inventory(&served, devices).await;
    let (status, created) = post(&served, "", Some(firmware_body(&served, json!({})))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let done = wait_for(&served, &id, Duration::from_secs(120), |campaign| campaign["state"] != json!("running")).await;
    assert_eq!(done["state"], json!("completed"), "{done}");
    assert_eq!(done["counts"]["failed"], json!(devices), "{done}");
    let (_, page) =
        call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}/devices?state=failed", served.base), None).await;
    for device in page["devices"].as_array().unwrap() {
        assert_eq!(device["reason"], json!("version_mismatch"), "{device}");
        let timeline = device["timeline"].to_string();
        assert!(timeline.contains("FUMO result 200") && timeline.contains("FwV 1.0"), "{timeline}");
    }
    let (_, one) =
        call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}/devices/stale-000000", served.base), None).await;
    assert_eq!(one["state"], json!("failed"), "{one}");
    stop(devsim).await;
}

/// A dynamic campaign takes in devices that register after its start: their first session (DevInfo on model
/// X1, firmware 1.0) makes them match, they join the wave open then, and they are updated like the first ones;
/// a device of another model registered beside them stays out. The campaign runs until it is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_campaign_updates_devices_that_register_after_its_start() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;
    let first = 20;
    let early = fleet(&served, first, "early-", &["--duration", "180"]);
    wait_for_inventory(&served, first).await;
    let mut body = firmware_body(&served, json!({"dynamic": true}));
    body["target"] = json!({"filter": {"mod": "X1", "fwv": "1.0"}});
    let (status, created) = post(&served, "", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let succeeded = |count: usize| move |campaign: &Value| campaign["counts"]["succeeded"] == json!(count);
    let updated = wait_for(&served, &id, Duration::from_secs(120), succeeded(first)).await;
    assert_eq!(updated["state"], json!("running"), "a dynamic campaign waits for newcomers: {updated}");

    let late = 5;
    let newcomers = fleet(&served, late, "late-", &["--duration", "180"]);
    let other = fleet(&served, 1, "other-", &["--duration", "180", "--model", "X2"]);
    let all = wait_for(&served, &id, Duration::from_secs(120), succeeded(first + late)).await;
    assert_eq!(all["state"], json!("running"), "{all}");
    let (status, joined) =
        call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}/devices/late-000003", served.base), None).await;
    assert_eq!((status, &joined["state"]), (200, &json!("succeeded")), "{joined}");
    let timeline = joined["timeline"].to_string();
    assert!(timeline.contains("joined") && timeline.contains("FUMO result 200"), "{timeline}");
    let (_, others) = call(reqwest::Method::GET, format!("{}/api/v1/counts/devices?mod=X2", served.base), None).await;
    assert_eq!(others["count"], json!(1), "the X2 device's first session is over: {others}");
    let (status, outsider) =
        call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}/devices/other-000000", served.base), None).await;
    assert_eq!(status, 404, "a device of another model never joins: {outsider}");
    let (_, device) = call(reqwest::Method::GET, format!("{}/api/v1/devices/late-000003", served.base), None).await;
    assert_eq!(device["inventory"]["fwv"], json!("2.0"), "{device}");

    let (status, cancelled) = post(&served, &format!("/{id}/cancel"), None).await;
    assert_eq!((status, &cancelled["state"]), (200, &json!("cancelled")), "{cancelled}");
    for devsim in [early, newcomers, other] {
        stop(devsim).await;
    }
}

/// The back-off controller: while the devices started first fail (60% of them), the start rate drops, and once
/// the later ones succeed it comes back; each change is a `campaign.rate_changed` event, and the starts follow
/// the rate in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_rate_backs_off_while_devices_fail_and_recovers_after() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;
    // Selected and started in id order: the failing fleet first.
    let failing = fleet(&served, 100, "bo-a-", &["--fw-fail-rate", "0.6", "--duration", "240"]);
    let healthy = fleet(&served, 100, "bo-b-", &["--duration", "240"]);
    wait_for_inventory(&served, 200).await;
    let policy = json!({"max_starts_per_minute": 1200, "failure_threshold": 1.0,
        "backoff": {"window_s": 2, "failure_share": 0.2, "min_reported": 5, "min_share": 0.25}});
    let (status, created) = post(&served, "", Some(firmware_body(&served, policy))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let done = wait_for(&served, &id, Duration::from_secs(180), |campaign| campaign["state"] != json!("running")).await;
    assert_eq!(done["state"], json!("completed"), "{done}");
    assert_eq!(done["counts"]["succeeded"].as_u64().unwrap() + done["counts"]["failed"].as_u64().unwrap(), 200);

    let events = campaign_events(data.path());
    let changes: Vec<&Value> = events.iter().filter(|event| event["type"] == json!("campaign.rate_changed")).collect();
    let described: Vec<String> = changes
        .iter()
        .map(|event| format!("{}->{} {}", event["payload"]["from"], event["payload"]["to"], event["payload"]["reason"]))
        .collect();
    let first_drop = changes.iter().position(|event| event["payload"]["reason"] == json!("failures"));
    let first_drop = first_drop.unwrap_or_else(|| panic!("the rate never backed off: {described:?}"));
    let lowest = changes.iter().filter_map(|event| event["payload"]["to"].as_u64()).min().unwrap();
    assert!((300..1200).contains(&lowest), "lowest rate {lowest}: {described:?}");
    let recovered = changes[first_drop..].iter().any(|event| {
        event["payload"]["reason"] == json!("recovered") && event["payload"]["to"].as_u64() > Some(lowest)
    });
    assert!(recovered, "the rate never came back: {described:?}");
    // While the rate was at its lowest, starts kept to it (with at most one second's worth saved up).
    let lowest_at = changes.iter().find(|event| event["payload"]["to"].as_u64() == Some(lowest)).unwrap();
    let from = lowest_at["timestamp"].as_u64().unwrap();
    let until =
        changes.iter().map(|event| event["timestamp"].as_u64().unwrap()).find(|at| *at > from).unwrap_or(u64::MAX);
    let per_second = lowest.div_ceil(60);
    let starts: Vec<u64> = start_times(&events).into_iter().filter(|at| *at >= from && *at < until).collect();
    assert_at_most_per_second(&starts, (2 * per_second + 1) as usize, &format!("{lowest}/min: {described:?}"));
    println!("rate changes: {described:?}");
    stop(failing).await;
    stop(healthy).await;
}

/// Rollback on abort: a campaign whose later devices all fail aborts at its threshold and, in the same commit,
/// starts `{id}-rollback`, which installs the named previous package on the devices it had updated (and on no
/// others); those end on the old version. A retry of the aborted campaign covers exactly its failed devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_campaign_rolls_back_the_devices_it_updated() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;
    put_package(&served, "fw/x1-1.0.bin", vec![41; 512]).await;
    let healthy = fleet(&served, 30, "rb-a-", &["--duration", "240"]);
    let broken = fleet(&served, 30, "rb-b-", &["--fw-fail-rate", "1", "--duration", "240"]);
    wait_for_inventory(&served, 60).await;
    let policy = json!({"max_starts_per_minute": 600, "max_in_flight": 10, "failure_threshold": 0.2,
        "threshold_min_finished": 10, "on_threshold": "abort",
        "rollback": {"url": "fw/x1-1.0.bin", "version": "1.0"}});
    let mut missing = firmware_body(&served, policy.clone());
    missing["policy"]["rollback"]["url"] = json!("fw/x1-0.9.bin");
    let (status, refused) = post(&served, "", Some(missing)).await;
    assert!(status == 400 && refused.to_string().contains("policy.rollback.url"), "{refused}");
    let (status, created) = post(&served, "", Some(firmware_body(&served, policy))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let aborted =
        wait_for(&served, &id, Duration::from_secs(120), |campaign| campaign["state"] != json!("running")).await;
    assert_eq!((&aborted["state"], &aborted["reason"]), (&json!("aborted"), &json!("failure_threshold")), "{aborted}");

    let rollback_id = format!("{id}-rollback");
    let rollback =
        wait_for(&served, &rollback_id, Duration::from_secs(120), |campaign| campaign["state"] != json!("running"))
            .await;
    assert_eq!((&rollback["state"], &rollback["follow_up_of"]), (&json!("completed"), &json!(id)), "{rollback}");
    let rolled_back = rollback["counts"]["succeeded"].as_u64().unwrap();
    assert!(rolled_back > 0, "{rollback}");
    assert_eq!(rollback["devices"], json!(rolled_back), "every device of the rollback rolled back: {rollback}");
    let (_, page) =
        call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{rollback_id}/devices?limit=1000", served.base), None)
            .await;
    for device in page["devices"].as_array().unwrap() {
        let device_id = device["device_id"].as_str().unwrap();
        assert!(device_id.starts_with("rb-a-"), "only updated devices roll back: {device}");
        let (_, parent) =
            call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}/devices/{device_id}", served.base), None)
                .await;
        assert!(["succeeded", "verifying"].contains(&parent["state"].as_str().unwrap()), "{parent}");
        let (_, registry) =
            call(reqwest::Method::GET, format!("{}/api/v1/devices/{device_id}", served.base), None).await;
        assert_eq!(registry["inventory"]["fwv"], json!("1.0"), "{registry}");
    }
    let settled = wait_for(&served, &id, Duration::from_secs(5), |_| true).await;
    let failed = settled["counts"]["failed"].as_u64().unwrap() + settled["counts"]["timed_out"].as_u64().unwrap();
    let (status, retry) = post(&served, &format!("/{id}/retry"), None).await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["devices"], json!(failed), "{retry} / {settled}");
    stop(healthy).await;
    stop(broken).await;
}

/// Segment budgets: with at most 2 devices in flight per region, no region ever has more, whatever the
/// campaign's own (larger) room; both regions are updated to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_budgets_bound_each_region_apart() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;
    let devices = 40;
    let devsim = fleet(&served, devices, "seg-", &["--duration", "180", "--fw-duration-ms", "300"]);
    wait_for_inventory(&served, devices).await;
    let mut regions = BTreeMap::new();
    for index in 0..devices {
        let region = if index % 2 == 0 { "eu" } else { "us" };
        let device_id = format!("seg-{index:06}");
        tag(&served, &device_id, json!({"region": region})).await;
        regions.insert(device_id, region);
    }
    let policy = json!({"max_in_flight": 100, "max_starts_per_minute": 6000,
        "segments": {"tag": "region", "max_in_flight": 2}});
    let (status, created) = post(&served, "", Some(firmware_body(&served, policy))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let done = wait_for(&served, &id, Duration::from_secs(180), |campaign| campaign["state"] != json!("running")).await;
    assert_eq!((&done["state"], &done["counts"]["succeeded"]), (&json!("completed"), &json!(devices)), "{done}");

    // Replay the devices' moves: in flight from `notified` to a final state, per region. A device's record is
    // written (and an event sent) on every change of its timeline too, so only changes of state are moves: a
    // note added while the device is still `notified` is not another start.
    let mut moves: Vec<(u64, bool, String)> = Vec::new();
    for event in campaign_events(data.path()) {
        if event["type"] != json!("campaign.device_changed") || event["payload"]["campaign_id"] != json!(id) {
            continue;
        }
        let to = event["payload"]["to"].as_str().unwrap();
        if event["payload"]["from"].as_str() == Some(to) {
            continue;
        }
        let device_id = event["payload"]["device_id"].as_str().unwrap().to_owned();
        let at = event["timestamp"].as_u64().unwrap();
        if to == "notified" {
            moves.push((at, true, device_id));
        } else if FINAL.contains(&to) {
            moves.push((at, false, device_id));
        }
    }
    // At one millisecond, a device leaves before another takes its place (the start counted it gone).
    moves.sort_by_key(|(at, starts, _)| (*at, *starts));
    let mut in_flight: BTreeMap<&str, i64> = BTreeMap::new();
    let mut highest: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, starts, device_id) in &moves {
        let region = regions[device_id];
        let count = in_flight.entry(region).or_default();
        *count += if *starts { 1 } else { -1 };
        let high = highest.entry(region).or_default();
        *high = (*high).max(*count);
    }
    assert_eq!(highest.get("eu"), Some(&2), "eu's highest in flight: {highest:?}");
    assert_eq!(highest.get("us"), Some(&2), "us's highest in flight: {highest:?}");
    stop(devsim).await;
}

/// `HH:MM` of `minutes` past midnight, wrapped into one day.
fn clock(minutes: u64) -> String {
    let minutes = minutes % (24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Maintenance windows: a window read on each device's clock (its `utc_offset` tag) starts the devices whose
/// local time is inside it and leaves the others pending; a window that is closed now starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_start_only_the_devices_inside_them() {
    let data = process::data_dir();
    let served = serve(data.path());
    put_package(&served, "fw/x1-2.0.bin", vec![42; 512]).await;
    let devices = 10;
    let devsim = fleet(&served, devices, "win-", &["--duration", "120"]);
    wait_for_inventory(&served, devices).await;
    // The first half lives six hours east of UTC.
    for index in 0..devices / 2 {
        tag(&served, &format!("win-{index:06}"), json!({"utc_offset": "+06:00"})).await;
    }
    let utc_minutes = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    // Open from five to seven hours past UTC now, on each device's clock: open at +06:00, closed at UTC.
    let local = json!([{"start": clock(utc_minutes + 300), "end": clock(utc_minutes + 420), "local": true}]);
    let (status, created) = post(&served, "", Some(firmware_body(&served, json!({"windows": local})))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // Closed for everybody: from three to four hours from now, UTC.
    let closed = json!([{"start": clock(utc_minutes + 180), "end": clock(utc_minutes + 240)}]);
    let (status, waiting) = post(&served, "", Some(firmware_body(&served, json!({"windows": closed})))).await;
    assert_eq!(status, 201, "{waiting}");
    let waiting_id = waiting["id"].as_str().unwrap().to_owned();

    let inside = wait_for(&served, &id, Duration::from_secs(90), |campaign| {
        campaign["counts"]["succeeded"] == json!(devices / 2)
    })
    .await;
    assert_eq!(inside["window_open"], json!(true), "{inside}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = wait_for(&served, &id, Duration::from_secs(5), |_| true).await;
    assert_eq!(later["counts"]["pending"], json!(devices / 2), "devices on UTC wait for their window: {later}");
    assert_eq!(later["started"], json!(devices / 2), "{later}");
    for index in devices / 2..devices {
        let (_, device) =
            call(reqwest::Method::GET, format!("{}/api/v1/campaigns/{id}/devices/win-{index:06}", served.base), None)
                .await;
        assert_eq!(device["state"], json!("pending"), "{device}");
    }
    let idle = wait_for(&served, &waiting_id, Duration::from_secs(5), |_| true).await;
    assert_eq!((&idle["window_open"], &idle["started"]), (&json!(false), &json!(0)), "{idle}");
    assert_eq!(idle["selected"], json!(devices), "selection goes on outside the window: {idle}");

    let mut bad = firmware_body(&served, json!({"windows": [{"start": "25:00", "end": "02:00"}]}));
    let (status, refused) = post(&served, "", Some(bad.clone())).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("policy.windows[0].start"), "{refused}");
    bad["policy"]["windows"] = json!([{"start": "01:00", "end": "02:00", "utc_offset": "CET"}]);
    let (status, refused) = post(&served, "", Some(bad)).await;
    assert!(status == 400 && refused.to_string().contains("policy.windows[0].utc_offset"), "{refused}");
    stop(devsim).await;
}

/// Replaces the tags of a devsim device (its password given again, as the operator API asks).
async fn tag(served: &Served, device_id: &str, tags: Value) {
    let answer = reqwest::Client::new()
        .put(format!("{}/api/v1/devices/{device_id}", served.base))
        .bearer_auth(TOKEN)
        .json(&json!({"password": "devsim-secret", "tags": tags}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// Fails when more than `most` of `starts` (sorted timestamps) fall within one second.
fn assert_at_most_per_second(starts: &[u64], most: usize, context: &str) {
    for (index, at) in starts.iter().enumerate() {
        let within = starts[index..].iter().take_while(|later| **later < at + 1000).count();
        assert!(within <= most, "{within} starts within a second of {at}: {context}");
    }
}

async fn stop(devsim: Child) {
    let pid = devsim.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = tokio::task::spawn_blocking(move || devsim.wait_with_output()).await;
}
