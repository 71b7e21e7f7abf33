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

/// Longest repository path accepted, in bytes.
pub const MAX_REPOSITORY_PATH_BYTES: usize = 1024;

/// Why a repository path is refused: one rule for operator uploads and device uploads alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryPathError {
    #[error("repository path must be 1 to {MAX_REPOSITORY_PATH_BYTES} bytes")]
    Length,
    #[error("repository path contains control characters")]
    ControlCharacter,
    #[error("repository path {0:?} has an empty, '.' or '..' segment")]
    Segment(String),
}

/// Checks a path below `/repo/`: bounded, printable, and without segments that
/// would be ambiguous (empty) or walk the hierarchy (`.`, `..`).
pub fn check_repository_path(path: &str) -> Result<(), RepositoryPathError> {
    if path.is_empty() || path.len() > MAX_REPOSITORY_PATH_BYTES {
        return Err(RepositoryPathError::Length);
    }
    if path.chars().any(char::is_control) {
        return Err(RepositoryPathError::ControlCharacter);
    }
    if path.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(RepositoryPathError::Segment(path.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        for good in ["firmware/v2.bin", "a/b/c-[DevID].json", "up/IMEI:1/tree.json", "a b/%41"] {
            assert_eq!(check_repository_path(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_repository_path(""), Err(RepositoryPathError::Length));
        assert_eq!(check_repository_path(&"a".repeat(1025)), Err(RepositoryPathError::Length));
        assert_eq!(check_repository_path("a\nb"), Err(RepositoryPathError::ControlCharacter));
        for bad in ["a//b", "/a", "a/", "a/../b", "./a"] {
            assert!(matches!(check_repository_path(bad), Err(RepositoryPathError::Segment(_))), "{bad:?}");
        }
    }
}
