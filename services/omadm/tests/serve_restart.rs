//! `omadm serve` killed with SIGKILL in the middle of a DM session loses nothing it acknowledged:
//! after a restart on the same data dir the device goes on with its session at the CONT URL, every
//! queued command is answered exactly once, and the API and the event files show every result.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_testkit::http::JsonAnswer as _;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;
use omadm_proto::command::Command;
use omadm_proto::multipart::{GetResultPart, derive_boundary, encode_response};
use omadm_proto::package::media;
use omadm_proto::package::{CommandStatus, ParseLimits, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use serde_json::{Value, json};

mod support;

use omadm_testkit::ports::free_port;
use support::{Served, kill_hard, start, terminate};

const DEVICE: &str = "IMEI:356938035643809";
const PASSWORD: &str = "device-secret";

/// The device side of one exchange: answers every command of a Package#2 the way a healthy
/// device would (GET results as multipart parts) and returns the Package#3 body and its media type.
fn answer(package: &RequestPackage) -> (String, Vec<u8>) {
    let mut statuses = Vec::new();
    let mut parts = Vec::new();
    for (index, command) in package.commands.iter().enumerate() {
        statuses.push(CommandStatus::new(StatusCode::OK));
        let Command::Get(get) = command else { continue };
        let uri = get.client_uri().to_string();
        let (content_type, body) = if uri.starts_with("urn:oma:mo:oma-dm-devinfo:1.2//") && uri.ends_with("//") {
            let document = json!({"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": "", "MOData": {
                "DevID": DEVICE, "Man": "Acme", "Mod": "Meter-7", "DmV": "2.0", "Lang": "en", "DevType": "meter",
                "OEM": "Acme", "FwV": "1.0.3", "SwV": "4.1", "HwV": "B"}});
            (media::DMMO_JSON.to_owned(), document.to_string())
        } else if uri.starts_with("urn:oma:mo:oma-sessioninfomo:1.0//") {
            let document =
                json!({"MOID": "urn:oma:mo:oma-sessioninfomo:1.0", "MIID": "", "MOData": {"CBT": 1, "ROAMING": 0}});
            (media::DMMO_JSON.to_owned(), document.to_string())
        } else {
            ("text/plain".to_owned(), format!("value of {uri}"))
        };
        parts.push(GetResultPart { position: index + 1, content_type, body: Bytes::from(body) });
    }
    let response = ResponsePackage::new(statuses);
    let encoded = encode_response(&response, &parts, &derive_boundary(&parts)).unwrap();
    (encoded.content_type, encoded.body)
}

fn parse_package2(body: &[u8]) -> RequestPackage {
    RequestPackage::parse(body, &ParseLimits::default())
        .unwrap_or_else(|error| panic!("not a Package#2 ({error}): {}", String::from_utf8_lossy(body)))
}

fn cont_url(package: &RequestPackage) -> Option<String> {
    package.commands.iter().find_map(|command| match command {
        Command::Cont(cont) => Some(cont.server_uri().to_string()),
        _ => None,
    })
}

fn ends(package: &RequestPackage) -> bool {
    package.commands.iter().any(|command| matches!(command, Command::End))
}

fn start_on(data: &Path, port: u16) -> Served {
    let listen = format!("127.0.0.1:{port}");
    start(data, &["--listen", &listen, "--max-commands-per-package", "2", "--session-timeout", "300"])
}

fn event_lines(data: &Path, topic: &str) -> Vec<Value> {
    let path = data.join(format!("events/omadm.{topic}.jsonl"));
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn a_session_survives_sigkill_between_packages() {
    let data = omadm_testkit::process::data_dir();
    let port = free_port();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let served = start_on(data.path(), port);
    let base = served.base.clone();
    let token = served.token.clone();

    // Register the device and queue five commands: with two per package the session needs
    // several exchanges, so the kill lands in the middle of it.
    let uris: Vec<String> = (1..=5).map(|n| format!("urn:oma:mo:oma-dm-devinfo:1.2//Ext/Counter{n}")).collect();
    let ids: Vec<u64> = runtime.block_on(async {
        let registered = client
            .put(format!("{base}/api/v1/devices/{DEVICE}"))
            .bearer_auth(&token)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
        let commands: Vec<Value> = uris.iter().map(|uri| json!(["GET", uri])).collect();
        let queued: Value = client
            .post(format!("{base}/api/v1/devices/{DEVICE}/commands"))
            .bearer_auth(&token)
            .json(&json!({"commands": commands}))
            .json_answer()
            .await;
        queued["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect()
    });
    assert_eq!(ids.len(), 5);

    // Package#1: CONT, the server's own inventory GETs, then two of the queued commands.
    let first_package = runtime.block_on(async {
        let response = client
            .post(format!("{base}/dm"))
            .basic_auth(DEVICE, Some(PASSWORD))
            .header("OMADM-DevID", DEVICE)
            .header("Content-Type", media::INITIATION_JSON)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        parse_package2(&response.bytes().await.unwrap())
    });
    let session_url = cont_url(&first_package).expect("the first Package#2 names the session with CONT");
    assert!(!ends(&first_package));

    // The server dies hard after the Package#2 left: no shutdown code runs.
    kill_hard(served);
    let served = start_on(data.path(), port);
    // A new connection, as a device would open after its old one broke.
    let client = reqwest::Client::new();

    // The device answers at the CONT URL as if nothing happened, and goes on until END.
    let mut package = first_package;
    let mut exchanges = 0;
    runtime.block_on(async {
        while !ends(&package) {
            exchanges += 1;
            assert!(exchanges <= 10, "the session does not end");
            let (content_type, body) = answer(&package);
            let response = client
                .post(&session_url)
                .header("OMADM-DevID", DEVICE)
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let bytes = response.bytes().await.unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
            package = parse_package2(&bytes);
        }
    });
    assert!(exchanges >= 3, "five commands two at a time need three answers, got {exchanges}");

    // Every queued command is done with its GET result; the inventory came in too.
    runtime.block_on(async {
        for (id, uri) in ids.iter().zip(&uris) {
            let record: Value = client
                .get(format!("{}/api/v1/devices/{DEVICE}/commands/{id}", served.base))
                .bearer_auth(&served.token)
                .json_answer()
                .await;
            assert_eq!(record["state"], "done", "{record}");
            assert_eq!(record["status"], 200, "{record}");
            assert_eq!(record["data"]["value"], format!("value of {uri}"), "{record}");
        }
        let device: Value = client
            .get(format!("{}/api/v1/devices/{DEVICE}", served.base))
            .bearer_auth(&served.token)
            .json_answer()
            .await;
        assert_eq!(device["inventory"]["man"], "Acme", "{device}");
        assert_eq!(device["inventory"]["fwv"], "1.0.3", "{device}");
        assert_eq!(device["pending_commands"], 0, "{device}");
    });
    assert!(terminate(served).success());

    // The results topic holds each command's result; repeats (at-least-once) share an event id.
    let results = event_lines(data.path(), "results");
    let mut by_command: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for event in results.iter().filter(|event| event["type"] == "command.result") {
        let command_id = event["payload"]["command_id"].as_u64().unwrap();
        by_command.entry(command_id).or_default().insert(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(by_command.keys().copied().collect::<Vec<_>>(), ids, "{results:?}");
    assert!(by_command.values().all(|event_ids| event_ids.len() == 1), "{by_command:?}");
    let sessions = event_lines(data.path(), "sessions");
    assert!(sessions.iter().any(|event| event["type"] == "session.ended"), "{sessions:?}");
}
