//! The operator API's error body and the schema types of its requests and answers, for the handlers and
//! the OpenAPI document alike.
//!
//! This module imports no handler: handlers and `openapi.rs` both depend on it, never the reverse.

use std::collections::BTreeMap;

use omadm_core::model::{ContentSource, Device, Inventory, RepositoryItem, SessionOutcome, SessionSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error of the API: `{"error": "one line"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "unknown device \"IMEI:1\"")]
    pub error: String,
}

/// Body of `PUT /api/v1/devices/{devid}`. Fields left out of an update keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistration {
    /// The device's HTTP authentication password (stored only as Digest H(A1) hashes).
    pub password: String,
    /// DMAcc AuthNoti/AuthSecret, used to sign this device's Package#0.
    #[serde(default)]
    pub auth_secret: Option<String>,
    /// Operator labels; keys must not contain ':' (the `tag=key:value` filter splits there).
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Where the device receives Package#0 over UDP (WAP Push, Appendix D.1), e.g. `198.51.100.7:2948`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub notify_address: Option<std::net::SocketAddr>,
    /// The device's phone number, E.164 (`+` then 6 to 15 digits), e.g. `+491701234567`: Package#0 goes there
    /// as WAP Push over SMS when the device has no notify address and the server has an SMSC.
    #[serde(default)]
    #[schema(example = "+491701234567")]
    pub msisdn: Option<String>,
    /// The order the notifier tries the device's transports in, falling back to the next when a send fails;
    /// only those listed are used (a repeat counts once). `[]` restores the default: push, then udp, then sms.
    /// `push` reaches a device that registered a RegID (D.2.4) when the server has a push gateway.
    #[serde(default)]
    pub notify: Option<Vec<omadm_core::model::NotifyTransport>>,
}

/// What the server knows of a device's identity, from DevInfo and SessionInfo.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryView {
    pub man: Option<String>,
    #[serde(rename = "mod")]
    pub model: Option<String>,
    pub dmv: Option<String>,
    pub lang: Option<String>,
    pub dev_type: Option<String>,
    pub oem: Option<String>,
    pub fwv: Option<String>,
    pub swv: Option<String>,
    pub hwv: Option<String>,
    /// SessionInfo CBT: mobile, wireless, wireline or unknown.
    pub bearer: Option<String>,
    pub roaming: Option<bool>,
    /// When DevInfo was last read (ms since the UNIX epoch); null until the first inventory GET answered.
    pub updated_at: Option<u64>,
}

impl From<&Inventory> for InventoryView {
    fn from(inventory: &Inventory) -> Self {
        InventoryView {
            man: inventory.man.clone(),
            model: inventory.model.clone(),
            dmv: inventory.dmv.clone(),
            lang: inventory.lang.clone(),
            dev_type: inventory.dev_type.clone(),
            oem: inventory.oem.clone(),
            fwv: inventory.fwv.clone(),
            swv: inventory.swv.clone(),
            hwv: inventory.hwv.clone(),
            bearer: inventory.bearer.clone(),
            roaming: inventory.roaming,
            updated_at: inventory.updated_at,
        }
    }
}

/// One DM session of a device.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// ms since the UNIX epoch.
    pub started_at: u64,
    pub ended_at: Option<u64>,
    /// active, ended (END sent) or expired (the device went silent).
    #[schema(example = "ended")]
    pub outcome: String,
    pub packages: u32,
    pub commands_answered: u32,
}

impl From<&SessionSummary> for SessionView {
    fn from(summary: &SessionSummary) -> Self {
        let outcome = match summary.outcome {
            SessionOutcome::Active => "active",
            SessionOutcome::Ended => "ended",
            SessionOutcome::Expired => "expired",
        };
        SessionView {
            id: summary.id.clone(),
            started_at: summary.started_at,
            ended_at: summary.ended_at,
            outcome: outcome.to_owned(),
            packages: summary.packages,
            commands_answered: summary.commands_answered,
        }
    }
}

/// A device as `GET /api/v1/devices/{devid}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub inventory: InventoryView,
    /// The MOS of the last Package#1 that carried one: [{"DDF", "MOID", "MIID": [...]}].
    #[schema(value_type = Vec<Object>)]
    pub mos: serde_json::Value,
    /// True when a notification secret (DMAcc AuthSecret) is set; the secret itself is never shown.
    pub has_auth_secret: bool,
    /// Where the device receives Package#0 over UDP, when it registered one.
    #[schema(value_type = Option<String>)]
    pub notify_address: Option<std::net::SocketAddr>,
    /// The device's phone number (E.164), when it has one: where Package#0 goes over SMS.
    pub msisdn: Option<String>,
    /// When the device registered its push-service RegID at the RegURL (D.2.4; ms since the UNIX epoch);
    /// null when it holds none. The RegID itself is not shown.
    pub push_registered_at: Option<u64>,
    /// The order its transports are tried in (the default order, push then udp then sms, when the operator set
    /// none).
    pub notify: Vec<omadm_core::model::NotifyTransport>,
    pub last_session: Option<SessionView>,
    /// Commands queued or sent, not yet answered.
    pub pending_commands: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A device in a list page: no per-device lookups (pending count, session) so pages stay cheap.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceSummaryView {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub inventory: InventoryView,
    pub last_session_id: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl From<&Device> for DeviceSummaryView {
    fn from(device: &Device) -> Self {
        DeviceSummaryView {
            id: device.id.clone(),
            tags: device.tags.clone(),
            inventory: InventoryView::from(&device.inventory),
            last_session_id: device.last_session_id.clone(),
            created_at: device.created_at,
            updated_at: device.updated_at,
        }
    }
}

/// A page of `GET /api/v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePageView {
    pub devices: Vec<DeviceSummaryView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// Recent Generic Alerts of a device, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    /// Each: {"id", "session_id", "received_at", "item": {"AlertType", "MIMEType"?, "SourceURI"?, "Mark"?, "Data"?}, "status"}.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<serde_json::Value>,
}

/// Recent sessions of a device, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// What `PUT /api/v1/repository/{path}` stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryItemView {
    /// Path below /repo/.
    pub path: String,
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex (downloads carry it quoted as their ETag).
    pub sha256: String,
    /// operator or device.
    pub source: String,
    /// The uploading device, for device uploads.
    pub device_id: Option<String>,
    pub stored_at: u64,
}

impl From<&RepositoryItem> for RepositoryItemView {
    fn from(item: &RepositoryItem) -> Self {
        RepositoryItemView {
            path: item.path.clone(),
            content_type: item.content_type.clone(),
            size: item.size,
            sha256: item.sha256.clone(),
            source: match item.source {
                ContentSource::Operator => "operator",
                ContentSource::Device => "device",
            }
            .to_owned(),
            device_id: item.device_id.clone(),
            stored_at: item.stored_at,
        }
    }
}
