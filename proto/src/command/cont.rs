//! CONT (5.4.8): the client sends every further Package#3 of the session to a new ServerURI.

use super::{CommandError, ParameterReader};
use crate::uri::ServerUri;

/// `["CONT", ServerURI]`
///
/// ```text
/// ["CONT", "https://dms.example.com/dm20/session/8f14e45fceea167a"]
/// ```
///
/// This project's server sends CONT first in a session's first Package#2 to
/// name the session (docs/protocol-decisions.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cont {
    server_uri: ServerUri,
}

impl Cont {
    /// Where the following Package#3s go.
    pub fn new(server_uri: ServerUri) -> Self {
        Cont { server_uri }
    }

    /// Where the following Package#3s go.
    pub fn server_uri(&self) -> &ServerUri {
        &self.server_uri
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("one ServerURI");
        reader.server_uri().map(Cont::new)
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.server_uri.to_string());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    #[test]
    fn parses_one_server_uri() {
        let wire = json!(["CONT", "https://dms.example.com/dm20/session/8f14e45fceea167a"]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Cont(command)) = command else { panic!("expected CONT") };
        assert_eq!(command.server_uri().as_str(), "https://dms.example.com/dm20/session/8f14e45fceea167a");
    }

    #[test]
    fn refuses_a_missing_or_empty_server_uri() {
        let error = Command::from_json(&json!(["CONT"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "CONT", found: 0, .. })),
            "{error:?}"
        );
        let error = Command::from_json(&json!(["CONT", ""])).err();
        assert!(
            matches!(error, Some(CommandError::InvalidServerUri { command: "CONT", position: 1, .. })),
            "{error:?}"
        );
    }
}
