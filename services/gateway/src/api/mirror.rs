//! What the server learned from a device: its MO mirror read by ClientURI, its recent alerts and sessions.
//!
//! ```text
//! GET /api/v1/devices/IMEI:1/tree?uri=urn:oma:mo:oma-dm-devinfo:1.2//FwV
//!   -> [{"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": "", "ClientURI": "...//FwV", "MOData": {"FwV": "1.2"}}]
//! GET /api/v1/devices/IMEI:1/alerts?limit=20   -> {"alerts": [...]}   newest first
//! GET /api/v1/devices/IMEI:1/sessions?limit=20 -> {"sessions": [...]} newest first
//! ```

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::store::StoreError;
use omadm_proto::tree::{DmmoDocument, ManagementTree, TreeLimits};
use omadm_proto::uri::ClientUri;
use serde::Deserialize;

use super::body::{page_limit, parse_query};
use super::schema::{AlertList, SessionList, SessionView};
use super::{checked_device_id, require_device, store_failure};
use crate::{AppState, HttpError};

const DEFAULT_RECENT: usize = 50;
const MAX_RECENT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeQuery {
    uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecentQuery {
    limit: Option<usize>,
}

/// The mirror as a tree; a device never read yet has an empty one.
fn mirror_tree(tree: &serde_json::Value) -> Result<ManagementTree, HttpError> {
    if tree.is_null() {
        return Ok(ManagementTree::new());
    }
    ManagementTree::from_dmmo_json(tree, TreeLimits::default())
        .map_err(|error| store_failure("get_mirror")(StoreError::Corrupt(format!("MO mirror: {error}"))))
}

/// Read the device's MO mirror at a ClientURI: the dmmo+json documents of the matched nodes.
#[utoipa::path(get, path = "/api/v1/devices/{devid}/tree", tag = "devices",
    params(
        ("devid" = String, Path, description = "DevID"),
        ("uri" = String, Query, description = "ClientURI, e.g. urn:oma:mo:oma-dm-devinfo:1.2//FwV"),
    ),
    responses(
        (status = 200, description = "The matched nodes as dmmo+json documents", body = Vec<Object>),
        (status = 400, description = "Invalid or ambiguous ClientURI", body = super::schema::ErrorBody),
        (status = 404, description = "Unknown device, or the URI names nothing in the mirror", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.get_tree", skip_all, fields(device_id = %device_id))]
pub(super) async fn get_tree(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let query: TreeQuery = parse_query(&request)?;
    let Some(uri_text) = query.uri else {
        return Err(HttpError::bad_request("missing query parameter uri (a ClientURI)"));
    };
    let uri = ClientUri::parse(&uri_text)
        .map_err(|error| HttpError::bad_request(format!("invalid ClientURI {uri_text:?}: {error}")))?;
    require_device(&state, device_id).await?;
    let mirror = state.store.get_mirror(device_id).await.map_err(store_failure("get_mirror"))?;
    let tree = match &mirror {
        Some(mirror) => mirror_tree(&mirror.tree)?,
        None => ManagementTree::new(),
    };
    let nodes = tree.resolve(&uri).map_err(|error| {
        let status = if error.is_ambiguity() { StatusCode::BAD_REQUEST } else { StatusCode::NOT_FOUND };
        HttpError::new(status, format!("{uri}: {error}"))
    })?;
    let documents: Vec<serde_json::Value> =
        nodes.iter().map(|node| DmmoDocument::from_resolved(node, uri.query.level).to_json()).collect();
    Ok(HttpResponse::Ok().json(documents))
}

/// Recent Generic Alerts of a device, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{devid}/alerts", tag = "devices",
    params(
        ("devid" = String, Path, description = "DevID"),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 50"),
    ),
    responses(
        (status = 200, description = "Alerts", body = AlertList),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.list_alerts", skip_all, fields(device_id = %device_id))]
pub(super) async fn list_alerts(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let query: RecentQuery = parse_query(&request)?;
    let limit = page_limit(query.limit, DEFAULT_RECENT, MAX_RECENT)?;
    require_device(&state, device_id).await?;
    let alerts = state.store.list_alerts(device_id, limit).await.map_err(store_failure("list_alerts"))?;
    let alerts = alerts.iter().filter_map(|alert| serde_json::to_value(alert).ok()).collect();
    Ok(HttpResponse::Ok().json(AlertList { alerts }))
}

/// Recent sessions of a device, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{devid}/sessions", tag = "devices",
    params(
        ("devid" = String, Path, description = "DevID"),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 50"),
    ),
    responses(
        (status = 200, description = "Sessions", body = SessionList),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.list_sessions", skip_all, fields(device_id = %device_id))]
pub(super) async fn list_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let query: RecentQuery = parse_query(&request)?;
    let limit = page_limit(query.limit, DEFAULT_RECENT, MAX_RECENT)?;
    require_device(&state, device_id).await?;
    let sessions = state.store.list_sessions(device_id, limit).await.map_err(store_failure("list_sessions"))?;
    Ok(HttpResponse::Ok().json(SessionList { sessions: sessions.iter().map(SessionView::from).collect() }))
}
