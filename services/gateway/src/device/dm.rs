//! `POST /dm` (Package#1) and `POST /dm/s/{sid}` (Package#3): the DM session over HTTP (5.2, 5.4.8, Appendix E).
//!
//! Package#1 is authenticated (HTTP Basic or Digest) and opens a session
//! with an unguessable id; its Package#2 starts with CONT to `/dm/s/{sid}`
//! when more packages follow. Package#3s are bound to the session by that id
//! and the `OMADM-DevID` check, and are not authenticated again.
//! An authenticated Package#1 past its device's session rate (`GatewayConfig::session_rate`) is 429 with
//! `Retry-After` before anything of a session happens.
//!
//! In a cluster, a request this node has no actor for goes to the device's
//! owner (the rendezvous owner among the live nodes) over its internal
//! listener, and the owner's answer is relayed; when the owner cannot be
//! reached this node handles it itself. When the Store says another live
//! node holds the device's lease, the request goes there (one more hop at
//! most). See docs/cluster.md.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use omadm_core::clock;
use omadm_core::cluster::NodeInfo;
use omadm_core::metrics::metrics;
use omadm_core::session::driver::{Arrival, DriverError, Package3, package3_digest};
use omadm_proto::multipart::{self, MultipartError, MultipartLimits};
use omadm_proto::package::media::{INITIATION_JSON, MULTIPART_FORM_DATA, REQUEST_JSON, RESPONSE_JSON, is_media_type};
use omadm_proto::package::{InitiationPackage, PackageError, ParseLimits};
use rand::Rng as _;
use tracing::Instrument as _;

use super::EdgeShared;
use super::authenticate::authenticate;
use super::body::{LazyBody, content_type, device_id_header};
use super::session::{
    Delivered, SessionRegistry, SessionTarget, deliver_package3, find_session, refusal, supersede_previous,
};
use crate::HttpError;
use crate::cluster::Route;
use crate::cluster::forward::{ForwardError, MAX_HOPS, hops_of};

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
        let hops = hops_of(&request);
        let config = &shared.state.config;
        let mut body = LazyBody::new(payload);
        if hops == 0
            && !shared.sessions.has_device(&device_id)
            && let Route::Forward(owner) = shared.cluster.route(&device_id)
        {
            let bytes = body.bytes(&request, config.max_body_bytes, shared.options.body_read_timeout).await?;
            if let Some(response) = forward_to_owner(&shared, &owner, &request, bytes, 1).await? {
                return Ok(response);
            }
        }
        let device = authenticate(&shared, &request, Some(&device_id)).await?;
        check_session_rate(&shared, &device_id).await?;
        let body = body.bytes(&request, config.max_body_bytes, shared.options.body_read_timeout).await?;
        metrics().packages.with_label_values(&["1", "in"]).inc();
        metrics().package_bytes.with_label_values(&["1"]).observe(body.len() as f64);
        let limits = ParseLimits { max_bytes: config.max_body_bytes, ..ParseLimits::DEFAULT };
        let package = InitiationPackage::parse(&body, &limits).map_err(package_refusal)?;

        match start_session(&shared, &device_id, device.last_session_id.as_deref(), package).await {
            Ok(reply) => Ok(package2_response(reply)),
            Err(DriverError::Elsewhere { node_id }) => {
                forward_to_lease_holder(&shared, &request, body, hops, &node_id).await
            }
            Err(error) => Err(refusal(error)),
        }
    }
    .instrument(span)
    .await
}

/// Counts the Package#1 against its device's session rate: past it, 429 with `Retry-After` (the seconds until
/// the window ends), before anything of a session (superseding the previous one included) happens.
async fn check_session_rate(shared: &EdgeShared, device_id: &str) -> Result<(), HttpError> {
    let limit = &shared.state.config.session_rate;
    let now = clock::now_millis();
    let key = crate::SessionRateLimit::key(device_id);
    let count = shared.state.store.count_in_window(&key, 1, limit.window, now).await.map_err(|error| {
        metrics().store_errors.with_label_values(&["count_in_window"]).inc();
        HttpError::from(error)
    })?;
    if !limit.refuses(count) {
        return Ok(());
    }
    metrics().session_rate_limited.inc();
    tracing::debug!(count, "session rate exceeded");
    let retry_after = omadm_core::store::retry_after_seconds(limit.window, now);
    Err(HttpError::new(StatusCode::TOO_MANY_REQUESTS, "the device opens sessions too fast; retry later")
        .with_header("Retry-After", retry_after.to_string()))
}

/// Ends the device's previous session, runs the Initiation step and starts the new session's actor.
async fn start_session(
    shared: &Arc<EdgeShared>,
    device_id: &str,
    previous_session_id: Option<&str>,
    package: InitiationPackage,
) -> Result<Vec<u8>, DriverError> {
    if let Some(previous) = previous_session_id {
        supersede_previous(shared, device_id, previous).await?;
    }
    let session_id = new_session_id();
    tracing::Span::current().record("session_id", session_id.as_str());
    let opened = shared.driver.open(device_id, session_id, package, previous_session_id, clock::now_millis()).await?;
    if let Some(session) = opened.session {
        SessionRegistry::adopt(shared, session);
    }
    Ok(opened.package2)
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
        let hops = hops_of(&request);
        let config = &shared.state.config;
        let mut body = LazyBody::new(payload);
        if hops == 0
            && shared.sessions.get(&session_id).is_none()
            && let Route::Forward(owner) = shared.cluster.route(&device_id)
        {
            let bytes = body.bytes(&request, config.max_body_bytes, shared.options.body_read_timeout).await?;
            if let Some(response) = forward_to_owner(&shared, &owner, &request, bytes, 1).await? {
                return Ok(response);
            }
        }
        let target = find_session(&shared, &session_id, &device_id).await?;
        let body = body.bytes(&request, config.max_body_bytes, shared.options.body_read_timeout).await?;
        metrics().packages.with_label_values(&["3", "in"]).inc();
        metrics().package_bytes.with_label_values(&["3"]).observe(body.len() as f64);
        let package3_sha256 = package3_digest(&body);
        let limits = MultipartLimits {
            max_body_bytes: config.max_body_bytes as u64,
            max_part_bytes: config.max_body_bytes as u64,
            package: ParseLimits { max_bytes: config.max_body_bytes, ..ParseLimits::DEFAULT },
        };
        let response = multipart::decode_response(&media_type, &body, &limits).map_err(multipart_refusal)?;
        let arrival = if hops > 0 { Arrival::Forwarded } else { Arrival::Direct };
        let package =
            Package3 { device_id, response, package3_sha256, received_at: std::time::Instant::now(), arrival };
        let answered = match target {
            SessionTarget::Ended(state) => shared.driver.answer_ended(state, package, clock::now_millis()).await,
            SessionTarget::Actor(address) => match deliver_package3(address, package).await {
                Delivered::Answer(answered) => answered,
                // The session ended (or expired) while this package waited for its actor: answer from the store.
                Delivered::ActorStopped(package) => {
                    match find_session(&shared, &session_id, &package.device_id).await? {
                        SessionTarget::Ended(state) => {
                            shared.driver.answer_ended(state, package, clock::now_millis()).await
                        }
                        SessionTarget::Actor(address) => match deliver_package3(address, package).await {
                            Delivered::Answer(answered) => answered,
                            Delivered::ActorStopped(_) => Err(DriverError::SessionGone),
                        },
                    }
                }
            },
        };
        match answered {
            Ok(reply) => {
                tracing::info!(ended = reply.ended, "package answered");
                Ok(package2_response(reply.package2))
            }
            Err(DriverError::Elsewhere { node_id }) => {
                forward_to_lease_holder(&shared, &request, body, hops, &node_id).await
            }
            Err(error) => Err(refusal(error)),
        }
    }
    .instrument(span)
    .await
}

/// Hands the request to its owner as hop `hop` and relays the answer; `None` when the owner
/// cannot be reached (it is suspect from now on) and this node should handle the request itself.
async fn forward_to_owner(
    shared: &EdgeShared,
    owner: &NodeInfo,
    request: &HttpRequest,
    body: Bytes,
    hop: u32,
) -> Result<Option<HttpResponse>, HttpError> {
    match shared.cluster.forwarder().forward(owner, request, body, hop).await {
        Ok(response) => Ok(Some(response)),
        Err(ForwardError::Unreachable { node_id, reason }) => {
            tracing::warn!(node_id, reason, "the device's owner is unreachable; handling the request here");
            shared.cluster.suspect(&node_id);
            Ok(None)
        }
        Err(ForwardError::Refused { node_id }) => Err(HttpError::unavailable(format!(
            "node {node_id} refused this node's internal token (cluster misconfigured)"
        ))),
    }
}

/// The Store says live node `node_id` holds the device's lease: the request goes there, unless it has
/// made its last hop already (503, the device retries).
async fn forward_to_lease_holder(
    shared: &EdgeShared,
    request: &HttpRequest,
    body: Bytes,
    hops: u32,
    node_id: &str,
) -> Result<HttpResponse, HttpError> {
    let holder = shared.cluster.peer(node_id).filter(|node| !node.internal_url.is_empty());
    let Some(holder) = holder.filter(|_| hops < MAX_HOPS) else {
        metrics().forwards.with_label_values(&["hop_limit"]).inc();
        return Err(refusal(DriverError::Elsewhere { node_id: node_id.to_owned() }));
    };
    match forward_to_owner(shared, &holder, request, body, hops + 1).await? {
        Some(response) => Ok(response),
        // Suspect now: the device's retry takes the lease over here.
        None => Err(refusal(DriverError::Elsewhere { node_id: node_id.to_owned() })),
    }
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
