//! `POST /dm` (Package#1) and `POST /dm/s/{sid}` (Package#3): the DM session over HTTP (5.2, 5.4.8, Appendix E).
//!
//! Package#1 is authenticated (HTTP Basic or Digest) and opens a session
//! with an unguessable id; its Package#2 starts with CONT to `/dm/s/{sid}`
//! when more packages follow. Package#3s are bound to the session by that id
//! and the `OMADM-DevID` check, and are not authenticated again.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::clock;
use omadm_core::metrics::metrics;
use omadm_core::session::SessionEvent;
use omadm_proto::multipart::{self, MultipartError, MultipartLimits};
use omadm_proto::package::media::{INITIATION_JSON, MULTIPART_FORM_DATA, REQUEST_JSON, RESPONSE_JSON, is_media_type};
use omadm_proto::package::{InitiationPackage, PackageError, ParseLimits};
use rand::Rng as _;
use tracing::Instrument as _;

use super::authenticate::authenticate;
use super::body::{content_type, device_id_header, read_body};
use super::session::{Package3, SessionRegistry, deliver_package3, find_session, run_step, supersede_previous};
use super::{EdgeShared, wake_outbox_relay};
use crate::HttpError;

/// `POST /dm`: Package#1 -> Package#2.
pub(crate) async fn package1(
    shared: web::Data<EdgeShared>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let shared = shared.into_inner();
    let span =
        tracing::info_span!("dm.package1", device_id = tracing::field::Empty, session_id = tracing::field::Empty);
    async move {
        if !is_media_type(content_type(&request), INITIATION_JSON) {
            return Err(HttpError::unsupported_media_type(format!("a Package#1 must be sent as {INITIATION_JSON}")));
        }
        let device_id = device_id_header(&request)?;
        tracing::Span::current().record("device_id", device_id.as_str());
        let device = authenticate(&shared, &request, Some(&device_id)).await?;
        let config = &shared.state.config;
        let body = read_body(&request, payload, config.max_body_bytes, shared.options.body_read_timeout).await?;
        metrics().packages.with_label_values(&["1", "in"]).inc();
        metrics().package_bytes.with_label_values(&["1"]).observe(body.len() as f64);
        let limits = ParseLimits { max_bytes: config.max_body_bytes, ..ParseLimits::DEFAULT };
        let package = InitiationPackage::parse(&body, &limits).map_err(package_refusal)?;

        if let Some(previous) = &device.last_session_id {
            supersede_previous(&shared, &device_id, previous).await?;
        }
        let session_id = new_session_id();
        tracing::Span::current().record("session_id", session_id.as_str());
        let event = SessionEvent::Initiation { session_id: session_id.clone(), package };
        let stepped = run_step(&shared, &device_id, &[], event, clock::now_millis()).await?;
        wake_outbox_relay(&request);
        metrics().sessions_started.with_label_values::<&str>(&[]).inc();
        match stepped.next_state.filter(|state| !stepped.ended && state.id == session_id) {
            Some(state) => {
                SessionRegistry::adopt(&shared, state);
            }
            None if !stepped.ended => {
                tracing::error!("the session machine kept the session open but wrote no state for it");
            }
            None => {}
        }
        tracing::info!(ended = stepped.ended, "session started");
        Ok(package2_response(stepped.reply))
    }
    .instrument(span)
    .await
}

/// `POST /dm/s/{sid}`: Package#3 -> Package#2.
pub(crate) async fn package3(
    shared: web::Data<EdgeShared>,
    request: HttpRequest,
    session_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let shared: Arc<EdgeShared> = shared.into_inner();
    let session_id = session_id.into_inner();
    let span = tracing::info_span!("dm.package3", device_id = tracing::field::Empty, session_id = %session_id);
    async move {
        let media_type = content_type(&request).to_owned();
        if !is_media_type(&media_type, RESPONSE_JSON) && !is_media_type(&media_type, MULTIPART_FORM_DATA) {
            return Err(HttpError::unsupported_media_type(format!(
                "a Package#3 must be sent as {RESPONSE_JSON} or {MULTIPART_FORM_DATA}"
            )));
        }
        let device_id = device_id_header(&request)?;
        tracing::Span::current().record("device_id", device_id.as_str());
        let session = find_session(&shared, &session_id, &device_id).await?;
        let config = &shared.state.config;
        let body = read_body(&request, payload, config.max_body_bytes, shared.options.body_read_timeout).await?;
        metrics().packages.with_label_values(&["3", "in"]).inc();
        metrics().package_bytes.with_label_values(&["3"]).observe(body.len() as f64);
        let limits = MultipartLimits {
            max_body_bytes: config.max_body_bytes as u64,
            max_part_bytes: config.max_body_bytes as u64,
            package: ParseLimits { max_bytes: config.max_body_bytes, ..ParseLimits::DEFAULT },
        };
        let response = multipart::decode_response(&media_type, &body, &limits).map_err(multipart_refusal)?;
        let reply = deliver_package3(session, Package3 { device_id, response }).await?;
        wake_outbox_relay(&request);
        tracing::info!(ended = reply.ended, "package answered");
        Ok(package2_response(reply.body))
    }
    .instrument(span)
    .await
}

fn package2_response(body: Vec<u8>) -> HttpResponse {
    metrics().packages.with_label_values(&["2", "out"]).inc();
    metrics().package_bytes.with_label_values(&["2"]).observe(body.len() as f64);
    HttpResponse::Ok().content_type(REQUEST_JSON).body(body)
}

/// 128 random bits, hex: the last segment of the session URL and its only secret.
fn new_session_id() -> String {
    hex::encode(rand::rng().random::<[u8; 16]>())
}

fn package_refusal(error: PackageError) -> HttpError {
    match error {
        PackageError::TooLarge { .. } => HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
        other => HttpError::bad_request(other.to_string()),
    }
}

fn multipart_refusal(error: MultipartError) -> HttpError {
    match error {
        MultipartError::BodyTooLarge { .. }
        | MultipartError::PartTooLarge { .. }
        | MultipartError::Package(PackageError::TooLarge { .. }) => {
            HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
        }
        MultipartError::UnsupportedContentType(_) => HttpError::unsupported_media_type(error.to_string()),
        other => HttpError::bad_request(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_128_bit_hex_and_differ() {
        let first = new_session_id();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, new_session_id());
    }
}
