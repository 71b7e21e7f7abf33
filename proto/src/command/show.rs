//! SHOW (5.4.7): the client opens a web page for a user interaction, then goes on with the next command.

use super::{CommandError, ParameterReader};
use crate::uri::ServerUri;

/// `["SHOW", ServerURI]`
///
/// ```text
/// ["SHOW", "https://ui.example.com/consent?uiid=1234"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Show {
    server_uri: ServerUri,
}

impl Show {
    /// The page the client's browser loads.
    pub fn new(server_uri: ServerUri) -> Self {
        Show { server_uri }
    }

    /// The page the client's browser loads.
    pub fn server_uri(&self) -> &ServerUri {
        &self.server_uri
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("one ServerURI");
        reader.server_uri().map(Show::new)
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
        let wire = json!(["SHOW", "https://ui.example.com/consent?uiid=1234"]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Show(command)) = command else { panic!("expected SHOW") };
        assert_eq!(command.server_uri().as_str(), "https://ui.example.com/consent?uiid=1234");
    }

    #[test]
    fn refuses_missing_and_extra_parameters() {
        let error = Command::from_json(&json!(["SHOW"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "SHOW", found: 0, .. })),
            "{error:?}"
        );
        let error = Command::from_json(&json!(["SHOW", "https://a/", "https://b/"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "SHOW", found: 2, .. })),
            "{error:?}"
        );
    }
}
