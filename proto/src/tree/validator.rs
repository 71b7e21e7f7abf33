//! Cache validators (spec 12): a content digest per MO instance.
//!
//! The validator is the first 128 bits of a SHA-256 over a canonical encoding
//! of the instance (MOID, MIID, DDF link and every node with its name, format
//! and value), written base64url without padding, 22 characters that need no
//! escaping in a `cv=` field:
//!
//! ```text
//! urn:oma:mo:moid:1.0/left/?cv=6wI79wJRU07X__4b3uS-VQ
//! ```
//!
//! Being derived from content, it survives process restarts and needs no
//! stored counter; it changes whenever the content changes and returns to its
//! old value when the content does, so a server cache of that old content is
//! rightly fresh again. It is computed on first use and kept until the
//! instance is next changed.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::format::LeafValue;
use super::node::{InteriorNode, Node};

/// Bytes of the SHA-256 kept: 128 bits make an accidental match negligible.
const VALIDATOR_BYTES: usize = 16;

/// The cache validator of one MO instance, e.g. `6wI79wJRU07X__4b3uS-VQ`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheValidator(String);

impl CacheValidator {
    /// The text sent in `cv=`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a `cv` value received from a server names this validator.
    pub fn matches(&self, cv: &str) -> bool {
        self.0 == cv
    }

    /// Digests an instance's identity and content.
    pub(crate) fn compute(moid: &str, miid: &str, ddf: Option<&str>, root: &InteriorNode) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"omadm-mo-validator-v1\0");
        hash_text(&mut hasher, moid);
        hash_text(&mut hasher, miid);
        match ddf {
            Some(link) => {
                hasher.update([1]);
                hash_text(&mut hasher, link);
            }
            None => hasher.update([0]),
        }
        hash_interior(&mut hasher, root);
        let digest = hasher.finalize();
        let kept = digest.get(..VALIDATOR_BYTES).unwrap_or(&digest);
        CacheValidator(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kept))
    }
}

impl fmt::Display for CacheValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for CacheValidator {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl serde::Serialize for CacheValidator {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Length-prefixed so that no two different sequences of fields hash alike.
fn hash_text(hasher: &mut Sha256, text: &str) {
    hash_bytes(hasher, text.as_bytes());
}

fn hash_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn hash_interior(hasher: &mut Sha256, interior: &InteriorNode) {
    hasher.update(b"N");
    hasher.update((interior.len() as u64).to_be_bytes());
    for (name, child) in interior.children() {
        hash_text(hasher, name);
        match child {
            Node::Interior(grandchildren) => hash_interior(hasher, grandchildren),
            Node::Leaf(value) => hash_leaf(hasher, value),
        }
    }
}

fn hash_leaf(hasher: &mut Sha256, value: &LeafValue) {
    // The format is hashed too: int 5 and chr "5" are different content.
    hasher.update(b"L");
    hash_text(hasher, value.format().as_str());
    match value {
        LeafValue::Null => {}
        LeafValue::B64(bytes) | LeafValue::Bin(bytes) => hash_bytes(hasher, bytes),
        LeafValue::Bool(flag) => hasher.update([u8::from(*flag)]),
        LeafValue::Chr(text) | LeafValue::Xml(text) | LeafValue::Date(text) | LeafValue::Time(text) => {
            hash_text(hasher, text);
        }
        LeafValue::Int(number) => hasher.update(number.to_be_bytes()),
        LeafValue::Float(number) => hasher.update(number.to_bits().to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(value: LeafValue) -> InteriorNode {
        InteriorNode::new().with_child("A", value).unwrap()
    }

    #[test]
    fn stable_and_content_sensitive() {
        let root = root_with(LeafValue::Int(5));
        let first = CacheValidator::compute("urn:a:1", "m", None, &root);
        assert_eq!(first, CacheValidator::compute("urn:a:1", "m", None, &root.clone()));
        assert_eq!(first.as_str().len(), 22);
        assert!(first.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(first.matches(first.as_str()));
        assert!(!first.matches("other"));
        let others = [
            CacheValidator::compute("urn:a:2", "m", None, &root),
            CacheValidator::compute("urn:a:1", "n", None, &root),
            CacheValidator::compute("urn:a:1", "m", Some("http://ddf"), &root),
            CacheValidator::compute("urn:a:1", "m", None, &root_with(LeafValue::Chr("5".into()))),
            CacheValidator::compute("urn:a:1", "m", None, &root_with(LeafValue::Int(6))),
            CacheValidator::compute("urn:a:1", "m", None, &InteriorNode::new()),
        ];
        for other in &others {
            assert_ne!(&first, other);
        }
    }

    #[test]
    fn known_value_does_not_drift() {
        // Validators must survive upgrades: a changed encoding would flush every server cache.
        let root = root_with(LeafValue::Chr("GPS".into()));
        let validator = CacheValidator::compute("urn:oma:mo:moid:1.0", "left", None, &root);
        assert_eq!(validator.as_str(), KNOWN_VALIDATOR);
    }

    /// Computed independently (Python hashlib) from the encoding described above.
    const KNOWN_VALIDATOR: &str = "6wI79wJRU07X__4b3uS-VQ";
}
