//! Every addressing example of spec 6.1.3, against the tree docs/protocol-decisions.md gives for the missing Figure 5
//! (fixtures/spec/addressing_tree.json): moroot1 is instance `left`, moroot2 is instance `right`.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_proto::tree::{LeafValue, ManagementTree, Node, ResolveError};
use omadm_proto::uri::ClientUri;

const MOID: &str = "urn:oma:mo:moid:1.0";

fn notes_tree() -> ManagementTree {
    ManagementTree::from_dmmo_slice(include_bytes!("fixtures/spec/addressing_tree.json")).unwrap()
}

/// The nodes a URI resolves to, as "MIID:path" in resolution order.
fn resolve(text: &str) -> Result<Vec<String>, ResolveError> {
    let tree = notes_tree();
    let uri = ClientUri::parse(text).unwrap();
    tree.resolve(&uri).map(|nodes| nodes.iter().map(|node| format!("{}:{}", node.miid(), node.path_text())).collect())
}

#[test]
fn fixture_is_the_notes_tree() {
    let tree = notes_tree();
    assert_eq!(tree.instance_count(), 2);
    let left = tree.instance(MOID, "left").unwrap();
    let right = tree.instance(MOID, "right").unwrap();
    let leaf =
        |instance: &omadm_proto::tree::MoInstance, path: &[&str]| instance.get(path).and_then(Node::as_leaf).cloned();
    assert_eq!(leaf(left, &["ID"]), Some(LeafValue::Chr("GPS".into())));
    assert_eq!(leaf(left, &["Setting"]), Some(LeafValue::Chr("0xA1".into())));
    assert_eq!(leaf(left, &["Data", "2", "Date"]), Some(LeafValue::Chr("12.2".into())));
    assert_eq!(leaf(right, &["ID"]), Some(LeafValue::Chr("Temperature".into())));
    assert_eq!(leaf(right, &["Setting"]), Some(LeafValue::Chr("0xB2".into())));
    assert_eq!(leaf(right, &["Data", "2", "Date"]), Some(LeafValue::Chr("12.3".into())));
    assert_eq!(left.node_count(), 9);
}

#[test]
fn left_identifies_moroot1() {
    assert_eq!(resolve("urn:oma:mo:moid:1.0/left/"), Ok(vec!["left:".to_owned()]));
}

#[test]
fn empty_mo_inst_cannot_be_resolved_with_two_instances() {
    let error = resolve("urn:oma:mo:moid:1.0//").unwrap_err();
    assert_eq!(error, ResolveError::AmbiguousSoleInstance { moid: MOID.into(), count: 2 });
    assert_eq!(error.status_code(), 400);
}

#[test]
fn x_name_instance_by_id_temperature() {
    // 6.1.3 says this "identifies the moroot2/ID node", but its path is "/",
    // which 6.1.1.2 defines as the instance root: we resolve to moroot2 itself
    // and read the text's "/ID" as a slip. The ID leaf is one level further.
    assert_eq!(resolve("urn:oma:mo:moid:1.0/(x)/?nv=(x)/ID:Temperature"), Ok(vec!["right:".to_owned()]));
    assert_eq!(resolve("urn:oma:mo:moid:1.0/(x)/ID?nv=(x)/ID:Temperature"), Ok(vec!["right:ID".to_owned()]));
}

#[test]
fn x_name_instance_then_real_names() {
    assert_eq!(resolve("urn:oma:mo:moid:1.0/(x)/Data/1/Value?nv=(x)/ID:GPS"), Ok(vec!["left:Data/1/Value".to_owned()]));
}

#[test]
fn x_name_node_by_date() {
    assert_eq!(
        resolve("urn:oma:mo:moid:1.0/right/Data/(x)/Value?nv=(x)/Date:12.1"),
        Ok(vec!["right:Data/1/Value".to_owned()])
    );
}

#[test]
fn two_x_names() {
    assert_eq!(
        resolve("urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2"),
        Ok(vec!["left:Data/2/Value".to_owned()])
    );
}

#[test]
fn wildcard_instance_identifies_two_settings() {
    assert_eq!(
        resolve("urn:oma:mo:moid:1.0/*/Setting"),
        Ok(vec!["left:Setting".to_owned(), "right:Setting".to_owned()])
    );
}

#[test]
fn wildcard_node_under_x_name_instance() {
    assert_eq!(
        resolve("urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS"),
        Ok(vec!["left:Data/1/Value".to_owned(), "left:Data/2/Value".to_owned()])
    );
}

#[test]
fn no_instance_satisfies_both_nv_fields() {
    let error = resolve("urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS&nv=(x)/Setting:0xB2").unwrap_err();
    assert_eq!(error, ResolveError::NoInstanceSatisfies { moid: MOID.into(), x_name: 'x' });
    assert_eq!(error.status_code(), 404);
}

#[test]
fn two_wildcards_identify_four_nodes() {
    assert_eq!(
        resolve("urn:oma:mo:moid:1.0/*/Data/*/Value"),
        Ok(vec![
            "left:Data/1/Value".to_owned(),
            "left:Data/2/Value".to_owned(),
            "right:Data/1/Value".to_owned(),
            "right:Data/2/Value".to_owned(),
        ])
    );
}

#[test]
fn resolved_values_are_the_named_leaves() {
    let tree = notes_tree();
    let uri = ClientUri::parse("urn:oma:mo:moid:1.0/*/Data/*/Value").unwrap();
    let values: Vec<_> = tree.resolve(&uri).unwrap().iter().map(|node| node.value_json(None)).collect();
    assert_eq!(values, [11, 12, 21, 22].map(serde_json::Value::from));
}
