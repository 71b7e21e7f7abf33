//! A registered device: credentials, tags, inventory and what it told us in its last sessions.

use std::collections::BTreeMap;

use omadm_proto::package::SupportedObject;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// A device known to the server, keyed by its DevID (the `OMADM-DevID` header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// DevInfo/DevID, e.g. `IMEI:493005100592800`.
    pub id: String,
    /// HTTP authentication secrets, stored hashed.
    pub credentials: Credentials,
    /// DMAcc AuthNoti/AuthSecret used to sign this device's Package#0. A shared
    /// secret the server must be able to use, so it is kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    /// Operator labels, e.g. {"region": "eu", "fleet": "meters"}.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// DevInfo and SessionInfo values, refreshed by the server itself.
    #[serde(default)]
    pub inventory: Inventory,
    /// The MOS array of the last Package#1 that carried one.
    #[serde(default)]
    pub supported_objects: Vec<SupportedObject>,
    /// Where the device receives Package#0 as connectionless WAP Push over UDP
    /// (Appendix D.1: IP devices listen on port 2948), as it registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_address: Option<std::net::SocketAddr>,
    /// The most recent session, ended or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_session_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Per-device HTTP authentication material (5.1.2). Digest (RFC 7616) needs
/// H(A1) = H(username:realm:password) per algorithm; Basic is checked against
/// the SHA-256 one. The password itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The realm H(A1) was computed for.
    pub realm: String,
    /// Hex MD5(username:realm:password), for Digest with algorithm=MD5.
    pub ha1_md5: String,
    /// Hex SHA-256(username:realm:password), for Digest SHA-256 and for Basic.
    pub ha1_sha256: String,
}

/// What the server knows of the device's identity, from DevInfo and SessionInfo GETs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub man: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwv: Option<String>,
    /// SessionInfo CBT as a name: `mobile`, `wireless`, `wireline` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<String>,
    /// SessionInfo ROAMING: `true`, `false`, or absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roaming: Option<bool>,
    /// When DevInfo was last read; `None` until the first inventory GET answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Millis>,
}

/// Filters of `GET /api/v1/devices`: every given field must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub man: Option<String>,
    pub model: Option<String>,
    pub fwv: Option<String>,
    /// (key, value) tags that must all be present.
    pub tags: Vec<(String, String)>,
}

/// One page of devices in id order; `next` is the cursor for the following page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicePage {
    pub devices: Vec<Device>,
    pub next: Option<String>,
}

impl Device {
    /// A device just registered: its credentials and nothing learned yet.
    pub fn new(id: impl Into<String>, credentials: Credentials, now: Millis) -> Self {
        Device {
            id: id.into(),
            credentials,
            auth_secret: None,
            tags: BTreeMap::new(),
            inventory: Inventory::default(),
            supported_objects: Vec::new(),
            notify_address: None,
            last_session_id: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl DeviceFilter {
    /// True when `device` satisfies every given field.
    pub fn matches(&self, device: &Device) -> bool {
        let field = |wanted: &Option<String>, actual: &Option<String>| wanted.is_none() || wanted == actual;
        field(&self.man, &device.inventory.man)
            && field(&self.model, &device.inventory.model)
            && field(&self.fwv, &device.inventory.fwv)
            && self.tags.iter().all(|(key, value)| device.tags.get(key) == Some(value))
    }
}
