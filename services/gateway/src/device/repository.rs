//! The Data Repository (5.1.4) as devices see it: `GET /repo/{path}` for operator content (HGET),
//! `PUT`/`POST /repo/{path}` for device uploads (HPUT/HPOST).
//!
//! The path is the percent-decoded request path after `/repo/` (strictly: 400 for invalid UTF-8 or
//! `%2F`), stored as received: a ServerURI whose `[DevID]`, `[MCC]`... the device already
//! substituted (`/repo/up/IMEI:4930...-1/tree.json`) is simply a path.
//! Devices upload only where the server sent them: below their own `up/<DevID>/`, or to the exact
//! ServerURI of an HPUT/HPOST of their open session; never over operator content nor another device's
//! upload (403). GET serves operator content only: device uploads are read through the operator API.
//! Uploads are bounded: the body is read up to `UploadQuotaConfig::max_item_bytes` (413 past it), and its
//! size is charged against the device's quota (413) and the cap on all device uploads (507) in the Store, in
//! the same atomic write as the content.

use actix_web::http::StatusCode;
use actix_web::http::header::ACCEPT;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::bus::Event;
use omadm_core::clock;
use omadm_core::metrics::metrics;
use omadm_core::model::{
    ContentSource, RepositoryItem, UploadGrant, UploadMethod, check_repository_path, check_upload, own_folder_grant,
    upload_issued_in_session,
};
use omadm_core::session::events::{ContentUploaded, content_uploaded};
use omadm_core::store::{StoreError, UploadCharge, UploadQuotaKind, WriteBatch};
use tracing::Instrument as _;

use super::EdgeShared;
use super::authenticate::authenticate;
use super::body::{content_type, optional_device_id_header};
use crate::HttpError;
use crate::content::{discard_blob, receive_body};
use crate::error::store_failure;
use crate::path::{decode_repository_path, tail_after};

/// Where repository paths start in the request path.
const ROUTE_PREFIX: &str = "/repo/";

/// Media type of an upload that names none.
const DEFAULT_UPLOAD_TYPE: &str = "application/octet-stream";

/// A path a device may upload to: bounded, no control characters, no empty, `.` or `..` segments
/// (the same rule the operator API applies to operator content).
fn check_upload_path(path: &str) -> Result<(), HttpError> {
    check_repository_path(path).map_err(|error| HttpError::bad_request(error.to_string()))
}

/// The repository path of the request, decoded strictly from the raw request path.
fn requested_path(request: &HttpRequest) -> Result<String, HttpError> {
    Ok(decode_repository_path(tail_after(request, ROUTE_PREFIX).unwrap_or_default())?)
}

/// `GET|HEAD /repo/{path}`: operator content, negotiated on Accept (406 when the client accepts none of it),
/// streamed with its validators and one byte range (a firmware download resumes where it broke off).
pub(crate) async fn download(shared: web::Data<EdgeShared>, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let path = requested_path(&request)?;
    let item = shared.state.store.get_content(&path).await.map_err(store_failure("get_content"))?;
    let Some(item) = item.filter(|item| item.source == ContentSource::Operator) else {
        return Err(HttpError::not_found("no repository content at this path"));
    };
    let accept = request.headers().get(ACCEPT).map(|value| value.to_str().unwrap_or(""));
    if let Some(accept) = accept
        && !accepts_media_type(accept, &item.content_type)
    {
        return Err(HttpError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("the content is {}, which the Accept header excludes", item.content_type),
        ));
    }
    crate::content::send_item(&shared.state.content, &item, &request, &[]).await
}

/// `PUT|POST /repo/{path}`: a device upload (HPUT, HPOST), authenticated like Package#1. Whether the device may
/// write there is decided before a byte of the body is read; the body streams into the content engine, and its
/// record, event and quota charge land in one atomic write (a refusal drops the bytes just written).
pub(crate) async fn upload(
    shared: web::Data<EdgeShared>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let span = tracing::info_span!("repo.upload", device_id = tracing::field::Empty, path = %request.path());
    async move {
        let path = requested_path(&request)?;
        check_upload_path(&path)?;
        let claimed = optional_device_id_header(&request)?;
        let device = authenticate(&shared, &request, claimed.as_deref()).await?;
        tracing::Span::current().record("device_id", device.id.as_str());
        let store = &shared.state.store;
        let content = &shared.state.content;
        let quota = &shared.state.config.uploads;

        // Refused before a byte is read; checked again under the device's lock before the write.
        may_write(&shared, &device, &request, &path).await?;

        let limit = quota.max_item_bytes as u64;
        let blob = receive_body(content, &request, payload, limit, shared.options.body_read_timeout)
            .await
            .inspect_err(|error| {
                if error.status == StatusCode::PAYLOAD_TOO_LARGE {
                    metrics().uploads_refused.with_label_values(&["item_too_large"]).inc();
                }
            })?;
        let now = clock::now_millis();
        let method = request.method().as_str().to_owned();
        let media_type = match content_type(&request) {
            "" => DEFAULT_UPLOAD_TYPE.to_owned(),
            given => given.to_owned(),
        };
        let event = uploaded_event(&device.id, &path, &media_type, blob.size, &method, now);
        let item = RepositoryItem {
            path: path.clone(),
            content_type: media_type,
            blob: blob.key.clone(),
            size: blob.size,
            sha256: blob.sha256.clone(),
            source: ContentSource::Device,
            device_id: Some(device.id.clone()),
            stored_at: now,
        };
        let charge =
            UploadCharge { device_id: device.id.clone(), path: path.clone(), bytes: blob.size, limits: quota.limits() };
        let batch =
            WriteBatch { contents: vec![item], events: vec![event], upload: Some(charge), ..WriteBatch::default() };
        let written = async {
            // The session steps of the device take the same lock: it is held for the write, not the body.
            let _device_guard = shared.device_locks.lock(&device.id).await;
            let existing = may_write(&shared, &device, &request, &path).await?;
            store.commit(batch).await.map_err(|error| match error {
                StoreError::QuotaExceeded { quota } => quota_refusal(quota),
                other => store_failure("commit")(other),
            })?;
            Ok::<_, HttpError>(existing)
        }
        .await;
        let existing = match written {
            Ok(existing) => existing,
            Err(error) => {
                discard_blob(content, &blob.key).await;
                return Err(error);
            }
        };
        super::wake_outbox_relay(&request);
        if let Some(existing) = &existing {
            discard_blob(content, &existing.blob).await;
        }
        tracing::info!(bytes = blob.size, "device upload stored");
        Ok(if existing.is_some() { HttpResponse::NoContent().finish() } else { HttpResponse::Created().finish() })
    }
    .instrument(span)
    .await
}

/// What `path` holds now, if `device` may write there (403 when not).
async fn may_write(
    shared: &EdgeShared,
    device: &omadm_core::model::Device,
    request: &HttpRequest,
    path: &str,
) -> Result<Option<RepositoryItem>, HttpError> {
    let existing = shared.state.store.get_content(path).await.map_err(store_failure("get_content"))?;
    let grant = match own_folder_grant(&device.id, path) {
        UploadGrant::None => issued_grant(shared, device, request).await?,
        own => own,
    };
    check_upload(&device.id, path, existing.as_ref(), grant)
        .map_err(|refusal| HttpError::new(StatusCode::FORBIDDEN, refusal.to_string()))?;
    Ok(existing)
}

/// A charge the quotas refused: 413 for the device's own quota (its uploads are too much), 507 for the cap
/// on all device uploads (the server has no room, whoever asks).
fn quota_refusal(quota: UploadQuotaKind) -> HttpError {
    metrics().uploads_refused.with_label_values(&[quota.label()]).inc();
    tracing::info!(quota = quota.label(), "device upload refused by a quota");
    let status = match quota {
        UploadQuotaKind::DeviceBytes | UploadQuotaKind::DeviceItems => StatusCode::PAYLOAD_TOO_LARGE,
        UploadQuotaKind::TotalBytes => StatusCode::INSUFFICIENT_STORAGE,
    };
    HttpError::new(status, format!("the upload would pass {quota}; nothing was stored"))
}

/// [`UploadGrant::IssuedCommand`] when the device's open session sent it an HPUT (PUT) or HPOST (POST) whose
/// ServerURI is this request's target, as the device substituted it.
async fn issued_grant(
    shared: &EdgeShared,
    device: &omadm_core::model::Device,
    request: &HttpRequest,
) -> Result<UploadGrant, HttpError> {
    let method = if request.method() == actix_web::http::Method::POST { UploadMethod::Post } else { UploadMethod::Put };
    let Some(session_id) = &device.last_session_id else { return Ok(UploadGrant::None) };
    let session = shared.state.store.get_session(&device.id, session_id).await.map_err(|error| {
        metrics().store_errors.with_label_values(&["get_session"]).inc();
        HttpError::from(error)
    })?;
    let target = request.uri().path_and_query().map_or_else(|| request.uri().path(), |target| target.as_str());
    let timeout = shared.state.config.session.session_timeout;
    let open = session.filter(|session| clock::now_millis().saturating_sub(session.last_activity) <= timeout);
    Ok(match open {
        Some(session) if upload_issued_in_session(&session, &device.id, method, target) => UploadGrant::IssuedCommand,
        _ => UploadGrant::None,
    })
}

/// `content.uploaded` on the results topic (docs/events.md): what a consumer needs to fetch it through the API.
fn uploaded_event(device_id: &str, path: &str, media_type: &str, size: u64, method: &str, now: u64) -> Event {
    content_uploaded(ContentUploaded {
        device_id: device_id.to_owned(),
        path: path.to_owned(),
        method: method.to_owned(),
        content_type: media_type.to_owned(),
        size,
        stored_at: now,
    })
}

/// True when an `Accept` header value lets the client receive `media_type`
/// (RFC 9110 12.5.1): the most specific matching range decides, and a range
/// with `q=0` refuses. An empty header accepts everything.
///
/// ```text
/// accepts_media_type("text/*;q=0.5, */*;q=0", "text/plain")      == true
/// accepts_media_type("*/*, application/json;q=0", "application/json") == false
/// ```
pub fn accepts_media_type(accept: &str, media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    if accept.trim().is_empty() {
        return true;
    }
    // (specificity, q) of the best matching range: 3 exact, 2 type/*, 1 */*.
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut pieces = range.split(';');
        let range_type = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
        if range_type.is_empty() {
            continue;
        }
        let quality = pieces
            .filter_map(|parameter| parameter.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map(|(_, value)| value.trim().parse::<f32>().unwrap_or(0.0))
            .unwrap_or(1.0);
        let (range_kind, range_subtype) = range_type.split_once('/').unwrap_or((range_type.as_str(), ""));
        let specificity = match (range_kind, range_subtype) {
            ("*", "*") => 1,
            (range_kind, "*") if range_kind == kind => 2,
            (range_kind, range_subtype) if range_kind == kind && range_subtype == subtype => 3,
            _ => continue,
        };
        if best.is_none_or(|(best_specificity, _)| specificity > best_specificity) {
            best = Some((specificity, quality));
        }
    }
    best.is_some_and(|(_, quality)| quality > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm_core::bus::Topic;

    #[test]
    fn negotiation_follows_the_most_specific_range() {
        assert!(accepts_media_type("", "application/dmmo+json"));
        assert!(accepts_media_type("*/*", "application/dmmo+json"));
        assert!(accepts_media_type("application/dmmo+json", "application/dmmo+json; charset=utf-8"));
        assert!(accepts_media_type("Application/DMMO+JSON;q=0.5", "application/dmmo+json"));
        assert!(accepts_media_type("text/plain, application/*", "application/json"));
        assert!(!accepts_media_type("text/plain", "application/json"));
        assert!(!accepts_media_type("text/*", "application/json"));
        assert!(!accepts_media_type("*/*, application/json;q=0", "application/json"));
        assert!(accepts_media_type("text/*;q=0, text/plain", "text/plain"));
        assert!(!accepts_media_type("application/json;q=0", "application/json"));
        assert!(!accepts_media_type("application/json;q=nonsense", "application/json"));
        assert!(accepts_media_type(" , */*;q=0.1", "image/png"));
    }

    #[test]
    fn upload_paths_are_bounded_and_plain() {
        assert!(check_upload_path("up/IMEI:1/tree.json").is_ok());
        assert!(check_upload_path("a b/%41").is_ok());
        for bad in ["up//x", "up/../fw/manifest.json", "./x", "x/", "a\nb"] {
            assert!(check_upload_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_upload_path(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn upload_event_names_the_device_and_the_content() {
        let event = uploaded_event("IMEI:1", "up/IMEI:1/tree.json", "application/json", 2, "PUT", 42);
        assert_eq!(event.event_type, "content.uploaded");
        assert_eq!(event.topic, Topic::Results);
        assert_eq!(event.key, "IMEI:1");
        assert_eq!(event.payload["size"], 2);
        assert_eq!(event.payload["path"], "up/IMEI:1/tree.json");
        assert_eq!(event.payload["method"], "PUT");
        assert_eq!(event.id, "upload:IMEI:1:up/IMEI:1/tree.json:42");
    }
}
