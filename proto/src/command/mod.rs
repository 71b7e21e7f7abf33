//! The ten DM commands of 5.4 as the Package#2 carries them: a JSON array of the name, then the parameters in order.
//!
//! ```text
//! ["HGET", "https://dms.example.com/new_mo", "urn:oma:mo:oma-dm-devinfo:1.2//"]
//! ["GET", "urn:oma:mo:oma-sessioninfomo:1.0//CBT"]
//! ["END"]
//! ```
//!
//! Each command lives in its own file, which parses its parameters, checks
//! them and writes them back. Decisions where 5.4 is silent:
//! - Names are emitted in upper case as 5.4 writes them; any ASCII case is
//!   accepted (`"get"`), since no two commands differ only in case.
//! - Every parameter is a JSON string; anything else is a bad command (400).
//! - Wildcards (`*` in a ClientURI) are accepted only where the command
//!   naturally works on a list of MO data: GET (6.1.2 returns a list), HPUT
//!   and HPOST (one array of all data). HGET stores at one place, DELETE and
//!   EXEC name "the node" (5.4.4, 5.4.5), so a wildcard there is a bad command:
//!   a typo must not delete or execute a whole subtree. x-names resolve to one
//!   node and are fine everywhere.
//!
//! A client must answer every command of a Package#2 even when one is bad:
//! [`Command::from_json`] fails per command with a [`CommandError`] whose
//! [`status_code`](CommandError::status_code) is the status to answer (400
//! for bad parameters, 501 for an unknown name).

mod cont;
mod default;
mod delete;
mod end;
mod exec;
mod get;
mod hget;
mod hpost;
mod hput;
mod show;

use crate::status::StatusCode;
use std::fmt;

use serde_json::Value;

pub use cont::Cont;
pub use default::{Default, Moid};
pub use delete::Delete;
pub use exec::Exec;
pub use get::Get;
pub use hget::Hget;
pub use hpost::Hpost;
pub use hput::Hput;
pub use show::Show;

use crate::uri::{ClientUri, ServerUri, UriError};

/// One DM command of a Package#2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `["HGET", ServerURI, ClientURI?]` (5.4.1).
    Hget(Hget),
    /// `["HPUT", ServerURI, ClientURI*]` (5.4.2).
    Hput(Hput),
    /// `["HPOST", ServerURI, ClientURI*]` (5.4.3).
    Hpost(Hpost),
    /// `["DELETE", ClientURI]` (5.4.4).
    Delete(Delete),
    /// `["EXEC", ClientURI, ServerURI?]` (5.4.5).
    Exec(Exec),
    /// `["GET", ClientURI]` (5.4.6).
    Get(Get),
    /// `["SHOW", ServerURI]` (5.4.7).
    Show(Show),
    /// `["CONT", ServerURI]` (5.4.8).
    Cont(Cont),
    /// `["END"]` (5.4.9).
    End,
    /// `["DEFAULT", ServerURI, MOID]` (5.4.10).
    Default(Default),
}

/// The name of a command, as 5.4 writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandName {
    Hget,
    Hput,
    Hpost,
    Delete,
    Exec,
    Get,
    Show,
    Cont,
    End,
    Default,
}

/// Why one command of a Package#2 was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("a command must be a JSON array [name, parameters...], found {found}")]
    NotAnArray { found: &'static str },
    #[error("empty command array: the first element must be the command name")]
    MissingName,
    #[error("the command name must be a string, found {found}")]
    NameNotAString { found: &'static str },
    #[error("unknown command {0:?}: expected HGET, HPUT, HPOST, DELETE, EXEC, GET, SHOW, CONT, END or DEFAULT")]
    UnknownCommand(String),
    #[error("{command} takes {expected}, found {found} parameter(s)")]
    WrongParameterCount { command: &'static str, expected: &'static str, found: usize },
    #[error("{command} parameter {position} must be a string, found {found}")]
    ParameterNotAString { command: &'static str, position: usize, found: &'static str },
    #[error("{command} parameter {position} is not a valid ClientURI: {source}")]
    InvalidClientUri { command: &'static str, position: usize, source: UriError },
    #[error("{command} parameter {position} is not a valid ServerURI: {source}")]
    InvalidServerUri { command: &'static str, position: usize, source: UriError },
    #[error("{command} does not accept a wildcard ClientURI ({uri}): it must name exactly one node")]
    WildcardNotAllowed { command: &'static str, uri: String },
    #[error("{command} parameter {position}: {source}")]
    InvalidMoid { command: &'static str, position: usize, source: MoidError },
}

/// Why a MOID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoidError {
    #[error("invalid MOID {0:?}: expected a URN such as urn:oma:mo:oma-dm-devinfo:1.2")]
    Invalid(String),
}

impl CommandError {
    /// The status a client answers this command with: 501 for an unknown
    /// command name, 400 for everything else (malformed syntax, Appendix C).
    pub fn status_code(&self) -> StatusCode {
        match self {
            CommandError::UnknownCommand(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl CommandName {
    /// Every command, in the order of 5.4.
    pub const ALL: [CommandName; 10] = [
        CommandName::Hget,
        CommandName::Hput,
        CommandName::Hpost,
        CommandName::Delete,
        CommandName::Exec,
        CommandName::Get,
        CommandName::Show,
        CommandName::Cont,
        CommandName::End,
        CommandName::Default,
    ];

    /// The wire name, upper case: `"HGET"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Hget => "HGET",
            CommandName::Hput => "HPUT",
            CommandName::Hpost => "HPOST",
            CommandName::Delete => "DELETE",
            CommandName::Exec => "EXEC",
            CommandName::Get => "GET",
            CommandName::Show => "SHOW",
            CommandName::Cont => "CONT",
            CommandName::End => "END",
            CommandName::Default => "DEFAULT",
        }
    }

    /// Recognises a wire name in any ASCII case; `None` for an unknown name.
    pub fn from_wire(name: &str) -> Option<CommandName> {
        CommandName::ALL.into_iter().find(|known| known.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    /// Which command this is.
    pub fn command_name(&self) -> CommandName {
        match self {
            Command::Hget(_) => CommandName::Hget,
            Command::Hput(_) => CommandName::Hput,
            Command::Hpost(_) => CommandName::Hpost,
            Command::Delete(_) => CommandName::Delete,
            Command::Exec(_) => CommandName::Exec,
            Command::Get(_) => CommandName::Get,
            Command::Show(_) => CommandName::Show,
            Command::Cont(_) => CommandName::Cont,
            Command::End => CommandName::End,
            Command::Default(_) => CommandName::Default,
        }
    }

    /// The wire name, upper case: `"GET"`.
    pub fn name(&self) -> &'static str {
        self.command_name().as_str()
    }

    /// Parses one element of the Package#2 `CMD` array.
    pub fn from_json(value: &Value) -> Result<Command, CommandError> {
        let Value::Array(elements) = value else {
            return Err(CommandError::NotAnArray { found: json_kind(value) });
        };
        let (name, parameters) = elements.split_first().ok_or(CommandError::MissingName)?;
        let Value::String(name) = name else {
            return Err(CommandError::NameNotAString { found: json_kind(name) });
        };
        let command_name = CommandName::from_wire(name).ok_or_else(|| CommandError::UnknownCommand(name.clone()))?;
        let mut reader = ParameterReader::new(command_name, parameters);
        let command = match command_name {
            CommandName::Hget => Command::Hget(Hget::read(&mut reader)?),
            CommandName::Hput => Command::Hput(Hput::read(&mut reader)?),
            CommandName::Hpost => Command::Hpost(Hpost::read(&mut reader)?),
            CommandName::Delete => Command::Delete(Delete::read(&mut reader)?),
            CommandName::Exec => Command::Exec(Exec::read(&mut reader)?),
            CommandName::Get => Command::Get(Get::read(&mut reader)?),
            CommandName::Show => Command::Show(Show::read(&mut reader)?),
            CommandName::Cont => Command::Cont(Cont::read(&mut reader)?),
            CommandName::End => {
                end::read(&mut reader)?;
                Command::End
            }
            CommandName::Default => Command::Default(Default::read(&mut reader)?),
        };
        reader.finish()?;
        Ok(command)
    }

    /// The parameters in wire order, as the strings sent after the name.
    pub fn parameters(&self) -> Vec<String> {
        let mut parameters = Vec::new();
        match self {
            Command::Hget(command) => command.write_parameters(&mut parameters),
            Command::Hput(command) => command.write_parameters(&mut parameters),
            Command::Hpost(command) => command.write_parameters(&mut parameters),
            Command::Delete(command) => command.write_parameters(&mut parameters),
            Command::Exec(command) => command.write_parameters(&mut parameters),
            Command::Get(command) => command.write_parameters(&mut parameters),
            Command::Show(command) => command.write_parameters(&mut parameters),
            Command::Cont(command) => command.write_parameters(&mut parameters),
            Command::End => {}
            Command::Default(command) => command.write_parameters(&mut parameters),
        }
        parameters
    }

    /// The command as its JSON array: `["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]`.
    pub fn to_json(&self) -> Value {
        let name = Value::String(self.name().to_owned());
        Value::Array(std::iter::once(name).chain(self.parameters().into_iter().map(Value::String)).collect())
    }

    /// True for GET, whose 200 answer carries data in a multipart part (Appendix E).
    pub fn is_get(&self) -> bool {
        matches!(self, Command::Get(_))
    }
}

impl fmt::Display for Command {
    /// The JSON array form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl serde::Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let parameters = self.parameters();
        let mut sequence = serializer.serialize_seq(Some(parameters.len() + 1))?;
        sequence.serialize_element(self.name())?;
        for parameter in &parameters {
            sequence.serialize_element(parameter)?;
        }
        sequence.end()
    }
}

/// Implements `Deserialize` by reading a `serde_json::Value` and handing it to
/// the type's `from_json`, so serde users get the same checks and messages.
macro_rules! deserialize_with_from_json {
    ($($type:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(deserializer)?;
                <$type>::from_json(&value).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use deserialize_with_from_json;

deserialize_with_from_json!(Command);

macro_rules! command_from {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Command {
            fn from(command: $variant) -> Command {
                Command::$variant(command)
            }
        }
    )*};
}
// HPOST has HPUT's type (hpost.rs), so a bare `Hput` converts to the HPUT command.
command_from!(Hget, Hput, Delete, Exec, Get, Show, Cont, Default);

/// What a JSON value is, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Walks the parameters of one command in order, so each command file states
/// only what it expects (`server_uri`, then `optional_client_uri`, ...).
pub(crate) struct ParameterReader<'a> {
    command: CommandName,
    parameters: &'a [Value],
    /// 1-based position of the next parameter, for error messages.
    next_position: usize,
    /// The parameter list the command expects, for count errors.
    expected: &'static str,
}

impl<'a> ParameterReader<'a> {
    fn new(command: CommandName, parameters: &'a [Value]) -> Self {
        ParameterReader { command, parameters, next_position: 1, expected: "no parameters" }
    }

    /// States the command's parameter list once, for count error messages.
    pub(crate) fn expect(&mut self, expected: &'static str) {
        self.expected = expected;
    }

    fn count_error(&self) -> CommandError {
        CommandError::WrongParameterCount {
            command: self.command.as_str(),
            expected: self.expected,
            found: self.parameters.len() + self.next_position - 1,
        }
    }

    fn next_string(&mut self) -> Option<Result<(usize, &'a str), CommandError>> {
        let (first, rest) = self.parameters.split_first()?;
        let position = self.next_position;
        self.parameters = rest;
        self.next_position += 1;
        Some(match first {
            Value::String(text) => Ok((position, text.as_str())),
            other => Err(CommandError::ParameterNotAString {
                command: self.command.as_str(),
                position,
                found: json_kind(other),
            }),
        })
    }

    fn required_string(&mut self) -> Result<(usize, &'a str), CommandError> {
        match self.next_string() {
            Some(result) => result,
            None => Err(self.count_error()),
        }
    }

    fn parse_server_uri(&self, position: usize, text: &str) -> Result<ServerUri, CommandError> {
        ServerUri::parse(text).map_err(|source| CommandError::InvalidServerUri {
            command: self.command.as_str(),
            position,
            source,
        })
    }

    fn parse_client_uri(&self, position: usize, text: &str) -> Result<ClientUri, CommandError> {
        ClientUri::parse(text).map_err(|source| CommandError::InvalidClientUri {
            command: self.command.as_str(),
            position,
            source,
        })
    }

    pub(crate) fn server_uri(&mut self) -> Result<ServerUri, CommandError> {
        let (position, text) = self.required_string()?;
        self.parse_server_uri(position, text)
    }

    pub(crate) fn optional_server_uri(&mut self) -> Result<Option<ServerUri>, CommandError> {
        let Some(next) = self.next_string() else {
            return Ok(None);
        };
        let (position, text) = next?;
        self.parse_server_uri(position, text).map(Some)
    }

    pub(crate) fn client_uri(&mut self) -> Result<ClientUri, CommandError> {
        let (position, text) = self.required_string()?;
        self.parse_client_uri(position, text)
    }

    pub(crate) fn optional_client_uri(&mut self) -> Result<Option<ClientUri>, CommandError> {
        let Some(next) = self.next_string() else {
            return Ok(None);
        };
        let (position, text) = next?;
        self.parse_client_uri(position, text).map(Some)
    }

    pub(crate) fn remaining_client_uris(&mut self) -> Result<Vec<ClientUri>, CommandError> {
        let mut uris = Vec::with_capacity(self.parameters.len());
        while let Some(uri) = self.optional_client_uri()? {
            uris.push(uri);
        }
        Ok(uris)
    }

    pub(crate) fn moid(&mut self) -> Result<Moid, CommandError> {
        let (position, text) = self.required_string()?;
        Moid::parse(text).map_err(|source| CommandError::InvalidMoid {
            command: self.command.as_str(),
            position,
            source,
        })
    }

    /// Fails when parameters are left over.
    fn finish(&self) -> Result<(), CommandError> {
        if self.parameters.is_empty() { Ok(()) } else { Err(self.count_error()) }
    }
}

/// Refuses a wildcard ClientURI for commands that must name exactly one node.
pub(crate) fn single_target(command: CommandName, uri: ClientUri) -> Result<ClientUri, CommandError> {
    if uri.has_wildcard() {
        return Err(CommandError::WildcardNotAllowed { command: command.as_str(), uri: uri.to_string() });
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<Command, CommandError> {
        Command::from_json(&value)
    }

    #[test]
    fn structural_errors_are_400_and_unknown_names_501() {
        let cases = [
            (json!("GET"), CommandError::NotAnArray { found: "a string" }),
            (json!([]), CommandError::MissingName),
            (json!([7]), CommandError::NameNotAString { found: "a number" }),
            (json!(["FETCH", "x"]), CommandError::UnknownCommand("FETCH".to_owned())),
        ];
        for (input, expected) in cases {
            let error = parse(input.clone()).err();
            assert_eq!(error.as_ref(), Some(&expected), "{input}");
        }
        assert_eq!(CommandError::UnknownCommand("FETCH".to_owned()).status_code(), 501);
        assert_eq!(CommandError::MissingName.status_code(), 400);
    }

    #[test]
    fn names_are_accepted_in_any_case_and_emitted_upper_case() {
        let command = parse(json!(["get", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]));
        assert_eq!(command.as_ref().map(Command::name), Ok("GET"));
        assert_eq!(
            command.map(|command| command.to_json()),
            Ok(json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]))
        );
        assert_eq!(CommandName::from_wire("Default"), Some(CommandName::Default));
        assert_eq!(CommandName::from_wire("GETS"), None);
    }

    #[test]
    fn count_errors_report_what_was_expected_and_found() {
        let error = parse(json!(["GET"])).err();
        assert_eq!(
            error,
            Some(CommandError::WrongParameterCount { command: "GET", expected: "one ClientURI", found: 0 })
        );
        let error = parse(json!(["GET", "urn:oma:mo:a:1//", "urn:oma:mo:b:1//"])).err();
        assert_eq!(
            error,
            Some(CommandError::WrongParameterCount { command: "GET", expected: "one ClientURI", found: 2 })
        );
    }

    #[test]
    fn parameters_must_be_strings() {
        let error = parse(json!(["SHOW", 42])).err();
        assert_eq!(error, Some(CommandError::ParameterNotAString { command: "SHOW", position: 1, found: "a number" }));
        let error = parse(json!(["HPUT", "https://dms.example.com/", "urn:oma:mo:a:1//", null])).err();
        assert_eq!(error, Some(CommandError::ParameterNotAString { command: "HPUT", position: 3, found: "null" }));
    }

    #[test]
    fn serde_uses_the_array_form() {
        let command: Result<Command, _> = serde_json::from_str(r#"["CONT","https://dms.example.com/s/1"]"#);
        let command = command.ok();
        assert_eq!(command.as_ref().map(Command::name), Some("CONT"));
        assert_eq!(
            command.and_then(|command| serde_json::to_string(&command).ok()),
            Some(r#"["CONT","https://dms.example.com/s/1"]"#.to_owned())
        );
        assert!(serde_json::from_str::<Command>(r#"["CONT"]"#).is_err());
        assert_eq!(Command::End.to_string(), r#"["END"]"#);
    }
}
