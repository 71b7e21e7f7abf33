//! The management tree: MO instances and their nodes (spec 14), ClientURI resolution (6.1.2),
//! MO serialization as `application/dmmo+json` (6.3.3, 7.5) and cache validators (12).
//!
//! A tree holds MO instances keyed by (MOID, MIID). Each instance has an
//! interior root whose children are named nodes; leaves carry typed values
//! ([`LeafValue`], formats of 6.3.1). The same tree serves a DM client (the
//! device's own data) and a server (its mirror of a device).
//!
//! ```text
//! urn:oma:mo:moid:1.0 / left  ── ID = "GPS", Setting = "0xA1", Data/1/{Date, Value}, Data/2/{...}
//!                     / right ── ID = "Temperature", ...
//! ```
//!
//! - [`ManagementTree::resolve`] turns a [`ClientUri`] into the node(s) it names;
//!   [`ManagementTree::read`] adds cache validation (304 Not Modified).
//! - [`DmmoDocument`] reads and writes dmmo+json; [`ManagementTree::from_dmmo_slice`] loads a
//!   whole tree from a JSON list of documents.
//! - Every change goes through [`MoInstance`], which keeps its [`CacheValidator`] current.

mod dmmo;
mod format;
mod instance;
mod node;
mod resolve;
mod validator;

use crate::status::StatusCode;
use std::collections::BTreeMap;

pub use dmmo::{DmmoDocument, DmmoError};
pub use format::{ALL_FORMATS, Format, LeafValue, LeafValueError, UnknownFormat};
pub use instance::MoInstance;
pub use node::{InteriorNode, Node, TreeLimits, check_node_name};
pub use resolve::{ReadOutcome, ResolveError, ResolvedNode};
pub use validator::CacheValidator;

use crate::uri::ClientUri;

/// Why a tree could not be built or changed. `status_code()` gives the status
/// a DM client answers with when a server's command causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("invalid MOID {0:?}: expected a URN such as urn:oma:mo:oma-dm-devinfo:1.2")]
    InvalidMoid(String),
    #[error("invalid MIID {0:?}: expected unreserved characters (letters, digits, - . _ ~) or \"\"")]
    InvalidMiid(String),
    #[error("invalid node name {0:?}: expected unreserved characters (letters, digits, - . _ ~)")]
    InvalidNodeName(String),
    #[error("invalid leaf at {path:?}: {source}")]
    InvalidLeaf {
        path: String,
        #[source]
        source: LeafValueError,
    },
    #[error("MO instance {miid:?} of {moid} already exists")]
    DuplicateInstance { moid: String, miid: String },
    #[error("MIID \"\" is only allowed for the sole instance of {moid}, which has another instance")]
    EmptyMiidNotSole { moid: String },
    #[error("no MO instance {miid:?} of {moid}")]
    InstanceNotFound { moid: String, miid: String },
    #[error("node {path:?} not found")]
    NodeNotFound { path: String },
    #[error("parent node {path:?} not found")]
    ParentNotFound { path: String },
    #[error("node {path:?} is a leaf and cannot have children")]
    ParentIsLeaf { path: String },
    #[error("node {path:?} is interior, not a leaf")]
    NotALeaf { path: String },
    #[error("the root of an MO instance must be an interior node")]
    RootMustBeInterior,
    #[error("the root of an MO instance cannot be deleted as a node; remove the instance")]
    CannotDeleteRoot,
    #[error("tree deeper than {limit} levels below the instance root")]
    TooDeep { limit: usize },
    #[error("MO instance with more than {limit} nodes")]
    TooManyNodes { limit: usize },
    #[error("tree with more than {limit} MO instances")]
    TooManyInstances { limit: usize },
}

impl TreeError {
    /// 404 for what does not exist, 405 for changes the node does not allow,
    /// 506 Device Full for exceeded limits, 400 for malformed input.
    pub fn status_code(&self) -> StatusCode {
        match self {
            TreeError::InstanceNotFound { .. } | TreeError::NodeNotFound { .. } | TreeError::ParentNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            TreeError::ParentIsLeaf { .. } | TreeError::CannotDeleteRoot => StatusCode::COMMAND_NOT_ALLOWED,
            TreeError::TooDeep { .. } | TreeError::TooManyNodes { .. } | TreeError::TooManyInstances { .. } => {
                StatusCode::DEVICE_FULL
            }
            TreeError::InvalidMoid(_)
            | TreeError::InvalidMiid(_)
            | TreeError::InvalidNodeName(_)
            | TreeError::InvalidLeaf { .. }
            | TreeError::DuplicateInstance { .. }
            | TreeError::EmptyMiidNotSole { .. }
            | TreeError::NotALeaf { .. }
            | TreeError::RootMustBeInterior => StatusCode::BAD_REQUEST,
        }
    }
}

/// All MO instances of a device, by MOID then MIID (both in byte order, so
/// wildcard results and serialized output are deterministic).
#[derive(Debug, Clone, Default)]
pub struct ManagementTree {
    /// Never holds an empty inner map: an MOID is known through its instances.
    instances: BTreeMap<String, BTreeMap<String, MoInstance>>,
    limits: TreeLimits,
}

impl PartialEq for ManagementTree {
    /// Same instances with the same content; limits do not count.
    fn eq(&self, other: &Self) -> bool {
        self.instances == other.instances
    }
}

impl ManagementTree {
    /// An empty tree with default limits.
    pub fn new() -> Self {
        ManagementTree::default()
    }

    /// An empty tree held to `limits`.
    pub fn with_limits(limits: TreeLimits) -> Self {
        ManagementTree { instances: BTreeMap::new(), limits }
    }

    /// The limits of this tree and its instances.
    pub fn limits(&self) -> TreeLimits {
        self.limits
    }

    /// Adds an instance. Its MIID must be new for its MOID, and "" only if it
    /// is and stays the only instance of the MOID (spec 6.1.1.1 makes the MIID
    /// unique; "" is how the 7.5 example names a sole instance).
    pub fn insert_instance(&mut self, mut instance: MoInstance) -> Result<(), TreeError> {
        if self.instance_count() >= self.limits.max_instances {
            return Err(TreeError::TooManyInstances { limit: self.limits.max_instances });
        }
        instance.set_limits(self.limits)?;
        let moid = instance.moid().to_owned();
        let miid = instance.miid().to_owned();
        if let Some(siblings) = self.instances.get(&moid) {
            if siblings.contains_key(&miid) {
                return Err(TreeError::DuplicateInstance { moid, miid });
            }
            if !siblings.is_empty() && (miid.is_empty() || siblings.contains_key("")) {
                return Err(TreeError::EmptyMiidNotSole { moid });
            }
        }
        self.instances.entry(moid).or_default().insert(miid, instance);
        Ok(())
    }

    /// Creates an empty instance and returns it for filling in.
    pub fn create_instance(&mut self, moid: &str, miid: &str) -> Result<&mut MoInstance, TreeError> {
        let instance = MoInstance::with_root(moid, miid, InteriorNode::new(), self.limits)?;
        self.insert_instance(instance)?;
        self.instance_mut(moid, miid)
            .ok_or_else(|| TreeError::InstanceNotFound { moid: moid.to_owned(), miid: miid.to_owned() })
    }

    /// Removes an instance with all its nodes.
    pub fn remove_instance(&mut self, moid: &str, miid: &str) -> Option<MoInstance> {
        let siblings = self.instances.get_mut(moid)?;
        let removed = siblings.remove(miid);
        if siblings.is_empty() {
            self.instances.remove(moid);
        }
        removed
    }

    /// The instance (MOID, MIID).
    pub fn instance(&self, moid: &str, miid: &str) -> Option<&MoInstance> {
        self.instances.get(moid)?.get(miid)
    }

    /// The instance (MOID, MIID), for changing it.
    pub fn instance_mut(&mut self, moid: &str, miid: &str) -> Option<&mut MoInstance> {
        self.instances.get_mut(moid)?.get_mut(miid)
    }

    /// Every instance, by MOID then MIID.
    pub fn instances(&self) -> impl Iterator<Item = &MoInstance> + '_ {
        self.instances.values().flat_map(BTreeMap::values)
    }

    /// The instances of one MOID, by MIID.
    pub fn instances_of<'t>(&'t self, moid: &str) -> impl Iterator<Item = &'t MoInstance> + 't {
        self.instances.get(moid).into_iter().flat_map(BTreeMap::values)
    }

    /// Number of instances in the tree.
    pub fn instance_count(&self) -> usize {
        self.instances.values().map(BTreeMap::len).sum()
    }

    /// The node(s) `uri` names, following spec 6.1.2.
    ///
    /// Step 1 picks instances: a MIID names exactly one; `(x)` needs exactly
    /// one instance satisfying every `nv=(x)/...`; "" needs the MOID to have
    /// exactly one instance; `*` takes them all. Step 2 walks the path: a
    /// real-name must match a child, `(x)` needs exactly one child satisfying
    /// every `nv=(x)/...` (paths relative to that child; a leaf satisfies
    /// `:v` when [`LeafValue::matches_text`] says so), `*` takes every child.
    /// Under a wildcard, branches that find nothing are dropped and the URI
    /// fails only if no branch matches (with the first miss); an ambiguous
    /// x-name or "" always fails ([`ResolveError::is_ambiguity`], status 400).
    pub fn resolve<'t>(&'t self, uri: &ClientUri) -> Result<Vec<ResolvedNode<'t>>, ResolveError> {
        resolve::resolve(self, uri)
    }

    /// Resolves `uri` for a read (GET, HPUT, HPOST) with cache validation
    /// (spec 12.2): when it carries `cv=` and every matched node's instance
    /// still has that validator, the answer is [`ReadOutcome::NotModified`].
    pub fn read<'t>(&'t self, uri: &ClientUri) -> Result<ReadOutcome<'t>, ResolveError> {
        let nodes = self.resolve(uri)?;
        let unmodified = uri
            .query
            .cache_validator
            .as_deref()
            .is_some_and(|cv| nodes.iter().all(|node| node.instance().is_unmodified_since(cv)));
        if unmodified {
            return Ok(ReadOutcome::NotModified);
        }
        Ok(ReadOutcome::Nodes(nodes))
    }

    pub(crate) fn instances_by_miid(&self, moid: &str) -> Option<&BTreeMap<String, MoInstance>> {
        self.instances.get(moid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_identity_rules() {
        let mut tree = ManagementTree::new();
        tree.create_instance("urn:a:1", "left").unwrap();
        assert_eq!(
            tree.create_instance("urn:a:1", "left").err(),
            Some(TreeError::DuplicateInstance { moid: "urn:a:1".into(), miid: "left".into() })
        );
        assert_eq!(
            tree.create_instance("urn:a:1", "").err(),
            Some(TreeError::EmptyMiidNotSole { moid: "urn:a:1".into() })
        );
        tree.create_instance("urn:b:1", "").unwrap();
        assert_eq!(
            tree.create_instance("urn:b:1", "other").err(),
            Some(TreeError::EmptyMiidNotSole { moid: "urn:b:1".into() })
        );
        tree.create_instance("urn:a:1", "right").unwrap();
        assert_eq!(tree.instance_count(), 3);
        let order: Vec<_> = tree.instances().map(|i| (i.moid(), i.miid())).collect();
        assert_eq!(order, [("urn:a:1", "left"), ("urn:a:1", "right"), ("urn:b:1", "")]);
        assert_eq!(tree.instances_of("urn:a:1").count(), 2);
        assert!(tree.remove_instance("urn:b:1", "").is_some());
        assert!(tree.instances_by_miid("urn:b:1").is_none());
        assert!(tree.remove_instance("urn:b:1", "").is_none());
    }

    #[test]
    fn instance_limit() {
        let limits = TreeLimits { max_instances: 1, ..TreeLimits::default() };
        let mut tree = ManagementTree::with_limits(limits);
        tree.create_instance("urn:a:1", "one").unwrap();
        assert_eq!(tree.create_instance("urn:a:1", "two").err(), Some(TreeError::TooManyInstances { limit: 1 }));
        assert_eq!(tree.instance("urn:a:1", "one").map(MoInstance::limits), Some(limits));
    }

    #[test]
    fn status_codes() {
        assert_eq!(TreeError::NodeNotFound { path: "a".into() }.status_code(), 404);
        assert_eq!(TreeError::ParentIsLeaf { path: "a".into() }.status_code(), 405);
        assert_eq!(TreeError::TooManyNodes { limit: 1 }.status_code(), 506);
        assert_eq!(TreeError::InvalidNodeName("a b".into()).status_code(), 400);
    }
}
