//! ServerURI (spec 6.2): a server-side URI in which the client substitutes `[DevID]`, `[MNC]`, ... parameters.
//!
//! PLACEHOLDER: the API below is the contract; the full parameter handling lands with its own change.

use std::fmt;
use std::str::FromStr;

use super::UriError;

/// A ServerURI as the server sends it, possibly with `[Param]` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUri(String);

/// The device's values for the ServerURI parameters; `None` is sent as `-1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerUriParams {
    pub dev_id: Option<String>,
    pub mnc: Option<String>,
    pub mcc: Option<String>,
    pub cmnc: Option<String>,
    pub cmcc: Option<String>,
    pub sp_name: Option<String>,
}

impl ServerUri {
    /// Parses a ServerURI.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        if text.is_empty() {
            return Err(UriError::Empty);
        }
        if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(UriError::InvalidCharacter(bad));
        }
        Ok(ServerUri(text.to_owned()))
    }

    /// The text as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServerUri {
    type Err = UriError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ServerUri::parse(text)
    }
}

impl fmt::Display for ServerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ServerUri {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ServerUri {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ServerUri::parse(&text).map_err(serde::de::Error::custom)
    }
}
