//! Reading what operators send: bodies under a size limit and a deadline, strict JSON, strict query strings.
//!
//! Each helper turns a client mistake into its one-line 4xx: 413 over the
//! limit, 408 for a body that trickles in, 415 for a non-JSON media type, 400
//! for anything that does not parse (unknown fields and nesting deeper than
//! serde_json's recursion limit included).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, web};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::HttpError;

/// How long a body may take to arrive once the headers are in, unless the server sets [`BodyReadTimeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// App data set by the server: the deadline for reading a request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// The body length the request's `Content-Length` declares, when it declares one that parses (a body over a limit
/// is refused from it before a byte is read; actix-http has already refused a malformed one).
pub fn declared_length(request: &HttpRequest) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse().ok())
}

/// Reads the whole body, refusing more than `limit` bytes (413) or a body slower than the deadline (408).
pub async fn read_body_limited(request: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Bytes, HttpError> {
    let too_large = || HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes"));
    if declared_length(request).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let deadline = request.app_data::<BodyReadTimeout>().map_or(DEFAULT_BODY_READ_TIMEOUT, |timeout| timeout.0);
    match tokio::time::timeout(deadline, payload.to_bytes_limited(limit)).await {
        Err(_elapsed) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {} s", deadline.as_secs()),
        )),
        Ok(Err(_limit_exceeded)) => Err(too_large()),
        Ok(Ok(Err(error))) => Err(HttpError::bad_request(format!("cannot read the request body: {error}"))),
        Ok(Ok(Ok(bytes))) => Ok(bytes),
    }
}

/// True for `application/json` and any `+json` media type.
pub fn is_json_media_type(request: &HttpRequest) -> bool {
    let Some(content_type) = request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body into `T` (whose serde attributes refuse unknown fields).
pub fn parse_json<T: DeserializeOwned>(request: &HttpRequest, body: &[u8]) -> Result<T, HttpError> {
    // A missing body is the same mistake whatever Content-Type came with it (none, usually): 400, not 415.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request("missing body: expected a JSON object"));
    }
    if !is_json_media_type(request) {
        return Err(HttpError::unsupported_media_type("expected Content-Type: application/json"));
    }
    serde_json::from_slice(body).map_err(|error| HttpError::bad_request(format!("invalid JSON body: {error}")))
}

/// Reads and parses a JSON body in one step, under the server's body limit.
pub async fn json_body<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, HttpError> {
    let body = read_body_limited(request, payload, limit).await?;
    parse_json(request, &body)
}

/// Parses the query string into `T` (whose serde attributes refuse unknown parameters).
pub fn parse_query<T: DeserializeOwned>(request: &HttpRequest) -> Result<T, HttpError> {
    serde_urlencoded::from_str(request.query_string())
        .map_err(|error| HttpError::bad_request(format!("invalid query string: {error}")))
}

/// A page size: `default` when absent, 400 when zero or above `max`.
pub fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, HttpError> {
    match limit {
        None => Ok(default),
        Some(0) => Err(HttpError::bad_request("limit must be at least 1")),
        Some(limit) if limit > max => Err(HttpError::bad_request(format!("limit must be at most {max}"))),
        Some(limit) => Ok(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None, 50, 1000).unwrap(), 50);
        assert_eq!(page_limit(Some(1000), 50, 1000).unwrap(), 1000);
        assert_eq!(page_limit(Some(0), 50, 1000).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(page_limit(Some(1001), 50, 1000).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn json_media_types() {
        use actix_web::test::TestRequest;
        let json = TestRequest::default().insert_header((CONTENT_TYPE, "application/json; charset=utf-8"));
        assert!(is_json_media_type(&json.to_http_request()));
        let plus_json = TestRequest::default().insert_header((CONTENT_TYPE, "application/merge-patch+json"));
        assert!(is_json_media_type(&plus_json.to_http_request()));
        let text = TestRequest::default().insert_header((CONTENT_TYPE, "text/plain"));
        assert!(!is_json_media_type(&text.to_http_request()));
        assert!(!is_json_media_type(&TestRequest::default().to_http_request()));
    }
}
