//! omadm's patch: the responses this crate writes by itself (a request it cannot parse, a head too large, a head
//! that did not arrive in time) carry the JSON error body `{"error": "..."}` that every other omadm error has.
//!
//! Upstream actix-http sends them with an empty body and offers no hook to change that; the patch is this file
//! and its two uses in `h1/dispatcher.rs` (see vendor/README.md).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

use crate::body::BoxBody;
use crate::Response;

/// The reason omadm gives for a status this crate answers by itself.
fn reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => {
            "malformed HTTP request: the request line, a header, Content-Length or Transfer-Encoding is invalid"
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request head is larger than the server accepts",
        StatusCode::REQUEST_TIMEOUT => "the request head did not arrive in time",
        StatusCode::INTERNAL_SERVER_ERROR => "the server could not read the request",
        _ => "the server refused the request",
    }
}

/// Sets `Content-Type: application/json` on `response` and returns its body, `{"error": "<reason>"}`.
pub(crate) fn json_error_bytes(response: &mut Response<()>) -> Bytes {
    let body = format!("{{\"error\":\"{}\"}}", reason(response.status()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Bytes::from(body)
}

/// [`json_error_bytes`] as the body of a response the dispatcher sends through its payload state.
pub(crate) fn json_error_body(response: &mut Response<()>) -> BoxBody {
    BoxBody::new(json_error_bytes(response))
}
