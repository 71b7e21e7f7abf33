//! ClientURI resolution (spec 6.1.2): from `MOID/mo-inst/path?query` to the node(s) it names.
//!
//! Step 1 picks instances: a MIID names exactly one; `(x)` needs exactly one
//! instance satisfying every `nv=(x)/...`; "" needs the MOID to have exactly one
//! instance; `*` takes them all. Step 2 walks the path: a real-name must match
//! a child, `(x)` needs exactly one child satisfying every `nv=(x)/...` (paths
//! relative to that child), `*` takes every child.
//!
//! ```text
//! urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2  →  left/Data/2/Value
//! urn:oma:mo:moid:1.0/*/Data/*/Value                                     →  four nodes
//! urn:oma:mo:moid:1.0//                                                  →  400: two instances
//! ```
//!
//! With a wildcard the URI may match many nodes, and a branch that finds
//! nothing (a missing name, an x-name no child satisfies, a wildcard over a
//! leaf) is dropped; the URI fails only when no branch matches, with the
//! first miss met. Ambiguity always fails the whole URI: an x-name or ""
//! that fits several nodes means the address itself is wrong.

use crate::status::StatusCode;
use serde_json::Value;

use super::instance::MoInstance;
use super::node::Node;
use crate::uri::{ClientUri, InstanceSelector, NodeSelector, NodeValue, Query};

/// Why a ClientURI names no node. `status_code()`: 404 Not Found when nothing
/// matches, 400 Bad Request when the address is ambiguous (6.1.2 requires a
/// unique match and Appendix C has no closer code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no MO instance of {moid} in the tree")]
    UnknownMoid { moid: String },
    #[error("no MO instance {miid:?} of {moid}")]
    NoSuchInstance { moid: String, miid: String },
    #[error("{moid} has {count} instances, so an empty mo-inst does not name one; give the MIID")]
    AmbiguousSoleInstance { moid: String, count: usize },
    #[error("no instance of {moid} satisfies every nv field of ({x_name})")]
    NoInstanceSatisfies { moid: String, x_name: char },
    #[error("{count} instances of {moid} satisfy every nv field of ({x_name}); it must name exactly one")]
    AmbiguousInstance { moid: String, x_name: char, count: usize },
    #[error("node {at} not found")]
    NodeNotFound { at: String },
    #[error("no child of {at} satisfies every nv field of ({x_name})")]
    XNameUnresolved { at: String, x_name: char },
    #[error("{count} children of {at} satisfy every nv field of ({x_name}); it must name exactly one")]
    XNameAmbiguous { at: String, x_name: char, count: usize },
    #[error("wildcard below {at} matches nothing: the node has no children")]
    WildcardMatchedNothing { at: String },
}

impl ResolveError {
    /// 404 Not Found, or 400 Bad Request for an ambiguous address.
    pub fn status_code(&self) -> StatusCode {
        if self.is_ambiguity() { StatusCode::BAD_REQUEST } else { StatusCode::NOT_FOUND }
    }

    /// True for the errors where the address fits several nodes instead of one.
    pub fn is_ambiguity(&self) -> bool {
        matches!(
            self,
            ResolveError::AmbiguousSoleInstance { .. }
                | ResolveError::AmbiguousInstance { .. }
                | ResolveError::XNameAmbiguous { .. }
        )
    }
}

/// One node a ClientURI resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedNode<'t> {
    instance: &'t MoInstance,
    path: Vec<&'t str>,
    node: &'t Node,
}

impl<'t> ResolvedNode<'t> {
    /// The instance holding the node.
    pub fn instance(&self) -> &'t MoInstance {
        self.instance
    }

    /// The MOID of that instance.
    pub fn moid(&self) -> &'t str {
        self.instance.moid()
    }

    /// The MIID of that instance.
    pub fn miid(&self) -> &'t str {
        self.instance.miid()
    }

    /// Real names from the instance root down to the node; empty for the root.
    pub fn path(&self) -> &[&'t str] {
        &self.path
    }

    /// The path as text without leading "/": `Data/1/Value`, or "" for the root.
    pub fn path_text(&self) -> String {
        self.path.join("/")
    }

    /// The node itself.
    pub fn node(&self) -> &'t Node {
        self.node
    }

    /// True when the node is its instance's root.
    pub fn is_instance_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The ClientURI naming exactly this node, without query:
    /// `urn:oma:mo:moid:1.0/left/Data/1/Value`.
    pub fn client_uri(&self) -> ClientUri {
        let mut uri = self.instance.client_uri();
        uri.path = self.path.iter().map(|name| NodeSelector::Name((*name).to_owned())).collect();
        uri
    }

    /// The node's content as JSON: a leaf's value, or an interior node's
    /// children as an object with at most `level` sublevels (`lv`, 6.1.1.3).
    pub fn value_json(&self, level: Option<u32>) -> Value {
        self.node.to_json_with_level(level)
    }
}

/// The answer to a read with cache validation (spec 12.2).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome<'t> {
    /// The `cv` given is current: answer 304 and send no data.
    NotModified,
    /// The data to send: one entry per node matched.
    Nodes(Vec<ResolvedNode<'t>>),
}

impl ReadOutcome<'_> {
    /// 304 Not Modified or 200 OK.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ReadOutcome::NotModified => StatusCode::NOT_MODIFIED,
            ReadOutcome::Nodes(_) => StatusCode::OK,
        }
    }
}

pub(super) fn resolve<'t>(
    tree: &'t super::ManagementTree,
    uri: &ClientUri,
) -> Result<Vec<ResolvedNode<'t>>, ResolveError> {
    let instances = select_instances(tree, uri)?;
    let mut frontier: Vec<ResolvedNode<'t>> = instances
        .into_iter()
        .map(|instance| ResolvedNode { instance, path: Vec::new(), node: instance.root() })
        .collect();
    let mut first_miss = None;
    // Iterative over segments: a hostile URI with thousands of segments costs
    // nothing once the frontier is empty, and never deepens the stack.
    for segment in &uri.path {
        let mut next = Vec::new();
        for candidate in frontier {
            match step(candidate, segment, &uri.query, &mut next) {
                Ok(()) => {}
                Err(miss) if miss.is_ambiguity() => return Err(miss),
                Err(miss) => {
                    first_miss.get_or_insert(miss);
                }
            }
        }
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    if frontier.is_empty() {
        return Err(first_miss.unwrap_or_else(|| ResolveError::UnknownMoid { moid: uri.moid.clone() }));
    }
    Ok(frontier)
}

fn select_instances<'t>(tree: &'t super::ManagementTree, uri: &ClientUri) -> Result<Vec<&'t MoInstance>, ResolveError> {
    let moid = || uri.moid.clone();
    let by_miid = tree.instances_by_miid(&uri.moid).ok_or_else(|| ResolveError::UnknownMoid { moid: moid() })?;
    match &uri.instance {
        InstanceSelector::Miid(miid) => by_miid
            .get(miid)
            .map(|instance| vec![instance])
            .ok_or_else(|| ResolveError::NoSuchInstance { moid: moid(), miid: miid.clone() }),
        InstanceSelector::Sole => {
            let mut all = by_miid.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Ok(vec![only]),
                (None, _) => Err(ResolveError::UnknownMoid { moid: moid() }),
                (Some(_), Some(_)) => Err(ResolveError::AmbiguousSoleInstance { moid: moid(), count: by_miid.len() }),
            }
        }
        InstanceSelector::XName(x_name) => {
            let node_values = node_values_for(&uri.query, *x_name);
            let satisfying: Vec<&MoInstance> =
                by_miid.values().filter(|instance| satisfies(instance.root(), &node_values)).collect();
            match satisfying.len() {
                1 => Ok(satisfying),
                0 => Err(ResolveError::NoInstanceSatisfies { moid: moid(), x_name: *x_name }),
                count => Err(ResolveError::AmbiguousInstance { moid: moid(), x_name: *x_name, count }),
            }
        }
        InstanceSelector::Wildcard => Ok(by_miid.values().collect()),
    }
}

/// Extends `next` with what `segment` selects below `candidate`, or says why nothing.
fn step<'t>(
    candidate: ResolvedNode<'t>,
    segment: &NodeSelector,
    query: &Query,
    next: &mut Vec<ResolvedNode<'t>>,
) -> Result<(), ResolveError> {
    let children = candidate.node.as_interior();
    match segment {
        NodeSelector::Name(name) => {
            let (child_name, child) = children
                .and_then(|interior| interior.child_entry(name))
                .ok_or_else(|| ResolveError::NodeNotFound { at: child_uri(&candidate, name) })?;
            next.push(candidate.child(child_name, child));
        }
        NodeSelector::Wildcard => {
            let interior = children
                .filter(|interior| !interior.is_empty())
                .ok_or_else(|| ResolveError::WildcardMatchedNothing { at: candidate.client_uri().to_string() })?;
            next.extend(interior.children().map(|(name, child)| candidate.child(name, child)));
        }
        NodeSelector::XName(x_name) => {
            let node_values = node_values_for(query, *x_name);
            let mut satisfying = children
                .into_iter()
                .flat_map(|interior| interior.children())
                .filter(|(_, child)| satisfies(child, &node_values));
            match (satisfying.next(), satisfying.next()) {
                (Some((name, child)), None) => next.push(candidate.child(name, child)),
                (None, _) => {
                    return Err(ResolveError::XNameUnresolved {
                        at: candidate.client_uri().to_string(),
                        x_name: *x_name,
                    });
                }
                (Some(_), Some(_)) => {
                    return Err(ResolveError::XNameAmbiguous {
                        at: candidate.client_uri().to_string(),
                        x_name: *x_name,
                        count: 2 + satisfying.count(),
                    });
                }
            }
        }
    }
    Ok(())
}

impl<'t> ResolvedNode<'t> {
    fn child(&self, name: &'t str, node: &'t Node) -> ResolvedNode<'t> {
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend_from_slice(&self.path);
        path.push(name);
        ResolvedNode { instance: self.instance, path, node }
    }
}

fn child_uri(parent: &ResolvedNode<'_>, name: &str) -> String {
    let mut uri = parent.client_uri();
    uri.path.push(NodeSelector::Name(name.to_owned()));
    uri.to_string()
}

fn node_values_for(query: &Query, x_name: char) -> Vec<&NodeValue> {
    query.node_values.iter().filter(|node_value| node_value.x_name == x_name).collect()
}

/// Every `nv` is satisfied: the leaf at its path below `node` has its value (6.1.1.3).
fn satisfies(node: &Node, node_values: &[&NodeValue]) -> bool {
    node_values.iter().all(|node_value| {
        node.descendant(&node_value.path)
            .and_then(Node::as_leaf)
            .is_some_and(|leaf| leaf.matches_text(&node_value.value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{InteriorNode, LeafValue, ManagementTree};

    fn tree() -> ManagementTree {
        let mut tree = ManagementTree::new();
        for (miid, id, count) in [("a", "one", 5), ("b", "two", 7)] {
            let instance = tree.create_instance("urn:t:1", miid).unwrap();
            instance.set_leaf(&["ID"], LeafValue::Chr(id.into())).unwrap();
            instance.set_leaf(&["Count"], LeafValue::Int(count)).unwrap();
            instance.set_node(&["List"], Node::Interior(InteriorNode::new())).unwrap();
            instance.set_node(&["Empty"], Node::Interior(InteriorNode::new())).unwrap();
            for item in ["x", "y"] {
                instance.set_node(&["List", item], Node::Interior(InteriorNode::new())).unwrap();
                instance.set_leaf(&["List", item, "Kind"], LeafValue::Chr("same".into())).unwrap();
            }
        }
        tree
    }

    fn resolve_text(tree: &ManagementTree, text: &str) -> Result<Vec<String>, ResolveError> {
        let uri = ClientUri::parse(text).unwrap();
        tree.resolve(&uri).map(|nodes| nodes.iter().map(|n| format!("{}/{}", n.miid(), n.path_text())).collect())
    }

    #[test]
    fn int_leaf_satisfies_its_text_form() {
        let tree = tree();
        assert_eq!(resolve_text(&tree, "urn:t:1/(x)/ID?nv=(x)/Count:7"), Ok(vec!["b/ID".into()]));
        assert_eq!(resolve_text(&tree, "urn:t:1/(x)/ID?nv=(x)/Count:07"), Ok(vec!["b/ID".into()]));
    }

    #[test]
    fn each_failure_has_its_error_and_status() {
        let tree = tree();
        let cases: &[(&str, ResolveError, u16)] = &[
            ("urn:none:1/a/", ResolveError::UnknownMoid { moid: "urn:none:1".into() }, 404),
            ("urn:t:1/c/", ResolveError::NoSuchInstance { moid: "urn:t:1".into(), miid: "c".into() }, 404),
            ("urn:t:1//", ResolveError::AmbiguousSoleInstance { moid: "urn:t:1".into(), count: 2 }, 400),
            (
                "urn:t:1/(x)/?nv=(x)/ID:three",
                ResolveError::NoInstanceSatisfies { moid: "urn:t:1".into(), x_name: 'x' },
                404,
            ),
            (
                "urn:t:1/(x)/?nv=(x)/List/x/Kind:same",
                ResolveError::AmbiguousInstance { moid: "urn:t:1".into(), x_name: 'x', count: 2 },
                400,
            ),
            ("urn:t:1/a/Nope", ResolveError::NodeNotFound { at: "urn:t:1/a/Nope".into() }, 404),
            ("urn:t:1/a/ID/Below", ResolveError::NodeNotFound { at: "urn:t:1/a/ID/Below".into() }, 404),
            (
                "urn:t:1/a/List/(y)?nv=(y)/Kind:other",
                ResolveError::XNameUnresolved { at: "urn:t:1/a/List".into(), x_name: 'y' },
                404,
            ),
            (
                "urn:t:1/a/List/(y)?nv=(y)/Kind:same",
                ResolveError::XNameAmbiguous { at: "urn:t:1/a/List".into(), x_name: 'y', count: 2 },
                400,
            ),
            ("urn:t:1/a/Empty/*", ResolveError::WildcardMatchedNothing { at: "urn:t:1/a/Empty".into() }, 404),
            ("urn:t:1/a/ID/*", ResolveError::WildcardMatchedNothing { at: "urn:t:1/a/ID".into() }, 404),
            ("urn:t:1/*/Nope", ResolveError::NodeNotFound { at: "urn:t:1/a/Nope".into() }, 404),
        ];
        for (text, expected, status) in cases {
            let error = resolve_text(&tree, text).unwrap_err();
            assert_eq!(&error, expected, "{text}");
            assert_eq!(error.status_code(), *status, "{text}");
        }
    }

    #[test]
    fn wildcard_branches_that_miss_are_dropped_but_ambiguity_is_not() {
        let mut tree = tree();
        tree.instance_mut("urn:t:1", "b").unwrap().delete_node(&["Count"]).unwrap();
        assert_eq!(resolve_text(&tree, "urn:t:1/*/Count"), Ok(vec!["a/Count".into()]));
        assert_eq!(
            resolve_text(&tree, "urn:t:1/*/List/*/Kind"),
            Ok(vec!["a/List/x/Kind".into(), "a/List/y/Kind".into(), "b/List/x/Kind".into(), "b/List/y/Kind".into()])
        );
        assert!(matches!(
            resolve_text(&tree, "urn:t:1/*/List/(z)?nv=(z)/Kind:same"),
            Err(ResolveError::XNameAmbiguous { .. })
        ));
    }

    #[test]
    fn very_long_paths_stop_early() {
        let tree = tree();
        let text = format!("urn:t:1/a/{}", vec!["seg"; 50_000].join("/"));
        assert_eq!(resolve_text(&tree, &text), Err(ResolveError::NodeNotFound { at: "urn:t:1/a/seg".into() }));
    }

    #[test]
    fn read_checks_the_cache_validator() {
        let tree = tree();
        let validator = tree.instance("urn:t:1", "a").unwrap().cache_validator().clone();
        let fresh = ClientUri::parse(&format!("urn:t:1/a/ID?cv={validator}")).unwrap();
        assert_eq!(tree.read(&fresh).map(|outcome| u16::from(outcome.status_code())), Ok(304));
        let stale = ClientUri::parse("urn:t:1/a/ID?cv=old").unwrap();
        let outcome = tree.read(&stale).unwrap();
        assert_eq!(outcome.status_code(), 200);
        let ReadOutcome::Nodes(nodes) = outcome else { panic!("expected data") };
        assert_eq!(nodes.len(), 1);
        // A validator of one instance never vouches for another.
        let across = ClientUri::parse(&format!("urn:t:1/*/ID?cv={validator}")).unwrap();
        assert_eq!(tree.read(&across).map(|outcome| u16::from(outcome.status_code())), Ok(200));
    }

    #[test]
    fn resolved_node_accessors() {
        let tree = tree();
        let uri = ClientUri::parse("urn:t:1/b/List?lv=1").unwrap();
        let nodes = tree.resolve(&uri).unwrap();
        let [node] = nodes.as_slice() else { panic!("one node expected") };
        assert_eq!((node.moid(), node.miid(), node.path()), ("urn:t:1", "b", &["List"][..]));
        assert!(!node.is_instance_root());
        assert_eq!(node.client_uri().to_string(), "urn:t:1/b/List");
        assert_eq!(node.value_json(Some(1)), serde_json::json!({"x": {}, "y": {}}));
        assert_eq!(node.value_json(None), serde_json::json!({"x": {"Kind": "same"}, "y": {"Kind": "same"}}));
    }
}
