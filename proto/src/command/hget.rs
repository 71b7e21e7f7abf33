//! HGET (5.4.1): the client fetches data from a ServerURI with HTTP GET and stores it in its tree.

use super::{CommandError, CommandName, ParameterReader, single_target};
use crate::status::StatusCode;
use crate::uri::{ClientUri, ServerUri};

/// `["HGET", ServerURI, ClientURI?]`
///
/// ```text
/// ["HGET", "https://dms.example.com/new_mo"]
/// ["HGET", "https://dms.example.com/dmacc", "urn:oma:mo:oma-dm-dmacc:2.0/dms1/AuthNoti/AuthSecret"]
/// ```
///
/// The ClientURI is where the data is stored, so it must name one place: a
/// wildcard is refused. Without it the client picks the place and answers
/// 201 with the location (Appendix C).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hget {
    server_uri: ServerUri,
    client_uri: Option<ClientUri>,
}

impl Hget {
    /// Fails when `client_uri` has a wildcard.
    pub fn new(server_uri: ServerUri, client_uri: Option<ClientUri>) -> Result<Self, CommandError> {
        let client_uri = client_uri.map(|uri| single_target(CommandName::Hget, uri)).transpose()?;
        Ok(Hget { server_uri, client_uri })
    }

    /// Where the client fetches the data.
    pub fn server_uri(&self) -> &ServerUri {
        &self.server_uri
    }

    /// Where the client stores the data; `None` lets the client choose.
    pub fn client_uri(&self) -> Option<&ClientUri> {
        self.client_uri.as_ref()
    }

    /// The status a successful HGET is answered with: 200 with a ClientURI,
    /// 201 Created when the client chose the place (Appendix C).
    pub fn success_status(&self) -> StatusCode {
        if self.client_uri.is_some() { StatusCode::OK } else { StatusCode::CREATED }
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("a ServerURI and at most one ClientURI");
        let server_uri = reader.server_uri()?;
        let client_uri = reader.optional_client_uri()?;
        Hget::new(server_uri, client_uri)
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.server_uri.to_string());
        parameters.extend(self.client_uri.iter().map(ClientUri::to_string));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::command::{Command, CommandError};

    #[test]
    fn parses_with_and_without_client_uri() {
        let bare = Command::from_json(&json!(["HGET", "https://dms.example.com/new_mo"]));
        let Ok(Command::Hget(bare)) = bare else { panic!("expected HGET, got {bare:?}") };
        assert_eq!(bare.server_uri().as_str(), "https://dms.example.com/new_mo");
        assert_eq!(bare.client_uri(), None);
        assert_eq!(bare.success_status().as_u16(), 201);

        let wire = json!(["HGET", "https://dms.example.com/a", "urn:oma:mo:oma-dm-dmacc:2.0/dms1/AuthNoti/AuthSecret"]);
        let targeted = Command::from_json(&wire);
        assert_eq!(targeted.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Hget(targeted)) = targeted else { panic!("expected HGET") };
        assert_eq!(targeted.client_uri().map(|uri| uri.moid.as_str()), Some("urn:oma:mo:oma-dm-dmacc:2.0"));
        assert_eq!(targeted.success_status().as_u16(), 200);
    }

    #[test]
    fn refuses_bad_counts_uris_and_wildcards() {
        let error = Command::from_json(&json!(["HGET"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "HGET", found: 0, .. })),
            "{error:?}"
        );
        let error = Command::from_json(&json!(["HGET", "https://a/", "urn:oma:mo:a:1//", "urn:oma:mo:b:1//"])).err();
        assert!(matches!(error, Some(CommandError::WrongParameterCount { found: 3, .. })), "{error:?}");
        let error = Command::from_json(&json!(["HGET", "https://a/", "no-moid"])).err();
        assert!(matches!(error, Some(CommandError::InvalidClientUri { position: 2, .. })), "{error:?}");
        let error = Command::from_json(&json!(["HGET", "", "urn:oma:mo:a:1//"])).err();
        assert!(matches!(error, Some(CommandError::InvalidServerUri { position: 1, .. })), "{error:?}");
        let error = Command::from_json(&json!(["HGET", "https://a/", "urn:oma:mo:a:1/*/"])).err();
        assert_eq!(
            error,
            Some(CommandError::WildcardNotAllowed { command: "HGET", uri: "urn:oma:mo:a:1/*/".to_owned() })
        );
    }
}
