//! MO serialization, `application/dmmo+json` (spec 6.3.3, 7.5, Appendix E).
//!
//! A document carries one MO instance, or one node of it:
//!
//! ```text
//! {"DDF": "http://www.vendor.com/DDF/devdetail10.ddf",     optional link to the DDF
//!  "MOID": "urn:oma:mo:moid:1.0",
//!  "MIID": "left",                                           "MIIDS" accepted too, string or array
//!  "ClientURI": "urn:oma:mo:moid:1.0/left/Data/1",           optional (Appendix E): what was read
//!  "MOData": {"1": {"Date": "12.1", "Value": 11}}}
//! ```
//!
//! What MOData holds depends on the node addressed:
//! - the instance root (no ClientURI, or one ending in the root "/"): the
//!   root's children, as in the 7.5 example;
//! - any other node: one member, named after the node, holding its value
//!   (Appendix E: `"MOData": {"DevID": "IMEI:493005100592800"}`).
//!
//! Appendix E's SessionInfo example wraps a root's children in one more object,
//! `{"SessionInfoMO": {"CBT": 1, "ROAMING": 0}}`, the root's DM 1.x name. We read
//! such a wrapper when MOData has exactly one member, its value is an object,
//! and its name matches the MOID's object name, comparing letters and digits
//! without case against a "-"-separated suffix of it (`SessionInfoMO` and
//! `urn:oma:mo:oma-sessioninfomo:1.0`, `DevInfo` and `oma-dm-devinfo`). We
//! always write the 7.5 form; if a root's only child happens to match that
//! rule, we wrap it once more so the document still reads back the same.

use crate::status::StatusCode;
use serde_json::{Map, Value};

use super::format::json_type_name;
use super::instance::MoInstance;
use super::node::{InteriorNode, Node, TreeLimits};
use super::resolve::ResolvedNode;
use super::{ManagementTree, TreeError};
use crate::uri::{ClientUri, InstanceSelector, NodeSelector, UriError};

/// Why a dmmo+json document (or a list of them) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmmoError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("a dmmo+json document must be a JSON object, found a {found}")]
    NotAnObject { found: &'static str },
    #[error("a tree must be a JSON array of dmmo+json documents, found a {found}")]
    NotAList { found: &'static str },
    #[error("field {field} must be {expected}, found a {found}")]
    FieldType { field: &'static str, expected: &'static str, found: &'static str },
    #[error("document has neither MOID nor ClientURI, so its MO is unknown")]
    MissingMoid,
    #[error("document has no MOData")]
    MissingMoData,
    #[error("invalid ClientURI: {0}")]
    InvalidClientUri(#[source] UriError),
    #[error("MOID {moid} differs from the MOID of the ClientURI {client_uri}")]
    MoidMismatch { moid: String, client_uri: String },
    #[error("MIID {miid:?} differs from the instance of the ClientURI {client_uri}")]
    MiidMismatch { miid: String, client_uri: String },
    #[error("{count} MIIDs given; a document carries one MO instance")]
    SeveralMiids { count: usize },
    #[error("document for {client_uri} holds one node, not an MO instance")]
    NotAnInstance { client_uri: String },
    #[error("document for {client_uri} holds a whole MO instance, not one node")]
    IsInstanceRoot { client_uri: String },
    #[error("ClientURI {client_uri} does not name one node (it has an x-name or wildcard), so the data has no place")]
    NotConcrete { client_uri: String },
    #[error("MOData for {client_uri} must hold exactly one member, {name:?}")]
    NodeDataShape { client_uri: String, name: String },
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("document {index}: {source}")]
    InDocument {
        index: usize,
        #[source]
        source: Box<DmmoError>,
    },
}

impl DmmoError {
    /// 400 Bad Request for malformed documents; a tree error keeps its own code (e.g. 506 Device Full).
    pub fn status_code(&self) -> StatusCode {
        match self {
            DmmoError::Tree(error) => error.status_code(),
            DmmoError::InDocument { source, .. } => source.status_code(),
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// One dmmo+json document; see the module documentation for the wire form.
#[derive(Debug, Clone, PartialEq)]
pub struct DmmoDocument {
    /// `DDF`: HTTP link to the DDF file.
    pub ddf: Option<String>,
    /// `MOID`, or the MOID of `ClientURI` when the document only has that.
    pub moid: String,
    /// `MIID` (or the single entry of `MIIDS`); `None` when the document gives none.
    pub miid: Option<String>,
    /// `ClientURI`: the address that was read (Appendix E).
    pub client_uri: Option<ClientUri>,
    /// `MOData`, as received.
    pub mo_data: Map<String, Value>,
}

impl DmmoDocument {
    /// Parses a document from JSON text.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DmmoError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|error| DmmoError::Json(error.to_string()))?;
        DmmoDocument::from_json(&value)
    }

    /// Reads a document from a JSON value. Lenient: `MIIDS` for `MIID`, either
    /// as a string or an array of one string; `"DDF": null`; unknown fields ignored.
    pub fn from_json(value: &Value) -> Result<Self, DmmoError> {
        let object = value.as_object().ok_or(DmmoError::NotAnObject { found: json_type_name(value) })?;
        let ddf = optional_string(object, "DDF")?;
        let client_uri = optional_string(object, "ClientURI")?
            .map(|text| ClientUri::parse(&text).map_err(DmmoError::InvalidClientUri))
            .transpose()?;
        let moid = match (optional_string(object, "MOID")?, &client_uri) {
            (Some(moid), Some(uri)) if moid != uri.moid => {
                return Err(DmmoError::MoidMismatch { moid, client_uri: uri.to_string() });
            }
            (Some(moid), _) => moid,
            (None, Some(uri)) => uri.moid.clone(),
            (None, None) => return Err(DmmoError::MissingMoid),
        };
        let miid = read_miid(object)?;
        if let (Some(miid), Some(uri)) = (&miid, &client_uri) {
            if matches!(&uri.instance, InstanceSelector::Miid(named) if named != miid) {
                return Err(DmmoError::MiidMismatch { miid: miid.clone(), client_uri: uri.to_string() });
            }
        }
        let mo_data = match object.get("MOData") {
            Some(Value::Object(map)) => map.clone(),
            Some(other) => {
                return Err(DmmoError::FieldType {
                    field: "MOData",
                    expected: "an object",
                    found: json_type_name(other),
                });
            }
            None => return Err(DmmoError::MissingMoData),
        };
        Ok(DmmoDocument { ddf, moid, miid, client_uri, mo_data })
    }

    /// The JSON value of the document (object members come out in name order).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        if let Some(ddf) = &self.ddf {
            object.insert("DDF".into(), Value::String(ddf.clone()));
        }
        object.insert("MOID".into(), Value::String(self.moid.clone()));
        if let Some(miid) = &self.miid {
            object.insert("MIID".into(), Value::String(miid.clone()));
        }
        if let Some(uri) = &self.client_uri {
            object.insert("ClientURI".into(), Value::String(uri.to_string()));
        }
        object.insert("MOData".into(), Value::Object(self.mo_data.clone()));
        Value::Object(object)
    }

    /// The document for a whole instance, 7.5 form: DDF, MOID, MIID, MOData = the root's children.
    pub fn from_instance(instance: &MoInstance) -> Self {
        DmmoDocument {
            ddf: instance.ddf().map(str::to_owned),
            moid: instance.moid().to_owned(),
            miid: Some(instance.miid().to_owned()),
            client_uri: None,
            mo_data: root_mo_data(instance.moid(), instance.root_interior().to_json_map(None)),
        }
    }

    /// The document answering a read of `node` (Appendix E form) with at most
    /// `level` sublevels (`lv`). Its ClientURI names exactly that node, keeps
    /// `lv` so a reader knows `{}` means "not sent", and, for an instance root,
    /// carries `cv=` with the instance's validator (spec 12.2 says the client
    /// SHOULD return it there and does not say where; this is our place).
    pub fn from_resolved(node: &ResolvedNode<'_>, level: Option<u32>) -> Self {
        let instance = node.instance();
        let mut client_uri = node.client_uri();
        client_uri.query.level = level;
        let mo_data = match node.path().last() {
            None => {
                client_uri.query.cache_validator = Some(instance.cache_validator().as_str().to_owned());
                root_mo_data(instance.moid(), instance.root_interior().to_json_map(level))
            }
            Some(name) => {
                let mut map = Map::new();
                map.insert((*name).to_owned(), node.value_json(level));
                map
            }
        };
        DmmoDocument {
            ddf: instance.ddf().map(str::to_owned),
            moid: instance.moid().to_owned(),
            miid: Some(instance.miid().to_owned()),
            client_uri: Some(client_uri),
            mo_data,
        }
    }

    /// The cache validator the document carries in its ClientURI's `cv`, if any.
    pub fn cache_validator(&self) -> Option<&str> {
        self.client_uri.as_ref()?.query.cache_validator.as_deref()
    }

    /// The MIID the document is about: `MIID`, else the ClientURI's MIID, else "".
    pub fn effective_miid(&self) -> &str {
        match (&self.miid, self.client_uri.as_ref().map(|uri| &uri.instance)) {
            (Some(miid), _) => miid,
            (None, Some(InstanceSelector::Miid(miid))) => miid,
            _ => "",
        }
    }

    /// True when the document addresses an instance root: no ClientURI, or one with the root path.
    pub fn is_instance_root(&self) -> bool {
        self.client_uri.as_ref().is_none_or(|uri| uri.path.is_empty())
    }

    /// The MO instance a root document carries, nodes held to `limits`; leaf
    /// formats are inferred (see [`LeafValue::from_json_inferred`](super::LeafValue::from_json_inferred)).
    pub fn to_instance(&self, limits: &TreeLimits) -> Result<MoInstance, DmmoError> {
        if let Some(uri) = &self.client_uri {
            if !uri.path.is_empty() {
                return Err(DmmoError::NotAnInstance { client_uri: uri.to_string() });
            }
            if matches!(uri.instance, InstanceSelector::XName(_) | InstanceSelector::Wildcard) {
                return Err(DmmoError::NotConcrete { client_uri: uri.to_string() });
            }
        }
        let root = InteriorNode::from_json_map(root_children(&self.moid, &self.mo_data), limits)?;
        let mut instance = MoInstance::with_root(self.moid.clone(), self.effective_miid(), root, *limits)?;
        if self.ddf.is_some() {
            instance.set_ddf(self.ddf.clone());
        }
        Ok(instance)
    }

    /// The node a non-root document carries: its path below the instance
    /// root (from a ClientURI of real names only) and the node read from the
    /// single MOData member named after it.
    pub fn to_node(&self, limits: &TreeLimits) -> Result<(Vec<String>, Node), DmmoError> {
        let Some(uri) = &self.client_uri else {
            return Err(DmmoError::NotConcrete { client_uri: format!("{}/{}/", self.moid, self.effective_miid()) });
        };
        let not_concrete = || DmmoError::NotConcrete { client_uri: uri.to_string() };
        if matches!(uri.instance, InstanceSelector::XName(_) | InstanceSelector::Wildcard) {
            return Err(not_concrete());
        }
        let path = uri
            .path
            .iter()
            .map(|segment| match segment {
                NodeSelector::Name(name) => Ok(name.clone()),
                NodeSelector::XName(_) | NodeSelector::Wildcard => Err(not_concrete()),
            })
            .collect::<Result<Vec<String>, DmmoError>>()?;
        let Some(name) = path.last() else {
            return Err(DmmoError::IsInstanceRoot { client_uri: uri.to_string() });
        };
        let value = match (self.mo_data.len(), self.mo_data.get(name)) {
            (1, Some(value)) => value,
            _ => {
                return Err(DmmoError::NodeDataShape { client_uri: uri.to_string(), name: name.clone() });
            }
        };
        let node = Node::from_json(value, limits)?;
        Ok((path, node))
    }
}

impl serde::Serialize for DmmoDocument {
    /// Fields in the order of spec 6.3.3: DDF, MOID, MIID, then ClientURI and MOData.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(ddf) = &self.ddf {
            map.serialize_entry("DDF", ddf)?;
        }
        map.serialize_entry("MOID", &self.moid)?;
        if let Some(miid) = &self.miid {
            map.serialize_entry("MIID", miid)?;
        }
        if let Some(uri) = &self.client_uri {
            map.serialize_entry("ClientURI", uri)?;
        }
        map.serialize_entry("MOData", &self.mo_data)?;
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for DmmoDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        DmmoDocument::from_json(&value).map_err(serde::de::Error::custom)
    }
}

impl ManagementTree {
    /// Loads a tree from a JSON array of dmmo+json instance documents (the
    /// `--tree` file of `omadm uri resolve`), with default limits. A single
    /// document (not in an array) is accepted as a tree of one instance.
    pub fn from_dmmo_slice(bytes: &[u8]) -> Result<Self, DmmoError> {
        ManagementTree::from_dmmo_slice_with_limits(bytes, TreeLimits::default())
    }

    /// [`ManagementTree::from_dmmo_slice`] with explicit limits.
    pub fn from_dmmo_slice_with_limits(bytes: &[u8], limits: TreeLimits) -> Result<Self, DmmoError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|error| DmmoError::Json(error.to_string()))?;
        ManagementTree::from_dmmo_json(&value, limits)
    }

    /// Loads a tree from a JSON value; see [`ManagementTree::from_dmmo_slice`].
    pub fn from_dmmo_json(value: &Value, limits: TreeLimits) -> Result<Self, DmmoError> {
        let documents = match value {
            Value::Array(documents) => documents.as_slice(),
            Value::Object(_) => std::slice::from_ref(value),
            other => {
                return Err(DmmoError::NotAList { found: json_type_name(other) });
            }
        };
        if documents.len() > limits.max_instances {
            return Err(TreeError::TooManyInstances { limit: limits.max_instances }.into());
        }
        let mut tree = ManagementTree::with_limits(limits);
        for (index, document) in documents.iter().enumerate() {
            let in_document = |source: DmmoError| DmmoError::InDocument { index, source: Box::new(source) };
            let instance =
                DmmoDocument::from_json(document).and_then(|doc| doc.to_instance(&limits)).map_err(in_document)?;
            tree.insert_instance(instance).map_err(|error| in_document(error.into()))?;
        }
        Ok(tree)
    }

    /// Every instance as a 7.5 document, by MOID then MIID.
    pub fn to_dmmo_documents(&self) -> Vec<DmmoDocument> {
        self.instances().map(DmmoDocument::from_instance).collect()
    }

    /// The tree as a JSON array of documents, the form [`ManagementTree::from_dmmo_slice`] reads.
    pub fn to_dmmo_json(&self) -> Value {
        Value::Array(self.instances().map(|instance| DmmoDocument::from_instance(instance).to_json()).collect())
    }

    /// Stores what a document carries, as a server does with GET results: a
    /// root document replaces (or adds) its whole instance; a node document
    /// adds or replaces that node, creating the instance if needed. The
    /// document's MIID, else its ClientURI's, picks the instance; with
    /// neither, the MOID's sole instance. Data cut by `lv` (`{}`) replaces
    /// what was there: store only documents read without `lv`.
    pub fn store_document(&mut self, document: &DmmoDocument) -> Result<(), DmmoError> {
        let miid = self.target_miid(document);
        if document.is_instance_root() {
            let mut instance = document.to_instance(&self.limits)?;
            if instance.miid() != miid {
                instance = MoInstance::with_root(
                    document.moid.clone(),
                    miid.clone(),
                    instance.root_interior().clone(),
                    self.limits,
                )?;
                instance.set_ddf(document.ddf.clone());
            }
            let previous = self.remove_instance(&document.moid, &miid);
            if let Err(error) = self.insert_instance(instance) {
                if let Some(previous) = previous {
                    // Put the old instance back so a refused document changes nothing.
                    self.insert_instance(previous)?;
                }
                return Err(error.into());
            }
            return Ok(());
        }
        let (path, node) = document.to_node(&self.limits)?;
        let created = self.instance(&document.moid, &miid).is_none();
        if created {
            self.create_instance(&document.moid, &miid)?;
        }
        let instance = self
            .instance_mut(&document.moid, &miid)
            .ok_or_else(|| TreeError::InstanceNotFound { moid: document.moid.clone(), miid: miid.clone() })?;
        if document.ddf.is_some() && instance.ddf() != document.ddf.as_deref() {
            instance.set_ddf(document.ddf.clone());
        }
        if let Err(error) = instance.set_node(&path, node) {
            if created {
                self.remove_instance(&document.moid, &miid);
            }
            return Err(error.into());
        }
        Ok(())
    }

    fn target_miid(&self, document: &DmmoDocument) -> String {
        let named = document.miid.is_some()
            || matches!(document.client_uri.as_ref().map(|uri| &uri.instance), Some(InstanceSelector::Miid(_)));
        if named {
            return document.effective_miid().to_owned();
        }
        let mut existing = self.instances_of(&document.moid);
        match (existing.next(), existing.next()) {
            (Some(only), None) => only.miid().to_owned(),
            _ => String::new(),
        }
    }
}

impl ResolvedNode<'_> {
    /// The dmmo+json document for this node; see [`DmmoDocument::from_resolved`].
    pub fn to_dmmo(&self, level: Option<u32>) -> DmmoDocument {
        DmmoDocument::from_resolved(self, level)
    }
}

fn optional_string(object: &Map<String, Value>, field: &'static str) -> Result<Option<String>, DmmoError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(DmmoError::FieldType { field, expected: "a string", found: json_type_name(other) }),
    }
}

/// `MIID` or `MIIDS`, each a string or an array of at most one string (6.3.3 vs 7.5, docs/protocol-decisions.md).
fn read_miid(object: &Map<String, Value>) -> Result<Option<String>, DmmoError> {
    let mut found: Option<String> = None;
    for field in ["MIID", "MIIDS"] {
        let miid = match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Array(items)) => match items.as_slice() {
                [] => None,
                [Value::String(text)] => Some(text.clone()),
                [other] => {
                    return Err(DmmoError::FieldType {
                        field,
                        expected: "a string or an array of strings",
                        found: json_type_name(other),
                    });
                }
                several => {
                    return Err(DmmoError::SeveralMiids { count: several.len() });
                }
            },
            Some(other) => {
                return Err(DmmoError::FieldType {
                    field,
                    expected: "a string or an array of strings",
                    found: json_type_name(other),
                });
            }
        };
        match (&found, miid) {
            (Some(first), Some(second)) if *first != second => {
                return Err(DmmoError::MiidMismatch { miid: second, client_uri: format!("MIID {first:?}") });
            }
            (None, Some(miid)) => found = Some(miid),
            _ => {}
        }
    }
    Ok(found)
}

/// The root's children from a root document's MOData, unwrapping the Appendix E form.
fn root_children<'d>(moid: &str, mo_data: &'d Map<String, Value>) -> &'d Map<String, Value> {
    match single_member(mo_data) {
        Some((name, Value::Object(inner))) if is_root_wrapper_name(moid, name) => inner,
        _ => mo_data,
    }
}

/// MOData for a root: its children, wrapped once more if they would read as a wrapper.
fn root_mo_data(moid: &str, children: Map<String, Value>) -> Map<String, Value> {
    let wrapper_name = match single_member(&children) {
        Some((name, Value::Object(_))) if is_root_wrapper_name(moid, name) => Some(name.clone()),
        _ => None,
    };
    match wrapper_name {
        Some(name) => {
            let mut wrapped = Map::new();
            wrapped.insert(name, Value::Object(children));
            wrapped
        }
        None => children,
    }
}

fn single_member(map: &Map<String, Value>) -> Option<(&String, &Value)> {
    let mut members = map.iter();
    match (members.next(), members.next()) {
        (Some(member), None) => Some(member),
        _ => None,
    }
}

/// `SessionInfoMO` for `urn:oma:mo:oma-sessioninfomo:1.0`: see the module documentation.
fn is_root_wrapper_name(moid: &str, name: &str) -> bool {
    // urn:oma:mo:<object name>:<version>
    let mut parts = moid.rsplit(':');
    let (Some(_version), Some(object_name), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let wanted = letters_and_digits(name);
    if wanted.is_empty() {
        return false;
    }
    let tokens: Vec<&str> = object_name.split('-').collect();
    (0..tokens.len())
        .any(|start| tokens.get(start..).is_some_and(|suffix| letters_and_digits(&suffix.concat()) == wanted))
}

fn letters_and_digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tree::LeafValue;

    #[test]
    fn wrapper_names() {
        assert!(is_root_wrapper_name("urn:oma:mo:oma-sessioninfomo:1.0", "SessionInfoMO"));
        assert!(is_root_wrapper_name("urn:oma:mo:oma-dm-devinfo:1.2", "DevInfo"));
        assert!(is_root_wrapper_name("urn:oma:mo:oma-dm-dmacc:2.0", "DMAcc"));
        assert!(!is_root_wrapper_name("urn:oma:mo:oma-dm-devinfo:1.2", "Info"));
        assert!(!is_root_wrapper_name("oma:mo:x-customapp:1.0", "App1Config"));
        assert!(!is_root_wrapper_name("urn:oma:mo:moid:1.0", "ID"));
        assert!(!is_root_wrapper_name("urn:a", "a"));
        assert!(!is_root_wrapper_name("urn:oma:mo:oma-x:1.0", "--"));
    }

    #[test]
    fn a_root_child_that_looks_like_a_wrapper_survives_a_round_trip() {
        let moid = "urn:oma:mo:oma-sessioninfomo:1.0";
        let mut instance = MoInstance::new(moid, "s").unwrap();
        instance.set_node(&["SessionInfoMO"], Node::Interior(InteriorNode::new())).unwrap();
        instance.set_leaf(&["SessionInfoMO", "CBT"], LeafValue::Int(1)).unwrap();
        let document = DmmoDocument::from_instance(&instance);
        assert_eq!(document.mo_data, *json!({"SessionInfoMO": {"SessionInfoMO": {"CBT": 1}}}).as_object().unwrap());
        assert_eq!(document.to_instance(&TreeLimits::default()).unwrap(), instance);
    }

    #[test]
    fn field_errors() {
        let cases = [
            (json!([]), DmmoError::NotAnObject { found: "JSON array" }),
            (json!({"MOData": {}}), DmmoError::MissingMoid),
            (json!({"MOID": "urn:a:1"}), DmmoError::MissingMoData),
            (
                json!({"MOID": "urn:a:1", "MOData": []}),
                DmmoError::FieldType { field: "MOData", expected: "an object", found: "JSON array" },
            ),
            (
                json!({"MOID": 1, "MOData": {}}),
                DmmoError::FieldType { field: "MOID", expected: "a string", found: "JSON number" },
            ),
            (json!({"MOID": "urn:a:1", "MIIDS": ["a", "b"], "MOData": {}}), DmmoError::SeveralMiids { count: 2 }),
            (
                json!({"MOID": "urn:a:1", "ClientURI": "urn:b:1//", "MOData": {}}),
                DmmoError::MoidMismatch { moid: "urn:a:1".into(), client_uri: "urn:b:1//".into() },
            ),
            (
                json!({"MOID": "urn:a:1", "MIID": "x", "ClientURI": "urn:a:1/y/", "MOData": {}}),
                DmmoError::MiidMismatch { miid: "x".into(), client_uri: "urn:a:1/y/".into() },
            ),
            (json!({"ClientURI": "nope", "MOData": {}}), DmmoError::InvalidClientUri(UriError::MissingInstance)),
        ];
        for (value, expected) in cases {
            assert_eq!(DmmoDocument::from_json(&value), Err(expected), "{value}");
        }
        assert!(matches!(DmmoDocument::from_slice(b"{"), Err(DmmoError::Json(_))));
    }

    #[test]
    fn miid_forms() {
        for (value, expected) in [
            (json!({"MOID": "urn:a:1", "MIID": "m", "MOData": {}}), Some("m")),
            (json!({"MOID": "urn:a:1", "MIIDS": "m", "MOData": {}}), Some("m")),
            (json!({"MOID": "urn:a:1", "MIIDS": ["m"], "MOData": {}}), Some("m")),
            (json!({"MOID": "urn:a:1", "MIID": "m", "MIIDS": ["m"], "MOData": {}}), Some("m")),
            (json!({"MOID": "urn:a:1", "MIIDS": [], "MOData": {}}), None),
        ] {
            assert_eq!(DmmoDocument::from_json(&value).unwrap().miid.as_deref(), expected, "{value}");
        }
        let from_uri = DmmoDocument::from_json(&json!({"ClientURI": "urn:a:1/m/X", "MOData": {"X": 1}})).unwrap();
        assert_eq!(
            (from_uri.moid.as_str(), from_uri.miid.as_deref(), from_uri.effective_miid()),
            ("urn:a:1", None, "m")
        );
    }

    #[test]
    fn store_documents_like_a_server() {
        let mut tree = ManagementTree::new();
        let leaf = DmmoDocument::from_json(&json!({
            "ClientURI": "urn:oma:mo:oma-dm-devinfo:1.2//DevID",
            "MOData": {"DevID": "IMEI:493005100592800"}
        }))
        .unwrap();
        assert_eq!(tree.store_document(&leaf), Ok(()));
        let instance = tree.instance("urn:oma:mo:oma-dm-devinfo:1.2", "").unwrap();
        assert_eq!(
            instance.get(&["DevID"]).and_then(Node::as_leaf),
            Some(&LeafValue::Chr("IMEI:493005100592800".into()))
        );

        let root = DmmoDocument::from_json(&json!({
            "ClientURI": "urn:oma:mo:oma-dm-devinfo:1.2//",
            "MOData": {"DevID": "IMEI:1", "Man": "Acme"}
        }))
        .unwrap();
        tree.store_document(&root).unwrap();
        assert_eq!(tree.instance("urn:oma:mo:oma-dm-devinfo:1.2", "").unwrap().node_count(), 2);

        let bad_shape = DmmoDocument::from_json(&json!({
            "ClientURI": "urn:oma:mo:oma-dm-devinfo:1.2//Man", "MOData": {"Other": 1}
        }))
        .unwrap();
        assert_eq!(
            tree.store_document(&bad_shape),
            Err(DmmoError::NodeDataShape {
                client_uri: "urn:oma:mo:oma-dm-devinfo:1.2//Man".into(),
                name: "Man".into()
            })
        );
        let wildcard = DmmoDocument::from_json(&json!({"ClientURI": "urn:a:1/*/X", "MOData": {"X": 1}})).unwrap();
        assert_eq!(tree.store_document(&wildcard), Err(DmmoError::NotConcrete { client_uri: "urn:a:1/*/X".into() }));
        let orphan = DmmoDocument::from_json(&json!({"ClientURI": "urn:a:1/m/X/Y", "MOData": {"Y": 1}})).unwrap();
        assert_eq!(tree.store_document(&orphan), Err(DmmoError::Tree(TreeError::ParentNotFound { path: "X".into() })));
        // A failed store does not leave an empty instance behind.
        assert!(tree.instance("urn:a:1", "m").is_none());
    }

    #[test]
    fn tree_list_errors_name_the_document() {
        let error = ManagementTree::from_dmmo_slice(
            br#"[{"MOID": "urn:a:1", "MIID": "m", "MOData": {}}, {"MOID": "urn:a:1", "MIID": "m", "MOData": {}}]"#,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "document 1: MO instance \"m\" of urn:a:1 already exists");
        assert_eq!(error.status_code(), 400);
        assert_eq!(ManagementTree::from_dmmo_slice(b"3"), Err(DmmoError::NotAList { found: "JSON number" }));
        let limits = TreeLimits { max_instances: 1, ..TreeLimits::default() };
        let two =
            br#"[{"MOID": "urn:a:1", "MIID": "m", "MOData": {}}, {"MOID": "urn:a:1", "MIID": "n", "MOData": {}}]"#;
        let error = ManagementTree::from_dmmo_slice_with_limits(two, limits).unwrap_err();
        assert_eq!(error, DmmoError::Tree(TreeError::TooManyInstances { limit: 1 }));
        assert_eq!(error.status_code(), 506);
        let single =
            ManagementTree::from_dmmo_slice(br#"{"MOID": "urn:a:1", "MIID": "m", "MOData": {"A": 1}}"#).unwrap();
        assert_eq!(single.instance_count(), 1);
    }
}
