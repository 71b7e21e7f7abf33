//! Content of the Data Repository (5.1.4): what operators publish for HGET and what devices upload by HPUT/HPOST.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryItem {
    /// Path below `/repo/`, without a leading slash.
    pub path: String,
    pub content_type: String,
    /// The bytes, base64 in the stored JSON.
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    pub source: ContentSource,
    /// The uploading device, for device uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub stored_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentSource {
    Operator,
    Device,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
