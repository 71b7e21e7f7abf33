//! Strict percent-decoding of request paths: a path that does not decode to valid UTF-8 is refused with 400.
//!
//! actix decodes a path lossily (`%FE%FF` and `%FF%FE` both become U+FFFD U+FFFD), so two different
//! request paths would name one device or one repository item. [`require_utf8_path`] refuses such a
//! request before any route sees it; [`tail_after`] gives the raw rest of a path (repository paths
//! are taken from it: the device edge refuses `%2F` rather than merge it with `/`; the operator API reads it
//! as the `/` an OpenAPI client encoded).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, ResponseError};

use crate::HttpError;

/// Why a percent-encoded path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathDecodeError {
    #[error("the path {0:?} does not percent-decode to valid UTF-8")]
    InvalidUtf8(String),
    #[error("the path {0:?} holds an encoded '/' (%2F): it would name the same item as a '/'")]
    EncodedSlash(String),
}

impl From<PathDecodeError> for HttpError {
    fn from(error: PathDecodeError) -> Self {
        HttpError::bad_request(error.to_string())
    }
}

/// Percent-decodes `raw`; invalid UTF-8 after decoding is an error. A `%` not followed by two hex
/// digits stays as it is (as actix's router keeps it).
pub fn decode_strict(raw: &str) -> Result<String, PathDecodeError> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped =
            match (byte, bytes.get(index + 1).copied().and_then(hex), bytes.get(index + 2).copied().and_then(hex)) {
                (b'%', Some(high), Some(low)) => Some((high << 4) | low),
                _ => None,
            };
        match escaped {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| PathDecodeError::InvalidUtf8(raw.to_owned()))
}

/// Decodes a repository path of the device edge (the raw text after `/repo/`): strictly, and without
/// `%2F`, which the store could not tell from a `/`.
pub fn decode_repository_path(raw: &str) -> Result<String, PathDecodeError> {
    if raw.to_ascii_lowercase().contains("%2f") {
        return Err(PathDecodeError::EncodedSlash(raw.to_owned()));
    }
    decode_strict(raw)
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

/// The raw (still percent-encoded) request path after `prefix`, or `None` when it does not start with it.
pub fn tail_after<'a>(request: &'a HttpRequest, prefix: &str) -> Option<&'a str> {
    request.uri().path().strip_prefix(prefix)
}

/// Middleware: 400 for a request whose path does not percent-decode to valid UTF-8.
pub async fn require_utf8_path(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match decode_strict(request.uri().path()) {
        Ok(_) => next.call(request).await.map(ServiceResponse::map_into_left_body),
        Err(error) => {
            let response = HttpError::from(error).error_response();
            Ok(request.into_response(response).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_exact_or_refused() {
        assert_eq!(decode_strict("/api/v1/devices/IMEI%3A1").unwrap(), "/api/v1/devices/IMEI:1");
        assert_eq!(decode_strict("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_strict("100%").unwrap(), "100%");
        assert_eq!(decode_strict("a%zzb%4").unwrap(), "a%zzb%4");
        for bad in ["%FE%FF", "%FF%FE", "%C0%AF", "fw/%FF", "%C3"] {
            assert_eq!(decode_strict(bad), Err(PathDecodeError::InvalidUtf8(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn repository_paths_refuse_encoded_slashes() {
        assert_eq!(decode_repository_path("up/IMEI%3A1/tree.json").unwrap(), "up/IMEI:1/tree.json");
        assert!(matches!(decode_repository_path("fw%2Fv2.bin"), Err(PathDecodeError::EncodedSlash(_))));
        assert!(matches!(decode_repository_path("fw%2fv2.bin"), Err(PathDecodeError::EncodedSlash(_))));
        assert!(matches!(decode_repository_path("fw/%FF"), Err(PathDecodeError::InvalidUtf8(_))));
    }
}
