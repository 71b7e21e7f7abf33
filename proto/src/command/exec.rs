//! EXEC (5.4.5): the client executes an executable node, optionally posting a Generic Alert with the outcome.

use super::{CommandError, CommandName, ParameterReader, single_target};
use crate::uri::{ClientUri, ServerUri};

/// `["EXEC", ClientURI, ServerURI?]`
///
/// ```text
/// ["EXEC", "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1/Operations/DownloadInstall",
///          "https://dms.example.com/alerts"]
/// ```
///
/// 5.4.5 executes "the node at the location ClientURI": a wildcard is refused,
/// so one command never starts several operations. With a ServerURI the
/// client posts the Generic Alert there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exec {
    client_uri: ClientUri,
    server_uri: Option<ServerUri>,
}

impl Exec {
    /// Fails when `client_uri` has a wildcard.
    pub fn new(client_uri: ClientUri, server_uri: Option<ServerUri>) -> Result<Self, CommandError> {
        Ok(Exec { client_uri: single_target(CommandName::Exec, client_uri)?, server_uri })
    }

    /// The node to execute.
    pub fn client_uri(&self) -> &ClientUri {
        &self.client_uri
    }

    /// Where the client posts the Generic Alert, if anywhere.
    pub fn server_uri(&self) -> Option<&ServerUri> {
        self.server_uri.as_ref()
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("a ClientURI and at most one ServerURI");
        let client_uri = reader.client_uri()?;
        let server_uri = reader.optional_server_uri()?;
        Exec::new(client_uri, server_uri)
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.client_uri.to_string());
        parameters.extend(self.server_uri.iter().map(ServerUri::to_string));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    const NODE: &str = "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1/Operations/DownloadInstall";

    #[test]
    fn parses_with_and_without_server_uri() {
        let bare = Command::from_json(&json!(["EXEC", NODE]));
        let Ok(Command::Exec(bare)) = bare else { panic!("expected EXEC, got {bare:?}") };
        assert_eq!(bare.client_uri().to_string(), NODE);
        assert_eq!(bare.server_uri(), None);

        let wire = json!(["EXEC", NODE, "https://dms.example.com/alerts"]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Exec(command)) = command else { panic!("expected EXEC") };
        assert_eq!(command.server_uri().map(|uri| uri.as_str()), Some("https://dms.example.com/alerts"));
    }

    #[test]
    fn refuses_wildcards_swapped_parameters_and_extras() {
        let error = Command::from_json(&json!(["EXEC", "urn:oma:mo:oma-scomo:1.0/*/Operations/Install"])).err();
        assert!(matches!(error, Some(CommandError::WildcardNotAllowed { command: "EXEC", .. })), "{error:?}");
        // The trailing "/" leaves an empty node name, which no ClientURI has.
        let error = Command::from_json(&json!(["EXEC", "https://dms.example.com/", NODE])).err();
        assert!(
            matches!(error, Some(CommandError::InvalidClientUri { command: "EXEC", position: 1, .. })),
            "{error:?}"
        );
        let error = Command::from_json(&json!(["EXEC", NODE, "https://a/", "https://b/"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "EXEC", found: 3, .. })),
            "{error:?}"
        );
    }
}
