//! Whole DM sessions over real HTTP: Package#1 with Digest or Basic, CONT, inventory GETs answered with multipart
//! results, queued commands, HGET from /repo, HPUT to /repo, a Generic Alert, END; then what the store and the
//! JSONL bus hold. Also expiry with requeue, and a session that goes on after a restart.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod device_support;

use std::time::Duration;

use device_support::{AuthMode, SimulatedDevice, TestServer, read_package2};
use omadm_core::model::{CommandState, ContentSource, SessionOutcome};
use omadm_proto::command::Command;
use omadm_proto::package::{Alert, AlertItem, CommandStatus, InitiationPackage, ResponsePackage};
use omadm_proto::status::StatusCode;

const DEVICE: &str = "IMEI:493005100592800";
const PASSWORD: &str = "s3cret";

fn alerting_package1() -> InitiationPackage {
    let mut item = AlertItem::new("urn:oma:at:example:1.0:BatteryLow");
    item.mime_type = Some("application/json".to_owned());
    item.source_uri = Some("urn:oma:mo:example-settings:1.0//Battery".to_owned());
    item.data = Some(serde_json::json!({"level": 7}));
    let mut unsupported = AlertItem::new("urn:oma:at:example:1.0:Picture");
    unsupported.mime_type = Some("image/png".to_owned());
    InitiationPackage { supported_objects: None, alert: Some(Alert::new(vec![item, unsupported])) }
}

async fn publish_operator_content(server: &TestServer, path: &str, body: &[u8]) {
    let content = &server.state.content;
    omadm_testkit::fixtures::publish(&*server.store, content, path, "application/dmmo+json", body, None).await;
}

#[actix_rt::test]
async fn full_session_with_digest_then_every_result_is_stored_and_published() {
    let server = TestServer::start(|_, _| {}).await;
    server.register(DEVICE, PASSWORD).await;
    let operator_settings = br#"{"MOID": "urn:oma:mo:example-settings:1.0", "MIID": "", "MOData": {"Volume": 3}}"#;
    publish_operator_content(&server, "cfg/settings.json", operator_settings).await;
    let base = server.base.clone();
    let ids = server
        .enqueue(
            DEVICE,
            serde_json::json!([
                ["GET", "urn:oma:mo:example-settings:1.0//Volume"],
                ["HGET", format!("{base}/repo/cfg/settings.json"), "urn:oma:mo:example-settings:1.0//"],
                ["HPUT", format!("{base}/repo/up/[DevID]/settings.json"), "urn:oma:mo:example-settings:1.0//"],
                ["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"],
            ]),
        )
        .await;

    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let transcript = device.run_session(&server, &alerting_package1()).await;

    // Package#2s: CONT to the session URL first, then inventory GETs and at most 2 queued commands each, then END.
    let first = &transcript.packages[0];
    let Command::Cont(cont) = &first.commands[0] else { panic!("CONT first: {first:?}") };
    let session_url = cont.server_uri().to_string();
    let session_id = session_url.strip_prefix(&format!("{base}/dm/s/")).unwrap().to_owned();
    assert_eq!(session_id.len(), 32);
    // One alert status per item: 200/202 for the JSON item, 415 for the unsupported image type.
    assert_eq!(first.alert_statuses.len(), 2);
    assert!(matches!(first.alert_statuses[0].as_u16(), 200 | 202), "{:?}", first.alert_statuses);
    assert_eq!(first.alert_statuses[1], StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let gets: Vec<String> = first
        .commands
        .iter()
        .filter_map(|command| match command {
            Command::Get(get) => Some(get.client_uri().to_string()),
            _ => None,
        })
        .collect();
    assert!(gets.iter().any(|uri| uri.starts_with("urn:oma:mo:oma-dm-devinfo:")), "{gets:?}");
    assert!(gets.iter().any(|uri| uri.starts_with("urn:oma:mo:oma-sessioninfomo:")), "{gets:?}");
    for package in &transcript.packages {
        let queued = package.commands.iter().filter(|command| !matches!(command, Command::Cont(_) | Command::End));
        assert!(queued.count() <= 2 + 2, "{package:?}");
    }
    assert_eq!(transcript.packages.last().unwrap().commands, vec![Command::End]);
    assert!(transcript.packages.len() >= 3, "{} packages", transcript.packages.len());

    // HGET fetched the operator content; HPUT uploaded to the substituted path.
    assert_eq!(transcript.fetched, vec![(format!("{base}/repo/cfg/settings.json"), operator_settings.to_vec())]);
    assert_eq!(transcript.uploads, vec![(format!("{base}/repo/up/IMEI%3A493005100592800/settings.json"), 201)]);

    // Every queued command is done, with its status and data.
    for id in &ids {
        let record = server.store.get_command(DEVICE, *id).await.unwrap().unwrap();
        assert_eq!(record.state, CommandState::Done, "{record:?}");
        assert_eq!(record.session_id.as_deref(), Some(session_id.as_str()));
    }
    let get = server.store.get_command(DEVICE, ids[0]).await.unwrap().unwrap();
    assert_eq!(get.status, Some(200));
    let data = get.data.expect("the GET result is stored");
    assert_eq!(data.content_type, "text/plain");
    assert_eq!(data.value, serde_json::json!("7"));

    // Inventory from DevInfo and SessionInfo; the mirror holds them.
    let stored = server.store.get_device(DEVICE).await.unwrap().unwrap();
    assert_eq!(stored.inventory.man.as_deref(), Some("Example"));
    assert_eq!(stored.inventory.model.as_deref(), Some("X1"));
    assert_eq!(stored.inventory.fwv.as_deref(), Some("1.0.3"));
    assert_eq!(stored.inventory.bearer.as_deref(), Some("wireline"));
    assert_eq!(stored.last_session_id.as_deref(), Some(session_id.as_str()));
    let mirror = server.store.get_mirror(DEVICE).await.unwrap().unwrap();
    assert!(mirror.tree.to_string().contains("urn:oma:mo:oma-dm-devinfo"), "{}", mirror.tree);

    // The upload, linked to the device.
    let upload = server.store.get_content("up/IMEI:493005100592800/settings.json").await.unwrap().unwrap();
    assert_eq!(upload.source, ContentSource::Device);
    assert_eq!(upload.device_id.as_deref(), Some(DEVICE));
    assert_eq!(upload.content_type, "application/json");

    // Alerts with the statuses answered, and the session in the history.
    let alerts = server.store.list_alerts(DEVICE, 10).await.unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().any(|alert| alert.status == 415));
    let sessions = server.store.list_sessions(DEVICE, 10).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, session_id);
    assert_eq!(sessions[0].outcome, SessionOutcome::Ended);
    assert_eq!(sessions[0].packages as usize, transcript.packages.len());
    assert!(server.store.get_session(DEVICE, &session_id).await.unwrap().is_none_or(|state| state.ended));
    assert_eq!(server.edge.active_sessions(), 0);

    // The events, once the relay drained the outbox into the JSONL files.
    server.drain_outbox().await;
    let types = |topic: &str| -> Vec<String> {
        server.topic_lines(topic).iter().map(|event| event["type"].as_str().unwrap().to_owned()).collect()
    };
    let sessions_topic = types("sessions");
    assert!(sessions_topic.contains(&"session.started".to_owned()), "{sessions_topic:?}");
    assert!(sessions_topic.contains(&"session.ended".to_owned()), "{sessions_topic:?}");
    assert_eq!(types("alerts").len(), 2, "{:?}", types("alerts"));
    let results = server.topic_lines("results");
    assert!(results.iter().any(|event| event["type"] == "content.uploaded"
        && event["payload"]["path"] == "up/IMEI:493005100592800/settings.json"
        && event["key"] == DEVICE));
    assert!(results.iter().filter(|event| event["type"] != "content.uploaded").count() >= ids.len());
    let metrics = omadm_core::metrics::metrics().render();
    assert!(metrics.contains("omadm_command_results_total{class=\"2xx\",command=\"EXEC\"}"), "{metrics}");
    assert!(metrics.contains("omadm_alerts_total{status=\"415\"}"), "{metrics}");
    assert!(metrics.contains("omadm_packages_total{direction=\"in\",package=\"3\"}"), "{metrics}");
    assert!(metrics.contains("omadm_sessions_ended_total{outcome=\"ended\"}"), "{metrics}");
    for event in server.topic_lines("results") {
        assert_eq!(event["schema_version"], 1);
        assert!(event["id"].as_str().is_some_and(|id| !id.is_empty()));
    }
}

#[actix_rt::test]
async fn basic_and_md5_digest_open_sessions_too() {
    let server = TestServer::start(|_, _| {}).await;
    server.register(DEVICE, "pa:ss").await;
    for mode in [AuthMode::Basic, AuthMode::DigestMd5] {
        let device = SimulatedDevice::new(DEVICE, "pa:ss", mode);
        let transcript = device.run_session(&server, &InitiationPackage::default()).await;
        assert_eq!(transcript.packages.last().unwrap().commands, vec![Command::End], "{mode:?}");
    }
    let sessions = server.store.list_sessions(DEVICE, 10).await.unwrap();
    assert_eq!(sessions.len(), 2);
    // Inventory was read in the first session only: the second one had nothing to do.
    assert!(sessions.iter().any(|session| session.packages == 1), "{sessions:?}");
}

#[actix_rt::test]
async fn a_silent_session_expires_and_its_commands_go_back_to_the_queue() {
    let server = TestServer::start(|config, _| config.session.session_timeout = 400).await;
    server.register(DEVICE, PASSWORD).await;
    let ids = server.enqueue(DEVICE, serde_json::json!([["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"]])).await;
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let reply = read_package2(device.send_package1(&server, &InitiationPackage::default()).await).await;
    let Command::Cont(cont) = &reply.commands[0] else { panic!("{reply:?}") };
    let session_url = cont.server_uri().to_string();
    assert_eq!(server.store.get_command(DEVICE, ids[0]).await.unwrap().unwrap().state, CommandState::Sent);
    assert_eq!(server.edge.active_sessions(), 1);

    // Silence past the timeout: the actor expires the session and requeues the command.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let record = server.store.get_command(DEVICE, ids[0]).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Queued, "{record:?}");
    assert_eq!(server.edge.active_sessions(), 0);
    let sessions = server.store.list_sessions(DEVICE, 10).await.unwrap();
    assert_eq!(sessions[0].outcome, SessionOutcome::Expired);

    // A late Package#3 is refused with 410; the next session sends the command again.
    let statuses = reply.commands.iter().map(|_| CommandStatus::new(StatusCode::OK)).collect();
    let late = device.send_package3(&session_url, &ResponsePackage::new(statuses), &[]).await;
    device_support::assert_refused(late, 410, "ended").await;
    let again = read_package2(device.send_package1(&server, &InitiationPackage::default()).await).await;
    assert!(again.commands.iter().any(|command| matches!(command, Command::Exec(_))), "{again:?}");
}

#[actix_rt::test]
async fn an_open_session_goes_on_after_a_restart() {
    let first = TestServer::start(|_, _| {}).await;
    first.register(DEVICE, PASSWORD).await;
    let ids = first.enqueue(DEVICE, serde_json::json!([["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"]])).await;
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let reply = read_package2(device.send_package1(&first, &InitiationPackage::default()).await).await;
    let Command::Cont(cont) = &reply.commands[0] else { panic!("{reply:?}") };
    let session_path = cont.server_uri().to_string().strip_prefix(&first.base).unwrap().to_owned();

    // A new process over the same store: recover() adopts the open session from it.
    let second = first.restart(|_, _| {}).await;
    assert_eq!(second.edge.active_sessions(), 1);
    let mut transcript = device_support::SessionTranscript::default();
    let (package3, parts) = device.answer(&second, &reply, &mut transcript).await;
    let next = read_package2(device.send_package3(&second.url(&session_path), &package3, &parts).await).await;
    assert_eq!(next.commands, vec![Command::End]);
    let record = second.store.get_command(DEVICE, ids[0]).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Done);
    second.stop().await;
}

#[actix_rt::test]
async fn a_package3_rehydrates_its_session_without_recover() {
    let first = TestServer::start(|_, _| {}).await;
    first.register(DEVICE, PASSWORD).await;
    first.enqueue(DEVICE, serde_json::json!([["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"]])).await;
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::Basic);
    let reply = read_package2(device.send_package1(&first, &InitiationPackage::default()).await).await;
    let Command::Cont(cont) = &reply.commands[0] else { panic!("{reply:?}") };
    let session_path = cont.server_uri().to_string().strip_prefix(&first.base).unwrap().to_owned();

    // A new edge over the same store that never ran recover(), as another node would be.
    let third = first.restart_without_recover().await;
    assert_eq!(third.edge.active_sessions(), 0);
    let mut transcript = device_support::SessionTranscript::default();
    let (package3, parts) = device.answer(&third, &reply, &mut transcript).await;
    let next = read_package2(device.send_package3(&third.url(&session_path), &package3, &parts).await).await;
    assert_eq!(next.commands, vec![Command::End]);
}

#[actix_rt::test]
async fn a_new_package1_ends_the_previous_open_session_and_resends_its_commands() {
    let server = TestServer::start(|_, _| {}).await;
    server.register(DEVICE, PASSWORD).await;
    let ids = server.enqueue(DEVICE, serde_json::json!([["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"]])).await;
    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let first = read_package2(device.send_package1(&server, &InitiationPackage::default()).await).await;
    let Command::Cont(cont) = &first.commands[0] else { panic!("{first:?}") };
    let first_url = cont.server_uri().to_string();

    // The device lost the Package#2 and starts over: the EXEC comes again, in the new session.
    let second = read_package2(device.send_package1(&server, &InitiationPackage::default()).await).await;
    assert!(second.commands.iter().any(|command| matches!(command, Command::Exec(_))), "{second:?}");
    let Command::Cont(cont) = &second.commands[0] else { panic!("{second:?}") };
    assert_ne!(cont.server_uri().to_string(), first_url);
    let record = server.store.get_command(DEVICE, ids[0]).await.unwrap().unwrap();
    assert_eq!(record.state, CommandState::Sent);
    // The first session got no Package#3: sending the EXEC there was no delivery attempt.
    assert_eq!(record.attempts, 1);
    assert_eq!(server.edge.active_sessions(), 1);

    let statuses = first.commands.iter().map(|_| CommandStatus::new(StatusCode::OK)).collect();
    let late = device.send_package3(&first_url, &ResponsePackage::new(statuses), &[]).await;
    device_support::assert_refused(late, 410, "ended").await;
    let first_id = first_url.rsplit('/').next().unwrap();
    let sessions = server.store.list_sessions(DEVICE, 10).await.unwrap();
    let previous = sessions.iter().find(|session| session.id == first_id).expect("the first session in the history");
    assert_eq!(previous.outcome, SessionOutcome::Expired);
}

#[actix_rt::test]
async fn the_edge_under_the_real_server_stack() {
    let server = TestServer::start_full_stack().await;
    server.register(DEVICE, PASSWORD).await;
    server.enqueue(DEVICE, serde_json::json!([["EXEC", "urn:oma:mo:example-settings:1.0//Reboot"]])).await;

    // The server's error middleware keeps the challenges and the JSON reason of a 401.
    let response = device_support::http()
        .post(server.url("/dm"))
        .header("Content-Type", "application/vnd.oma.dm.initiation+json")
        .header(device_support::DEVICE_ID_HEADER, DEVICE)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get_all("WWW-Authenticate").iter().count(), 3);
    device_support::assert_refused(response, 401, "authentication required").await;

    let device = SimulatedDevice::new(DEVICE, PASSWORD, AuthMode::DigestSha256);
    let transcript = device.run_session(&server, &alerting_package1()).await;
    assert_eq!(transcript.packages.last().unwrap().commands, vec![Command::End]);
    let sessions = server.store.list_sessions(DEVICE, 10).await.unwrap();
    assert_eq!(sessions[0].outcome, SessionOutcome::Ended);

    // The relay the server runs (woken by the edge after each commit) writes the session events to the JSONL file.
    let mut published = Vec::new();
    for _ in 0..50 {
        published = server.topic_lines("sessions");
        if published.iter().any(|event| event["type"] == "session.ended") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(published.iter().any(|event| event["type"] == "session.ended"), "{published:?}");
    server.stop().await;
}
