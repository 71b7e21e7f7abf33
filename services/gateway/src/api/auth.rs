//! Bearer-token check of the operator API (RFC 6750), compared in constant time.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use sha2::{Digest, Sha256};

use crate::{AppState, HttpError};

/// The challenge sent with every 401 of the operator API.
const CHALLENGE: &str = "Bearer realm=\"omadm-api\"";

/// Middleware of the `/api/v1` scope: lets the request through only with `Authorization: Bearer <admin token>`.
pub(super) async fn require_operator(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = match request.app_data::<web::Data<AppState>>() {
        Some(state) => check_bearer(request.headers().get(AUTHORIZATION), &state.config.admin_token),
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
