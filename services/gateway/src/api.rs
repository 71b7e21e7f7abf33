//! PLACEHOLDER: the operator API under /api/v1, filled in by its own change.

use actix_web::web;

/// Registers the operator API (called for every worker; expects `web::Data<AppState>`).
pub fn configure(config: &mut web::ServiceConfig) {
    let _ = config;
}
