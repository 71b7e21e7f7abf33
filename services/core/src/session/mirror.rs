//! The device's MO mirror as a session step changes it: GET results stored, cache validators kept (section 12), inventory read back.
//!
//! The mirror is a cache of the device's own tree. Rules that keep it honest:
//! - A validator (`cv`) is recorded only from a whole-instance document that
//!   carried one, so "the mirror holds validator V for an instance" always
//!   means "the mirror holds that instance as the device had it at V". Any
//!   partial update of an instance (a node document, a text leaf, a DELETE, an
//!   HGET into it) drops the instance's validator: the next GET reads it whole.
//! - Documents read with `lv` are not stored: their cut-off interior nodes
//!   (`{}`) would erase what the mirror knows below them.
//! - A document for another MOID than its GET asked for is not stored.
//! - A mirror that cannot be read is replaced by what the session reads: it is
//!   a cache, and the device is the authority.

use std::collections::BTreeMap;

use omadm_proto::command::Command;
use omadm_proto::mo::{BearerType, DevInfo, RoamingStatus, SessionInfo};
use omadm_proto::package::media::{DMMO_JSON, is_media_type};
use omadm_proto::tree::{DmmoDocument, InteriorNode, LeafValue, ManagementTree, Node, TreeLimits};
use omadm_proto::uri::{ClientUri, InstanceSelector, NodeSelector};
use serde_json::Value;

use crate::clock::Millis;
use crate::model::{CommandResultData, Inventory, MirrorRecord};

/// The key of an instance in [`MirrorRecord::validators`]: `"{MOID}/{MIID}"`.
pub fn validator_key(moid: &str, miid: &str) -> String {
    format!("{moid}/{miid}")
}

/// The mirror's tree, or `None` when the record holds none or cannot be read.
pub(crate) fn mirror_tree(record: &MirrorRecord) -> Option<ManagementTree> {
    if record.tree.is_null() {
        return None;
    }
    ManagementTree::from_dmmo_json(&record.tree, TreeLimits::default()).ok()
}

/// The MIIDs of the mirror's instances of `moid`, read from the stored
/// documents without building the whole tree (this runs for every Package#2).
fn mirror_miids(record: &MirrorRecord, moid: &str) -> Vec<String> {
    let documents = match &record.tree {
        Value::Array(documents) => documents.as_slice(),
        document @ Value::Object(_) => std::slice::from_ref(document),
        _ => &[],
    };
    documents
        .iter()
        .filter(|document| document.get("MOID").and_then(Value::as_str) == Some(moid))
        .filter_map(|document| DmmoDocument::from_json(document).ok())
        .map(|document| document.effective_miid().to_owned())
        .collect()
}

/// The one instance `uri` addresses by MIID or as the sole instance, when the mirror can tell.
fn addressed_miid(record: &MirrorRecord, uri: &ClientUri) -> Option<String> {
    match &uri.instance {
        InstanceSelector::Miid(miid) => Some(miid.clone()),
        InstanceSelector::Sole => match mirror_miids(record, &uri.moid).as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        },
        InstanceSelector::XName(_) | InstanceSelector::Wildcard => None,
    }
}

/// `uri` with `cv=` set to the validator the mirror holds for its instance,
/// unless it already carries one or the mirror has none.
fn with_validator(record: &MirrorRecord, uri: &ClientUri) -> ClientUri {
    if uri.query.cache_validator.is_some() || record.validators.is_empty() {
        return uri.clone();
    }
    let validator =
        addressed_miid(record, uri).and_then(|miid| record.validators.get(&validator_key(&uri.moid, &miid))).cloned();
    match validator {
        Some(validator) => uri.clone().with_cache_validator(Some(validator)),
        None => uri.clone(),
    }
}

/// The command as sent: GET, HPUT and HPOST get `cv=` on every ClientURI
/// whose instance has a validator in the mirror (12.2); others unchanged.
pub(super) fn add_cache_validators(record: &MirrorRecord, command: &Command) -> Command {
    use omadm_proto::command::{Get, Hput};
    match command {
        Command::Get(get) => Command::Get(Get::new(with_validator(record, get.client_uri()))),
        Command::Hput(hput) => Command::Hput(Hput::new(
            hput.server_uri().clone(),
            hput.client_uris().iter().map(|uri| with_validator(record, uri)).collect(),
        )),
        Command::Hpost(hpost) => Command::Hpost(Hput::new(
            hpost.server_uri().clone(),
            hpost.client_uris().iter().map(|uri| with_validator(record, uri)).collect(),
        )),
        other => other.clone(),
    }
}

/// A GET result part as the command record keeps it: JSON for JSON media
/// types (`application/json`, `*+json`) that parse, text for UTF-8, base64 otherwise.
pub(super) fn result_data(content_type: &str, body: &[u8]) -> CommandResultData {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || essence.ends_with("+json");
    if is_json {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            return CommandResultData { content_type: content_type.to_owned(), value, base64: false };
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) => CommandResultData {
            content_type: content_type.to_owned(),
            value: Value::String(text.to_owned()),
            base64: false,
        },
        Err(_) => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(body);
            CommandResultData { content_type: content_type.to_owned(), value: Value::String(encoded), base64: true }
        }
    }
}

/// The mirror being changed by one step; written back only when something changed.
pub(super) struct MirrorEditor {
    tree: ManagementTree,
    validators: BTreeMap<String, String>,
    changed: bool,
}

impl MirrorEditor {
    pub(super) fn load(record: &MirrorRecord) -> Self {
        MirrorEditor {
            tree: mirror_tree(record).unwrap_or_default(),
            validators: record.validators.clone(),
            changed: false,
        }
    }

    /// The record to store, or `None` when the step changed nothing.
    pub(super) fn into_record(self, now: Millis) -> Option<MirrorRecord> {
        self.changed.then(|| MirrorRecord {
            tree: self.tree.to_dmmo_json(),
            validators: self.validators,
            updated_at: now,
        })
    }

    /// The MIID a document or URI without one lands in: the MOID's sole instance, else "".
    fn sole_miid(&self, moid: &str) -> String {
        let mut existing = self.tree.instances_of(moid);
        match (existing.next(), existing.next()) {
            (Some(only), None) => only.miid().to_owned(),
            _ => String::new(),
        }
    }

    fn concrete_miid(&self, uri: &ClientUri) -> Option<String> {
        match &uri.instance {
            InstanceSelector::Miid(miid) => Some(miid.clone()),
            InstanceSelector::Sole => Some(self.sole_miid(&uri.moid)),
            InstanceSelector::XName(_) | InstanceSelector::Wildcard => None,
        }
    }

    fn forget_validator(&mut self, moid: &str, miid: &str) {
        if self.validators.remove(&validator_key(moid, miid)).is_some() {
            self.changed = true;
        }
    }

    /// Stores the data of a GET answered 200. Returns true when the mirror took it.
    pub(super) fn store_get_result(&mut self, get_uri: &ClientUri, data: &CommandResultData, body: &[u8]) -> bool {
        if is_media_type(&data.content_type, DMMO_JSON) {
            return self.store_documents(get_uri, &data.value);
        }
        let value = if data.base64 {
            LeafValue::Bin(body.to_vec())
        } else {
            match &data.value {
                Value::String(text) => LeafValue::Chr(text.clone()),
                // A leaf sent as `application/json`: its JSON type gives the format.
                other => match LeafValue::from_json_inferred(other) {
                    Ok(value) => value,
                    Err(_) => return false,
                },
            }
        };
        self.store_leaf(get_uri, value)
    }

    /// dmmo+json: one document, or a list of them (a wildcard GET, 6.1.2).
    fn store_documents(&mut self, get_uri: &ClientUri, value: &Value) -> bool {
        if get_uri.query.level.is_some() {
            return false;
        }
        let documents = match value {
            Value::Array(documents) => documents.as_slice(),
            document @ Value::Object(_) => std::slice::from_ref(document),
            _ => return false,
        };
        let mut stored_any = false;
        for document in documents {
            let Ok(document) = DmmoDocument::from_json(document) else { continue };
            if document.moid != get_uri.moid {
                continue;
            }
            let named = document.miid.is_some()
                || matches!(document.client_uri.as_ref().map(|uri| &uri.instance), Some(InstanceSelector::Miid(_)));
            let miid = if named { document.effective_miid().to_owned() } else { self.sole_miid(&document.moid) };
            if self.tree.store_document(&document).is_err() {
                continue;
            }
            let key = validator_key(&document.moid, &miid);
            match document.cache_validator().filter(|_| document.is_instance_root()) {
                Some(validator) => {
                    self.validators.insert(key, validator.to_owned());
                }
                None => {
                    self.validators.remove(&key);
                }
            }
            self.changed = true;
            stored_any = true;
        }
        stored_any
    }

    /// A leaf in its own media type: set at the GET's ClientURI when it names
    /// exactly one node, keeping the format the mirror already knew for it.
    fn store_leaf(&mut self, get_uri: &ClientUri, value: LeafValue) -> bool {
        let Some(miid) = self.concrete_miid(get_uri) else { return false };
        let Some(path) = concrete_path(get_uri) else { return false };
        if path.is_empty() {
            return false;
        }
        let moid = get_uri.moid.as_str();
        let created = self.tree.instance(moid, &miid).is_none();
        if created && self.tree.create_instance(moid, &miid).is_err() {
            return false;
        }
        let Some(instance) = self.tree.instance_mut(moid, &miid) else { return false };
        let value = match (instance.get(&path).and_then(Node::as_leaf), &value) {
            (Some(known), LeafValue::Chr(text)) => LeafValue::from_text(text, known.format()).unwrap_or(value),
            _ => value,
        };
        let mut stored = true;
        for depth in 1..path.len() {
            let prefix = path.get(..depth).unwrap_or_default();
            if instance.get(prefix).is_none() && instance.set_node(prefix, Node::Interior(InteriorNode::new())).is_err()
            {
                stored = false;
                break;
            }
        }
        stored = stored && instance.set_leaf(&path, value).is_ok();
        if !stored {
            if created {
                self.tree.remove_instance(moid, &miid);
            }
            return false;
        }
        self.forget_validator(moid, &miid);
        self.changed = true;
        true
    }

    /// What a GET answered 304 returns: the mirror's data for it, as dmmo+json
    /// carrying the device's validator.
    pub(super) fn not_modified_data(&self, get_uri: &ClientUri) -> Option<CommandResultData> {
        let lookup = get_uri.clone().with_cache_validator(None);
        let nodes = self.tree.resolve(&lookup).ok()?;
        let mut documents: Vec<Value> = nodes
            .iter()
            .map(|node| {
                let mut document = node.to_dmmo(get_uri.query.level);
                let device_validator = self.validators.get(&validator_key(node.moid(), node.miid())).cloned();
                if let Some(uri) = document.client_uri.as_mut() {
                    uri.query.cache_validator = device_validator.filter(|_| node.is_instance_root());
                }
                document.to_json()
            })
            .collect();
        let value = match documents.len() {
            0 => return None,
            1 => documents.pop()?,
            _ => Value::Array(documents),
        };
        Some(CommandResultData { content_type: DMMO_JSON.to_owned(), value, base64: false })
    }

    /// The device changed the instance itself (HGET into it, EXEC...): the validator no longer describes the mirror.
    pub(super) fn instance_changed_on_device(&mut self, uri: &ClientUri) {
        match self.concrete_miid(uri) {
            Some(miid) => self.forget_validator(&uri.moid, &miid),
            None => {
                let keys: Vec<String> =
                    self.validators.keys().filter(|key| key.starts_with(&format!("{}/", uri.moid))).cloned().collect();
                for key in keys {
                    self.validators.remove(&key);
                    self.changed = true;
                }
            }
        }
    }

    /// A DELETE the device performed: the node (or the whole instance, for its root) leaves the mirror too.
    pub(super) fn apply_delete(&mut self, uri: &ClientUri) {
        let (Some(miid), Some(path)) = (self.concrete_miid(uri), concrete_path(uri)) else {
            self.instance_changed_on_device(uri);
            return;
        };
        if path.is_empty() {
            if self.tree.remove_instance(&uri.moid, &miid).is_some() {
                self.changed = true;
            }
        } else if let Some(instance) = self.tree.instance_mut(&uri.moid, &miid) {
            if instance.delete_node(&path).is_ok() {
                self.changed = true;
            }
        }
        self.forget_validator(&uri.moid, &miid);
    }

    /// Refreshes the DevInfo fields of `inventory` from the mirror. Strict
    /// [`DevInfo::from_mo_data`] first; a device that leaves out a leaf 11.1
    /// requires still gets the leaves it did send.
    pub(super) fn read_devinfo(&self, inventory: &mut Inventory) -> bool {
        let Some(instance) = self.tree.instances_of(DevInfo::MOID).next() else { return false };
        if let Ok(info) = DevInfo::from_mo_data(&instance.root().to_json()) {
            inventory.man = Some(info.manufacturer);
            inventory.model = Some(info.model);
            inventory.dmv = Some(info.dm_client_version);
            inventory.lang = Some(info.language);
            inventory.dev_type = Some(info.device_type);
            inventory.oem = Some(info.oem);
            inventory.fwv = Some(info.firmware_version);
            inventory.swv = Some(info.software_version);
            inventory.hwv = Some(info.hardware_version);
            return true;
        }
        let leaf =
            |name: &str| instance.get(&[name]).and_then(Node::as_leaf).map(|value| value.text_form().into_owned());
        let fields: [(&str, &mut Option<String>); 9] = [
            ("Man", &mut inventory.man),
            ("Mod", &mut inventory.model),
            ("DmV", &mut inventory.dmv),
            ("Lang", &mut inventory.lang),
            ("DevType", &mut inventory.dev_type),
            ("OEM", &mut inventory.oem),
            ("FwV", &mut inventory.fwv),
            ("SwV", &mut inventory.swv),
            ("HwV", &mut inventory.hwv),
        ];
        for (name, field) in fields {
            if let Some(value) = leaf(name) {
                *field = Some(value);
            }
        }
        true
    }

    /// Refreshes bearer and roaming from the mirror's SessionInfo.
    pub(super) fn read_session_info(&self, inventory: &mut Inventory) -> bool {
        let Some(instance) = self.tree.instances_of(SessionInfo::MOID).next() else { return false };
        let Ok(info) = SessionInfo::from_mo_data(&instance.root().to_json()) else { return false };
        inventory.bearer = Some(
            match info.bearer_type {
                BearerType::Mobile => "mobile",
                BearerType::Wireless => "wireless",
                BearerType::Wireline => "wireline",
                BearerType::OthersOrUnknown => "unknown",
            }
            .to_owned(),
        );
        inventory.roaming = match info.roaming {
            RoamingStatus::Roaming => Some(true),
            RoamingStatus::NotRoaming => Some(false),
            RoamingStatus::Unknown => None,
        };
        true
    }
}

/// The path of `uri` when every segment is a real name.
fn concrete_path(uri: &ClientUri) -> Option<Vec<String>> {
    uri.path
        .iter()
        .map(|segment| match segment {
            NodeSelector::Name(name) => Some(name.clone()),
            NodeSelector::XName(_) | NodeSelector::Wildcard => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn uri(text: &str) -> ClientUri {
        ClientUri::parse(text).unwrap()
    }

    fn record(tree: Value, validators: &[(&str, &str)]) -> MirrorRecord {
        MirrorRecord {
            tree,
            validators: validators.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
            updated_at: 0,
        }
    }

    #[test]
    fn result_data_is_json_for_json_types_text_for_utf8_and_base64_otherwise() {
        let json_part = result_data("application/dmmo+json", br#"{"MOData": {}}"#);
        assert_eq!((json_part.value, json_part.base64), (json!({"MOData": {}}), false));
        let vendor_json = result_data("Application/Vnd.Example+JSON; charset=utf-8", b"[1]");
        assert_eq!(vendor_json.value, json!([1]));
        let broken_json = result_data("application/json", b"{not json");
        assert_eq!(broken_json.value, json!("{not json"));
        let text = result_data("text/plain", "Grüße".as_bytes());
        assert_eq!((text.value, text.base64), (json!("Grüße"), false));
        let bytes = result_data("application/octet-stream", &[0xff, 0xfe]);
        assert_eq!((bytes.value, bytes.base64), (json!("//4="), true));
    }

    #[test]
    fn cv_is_added_for_a_named_or_sole_instance_only() {
        let tree = json!([
            {"MOID": "urn:oma:mo:a:1.0", "MIID": "", "MOData": {"X": 1}},
            {"MOID": "urn:oma:mo:b:1.0", "MIID": "one", "MOData": {"X": 1}},
            {"MOID": "urn:oma:mo:b:1.0", "MIID": "two", "MOData": {"X": 2}}
        ]);
        let mirror = record(tree, &[("urn:oma:mo:a:1.0/", "cvA"), ("urn:oma:mo:b:1.0/one", "cvB1")]);
        let get = |text: &str| Command::Get(omadm_proto::command::Get::new(uri(text)));
        let sent = |text: &str| add_cache_validators(&mirror, &get(text)).to_json();
        assert_eq!(sent("urn:oma:mo:a:1.0//X"), json!(["GET", "urn:oma:mo:a:1.0//X?cv=cvA"]));
        assert_eq!(sent("urn:oma:mo:b:1.0/one/"), json!(["GET", "urn:oma:mo:b:1.0/one/?cv=cvB1"]));
        assert_eq!(sent("urn:oma:mo:b:1.0/two/"), json!(["GET", "urn:oma:mo:b:1.0/two/"]), "no validator held");
        assert_eq!(sent("urn:oma:mo:b:1.0//"), json!(["GET", "urn:oma:mo:b:1.0//"]), "two instances: no sole one");
        assert_eq!(sent("urn:oma:mo:b:1.0/*/X"), json!(["GET", "urn:oma:mo:b:1.0/*/X"]));
        assert_eq!(sent("urn:oma:mo:a:1.0//?cv=mine"), json!(["GET", "urn:oma:mo:a:1.0//?cv=mine"]), "kept as given");
        let exec = Command::from_json(&json!(["EXEC", "urn:oma:mo:a:1.0//X"])).unwrap();
        assert_eq!(add_cache_validators(&mirror, &exec), exec, "only reads carry cv (12.2)");
    }

    #[test]
    fn an_unreadable_or_empty_mirror_starts_empty_and_is_only_written_when_changed() {
        let editor = MirrorEditor::load(&record(json!("garbage"), &[]));
        assert!(editor.into_record(5).is_none());
        let mut editor = MirrorEditor::load(&MirrorRecord::default());
        let data = result_data("text/plain", b"on");
        assert!(editor.store_get_result(&uri("urn:oma:mo:c:1.0/x/A/B"), &data, b"on"));
        let stored = editor.into_record(5).unwrap();
        assert_eq!(stored.tree, json!([{"MOID": "urn:oma:mo:c:1.0", "MIID": "x", "MOData": {"A": {"B": "on"}}}]));
        assert_eq!(stored.updated_at, 5);
    }

    #[test]
    fn a_leaf_part_needs_a_uri_that_names_one_node() {
        let mut editor = MirrorEditor::load(&MirrorRecord::default());
        let data = result_data("text/plain", b"v");
        for text in ["urn:oma:mo:c:1.0/*/A", "urn:oma:mo:c:1.0/x/*", "urn:oma:mo:c:1.0/x/"] {
            assert!(!editor.store_get_result(&uri(text), &data, b"v"), "{text}");
        }
        assert!(editor.into_record(0).is_none());
    }

    #[test]
    fn a_root_document_without_cv_drops_the_old_validator() {
        let tree = json!([{"MOID": "urn:oma:mo:a:1.0", "MIID": "i", "MOData": {"X": 1}}]);
        let mut editor = MirrorEditor::load(&record(tree, &[("urn:oma:mo:a:1.0/i", "old")]));
        let document = json!({"MOID": "urn:oma:mo:a:1.0", "MIID": "i", "MOData": {"X": 2}});
        let data = CommandResultData { content_type: DMMO_JSON.to_owned(), value: document, base64: false };
        assert!(editor.store_get_result(&uri("urn:oma:mo:a:1.0/i/"), &data, b""));
        let stored = editor.into_record(1).unwrap();
        assert!(stored.validators.is_empty());
        assert_eq!(stored.tree[0]["MOData"]["X"], json!(2));
    }

    #[test]
    fn a_wildcard_get_stores_every_document_of_its_list() {
        let mut editor = MirrorEditor::load(&MirrorRecord::default());
        let list = json!([
            {"MOID": "urn:oma:mo:a:1.0", "MIID": "l", "ClientURI": "urn:oma:mo:a:1.0/l/?cv=cvL", "MOData": {"X": 1}},
            {"MOID": "urn:oma:mo:a:1.0", "MIID": "r", "ClientURI": "urn:oma:mo:a:1.0/r/?cv=cvR", "MOData": {"X": 2}},
            {"MOData": {}}
        ]);
        let data = CommandResultData { content_type: DMMO_JSON.to_owned(), value: list, base64: false };
        assert!(editor.store_get_result(&uri("urn:oma:mo:a:1.0/*/"), &data, b""));
        let stored = editor.into_record(1).unwrap();
        assert_eq!(stored.tree.as_array().map(Vec::len), Some(2));
        assert_eq!(stored.validators.get("urn:oma:mo:a:1.0/l").map(String::as_str), Some("cvL"));
        assert_eq!(stored.validators.get("urn:oma:mo:a:1.0/r").map(String::as_str), Some("cvR"));
    }
}
