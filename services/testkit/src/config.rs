//! Config values with the defaults the tests share, so a test states only the fields it cares about.
//!
//! Each builder returns a complete value; a test changes what matters to it
//! with struct update syntax:
//! `GatewayConfig { admin_token: TOKEN.to_owned(), ..config::gateway(&base) }`.

/// The session defaults of the tests: 2 commands per package, a 60 s session timeout, inventory read again
/// after 24 h, 3 attempts, JSON alerts only.
#[cfg(feature = "core")]
pub fn session(session_url_base: &str) -> omadm_core::session::SessionConfig {
    omadm_core::session::SessionConfig {
        max_commands_per_package: 2,
        session_url_base: session_url_base.to_owned(),
        session_timeout: 60_000,
        inventory_max_age: 24 * 3600 * 1000,
        max_attempts: 3,
        supported_alert_mime_types: vec!["application/json".to_owned()],
    }
}

/// The gateway defaults of the tests for a server at `base` (`http://127.0.0.1:PORT`): admin token `admin`,
/// the default realm, [`session`] with session URLs under `{base}/dm/s/`, 64 KiB bodies, 256 KiB repository
/// items, no auto-registration, and a bootstrap that permits every MOID and names no DEFAULT.
#[cfg(feature = "gateway")]
pub fn gateway(base: &str) -> omadm_gateway::GatewayConfig {
    omadm_gateway::GatewayConfig {
        public_url: base.to_owned(),
        admin_token: "admin".to_owned(),
        realm: omadm_core::auth::DEFAULT_REALM.to_owned(),
        nonce_key: b"test nonce key".to_vec(),
        session: session(&format!("{base}/dm/s/")),
        max_body_bytes: 64 * 1024,
        max_repository_bytes: 256 * 1024,
        auto_register_password: None,
        auth_throttle: Default::default(),
        session_rate: Default::default(),
        uploads: Default::default(),
        bootstrap: bootstrap(),
    }
}

/// ServerID `omadm-test`, name `omadm test server`, every MOID permitted, no DEFAULT, no push.
#[cfg(feature = "gateway")]
pub fn bootstrap() -> omadm_gateway::BootstrapConfig {
    omadm_gateway::BootstrapConfig {
        server_id: "omadm-test".to_owned(),
        server_name: "omadm test server".to_owned(),
        permitted_moids: vec!["*".to_owned()],
        defaults: Vec::new(),
        gcm: None,
    }
}
