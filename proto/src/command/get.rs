//! GET (5.4.6): the client returns MO data in the Package#3's multipart body (Appendix E).

use super::{CommandError, ParameterReader};
use crate::uri::ClientUri;

/// `["GET", ClientURI]`
///
/// ```text
/// ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"]
/// ["GET", "urn:oma:mo:moid:1.0/*/Data/*/Value?lv=1"]
/// ```
///
/// Wildcards are allowed: the client returns a list of MO data (6.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Get {
    client_uri: ClientUri,
}

impl Get {
    /// Any ClientURI, wildcards included.
    pub fn new(client_uri: ClientUri) -> Self {
        Get { client_uri }
    }

    /// The data to return.
    pub fn client_uri(&self) -> &ClientUri {
        &self.client_uri
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("one ClientURI");
        reader.client_uri().map(Get::new)
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
    fn parses_plain_and_wildcard_client_uris() {
        for uri in ["urn:oma:mo:oma-dm-devinfo:1.2//DevID", "urn:oma:mo:moid:1.0/*/Data/*/Value?lv=1"] {
            let wire = json!(["GET", uri]);
            let command = Command::from_json(&wire);
            assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
            assert!(command.as_ref().is_ok_and(Command::is_get));
        }
    }

    #[test]
    fn refuses_a_server_uri_in_place_of_the_client_uri() {
        let error = Command::from_json(&json!(["GET", "https://dms.example.com/"])).err();
        assert!(matches!(error, Some(CommandError::InvalidClientUri { command: "GET", position: 1, .. })), "{error:?}");
    }
}
