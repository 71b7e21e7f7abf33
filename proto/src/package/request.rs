//! Package#2 (5.2.3, 7.3): the server's ordered list of DM commands, plus this project's AlertStatus extension.
//!
//! ```text
//! {"CMD": [["CONT", "https://dms.example.com/dm20/s/8f14e4"],
//!          ["GET", "urn:oma:mo:oma-sessioninfomo:1.0//CBT"]],
//!  "AlertStatus": [200]}
//! ```
//!
//! The schema names the list `"Cmd"`, every example `"CMD"`: emitted as
//! `"CMD"`, either accepted, both at once refused. `"AlertStatus"` (docs/protocol-decisions.md)
//! answers each Generic Alert item of the package being answered, in order;
//! it is left out when empty.

use serde_json::{Map, Value};

use super::{PackageError, ParseLimits, encode, expect_object, read_object};
use crate::command::{Command, CommandError, deserialize_with_from_json, json_kind};
use crate::status::StatusCode;

/// Package#2, sent with media type [`REQUEST_JSON`](super::media::REQUEST_JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RequestPackage {
    /// The commands, processed by the client in this order.
    #[serde(rename = "CMD")]
    pub commands: Vec<Command>,
    /// One status per Generic Alert item of the package this one answers.
    #[serde(rename = "AlertStatus", skip_serializing_if = "Vec::is_empty")]
    pub alert_statuses: Vec<StatusCode>,
}

/// A Package#2 read command by command, so a client can answer the good
/// commands and give each bad one the status of its error (400 or 501).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LenientRequestPackage {
    /// One entry per element of `CMD`, in order.
    pub commands: Vec<Result<Command, CommandError>>,
    /// As in [`RequestPackage::alert_statuses`].
    pub alert_statuses: Vec<StatusCode>,
}

impl RequestPackage {
    /// A package of these commands, with no alert statuses.
    pub fn new(commands: Vec<Command>) -> Self {
        RequestPackage { commands, alert_statuses: Vec::new() }
    }

    /// Parses a Package#2 body; the first bad command fails the whole package.
    pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Self, PackageError> {
        Self::from_object(&read_object(bytes, limits)?)
    }

    /// Parses a Package#2 body, keeping each command's own result. Fails only
    /// when the package as a whole is unreadable (size, depth, JSON, no `CMD`
    /// array, a bad `AlertStatus`).
    pub fn parse_lenient(bytes: &[u8], limits: &ParseLimits) -> Result<LenientRequestPackage, PackageError> {
        Self::lenient_from_object(&read_object(bytes, limits)?)
    }

    /// Reads an already parsed Package#2; the first bad command fails it.
    pub fn from_json(value: &Value) -> Result<Self, PackageError> {
        Self::from_object(expect_object(value)?)
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, PackageError> {
        let lenient = Self::lenient_from_object(object)?;
        let commands = lenient
            .commands
            .into_iter()
            .enumerate()
            .map(|(index, command)| command.map_err(|source| PackageError::Command { position: index + 1, source }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RequestPackage { commands, alert_statuses: lenient.alert_statuses })
    }

    fn lenient_from_object(object: &Map<String, Value>) -> Result<LenientRequestPackage, PackageError> {
        let (field, commands) = match (object.get("CMD"), object.get("Cmd")) {
            (Some(_), Some(_)) => return Err(PackageError::BothCommandKeys),
            (Some(commands), None) => ("CMD", commands),
            (None, Some(commands)) => ("Cmd", commands),
            (None, None) => return Err(PackageError::MissingField("CMD")),
        };
        let Value::Array(commands) = commands else {
            return Err(PackageError::WrongFieldType { field, expected: "an array", found: json_kind(commands) });
        };
        Ok(LenientRequestPackage {
            commands: commands.iter().map(Command::from_json).collect(),
            alert_statuses: read_alert_statuses(object)?,
        })
    }

    /// The JSON body.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, PackageError> {
        encode(self)
    }

    /// True when the package holds END: the client then sends no Package#3 (5.4.9).
    pub fn ends_session(&self) -> bool {
        self.commands.contains(&Command::End)
    }
}

impl LenientRequestPackage {
    /// True when a well-formed END is among the commands, so no Package#3
    /// follows. A malformed one (`["END", "x"]`) does not count: it is
    /// answered with 400 like any bad command, which needs a Package#3.
    pub fn ends_session(&self) -> bool {
        self.commands.contains(&Ok(Command::End))
    }
}

fn read_alert_statuses(object: &Map<String, Value>) -> Result<Vec<StatusCode>, PackageError> {
    let statuses = match object.get("AlertStatus") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(statuses)) => statuses,
        Some(other) => {
            return Err(PackageError::WrongFieldType {
                field: "AlertStatus",
                expected: "an array of status codes",
                found: json_kind(other),
            });
        }
    };
    statuses
        .iter()
        .enumerate()
        .map(|(index, code)| {
            StatusCode::from_json(code).map_err(|source| PackageError::AlertStatus { position: index + 1, source })
        })
        .collect()
}

deserialize_with_from_json!(RequestPackage);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::status::StatusCodeError;

    fn bytes(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn accepts_cmd_in_either_spelling_and_emits_cmd() {
        let limits = ParseLimits::default();
        let upper = RequestPackage::parse(&bytes(json!({"CMD": [["END"]]})), &limits);
        let schema = RequestPackage::parse(&bytes(json!({"Cmd": [["END"]]})), &limits);
        assert_eq!(upper, Ok(RequestPackage::new(vec![Command::End])));
        assert_eq!(schema, Ok(RequestPackage::new(vec![Command::End])));
        assert_eq!(
            RequestPackage::new(vec![Command::End]).to_json_bytes().map(String::from_utf8),
            Ok(Ok(r#"{"CMD":[["END"]]}"#.to_owned()))
        );
        assert_eq!(
            RequestPackage::parse(&bytes(json!({"CMD": [], "Cmd": []})), &limits),
            Err(PackageError::BothCommandKeys)
        );
        assert_eq!(RequestPackage::parse(b"{}", &limits), Err(PackageError::MissingField("CMD")));
        assert_eq!(
            RequestPackage::parse(&bytes(json!({"Cmd": {}})), &limits),
            Err(PackageError::WrongFieldType { field: "Cmd", expected: "an array", found: "an object" })
        );
    }

    #[test]
    fn alert_status_is_read_and_emitted_only_when_present() {
        let package = RequestPackage::from_json(&json!({"CMD": [], "AlertStatus": [200, "415"]}));
        assert_eq!(
            package.as_ref().map(|package| package.alert_statuses.clone()),
            Ok(vec![StatusCode::OK, StatusCode::UNSUPPORTED_MEDIA_TYPE])
        );
        assert_eq!(
            package.map(|package| package.to_json_bytes().map(String::from_utf8)),
            Ok(Ok(Ok(r#"{"CMD":[],"AlertStatus":[200,415]}"#.to_owned())))
        );
        assert_eq!(
            RequestPackage::from_json(&json!({"CMD": [], "AlertStatus": [200, 99]})),
            Err(PackageError::AlertStatus { position: 2, source: StatusCodeError::OutOfRange(99) })
        );
    }

    #[test]
    fn strict_parse_fails_on_the_first_bad_command_lenient_keeps_going() {
        let body = bytes(json!({"CMD": [
            ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"],
            ["FETCH", "x"],
            ["DELETE"],
            ["END"]
        ]}));
        let limits = ParseLimits::default();
        assert_eq!(
            RequestPackage::parse(&body, &limits),
            Err(PackageError::Command { position: 2, source: CommandError::UnknownCommand("FETCH".to_owned()) })
        );
        let lenient = RequestPackage::parse_lenient(&body, &limits).unwrap();
        let statuses: Vec<u16> = lenient
            .commands
            .iter()
            .map(|command| match command {
                Ok(_) => 200,
                Err(error) => u16::from(error.status_code()),
            })
            .collect();
        assert_eq!(statuses, [200, 501, 400, 200]);
        assert!(lenient.ends_session());
        assert!(lenient.commands.first().is_some_and(|command| command.as_ref().is_ok_and(Command::is_get)));
    }
}
