//! PLACEHOLDER: /metrics, /healthz and /readyz, filled in by its own change.

use actix_web::web;

/// Registers the operations endpoints (called for every worker; expects `web::Data<AppState>`).
pub fn configure(config: &mut web::ServiceConfig) {
    let _ = config;
}
