//! The session state machine driven through whole sessions with realistic packages: Package#1, CONT, inventory, queued commands, multipart GET results, cache validators, alerts, END, expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod session_support;

use omadm_core::bus::Topic;
use omadm_core::model::{CommandState, SessionOutcome};
use omadm_core::session::{SessionError, SessionEvent, step};
use omadm_proto::command::Command;
use omadm_proto::multipart::{GetResultPart, MultipartResponse};
use omadm_proto::package::{Alert, AlertItem, CommandStatus, InitiationPackage, ResponsePackage, SupportedObject};
use omadm_proto::status::StatusCode;
use serde_json::{Value, json};
use session_support::*;

fn mos() -> Vec<SupportedObject> {
    let package = InitiationPackage::from_json(&json!({"MOS": [
        {"DDF": "http://www.vendor.com/DDF/devinfo1.2.ddf", "MOID": DEVINFO, "MIID": [""]},
        {"MOID": FUMO, "MIID": ["fw"]}
    ]}))
    .unwrap();
    package.supported_objects.unwrap()
}

fn cont(session_id: &str) -> Value {
    json!(["CONT", format!("{SESSION_URL_BASE}{session_id}")])
}

fn inventory_gets() -> [Value; 2] {
    [json!(["GET", format!("{DEVINFO}//")]), json!(["GET", format!("{SESSIONINFO}//")])]
}

#[test]
fn first_session_names_itself_with_cont_asks_for_inventory_and_sends_at_most_n_queued_commands() {
    let config = config();
    let mut world = World::new();
    let ids = world.enqueue(&[
        json!(["EXEC", format!("{FUMO}/fw/Update")]),
        json!(["GET", format!("{FUMO}/fw/State")]),
        json!(["EXEC", format!("{FUMO}/fw/DownloadAndUpdate")]),
    ]);
    world.now += 1_000;
    let package = InitiationPackage { supported_objects: Some(mos()), alert: None };
    let step = world.initiate(&config, "s1", package);

    let reply = step.reply.as_ref().unwrap();
    let [devinfo, sessioninfo] = inventory_gets();
    assert_eq!(
        wire(reply),
        vec![
            cont("s1"),
            devinfo,
            sessioninfo,
            json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"]),
            json!(["GET", "urn:oma:mo:oma-fumo:1.0/fw/State"])
        ]
    );
    assert!(reply.alert_statuses.is_empty());
    assert!(!step.ended);

    for id in &ids[..2] {
        let record = &world.commands[id];
        assert_eq!(record.state, CommandState::Sent);
        assert_eq!(record.attempts, 1);
        assert_eq!(record.session_id.as_deref(), Some("s1"));
        assert_eq!(record.updated_at, START + 1_000);
    }
    assert_eq!(world.state_of(ids[2]), CommandState::Queued, "the third waits for the next Package#2");

    let state = &world.sessions["s1"];
    assert_eq!(state.awaiting.len(), 5);
    assert_eq!(
        state.awaiting.iter().map(|sent| sent.command_id).collect::<Vec<_>>(),
        [None, None, None, Some(1), Some(2)]
    );
    assert_eq!(
        (state.packages, state.started_at, state.last_activity, state.ended),
        (1, START + 1_000, START + 1_000, false)
    );

    assert_eq!(world.device.supported_objects, mos());
    assert_eq!(world.device.last_session_id.as_deref(), Some("s1"));
    let started = world.events_of_type("session.started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].id, "session:s1:started");
    assert_eq!(started[0].topic, Topic::Sessions);
    assert_eq!(started[0].key, DEVICE_ID);
    assert_eq!(started[0].payload["inventory_requested"], json!(true));
    assert_eq!(started[0].payload["commands_sent"], json!(2));
    assert_eq!(started[0].payload["supported_objects"], json!(2));
}

#[test]
fn a_whole_session_stores_results_inventory_and_mirror_then_ends() {
    let config = config();
    let mut world = World::new();
    let mut device = SimulatedDevice::new(&device_tree_json("1.0.3"));
    let ids = world.enqueue(&[
        json!(["GET", format!("{FUMO}/fw/")]),
        json!(["HGET", "https://dm.example.com/repo/cfg"]),
        json!(["EXEC", format!("{FUMO}/fw/Update")]),
    ]);

    let step1 = world.initiate(&config, "s1", InitiationPackage::default());
    world.now += 2_000;
    let package3 = device.answer(step1.reply.as_ref().unwrap()).unwrap();
    assert_eq!(package3.parts.len(), 3, "DevInfo, SessionInfo and the FUMO GET carry data");
    let step2 = world.respond(&config, "s1", package3).unwrap();

    // Inventory from the server's own GETs.
    let inventory = &world.device.inventory;
    assert_eq!(inventory.man.as_deref(), Some("Acme"));
    assert_eq!(inventory.model.as_deref(), Some("Meter-9"));
    assert_eq!(inventory.fwv.as_deref(), Some("1.0.3"));
    assert_eq!((inventory.swv.as_deref(), inventory.hwv.as_deref()), (Some("5.1"), Some("rev B")));
    assert_eq!((inventory.lang.as_deref(), inventory.dev_type.as_deref()), (Some("en-US"), Some("meter")));
    assert_eq!((inventory.oem.as_deref(), inventory.dmv.as_deref()), (Some("Acme OEM"), Some("2.0")));
    assert_eq!(inventory.bearer.as_deref(), Some("mobile"));
    assert_eq!(inventory.roaming, Some(false));
    assert_eq!(inventory.updated_at, Some(START + 2_000));

    // GET result on the record and in the mirror, with the device's validator.
    let get = &world.commands[&ids[0]];
    assert_eq!((get.state, get.status), (CommandState::Done, Some(200)));
    let data = get.data.as_ref().unwrap();
    assert_eq!(data.content_type, "application/dmmo+json");
    assert_eq!(data.value["MOData"]["PkgVersion"], json!("1.0.3"));
    let hget = &world.commands[&ids[1]];
    assert_eq!((hget.state, hget.status), (CommandState::Done, Some(201)));
    assert_eq!(hget.extra, vec![json!("urn:oma:mo:oma-cfg:1.0/c7/")], "the 201 location is kept");
    let device_cv = device.tree.instance(FUMO, "fw").unwrap().cache_validator().as_str().to_owned();
    assert_eq!(world.mirror.validators.get(&format!("{FUMO}/fw")), Some(&device_cv));
    assert_eq!(world.mirror.updated_at, START + 2_000);
    let documents = world.mirror.tree.as_array().unwrap();
    assert_eq!(documents.len(), 3);

    // The next Package#2: the rest of the queue, no CONT again.
    let reply2 = step2.reply.as_ref().unwrap();
    assert_eq!(wire(reply2), vec![json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])]);
    assert!(!step2.ended);
    let state = &world.sessions["s1"];
    assert_eq!((state.packages, state.commands_answered, state.last_activity), (2, 2, START + 2_000));

    world.now += 1_000;
    let step3 = world.respond(&config, "s1", device.answer(reply2).unwrap()).unwrap();
    assert_eq!(wire(step3.reply.as_ref().unwrap()), vec![json!(["END"])]);
    assert!(step3.ended);
    assert!(device.answer(step3.reply.as_ref().unwrap()).is_none(), "END: no Package#3 follows");
    assert_eq!(world.state_of(ids[2]), CommandState::Done);

    let state = &world.sessions["s1"];
    assert!(state.ended && state.awaiting.is_empty());
    let summary = world.summaries.last().unwrap();
    assert_eq!(summary.outcome, SessionOutcome::Ended);
    assert_eq!((summary.packages, summary.commands_answered, summary.ended_at), (3, 3, Some(START + 3_000)));

    let types: Vec<&str> = world.events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["session.started", "command.result", "command.result", "command.result", "session.ended"],
        "one result per answered queued command, none for CONT or the inventory GETs"
    );
    let ids_of_events: Vec<&str> = world.events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(
        ids_of_events,
        [
            "session:s1:started",
            "result:IMEI:493005100592800:1:1",
            "result:IMEI:493005100592800:2:1",
            "result:IMEI:493005100592800:3:1",
            "session:s1:ended"
        ]
    );
    let ended = &world.events[4];
    assert_eq!(ended.payload["outcome"], json!("ended"));
    assert_eq!(ended.payload["duration_ms"], json!(3_000));
}

#[test]
fn inventory_is_read_again_only_when_older_than_its_maximum_age() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    world.now = START + config.inventory_max_age - 1;
    let fresh = world.initiate(&config, "s1", InitiationPackage::default());
    assert_eq!(
        wire(fresh.reply.as_ref().unwrap()),
        vec![cont("s1"), json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])]
    );

    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    world.now = START + config.inventory_max_age;
    let stale = world.initiate(&config, "s2", InitiationPackage::default());
    let [devinfo, sessioninfo] = inventory_gets();
    assert_eq!(wire(stale.reply.as_ref().unwrap()), vec![cont("s2"), devinfo, sessioninfo]);
}

#[test]
fn nothing_to_do_ends_the_session_at_once_with_the_alert_statuses() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let mut unsupported = AlertItem::new("urn:oma:at:camera:1.0:Snapshot");
    unsupported.mime_type = Some("image/png".to_owned());
    let mut supported = AlertItem::new("urn:oma:at:scomo:1.0:OperationComplete");
    supported.mime_type = Some("text/plain; charset=utf-8".to_owned());
    supported.data = Some(json!("installed"));
    let untyped = AlertItem::new("urn:oma:at:dev:1.0:Boot");
    let package = InitiationPackage {
        supported_objects: None,
        alert: Some(Alert::new(vec![supported.clone(), unsupported, untyped])),
    };
    let step = world.initiate(&config, "s1", package);

    let reply = step.reply.as_ref().unwrap();
    assert_eq!(wire(reply), vec![json!(["END"])]);
    assert_eq!(reply.alert_statuses, vec![StatusCode::OK, StatusCode::UNSUPPORTED_MEDIA_TYPE, StatusCode::OK]);
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.to_json_bytes().unwrap()).unwrap(),
        json!({"CMD": [["END"]], "AlertStatus": [200, 415, 200]})
    );
    assert!(step.ended);
    assert!(world.sessions["s1"].ended, "the final state is kept so a late Package#3 gets 410");
    assert_eq!(step.batch.ended_sessions.len(), 1);
    assert_eq!(step.batch.ended_sessions[0].outcome, SessionOutcome::Ended);

    assert_eq!(
        world.alerts.iter().map(|alert| (alert.id, alert.status)).collect::<Vec<_>>(),
        [(1, 200), (2, 415), (3, 200)]
    );
    assert_eq!(world.alerts[0].item, supported);
    assert_eq!(world.alerts[0].session_id, "s1");
    let alert_events = world.events_of_type("alert.received");
    assert_eq!(
        alert_events.iter().map(|event| event.id.as_str()).collect::<Vec<_>>(),
        ["alert:IMEI:493005100592800:1", "alert:IMEI:493005100592800:2", "alert:IMEI:493005100592800:3"]
    );
    assert!(alert_events.iter().all(|event| event.topic == Topic::Alerts && event.key == DEVICE_ID));
    assert_eq!(alert_events[1].payload["status"], json!(415));
    assert_eq!(alert_events[2].payload["mark"], json!("informational"));
    let types: Vec<&str> = world.events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types, ["session.started", "alert.received", "alert.received", "alert.received", "session.ended"]);
}

#[test]
fn every_alert_type_is_supported_when_the_list_is_empty_and_package3_alerts_continue_the_ids() {
    let mut config = config();
    config.supported_alert_mime_types.clear();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    let mut png = AlertItem::new("urn:oma:at:camera:1.0:Snapshot");
    png.mime_type = Some("image/png".to_owned());
    let step1 = world.initiate(
        &config,
        "s1",
        InitiationPackage { supported_objects: None, alert: Some(Alert::new(vec![png.clone()])) },
    );
    assert_eq!(step1.reply.as_ref().unwrap().alert_statuses, vec![StatusCode::OK]);

    let mut package3 =
        ResponsePackage::new(vec![CommandStatus::new(StatusCode::OK), CommandStatus::new(StatusCode::OK)]);
    package3.alert = Some(Alert::new(vec![png.clone(), png]));
    let step2 = world.respond(&config, "s1", MultipartResponse { package: package3, parts: vec![] }).unwrap();
    assert_eq!(step2.reply.as_ref().unwrap().alert_statuses, vec![StatusCode::OK, StatusCode::OK]);
    assert_eq!(wire(step2.reply.as_ref().unwrap()), vec![json!(["END"])]);
    assert_eq!(world.alerts.iter().map(|alert| alert.id).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn statuses_are_matched_by_position_and_classed_done_or_failed() {
    let mut config = config();
    config.max_commands_per_package = 10;
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids = world.enqueue(&[
        json!(["EXEC", format!("{FUMO}/fw/Update")]),
        json!(["DELETE", format!("{FUMO}/fw/PkgName")]),
        json!(["HGET", "https://dm.example.com/repo/cfg"]),
        json!(["SHOW", "https://dm.example.com/ui/1"]),
        json!(["HPUT", "https://dm.example.com/repo/[DevID]/up", format!("{FUMO}/fw/")]),
    ]);
    let step1 = world.initiate(&config, "s1", InitiationPackage::default());
    assert_eq!(step1.reply.as_ref().unwrap().commands.len(), 6);
    let package3 = ResponsePackage::new(vec![
        CommandStatus::new(StatusCode::OK),
        CommandStatus::new(StatusCode::COMMAND_NOT_ALLOWED),
        CommandStatus::new(StatusCode::NOT_FOUND),
        CommandStatus::with_location(StatusCode::CREATED, "urn:oma:mo:oma-cfg:1.0/c9/"),
        CommandStatus { code: StatusCode::new(1201).unwrap(), extra: vec![json!({"choice": 2})] },
        CommandStatus::new(StatusCode::SERVICE_UNAVAILABLE),
    ]);
    world.respond(&config, "s1", MultipartResponse { package: package3, parts: vec![] }).unwrap();
    let outcome: Vec<_> = ids.iter().map(|id| (world.commands[id].state, world.commands[id].status)).collect();
    assert_eq!(
        outcome,
        [
            (CommandState::Failed, Some(405)),
            (CommandState::Failed, Some(404)),
            (CommandState::Done, Some(201)),
            (CommandState::Done, Some(1201)),
            (CommandState::Failed, Some(503)),
        ]
    );
    assert_eq!(world.commands[&ids[2]].extra, vec![json!("urn:oma:mo:oma-cfg:1.0/c9/")]);
    assert_eq!(world.commands[&ids[3]].extra, vec![json!({"choice": 2})]);
    assert!(world.commands.values().all(|record| record.data.is_none()));
    let results = world.events_of_type("command.result");
    assert_eq!(results.len(), 5);
    assert_eq!(results[0].payload["state"], json!("failed"));
    assert_eq!(results[2].payload["extra"], json!(["urn:oma:mo:oma-cfg:1.0/c9/"]));
}

#[test]
fn a_cache_validator_goes_out_with_gets_and_304_keeps_the_mirror() {
    let config = config();
    let mut world = World::new();
    let mut device = SimulatedDevice::new(&device_tree_json("1.0.3"));

    // Session 1 reads DevInfo (inventory) and FUMO; both carry the device's validators.
    world.enqueue(&[json!(["GET", format!("{FUMO}/fw/")])]);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    let step = world.respond(&config, "s1", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    assert!(step.ended);
    let fumo_cv = device.tree.instance(FUMO, "fw").unwrap().cache_validator().as_str().to_owned();
    let devinfo_cv = device.tree.instance(DEVINFO, "").unwrap().cache_validator().as_str().to_owned();
    assert_eq!(world.mirror.validators[&format!("{DEVINFO}/")], devinfo_cv);
    let mirror_after_first_read = world.mirror.clone();

    // Session 2: the same GETs go out with cv= (DevInfo as the sole instance), the device answers 304.
    world.now += 25 * HOUR;
    let ids = world.enqueue(&[
        json!(["GET", format!("{FUMO}/fw/")]),
        json!(["HPOST", "https://dm.example.com/repo/up", format!("{FUMO}/fw/")]),
    ]);
    let step = world.initiate(&config, "s2", InitiationPackage::default());
    let sent = wire(step.reply.as_ref().unwrap());
    assert_eq!(sent[1], json!(["GET", format!("{DEVINFO}//?cv={devinfo_cv}")]));
    assert_eq!(
        sent[2],
        json!(["GET", format!("{SESSIONINFO}//?cv={}", world.mirror.validators[&format!("{SESSIONINFO}/")])])
    );
    assert_eq!(sent[3], json!(["GET", format!("{FUMO}/fw/?cv={fumo_cv}")]));
    assert_eq!(sent[4], json!(["HPOST", "https://dm.example.com/repo/up", format!("{FUMO}/fw/?cv={fumo_cv}")]));
    assert_eq!(
        world.commands[&ids[0]].command,
        omadm_core_command(json!(["GET", format!("{FUMO}/fw/")])),
        "the record keeps the operator's command"
    );

    let package3 = device.answer(step.reply.as_ref().unwrap()).unwrap();
    assert!(package3.parts.is_empty());
    assert_eq!(
        package3.package.statuses.iter().map(|status| status.code.as_u16()).collect::<Vec<_>>(),
        [200, 304, 304, 304, 200]
    );
    let step = world.respond(&config, "s2", package3).unwrap();
    assert!(step.batch.mirrors.is_empty(), "304 keeps the mirror as it was");
    assert_eq!(world.mirror, mirror_after_first_read);
    let get = &world.commands[&ids[0]];
    assert_eq!((get.state, get.status), (CommandState::Done, Some(304)));
    let data = get.data.as_ref().expect("a 304 GET shows the mirror's data");
    assert_eq!(data.value["MOData"]["PkgVersion"], json!("1.0.3"));
    assert_eq!(data.value["ClientURI"], json!(format!("{FUMO}/fw/?cv={fumo_cv}")));
    assert_eq!(world.device.inventory.updated_at, Some(world.now), "a 304 DevInfo read refreshes the inventory date");

    // Session 3: the firmware changed on the device, so the same cv gets 200 and a new validator.
    world.now += 25 * HOUR;
    let mut updated = SimulatedDevice::new(&device_tree_json("2.0.0"));
    world.enqueue(&[json!(["GET", format!("{FUMO}/fw/")])]);
    let step = world.initiate(&config, "s3", InitiationPackage::default());
    world.respond(&config, "s3", updated.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    let new_cv = updated.tree.instance(FUMO, "fw").unwrap().cache_validator().as_str().to_owned();
    assert_ne!(new_cv, fumo_cv);
    assert_eq!(world.mirror.validators[&format!("{FUMO}/fw")], new_cv);
    assert_eq!(world.device.inventory.fwv.as_deref(), Some("2.0.0"));
}

fn omadm_core_command(wire: Value) -> Command {
    command(wire)
}

#[test]
fn a_text_plain_leaf_lands_at_the_gets_client_uri_and_drops_the_instance_validator() {
    let config = config();
    let mut world = World::new();
    let mut device = SimulatedDevice::new(&device_tree_json("1.0.3"));
    world.enqueue(&[json!(["GET", format!("{FUMO}/fw/")])]);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    world.respond(&config, "s1", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    assert!(world.mirror.validators.contains_key(&format!("{FUMO}/fw")));

    device.tree.instance_mut(FUMO, "fw").unwrap().set_leaf(&["State"], omadm_proto::tree::LeafValue::Int(40)).unwrap();
    device.leaves_as_text = true;
    let ids = world
        .enqueue(&[json!(["GET", format!("{FUMO}/fw/State")]), json!(["GET", format!("{FUMO}/fw/Ext/Vendor/Note")])]);
    world.device.inventory.updated_at = Some(world.now);
    let step = world.initiate(&config, "s2", InitiationPackage::default());
    // The second GET names a node the device lacks: 404, no part.
    let package3 = device.answer(step.reply.as_ref().unwrap()).unwrap();
    assert_eq!(package3.parts.len(), 1);
    assert_eq!(package3.parts[0].content_type, "text/plain");
    world.respond(&config, "s2", package3).unwrap();

    let record = &world.commands[&ids[0]];
    assert_eq!(record.data.as_ref().map(|data| data.value.clone()), Some(json!("40")));
    assert_eq!(world.state_of(ids[1]), CommandState::Failed);
    let fumo = world.mirror.tree.as_array().unwrap().iter().find(|doc| doc["MOID"] == json!(FUMO)).unwrap();
    assert_eq!(fumo["MOData"]["State"], json!(40), "the leaf keeps the int format the mirror knew");
    assert!(!world.mirror.validators.contains_key(&format!("{FUMO}/fw")), "a partial update drops the validator");
}

#[test]
fn a_get_result_for_a_new_instance_creates_it_and_non_utf8_leaves_are_kept_as_base64() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids = world.enqueue(&[json!(["GET", "urn:oma:mo:oma-cam:1.0/front/Snapshot"])]);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    assert_eq!(step.reply.as_ref().unwrap().commands.len(), 2);
    let package = ResponsePackage::new(vec![CommandStatus::new(StatusCode::OK), CommandStatus::new(StatusCode::OK)]);
    let part = GetResultPart::new(2, "application/octet-stream", vec![0xff_u8, 0x00, 0xfe]);
    world.respond(&config, "s1", round_trip(&package, &[part])).unwrap();

    let data = world.commands[&ids[0]].data.clone().unwrap();
    assert!(data.base64);
    assert_eq!(data.value, json!("/wD+"));
    let cam = world
        .mirror
        .tree
        .as_array()
        .unwrap()
        .iter()
        .find(|doc| doc["MOID"] == json!("urn:oma:mo:oma-cam:1.0"))
        .unwrap();
    assert_eq!(cam["MIID"], json!("front"));
    assert_eq!(cam["MOData"]["Snapshot"], json!("/wD+"));
}

#[test]
fn dmmo_documents_for_another_moid_or_read_with_lv_stay_out_of_the_mirror() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids = world.enqueue(&[json!(["GET", format!("{FUMO}/fw/?lv=1")]), json!(["GET", format!("{FUMO}/fw/")])]);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    assert_eq!(step.reply.as_ref().unwrap().commands.len(), 3);
    let cut = json!({"MOID": FUMO, "MIID": "fw", "ClientURI": format!("{FUMO}/fw/?lv=1"), "MOData": {"State": 10, "Download": {}}});
    let foreign = json!({"MOID": DEVINFO, "MIID": "", "MOData": {"DevID": "IMEI:000000000000000"}});
    let package = ResponsePackage::new(vec![CommandStatus::new(StatusCode::OK); 3]);
    let parts = [
        GetResultPart::new(2, "application/dmmo+json", serde_json::to_vec(&cut).unwrap()),
        GetResultPart::new(3, "application/dmmo+json", serde_json::to_vec(&foreign).unwrap()),
    ];
    let step = world.respond(&config, "s1", round_trip(&package, &parts)).unwrap();
    assert!(step.batch.mirrors.is_empty());
    assert_eq!(world.commands[&ids[0]].data.as_ref().unwrap().value, cut, "the record still shows what came back");
    assert_eq!(world.commands[&ids[1]].data.as_ref().unwrap().value, foreign);
}

#[test]
fn a_delete_the_device_performed_leaves_the_mirror_too() {
    let config = config();
    let mut world = World::new();
    let mut device = SimulatedDevice::new(&device_tree_json("1.0.3"));
    world.enqueue(&[json!(["GET", format!("{FUMO}/fw/")])]);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    world.respond(&config, "s1", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();

    world.enqueue(&[json!(["DELETE", format!("{FUMO}/fw/PkgName")])]);
    let step = world.initiate(&config, "s2", InitiationPackage::default());
    world.respond(&config, "s2", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    let fumo = world.mirror.tree.as_array().unwrap().iter().find(|doc| doc["MOID"] == json!(FUMO)).unwrap();
    assert!(fumo["MOData"].get("PkgName").is_none());
    assert!(fumo["MOData"].get("PkgVersion").is_some());
    assert!(!world.mirror.validators.contains_key(&format!("{FUMO}/fw")));
}

#[test]
fn a_devinfo_without_every_leaf_still_fills_what_it_has() {
    let config = config();
    let mut world = World::new();
    let mut device = SimulatedDevice::new(&json!([
        {"MOID": DEVINFO, "MIID": "", "MOData": {"DevID": DEVICE_ID, "Man": "Acme", "Mod": "Meter-9", "FwV": 7}},
        {"MOID": SESSIONINFO, "MIID": "", "MOData": {"CBT": 3}}
    ]));
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    world.respond(&config, "s1", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    let inventory = &world.device.inventory;
    assert_eq!(
        (inventory.man.as_deref(), inventory.model.as_deref(), inventory.fwv.as_deref()),
        (Some("Acme"), Some("Meter-9"), Some("7"))
    );
    assert_eq!(inventory.oem, None);
    assert_eq!((inventory.bearer.as_deref(), inventory.roaming), (Some("wireline"), None));
    assert!(inventory.updated_at.is_some());
}

#[test]
fn a_package3_with_the_wrong_number_of_statuses_is_refused_and_changes_nothing() {
    let config = config();
    let mut world = World::new();
    world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    world.initiate(&config, "s1", InitiationPackage::default());
    let before = world.clone();
    for count in [3usize, 5] {
        let error = world.respond(&config, "s1", statuses(&vec![200; count])).unwrap_err();
        assert_eq!(error, SessionError::StatusCountMismatch { expected: 4, received: count });
        assert_eq!(error.http_status(), 400);
    }
    assert_eq!(world.commands, before.commands);
    assert_eq!(world.sessions, before.sessions);
    assert_eq!(world.events.len(), before.events.len());
    // The device may still send the right Package#3.
    assert!(world.respond(&config, "s1", statuses(&[200, 404, 404, 200])).is_ok());
}

#[test]
fn a_part_that_names_no_get_or_a_missing_get_result_is_refused() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")]), json!(["GET", format!("{FUMO}/fw/State")])]);
    world.initiate(&config, "s1", InitiationPackage::default());
    let before = world.clone();
    let package = ResponsePackage::new(vec![CommandStatus::new(StatusCode::OK); 3]);

    let wrong_part = [GetResultPart::new(2, "text/plain", "10"), GetResultPart::new(3, "text/plain", "10")];
    let error = world
        .respond(&config, "s1", MultipartResponse { package: package.clone(), parts: wrong_part.to_vec() })
        .unwrap_err();
    assert!(matches!(&error, SessionError::InvalidResults(reason) if reason.contains("EXEC")), "{error}");
    assert_eq!(error.http_status(), 400);

    let error = world.respond(&config, "s1", MultipartResponse { package, parts: vec![] }).unwrap_err();
    assert!(matches!(&error, SessionError::InvalidResults(reason) if reason.contains("position 3")), "{error}");
    assert_eq!(world.commands, before.commands);
    assert_eq!(world.sessions, before.sessions);
}

#[test]
fn a_package3_for_an_ended_session_gets_410() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    assert!(step.ended);
    let error = world.respond(&config, "s1", statuses(&[])).unwrap_err();
    assert_eq!((error.clone(), error.http_status()), (SessionError::Ended, 410));
    assert_eq!(world.expire(&config, "s1").unwrap_err(), SessionError::Ended);
}

#[test]
fn expiry_puts_unanswered_commands_back_in_the_queue_for_the_next_session() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids =
        world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")]), json!(["EXEC", format!("{FUMO}/fw/Download")])]);
    world.initiate(&config, "s1", InitiationPackage::default());
    let state = world.sessions["s1"].clone();
    assert_eq!(omadm_core::session::expires_at(&config, &state), START + config.session_timeout);

    world.now = START + config.session_timeout;
    let step = world.expire(&config, "s1").unwrap();
    assert!(step.reply.is_none() && step.ended);
    for id in &ids {
        let record = &world.commands[id];
        assert_eq!((record.state, record.attempts), (CommandState::Queued, 1));
        assert_eq!(record.updated_at, world.now);
    }
    let summary = world.summaries.last().unwrap();
    assert_eq!(summary.outcome, SessionOutcome::Expired);
    let ended = world.events_of_type("session.ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].id, "session:s1:ended");
    assert_eq!(ended[0].payload["outcome"], json!("expired"));
    assert_eq!(ended[0].payload["commands_requeued"], json!(2));
    assert!(world.events_of_type("command.result").is_empty(), "a requeued command has no result yet");
    assert_eq!(world.respond(&config, "s1", statuses(&[200, 200, 200])).unwrap_err(), SessionError::Ended);

    world.now += 1_000;
    let step = world.initiate(&config, "s2", InitiationPackage::default());
    assert_eq!(step.reply.as_ref().unwrap().commands.len(), 3);
    assert!(
        ids.iter().all(|id| world.commands[id].attempts == 2 && world.commands[id].session_id.as_deref() == Some("s2"))
    );
}

#[test]
fn a_command_expires_after_its_last_attempt_with_a_result_event() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids = world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    for attempt in 1..=config.max_attempts {
        let session_id = format!("s{attempt}");
        world.initiate(&config, &session_id, InitiationPackage::default());
        assert_eq!(world.commands[&ids[0]].attempts, attempt);
        world.now += config.session_timeout;
        world.expire(&config, &session_id).unwrap();
    }
    let record = &world.commands[&ids[0]];
    assert_eq!((record.state, record.status, record.attempts), (CommandState::Expired, None, 3));
    let results = world.events_of_type("command.result");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].id, "result:IMEI:493005100592800:1:3");
    assert_eq!(results[0].payload["state"], json!("expired"));
    assert_eq!(world.events_of_type("session.ended").last().unwrap().payload["commands_expired"], json!(1));
    let step = world.initiate(&config, "s9", InitiationPackage::default());
    assert_eq!(wire(step.reply.as_ref().unwrap()), vec![json!(["END"])], "an expired command is never sent again");
}

#[test]
fn queued_cont_and_end_are_refused_instead_of_sent() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids = world.enqueue(&[
        json!(["END"]),
        json!(["CONT", "https://elsewhere.example.com/"]),
        json!(["EXEC", format!("{FUMO}/fw/Update")]),
    ]);
    let step = world.initiate(&config, "s1", InitiationPackage::default());
    assert_eq!(
        wire(step.reply.as_ref().unwrap()),
        vec![cont("s1"), json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])]
    );
    for id in &ids[..2] {
        let record = &world.commands[id];
        assert_eq!((record.state, record.attempts), (CommandState::Failed, 0));
        assert_eq!(record.extra, vec![json!(omadm_core::session::SESSION_COMMAND_REFUSED)]);
    }
    assert_eq!(world.events_of_type("command.result").len(), 2);
}

#[test]
fn a_session_url_that_is_no_server_uri_is_a_server_error() {
    let mut config = config();
    config.session_url_base = "dm/s/".to_owned();
    let mut world = World::new();
    world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    let context = world.context(&config, None);
    let event = SessionEvent::Initiation { session_id: "s1".to_owned(), package: InitiationPackage::default() };
    let error = step(&config, context, event).unwrap_err();
    assert!(matches!(error, SessionError::InvalidSessionUrl(ref url) if url == "dm/s/s1"));
    assert_eq!(error.http_status(), 500);
}

#[test]
fn a_record_the_session_no_longer_awaits_is_not_changed_by_a_late_status() {
    let config = config();
    let mut world = World::new();
    world.device.inventory.updated_at = Some(START);
    let ids = world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    world.initiate(&config, "s1", InitiationPackage::default());
    // Another path finished the command meanwhile (e.g. an operator cancel in a later issue).
    let record = world.commands.get_mut(&ids[0]).unwrap();
    record.state = CommandState::Failed;
    record.status = Some(410);
    let step = world.respond(&config, "s1", statuses(&[200, 200])).unwrap();
    assert!(step.batch.commands.is_empty());
    assert_eq!(world.commands[&ids[0]].status, Some(410));
    assert_eq!(world.sessions["s1"].commands_answered, 0);
}
