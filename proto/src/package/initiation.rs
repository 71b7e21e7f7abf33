//! Package#1 (5.2.2, 7.2): the client opens a DM session, listing its MOs when asked (REQ-MOS) and raising alerts.
//!
//! ```text
//! {"MOS": [{"DDF": "http://www.vendor.com/DDF/devinfo1.0.ddf",
//!           "MOID": "urn:oma:mo:oma-dm-devinfo:1.0",
//!           "MIID": ["miid1"]}],
//!  "Alert": {"Items": [...]}}
//! ```
//!
//! Accepted leniently: `MIIDS` for `MIID` (6.3.3's table spells it so), and
//! a single MIID string for the array. Emitted as `MIID` arrays. `DDF` is
//! required by 5.2.2 but accepted missing: the MOID alone still identifies
//! the MO, and refusing the whole session for it helps nobody.

use serde_json::{Map, Value};

use super::alert::optional_alert;
use super::{Alert, PackageError, ParseLimits, encode, expect_object, read_object};
use crate::command::{Moid, MoidError, deserialize_with_from_json, json_kind};

/// Package#1, sent with media type [`INITIATION_JSON`](super::media::INITIATION_JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct InitiationPackage {
    /// `MOS`: the supported MOs, present when the notification asked for them.
    #[serde(rename = "MOS", skip_serializing_if = "Option::is_none")]
    pub supported_objects: Option<Vec<SupportedObject>>,
    /// Client-initiated Generic Alerts.
    #[serde(rename = "Alert", skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
}

/// One item of `MOS`: an MO the client supports and its instances.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SupportedObject {
    /// Link to the DDF file describing the MO.
    #[serde(rename = "DDF", skip_serializing_if = "Option::is_none")]
    pub ddf: Option<String>,
    /// The MO's identifier.
    #[serde(rename = "MOID")]
    pub moid: Moid,
    /// The instances the server may see.
    #[serde(rename = "MIID")]
    pub miids: Vec<String>,
}

/// Why a `MOS` item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupportedObjectError {
    #[error("must be an object {{\"DDF\", \"MOID\", \"MIID\"}}, found {found}")]
    NotAnObject { found: &'static str },
    #[error("has no MOID, which it requires")]
    MissingMoid,
    #[error("{0}")]
    InvalidMoid(MoidError),
    #[error("{field} must be {expected}, found {found}")]
    WrongFieldType { field: &'static str, expected: &'static str, found: &'static str },
    #[error("has both MIID and MIIDS: send only MIID")]
    BothMiidKeys,
}

impl InitiationPackage {
    /// Parses a Package#1 body.
    pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Self, PackageError> {
        Self::from_object(&read_object(bytes, limits)?)
    }

    /// Reads an already parsed Package#1.
    pub fn from_json(value: &Value) -> Result<Self, PackageError> {
        Self::from_object(expect_object(value)?)
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, PackageError> {
        let supported_objects = match object.get("MOS") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        SupportedObject::from_json(item)
                            .map_err(|source| PackageError::SupportedObject { position: index + 1, source })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => {
                return Err(PackageError::WrongFieldType {
                    field: "MOS",
                    expected: "an array",
                    found: json_kind(other),
                });
            }
        };
        Ok(InitiationPackage { supported_objects, alert: optional_alert(object)? })
    }

    /// The JSON body.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, PackageError> {
        encode(self)
    }
}

impl SupportedObject {
    fn from_json(value: &Value) -> Result<Self, SupportedObjectError> {
        let Value::Object(fields) = value else {
            return Err(SupportedObjectError::NotAnObject { found: json_kind(value) });
        };
        let moid = match fields.get("MOID") {
            None | Some(Value::Null) => return Err(SupportedObjectError::MissingMoid),
            Some(Value::String(moid)) => Moid::parse(moid).map_err(SupportedObjectError::InvalidMoid)?,
            Some(other) => return Err(wrong_type("MOID", "a string", other)),
        };
        let ddf = match fields.get("DDF") {
            None | Some(Value::Null) => None,
            Some(Value::String(ddf)) => Some(ddf.clone()),
            Some(other) => return Err(wrong_type("DDF", "a string", other)),
        };
        let miids = match (fields.get("MIID"), fields.get("MIIDS")) {
            (Some(_), Some(_)) => return Err(SupportedObjectError::BothMiidKeys),
            (Some(miids), None) => read_miids("MIID", miids)?,
            (None, Some(miids)) => read_miids("MIIDS", miids)?,
            (None, None) => Vec::new(),
        };
        Ok(SupportedObject { ddf, moid, miids })
    }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value) -> SupportedObjectError {
    SupportedObjectError::WrongFieldType { field, expected, found: json_kind(found) }
}

fn read_miids(field: &'static str, value: &Value) -> Result<Vec<String>, SupportedObjectError> {
    const EXPECTED: &str = "a string or an array of strings";
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(miid) => Ok(vec![miid.clone()]),
        Value::Array(miids) => miids
            .iter()
            .map(|miid| match miid {
                Value::String(miid) => Ok(miid.clone()),
                other => Err(wrong_type(field, EXPECTED, other)),
            })
            .collect(),
        other => Err(wrong_type(field, EXPECTED, other)),
    }
}

deserialize_with_from_json!(InitiationPackage);

/// Reads one MOS item with the same leniency as inside a Package#1 (stored records).
impl<'de> serde::Deserialize<'de> for SupportedObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        SupportedObject::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<InitiationPackage, PackageError> {
        InitiationPackage::from_json(&value)
    }

    fn moid(text: &str) -> Moid {
        Moid::parse(text).unwrap()
    }

    #[test]
    fn empty_object_is_a_package_without_mos_or_alert() {
        assert_eq!(parse(json!({})), Ok(InitiationPackage::default()));
        assert_eq!(InitiationPackage::default().to_json_bytes(), Ok(b"{}".to_vec()));
    }

    #[test]
    fn accepts_miids_spelling_and_a_single_string() {
        let package = parse(json!({"MOS": [
            {"MOID": "urn:oma:mo:oma-dm-devinfo:1.0", "MIIDS": ["a", "b"]},
            {"MOID": "urn:oma:mo:oma-sessioninfomo:1.0", "MIID": "only", "DDF": "http://v/ddf"},
            {"MOID": "urn:oma:mo:x:1.0"}
        ], "Vendor": {"ignored": true}}));
        let expected = InitiationPackage {
            supported_objects: Some(vec![
                SupportedObject {
                    ddf: None,
                    moid: moid("urn:oma:mo:oma-dm-devinfo:1.0"),
                    miids: vec!["a".into(), "b".into()],
                },
                SupportedObject {
                    ddf: Some("http://v/ddf".into()),
                    moid: moid("urn:oma:mo:oma-sessioninfomo:1.0"),
                    miids: vec!["only".into()],
                },
                SupportedObject { ddf: None, moid: moid("urn:oma:mo:x:1.0"), miids: vec![] },
            ]),
            alert: None,
        };
        assert_eq!(package, Ok(expected));
    }

    #[test]
    fn emits_miid_arrays() {
        let package = InitiationPackage {
            supported_objects: Some(vec![SupportedObject {
                ddf: Some("http://v/ddf".into()),
                moid: moid("urn:oma:mo:oma-dm-devinfo:1.0"),
                miids: vec!["only".into()],
            }]),
            alert: None,
        };
        let bytes = package.to_json_bytes().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"MOS":[{"DDF":"http://v/ddf","MOID":"urn:oma:mo:oma-dm-devinfo:1.0","MIID":["only"]}]}"#
        );
    }

    #[test]
    fn refuses_malformed_mos_items_with_their_position() {
        let item_error = |value: Value| match parse(value) {
            Err(PackageError::SupportedObject { position, source }) => Some((position, source)),
            _ => None,
        };
        assert_eq!(
            parse(json!({"MOS": {}})),
            Err(PackageError::WrongFieldType { field: "MOS", expected: "an array", found: "an object" })
        );
        assert_eq!(
            item_error(json!({"MOS": [{"MOID": "urn:a:1"}, "x"]})),
            Some((2, SupportedObjectError::NotAnObject { found: "a string" }))
        );
        assert_eq!(item_error(json!({"MOS": [{"MIID": []}]})), Some((1, SupportedObjectError::MissingMoid)));
        assert_eq!(
            item_error(json!({"MOS": [{"MOID": "devinfo"}]})),
            Some((1, SupportedObjectError::InvalidMoid(MoidError::Invalid("devinfo".into()))))
        );
        assert_eq!(
            item_error(json!({"MOS": [{"MOID": "urn:a:1", "MIID": [1]}]})),
            Some((
                1,
                SupportedObjectError::WrongFieldType {
                    field: "MIID",
                    expected: "a string or an array of strings",
                    found: "a number"
                }
            ))
        );
        assert_eq!(
            item_error(json!({"MOS": [{"MOID": "urn:a:1", "MIID": [], "MIIDS": []}]})),
            Some((1, SupportedObjectError::BothMiidKeys))
        );
        assert_eq!(
            item_error(json!({"MOS": [{"MOID": "urn:a:1", "DDF": 5}]})),
            Some((1, SupportedObjectError::WrongFieldType { field: "DDF", expected: "a string", found: "a number" }))
        );
    }
}
