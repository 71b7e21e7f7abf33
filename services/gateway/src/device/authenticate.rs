//! HTTP authentication of devices (5.1.2) at the edge: load the device, verify with omadm_core::auth, or 401.
//!
//! Every failure gets the same 401 body and the same challenges, whether the
//! device is unknown, the password wrong or the header malformed: nothing
//! tells a caller which ids exist. Only a right answer to an old nonce gets
//! `stale=true`. The reason is counted in `omadm_auth_failures_total` and logged.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use omadm_core::auth::{self, AuthError, Authorization, VerifyRequest};
use omadm_core::clock;
use omadm_core::metrics::metrics;
use omadm_core::model::Device;
use omadm_core::store::WriteBatch;

use super::EdgeShared;
use crate::HttpError;

/// The device whose credentials `request` carries.
///
/// `claimed_device_id` is the id the request names (OMADM-DevID, or DevID of
/// a bootstrap); when `None`, the Authorization header's user name is used.
/// An unknown device that knows the configured factory password is
/// registered here when auto-registration is on.
pub(crate) async fn authenticate(
    shared: &EdgeShared,
    request: &HttpRequest,
    claimed_device_id: Option<&str>,
) -> Result<Device, HttpError> {
    let now = clock::now_millis();
    match try_authenticate(shared, request, claimed_device_id, now).await {
        Ok(device) => Ok(device),
        Err(Failure::Store(error)) => {
            metrics().store_errors.with_label_values(&["get_device"]).inc();
            Err(HttpError::from(error))
        }
        Err(Failure::Auth(error)) => {
            metrics().auth_failures.with_label_values(&[error.reason()]).inc();
            tracing::info!(reason = error.reason(), detail = %error, "device authentication failed");
            Err(unauthorized(shared, now, error == AuthError::StaleNonce))
        }
    }
}

/// The 401 answer: one reason for every failure, and the challenges.
pub(crate) fn unauthorized(shared: &EdgeShared, now: clock::Millis, stale: bool) -> HttpError {
    let config = &shared.state.config;
    let mut error = HttpError::new(StatusCode::UNAUTHORIZED, "authentication required");
    for challenge in auth::challenges(&config.realm, &config.nonce_key, now, stale) {
        error = error.with_header("WWW-Authenticate", challenge);
    }
    error
}

enum Failure {
    Auth(AuthError),
    Store(omadm_core::store::StoreError),
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Self {
        Failure::Auth(error)
    }
}

async fn try_authenticate(
    shared: &EdgeShared,
    request: &HttpRequest,
    claimed_device_id: Option<&str>,
    now: clock::Millis,
) -> Result<Device, Failure> {
    let config = &shared.state.config;
    let header = request.headers().get(AUTHORIZATION).ok_or(AuthError::Missing)?;
    let header = header.to_str().map_err(|_| AuthError::Malformed("not visible ASCII".into()))?;
    let authorization = Authorization::parse(header)?;
    let device_id = match claimed_device_id {
        Some(device_id) => device_id.to_owned(),
        None => authorization.username().to_owned(),
    };
    if !authorization.claims_device(&device_id) {
        return Err(AuthError::DeviceMismatch.into());
    }
    let request_uri = request.uri().path_and_query().map(|target| target.as_str()).unwrap_or("/");
    let facts = VerifyRequest {
        method: request.method().as_str(),
        request_uri,
        nonce_key: &config.nonce_key,
        now,
        nonce_max_age: shared.options.nonce_max_age,
    };

    let stored = shared.state.store.get_device(&device_id).await.map_err(Failure::Store)?;
    if let Some(device) = stored {
        auth::verify(&authorization, &device_id, &device.credentials, &facts)?;
        return Ok(device);
    }

    let Some(factory_password) = &config.auto_register_password else {
        // Same work as for a known device, so the answer time does not tell which ids exist.
        let decoy = auth::credentials_for(&device_id, &config.realm, "");
        let _ = auth::verify(&authorization, &device_id, &decoy, &facts);
        return Err(AuthError::UnknownDevice.into());
    };
    let factory_credentials = auth::credentials_for(&device_id, &config.realm, factory_password);
    auth::verify(&authorization, &device_id, &factory_credentials, &facts).map_err(|error| match error {
        AuthError::BadCredentials => AuthError::UnknownDevice,
        other => other,
    })?;
    register(shared, &device_id, factory_credentials, now).await.map_err(Failure::Store)
}

/// Auto-registration: the device proved it knows the factory password; it
/// keeps that password until an operator sets its own.
async fn register(
    shared: &EdgeShared,
    device_id: &str,
    credentials: omadm_core::model::Credentials,
    now: clock::Millis,
) -> Result<Device, omadm_core::store::StoreError> {
    let _device_guard = shared.device_locks.lock(device_id).await;
    let store = &shared.state.store;
    // Another request of the same device may have registered it meanwhile.
    if let Some(device) = store.get_device(device_id).await? {
        return Ok(device);
    }
    let device = Device::new(device_id, credentials, now);
    store.commit(WriteBatch { devices: vec![device.clone()], ..WriteBatch::default() }).await?;
    tracing::info!(device_id, "device registered by the factory password");
    Ok(device)
}
