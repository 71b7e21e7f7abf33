//! `/api/v1/campaigns`: create a campaign (or dry-run one), watch it, steer it (approve, pause, resume, cancel),
//! retry its failed devices, and page its devices with their timelines (docs/campaigns.md).
//!
//! The handlers check and answer; the model and its writes are `omadm_core::campaign`; the campaigns role
//! (in-process with `omadm serve`) runs the rollout.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::campaign::control::{self, Control, ControlError, Descriptors};
use omadm_core::campaign::records::{self, DeviceCounts, Stored, state_label, wave_label};
use omadm_core::campaign::spec::CampaignSource;
use omadm_core::campaign::{
    Action, Campaign, CampaignDevice, CampaignSpec, CampaignState, DeviceState, FirmwareAction, Target,
};
use omadm_core::clock::now_millis;
use omadm_core::model::{ContentSource, RepositoryItem, check_repository_path};
use serde::{Deserialize, Serialize};

use super::body::read_body_limited;
use super::store_failure;
use crate::{AppState, HttpError};

/// Largest campaign request body (an explicit target of 10,000 ids fits).
const MAX_CAMPAIGN_BODY: usize = 1 << 20;
/// Page size of listings when none is asked, and the most one may ask.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

/// The repository folder campaign descriptors are written to.
const DESCRIPTOR_FOLDER: &str = "campaigns";
const DMMO_JSON: &str = "application/dmmo+json";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateQuery {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    wave: Option<usize>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// The page size asked for: 1 to 1000 (100 when none is asked), as the OpenAPI document's `limit` says.
fn page_limit(limit: Option<usize>) -> Result<usize, HttpError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => Err(HttpError::bad_request(format!("limit: 1 to {MAX_PAGE}"))),
    }
}

/// A campaign as the API shows it: the record and its device counts.
#[derive(Debug, Serialize)]
struct CampaignView {
    id: String,
    name: String,
    state: CampaignState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up_of: Option<String>,
    spec: CampaignSpec,
    created_at: u64,
    updated_at: u64,
    /// Devices per state (every state, zeros included).
    counts: BTreeMap<&'static str, u64>,
    /// Finished devices per result code.
    codes: BTreeMap<String, u64>,
    /// Devices in the campaign so far.
    devices: u64,
    target_size: u64,
    selected: u64,
    selection_done: bool,
    started: u64,
    current_wave: usize,
    rate_per_minute: u32,
    /// Whether devices may be started now by the maintenance windows (always without windows; device-local ones
    /// count as open, each device is judged at its start).
    window_open: bool,
    waves: Vec<WaveView>,
}

#[derive(Debug, Serialize)]
struct WaveView {
    index: usize,
    /// The cumulative end of the wave in selection order.
    bound: u64,
    devices: u64,
    succeeded: u64,
    failed: u64,
    /// The share of its devices that must succeed before the next wave opens.
    success_share: f64,
    open: bool,
}

fn view(campaign: Campaign, counts: &DeviceCounts) -> CampaignView {
    let counts_by_state = DeviceState::ALL.iter().map(|state| (state.name(), counts.state(*state))).collect();
    let share = campaign.spec.policy.success_share();
    let waves = (0..campaign.spec.policy.waves.len())
        .map(|index| WaveView {
            index,
            bound: campaign.progress.wave_bounds.get(index).copied().unwrap_or(0),
            devices: counts.wave_total(index),
            succeeded: counts.wave_state(index, DeviceState::Succeeded),
            failed: counts.wave_state(index, DeviceState::Failed) + counts.wave_state(index, DeviceState::TimedOut),
            success_share: share,
            open: index <= campaign.progress.current_wave,
        })
        .collect();
    CampaignView {
        name: campaign.spec.name.clone(),
        counts: counts_by_state,
        codes: counts.by_code.iter().map(|(code, count)| (code.to_string(), *count)).collect(),
        devices: counts.total,
        target_size: campaign.progress.target_size,
        selected: campaign.progress.selected,
        selection_done: campaign.progress.selection_done,
        started: campaign.progress.started,
        current_wave: campaign.progress.current_wave,
        rate_per_minute: campaign.progress.rate_per_minute,
        window_open: omadm_core::campaign::window::may_start(&campaign.spec.policy.windows, now_millis(), None),
        waves,
        id: campaign.id,
        state: campaign.state,
        reason: campaign.reason,
        follow_up_of: campaign.follow_up_of,
        spec: campaign.spec,
        created_at: campaign.created_at,
        updated_at: campaign.updated_at,
    }
}

fn control_failure(error: ControlError) -> HttpError {
    match error {
        ControlError::NotFound(id) => HttpError::not_found(format!("no campaign {id:?}")),
        error @ ControlError::WrongState { .. } => HttpError::new(StatusCode::CONFLICT, error.to_string()),
        ControlError::Store(error) => store_failure("campaign")(error),
    }
}

/// The repository path of a firmware package: the path itself, or its URL under this server's `/repo/`; a
/// refusal names `{field}.url`.
fn package_path<'a>(url: &'a str, public_url: &str, field: &str) -> Result<&'a str, HttpError> {
    let refuse = |reason: &str| HttpError::bad_request(format!("{field}.url: {reason}"));
    let path = match url.strip_prefix(public_url).and_then(|rest| rest.strip_prefix("/repo/")) {
        Some(path) => path,
        None if url.contains("://") => return Err(refuse("not in this server's repository ({public_url}/repo/...)")),
        None => url.trim_start_matches('/'),
    };
    check_repository_path(path).map_err(|error| refuse(&error.to_string()))?;
    Ok(path)
}

/// Checks the firmware action's package, and the rollback's, against the repository; the action's record.
async fn package_item(state: &AppState, spec: &CampaignSpec) -> Result<Option<RepositoryItem>, HttpError> {
    if let Some(rollback) = &spec.policy.rollback {
        firmware_item(state, rollback, "policy.rollback").await?;
    }
    let Action::Firmware(firmware) = &spec.action else { return Ok(None) };
    firmware_item(state, firmware, "action.firmware").await.map(Some)
}

/// The repository's record of a firmware package, checked against its size and checksum when given; refusals
/// name `{field}.url`, `{field}.size`, `{field}.checksum`.
async fn firmware_item(state: &AppState, firmware: &FirmwareAction, field: &str) -> Result<RepositoryItem, HttpError> {
    let path = package_path(&firmware.url, &state.config.public_url, field)?;
    let item = state.store.get_content(path).await.map_err(store_failure("get_content"))?;
    let Some(item) = item else {
        return Err(HttpError::bad_request(format!("{field}.url: the repository has no {path:?}")));
    };
    if let Some(checksum) = &firmware.checksum
        && checksum.strip_prefix("sha256:").is_none_or(|hex| !hex.eq_ignore_ascii_case(&item.sha256))
    {
        return Err(HttpError::bad_request(format!("{field}.checksum: not the repository copy's sha256")));
    }
    if let Some(size) = firmware.size
        && size != item.size
    {
        return Err(HttpError::bad_request(format!("{field}.size: the repository copy is {} bytes", item.size)));
    }
    Ok(item)
}

/// Writes the descriptors a firmware campaign's devices HGET (the action's, and the rollback's under
/// `{id}-rollback`); their URLs.
async fn write_descriptors(state: &AppState, campaign_id: &str, spec: &CampaignSpec) -> Result<Descriptors, HttpError> {
    let Action::Firmware(firmware) = &spec.action else { return Ok(Descriptors::default()) };
    let action = write_descriptor(state, campaign_id, firmware, "action.firmware").await?;
    let rollback = match &spec.policy.rollback {
        Some(rollback) => {
            Some(write_descriptor(state, &format!("{campaign_id}-rollback"), rollback, "policy.rollback").await?)
        }
        None => None,
    };
    Ok(Descriptors { action: Some(action), rollback })
}

/// Writes the descriptor of one package for campaign `campaign_id`; its URL.
async fn write_descriptor(
    state: &AppState,
    campaign_id: &str,
    firmware: &FirmwareAction,
    field: &str,
) -> Result<String, HttpError> {
    let path = package_path(&firmware.url, &state.config.public_url, field)?;
    let package_url = format!("{}/repo/{path}", state.config.public_url);
    let document =
        omadm_core::campaign::spec::fumo_descriptor(&firmware.version, firmware.name.as_deref(), &package_url);
    let bytes = serde_json::to_vec(&document).unwrap_or_default();
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
    let blob = state
        .content
        .write(body, MAX_CAMPAIGN_BODY as u64)
        .await
        .map_err(|error| HttpError::unavailable(format!("cannot write the campaign's descriptor: {error}")))?;
    let descriptor_path = format!("{DESCRIPTOR_FOLDER}/{campaign_id}/fumo.json");
    let item = RepositoryItem {
        path: descriptor_path.clone(),
        content_type: DMMO_JSON.to_owned(),
        blob: blob.key,
        size: blob.size,
        sha256: blob.sha256,
        source: ContentSource::Operator,
        device_id: None,
        stored_at: now_millis(),
    };
    state.store.put_content(item).await.map_err(store_failure("put_content"))?;
    Ok(format!("{}/repo/{descriptor_path}", state.config.public_url))
}

/// What a dry run answers.
#[derive(Debug, Serialize)]
struct DryRun {
    dry_run: bool,
    matched: u64,
    /// Devices per wave (not cumulative).
    waves: Vec<u64>,
    bytes_to_download: u64,
    /// At the policy's start rate (its ramp's base while ramping), ignoring the wave gates' waits.
    estimated_seconds: u64,
}

async fn target_size(state: &AppState, spec: &CampaignSpec) -> Result<u64, HttpError> {
    if let Some(source) = &spec.target.campaign {
        return records::count_in_states(state.store.as_ref(), &source.id, &source.states)
            .await
            .map_err(store_failure("count_records"));
    }
    if spec.target.devices.is_empty() {
        let filter = spec.target.filter.clone().unwrap_or_default().device_filter();
        return state.store.count_devices(&filter).await.map_err(store_failure("count_devices"));
    }
    let filter = spec.target.filter.clone().map(|filter| filter.device_filter());
    let mut matched = 0;
    for device_id in &spec.target.devices {
        let device = state.store.get_device(device_id).await.map_err(store_failure("get_device"))?;
        if device.is_some_and(|device| filter.as_ref().is_none_or(|filter| filter.matches(&device))) {
            matched += 1;
        }
    }
    Ok(matched)
}

/// `POST /api/v1/campaigns[?dry_run=true]`: 201 `{"id", "state"}`, or 200 with the dry run's figures.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns",
    params(("dry_run" = Option<bool>, Query, description = "Answer the matched count per wave, bytes and time, creating nothing")),
    request_body(content = Object, description = "name, target (filter and/or devices), action (firmware or commands), policy (docs/campaigns.md)"),
    responses(
        (status = 201, description = "Created: its id and state", body = Object),
        (status = 200, description = "The dry run's figures", body = Object),
        (status = 400, description = "Invalid request, naming the field", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.create_campaign", skip_all)]
pub(super) async fn create_campaign(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    query: web::Query<CreateQuery>,
) -> Result<HttpResponse, HttpError> {
    let body = read_body_limited(&request, payload, MAX_CAMPAIGN_BODY).await?;
    let spec = CampaignSpec::from_json(&body).map_err(|error| HttpError::bad_request(error.to_string()))?;
    let package = package_item(&state, &spec).await?;
    if query.dry_run {
        let matched = target_size(&state, &spec).await?;
        let bounds = spec.policy.wave_bounds(matched);
        let waves =
            bounds.iter().scan(0, |previous, bound| Some(bound - std::mem::replace(previous, *bound))).collect();
        let rate = u64::from(spec.policy.initial_rate().max(1));
        let answer = DryRun {
            dry_run: true,
            matched,
            waves,
            bytes_to_download: package.map_or(0, |item| item.size.saturating_mul(matched)),
            estimated_seconds: matched.saturating_mul(60).div_ceil(rate),
        };
        return Ok(HttpResponse::Ok().json(answer));
    }
    let id = format!("cmp-{:012x}", rand::random::<u64>() >> 16);
    if let Some(source) = &spec.target.campaign {
        require_campaign(&state, &source.id)
            .await
            .map_err(|_| HttpError::bad_request(format!("target.campaign.id: no campaign {:?}", source.id)))?;
    }
    let descriptors = write_descriptors(&state, &id, &spec).await?;
    let campaign = control::create(state.store.as_ref(), id, spec, descriptors, None, now_millis())
        .await
        .map_err(store_failure("commit"))?;
    Ok(HttpResponse::Created().json(serde_json::json!({"id": campaign.id, "state": campaign.state})))
}

async fn campaign_view(state: &AppState, campaign: Campaign) -> Result<CampaignView, HttpError> {
    let counts = records::count_devices(state.store.as_ref(), &campaign.id, campaign.spec.policy.waves.len())
        .await
        .map_err(store_failure("count_records"))?;
    Ok(view(campaign, &counts))
}

async fn require_campaign(state: &AppState, id: &str) -> Result<Stored<Campaign>, HttpError> {
    records::get_campaign(state.store.as_ref(), id)
        .await
        .map_err(store_failure("get_record"))?
        .ok_or_else(|| HttpError::not_found(format!("no campaign {id:?}")))
}

/// `GET /api/v1/campaigns/{id}`.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign with its counts per state, code and wave", body = Object),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.get_campaign", skip_all, fields(campaign_id = %id))]
pub(super) async fn get_campaign(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let stored = require_campaign(&state, &id).await?;
    Ok(HttpResponse::Ok().json(campaign_view(&state, stored.value).await?))
}

/// `GET /api/v1/campaigns?state=&after=&limit=`: campaigns in id order.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    params(("state" = Option<String>, Query, description = "Only campaigns in this state"),
        ("after" = Option<String>, Query, description = "Cursor: the last id of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (100)")),
    responses((status = 200, description = "Campaigns in id order and the next cursor", body = Object),
        (status = 400, description = "Invalid query", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.list_campaigns", skip_all)]
pub(super) async fn list_campaigns(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, HttpError> {
    let limit = page_limit(query.limit)?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(name) => Some(
            CampaignState::ALL
                .into_iter()
                .find(|state| state.name() == name)
                .ok_or_else(|| HttpError::bad_request(format!("state: no campaign state {name:?}")))?,
        ),
    };
    if query.wave.is_some() {
        return Err(HttpError::bad_request("wave: only a campaign's devices are paged by wave"));
    }
    let page = records::list_campaigns(state.store.as_ref(), wanted, query.after.as_deref(), limit)
        .await
        .map_err(store_failure("list_records"))?;
    let next = (page.len() == limit).then(|| page.last().map(|stored| stored.value.id.clone())).flatten();
    let campaigns: Vec<serde_json::Value> = page
        .into_iter()
        .map(|stored| {
            let campaign = stored.value;
            serde_json::json!({"id": campaign.id, "name": campaign.spec.name, "state": campaign.state,
                "created_at": campaign.created_at, "updated_at": campaign.updated_at})
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"campaigns": campaigns, "next": next})))
}

async fn steer(state: &AppState, id: &str, control: Control) -> Result<HttpResponse, HttpError> {
    let campaign = control::apply(state.store.as_ref(), id, control, now_millis()).await.map_err(control_failure)?;
    Ok(HttpResponse::Ok().json(campaign_view(state, campaign).await?))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/approve", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign as it now stands", body = Object),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody),
        (status = 409, description = "Not applicable to the campaign's state", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.approve_campaign", skip_all, fields(campaign_id = %id))]
pub(super) async fn approve(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    steer(&state, &id, Control::Approve).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign as it now stands", body = Object),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody),
        (status = 409, description = "Not applicable to the campaign's state", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.pause_campaign", skip_all, fields(campaign_id = %id))]
pub(super) async fn pause(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    steer(&state, &id, Control::Pause).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign as it now stands", body = Object),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody),
        (status = 409, description = "Not applicable to the campaign's state", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.resume_campaign", skip_all, fields(campaign_id = %id))]
pub(super) async fn resume(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    steer(&state, &id, Control::Resume).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "The campaign as it now stands", body = Object),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody),
        (status = 409, description = "Not applicable to the campaign's state", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.cancel_campaign", skip_all, fields(campaign_id = %id))]
pub(super) async fn cancel(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    steer(&state, &id, Control::Cancel).await
}

/// `POST /api/v1/campaigns/{id}/retry`: a follow-up campaign over the devices that failed or timed out (at most
/// 10,000), with the same action and policy in one wave; 409 while the campaign runs or when nothing failed.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/retry", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 201, description = "The follow-up campaign", body = Object),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody),
        (status = 409, description = "Running, or nothing failed", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.retry_campaign", skip_all, fields(campaign_id = %id))]
pub(super) async fn retry(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let original = require_campaign(&state, &id).await?.value;
    if matches!(original.state, CampaignState::Running | CampaignState::Draft) {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            format!("campaign {id:?} is {}: pause, cancel or let it finish first", original.state.name()),
        ));
    }
    let retried = [DeviceState::Failed, DeviceState::TimedOut];
    let devices =
        records::count_in_states(state.store.as_ref(), &id, &retried).await.map_err(store_failure("count_records"))?;
    if devices == 0 {
        return Err(HttpError::new(StatusCode::CONFLICT, format!("campaign {id:?} has no failed devices to retry")));
    }
    let mut spec = original.spec.clone();
    spec.name = format!("{} (retry)", original.spec.name);
    // Over the campaign's failed devices however many there are; the filter (if any) still has to match.
    spec.target = Target {
        filter: original.spec.target.filter.clone(),
        devices: Vec::new(),
        campaign: Some(CampaignSource { id: original.id.clone(), states: retried.to_vec() }),
    };
    spec.policy.waves = vec![omadm_core::campaign::WaveSize::Percent(100.0)];
    spec.policy.requires_approval = false;
    spec.policy.dynamic = false;
    let new_id = format!("cmp-{:012x}", rand::random::<u64>() >> 16);
    let descriptors =
        Descriptors { action: original.descriptor_url.clone(), rollback: original.rollback_descriptor_url.clone() };
    let campaign =
        control::create(state.store.as_ref(), new_id, spec, descriptors, Some(original.id.clone()), now_millis())
            .await
            .map_err(store_failure("commit"))?;
    Ok(HttpResponse::Created().json(serde_json::json!({"id": campaign.id, "state": campaign.state,
        "follow_up_of": original.id, "devices": devices})))
}

/// `GET /api/v1/campaigns/{id}/devices?state=&after=&limit=`: its devices in id order, with timelines (`wave=`, not
/// in the OpenAPI document, narrows them to one wave).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/devices", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"),
        ("state" = Option<String>, Query, description = "Only devices in this state"),
        ("after" = Option<String>, Query, description = "Cursor: the last device id of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (100)")),
    responses((status = 200, description = "Devices with their timelines, and the next cursor", body = Object),
        (status = 400, description = "Invalid query", body = super::schema::ErrorBody),
        (status = 404, description = "No such campaign", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.list_campaign_devices", skip_all, fields(campaign_id = %id))]
pub(super) async fn list_devices(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, HttpError> {
    require_campaign(&state, &id).await?;
    let limit = page_limit(query.limit)?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(name) => Some(
            DeviceState::from_name(name)
                .ok_or_else(|| HttpError::bad_request(format!("state: no device state {name:?}")))?,
        ),
    };
    let label = match (query.wave, wanted) {
        (Some(wave), Some(device_state)) => Some(wave_label(wave, device_state)),
        (Some(wave), None) => Some(records::wave_all_label(wave)),
        (None, Some(device_state)) => Some(state_label(device_state)),
        (None, None) => None,
    };
    let page = records::list_devices(state.store.as_ref(), &id, label.as_deref(), query.after.as_deref(), limit)
        .await
        .map_err(store_failure("list_records"))?;
    let next = (page.len() == limit).then(|| page.last().map(|stored| stored.value.device_id.clone())).flatten();
    let devices: Vec<CampaignDevice> = page.into_iter().map(|stored| stored.value).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"devices": devices, "next": next})))
}

/// `GET /api/v1/campaigns/{id}/devices/{devid}`: one device's state and timeline.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/devices/{devid}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), ("devid" = String, Path, description = "DevID")),
    responses((status = 200, description = "The device's state and timeline", body = Object),
        (status = 404, description = "No such campaign or device in it", body = super::schema::ErrorBody)))]
#[tracing::instrument(name = "api.get_campaign_device", skip_all)]
pub(super) async fn get_device(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (id, device_id) = path.into_inner();
    require_campaign(&state, &id).await?;
    let device = records::get_device(state.store.as_ref(), &id, &device_id)
        .await
        .map_err(store_failure("get_record"))?
        .ok_or_else(|| HttpError::not_found(format!("device {device_id:?} is not in campaign {id:?}")))?;
    Ok(HttpResponse::Ok().json(device.value))
}
