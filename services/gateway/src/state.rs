//! What every handler shares: the backends and the configuration, created once per process.

use std::sync::Arc;

use omadm_core::bus::Bus;
use omadm_core::session::SessionConfig;
use omadm_core::store::Store;

/// Shared by every worker (`web::Data<AppState>`).
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
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
    /// Largest repository item operators may upload (413 above).
    pub max_repository_bytes: usize,
    /// When set, an unknown device that authenticates with this shared
    /// factory password is registered on its first session (off by default).
    pub auto_register_password: Option<String>,
    pub bootstrap: BootstrapConfig,
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
    pub gcm: Option<omadm_proto::mo::GcmPush>,
}
