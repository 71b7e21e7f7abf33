//! Every event a session produces matches docs/events.md: its catalogue row (topic, key, id scheme) and the JSON Schemas of its envelope and payload.
//!
//! The schemas are read from the document itself, so the page and the code
//! cannot drift apart. They use a small subset of JSON Schema (type,
//! properties, required, additionalProperties, enum, const, items, minItems,
//! minimum, maximum, minLength), checked by the validator below; a schema
//! keyword outside that subset fails the test rather than being ignored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod session_support;

use std::collections::BTreeMap;

use omadm_core::bus::Event;
use omadm_core::session::events::{ContentUploaded, NotificationRequested, content_uploaded, notification_requested};
use omadm_proto::package::{Alert, AlertItem, InitiationPackage, Mark};
use serde_json::{Value, json};
use session_support::*;

const KEYWORDS: [&str; 11] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "items",
    "minItems",
    "minimum",
    "maximum",
    "minLength",
];

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other} in a schema"),
    }
}

/// Checks `value` against `schema`; errors name the path.
fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else { panic!("schema at {path} is not an object") };
    for keyword in schema.keys() {
        assert!(KEYWORDS.contains(&keyword.as_str()), "schema keyword {keyword} at {path} is not supported here");
    }
    if let Some(name) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(name, value) {
            errors.push(format!("{path}: expected {name}, found {value}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            errors.push(format!("{path}: {value} is not {constant}"));
        }
    }
    if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
        if value.as_f64().is_some_and(|number| number < minimum) {
            errors.push(format!("{path}: {value} is below {minimum}"));
        }
    }
    if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64) {
        if value.as_f64().is_some_and(|number| number > maximum) {
            errors.push(format!("{path}: {value} is above {maximum}"));
        }
    }
    if let Some(length) = schema.get("minLength").and_then(Value::as_u64) {
        if value.as_str().is_some_and(|text| (text.chars().count() as u64) < length) {
            errors.push(format!("{path}: shorter than {length}"));
        }
    }
    if let Some(array) = value.as_array() {
        if let Some(count) = schema.get("minItems").and_then(Value::as_u64) {
            if (array.len() as u64) < count {
                errors.push(format!("{path}: fewer than {count} items"));
            }
        }
        if let Some(items) = schema.get("items") {
            for (index, item) in array.iter().enumerate() {
                validate(items, item, &format!("{path}[{index}]"), errors);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                errors.push(format!("{path}: missing {name}"));
            }
        }
        for (name, member) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(member_schema) => validate(member_schema, member, &format!("{path}.{name}"), errors),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{path}: unexpected member {name}"));
                }
                None => {}
            }
        }
    }
}

fn errors_of(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(schema, value, "$", &mut errors);
    errors
}

/// What docs/events.md says: schemas by section (`Envelope` or an event type) and catalogue rows by type.
struct Documented {
    schemas: BTreeMap<String, Value>,
    /// type -> (topic, id scheme)
    catalogue: BTreeMap<String, (String, String)>,
}

fn documented() -> Documented {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md")).unwrap();
    let mut schemas = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("## ").or_else(|| line.strip_prefix("### ")) {
            section = Some(title.trim().trim_matches('`').to_owned());
        } else if line.trim() == "```json" {
            let block: Vec<&str> = lines.by_ref().take_while(|line| line.trim() != "```").collect();
            let schema: Value = serde_json::from_str(&block.join("\n")).unwrap();
            let name = section.clone().expect("a schema belongs to a section");
            assert!(schemas.insert(name.clone(), schema).is_none(), "two schemas in section {name}");
        }
    }
    let catalogue = text
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(|cell| cell.trim().trim_matches('`')).collect();
            (cells[1].to_owned(), (cells[2].to_owned(), cells[4].to_owned()))
        })
        .collect();
    Documented { schemas, catalogue }
}

/// Whether `id` follows a scheme such as `result:{device id}:{command id}:{attempt}`: the
/// literal parts in order, each `{placeholder}` standing for at least one character.
fn id_matches(scheme: &str, id: &str) -> bool {
    let literals: Vec<&str> = scheme.split(['{', '}']).step_by(2).collect();
    let Some((first, others)) = literals.split_first() else { return false };
    id.strip_prefix(first).is_some_and(|rest| placeholders_fit(others, rest))
}

/// Each literal of `literals` follows one placeholder; tries every split (device ids contain ':').
fn placeholders_fit(literals: &[&str], rest: &str) -> bool {
    let Some((literal, tail)) = literals.split_first() else { return rest.is_empty() };
    if literal.is_empty() && tail.is_empty() {
        return !rest.is_empty();
    }
    (1..=rest.len())
        .filter(|split| rest.is_char_boundary(*split))
        .any(|split| rest[split..].strip_prefix(literal).is_some_and(|after| placeholders_fit(tail, after)))
}

fn check_event(documented: &Documented, event: &Event) {
    let value = serde_json::to_value(event).unwrap();
    let envelope_errors = errors_of(&documented.schemas["Envelope"], &value);
    assert!(envelope_errors.is_empty(), "{} envelope: {envelope_errors:?}", event.id);
    let schema =
        documented.schemas.get(&event.event_type).unwrap_or_else(|| panic!("{} has no schema", event.event_type));
    let payload_errors = errors_of(schema, &event.payload);
    assert!(payload_errors.is_empty(), "{} payload: {payload_errors:?}\n{}", event.id, event.payload);
    let (topic, id_scheme) = &documented.catalogue[&event.event_type];
    assert_eq!(event.topic.name(), topic, "{}", event.id);
    assert!(id_matches(id_scheme, &event.id), "{} does not follow {id_scheme}", event.id);
    assert_eq!(event.key, DEVICE_ID);
    assert_eq!(event.payload["device_id"], json!(DEVICE_ID));
}

/// Sessions that produce every event type a session can: alerts in #1 and #3, results with and without data, an expiry.
fn events_of_sessions() -> Vec<Event> {
    let mut config = config();
    config.max_attempts = 1;
    let mut world = World::new();
    let mut device = SimulatedDevice::new(&device_tree_json("1.0.3"));
    world.enqueue(&[
        json!(["GET", format!("{FUMO}/fw/")]),
        json!(["HGET", "https://dm.example.com/repo/cfg"]),
        json!(["EXEC", format!("{FUMO}/fw/Update")]),
        json!(["END"]),
    ]);
    let mut alert = AlertItem::new(omadm_proto::mo::ALERT_TYPE_DOWNLOAD_AND_UPDATE);
    alert.mime_type = Some("application/json".to_owned());
    alert.source_uri = Some(format!("{FUMO}/fw/DownloadAndUpdate"));
    alert.mark = Some(Mark::Critical);
    alert.data = Some(json!({"ResultCode": 200}));
    let package1 = InitiationPackage { supported_objects: None, alert: Some(Alert::new(vec![alert])) };
    let step = world.initiate(&config, "s1", package1);
    let mut png = AlertItem::new("urn:oma:at:camera:1.0:Snapshot");
    png.mime_type = Some("image/png".to_owned());
    device.pending_alerts.push(png);
    let step = world.respond(&config, "s1", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    let step = world.respond(&config, "s1", device.answer(step.reply.as_ref().unwrap()).unwrap()).unwrap();
    assert!(step.ended);
    world.enqueue(&[json!(["EXEC", format!("{FUMO}/fw/Update")])]);
    world.initiate(&config, "s2", InitiationPackage::default());
    world.now += config.session_timeout;
    world.expire(&config, "s2").unwrap();
    world.events
}

#[test]
fn every_event_of_a_session_matches_its_documented_schema() {
    let documented = documented();
    let events = events_of_sessions();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        check_event(&documented, event);
        *seen.entry(event.event_type.as_str()).or_default() += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([("alert.received", 2), ("command.result", 5), ("session.ended", 2), ("session.started", 2)])
    );
    let expired = events.iter().find(|event| event.payload["state"] == json!("expired")).unwrap();
    assert!(expired.payload.get("status").is_none());
    let with_data = events.iter().find(|event| event.payload.get("data").is_some()).unwrap();
    assert_eq!(with_data.payload["data"]["content_type"], json!("application/dmmo+json"));
}

#[test]
fn the_edge_events_match_their_documented_schemas() {
    let documented = documented();
    let upload = content_uploaded(ContentUploaded {
        device_id: DEVICE_ID.to_owned(),
        path: "uploads/IMEI%3A493005100592800/devinfo".to_owned(),
        method: "PUT".to_owned(),
        content_type: "application/dmmo+json".to_owned(),
        size: 312,
        stored_at: START,
    });
    check_event(&documented, &upload);
    assert_eq!(upload.id, format!("upload:{DEVICE_ID}:uploads/IMEI%3A493005100592800/devinfo:{START}"));
    let notify = notification_requested(NotificationRequested {
        device_id: DEVICE_ID.to_owned(),
        request_id: "r-1".to_owned(),
        requested_at: START,
        requested_by: "operator".to_owned(),
        request_mos: true,
    });
    check_event(&documented, &notify);
    assert_eq!(notify.id, format!("notify:{DEVICE_ID}:r-1"));
}

#[test]
fn every_documented_type_has_a_schema_and_a_catalogue_row() {
    let documented = documented();
    let envelope_types: Vec<String> = documented.schemas["Envelope"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    let catalogue_types: Vec<String> = documented.catalogue.keys().cloned().collect();
    let mut schema_types: Vec<String> = documented.schemas.keys().filter(|name| *name != "Envelope").cloned().collect();
    schema_types.sort();
    let mut envelope_sorted = envelope_types.clone();
    envelope_sorted.sort();
    assert_eq!(catalogue_types, schema_types);
    assert_eq!(envelope_sorted, schema_types);
}

#[test]
fn the_validator_rejects_what_breaks_a_schema() {
    let documented = documented();
    let schema = &documented.schemas["command.result"];
    let good = json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "status": 200});
    assert!(errors_of(schema, &good).is_empty());
    let broken = [
        json!({"command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": "1", "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": [], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "sent"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "colour": 1}),
        json!({"device_id": "d", "command_id": 0, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done"}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "status": 2000}),
        json!({"device_id": "d", "command_id": 1, "attempt": 1, "command": ["END"], "origin": "operator", "state": "done", "data": {"value": 1}}),
    ];
    for value in broken {
        assert!(!errors_of(schema, &value).is_empty(), "{value} must be refused");
    }
    assert!(!errors_of(&documented.schemas["Envelope"], &json!({"id": "x"})).is_empty());
    assert!(id_matches("result:{device id}:{command id}:{attempt}", "result:IMEI:1:7:2"));
    assert!(!id_matches("result:{device id}:{command id}:{attempt}", "alert:IMEI:1:7"));
    assert!(!id_matches("session:{session id}:started", "session:s1:ended"));
}
