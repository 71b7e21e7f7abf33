//! The event schemas of docs/events.md, a validator for them, and sessions that produce every event type a session can.
//!
//! The schemas are read from the document itself, so the page and the code
//! cannot drift apart. They use a small subset of JSON Schema (type,
//! properties, required, additionalProperties, enum, const, items, minItems,
//! minimum, maximum, minLength), checked by the validator below; a schema
//! keyword outside that subset fails the test rather than being ignored.
//!
//! Used by `session_events.rs` (what sessions produce) and `bus_kafka.rs`
//! (what reaches Kafka); the test crate declares `mod session_support;` too.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use omadm_core::bus::Event;
use omadm_proto::package::{Alert, AlertItem, InitiationPackage, Mark};
use serde_json::{Value, json};

use crate::session_support::*;

pub const KEYWORDS: [&str; 11] = [
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

pub fn type_matches(name: &str, value: &Value) -> bool {
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
pub fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
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

pub fn errors_of(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(schema, value, "$", &mut errors);
    errors
}

/// What docs/events.md says: schemas by section (`Envelope` or an event type) and catalogue rows by type.
pub struct Documented {
    pub schemas: BTreeMap<String, Value>,
    /// type -> (topic, id scheme)
    pub catalogue: BTreeMap<String, (String, String)>,
}

pub fn documented() -> Documented {
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
pub fn id_matches(scheme: &str, id: &str) -> bool {
    let literals: Vec<&str> = scheme.split(['{', '}']).step_by(2).collect();
    let Some((first, others)) = literals.split_first() else { return false };
    id.strip_prefix(first).is_some_and(|rest| placeholders_fit(others, rest))
}

/// Each literal of `literals` follows one placeholder; tries every split (device ids contain ':').
pub fn placeholders_fit(literals: &[&str], rest: &str) -> bool {
    let Some((literal, tail)) = literals.split_first() else { return rest.is_empty() };
    if literal.is_empty() && tail.is_empty() {
        return !rest.is_empty();
    }
    (1..=rest.len())
        .filter(|split| rest.is_char_boundary(*split))
        .any(|split| rest[split..].strip_prefix(literal).is_some_and(|after| placeholders_fit(tail, after)))
}

/// Checks `event` against the envelope schema, its type's payload schema and its catalogue row (topic, id scheme).
pub fn check_documented(documented: &Documented, event: &Event) {
    let value = serde_json::to_value(event).unwrap();
    check_documented_value(documented, &value);
}

/// Checks one event in its JSON form (a JSONL line or a Kafka record value, parsed).
pub fn check_documented_value(documented: &Documented, value: &Value) {
    let id = value["id"].as_str().unwrap_or("?").to_owned();
    let envelope_errors = errors_of(&documented.schemas["Envelope"], value);
    assert!(envelope_errors.is_empty(), "{id} envelope: {envelope_errors:?}");
    let event_type = value["type"].as_str().unwrap();
    let schema = documented.schemas.get(event_type).unwrap_or_else(|| panic!("{event_type} has no schema"));
    let payload_errors = errors_of(schema, &value["payload"]);
    assert!(payload_errors.is_empty(), "{id} payload: {payload_errors:?}\n{}", value["payload"]);
    let (topic, id_scheme) = &documented.catalogue[event_type];
    assert_eq!(value["topic"].as_str(), Some(topic.as_str()), "{id}");
    assert!(id_matches(id_scheme, &id), "{id} does not follow {id_scheme}");
}

/// Sessions that produce every event type a session can: alerts in #1 and #3, results with and without data, an expiry.
pub fn events_of_sessions() -> Vec<Event> {
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
