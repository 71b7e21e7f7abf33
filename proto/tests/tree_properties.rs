//! Property tests of the management tree: dmmo+json round trips, resolution
//! never panics and only returns real nodes, validators track content exactly.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_proto::tree::{
    ALL_FORMATS, DmmoDocument, Format, InteriorNode, LeafValue, ManagementTree, MoInstance, Node, TreeLimits,
};
use omadm_proto::uri::ClientUri;
use proptest::prelude::*;

fn node_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["ID", "Data", "Value", "Date", "1", "2", "Setting"]).prop_map(str::to_owned),
        1 => "[A-Za-z0-9._~-]{1,6}",
    ]
}

/// Finite floats (normal numbers and zero).
fn finite_float() -> impl Strategy<Value = f64> {
    prop_oneof![prop::num::f64::NORMAL, Just(0.0)]
}

/// Leaves whose format survives being read back without a DDF.
fn inferable_leaf() -> impl Strategy<Value = LeafValue> {
    prop_oneof![
        Just(LeafValue::Null),
        any::<bool>().prop_map(LeafValue::Bool),
        any::<i64>().prop_map(LeafValue::Int),
        finite_float().prop_map(LeafValue::Float),
        "\\PC{0,12}".prop_map(LeafValue::Chr),
    ]
}

/// Any leaf of any format.
fn any_leaf() -> impl Strategy<Value = LeafValue> {
    prop_oneof![
        inferable_leaf(),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(LeafValue::B64),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(LeafValue::Bin),
        "\\PC{0,12}".prop_map(LeafValue::Xml),
        "[0-9.:-]{0,10}".prop_map(LeafValue::Date),
        "[0-9.:-]{0,10}".prop_map(LeafValue::Time),
    ]
}

fn interior(leaf: BoxedStrategy<LeafValue>) -> impl Strategy<Value = InteriorNode> {
    let node = leaf.prop_map(Node::Leaf).prop_recursive(4, 48, 5, |inner| {
        prop::collection::btree_map(node_name(), inner, 0..5).prop_map(|children| {
            let mut interior = InteriorNode::new();
            for (name, child) in children {
                interior.insert_child(name, child).unwrap();
            }
            Node::Interior(interior)
        })
    });
    prop::collection::btree_map(node_name(), node, 0..5).prop_map(|children| {
        let mut interior = InteriorNode::new();
        for (name, child) in children {
            interior.insert_child(name, child).unwrap();
        }
        interior
    })
}

fn tree(leaf: BoxedStrategy<LeafValue>) -> impl Strategy<Value = ManagementTree> {
    let moid = prop::sample::select(vec!["urn:oma:mo:moid:1.0", "urn:oma:mo:oma-dm-devinfo:1.2", "urn:x:y:2"]);
    let miid = prop::sample::select(vec!["left", "right", "m1", ""]);
    let ddf = prop::option::of(Just("http://www.vendor.com/DDF/x.ddf".to_owned()));
    prop::collection::vec((moid, miid, ddf, interior(leaf)), 1..5).prop_map(|instances| {
        let mut tree = ManagementTree::new();
        for (moid, miid, ddf, root) in instances {
            let mut instance = MoInstance::with_root(moid, miid, root, TreeLimits::default()).unwrap();
            instance.set_ddf(ddf);
            // Duplicates and a second instance next to an MIID "" are refused: skipping them is the point.
            let _ = tree.insert_instance(instance);
        }
        tree
    })
}

/// ClientURIs built from the pieces the generated trees use, plus arbitrary text.
fn client_uri_text() -> impl Strategy<Value = String> {
    let moid = prop::sample::select(vec!["urn:oma:mo:moid:1.0", "urn:x:y:2", "urn:none:1"]);
    let instance = prop::sample::select(vec!["left", "right", "m1", "", "*", "(x)", "nope"]);
    let segment = prop_oneof![node_name(), Just("*".to_owned()), Just("(y)".to_owned()), Just("(z)".to_owned())];
    let path = prop::collection::vec(segment, 0..6);
    let node_value =
        (prop::sample::select(vec!['x', 'y', 'z']), prop::collection::vec(node_name(), 0..3), "[A-Za-z0-9.]{0,4}")
            .prop_map(|(x, path, value)| {
                let mut text = format!("nv=({x})");
                for name in path {
                    text.push('/');
                    text.push_str(&name);
                }
                format!("{text}:{value}")
            });
    let query = (prop::option::of(1u32..4), prop::collection::vec(node_value, 0..4));
    let structured = (moid, instance, path, query).prop_map(|(moid, instance, path, (level, node_values))| {
        let mut text = format!("{moid}/{instance}/{}", path.join("/"));
        let mut fields: Vec<String> = node_values;
        if let Some(level) = level {
            fields.push(format!("lv={level}"));
        }
        if !fields.is_empty() {
            text.push('?');
            text.push_str(&fields.join("&"));
        }
        text
    });
    prop_oneof![4 => structured, 1 => "\\PC{0,40}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn dmmo_list_round_trips(tree in tree(inferable_leaf().boxed())) {
        let bytes = serde_json::to_vec(&tree.to_dmmo_json()).unwrap();
        let reloaded = ManagementTree::from_dmmo_slice(&bytes).unwrap();
        prop_assert_eq!(&reloaded, &tree);
        for instance in tree.instances() {
            prop_assert_eq!(
                reloaded.instance(instance.moid(), instance.miid()).map(|i| i.cache_validator().clone()),
                Some(instance.cache_validator().clone())
            );
        }
    }

    #[test]
    fn instance_documents_round_trip_with_any_formats_given_the_formats(tree in tree(any_leaf().boxed())) {
        for instance in tree.instances() {
            let text = serde_json::to_string(&DmmoDocument::from_instance(instance)).unwrap();
            let document: DmmoDocument = serde_json::from_str(&text).unwrap();
            let mut reloaded = document.to_instance(&TreeLimits::default()).unwrap();
            // Without a DDF some formats read as chr; giving each leaf its format back restores the instance.
            retype_like(&mut reloaded, instance.root_interior(), &mut Vec::new());
            prop_assert_eq!(&reloaded, instance);
        }
    }

    #[test]
    fn leaf_json_reads_back_under_its_own_format(leaf in any_leaf()) {
        prop_assert_eq!(LeafValue::from_json_as(&leaf.to_json(), leaf.format()), Ok(leaf.clone()));
        prop_assert!(leaf.matches_text(&leaf.text_form()));
        prop_assert_eq!(LeafValue::from_text(&leaf.text_form(), leaf.format()), Ok(leaf.clone()));
    }

    #[test]
    fn resolve_never_panics_and_returns_real_nodes(tree in tree(inferable_leaf().boxed()), text in client_uri_text()) {
        let Ok(uri) = ClientUri::parse(&text) else { return Ok(()) };
        match tree.resolve(&uri) {
            Ok(nodes) => {
                prop_assert!(!nodes.is_empty());
                if !uri.has_wildcard() {
                    prop_assert_eq!(nodes.len(), 1);
                }
                for node in &nodes {
                    let instance = tree.instance(node.moid(), node.miid()).unwrap();
                    prop_assert_eq!(instance.get(node.path()), Some(node.node()));
                    prop_assert_eq!(node.path().len(), uri.path.len());
                    let again = tree.resolve(&node.client_uri()).unwrap();
                    prop_assert_eq!(again.len(), 1);
                    let document = node.to_dmmo(uri.query.level);
                    prop_assert_eq!(document.moid.as_str(), node.moid());
                }
            }
            Err(error) => prop_assert!(matches!(u16::from(error.status_code()), 400 | 404)),
        }
    }

    #[test]
    fn validator_changes_exactly_when_content_changes(
        root in interior(inferable_leaf().boxed()),
        mutations in prop::collection::vec(mutation(), 1..12),
    ) {
        let mut instance = MoInstance::with_root("urn:oma:mo:moid:1.0", "left", root, TreeLimits::default()).unwrap();
        for mutation in mutations {
            let before = instance.clone();
            let validator_before = instance.cache_validator().clone();
            let applied = mutation.apply(&mut instance);
            let validator_after = instance.cache_validator().clone();
            if applied.is_err() {
                prop_assert_eq!(&instance, &before);
            }
            prop_assert_eq!(content(&instance) != content(&before), validator_after != validator_before, "{:?}", mutation);
            // A fresh computation agrees with the cached one.
            prop_assert_eq!(&instance.clone().cache_validator().clone(), &validator_after);
            let recomputed = MoInstance::with_root("urn:oma:mo:moid:1.0", "left", instance.root_interior().clone(), TreeLimits::default())
                .map(|mut copy| { copy.set_ddf(instance.ddf().map(str::to_owned)); copy.cache_validator().clone() });
            prop_assert_eq!(recomputed, Ok(validator_after));
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    SetLeaf(Vec<String>, LeafValue),
    SetInterior(Vec<String>),
    Delete(Vec<String>),
    SetDdf(Option<String>),
    Retype(Vec<String>, Format),
}

impl Mutation {
    fn apply(&self, instance: &mut MoInstance) -> Result<(), omadm_proto::tree::TreeError> {
        match self {
            Mutation::SetLeaf(path, value) => instance.set_leaf(path, value.clone()).map(drop),
            Mutation::SetInterior(path) => instance.set_node(path, Node::Interior(InteriorNode::new())).map(drop),
            Mutation::Delete(path) => instance.delete_node(path).map(drop),
            Mutation::SetDdf(ddf) => {
                instance.set_ddf(ddf.clone());
                Ok(())
            }
            Mutation::Retype(path, format) => instance.retype_leaf(path, *format),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = || prop::collection::vec(node_name(), 0..4);
    prop_oneof![
        3 => (path(), any_leaf()).prop_map(|(path, value)| Mutation::SetLeaf(path, value)),
        2 => path().prop_map(Mutation::SetInterior),
        3 => path().prop_map(Mutation::Delete),
        1 => prop::option::of(prop::sample::select(vec!["http://a/x.ddf", "http://b/y.ddf"]).prop_map(str::to_owned))
            .prop_map(Mutation::SetDdf),
        1 => (path(), prop::sample::select(ALL_FORMATS.to_vec())).prop_map(|(path, format)| Mutation::Retype(path, format)),
    ]
}

/// The instance's content in a form that tells apart everything the wire
/// does (formats, and -0.0 from 0.0, which `PartialEq` on floats does not).
fn content(instance: &MoInstance) -> String {
    format!("{:?} {:?}", instance.ddf(), instance.root())
}

/// Gives every leaf of `instance` the format of the same leaf in `model`.
fn retype_like(instance: &mut MoInstance, model: &InteriorNode, path: &mut Vec<String>) {
    for (name, child) in model.children() {
        path.push(name.to_owned());
        match child {
            Node::Interior(grandchildren) => retype_like(instance, grandchildren, path),
            Node::Leaf(value) => instance.retype_leaf(path, value.format()).unwrap(),
        }
        path.pop();
    }
}
