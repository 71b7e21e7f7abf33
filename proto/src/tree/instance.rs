//! One MO instance: its identity (MOID, MIID), optional DDF link, root node and cache validator.
//!
//! Every change goes through this type so that the cache validator (spec 12.1)
//! can never describe stale content: each mutation drops the cached digest.

use std::sync::OnceLock;

use super::TreeError;
use super::format::{Format, LeafValue};
use super::node::{InteriorNode, Node, TreeLimits, check_node_name, is_real_name};
use super::validator::CacheValidator;
use crate::uri::{ClientUri, InstanceSelector};

/// An MO instance, e.g. MOID `urn:oma:mo:moid:1.0`, MIID `left`, with its nodes.
///
/// The MIID is a real-name (unreserved characters) so that it can appear in a
/// ClientURI, or "" for an instance that is the only one of its MOID (the 7.5
/// example sends `"MIID": ""`); [`ManagementTree`](super::ManagementTree) enforces the latter.
#[derive(Debug, Clone)]
pub struct MoInstance {
    moid: String,
    miid: String,
    ddf: Option<String>,
    root: Node,
    node_count: usize,
    limits: TreeLimits,
    validator: OnceLock<CacheValidator>,
}

impl PartialEq for MoInstance {
    /// Identity and content; limits and the cached validator do not count.
    fn eq(&self, other: &Self) -> bool {
        self.moid == other.moid && self.miid == other.miid && self.ddf == other.ddf && self.root == other.root
    }
}

impl MoInstance {
    /// An empty instance (its root has no children), with default limits.
    pub fn new(moid: impl Into<String>, miid: impl Into<String>) -> Result<Self, TreeError> {
        MoInstance::with_root(moid, miid, InteriorNode::new(), TreeLimits::default())
    }

    /// An instance with the given root, checked against `limits`.
    pub fn with_root(
        moid: impl Into<String>,
        miid: impl Into<String>,
        root: InteriorNode,
        limits: TreeLimits,
    ) -> Result<Self, TreeError> {
        let moid = moid.into();
        let miid = miid.into();
        check_moid(&moid)?;
        check_miid(&miid)?;
        let node_count = root.descendant_count();
        check_size(node_count, root.height(), &limits)?;
        Ok(MoInstance {
            moid,
            miid,
            ddf: None,
            root: Node::Interior(root),
            node_count,
            limits,
            validator: OnceLock::new(),
        })
    }

    /// The MOID, e.g. `urn:oma:mo:oma-dm-devinfo:1.2`.
    pub fn moid(&self) -> &str {
        &self.moid
    }

    /// The MIID; "" for the sole instance of an MOID that has no MIID.
    pub fn miid(&self) -> &str {
        &self.miid
    }

    /// The HTTP link to the DDF, if known.
    pub fn ddf(&self) -> Option<&str> {
        self.ddf.as_deref()
    }

    /// The root node (always interior).
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// The root's children.
    pub fn root_interior(&self) -> &InteriorNode {
        match &self.root {
            Node::Interior(interior) => interior,
            // The root is interior by construction; an empty view is the safe answer regardless.
            Node::Leaf(_) => &EMPTY_INTERIOR,
        }
    }

    /// Nodes in the instance, its root not counted.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// The limits this instance is held to.
    pub fn limits(&self) -> TreeLimits {
        self.limits
    }

    /// The node at `path` below the root (an empty path is the root).
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&Node> {
        self.root.descendant(path)
    }

    /// The ClientURI addressing this instance's root: `MOID/MIID/`, or `MOID//` when the MIID is "".
    pub fn client_uri(&self) -> ClientUri {
        let selector =
            if self.miid.is_empty() { InstanceSelector::Sole } else { InstanceSelector::Miid(self.miid.clone()) };
        ClientUri::instance_root(self.moid.clone(), selector)
    }

    /// The cache validator (spec 12.1): computed on first use, kept until the next change.
    pub fn cache_validator(&self) -> &CacheValidator {
        self.validator
            .get_or_init(|| CacheValidator::compute(&self.moid, &self.miid, self.ddf.as_deref(), self.root_interior()))
    }

    /// Cache validation (spec 12.2): true when `cv` is this instance's current
    /// validator, so a read answers 304 Not Modified.
    pub fn is_unmodified_since(&self, cv: &str) -> bool {
        self.cache_validator().matches(cv)
    }

    /// Sets or clears the DDF link.
    pub fn set_ddf(&mut self, ddf: Option<String>) {
        self.ddf = ddf;
        self.changed();
    }

    /// Adds or replaces the node at `path` with `node` and everything below it,
    /// returning the node replaced. The parent must exist and be interior. An
    /// empty path replaces the root, which must then be interior.
    pub fn set_node<S: AsRef<str>>(&mut self, path: &[S], node: Node) -> Result<Option<Node>, TreeError> {
        let Some((name, parent_path)) = path.split_last() else {
            return match node {
                Node::Interior(root) => self.replace_root(root).map(|old| Some(Node::Interior(old))),
                Node::Leaf(_) => Err(TreeError::RootMustBeInterior),
            };
        };
        let name = name.as_ref();
        check_node_name(name)?;
        if let Node::Leaf(value) = &node {
            value.check().map_err(|source| TreeError::InvalidLeaf { path: join(path), source })?;
        }
        if path.len() + node.height() > self.limits.max_depth {
            return Err(TreeError::TooDeep { limit: self.limits.max_depth });
        }
        let added = node.count();
        let limits = self.limits;
        let current_count = self.node_count;
        let parent = self.interior_mut(parent_path)?;
        let removed = parent.child(name).map_or(0, Node::count);
        let new_count = current_count.saturating_sub(removed).saturating_add(added);
        if new_count > limits.max_nodes_per_instance {
            return Err(TreeError::TooManyNodes { limit: limits.max_nodes_per_instance });
        }
        let old = parent.insert_child(name, node)?;
        self.node_count = new_count;
        self.changed();
        Ok(old)
    }

    /// Sets the leaf at `path` to `value` (creating or replacing it).
    pub fn set_leaf<S: AsRef<str>>(&mut self, path: &[S], value: LeafValue) -> Result<Option<Node>, TreeError> {
        self.set_node(path, Node::Leaf(value))
    }

    /// Replaces every node of the instance, returning the old root.
    pub fn replace_root(&mut self, root: InteriorNode) -> Result<InteriorNode, TreeError> {
        let count = root.descendant_count();
        check_size(count, root.height(), &self.limits)?;
        let old = std::mem::replace(&mut self.root, Node::Interior(root));
        self.node_count = count;
        self.changed();
        Ok(match old {
            Node::Interior(interior) => interior,
            Node::Leaf(_) => InteriorNode::new(),
        })
    }

    /// Deletes the node at `path` and all its children (the DELETE command,
    /// spec 5.4.4), returning it. The root cannot be deleted this way; remove
    /// the instance from the tree instead.
    pub fn delete_node<S: AsRef<str>>(&mut self, path: &[S]) -> Result<Node, TreeError> {
        let Some((name, parent_path)) = path.split_last() else {
            return Err(TreeError::CannotDeleteRoot);
        };
        let parent = self.interior_mut(parent_path).map_err(|_| TreeError::NodeNotFound { path: join(path) })?;
        let removed = parent.remove_child(name.as_ref()).ok_or_else(|| TreeError::NodeNotFound { path: join(path) })?;
        self.node_count = self.node_count.saturating_sub(removed.count());
        self.changed();
        Ok(removed)
    }

    /// Gives the leaf at `path` the format a DDF says it has, converting its
    /// value (a chr `"oKE="` read without a DDF becomes b64 bytes A0 A1).
    pub fn retype_leaf<S: AsRef<str>>(&mut self, path: &[S], format: Format) -> Result<(), TreeError> {
        let node = self.node_mut(path)?;
        let Node::Leaf(value) = node else {
            return Err(TreeError::NotALeaf { path: join(path) });
        };
        let converted =
            value.convert_to(format).map_err(|source| TreeError::InvalidLeaf { path: join(path), source })?;
        if converted != *value {
            *value = converted;
            self.changed();
        }
        Ok(())
    }

    /// Drops the cached validator; called by every mutation.
    fn changed(&mut self) {
        self.validator = OnceLock::new();
    }

    fn node_mut<S: AsRef<str>>(&mut self, path: &[S]) -> Result<&mut Node, TreeError> {
        let mut node = &mut self.root;
        for (index, name) in path.iter().enumerate() {
            let not_found = || TreeError::NodeNotFound { path: join(path.get(..=index).unwrap_or(path)) };
            node = match node {
                Node::Interior(interior) => interior.child_mut(name.as_ref()).ok_or_else(not_found)?,
                Node::Leaf(_) => return Err(not_found()),
            };
        }
        Ok(node)
    }

    /// The interior node at `path`, for adding a child to it.
    fn interior_mut<S: AsRef<str>>(&mut self, path: &[S]) -> Result<&mut InteriorNode, TreeError> {
        let node = self.node_mut(path).map_err(|error| match error {
            TreeError::NodeNotFound { path } => TreeError::ParentNotFound { path },
            other => other,
        })?;
        match node {
            Node::Interior(interior) => Ok(interior),
            Node::Leaf(_) => Err(TreeError::ParentIsLeaf { path: join(path) }),
        }
    }

    pub(crate) fn set_limits(&mut self, limits: TreeLimits) -> Result<(), TreeError> {
        check_size(self.node_count, self.root.height(), &limits)?;
        self.limits = limits;
        Ok(())
    }
}

static EMPTY_INTERIOR: InteriorNode = InteriorNode::new();

fn check_size(node_count: usize, height: usize, limits: &TreeLimits) -> Result<(), TreeError> {
    if height > limits.max_depth {
        return Err(TreeError::TooDeep { limit: limits.max_depth });
    }
    if node_count > limits.max_nodes_per_instance {
        return Err(TreeError::TooManyNodes { limit: limits.max_nodes_per_instance });
    }
    Ok(())
}

/// A MOID must be what a ClientURI accepts before its first "/" (spec 6.1.1, docs/protocol-decisions.md).
pub(crate) fn check_moid(moid: &str) -> Result<(), TreeError> {
    let valid = !moid.contains(['/', '?']) && ClientUri::parse(&format!("{moid}//")).is_ok_and(|uri| uri.moid == moid);
    if valid { Ok(()) } else { Err(TreeError::InvalidMoid(moid.to_owned())) }
}

/// A MIID is "" or a real-name, so that `MOID/MIID/` is a valid ClientURI.
pub(crate) fn check_miid(miid: &str) -> Result<(), TreeError> {
    if miid.is_empty() || is_real_name(miid) { Ok(()) } else { Err(TreeError::InvalidMiid(miid.to_owned())) }
}

fn join<S: AsRef<str>>(path: &[S]) -> String {
    let mut joined = String::new();
    for (index, name) in path.iter().enumerate() {
        if index > 0 {
            joined.push('/');
        }
        joined.push_str(name.as_ref());
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MoInstance {
        let mut instance = MoInstance::new("urn:oma:mo:moid:1.0", "left").unwrap();
        instance.set_leaf(&["ID"], LeafValue::Chr("GPS".into())).unwrap();
        instance.set_node(&["Data"], Node::Interior(InteriorNode::new())).unwrap();
        instance.set_node(&["Data", "1"], Node::Interior(InteriorNode::new())).unwrap();
        instance.set_leaf(&["Data", "1", "Value"], LeafValue::Int(11)).unwrap();
        instance
    }

    #[test]
    fn mutations_keep_count_and_refresh_the_validator() {
        let mut instance = sample();
        assert_eq!(instance.node_count(), 4);
        let before = instance.cache_validator().clone();
        assert!(instance.is_unmodified_since(before.as_str()));

        instance.set_leaf(&["Data", "1", "Value"], LeafValue::Int(12)).unwrap();
        let after_set = instance.cache_validator().clone();
        assert_ne!(before, after_set);
        assert!(!instance.is_unmodified_since(before.as_str()));

        let removed = instance.delete_node(&["Data"]).unwrap();
        assert_eq!(removed.count(), 3);
        assert_eq!(instance.node_count(), 1);
        assert_ne!(instance.cache_validator(), &after_set);

        // Same content again, same validator: the digest depends on content only.
        let mut again = sample();
        again.set_leaf(&["Data", "1", "Value"], LeafValue::Int(12)).unwrap();
        assert_eq!(again.cache_validator(), &after_set);
    }

    #[test]
    fn set_node_errors() {
        let mut instance = sample();
        assert_eq!(
            instance.set_leaf(&["Nope", "X"], LeafValue::Null),
            Err(TreeError::ParentNotFound { path: "Nope".into() })
        );
        assert_eq!(
            instance.set_leaf(&["ID", "X"], LeafValue::Null),
            Err(TreeError::ParentIsLeaf { path: "ID".into() })
        );
        assert_eq!(
            instance.set_leaf(&["bad name"], LeafValue::Null),
            Err(TreeError::InvalidNodeName("bad name".into()))
        );
        assert_eq!(instance.set_leaf::<&str>(&[], LeafValue::Null), Err(TreeError::RootMustBeInterior));
        assert_eq!(instance.delete_node::<&str>(&[]), Err(TreeError::CannotDeleteRoot));
        assert_eq!(instance.delete_node(&["Data", "9"]), Err(TreeError::NodeNotFound { path: "Data/9".into() }));
        assert_eq!(instance.delete_node(&["ID", "x"]), Err(TreeError::NodeNotFound { path: "ID/x".into() }));
        assert_eq!(instance.node_count(), 4);
    }

    #[test]
    fn limits_apply_to_mutations() {
        let limits = TreeLimits { max_depth: 2, max_nodes_per_instance: 3, max_instances: 1 };
        let mut instance = MoInstance::with_root("urn:a:1", "m", InteriorNode::new(), limits).unwrap();
        instance.set_node(&["A"], Node::Interior(InteriorNode::new())).unwrap();
        instance.set_leaf(&["A", "B"], LeafValue::Int(1)).unwrap();
        assert_eq!(
            instance
                .set_node(&["A", "C"], Node::Interior(InteriorNode::new().with_child("D", LeafValue::Null).unwrap())),
            Err(TreeError::TooDeep { limit: 2 })
        );
        instance.set_leaf(&["A", "C"], LeafValue::Int(2)).unwrap();
        assert_eq!(instance.set_leaf(&["E"], LeafValue::Int(3)), Err(TreeError::TooManyNodes { limit: 3 }));
        // Replacing a node frees its count first.
        instance.set_leaf(&["A", "C"], LeafValue::Int(4)).unwrap();
        assert_eq!(instance.node_count(), 3);
    }

    #[test]
    fn identity_is_checked() {
        assert_eq!(MoInstance::new("nocolon", "m"), Err(TreeError::InvalidMoid("nocolon".into())));
        assert_eq!(MoInstance::new("urn:a/b:1", "m"), Err(TreeError::InvalidMoid("urn:a/b:1".into())));
        assert_eq!(MoInstance::new("urn:a:1", "a b"), Err(TreeError::InvalidMiid("a b".into())));
        assert_eq!(MoInstance::new("urn:a:1", "*"), Err(TreeError::InvalidMiid("*".into())));
        assert!(MoInstance::new("oma:mo:x-customapp:1.0", "").is_ok());
        assert_eq!(MoInstance::new("urn:a:1", "").unwrap().client_uri().to_string(), "urn:a:1//");
        assert_eq!(MoInstance::new("urn:a:1", "m").unwrap().client_uri().to_string(), "urn:a:1/m/");
    }

    #[test]
    fn retype_converts_and_refreshes() {
        let mut instance = MoInstance::new("urn:a:1", "m").unwrap();
        instance.set_leaf(&["Key"], LeafValue::Chr("oKE=".into())).unwrap();
        let before = instance.cache_validator().clone();
        instance.retype_leaf(&["Key"], Format::B64).unwrap();
        assert_eq!(instance.get(&["Key"]).and_then(Node::as_leaf), Some(&LeafValue::B64(vec![0xA0, 0xA1])));
        assert_ne!(instance.cache_validator(), &before);
        assert!(matches!(instance.retype_leaf(&["Key"], Format::Int), Err(TreeError::InvalidLeaf { .. })));
        assert_eq!(instance.retype_leaf::<&str>(&[], Format::Int), Err(TreeError::NotALeaf { path: String::new() }));
    }
}
