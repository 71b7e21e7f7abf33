//! Package#3 (5.2.4, 7.4): the client's status for each command of the Package#2, in order, and new alerts.
//!
//! ```text
//! {"Status": [[200], [201, "urn:oma:mo:oma-mo:1.0/miid1/"], [404]],
//!  "Alert": {"Items": [...]}}
//! ```
//!
//! Each status is accepted as a number (`200`, Appendix E), a string of
//! digits (`"200"`, the schema), or an array `[code, extra...]` whose code is
//! either (7.4); it is always emitted as an array with a numeric code. The
//! extra data is kept as JSON values: 5.2.4 only says "additional
//! information", e.g. where HGET stored its data.

use serde_json::{Map, Value};

use super::alert::optional_alert;
use super::{Alert, PackageError, ParseLimits, encode, expect_object, read_object};
use crate::command::{deserialize_with_from_json, json_kind};
use crate::status::StatusCode;

/// Package#3, sent with media type [`RESPONSE_JSON`](super::media::RESPONSE_JSON),
/// or as the first part of a multipart body when GETs return data (Appendix E).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ResponsePackage {
    /// One status per command of the Package#2 answered, in the same order.
    #[serde(rename = "Status")]
    pub statuses: Vec<CommandStatus>,
    /// Generic Alerts raised during the session.
    #[serde(rename = "Alert", skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
}

/// The status of one command, with any extra data: `[201, "urn:oma:mo:oma-mo:1.0/miid1/"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandStatus {
    pub code: StatusCode,
    pub extra: Vec<Value>,
}

impl CommandStatus {
    /// A bare status: `[404]`.
    pub fn new(code: StatusCode) -> Self {
        CommandStatus { code, extra: Vec::new() }
    }

    /// A status with a location, as HGET answers when the client chose where to store: `[201, "urn:..."]`.
    pub fn with_location(code: StatusCode, location: impl Into<String>) -> Self {
        CommandStatus { code, extra: vec![Value::String(location.into())] }
    }

    /// The first extra value when it is a string: the location for HGET.
    pub fn location(&self) -> Option<&str> {
        self.extra.first().and_then(Value::as_str)
    }

    fn from_json(position: usize, value: &Value) -> Result<Self, PackageError> {
        let code_error = |source| PackageError::Status { position, source };
        match value {
            Value::Array(elements) => {
                let (code, extra) = elements.split_first().ok_or(PackageError::EmptyStatus { position })?;
                Ok(CommandStatus { code: StatusCode::from_json(code).map_err(code_error)?, extra: extra.to_vec() })
            }
            code => Ok(CommandStatus::new(StatusCode::from_json(code).map_err(code_error)?)),
        }
    }
}

impl From<StatusCode> for CommandStatus {
    fn from(code: StatusCode) -> Self {
        CommandStatus::new(code)
    }
}

impl serde::Serialize for CommandStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut sequence = serializer.serialize_seq(Some(self.extra.len() + 1))?;
        sequence.serialize_element(&self.code)?;
        for extra in &self.extra {
            sequence.serialize_element(extra)?;
        }
        sequence.end()
    }
}

impl ResponsePackage {
    /// A package of these statuses, without alert.
    pub fn new(statuses: Vec<CommandStatus>) -> Self {
        ResponsePackage { statuses, alert: None }
    }

    /// Parses a Package#3 body.
    pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Self, PackageError> {
        Self::from_object(&read_object(bytes, limits)?)
    }

    /// Reads an already parsed Package#3.
    pub fn from_json(value: &Value) -> Result<Self, PackageError> {
        Self::from_object(expect_object(value)?)
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, PackageError> {
        let statuses = match object.get("Status") {
            None => return Err(PackageError::MissingField("Status")),
            Some(Value::Array(statuses)) => statuses,
            Some(other) => {
                return Err(PackageError::WrongFieldType {
                    field: "Status",
                    expected: "an array",
                    found: json_kind(other),
                });
            }
        };
        let statuses = statuses
            .iter()
            .enumerate()
            .map(|(index, status)| CommandStatus::from_json(index + 1, status))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResponsePackage { statuses, alert: optional_alert(object)? })
    }

    /// The JSON body.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, PackageError> {
        encode(self)
    }

    /// The status of the command at 1-based `position` of the Package#2.
    pub fn status_at(&self, position: usize) -> Option<&CommandStatus> {
        position.checked_sub(1).and_then(|index| self.statuses.get(index))
    }
}

deserialize_with_from_json!(ResponsePackage);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::status::StatusCodeError;

    #[test]
    fn accepts_numbers_digit_strings_and_arrays_and_emits_arrays() {
        let package = ResponsePackage::from_json(&json!({"Status": [
            200, "404", [201, "urn:oma:mo:oma-mo:1.0/miid1/"], ["304"], [1250, {"detail": 1}, 7]
        ]}));
        let expected = ResponsePackage::new(vec![
            CommandStatus::new(StatusCode::OK),
            CommandStatus::new(StatusCode::NOT_FOUND),
            CommandStatus::with_location(StatusCode::CREATED, "urn:oma:mo:oma-mo:1.0/miid1/"),
            CommandStatus::new(StatusCode::NOT_MODIFIED),
            CommandStatus { code: StatusCode::new(1250).unwrap(), extra: vec![json!({"detail": 1}), json!(7)] },
        ]);
        assert_eq!(package.as_ref(), Ok(&expected));
        assert_eq!(expected.status_at(3).and_then(CommandStatus::location), Some("urn:oma:mo:oma-mo:1.0/miid1/"));
        assert_eq!(expected.status_at(0), None);
        assert_eq!(
            expected.to_json_bytes().map(String::from_utf8),
            Ok(Ok(r#"{"Status":[[200],[404],[201,"urn:oma:mo:oma-mo:1.0/miid1/"],[304],[1250,{"detail":1},7]]}"#
                .to_owned()))
        );
    }

    #[test]
    fn refuses_bad_statuses_with_their_position() {
        let cases = [
            (json!({}), PackageError::MissingField("Status")),
            (
                json!({"Status": 200}),
                PackageError::WrongFieldType { field: "Status", expected: "an array", found: "a number" },
            ),
            (json!({"Status": [200, []]}), PackageError::EmptyStatus { position: 2 }),
            (json!({"Status": [[99]]}), PackageError::Status { position: 1, source: StatusCodeError::OutOfRange(99) }),
            (
                json!({"Status": [200, 200, "OK"]}),
                PackageError::Status { position: 3, source: StatusCodeError::NotANumber("OK".to_owned()) },
            ),
            (
                json!({"Status": [[true]]}),
                PackageError::Status { position: 1, source: StatusCodeError::NotANumber("true".to_owned()) },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(ResponsePackage::from_json(&input), Err(expected), "{input}");
        }
    }
}
