//! dmmo+json against the spec's own examples: the 7.5 example (fixtures/spec/mo_serialization.json)
//! and the MO parts of Appendix E, plus the documents a read produces.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_proto::tree::{DmmoDocument, DmmoError, LeafValue, ManagementTree, Node, TreeLimits};
use omadm_proto::uri::ClientUri;
use serde_json::{Value, json};

const SECTION_7_5: &[u8] = include_bytes!("fixtures/spec/mo_serialization.json");

fn leaf<'a>(instance: &'a omadm_proto::tree::MoInstance, path: &[&str]) -> Option<&'a LeafValue> {
    instance.get(path).and_then(Node::as_leaf)
}

#[test]
fn section_7_5_example_parses_and_reserializes() {
    let fixture: Value = serde_json::from_slice(SECTION_7_5).unwrap();
    let document = DmmoDocument::from_slice(SECTION_7_5).unwrap();
    assert_eq!(document.ddf.as_deref(), Some("http://www.vendor.com/DDF/devdetail10.ddf"));
    assert_eq!(document.moid, "oma:mo:x-customapp:1.0");
    assert_eq!(document.miid.as_deref(), Some(""));
    assert!(document.is_instance_root());

    let instance = document.to_instance(&TreeLimits::default()).unwrap();
    assert_eq!(instance.miid(), "");
    assert_eq!(instance.node_count(), 10);
    assert_eq!(
        leaf(&instance, &["App1Config", "ServerConfig", "ServerAddr"]),
        Some(&LeafValue::Chr("server1.bar.com".into()))
    );
    assert_eq!(leaf(&instance, &["App1Config", "ServerConfig", "ServerPort"]), Some(&LeafValue::Int(12345)));
    assert_eq!(leaf(&instance, &["App2Config", "AppData", "Image"]), Some(&LeafValue::Int(666141534364)));

    // Re-serialized, the instance gives back the document exactly.
    assert_eq!(DmmoDocument::from_instance(&instance).to_json(), fixture);
    let text = serde_json::to_string(&DmmoDocument::from_instance(&instance)).unwrap();
    assert!(text.starts_with(
        r#"{"DDF":"http://www.vendor.com/DDF/devdetail10.ddf","MOID":"oma:mo:x-customapp:1.0","MIID":"","MOData":"#
    ));
    assert_eq!(serde_json::from_str::<DmmoDocument>(&text).unwrap(), document);
}

#[test]
fn appendix_e_leaf_document() {
    let part = r#"{
        "DDF": "http://www.vendor.com/DDF/oma-dm-devinfo1.2.ddf",
        "ClientURI": "urn:oma:mo:oma-dm-devinfo:1.2//DevID",
        "MOData": { "DevID": "IMEI:493005100592800" }
    }"#;
    let document = DmmoDocument::from_slice(part.as_bytes()).unwrap();
    assert_eq!(document.moid, "urn:oma:mo:oma-dm-devinfo:1.2");
    assert_eq!(document.miid, None);
    assert!(!document.is_instance_root());
    let (path, node) = document.to_node(&TreeLimits::default()).unwrap();
    assert_eq!(path, ["DevID"]);
    assert_eq!(node, Node::Leaf(LeafValue::Chr("IMEI:493005100592800".into())));
    assert_eq!(
        document.to_instance(&TreeLimits::default()),
        Err(DmmoError::NotAnInstance { client_uri: "urn:oma:mo:oma-dm-devinfo:1.2//DevID".into() })
    );
}

#[test]
fn appendix_e_session_info_wrapper_is_the_root() {
    let part = r#"{
        "DDF": "http://www.vendor.com/DDF/oma-sessioninfomo1.0.ddf",
        "ClientURI": "urn:oma:mo:oma-sessioninfomo:1.0//",
        "MOData": { "SessionInfoMO": { "CBT": 1, "ROAMING": 0 } }
    }"#;
    let document = DmmoDocument::from_slice(part.as_bytes()).unwrap();
    assert!(document.is_instance_root());
    let instance = document.to_instance(&TreeLimits::default()).unwrap();
    assert_eq!(instance.moid(), "urn:oma:mo:oma-sessioninfomo:1.0");
    assert_eq!(instance.ddf(), Some("http://www.vendor.com/DDF/oma-sessioninfomo1.0.ddf"));
    // SessionInfo (11.4) has <x>/CBT and <x>/ROAMING: the wrapper is the root itself.
    assert_eq!(leaf(&instance, &["CBT"]), Some(&LeafValue::Int(1)));
    assert_eq!(leaf(&instance, &["ROAMING"]), Some(&LeafValue::Int(0)));
    assert_eq!(instance.node_count(), 2);
    // We write the 7.5 form.
    assert_eq!(DmmoDocument::from_instance(&instance).mo_data, *json!({"CBT": 1, "ROAMING": 0}).as_object().unwrap());
}

#[test]
fn appendix_e_documents_load_into_a_server_tree() {
    let mut tree = ManagementTree::new();
    for part in [
        r#"{"ClientURI": "urn:oma:mo:oma-dm-devinfo:1.2//DevID", "MOData": {"DevID": "IMEI:493005100592800"}}"#,
        r#"{"ClientURI": "urn:oma:mo:oma-sessioninfomo:1.0//", "MOData": {"SessionInfoMO": {"CBT": 1, "ROAMING": 0}}}"#,
    ] {
        tree.store_document(&DmmoDocument::from_slice(part.as_bytes()).unwrap()).unwrap();
    }
    let uri = ClientUri::parse("urn:oma:mo:oma-sessioninfomo:1.0//CBT").unwrap();
    let nodes = tree.resolve(&uri).unwrap();
    assert_eq!(nodes.iter().map(|n| n.value_json(None)).collect::<Vec<_>>(), [json!(1)]);
}

fn notes_tree() -> ManagementTree {
    ManagementTree::from_dmmo_slice(include_bytes!("fixtures/spec/addressing_tree.json")).unwrap()
}

#[test]
fn get_result_documents_follow_appendix_e() {
    let tree = notes_tree();
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/(x)/ID?nv=(x)/ID:GPS").unwrap();
    let nodes = tree.resolve(&uri).unwrap();
    let document = nodes.first().unwrap().to_dmmo(uri.query.level);
    assert_eq!(
        document.to_json(),
        json!({"MOID": "urn:oma:mo:moid:1.0", "MIID": "left", "ClientURI": "urn:oma:mo:moid:1.0/left/ID", "MOData": {"ID": "GPS"}})
    );

    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/right/Data?lv=1").unwrap();
    let nodes = tree.resolve(&uri).unwrap();
    let document = nodes.first().unwrap().to_dmmo(uri.query.level);
    assert_eq!(
        document.client_uri.as_ref().map(ToString::to_string).as_deref(),
        Some("urn:oma:mo:moid:1.0/right/Data?lv=1")
    );
    assert_eq!(document.mo_data, *json!({"Data": {"1": {}, "2": {}}}).as_object().unwrap());
}

#[test]
fn instance_root_read_carries_the_validator_and_honours_lv() {
    let tree = notes_tree();
    let validator = tree.instance("urn:oma:mo:moid:1.0", "left").unwrap().cache_validator().clone();
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/left/?lv=1").unwrap();
    let nodes = tree.resolve(&uri).unwrap();
    let document = nodes.first().unwrap().to_dmmo(uri.query.level);
    assert_eq!(document.cache_validator(), Some(validator.as_str()));
    assert_eq!(document.mo_data, *json!({"ID": "GPS", "Setting": "0xA1", "Data": {}}).as_object().unwrap());
    assert_eq!(
        document.client_uri.map(|uri| uri.to_string()),
        Some(format!("urn:oma:mo:moid:1.0/left/?lv=1&cv={validator}"))
    );

    let full = nodes.first().unwrap().to_dmmo(None);
    assert_eq!(
        full.mo_data.get("Data"),
        Some(&json!({"1": {"Date": "12.1", "Value": 11}, "2": {"Date": "12.2", "Value": 12}}))
    );
    // The full root document is a complete instance again.
    assert_eq!(
        full.to_instance(&TreeLimits::default()).unwrap(),
        *tree.instance("urn:oma:mo:moid:1.0", "left").unwrap()
    );
}

#[test]
fn whole_tree_round_trips_through_the_list_form() {
    let tree = notes_tree();
    let text = serde_json::to_vec(&tree.to_dmmo_json()).unwrap();
    let reloaded = ManagementTree::from_dmmo_slice(&text).unwrap();
    assert_eq!(reloaded, tree);
    assert_eq!(tree.to_dmmo_documents().len(), 2);
    let fixture: Value = serde_json::from_slice(include_bytes!("fixtures/spec/addressing_tree.json")).unwrap();
    assert_eq!(tree.to_dmmo_json(), fixture);
}

#[test]
fn hostile_documents_are_refused_with_typed_errors() {
    let deep =
        format!("[{{\"MOID\":\"urn:a:1\",\"MIID\":\"m\",\"MOData\":{}1{}}}]", "{\"a\":".repeat(100), "}".repeat(100));
    let error = ManagementTree::from_dmmo_slice(deep.as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "document 0: tree deeper than 64 levels below the instance root");
    assert_eq!(error.status_code(), 506);

    // Deeper than serde_json's own recursion limit: still a clean error.
    let deeper =
        format!("[{{\"MOID\":\"urn:a:1\",\"MIID\":\"m\",\"MOData\":{}1{}}}]", "{\"a\":".repeat(5000), "}".repeat(5000));
    assert!(matches!(ManagementTree::from_dmmo_slice(deeper.as_bytes()), Err(DmmoError::Json(_))));

    let bad_name = br#"[{"MOID":"urn:a:1","MIID":"m","MOData":{"a b":1}}]"#;
    assert_eq!(
        ManagementTree::from_dmmo_slice(bad_name).unwrap_err().to_string(),
        "document 0: invalid node name \"a b\": expected unreserved characters (letters, digits, - . _ ~)"
    );
    let bad_miid = br#"[{"MOID":"urn:a:1","MIID":"a/b","MOData":{}}]"#;
    assert_eq!(
        ManagementTree::from_dmmo_slice(bad_miid).unwrap_err().to_string(),
        "document 0: invalid MIID \"a/b\": expected unreserved characters (letters, digits, - . _ ~) or \"\""
    );
}

#[test]
fn floats_survive_a_round_trip_exactly() {
    // Found by the round-trip property: without serde_json's float_roundtrip
    // feature these came back one unit in the last place off.
    for value in [3.502629252635844e-303, 1.0554496511322699e293] {
        let text = format!(r#"[{{"MOID":"urn:a:1","MIID":"m","MOData":{{"F":{value:e}}}}}]"#);
        let tree = ManagementTree::from_dmmo_slice(text.as_bytes()).unwrap();
        let instance = tree.instance("urn:a:1", "m").unwrap();
        assert_eq!(leaf(instance, &["F"]), Some(&LeafValue::Float(value)));
        let again = ManagementTree::from_dmmo_slice(&serde_json::to_vec(&tree.to_dmmo_json()).unwrap()).unwrap();
        assert_eq!(again, tree);
    }
}
