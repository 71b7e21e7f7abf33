//! DEFAULT (5.4.10): the client stores, per MOID, a ServerURI to fetch configuration from when it has none.

use std::fmt;
use std::str::FromStr;

use super::{CommandError, MoidError, ParameterReader};
use crate::uri::{ClientUri, ServerUri};

/// `["DEFAULT", ServerURI, MOID]`
///
/// ```text
/// ["DEFAULT", "https://dms.example.com/defaults/scomo", "urn:oma:mo:oma-scomo:1.0"]
/// ```
///
/// Named as 5.4 names the command; refer to it as `command::Default` so it is
/// never confused with the standard `Default` trait.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Default {
    server_uri: ServerUri,
    moid: Moid,
}

/// A Management Object identifier, the part of a ClientURI before the first "/".
///
/// ```text
/// urn:oma:mo:oma-dm-devinfo:1.2
/// ```
///
/// Validated as the MOID component of a ClientURI (6.1.1): it contains a ":"
/// and only URI characters, and no "/" or "?" that would end it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Moid(String);

impl Moid {
    /// Parses a MOID such as `urn:oma:mo:oma-scomo:1.0`.
    pub fn parse(text: &str) -> Result<Self, MoidError> {
        let invalid = || MoidError::Invalid(text.to_owned());
        if text.contains(['/', '?']) {
            return Err(invalid());
        }
        // The ClientURI grammar is the one place the MOID form is defined; reuse it
        // on the root address of the MOID's sole instance.
        match ClientUri::parse(&format!("{text}//")) {
            Ok(uri) if uri.moid == text => Ok(Moid(text.to_owned())),
            _ => Err(invalid()),
        }
    }

    /// The MOID as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Moid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Moid {
    type Err = MoidError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Moid::parse(text)
    }
}

impl serde::Serialize for Moid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Moid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Moid::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Default {
    /// Where to fetch configuration for `moid`.
    pub fn new(server_uri: ServerUri, moid: Moid) -> Self {
        Default { server_uri, moid }
    }

    /// Where the client fetches configuration.
    pub fn server_uri(&self) -> &ServerUri {
        &self.server_uri
    }

    /// The MO the configuration is for.
    pub fn moid(&self) -> &Moid {
        &self.moid
    }

    pub(super) fn read(reader: &mut ParameterReader<'_>) -> Result<Self, CommandError> {
        reader.expect("a ServerURI and a MOID");
        let server_uri = reader.server_uri()?;
        let moid = reader.moid()?;
        Ok(Default::new(server_uri, moid))
    }

    pub(super) fn write_parameters(&self, parameters: &mut Vec<String>) {
        parameters.push(self.server_uri.to_string());
        parameters.push(self.moid.0.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Moid;
    use crate::command::{Command, CommandError, MoidError};

    #[test]
    fn parses_a_server_uri_and_a_moid() {
        let wire = json!(["DEFAULT", "https://dms.example.com/defaults/scomo", "urn:oma:mo:oma-scomo:1.0"]);
        let command = Command::from_json(&wire);
        assert_eq!(command.as_ref().map(Command::to_json).ok(), Some(wire));
        let Ok(Command::Default(command)) = command else { panic!("expected DEFAULT") };
        assert_eq!(command.moid().as_str(), "urn:oma:mo:oma-scomo:1.0");
        assert_eq!(command.server_uri().as_str(), "https://dms.example.com/defaults/scomo");
    }

    #[test]
    fn refuses_a_malformed_moid_or_a_missing_one() {
        let error = Command::from_json(&json!(["DEFAULT", "https://a/", "urn:oma:mo:oma-scomo:1.0//"])).err();
        assert_eq!(
            error,
            Some(CommandError::InvalidMoid {
                command: "DEFAULT",
                position: 2,
                source: MoidError::Invalid("urn:oma:mo:oma-scomo:1.0//".to_owned()),
            })
        );
        let error = Command::from_json(&json!(["DEFAULT", "https://a/"])).err();
        assert!(
            matches!(error, Some(CommandError::WrongParameterCount { command: "DEFAULT", found: 1, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn moid_form_follows_the_client_uri_grammar() {
        for good in ["urn:oma:mo:oma-dm-devinfo:1.2", "oma:mo:x-customapp:1.0"] {
            assert_eq!(Moid::parse(good).map(|moid| moid.to_string()), Ok(good.to_owned()));
        }
        for bad in ["", "devinfo", "urn:oma:mo:a b", "urn:oma/mo", "urn:oma?mo", "urn:oma#mo"] {
            assert_eq!(Moid::parse(bad), Err(MoidError::Invalid(bad.to_owned())), "{bad:?}");
        }
        let moid: Result<Moid, _> = serde_json::from_str("\"urn:oma:mo:oma-scomo:1.0\"");
        assert_eq!(
            moid.ok().map(|moid| serde_json::to_string(&moid).ok()),
            Some(Some("\"urn:oma:mo:oma-scomo:1.0\"".to_owned()))
        );
    }
}
