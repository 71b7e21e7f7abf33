//! HPUT (5.4.2): the client sends MO data to a ServerURI with HTTP PUT.

use super::{CommandError, ParameterReader};
use crate::uri::{ClientUri, ServerUri};

/// `["HPUT", ServerURI, ClientURI*]`: where to send, and which MO data to send.
///
/// ```text
/// ["HPUT", "http://www.data.com/MOData", "urn:oma:mo:oma-moid:1.0//"]
/// ```
///
/// Wildcards are allowed: the client sends one array of all matching MO data.
/// No ClientURI at all means every MO instance the server may read (5.4.2).
/// HPOST has exactly these parameters ([`Hpost`](super::Hpost) is this type).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hput {
    server_uri: ServerUri,
    client_uris: Vec<ClientUri>,
}

impl Hput {
    /// Any number of ClientURIs, wildcards included.
    pub fn new(server_uri: ServerUri, client_uris: Vec<ClientUri>) -> Self {
        Hput { server_uri, client_uris }
    }

    /// Where the client sends the data.
    pub fn server_uri(&self) -> &ServerUri {
        &self.server_uri
    }

    /// Which data the client sends; empty means all it may.
    pub fn client_uris(&self) -> &[ClientUri] {
        &self.client_uris
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("a ServerURI and any number of ClientURIs");
        let server_uri = reader.server_uri()?;
        let client_uris = reader.remaining_client_uris()?;
        Ok(Hput { server_uri, client_uris })
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.server_uri.to_string());
        parameters.extend(self.client_uris.iter().map(ClientUri::to_string));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    #[test]
    fn parses_zero_or_more_client_uris_wildcards_included() {
        let bare = Command::from_json(&json!(["HPUT", "http://www.data.com/MOData"]));
        let Ok(Command::Hput(bare)) = bare else { panic!("expected HPUT, got {bare:?}") };
        assert!(bare.client_uris().is_empty());

        let wire =
            json!(["HPUT", "http://www.data.com/MOData", "urn:oma:mo:oma-moid:1.0//", "urn:oma:mo:b:1.0/*/Data"]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Hput(command)) = command else { panic!("expected HPUT") };
        assert_eq!(command.server_uri().as_str(), "http://www.data.com/MOData");
        assert_eq!(command.client_uris().len(), 2);
        assert!(command.client_uris().get(1).is_some_and(|uri| uri.has_wildcard()));
    }

    #[test]
    fn refuses_a_missing_server_uri_and_bad_client_uris() {
        let error = Command::from_json(&json!(["HPUT"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "HPUT", found: 0, .. })),
            "{error:?}"
        );
        let error = Command::from_json(&json!(["HPUT", "https://a/", "urn:oma:mo:a:1//", "bad uri"])).err();
        assert!(
            matches!(error, Some(CommandError::InvalidClientUri { command: "HPUT", position: 3, .. })),
            "{error:?}"
        );
    }
}
