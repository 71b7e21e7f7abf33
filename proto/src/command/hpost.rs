//! HPOST (5.4.3): exactly HPUT, but the client sends the MO data with HTTP POST.

use std::ops::Deref;

use super::upload::Upload;
use super::{CommandError, ParameterReader};
use crate::uri::{ClientUri, ServerUri};

/// `["HPOST", ServerURI, ClientURI*]`
///
/// ```text
/// ["HPOST", "https://DMcontent.DMserver.operator.com/[DevID]", "urn:oma:mo:oma-dm-devinfo:1.0//"]
/// ```
///
/// The parameters are an [`Upload`], shared with HPUT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hpost(Upload);

impl Hpost {
    /// Any number of ClientURIs, wildcards included.
    pub fn new(server_uri: ServerUri, client_uris: Vec<ClientUri>) -> Self {
        Hpost(Upload::new(server_uri, client_uris))
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        Upload::read(reader).map(Hpost)
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        self.0.write_parameters(parameters);
    }
}

impl Deref for Hpost {
    type Target = Upload;
    fn deref(&self) -> &Upload {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    #[test]
    fn parses_the_spec_example_of_7_3() {
        let wire = json!([
            "HPOST",
            "https://DMcontent.DMserver.operator.com/[DevID]",
            "urn:oma:mo:oma-dm-devinfo:1.0//",
            "urn:oma:mo:oma-sessioninfomo:1.0//"
        ]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Hpost(command)) = command else {
            panic!("expected HPOST")
        };
        assert_eq!(
            command.server_uri().as_str(),
            "https://DMcontent.DMserver.operator.com/[DevID]"
        );
        let moids: Vec<&str> = command
            .client_uris()
            .iter()
            .map(|uri| uri.moid.as_str())
            .collect();
        assert_eq!(
            moids,
            [
                "urn:oma:mo:oma-dm-devinfo:1.0",
                "urn:oma:mo:oma-sessioninfomo:1.0"
            ]
        );
    }

    #[test]
    fn refuses_a_non_string_server_uri() {
        let error = Command::from_json(&json!(["HPOST", {"uri": "https://a/"}])).err();
        assert_eq!(
            error,
            Some(CommandError::ParameterNotAString {
                command: "HPOST",
                position: 1,
                found: "an object"
            })
        );
    }
}
