//! `/api/v1/devices/{devid}/commands`: queue DM commands for a device and follow what became of them.
//!
//! ```text
//! POST /api/v1/devices/IMEI:1/commands {"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]]}
//!   -> 201 {"ids": [7]}
//! GET  /api/v1/devices/IMEI:1/commands/7
//!   -> {"id": 7, "command": ["GET", "..."], "state": "done", "status": 200, "extra": [], "data": {...}}
//! ```
//!
//! Every command is checked before any is queued (all or nothing): its syntax
//! by omadm-proto (400 naming its position), CONT and END refused (the server
//! runs the session flow itself), and the device's DMDAC rights as its mirror
//! shows them (403 with the reason), so nothing is queued that the device would refuse.
//! The checks and the queuing are `omadm_core::usecase::queue`; this handler parses and answers.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::clock::now_millis;
use omadm_core::model::{CommandId, CommandOrigin, CommandRecord, CommandState};
use omadm_core::usecase::queue::{self, QueueError};
use omadm_proto::command::Command;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{json_body, page_limit, parse_query};
use super::{checked_device_id, require_device, store_failure};
use crate::{AppState, HttpError};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Body of `POST .../commands`: the Package#2 array form of each command.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandsRequest {
    /// e.g. [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"], ["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"]]
    #[schema(value_type = Vec<Vec<String>>)]
    pub commands: Vec<serde_json::Value>,
}

/// Answer of `POST .../commands`: the ids given to the queued commands, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedIds {
    pub ids: Vec<u64>,
}

/// A queued command and its outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    pub id: u64,
    /// The command in its Package#2 array form.
    #[schema(value_type = Vec<String>)]
    pub command: serde_json::Value,
    /// queued, sent, done, failed or expired.
    #[schema(example = "done")]
    pub state: String,
    /// The device's status code once answered.
    pub status: Option<u16>,
    /// Extra status values, e.g. the location an HGET stored at.
    #[schema(value_type = Vec<Object>)]
    pub extra: Vec<serde_json::Value>,
    /// The GET result: {"content_type", "value", "base64"?}.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// operator or inventory.
    pub origin: String,
    /// How many times it was sent.
    pub attempts: u32,
    /// The session that last sent it.
    pub session_id: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl From<&CommandRecord> for CommandView {
    fn from(record: &CommandRecord) -> Self {
        CommandView {
            id: record.id,
            command: record.command.to_json(),
            state: state_name(record.state).to_owned(),
            status: record.status,
            extra: record.extra.clone(),
            data: record.data.as_ref().and_then(|data| serde_json::to_value(data).ok()),
            origin: match record.origin {
                CommandOrigin::Operator => "operator",
                CommandOrigin::Inventory => "inventory",
            }
            .to_owned(),
            attempts: record.attempts,
            session_id: record.session_id.clone(),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

fn state_name(state: CommandState) -> &'static str {
    match state {
        CommandState::Queued => "queued",
        CommandState::Sent => "sent",
        CommandState::Done => "done",
        CommandState::Failed => "failed",
        CommandState::Expired => "expired",
    }
}

/// A page of `GET .../commands`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandPageView {
    pub commands: Vec<CommandView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<u64>,
}

/// Parses and checks the request's commands: the first bad one refuses the whole request.
fn parse_commands(values: &[serde_json::Value]) -> Result<Vec<Command>, HttpError> {
    queue::parse_commands(values).map_err(queue_refusal)
}

/// 400 for bad input, 403 for what the device's rights would refuse, 404 for an unknown device, 503 for the store.
fn queue_refusal(error: QueueError) -> HttpError {
    match error {
        QueueError::Denied { .. } => HttpError::new(StatusCode::FORBIDDEN, error.to_string()),
        QueueError::UnknownDevice(_) => HttpError::not_found(error.to_string()),
        QueueError::Store { source, .. } => HttpError::from(source),
        invalid => HttpError::bad_request(invalid.to_string()),
    }
}

/// Queue commands for a device (all or none).
#[utoipa::path(post, path = "/api/v1/devices/{devid}/commands", tag = "commands",
    params(("devid" = String, Path, description = "DevID")),
    request_body = CommandsRequest,
    responses(
        (status = 201, description = "Queued", body = QueuedIds),
        (status = 400, description = "Invalid command (its position and why), or CONT/END", body = super::schema::ErrorBody),
        (status = 403, description = "The device's access control would refuse a command", body = super::schema::ErrorBody),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.post_commands", skip_all, fields(device_id = %device_id))]
pub(super) async fn post_commands(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let body: CommandsRequest = json_body(&request, payload, state.config.max_body_bytes).await?;
    let commands = parse_commands(&body.commands)?;
    let server_id = &state.config.bootstrap.server_id;
    let ids =
        queue::queue_commands(&*state.store, server_id, device_id, commands, CommandOrigin::Operator, now_millis())
            .await
            .map_err(queue_refusal)?;
    Ok(HttpResponse::Created().json(QueuedIds { ids }))
}

/// One queued command and its outcome.
#[utoipa::path(get, path = "/api/v1/devices/{devid}/commands/{id}", tag = "commands",
    params(("devid" = String, Path, description = "DevID"), ("id" = u64, Path, description = "Command id")),
    responses(
        (status = 200, description = "The command", body = CommandView),
        (status = 400, description = "The id is not a number", body = super::schema::ErrorBody),
        (status = 404, description = "Unknown device or command", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.get_command", skip_all, fields(device_id = %path.0))]
pub(super) async fn get_command(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (device_id, command_id) = path.into_inner();
    let device_id = checked_device_id(&device_id)?;
    let command_id: CommandId =
        command_id.parse().map_err(|_| HttpError::bad_request(format!("command id {command_id:?} is not a number")))?;
    let record = state.store.get_command(device_id, command_id).await.map_err(store_failure("get_command"))?;
    match record {
        Some(record) => Ok(HttpResponse::Ok().json(CommandView::from(&record))),
        None => {
            require_device(&state, device_id).await?;
            Err(HttpError::not_found(format!("no command {command_id} for device {device_id:?}")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandListQuery {
    after: Option<CommandId>,
    limit: Option<usize>,
}

/// The device's commands in id order, one page at a time.
#[utoipa::path(get, path = "/api/v1/devices/{devid}/commands", tag = "commands",
    params(
        ("devid" = String, Path, description = "DevID"),
        ("after" = Option<u64>, Query, description = "cursor: the `next` of the previous page"),
        ("limit" = Option<usize>, Query, description = "page size, 1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "One page", body = CommandPageView),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.list_commands", skip_all, fields(device_id = %device_id))]
pub(super) async fn list_commands(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let query: CommandListQuery = parse_query(&request)?;
    let limit = page_limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    require_device(&state, device_id).await?;
    let records =
        state.store.list_commands(device_id, query.after, limit).await.map_err(store_failure("list_commands"))?;
    let next = if records.len() == limit { records.last().map(|record| record.id) } else { None };
    let view = CommandPageView { commands: records.iter().map(CommandView::from).collect(), next };
    Ok(HttpResponse::Ok().json(view))
}

#[cfg(test)]
mod tests {
    use omadm_core::store::StoreError;

    use super::*;

    // What the commands are is core's test (usecase::queue); the gateway's part is the status of each refusal.
    #[test]
    fn each_refusal_has_its_status() {
        let status = |error: QueueError| queue_refusal(error).status;
        assert_eq!(status(QueueError::Empty), StatusCode::BAD_REQUEST);
        assert_eq!(status(QueueError::TooMany), StatusCode::BAD_REQUEST);
        assert_eq!(status(QueueError::Invalid { index: 1, reason: "unknown command".into() }), StatusCode::BAD_REQUEST);
        assert_eq!(status(QueueError::SessionFlow { index: 0, name: "END" }), StatusCode::BAD_REQUEST);
        assert_eq!(status(QueueError::Denied { index: 0, reason: "no Exec right".into() }), StatusCode::FORBIDDEN);
        assert_eq!(status(QueueError::UnknownDevice("IMEI:1".into())), StatusCode::NOT_FOUND);
        let store = QueueError::Store { operation: "commit", source: StoreError::Unavailable("down".into()) };
        assert_eq!(status(store), StatusCode::SERVICE_UNAVAILABLE);
        let refused = queue_refusal(QueueError::SessionFlow { index: 2, name: "CONT" });
        assert!(refused.reason.starts_with("commands[2]: CONT cannot be queued"), "{}", refused.reason);
    }
}
