//! Nodes of the management tree (spec 14): interior nodes holding named children, and typed leaves.
//!
//! In dmmo+json (spec 7.5) an interior node is a JSON object keyed by child
//! name and a leaf is a JSON value:
//!
//! ```text
//! {"ID": "GPS", "Data": {"1": {"Date": "12.1", "Value": 11}}}
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::TreeError;
use super::format::{Format, LeafValue};

/// A node: interior (children) or leaf (a value).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// An interior node; its format is `node`.
    Interior(InteriorNode),
    /// A leaf node with its typed value.
    Leaf(LeafValue),
}

/// An interior node: children by name, in name order (so output and validators are deterministic).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InteriorNode {
    children: BTreeMap<String, Node>,
}

/// Bounds applied when a tree is loaded or changed, so that hostile input cannot
/// exhaust memory or the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Most levels below an instance root (a leaf at `Data/1/Date` is at level 3).
    pub max_depth: usize,
    /// Most nodes in one MO instance, its root not counted.
    pub max_nodes_per_instance: usize,
    /// Most MO instances in one tree.
    pub max_instances: usize,
}

impl Default for TreeLimits {
    /// 64 levels, 100,000 nodes per instance, 1,000 instances: far above any
    /// standard MO, far below what would hurt a server.
    fn default() -> Self {
        TreeLimits { max_depth: 64, max_nodes_per_instance: 100_000, max_instances: 1_000 }
    }
}

impl Node {
    /// The node's format; `node` for interior nodes.
    pub fn format(&self) -> Format {
        match self {
            Node::Interior(_) => Format::Node,
            Node::Leaf(value) => value.format(),
        }
    }

    /// The interior node, if this is one.
    pub fn as_interior(&self) -> Option<&InteriorNode> {
        match self {
            Node::Interior(interior) => Some(interior),
            Node::Leaf(_) => None,
        }
    }

    /// The leaf value, if this is a leaf.
    pub fn as_leaf(&self) -> Option<&LeafValue> {
        match self {
            Node::Leaf(value) => Some(value),
            Node::Interior(_) => None,
        }
    }

    /// The child called `name`; `None` for leaves and missing children.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.as_interior().and_then(|interior| interior.child(name))
    }

    /// The node at `path` below this one (an empty path is this node).
    pub fn descendant<S: AsRef<str>>(&self, path: &[S]) -> Option<&Node> {
        path.iter().try_fold(self, |node, name| node.child(name.as_ref()))
    }

    /// The dmmo+json form with every level (spec 7.5).
    pub fn to_json(&self) -> Value {
        self.to_json_with_level(None)
    }

    /// The dmmo+json form including at most `level` sublevels of children
    /// (`lv=<n>`, spec 6.1.1.3); interior nodes past that depth are `{}`.
    /// With `Some(1)`, `{"ID": "GPS", "Data": {}}`.
    pub fn to_json_with_level(&self, level: Option<u32>) -> Value {
        match self {
            Node::Interior(interior) => Value::Object(interior.to_json_map(level)),
            Node::Leaf(value) => value.to_json(),
        }
    }

    /// Reads a node from dmmo+json, inferring leaf formats (see
    /// [`LeafValue::from_json_inferred`]); objects are interior nodes, `{}` an
    /// interior node without children.
    pub fn from_json(value: &Value, limits: &TreeLimits) -> Result<Node, TreeError> {
        let mut budget = NodeBudget::new(limits);
        node_from_json(value, 0, &mut Vec::new(), &mut budget)
    }

    /// How many nodes this subtree holds, itself included.
    pub fn count(&self) -> usize {
        1 + self.as_interior().map_or(0, InteriorNode::descendant_count)
    }

    /// Levels below this node: 0 for a leaf or an interior node without children.
    pub fn height(&self) -> usize {
        self.as_interior().map_or(0, InteriorNode::height)
    }
}

impl From<LeafValue> for Node {
    fn from(value: LeafValue) -> Self {
        Node::Leaf(value)
    }
}

impl From<InteriorNode> for Node {
    fn from(interior: InteriorNode) -> Self {
        Node::Interior(interior)
    }
}

impl InteriorNode {
    /// An interior node without children.
    pub const fn new() -> Self {
        InteriorNode { children: BTreeMap::new() }
    }

    /// The child called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.get(name)
    }

    /// The child called `name` with the name as stored (borrowed from the tree).
    pub fn child_entry(&self, name: &str) -> Option<(&str, &Node)> {
        self.children.get_key_value(name).map(|(stored, node)| (stored.as_str(), node))
    }

    /// The children with their names, in name order.
    pub fn children(&self) -> impl ExactSizeIterator<Item = (&str, &Node)> + '_ {
        self.children.iter().map(|(name, node)| (name.as_str(), node))
    }

    /// Number of direct children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True without children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Adds or replaces the child `name`, returning the node it replaced. The
    /// name must be a real-name of spec 6.1.1 (unreserved characters) so the
    /// node stays addressable; floats must be finite.
    pub fn insert_child(&mut self, name: impl Into<String>, node: Node) -> Result<Option<Node>, TreeError> {
        let name = name.into();
        check_node_name(&name)?;
        if let Node::Leaf(value) = &node {
            value.check().map_err(|source| TreeError::InvalidLeaf { path: name.clone(), source })?;
        }
        Ok(self.children.insert(name, node))
    }

    /// Builder form of [`InteriorNode::insert_child`].
    pub fn with_child(mut self, name: impl Into<String>, node: impl Into<Node>) -> Result<Self, TreeError> {
        self.insert_child(name, node.into())?;
        Ok(self)
    }

    /// Removes the child `name`.
    pub fn remove_child(&mut self, name: &str) -> Option<Node> {
        self.children.remove(name)
    }

    /// The JSON object of the children, honouring `level` as in [`Node::to_json_with_level`].
    pub fn to_json_map(&self, level: Option<u32>) -> Map<String, Value> {
        if level == Some(0) {
            return Map::new();
        }
        let below = level.map(|remaining| remaining.saturating_sub(1));
        self.children
            .iter()
            .map(|(name, child)| {
                let value = match child {
                    Node::Interior(interior) => Value::Object(interior.to_json_map(below)),
                    Node::Leaf(leaf) => leaf.to_json(),
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// Reads the children of an interior node from a JSON object (see [`Node::from_json`]).
    pub fn from_json_map(map: &Map<String, Value>, limits: &TreeLimits) -> Result<InteriorNode, TreeError> {
        let mut budget = NodeBudget::new(limits);
        interior_from_json(map, 0, &mut Vec::new(), &mut budget)
    }

    /// Nodes below this one, itself not counted.
    pub fn descendant_count(&self) -> usize {
        self.children.values().map(Node::count).sum()
    }

    /// Levels below this node.
    pub fn height(&self) -> usize {
        self.children.values().map(|child| 1 + child.height()).max().unwrap_or(0)
    }

    pub(crate) fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.children.get_mut(name)
    }
}

/// Checks a node name: 1*unreserved (RFC 3986), the real-name of spec 6.1.1.
pub fn check_node_name(name: &str) -> Result<(), TreeError> {
    if is_real_name(name) { Ok(()) } else { Err(TreeError::InvalidNodeName(name.to_owned())) }
}

/// `1*unreserved`: what a MIID or a node name must be to appear in a ClientURI.
pub(crate) fn is_real_name(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Counts nodes while a document is read, to stop early on oversized input.
struct NodeBudget {
    max_depth: usize,
    remaining_nodes: usize,
    max_nodes: usize,
}

impl NodeBudget {
    fn new(limits: &TreeLimits) -> Self {
        NodeBudget {
            max_depth: limits.max_depth,
            remaining_nodes: limits.max_nodes_per_instance,
            max_nodes: limits.max_nodes_per_instance,
        }
    }

    fn take_one(&mut self) -> Result<(), TreeError> {
        self.remaining_nodes =
            self.remaining_nodes.checked_sub(1).ok_or(TreeError::TooManyNodes { limit: self.max_nodes })?;
        Ok(())
    }
}

/// `depth` is the level of `value` itself; `path` names it (for error messages).
fn node_from_json(
    value: &Value,
    depth: usize,
    path: &mut Vec<String>,
    budget: &mut NodeBudget,
) -> Result<Node, TreeError> {
    match value {
        Value::Object(map) => interior_from_json(map, depth, path, budget).map(Node::Interior),
        _ => LeafValue::from_json_inferred(value)
            .map(Node::Leaf)
            .map_err(|source| TreeError::InvalidLeaf { path: path.join("/"), source }),
    }
}

fn interior_from_json(
    map: &Map<String, Value>,
    depth: usize,
    path: &mut Vec<String>,
    budget: &mut NodeBudget,
) -> Result<InteriorNode, TreeError> {
    if !map.is_empty() && depth >= budget.max_depth {
        return Err(TreeError::TooDeep { limit: budget.max_depth });
    }
    let mut interior = InteriorNode::new();
    for (name, child) in map {
        check_node_name(name).map_err(|_| TreeError::InvalidNodeName(join_child(path, name)))?;
        budget.take_one()?;
        path.push(name.clone());
        let node = node_from_json(child, depth + 1, path, budget);
        path.pop();
        interior.children.insert(name.clone(), node?);
    }
    Ok(interior)
}

fn join_child(path: &[String], name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{}/{name}", path.join("/")) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tree::format::LeafValueError;

    #[test]
    fn reads_and_writes_json() {
        let value = json!({"ID": "GPS", "Data": {"1": {"Date": "12.1", "Value": 11}}, "Empty": {}});
        let node = Node::from_json(&value, &TreeLimits::default()).unwrap();
        assert_eq!(node.count(), 7);
        assert_eq!(node.height(), 3);
        assert_eq!(node.descendant(&["Data", "1", "Value"]).and_then(Node::as_leaf), Some(&LeafValue::Int(11)));
        assert_eq!(node.child("Empty").map(Node::format), Some(Format::Node));
        assert_eq!(node.to_json(), value);
        assert_eq!(node.to_json_with_level(Some(1)), json!({"ID": "GPS", "Data": {}, "Empty": {}}));
        assert_eq!(node.to_json_with_level(Some(2)), json!({"ID": "GPS", "Data": {"1": {}}, "Empty": {}}));
    }

    #[test]
    fn refuses_bad_names_arrays_and_excess() {
        let limits = TreeLimits { max_depth: 2, max_nodes_per_instance: 3, max_instances: 1 };
        assert_eq!(
            Node::from_json(&json!({"a": {"b c": 1}}), &limits),
            Err(TreeError::InvalidNodeName("a/b c".into()))
        );
        assert_eq!(
            Node::from_json(&json!({"a": [1]}), &limits),
            Err(TreeError::InvalidLeaf { path: "a".into(), source: LeafValueError::NotALeaf { found: "JSON array" } })
        );
        assert_eq!(Node::from_json(&json!({"a": {"b": {"c": 1}}}), &limits), Err(TreeError::TooDeep { limit: 2 }));
        // Two levels is fine, and an empty object at the limit adds no level.
        assert!(Node::from_json(&json!({"a": {"b": {}}}), &limits).is_ok());
        assert_eq!(
            Node::from_json(&json!({"a": 1, "b": 2, "c": 3, "d": 4}), &limits),
            Err(TreeError::TooManyNodes { limit: 3 })
        );
    }

    #[test]
    fn insert_checks_names_and_floats() {
        let mut interior = InteriorNode::new();
        assert_eq!(interior.insert_child("ok", Node::Leaf(LeafValue::Int(1))), Ok(None));
        assert_eq!(interior.insert_child("ok", Node::Leaf(LeafValue::Int(2))), Ok(Some(Node::Leaf(LeafValue::Int(1)))));
        assert_eq!(
            interior.insert_child("", Node::Leaf(LeafValue::Null)),
            Err(TreeError::InvalidNodeName(String::new()))
        );
        assert_eq!(
            interior.insert_child("a/b", Node::Leaf(LeafValue::Null)),
            Err(TreeError::InvalidNodeName("a/b".into()))
        );
        assert_eq!(
            interior.insert_child("f", Node::Leaf(LeafValue::Float(f64::INFINITY))),
            Err(TreeError::InvalidLeaf { path: "f".into(), source: LeafValueError::NonFiniteFloat })
        );
        assert_eq!(interior.len(), 1);
        assert_eq!(interior.remove_child("ok"), Some(Node::Leaf(LeafValue::Int(2))));
        assert!(interior.is_empty());
    }
}
