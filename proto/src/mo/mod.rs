//! The standard management objects (spec 11 and FUMO 1.0) as typed values that convert to and from MOData.
//!
//! MOData is the `"MOData"` member of an `application/dmmo+json` document (7.5):
//! an interior node is a JSON object, a leaf is a JSON value typed by its DDF
//! format (`chr` = string, `int` = number, `bin` = base64 string).
//!
//! ```text
//! {"MOID": "urn:oma:mo:oma-sessioninfomo:1.0", "MIID": "", "MOData": {"CBT": 1, "ROAMING": 0}}
//! ```
//!
//! Reading is lenient (docs/protocol-decisions.md): an `int` may arrive as a digit string, a `chr` as a
//! number, a missing optional node is fine, unknown nodes are ignored, and MOData that
//! wraps the instance root in one extra object named after the MO (Appendix E sends
//! `{"SessionInfoMO": {"CBT": 1, ...}}`) is unwrapped. A missing required node, or a
//! node of the wrong kind, is a [`MoError`]. Writing emits exactly the 7.5 form with
//! the instance root's children at the top of MOData.

mod devinfo;
mod dmacc;
mod dmdac;
mod fumo;
mod sessioninfo;

pub use devinfo::{DevInfo, DeviceIdKind};
pub use dmacc::{DmAccount, GcmPush, NotificationAuth, NotificationAuthType, Permission, Push};
pub use dmdac::{AccessControlEntry, AccessRights, DelegationAccessControl, ManagementAuthority, Operation, permits};
pub use fumo::{
    ALERT_TYPE_DEVICE_REQUEST, ALERT_TYPE_DOWNLOAD, ALERT_TYPE_DOWNLOAD_AND_UPDATE, ALERT_TYPE_UPDATE,
    ALERT_TYPE_USER_REQUEST, FirmwareUpdate, FumoOperation, FumoResultClass, FumoResultCode, FumoState,
};
pub use sessioninfo::{BearerType, RoamingStatus, SessionInfo};

use crate::command::json_kind;
use crate::status::StatusCode;
use base64::Engine as _;
use serde_json::{Map, Value};

/// Why MOData could not be read as a standard management object. A device
/// answers an HGET whose data is rejected this way with 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoError {
    #[error("node {path} must be an interior node (JSON object), found {found}")]
    NotAnInteriorNode { path: String, found: &'static str },
    #[error("required node {path} is missing")]
    MissingNode { path: String },
    #[error("node {path} must be {expected}, found {found}")]
    WrongType { path: String, expected: &'static str, found: &'static str },
    #[error("node {path} has the value {value:?}, which is not allowed: {reason}")]
    InvalidValue { path: String, value: String, reason: &'static str },
    #[error("the document is for MOID {found:?}, expected {expected:?}")]
    MoidMismatch { expected: &'static str, found: String },
    #[error("the document has no \"MOData\" object")]
    MissingMoData,
    #[error("unknown DM command {0:?}: expected HGET, HPUT, HPOST, DELETE, EXEC, GET, SHOW, CONT, END or DEFAULT")]
    UnknownCommand(String),
}

impl MoError {
    /// The Appendix C status for this error: 501 Not Implemented for a command the
    /// client does not know, 400 Bad Request for malformed MO data.
    pub fn status_code(&self) -> StatusCode {
        match self {
            MoError::UnknownCommand(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A standard management object: its MOID and its MOData form.
///
/// Each MO type also has the same items as inherent associated items
/// (`DevInfo::MOID`, `DevInfo::from_mo_data`), so the trait is only needed
/// for generic code.
pub trait ManagementObject: Sized {
    /// The MOID, e.g. `urn:oma:mo:oma-dm-devinfo:1.2`.
    const MOID: &'static str;

    /// The MOData object of one instance.
    fn to_mo_data(&self) -> Value;

    /// Reads the MOData object of one instance.
    fn from_mo_data(mo_data: &Value) -> Result<Self, MoError>;

    /// A whole `application/dmmo+json` document for the instance `miid`:
    ///
    /// ```text
    /// {"MOID": "urn:oma:mo:oma-dm-dmacc:2.0", "MIID": "dms1", "MOData": {...}}
    /// ```
    fn to_dmmo_document(&self, miid: &str) -> Value {
        let mut document = Map::new();
        document.insert("MOID".to_owned(), Value::from(Self::MOID));
        document.insert("MIID".to_owned(), Value::from(miid));
        document.insert("MOData".to_owned(), self.to_mo_data());
        Value::Object(document)
    }

    /// Reads the `"MOData"` of an `application/dmmo+json` document; its `"MOID"`,
    /// when present, must be this MO's.
    fn from_dmmo_document(document: &Value) -> Result<Self, MoError> {
        if let Some(moid) = document.get("MOID").and_then(Value::as_str)
            && moid != Self::MOID
        {
            return Err(MoError::MoidMismatch { expected: Self::MOID, found: moid.to_owned() });
        }
        let mo_data = document.get("MOData").ok_or(MoError::MissingMoData)?;
        Self::from_mo_data(mo_data)
    }
}

/// Implements [`ManagementObject`] by delegating to the inherent items of the same names.
macro_rules! impl_management_object {
    ($mo:ty) => {
        impl $crate::mo::ManagementObject for $mo {
            const MOID: &'static str = <$mo>::MOID;

            fn to_mo_data(&self) -> serde_json::Value {
                <$mo>::to_mo_data(self)
            }

            fn from_mo_data(mo_data: &serde_json::Value) -> Result<Self, $crate::mo::MoError> {
                <$mo>::from_mo_data(mo_data)
            }
        }
    };
}
pub(crate) use impl_management_object;

/// An interior node of MOData being read, with its path for error messages.
pub(crate) struct Interior<'a> {
    path: String,
    children: &'a Map<String, Value>,
}

impl<'a> Interior<'a> {
    /// The instance root of `mo_data`. `mo_name` starts error paths (`DevInfo/DevID`);
    /// `known_children` are child names of the root, used to recognise MOData that
    /// wraps the root in one extra object.
    pub(crate) fn instance_root(mo_data: &'a Value, mo_name: &str, known_children: &[&str]) -> Result<Self, MoError> {
        let children = match mo_data {
            Value::Object(children) => children,
            other => {
                return Err(MoError::NotAnInteriorNode { path: mo_name.to_owned(), found: json_kind(other) });
            }
        };
        let mut entries = children.iter();
        if let (Some((name, Value::Object(inner))), None) = (entries.next(), entries.next())
            && !known_children.contains(&name.as_str())
            && known_children.iter().any(|known| inner.contains_key(*known))
        {
            return Ok(Interior { path: mo_name.to_owned(), children: inner });
        }
        Ok(Interior { path: mo_name.to_owned(), children })
    }

    /// The error path of the child `name`.
    pub(crate) fn path_of(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    /// Every child, in name order; `null` children are skipped as absent.
    pub(crate) fn children(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.children.iter().filter(|(_, value)| !value.is_null())
    }

    /// The child `name`; a JSON `null` counts as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.children.get(name).filter(|value| !value.is_null())
    }

    /// `value`, the child `name`, read as an interior node.
    pub(crate) fn as_interior(&self, name: &str, value: &'a Value) -> Result<Interior<'a>, MoError> {
        match value {
            Value::Object(children) => Ok(Interior { path: self.path_of(name), children }),
            other => Err(MoError::NotAnInteriorNode { path: self.path_of(name), found: json_kind(other) }),
        }
    }

    pub(crate) fn interior(&self, name: &str) -> Result<Option<Interior<'a>>, MoError> {
        self.get(name).map(|value| self.as_interior(name, value)).transpose()
    }

    pub(crate) fn required_interior(&self, name: &str) -> Result<Interior<'a>, MoError> {
        self.interior(name)?.ok_or_else(|| MoError::MissingNode { path: self.path_of(name) })
    }

    /// An interior node kept as raw JSON (vendor `Ext` subtrees, `Bearer`).
    pub(crate) fn subtree(&self, name: &str) -> Result<Option<Map<String, Value>>, MoError> {
        Ok(self.interior(name)?.map(|interior| interior.children.clone()))
    }

    /// A `chr` leaf. Lenient: numbers and booleans are taken as their text.
    pub(crate) fn chr(&self, name: &str) -> Result<Option<String>, MoError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
            Some(other) => Err(self.wrong_type(name, "a chr leaf (JSON string)", other)),
        }
    }

    pub(crate) fn required_chr(&self, name: &str) -> Result<String, MoError> {
        self.chr(name)?.ok_or_else(|| MoError::MissingNode { path: self.path_of(name) })
    }

    /// An `int` leaf. Lenient: a string of digits (with an optional sign) and a
    /// float without fraction are accepted.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, MoError> {
        let expected = "an int leaf (JSON number or digit string)";
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
                (Some(integer), _) => Ok(Some(integer)),
                (None, Some(float)) if float.fract() == 0.0 && float.abs() < 9.0e15 => Ok(Some(float as i64)),
                _ => Err(self.invalid(name, number.to_string(), "not an integer in the int range")),
            },
            Some(Value::String(text)) => text
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.wrong_type(name, expected, &Value::String(text.clone()))),
            Some(other) => Err(self.wrong_type(name, expected, other)),
        }
    }

    pub(crate) fn required_int(&self, name: &str) -> Result<i64, MoError> {
        self.int(name)?.ok_or_else(|| MoError::MissingNode { path: self.path_of(name) })
    }

    /// A `bin` leaf, carried in JSON as base64 (padding optional).
    pub(crate) fn bin(&self, name: &str) -> Result<Option<Vec<u8>>, MoError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => {
                let trimmed = text.trim().trim_end_matches('=');
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(trimmed)
                    .map(Some)
                    .map_err(|_| self.invalid(name, text.clone(), "not base64"))
            }
            Some(other) => Err(self.wrong_type(name, "a bin leaf (base64 JSON string)", other)),
        }
    }

    pub(crate) fn invalid(&self, name: &str, value: String, reason: &'static str) -> MoError {
        MoError::InvalidValue { path: self.path_of(name), value, reason }
    }

    fn wrong_type(&self, name: &str, expected: &'static str, found: &Value) -> MoError {
        MoError::WrongType { path: self.path_of(name), expected, found: json_kind(found) }
    }
}

/// Builds MOData objects: leaves in their DDF-typed JSON form.
#[derive(Default)]
pub(crate) struct MoDataWriter {
    children: Map<String, Value>,
}

impl MoDataWriter {
    pub(crate) fn chr(mut self, name: &str, value: &str) -> Self {
        self.children.insert(name.to_owned(), Value::from(value));
        self
    }

    pub(crate) fn optional_chr(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.chr(name, value),
            None => self,
        }
    }

    pub(crate) fn int(mut self, name: &str, value: i64) -> Self {
        self.children.insert(name.to_owned(), Value::from(value));
        self
    }

    pub(crate) fn optional_bin(mut self, name: &str, value: Option<&[u8]>) -> Self {
        if let Some(bytes) = value {
            self.children.insert(name.to_owned(), Value::from(base64::engine::general_purpose::STANDARD.encode(bytes)));
        }
        self
    }

    pub(crate) fn interior(mut self, name: &str, node: Value) -> Self {
        self.children.insert(name.to_owned(), node);
        self
    }

    pub(crate) fn optional_interior(self, name: &str, node: Option<Value>) -> Self {
        match node {
            Some(node) => self.interior(name, node),
            None => self,
        }
    }

    pub(crate) fn optional_subtree(self, name: &str, subtree: Option<&Map<String, Value>>) -> Self {
        self.optional_interior(name, subtree.map(|children| Value::Object(children.clone())))
    }

    pub(crate) fn finish(self) -> Value {
        Value::Object(self.children)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn leaves_are_read_leniently() {
        let mo_data = json!({"A": "7", "B": 8, "C": 9.0, "D": " -3 ", "E": true, "F": null, "G": "aGk", "H": "aGk="});
        let root = Interior::instance_root(&mo_data, "T", &["A"]).unwrap();
        assert_eq!(root.int("A").unwrap(), Some(7));
        assert_eq!(root.int("B").unwrap(), Some(8));
        assert_eq!(root.int("C").unwrap(), Some(9));
        assert_eq!(root.int("D").unwrap(), Some(-3));
        assert_eq!(root.chr("B").unwrap().as_deref(), Some("8"));
        assert_eq!(root.chr("E").unwrap().as_deref(), Some("true"));
        assert_eq!(root.chr("F").unwrap(), None);
        assert_eq!(root.int("missing").unwrap(), None);
        assert_eq!(root.bin("G").unwrap().as_deref(), Some(&b"hi"[..]));
        assert_eq!(root.bin("H").unwrap().as_deref(), Some(&b"hi"[..]));
    }

    #[test]
    fn wrong_leaves_are_typed_errors() {
        let mo_data = json!({"A": "x7", "B": 1.5, "C": {}, "D": [1], "E": "%%"});
        let root = Interior::instance_root(&mo_data, "T", &[]).unwrap();
        assert_eq!(
            root.int("A"),
            Err(MoError::WrongType {
                path: "T/A".into(),
                expected: "an int leaf (JSON number or digit string)",
                found: "a string"
            })
        );
        assert_eq!(
            root.int("B"),
            Err(MoError::InvalidValue {
                path: "T/B".into(),
                value: "1.5".into(),
                reason: "not an integer in the int range"
            })
        );
        assert_eq!(
            root.chr("C"),
            Err(MoError::WrongType { path: "T/C".into(), expected: "a chr leaf (JSON string)", found: "an object" })
        );
        assert_eq!(
            root.interior("D").err(),
            Some(MoError::NotAnInteriorNode { path: "T/D".into(), found: "an array" })
        );
        assert_eq!(root.required_chr("Z"), Err(MoError::MissingNode { path: "T/Z".into() }));
        assert!(matches!(root.bin("E"), Err(MoError::InvalidValue { .. })));
        assert_eq!(root.int("A").unwrap_err().status_code(), 400);
        assert_eq!(MoError::UnknownCommand("FOO".into()).status_code(), 501);
    }

    #[test]
    fn a_root_wrapped_in_one_named_object_is_unwrapped_only_when_it_looks_like_the_root() {
        let wrapped = json!({"SessionInfoMO": {"CBT": 1}});
        let root = Interior::instance_root(&wrapped, "S", &["CBT", "ROAMING"]).unwrap();
        assert_eq!(root.int("CBT").unwrap(), Some(1));
        // One child that is itself a known node is not a wrapper.
        let known = json!({"CBT": 1});
        assert_eq!(Interior::instance_root(&known, "S", &["CBT"]).unwrap().int("CBT").unwrap(), Some(1));
        // An object without any known child is not the root either.
        let other = json!({"Vendor": {"X": 1}});
        assert!(Interior::instance_root(&other, "S", &["CBT"]).unwrap().interior("Vendor").unwrap().is_some());
        assert_eq!(
            Interior::instance_root(&json!([1]), "S", &[]).err(),
            Some(MoError::NotAnInteriorNode { path: "S".into(), found: "an array" })
        );
    }
}
