//! HTTP authentication of devices (5.1.2) at the edge: load the device, verify with omadm_core::auth, or 401 / 429.
//!
//! Every failure gets the same 401 body and the same challenges, whether the
//! device is unknown, the password wrong, the header malformed or the Digest
//! answer replayed: nothing tells a caller which ids exist. Only a right answer
//! to an old nonce gets `stale=true`. Failures are counted in
//! `omadm_auth_failures_total{reason}` (no reason tells unknown from known ids)
//! and logged as one summary line per interval (`crate::logging`).
//!
//! Store round trips: the device record and both throttle counts are read at
//! once (one round trip); an accepted Digest answer is then recorded in the
//! replay cache (one more); a counted failure adds one hit to both throttles
//! (one more). Package#3s are not authenticated and cost none of this.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use futures_util::future::join_all;
use omadm_core::auth::{self, AuthError, Authorization, ThrottleLimit, ThrottleScope, VerifyRequest};
use omadm_core::clock;
use omadm_core::metrics::metrics;
use omadm_core::model::Device;
use omadm_core::store::{StoreError, WriteBatch};

use super::EdgeShared;
use crate::HttpError;
use crate::cluster::forward::client_address;

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
    let log_interval = shared.state.config.auth_throttle.failure_log_interval;
    match try_authenticate(shared, request, claimed_device_id, now).await {
        Ok(device) => Ok(device),
        Err(Failure::Store(error)) => {
            metrics().store_errors.with_label_values(&["get_device"]).inc();
            Err(HttpError::from(error))
        }
        Err(Failure::Throttled { scope, limit }) => {
            metrics().auth_throttled.with_label_values(&[scope.label()]).inc();
            crate::logging::note_auth_failure(throttled_reason(scope), log_interval, now);
            Err(too_many_failures(limit, now))
        }
        Err(Failure::Auth(error)) => {
            metrics().auth_failures.with_label_values(&[error.reason()]).inc();
            crate::logging::note_auth_failure(error.reason(), log_interval, now);
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

/// The 429 answer of a throttle: the same for every scope, with the seconds until its window ends.
pub(crate) fn too_many_failures(limit: ThrottleLimit, now: clock::Millis) -> HttpError {
    HttpError::new(StatusCode::TOO_MANY_REQUESTS, "too many failed authentications; retry later")
        .with_header("Retry-After", limit.retry_after_seconds(now).to_string())
}

fn throttled_reason(scope: ThrottleScope) -> &'static str {
    match scope {
        ThrottleScope::Device => "throttled_device",
        ThrottleScope::Address => "throttled_address",
        ThrottleScope::ApiToken => "throttled_api_token",
    }
}

enum Failure {
    Auth(AuthError),
    Throttled { scope: ThrottleScope, limit: ThrottleLimit },
    Store(StoreError),
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Self {
        Failure::Auth(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

/// The throttles a device authentication counts against: its device id and, when known, its source address.
fn throttles(
    shared: &EdgeShared,
    device_id: &str,
    address: Option<IpAddr>,
) -> Vec<(ThrottleScope, String, ThrottleLimit)> {
    let settings = &shared.state.config.auth_throttle;
    let limit = |max_failures| ThrottleLimit { max_failures, window: settings.window };
    let mut throttles =
        vec![(ThrottleScope::Device, ThrottleScope::Device.key(device_id), limit(settings.max_failures_per_device))];
    if let Some(address) = address {
        let key = ThrottleScope::Address.key(&auth::address_subject(address));
        throttles.push((ThrottleScope::Address, key, limit(settings.max_failures_per_address)));
    }
    throttles
}

async fn try_authenticate(
    shared: &EdgeShared,
    request: &HttpRequest,
    claimed_device_id: Option<&str>,
    now: clock::Millis,
) -> Result<Device, Failure> {
    let config = &shared.state.config;
    let store = &shared.state.store;
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

    // One round trip: the device and the failures counted so far, read together.
    let throttles = throttles(shared, &device_id, client_address(request));
    let windows: Vec<(&str, clock::Millis)> =
        throttles.iter().map(|(_, key, limit)| (key.as_str(), limit.window)).collect();
    let (stored, counts) = store.get_device_with_counts(&device_id, &windows, now).await?;
    for ((scope, _, limit), count) in throttles.iter().zip(counts) {
        if limit.exceeded_by(count) {
            return Err(Failure::Throttled { scope: *scope, limit: *limit });
        }
    }

    let verified = verify_device(shared, &authorization, &device_id, stored, &facts);
    let verified = match verified {
        Ok(outcome) => accept_once(shared, &authorization, &facts).await.map(|()| outcome),
        Err(error) => Err(Failure::Auth(error)),
    };
    match verified {
        Ok(Verified::Known(device)) => Ok(*device),
        Ok(Verified::Factory(credentials)) => Ok(register(shared, &device_id, credentials, now).await?),
        Err(Failure::Auth(error)) if error.counts_as_guess() => {
            Err(count_failure(shared, &throttles, error, now).await)
        }
        Err(failure) => Err(failure),
    }
}

/// What a verification accepted: a registered device, or an unknown one that knows the factory password.
enum Verified {
    Known(Box<Device>),
    Factory(omadm_core::model::Credentials),
}

/// Checks the credentials against the stored device, or (unknown device) the factory password or a decoy.
fn verify_device(
    shared: &EdgeShared,
    authorization: &Authorization,
    device_id: &str,
    stored: Option<Device>,
    facts: &VerifyRequest<'_>,
) -> Result<Verified, AuthError> {
    let config = &shared.state.config;
    if let Some(device) = stored {
        auth::verify(authorization, device_id, &device.credentials, facts)?;
        return Ok(Verified::Known(Box::new(device)));
    }
    let Some(factory_password) = &config.auto_register_password else {
        // Same work as for a known device, so the answer time does not tell which ids exist.
        let decoy = auth::credentials_for(device_id, &config.realm, "");
        let _ = auth::verify(authorization, device_id, &decoy, facts);
        return Err(AuthError::BadCredentials);
    };
    let factory_credentials = auth::credentials_for(device_id, &config.realm, factory_password);
    auth::verify(authorization, device_id, &factory_credentials, facts)?;
    Ok(Verified::Factory(factory_credentials))
}

/// Records an accepted Digest answer in the replay cache for its nonce's remaining lifetime;
/// one that was recorded already is [`AuthError::Replayed`]. Basic records nothing.
async fn accept_once(
    shared: &EdgeShared,
    authorization: &Authorization,
    facts: &VerifyRequest<'_>,
) -> Result<(), Failure> {
    let Some(guard) = auth::replay_guard(authorization, facts) else { return Ok(()) };
    if shared.state.store.record_once(&guard.key, guard.ttl, facts.now).await? {
        Ok(())
    } else {
        Err(AuthError::Replayed.into())
    }
}

/// Adds a failed guess to every throttle of the request: the failure itself is a 401, unless
/// concurrent guesses took a throttle past its limit meanwhile (then 429).
async fn count_failure(
    shared: &EdgeShared,
    throttles: &[(ThrottleScope, String, ThrottleLimit)],
    error: AuthError,
    now: clock::Millis,
) -> Failure {
    let store = &shared.state.store;
    let hits = join_all(throttles.iter().map(|(_, key, limit)| store.count_in_window(key, 1, limit.window, now))).await;
    for ((scope, _, limit), count) in throttles.iter().zip(hits) {
        match count {
            Ok(count) if limit.exceeded_by(count.saturating_sub(1)) => {
                return Failure::Throttled { scope: *scope, limit: *limit };
            }
            Ok(_) => {}
            Err(error) => return Failure::Store(error),
        }
    }
    Failure::Auth(error)
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
