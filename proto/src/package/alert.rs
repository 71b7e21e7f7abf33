//! Generic Alert (5.3, 7.6): events the client reports in a Package#1 or #3, or posts to an EXEC's ServerURI.
//!
//! ```text
//! "Alert": {"Items": [{
//!     "AlertType": "urn:oma:at:scomo:1.0:OperationComplete",
//!     "MIMEType": "text/plain",
//!     "SourceURI": "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1/Operations/DownloadInstall",
//!     "Mark": "warning",
//!     "Data": {}
//! }]}
//! ```
//!
//! Decisions where 5.3/7.6 are silent:
//! - An omitted `Mark` means [`Mark::Informational`]: the text speaks of "the
//!   default importance level" without naming it, and an alert that states no
//!   importance is an ordinary report, not an alarm. The omission is kept
//!   ([`AlertItem::mark`] is `None`) so it is not turned into a stated level.
//! - `Mark` is accepted in any ASCII case, emitted lower case.
//! - `SourceURI` is trimmed of surrounding whitespace: every example in the
//!   text has a stray leading space. It stays a plain string, since 5.3 only
//!   says it is "an URI" (usually a ClientURI; see [`AlertItem::source_client_uri`]).
//! - `Data` may be any JSON value (the schema says object, the examples pair
//!   it with `text/plain`); `null` counts as absent.

use crate::status::StatusCode;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::{PackageError, ParseLimits, encode, read_object};
use crate::command::{deserialize_with_from_json, json_kind};
use crate::uri::{ClientUri, UriError};

/// A Generic Alert: one or more items, each answered with its own status (5.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    #[serde(rename = "Items")]
    pub items: Vec<AlertItem>,
}

/// One event of a Generic Alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertItem {
    /// The OMNA-registered type, e.g. `urn:oma:at:scomo:1.0:OperationComplete`. Never empty.
    #[serde(rename = "AlertType")]
    pub alert_type: String,
    /// The media type of `data`, e.g. `text/plain`.
    #[serde(rename = "MIMEType", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Where the event happened, usually a ClientURI; trimmed.
    #[serde(rename = "SourceURI", skip_serializing_if = "Option::is_none")]
    pub source_uri: Option<String>,
    /// The importance as sent; see [`AlertItem::effective_mark`] for the default.
    #[serde(rename = "Mark", skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    /// The event's data, not specified by the protocol.
    #[serde(rename = "Data", skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// The importance level of a Generic Alert item (5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mark {
    Fatal,
    Critical,
    Minor,
    Warning,
    /// Also the level of an item that states none.
    #[default]
    Informational,
    Harmless,
    Indeterminate,
}

/// Why a Generic Alert was refused. Item positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("\"Alert\" must be an object {{\"Items\": [...]}}, found {found}")]
    NotAnObject { found: &'static str },
    #[error("\"Alert\" has no \"Items\" array")]
    MissingItems,
    #[error("\"Items\" must be an array, found {found}")]
    ItemsNotAnArray { found: &'static str },
    #[error("alert item {item} must be an object, found {found}")]
    ItemNotAnObject { item: usize, found: &'static str },
    #[error("alert item {item} has no AlertType, which it requires")]
    MissingAlertType { item: usize },
    #[error("alert item {item}: {field} must be a string, found {found}")]
    FieldNotAString { item: usize, field: &'static str, found: &'static str },
    #[error(
        "alert item {item}: unknown Mark {mark:?}: expected fatal, critical, minor, warning, informational, harmless or indeterminate"
    )]
    UnknownMark { item: usize, mark: String },
}

impl AlertError {
    /// 400: a malformed alert is malformed syntax (Appendix C).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

impl Mark {
    /// All levels, from most to least severe, then `indeterminate`.
    pub const ALL: [Mark; 7] = [
        Mark::Fatal,
        Mark::Critical,
        Mark::Minor,
        Mark::Warning,
        Mark::Informational,
        Mark::Harmless,
        Mark::Indeterminate,
    ];

    /// The wire form, lower case: `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Fatal => "fatal",
            Mark::Critical => "critical",
            Mark::Minor => "minor",
            Mark::Warning => "warning",
            Mark::Informational => "informational",
            Mark::Harmless => "harmless",
            Mark::Indeterminate => "indeterminate",
        }
    }

    /// Recognises a level in any ASCII case.
    pub fn from_wire(text: &str) -> Option<Mark> {
        Mark::ALL.into_iter().find(|mark| mark.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mark {
    type Err = AlertError;
    /// Errors carry item 0: the caller knows which item it was reading.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Mark::from_wire(text).ok_or_else(|| AlertError::UnknownMark { item: 0, mark: text.to_owned() })
    }
}

impl serde::Serialize for Mark {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl AlertItem {
    /// An item with only its type.
    pub fn new(alert_type: impl Into<String>) -> Self {
        AlertItem { alert_type: alert_type.into(), mime_type: None, source_uri: None, mark: None, data: None }
    }

    /// The importance, the default level when none was sent.
    pub fn effective_mark(&self) -> Mark {
        self.mark.unwrap_or_default()
    }

    /// `SourceURI` read as a ClientURI, when there is one.
    pub fn source_client_uri(&self) -> Option<Result<ClientUri, UriError>> {
        self.source_uri.as_deref().map(ClientUri::parse)
    }

    fn from_json(item: usize, value: &Value) -> Result<Self, AlertError> {
        let Value::Object(fields) = value else {
            return Err(AlertError::ItemNotAnObject { item, found: json_kind(value) });
        };
        let alert_type = optional_string(item, fields, "AlertType")?
            .filter(|alert_type| !alert_type.trim().is_empty())
            .ok_or(AlertError::MissingAlertType { item })?;
        let mark = match optional_string(item, fields, "Mark")? {
            Some(mark) => Some(
                Mark::from_wire(mark.trim()).ok_or_else(|| AlertError::UnknownMark { item, mark: mark.to_owned() })?,
            ),
            None => None,
        };
        let source_uri = optional_string(item, fields, "SourceURI")?.map(str::trim).filter(|uri| !uri.is_empty());
        Ok(AlertItem {
            alert_type: alert_type.to_owned(),
            mime_type: optional_string(item, fields, "MIMEType")?.map(str::to_owned),
            source_uri: source_uri.map(str::to_owned),
            mark,
            data: fields.get("Data").filter(|data| !data.is_null()).cloned(),
        })
    }
}

fn optional_string<'a>(
    item: usize,
    fields: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, AlertError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(AlertError::FieldNotAString { item, field, found: json_kind(other) }),
    }
}

impl Alert {
    /// An alert with these items.
    pub fn new(items: Vec<AlertItem>) -> Self {
        Alert { items }
    }

    /// Reads the value of an `"Alert"` field.
    pub fn from_json(value: &Value) -> Result<Self, AlertError> {
        let Value::Object(fields) = value else {
            return Err(AlertError::NotAnObject { found: json_kind(value) });
        };
        let items = match fields.get("Items") {
            None => return Err(AlertError::MissingItems),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(AlertError::ItemsNotAnArray { found: json_kind(other) });
            }
        };
        let items = items
            .iter()
            .enumerate()
            .map(|(index, item)| AlertItem::from_json(index + 1, item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Alert { items })
    }

    /// Parses a Generic Alert posted on its own (7.6, and EXEC's ServerURI, 5.4.5):
    ///
    /// ```text
    /// {"Alert": {"Items": [{"AlertType": "urn:oma:at:scomo:1.0:OperationComplete"}]}}
    /// ```
    pub fn parse_message(bytes: &[u8], limits: &ParseLimits) -> Result<Self, PackageError> {
        let object = read_object(bytes, limits)?;
        let alert = object.get("Alert").ok_or(PackageError::MissingField("Alert"))?;
        Ok(Alert::from_json(alert)?)
    }

    /// Encodes the alert on its own, as [`Alert::parse_message`] reads it.
    pub fn to_message_bytes(&self) -> Result<Vec<u8>, PackageError> {
        #[derive(serde::Serialize)]
        struct Message<'a> {
            #[serde(rename = "Alert")]
            alert: &'a Alert,
        }
        encode(&Message { alert: self })
    }
}

/// Reads an optional `"Alert"` field of a package object.
pub(super) fn optional_alert(object: &Map<String, Value>) -> Result<Option<Alert>, PackageError> {
    match object.get("Alert") {
        None | Some(Value::Null) => Ok(None),
        Some(alert) => Ok(Some(Alert::from_json(alert)?)),
    }
}

deserialize_with_from_json!(Alert);

impl<'de> serde::Deserialize<'de> for Mark {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads one alert item with the same leniency as inside a package (stored records, API input).
impl<'de> serde::Deserialize<'de> for AlertItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        AlertItem::from_json(0, &value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec_item() -> Value {
        json!({
            "AlertType": "urn:oma:at:scomo:1.0:OperationComplete",
            "MIMEType": "text/plain",
            "SourceURI": " urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1/Operations/DownloadInstall",
            "Mark": "warning",
            "Data": {}
        })
    }

    #[test]
    fn reads_the_spec_item_and_trims_the_source_uri() {
        let alert = Alert::from_json(&json!({"Items": [spec_item()]}));
        let Ok(Alert { items }) = alert else { panic!("spec alert must parse: {alert:?}") };
        let [item] = items.as_slice() else { panic!("one item expected") };
        assert_eq!(item.alert_type, "urn:oma:at:scomo:1.0:OperationComplete");
        assert_eq!(item.mime_type.as_deref(), Some("text/plain"));
        assert_eq!(
            item.source_uri.as_deref(),
            Some("urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1/Operations/DownloadInstall")
        );
        assert_eq!(item.mark, Some(Mark::Warning));
        assert_eq!(item.data, Some(json!({})));
        assert_eq!(item.source_client_uri().and_then(Result::ok).map(|uri| uri.path.len()), Some(4));
    }

    #[test]
    fn omitted_mark_defaults_to_informational_and_stays_omitted() {
        let alert = Alert::from_json(&json!({"Items": [{"AlertType": "urn:x:at", "Data": null}]}));
        let item = alert.ok().and_then(|alert| alert.items.into_iter().next());
        assert_eq!(item.as_ref().map(|item| item.mark), Some(None));
        assert_eq!(item.as_ref().map(AlertItem::effective_mark), Some(Mark::Informational));
        assert_eq!(item.as_ref().map(|item| item.data.clone()), Some(None));
        assert_eq!(item.map(|item| serde_json::to_value(item).ok()), Some(Some(json!({"AlertType": "urn:x:at"}))));
    }

    #[test]
    fn marks_are_case_insensitive_on_input_and_lower_case_on_output() {
        assert_eq!(Mark::from_wire("CRITICAL"), Some(Mark::Critical));
        assert_eq!("Harmless".parse::<Mark>(), Ok(Mark::Harmless));
        assert_eq!(Mark::from_wire("severe"), None);
        assert_eq!(serde_json::to_value(Mark::Indeterminate).ok(), Some(json!("indeterminate")));
        assert_eq!(
            Mark::ALL.map(Mark::as_str).join(","),
            "fatal,critical,minor,warning,informational,harmless,indeterminate"
        );
    }

    #[test]
    fn refuses_malformed_alerts_with_the_item_position() {
        let cases = [
            (json!([]), AlertError::NotAnObject { found: "an array" }),
            (json!({}), AlertError::MissingItems),
            (json!({"Items": {}}), AlertError::ItemsNotAnArray { found: "an object" }),
            (json!({"Items": [{"AlertType": "a"}, 3]}), AlertError::ItemNotAnObject { item: 2, found: "a number" }),
            (json!({"Items": [{"Mark": "minor"}]}), AlertError::MissingAlertType { item: 1 }),
            (json!({"Items": [{"AlertType": "  "}]}), AlertError::MissingAlertType { item: 1 }),
            (
                json!({"Items": [{"AlertType": "a", "MIMEType": 1}]}),
                AlertError::FieldNotAString { item: 1, field: "MIMEType", found: "a number" },
            ),
            (
                json!({"Items": [{"AlertType": "a", "Mark": "loud"}]}),
                AlertError::UnknownMark { item: 1, mark: "loud".to_owned() },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Alert::from_json(&input), Err(expected), "{input}");
        }
    }

    #[test]
    fn message_form_round_trips() {
        let mut item = AlertItem::new("urn:oma:at:scomo:1.0:OperationComplete");
        item.mark = Some(Mark::Fatal);
        item.data = Some(json!("disk full"));
        let alert = Alert::new(vec![item]);
        let bytes = alert.to_message_bytes();
        assert_eq!(
            bytes.as_ref().ok().and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok()),
            Some(json!({"Alert": {"Items": [{
                "AlertType": "urn:oma:at:scomo:1.0:OperationComplete", "Mark": "fatal", "Data": "disk full"
            }]}}))
        );
        let parsed = bytes.map(|bytes| Alert::parse_message(&bytes, &ParseLimits::default()));
        assert_eq!(parsed, Ok(Ok(alert)));
        assert_eq!(Alert::parse_message(b"{}", &ParseLimits::default()), Err(PackageError::MissingField("Alert")));
    }
}
