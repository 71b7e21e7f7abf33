//! The server's copy of a device's management tree, built from GET results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// The MO mirror of one device: the instances its GET results showed, as a
/// JSON list of dmmo+json documents (`ManagementTree::to_dmmo_json`), and the
/// cache validators the device reported per instance (12).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorRecord {
    /// `ManagementTree::to_dmmo_json()` of the mirror.
    pub tree: serde_json::Value,
    /// Validator the device gave per MO instance, keyed `"{MOID}/{MIID}"`.
    #[serde(default)]
    pub validators: BTreeMap<String, String>,
    #[serde(default)]
    pub updated_at: Millis,
}
