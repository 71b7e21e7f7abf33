//! `/api/v1/repository/{path}`: what operators publish in the Data Repository (5.1.4) for devices to HGET,
//! and what devices uploaded there by HPUT/HPOST.
//!
//! ```text
//! PUT    /api/v1/repository/firmware/v2.bin  (Content-Type: application/octet-stream, body)  -> 201 | 200
//! GET    /api/v1/repository/firmware/v2.bin  -> the bytes, with their Content-Type, ETag, Range support
//! HEAD   /api/v1/repository/firmware/v2.bin  -> the same headers, no bytes
//! DELETE /api/v1/repository/firmware/v2.bin  -> 204 | 404
//! ```
//!
//! Devices read the same item at `{public_url}/repo/firmware/v2.bin`. The bytes stream through the content engine
//! (`--content`); the Store keeps the item's record. A replaced or deleted item's bytes are dropped after the
//! record no longer points at them.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::clock::now_millis;
use omadm_core::model::{ContentSource, RepositoryItem, check_repository_path};

use super::body::{BodyReadTimeout, DEFAULT_BODY_READ_TIMEOUT};
use super::schema::RepositoryItemView;
use super::store_failure;
use crate::content::{discard_blob, receive_body, send_item};
use crate::path::{decode_strict, tail_after};
use crate::{AppState, HttpError};

/// Where repository paths start in the request path.
const ROUTE_PREFIX: &str = "/api/v1/repository/";

/// The media type of an upload that states none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Checks a repository path: relative, no empty, `.` or `..` segments, no control characters, bounded.
pub(crate) fn checked_repository_path(path: &str) -> Result<&str, HttpError> {
    check_repository_path(path).map_err(|error| HttpError::bad_request(error.to_string()))?;
    Ok(path)
}

/// The repository path of the request, decoded from the raw request path (strictly: 400 for invalid UTF-8)
/// and checked against the repository rule. An encoded `/` (`%2F`) is a `/`: an OpenAPI client encodes every
/// `/` of the `{path}` parameter so, and the item it means is the one with the `/`.
fn requested_path(request: &HttpRequest) -> Result<String, HttpError> {
    let raw = tail_after(request, ROUTE_PREFIX).unwrap_or_default();
    let path = decode_strict(raw)?;
    checked_repository_path(&path)?;
    Ok(path)
}

/// Publish content in the Data Repository (any media type, up to the repository size limit), streamed to the
/// content engine.
#[utoipa::path(put, path = "/api/v1/repository/{path}", tag = "repository",
    params(("path" = String, Path, description = "Path below /repo/, e.g. firmware/v2.bin")),
    request_body(content = Vec<u8>, content_type = "*/*", description = "The content, with its Content-Type"),
    responses(
        (status = 201, description = "Stored", body = RepositoryItemView),
        (status = 200, description = "Replaced", body = RepositoryItemView),
        (status = 400, description = "Invalid path", body = super::schema::ErrorBody),
        (status = 408, description = "No byte of the body arrived within the body read timeout", body = super::schema::ErrorBody),
        (status = 413, description = "Larger than the repository limit", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.put_content", skip_all, fields(path = %request.path()))]
pub(super) async fn put_content(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let path = requested_path(&request)?;
    let path = path.as_str();
    let content_type = match request.headers().get(CONTENT_TYPE) {
        None => DEFAULT_CONTENT_TYPE.to_owned(),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|text| text.contains('/'))
            .map(str::to_owned)
            .ok_or_else(|| HttpError::bad_request("invalid Content-Type"))?,
    };
    let idle = request.app_data::<BodyReadTimeout>().map_or(DEFAULT_BODY_READ_TIMEOUT, |timeout| timeout.0);
    let blob = receive_body(&state.content, &request, payload, state.config.max_repository_bytes, idle).await?;
    let previous = match state.store.get_content(path).await {
        Ok(previous) => previous,
        Err(error) => {
            discard_blob(&state.content, &blob.key).await;
            return Err(store_failure("get_content")(error));
        }
    };
    let item = RepositoryItem {
        path: path.to_owned(),
        content_type,
        blob: blob.key.clone(),
        size: blob.size,
        sha256: blob.sha256,
        source: ContentSource::Operator,
        device_id: None,
        stored_at: now_millis(),
    };
    let view = RepositoryItemView::from(&item);
    if let Err(error) = state.store.put_content(item).await {
        discard_blob(&state.content, &blob.key).await;
        return Err(store_failure("put_content")(error));
    }
    if let Some(previous) = &previous {
        discard_blob(&state.content, &previous.blob).await;
    }
    tracing::info!(size = view.size, replaced = previous.is_some(), "repository content stored");
    if previous.is_some() { Ok(HttpResponse::Ok().json(view)) } else { Ok(HttpResponse::Created().json(view)) }
}

/// Read repository content as stored (operator or device upload), streamed, with its validators; one byte range
/// (`Range`, `If-Range`) and `If-None-Match` as RFC 9110 has them.
#[utoipa::path(get, path = "/api/v1/repository/{path}", tag = "repository",
    params(
        ("path" = String, Path, description = "Path below /repo/"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=1048576- (several ranges: all bytes)"),
        ("If-Range" = Option<String>, Header, description = "The ETag or Last-Modified the Range applies to"),
        ("If-None-Match" = Option<String>, Header, description = "ETags of a copy the client holds"),
    ),
    responses(
        (status = 200, description = "The content with its stored Content-Type", body = Vec<u8>, content_type = "*/*"),
        (status = 206, description = "The requested byte range (Content-Range)", body = Vec<u8>, content_type = "*/*"),
        (status = 304, description = "The client's copy is current"),
        (status = 404, description = "Nothing stored there", body = super::schema::ErrorBody),
        (status = 416, description = "The range names no byte of the content", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.get_content", skip_all, fields(path = %request.path()))]
pub(super) async fn get_content(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let path = requested_path(&request)?;
    let path = path.as_str();
    let item = state
        .store
        .get_content(path)
        .await
        .map_err(store_failure("get_content"))?
        .ok_or_else(|| HttpError::not_found(format!("no repository content at {path:?}")))?;
    let uploader: Vec<(&'static str, String)> =
        item.device_id.iter().map(|device_id| ("OMADM-DevID", device_id.clone())).collect();
    send_item(&state.content, &item, &request, &uploader).await
}

/// The headers `GET` would answer, without the content.
#[utoipa::path(head, path = "/api/v1/repository/{path}", tag = "repository",
    params(("path" = String, Path, description = "Path below /repo/")),
    responses(
        (status = 200, description = "The content's Content-Type, Content-Length, ETag and Last-Modified"),
        (status = 404, description = "Nothing stored there"),
    ))]
pub(super) async fn head_content(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    get_content(state, request).await
}

/// Remove repository content.
#[utoipa::path(delete, path = "/api/v1/repository/{path}", tag = "repository",
    params(("path" = String, Path, description = "Path below /repo/")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Nothing stored there", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.delete_content", skip_all, fields(path = %request.path()))]
pub(super) async fn delete_content(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let path = requested_path(&request)?;
    let path = path.as_str();
    let item = state.store.get_content(path).await.map_err(store_failure("get_content"))?;
    if state.store.delete_content(path).await.map_err(store_failure("delete_content"))? {
        if let Some(item) = item {
            discard_blob(&state.content, &item.blob).await;
        }
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(HttpError::not_found(format!("no repository content at {path:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        assert!(checked_repository_path("firmware/v2.bin").is_ok());
        assert!(checked_repository_path("a/b/c-[DevID].json").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\nb"] {
            assert!(checked_repository_path(bad).is_err(), "{bad:?}");
        }
    }
}
