//! Request headers and bodies as the device edge reads them: bounded in size and in time.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use bytes::Bytes;

use crate::HttpError;

/// The header that carries DevInfo/DevID in Package#1 and #3 (5.1, docs/protocol-decisions.md).
pub(crate) const DEVICE_ID_HEADER: &str = "OMADM-DevID";

/// The `OMADM-DevID` header, or 400.
pub(crate) fn device_id_header(request: &HttpRequest) -> Result<String, HttpError> {
    optional_device_id_header(request)?
        .ok_or_else(|| HttpError::bad_request(format!("the {DEVICE_ID_HEADER} header is required")))
}

/// The `OMADM-DevID` header when present; 400 when present but unusable.
pub(crate) fn optional_device_id_header(request: &HttpRequest) -> Result<Option<String>, HttpError> {
    let Some(value) = request.headers().get(DEVICE_ID_HEADER) else { return Ok(None) };
    let text = value
        .to_str()
        .map_err(|_| {
            HttpError::bad_request(format!(
                "the {DEVICE_ID_HEADER} header is not visible ASCII: {}",
                omadm_core::model::DEVICE_ID_RULE
            ))
        })?
        .trim();
    omadm_core::model::check_device_id(text)
        .map_err(|error| HttpError::bad_request(format!("the {DEVICE_ID_HEADER} header: {error}")))?;
    Ok(Some(text.to_owned()))
}

/// A DevID must follow the one device-id rule (`omadm_core::model::check_device_id`), the one the operator
/// API registers devices by.
pub(crate) fn check_device_id(device_id: &str) -> Result<(), HttpError> {
    omadm_core::model::check_device_id(device_id).map_err(|error| HttpError::bad_request(error.to_string()))
}

/// The Content-Type header value, `""` when absent or not text.
pub(crate) fn content_type(request: &HttpRequest) -> &str {
    request.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// Reads the whole body: 413 over `limit` (early when Content-Length says so),
/// 408 when the client is slower than `timeout`, 400 when the connection breaks.
pub(crate) async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, HttpError> {
    let too_large =
        || HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over the limit of {limit} bytes"));
    if crate::api::body::declared_length(request).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, payload.to_bytes_limited(limit)).await {
        Err(_) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )),
        Ok(Err(_limit_exceeded)) => Err(too_large()),
        Ok(Ok(Err(error))) => Err(HttpError::bad_request(format!("the body could not be read: {error}"))),
        Ok(Ok(Ok(bytes))) => Ok(bytes),
    }
}

/// A request body read at most once, when the handler first needs it (forwarding may need it before authentication).
pub(crate) struct LazyBody {
    payload: Option<web::Payload>,
    read: Option<Bytes>,
}

impl LazyBody {
    pub fn new(payload: web::Payload) -> Self {
        LazyBody { payload: Some(payload), read: None }
    }

    /// The body, read with [`read_body`] on the first call.
    pub async fn bytes(&mut self, request: &HttpRequest, limit: usize, timeout: Duration) -> Result<Bytes, HttpError> {
        if let Some(bytes) = &self.read {
            return Ok(bytes.clone());
        }
        let Some(payload) = self.payload.take() else {
            return Err(HttpError::bad_request("the body could not be read: its first read failed"));
        };
        let bytes = read_body(request, payload, limit, timeout).await?;
        self.read = Some(bytes.clone());
        Ok(bytes)
    }
}
