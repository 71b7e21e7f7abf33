//! What every handler shares: the backends and the configuration, created once per process.

use std::sync::Arc;

use omadm_core::bus::Bus;
use omadm_core::clock::Millis;
use omadm_core::content::ContentEngine;
use omadm_core::session::SessionConfig;
use omadm_core::store::Store;

/// Shared by every worker (`web::Data<AppState>`).
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    /// Where the Data Repository's bytes live (their records are the store's).
    pub content: ContentEngine,
    pub config: GatewayConfig,
}

/// Settings of the HTTP edge; `omadm serve` fills them from flags, env and TOML.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Base URL devices reach this server at, without a trailing slash
    /// (`http://127.0.0.1:8080`); CONT, repository and alert URLs start with it.
    pub public_url: String,
    /// Bearer token of the operator API.
    pub admin_token: String,
    /// HTTP authentication realm of devices.
    pub realm: String,
    /// Secret for Digest nonces (HMAC key), generated once per data dir.
    pub nonce_key: Vec<u8>,
    pub session: SessionConfig,
    /// Largest request body accepted from devices and operators (413 above).
    pub max_body_bytes: usize,
    /// Largest repository item operators may upload (413 above); streamed, so memory does not grow with it.
    pub max_repository_bytes: u64,
    /// When set, an unknown device that authenticates with this shared
    /// factory password is registered on its first session (off by default).
    pub auto_register_password: Option<String>,
    pub bootstrap: BootstrapConfig,
    /// Throttles of failed authentication and the auth-failure log interval.
    pub auth_throttle: AuthThrottleConfig,
    /// How fast one device may open sessions.
    pub session_rate: SessionRateLimit,
    /// What device uploads (HPUT/HPOST) may hold.
    pub uploads: UploadQuotaConfig,
}

/// Quotas of device uploads (docs/device-edge.md, "Upload quotas"), charged in the Store in the same
/// atomic write as the content, so they hold across nodes and concurrent uploads. An upload's body is
/// read up to `max_item_bytes` and no further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadQuotaConfig {
    /// Largest single device upload (413 above; the read stops there).
    pub max_item_bytes: usize,
    /// Bytes one device's uploads may hold together (413 past it).
    pub max_bytes_per_device: u64,
    /// Items one device's uploads may be (413 past it; replacing one of its own is no new item).
    pub max_items_per_device: u64,
    /// Bytes all device uploads together may hold (507 past it).
    pub max_total_bytes: u64,
}

impl UploadQuotaConfig {
    /// The Store's limits of a charge.
    pub fn limits(&self) -> omadm_core::store::UploadLimits {
        omadm_core::store::UploadLimits {
            max_bytes_per_device: self.max_bytes_per_device,
            max_items_per_device: self.max_items_per_device,
            max_total_bytes: self.max_total_bytes,
        }
    }
}

impl Default for UploadQuotaConfig {
    /// 4 MiB per upload, 16 MiB and 100 items per device, 1 GiB for all devices.
    fn default() -> Self {
        UploadQuotaConfig {
            max_item_bytes: 4 << 20,
            max_bytes_per_device: 16 << 20,
            max_items_per_device: 100,
            max_total_bytes: 1 << 30,
        }
    }
}

/// How many sessions (accepted Package#1s) one device may open per fixed window, counted in the
/// Store so it holds across nodes (docs/device-edge.md, "Throttles"). A Package#1 past it gets 429
/// with `Retry-After` (the seconds until the window ends) and opens nothing, so a device, or a
/// replayed header, that sends Package#1 in a loop neither burns its commands nor grows the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRateLimit {
    /// Length of a window in ms; windows start at multiples of it.
    pub window: Millis,
    /// Package#1s of one device per window that may open a session (at least 1 is allowed).
    pub max_sessions_per_device: u64,
}

impl SessionRateLimit {
    /// The Store key a device's sessions are counted under (`Store::count_in_window`).
    pub fn key(device_id: &str) -> String {
        format!("session-rate:{device_id}")
    }

    /// True when the `count`th Package#1 of a window (itself included) is over the limit.
    pub fn refuses(&self, count: u64) -> bool {
        count > self.max_sessions_per_device.max(1)
    }
}

impl Default for SessionRateLimit {
    /// 30 sessions per device per minute: far more than a device that works needs (a session
    /// per notification or per period), far fewer than a Package#1 loop sends.
    fn default() -> Self {
        SessionRateLimit { window: 60_000, max_sessions_per_device: 30 }
    }
}

/// Limits on failed authentication, counted in the Store so they hold across nodes
/// (docs/device-edge.md, "Throttles"). Each is a fixed window: at most so many failures
/// per `window`, then 429 with `Retry-After` until the window ends, when counting starts
/// over; so an attacker can keep a device throttled only while it keeps failing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthThrottleConfig {
    /// Length of a window in ms; windows start at multiples of it.
    pub window: Millis,
    /// Failed device authentications (wrong credentials, replays) per device id per window.
    pub max_failures_per_device: u64,
    /// Failed device authentications per source address (an IPv6 /64) per window.
    pub max_failures_per_address: u64,
    /// Wrong operator API tokens per source address per window.
    pub max_api_token_failures_per_address: u64,
    /// At most one auth-failure log line per this many ms (a summary with counts).
    pub failure_log_interval: Millis,
}

impl Default for AuthThrottleConfig {
    /// 5 minute windows; 10 failures per device, 100 per address (devices behind one NAT share it),
    /// 20 wrong API tokens per address; a failure log line every 10 s at most.
    fn default() -> Self {
        AuthThrottleConfig {
            window: 5 * 60 * 1000,
            max_failures_per_device: 10,
            max_failures_per_address: 100,
            max_api_token_failures_per_address: 20,
            failure_log_interval: 10_000,
        }
    }
}

/// What `/bootstrap` hands to a device (8.2, docs/protocol-decisions.md "Other gaps").
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// DMAcc ServerID.
    pub server_id: String,
    /// DMAcc Name.
    pub server_name: String,
    /// MOIDs the server may manage (DMAcc Permissions); `*` for all.
    pub permitted_moids: Vec<String>,
    /// DEFAULT commands: (ServerURI, MOID) pairs.
    pub defaults: Vec<(String, String)>,
    /// DMAcc `Push/GCM` (D.2.3): how the device registers for push notifications; none when not offered.
    pub gcm: Option<GcmOffer>,
}

/// What the operator sets of the bootstrap's Push/GCM; RegURL and UnRegURL are not among it: they are
/// the routes this server mounts ([`crate::device::push`]) under its public URL, so they cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcmOffer {
    /// Push/GCM/SenderID: the sender ID (FCM project number) of the push service.
    pub sender_id: String,
    /// Push/GCM/RegParams: extra form parameters, already URI-query encoded; `None` hands out an empty node.
    pub registration_parameters: Option<String>,
}

impl GcmOffer {
    /// The Push/GCM node for a server whose devices reach it at `public_url` (no trailing slash).
    pub fn gcm_push(&self, public_url: &str) -> omadm_proto::mo::GcmPush {
        omadm_proto::mo::GcmPush {
            sender_id: self.sender_id.clone(),
            registration_url: format!("{public_url}{}", crate::device::push::REGISTER_PATH),
            unregistration_url: format!("{public_url}{}", crate::device::push::UNREGISTER_PATH),
            registration_parameters: self.registration_parameters.clone(),
            extensions: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_rate_refuses_past_its_limit_and_allows_at_least_one() {
        let limit = SessionRateLimit { window: 1_000, max_sessions_per_device: 3 };
        assert!(!limit.refuses(3));
        assert!(limit.refuses(4));
        let zero = SessionRateLimit { window: 1_000, max_sessions_per_device: 0 };
        assert!(!zero.refuses(1));
        assert!(zero.refuses(2));
        assert_eq!(SessionRateLimit::key("IMEI:1"), "session-rate:IMEI:1");
    }
}
