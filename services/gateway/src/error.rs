//! The one error type of the HTTP edge: a status, a one-line reason, and optional headers.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use omadm_core::metrics::metrics;
use omadm_core::store::StoreError;

/// An HTTP failure answered as `{"error": "<one line>"}` with its status.
/// Client mistakes are 4xx with the reason; server-side failures (store, bus)
/// are 503 with `Retry-After`, never 500 for something the client did.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct HttpError {
    pub status: StatusCode,
    pub reason: String,
    /// Extra headers, e.g. `WWW-Authenticate` challenges or `Retry-After`.
    pub headers: Vec<(String, String)>,
}

impl HttpError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        HttpError { status, reason: reason.into().replace('\n', " "), headers: Vec::new() }
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }
    pub fn unsupported_media_type(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason)
    }
    /// A backend (store or bus) is failing: the client should retry later.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason).with_header("Retry-After", "5")
    }
    /// The request belongs to another node right now (the device's session moved): retrying soon reaches it.
    pub fn retry_soon(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason).with_header("Retry-After", "1")
    }
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Every store failure is 503 with `Retry-After`: a full outbox (the bus has been down
/// for long) is counted in `omadm_outbox_full_total`, a moved lease asks for a retry at once.
impl From<omadm_core::store::StoreError> for HttpError {
    fn from(error: omadm_core::store::StoreError) -> Self {
        use omadm_core::store::StoreError;
        match &error {
            StoreError::OutboxFull { .. } => {
                omadm_core::metrics::metrics().outbox_full.inc();
                tracing::warn!(%error, "commit refused: the outbox is full");
                HttpError::unavailable(format!("events cannot be accepted now: {error}"))
            }
            StoreError::Fenced { .. } => {
                tracing::warn!(%error, "commit refused: the lease moved");
                HttpError::retry_soon(error.to_string())
            }
            _ => {
                tracing::error!(%error, "store failure");
                HttpError::unavailable(format!("storage unavailable: {error}"))
            }
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.append_header((name.as_str(), value.as_str()));
        }
        response.json(serde_json::json!({ "error": self.reason }))
    }
}

/// Maps a store failure to 503 and counts it under `operation` in `omadm_store_errors_total`.
pub(crate) fn store_failure(operation: &'static str) -> impl FnOnce(StoreError) -> HttpError {
    move |error| {
        metrics().store_errors.with_label_values(&[operation]).inc();
        HttpError::from(error)
    }
}
