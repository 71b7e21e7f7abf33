//! HPOST (5.4.3): "exactly the same with HPUT except that the DM Client sends the data using HTTP POST".

/// `["HPOST", ServerURI, ClientURI*]`
///
/// ```text
/// ["HPOST", "https://DMcontent.DMserver.operator.com/[DevID]", "urn:oma:mo:oma-dm-devinfo:1.0//"]
/// ```
///
/// The parameters are HPUT's, so the type is too: which method the client
/// uses is told by the [`Command`](super::Command) variant holding it.
pub type Hpost = super::Hput;

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
        let Ok(Command::Hpost(command)) = command else { panic!("expected HPOST") };
        assert_eq!(command.server_uri().as_str(), "https://DMcontent.DMserver.operator.com/[DevID]");
        let moids: Vec<&str> = command.client_uris().iter().map(|uri| uri.moid.as_str()).collect();
        assert_eq!(moids, ["urn:oma:mo:oma-dm-devinfo:1.0", "urn:oma:mo:oma-sessioninfomo:1.0"]);
    }

    #[test]
    fn refuses_a_non_string_server_uri() {
        let error = Command::from_json(&json!(["HPOST", {"uri": "https://a/"}])).err();
        assert_eq!(
            error,
            Some(CommandError::ParameterNotAString { command: "HPOST", position: 1, found: "an object" })
        );
    }
}
