//! `/api/v1/repository/{path}`: what operators publish in the Data Repository (5.1.4) for devices to HGET,
//! and what devices uploaded there by HPUT/HPOST.
//!
//! ```text
//! PUT    /api/v1/repository/firmware/v2.bin  (Content-Type: application/octet-stream, body)  -> 201 | 200
//! GET    /api/v1/repository/firmware/v2.bin  -> the bytes, with their Content-Type
//! DELETE /api/v1/repository/firmware/v2.bin  -> 204 | 404
//! ```
//!
//! Devices read the same item at `{public_url}/repo/firmware/v2.bin`.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::clock::now_millis;
use omadm_core::model::{ContentSource, RepositoryItem, check_repository_path};

use super::body::read_body_limited;
use super::schema::RepositoryItemView;
use super::store_failure;
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

/// Publish content in the Data Repository (any media type, up to the repository size limit).
#[utoipa::path(put, path = "/api/v1/repository/{path}", tag = "repository",
    params(("path" = String, Path, description = "Path below /repo/, e.g. firmware/v2.bin")),
    request_body(content = Vec<u8>, content_type = "*/*", description = "The content, with its Content-Type"),
    responses(
        (status = 201, description = "Stored", body = RepositoryItemView),
        (status = 200, description = "Replaced", body = RepositoryItemView),
        (status = 400, description = "Invalid path", body = super::schema::ErrorBody),
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
    let body = read_body_limited(&request, payload, state.config.max_repository_bytes).await?;
    let existed = state.store.get_content(path).await.map_err(store_failure("get_content"))?.is_some();
    let item = RepositoryItem {
        path: path.to_owned(),
        content_type,
        body: body.to_vec(),
        source: ContentSource::Operator,
        device_id: None,
        stored_at: now_millis(),
    };
    let view = RepositoryItemView::from(&item);
    state.store.put_content(item).await.map_err(store_failure("put_content"))?;
    tracing::info!(size = view.size, replaced = existed, "repository content stored");
    if existed { Ok(HttpResponse::Ok().json(view)) } else { Ok(HttpResponse::Created().json(view)) }
}

/// Read repository content as stored (operator or device upload).
#[utoipa::path(get, path = "/api/v1/repository/{path}", tag = "repository",
    params(("path" = String, Path, description = "Path below /repo/")),
    responses(
        (status = 200, description = "The content with its stored Content-Type", body = Vec<u8>, content_type = "*/*"),
        (status = 404, description = "Nothing stored there", body = super::schema::ErrorBody),
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
    let mut response = HttpResponse::Ok();
    response.insert_header((CONTENT_TYPE, item.content_type.as_str()));
    if let Some(device_id) = &item.device_id {
        response.insert_header(("OMADM-DevID", device_id.as_str()));
    }
    Ok(response.body(item.body))
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
    if state.store.delete_content(path).await.map_err(store_failure("delete_content"))? {
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
