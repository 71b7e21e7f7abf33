//! PLACEHOLDER: the device edge (`/dm`, `/dm/s/{sid}`, `/repo`, `/bootstrap`), filled in by its own change.
//!
//! Contract used by the server: `DeviceEdge::new`, `configure`, `recover`.

use actix_web::web;

use crate::AppState;

/// The device-facing routes and the registry of session actors, created once per process.
#[derive(Clone)]
pub struct DeviceEdge {
    state: web::Data<AppState>,
}

impl DeviceEdge {
    pub fn new(state: web::Data<AppState>) -> Self {
        DeviceEdge { state }
    }

    /// Registers the device routes (called for every worker).
    pub fn configure(&self, config: &mut web::ServiceConfig) {
        let _ = (&self.state, config);
    }

    /// After a restart: re-arms the expiry of every session the store still holds open.
    pub async fn recover(&self) -> Result<(), omadm_core::store::StoreError> {
        Ok(())
    }
}
