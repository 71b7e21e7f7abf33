//! proptest strategies for commands, packages and GET results, shared by the commands, packages and multipart tests.
//!
//! Included with `#[path]` by those files; built alone it holds no test.
#![allow(dead_code)]

use omadm_proto::command::{Command, Cont, Default, Delete, Exec, Get, Hget, Hpost, Hput, Moid, Show};
use omadm_proto::multipart::GetResultPart;
use omadm_proto::package::{
    Alert, AlertItem, CommandStatus, InitiationPackage, Mark, RequestPackage, ResponsePackage, SupportedObject,
};
use omadm_proto::status::StatusCode;
use omadm_proto::uri::{ClientUri, ServerUri};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::Value;

pub fn moid_text() -> impl Strategy<Value = String> {
    "urn:oma:mo:[a-z][a-z0-9-]{0,10}:[0-9]\\.[0-9]"
}

pub fn moid() -> impl Strategy<Value = Moid> {
    moid_text().prop_filter_map("valid MOID", |text| Moid::parse(&text).ok())
}

fn node_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_~-]{1,8}"
}

/// ClientURIs with or without wildcards, x-names left out (they need `nv` fields).
pub fn client_uri() -> impl Strategy<Value = ClientUri> {
    let instance = prop_oneof![Just(String::new()), Just("*".to_owned()), node_name()];
    let segment = prop_oneof![4 => node_name(), 1 => Just("*".to_owned())];
    let query = prop_oneof![
        Just(String::new()),
        (1u32..5).prop_map(|level| format!("?lv={level}")),
        Just("?cv=abc".to_owned())
    ];
    (moid_text(), instance, vec(segment, 0..4), query).prop_filter_map(
        "valid ClientURI",
        |(moid, instance, path, query)| {
            let path = if path.is_empty() { "/".to_owned() } else { format!("/{}", path.join("/")) };
            ClientUri::parse(&format!("{moid}/{instance}{path}{query}")).ok()
        },
    )
}

/// ClientURIs naming one node: no wildcard.
pub fn single_client_uri() -> impl Strategy<Value = ClientUri> {
    client_uri().prop_filter("no wildcard", |uri| !uri.has_wildcard())
}

pub fn server_uri() -> impl Strategy<Value = ServerUri> {
    ("[a-z]{1,10}", "[A-Za-z0-9_-]{0,12}", any::<bool>()).prop_filter_map(
        "valid ServerURI",
        |(host, path, with_dev_id)| {
            let parameter = if with_dev_id { "/[DevID]" } else { "" };
            ServerUri::parse(&format!("https://{host}.example.com/{path}{parameter}")).ok()
        },
    )
}

pub fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (server_uri(), option::of(single_client_uri())).prop_filter_map("HGET", |(server, client)| Hget::new(
            server, client
        )
        .ok()
        .map(Command::Hget)),
        (server_uri(), vec(client_uri(), 0..3)).prop_map(|(server, clients)| Command::Hput(Hput::new(server, clients))),
        (server_uri(), vec(client_uri(), 0..3))
            .prop_map(|(server, clients)| Command::Hpost(Hpost::new(server, clients))),
        single_client_uri().prop_filter_map("DELETE", |client| Delete::new(client).ok().map(Command::Delete)),
        (single_client_uri(), option::of(server_uri())).prop_filter_map("EXEC", |(client, server)| Exec::new(
            client, server
        )
        .ok()
        .map(Command::Exec)),
        client_uri().prop_map(|client| Command::Get(Get::new(client))),
        server_uri().prop_map(|server| Command::Show(Show::new(server))),
        server_uri().prop_map(|server| Command::Cont(Cont::new(server))),
        Just(Command::End),
        (server_uri(), moid()).prop_map(|(server, moid)| Command::Default(Default::new(server, moid))),
    ]
}

pub fn status_code() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        3 => proptest::sample::select(StatusCode::STANDARD.to_vec()),
        1 => (200u16..600).prop_filter_map("in range", |code| StatusCode::new(code).ok()),
        1 => (1000u16..2000).prop_filter_map("in range", |code| StatusCode::new(code).ok()),
    ]
}

/// JSON without floats, so equality after a round trip is exact.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[A-Za-z]{1,6}", inner), 0..4).prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

pub fn mark() -> impl Strategy<Value = Mark> {
    proptest::sample::select(Mark::ALL.to_vec())
}

pub fn alert_item() -> impl Strategy<Value = AlertItem> {
    (
        "urn:oma:at:[a-z]{1,8}:1\\.0:[A-Za-z]{1,10}",
        option::of(prop_oneof![Just("text/plain".to_owned()), Just("application/json".to_owned())]),
        option::of(client_uri().prop_map(|uri| uri.to_string())),
        option::of(mark()),
        option::of(json_value().prop_filter("null means absent", |value| !value.is_null())),
    )
        .prop_map(|(alert_type, mime_type, source_uri, mark, data)| AlertItem {
            alert_type,
            mime_type,
            source_uri,
            mark,
            data,
        })
}

pub fn alert() -> impl Strategy<Value = Alert> {
    vec(alert_item(), 0..3).prop_map(Alert::new)
}

pub fn supported_object() -> impl Strategy<Value = SupportedObject> {
    (option::of("http://vendor\\.example/[a-z]{1,8}\\.ddf"), moid(), vec(node_name(), 0..3))
        .prop_map(|(ddf, moid, miids)| SupportedObject { ddf, moid, miids })
}

pub fn initiation_package() -> impl Strategy<Value = InitiationPackage> {
    (option::of(vec(supported_object(), 0..4)), option::of(alert()))
        .prop_map(|(supported_objects, alert)| InitiationPackage { supported_objects, alert })
}

pub fn request_package() -> impl Strategy<Value = RequestPackage> {
    (vec(command(), 0..8), vec(status_code(), 0..3))
        .prop_map(|(commands, alert_statuses)| RequestPackage { commands, alert_statuses })
}

pub fn command_status() -> impl Strategy<Value = CommandStatus> {
    let extra = prop_oneof![".{0,16}".prop_map(Value::String), any::<u32>().prop_map(Value::from)];
    (status_code(), vec(extra, 0..3)).prop_map(|(code, extra)| CommandStatus { code, extra })
}

pub fn response_package() -> impl Strategy<Value = ResponsePackage> {
    (vec(command_status(), 0..10), option::of(alert()))
        .prop_map(|(statuses, alert)| ResponsePackage { statuses, alert })
}

/// A Package#3 with some 200 statuses, and a GET result for a subset of them, in position order.
pub fn response_with_parts() -> impl Strategy<Value = (ResponsePackage, Vec<GetResultPart>)> {
    let content_type = prop_oneof![
        Just("text/plain".to_owned()),
        Just("application/dmmo+json".to_owned()),
        Just("application/octet-stream".to_owned()),
    ];
    let part = (any::<bool>(), content_type, vec(any::<u8>(), 0..200));
    (response_package(), vec(part, 1..10)).prop_map(|(mut package, parts)| {
        let mut results = Vec::new();
        for (with_part, content_type, body) in parts {
            package.statuses.push(CommandStatus::new(StatusCode::OK));
            if with_part || results.is_empty() {
                results.push(GetResultPart::new(package.statuses.len(), content_type, body));
            }
        }
        (package, results)
    })
}
