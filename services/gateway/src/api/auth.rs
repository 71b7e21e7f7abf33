//! Bearer-token check of the operator API (RFC 6750), compared in constant time, with a throttle of wrong tokens.
//!
//! Wrong tokens are counted per source address in the Store (`auth-failures:api_token:{address}`,
//! fixed windows of `AuthThrottleConfig::window`); past `max_api_token_failures_per_address` every
//! request from that address, right token or not, gets 429 with `Retry-After` until the window ends.
//! A right token costs one Store read (the count), a wrong one one write.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use sha2::{Digest, Sha256};

use omadm_core::auth::{ThrottleLimit, ThrottleScope, address_subject};
use omadm_core::clock;
use omadm_core::metrics::metrics;

use crate::{AppState, HttpError};

/// The challenge sent with every 401 of the operator API.
const CHALLENGE: &str = "Bearer realm=\"omadm-api\"";

/// Middleware of the `/api/v1` scope: lets the request through only with `Authorization: Bearer <admin token>`.
pub(super) async fn require_operator(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = match request.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let address = request.peer_addr().map(|address| address.ip());
            throttled_check(state, request.headers().get(AUTHORIZATION), address).await
        }
        // A wiring mistake, not the client's: refuse rather than let anyone in.
        None => Err(HttpError::unavailable("operator API is not configured")),
    };
    match verdict {
        Ok(()) => next.call(request).await.map(ServiceResponse::map_into_left_body),
        Err(error) => {
            let response = error.error_response();
            Ok(request.into_response(response).map_into_right_body())
        }
    }
}

/// [`check_bearer`] behind the per-address throttle of wrong tokens. A request without any
/// Authorization header is not a guess and is not counted.
async fn throttled_check(
    state: &AppState,
    header: Option<&actix_web::http::header::HeaderValue>,
    address: Option<std::net::IpAddr>,
) -> Result<(), HttpError> {
    let verdict = check_bearer(header, &state.config.admin_token);
    let Some(address) = address else { return verdict };
    let settings = &state.config.auth_throttle;
    let limit = ThrottleLimit { max_failures: settings.max_api_token_failures_per_address, window: settings.window };
    let key = ThrottleScope::ApiToken.key(&address_subject(address));
    let now = clock::now_millis();
    let store_failure = |error: omadm_core::store::StoreError| {
        metrics().store_errors.with_label_values(&["api_token_throttle"]).inc();
        HttpError::from(error)
    };
    let refused = || {
        metrics().auth_throttled.with_label_values(&[ThrottleScope::ApiToken.label()]).inc();
        crate::logging::note_auth_failure("throttled_api_token", settings.failure_log_interval, now);
        HttpError::new(StatusCode::TOO_MANY_REQUESTS, "too many wrong API tokens from this address; retry later")
            .with_header("Retry-After", limit.retry_after_seconds(now).to_string())
    };
    match verdict {
        Ok(()) => {
            let failures = state.store.count_in_window(&key, 0, limit.window, now).await.map_err(store_failure)?;
            if limit.exceeded_by(failures) { Err(refused()) } else { Ok(()) }
        }
        Err(error) if header.is_none() => Err(error),
        Err(error) => {
            let failures = state.store.count_in_window(&key, 1, limit.window, now).await.map_err(store_failure)?;
            if limit.exceeded_by(failures.saturating_sub(1)) {
                return Err(refused());
            }
            crate::logging::note_auth_failure("api_token_invalid", settings.failure_log_interval, now);
            Err(error)
        }
    }
}

/// Ok when the header carries `Bearer <expected>`; otherwise the 401 to answer.
fn check_bearer(header: Option<&actix_web::http::header::HeaderValue>, expected: &str) -> Result<(), HttpError> {
    let unauthorized = |reason: &str, error_code: Option<&str>| {
        let challenge = match error_code {
            Some(code) => format!("{CHALLENGE}, error=\"{code}\""),
            None => CHALLENGE.to_owned(),
        };
        HttpError::new(StatusCode::UNAUTHORIZED, reason).with_header("WWW-Authenticate", challenge)
    };
    let Some(header) = header else {
        return Err(unauthorized("missing bearer token: send Authorization: Bearer <admin token>", None));
    };
    let Ok(text) = header.to_str() else {
        return Err(unauthorized("malformed Authorization header", Some("invalid_request")));
    };
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return Err(unauthorized("malformed Authorization header: expected Bearer <token>", Some("invalid_request")));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized("unsupported authentication scheme: use Bearer", Some("invalid_request")));
    }
    if expected.is_empty() || !constant_time_equal(token.trim().as_bytes(), expected.as_bytes()) {
        return Err(unauthorized("invalid bearer token", Some("invalid_token")));
    }
    Ok(())
}

/// Compares the SHA-256 digests of both sides byte by byte without an early exit,
/// so neither the position of the first difference nor the token length shows in the timing.
fn constant_time_equal(given: &[u8], expected: &[u8]) -> bool {
    let given_digest = Sha256::digest(given);
    let expected_digest = Sha256::digest(expected);
    let difference = given_digest.iter().zip(expected_digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn accepts_only_the_exact_token() {
        let good = HeaderValue::from_static("Bearer s3cret");
        assert!(check_bearer(Some(&good), "s3cret").is_ok());
        let lower_scheme = HeaderValue::from_static("bearer s3cret");
        assert!(check_bearer(Some(&lower_scheme), "s3cret").is_ok());
        for refused in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer", "s3cret"] {
            let header = HeaderValue::from_static(refused);
            let error = check_bearer(Some(&header), "s3cret").unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{refused}");
            assert!(
                error.headers.iter().any(|(name, value)| name == "WWW-Authenticate" && value.starts_with("Bearer"))
            );
        }
        assert!(check_bearer(None, "s3cret").is_err());
        // An empty configured token never authenticates anyone.
        assert!(check_bearer(Some(&HeaderValue::from_static("Bearer ")), "").is_err());
    }
}
