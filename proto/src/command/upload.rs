//! The parameters HPUT and HPOST share (5.4.2, 5.4.3): they differ only in the HTTP method the client uses.

use super::{CommandError, ParameterReader};
use crate::uri::{ClientUri, ServerUri};

/// `ServerURI, ClientURI*`: where to send, and which MO data to send.
///
/// ```text
/// "https://dms.example.com/[DevID]", "urn:oma:mo:oma-dm-devinfo:1.0//", "urn:oma:mo:oma-sessioninfomo:1.0//"
/// ```
///
/// Wildcards are allowed: the client sends one array of all matching MO data.
/// No ClientURI at all means every MO instance the server may read (5.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upload {
    server_uri: ServerUri,
    client_uris: Vec<ClientUri>,
}

impl Upload {
    /// Any number of ClientURIs, wildcards included.
    pub fn new(server_uri: ServerUri, client_uris: Vec<ClientUri>) -> Self {
        Upload {
            server_uri,
            client_uris,
        }
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
        Ok(Upload {
            server_uri,
            client_uris,
        })
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.server_uri.to_string());
        parameters.extend(self.client_uris.iter().map(ClientUri::to_string));
    }
}
