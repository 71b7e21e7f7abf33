//! DELETE (5.4.4): the client deletes a node and everything below it.

use super::{CommandError, CommandName, ParameterReader, single_target};
use crate::uri::ClientUri;

/// `["DELETE", ClientURI]`
///
/// ```text
/// ["DELETE", "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1"]
/// ```
///
/// 5.4.4 deletes "the node at the location ClientURI": a wildcard, which could
/// wipe a whole level of the tree by mistake, is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    client_uri: ClientUri,
}

impl Delete {
    /// Fails when `client_uri` has a wildcard.
    pub fn new(client_uri: ClientUri) -> Result<Self, CommandError> {
        Ok(Delete { client_uri: single_target(CommandName::Delete, client_uri)? })
    }

    /// The node to delete, with its subtree.
    pub fn client_uri(&self) -> &ClientUri {
        &self.client_uri
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("one ClientURI");
        Delete::new(reader.client_uri()?)
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.client_uri.to_string());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    #[test]
    fn parses_one_client_uri() {
        let wire = json!(["DELETE", "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1"]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Delete(command)) = command else { panic!("expected DELETE") };
        assert_eq!(command.client_uri().path.len(), 2);
    }

    #[test]
    fn refuses_wildcards_and_wrong_counts() {
        let error = Command::from_json(&json!(["DELETE", "urn:oma:mo:moid:1.0/left/Data/*"])).err();
        assert_eq!(
            error,
            Some(CommandError::WildcardNotAllowed {
                command: "DELETE",
                uri: "urn:oma:mo:moid:1.0/left/Data/*".to_owned()
            })
        );
        let error = Command::from_json(&json!(["DELETE"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "DELETE", found: 0, .. })),
            "{error:?}"
        );
        let error = Command::from_json(&json!(["DELETE", "urn:oma:mo:a:1//", "urn:oma:mo:a:1//"])).err();
        assert!(matches!(error, Some(CommandError::WrongParameterCount { found: 2, .. })), "{error:?}");
    }
}
