//! `/api/v1/devices`: register, read, list (filters + cursor) and delete devices.
//!
//! ```text
//! PUT /api/v1/devices/IMEI:1 {"password": "s3cret", "tags": {"fleet": "meters"}}  -> 201 (200 when it existed)
//! PUT /api/v1/devices/IMEI:1 {"password": "s3cret", "msisdn": "+491701234567"}    -> SMS notifications
//! GET /api/v1/devices?man=Acme&mod=X1&fwv=1.2&tag=fleet:meters&limit=100&after=IMEI:1
//!     -> {"devices": [...], "next": "IMEI:99" | null}
//! GET /api/v1/counts/devices?mod=X1&fwv=1.2       -> {"count": 12345}
//! ```
//!
//! Filters (also swv and devtype) are answered from the Store's inventory index (`store::index`), not by
//! reading the registry. The count has a path of its own: under `/devices/` it would hide a device named
//! `count`.
//!
//! Views never carry credentials or the notification secret: only whether one is set.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::auth::credentials_for;
use omadm_core::clock::now_millis;
use omadm_core::model::{Device, DeviceFilter, NotifyTransport, check_msisdn};
use omadm_core::store::WriteBatch;
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{json_body, page_limit};
use super::schema::{DevicePageView, DeviceRegistration, DeviceSummaryView, DeviceView, InventoryView, SessionView};
use super::{checked_device_id, require_device, store_failure};
use crate::{AppState, HttpError};

/// Devices per page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// Largest page a client may ask for.
const MAX_PAGE: usize = 1000;
// Lengths count characters, as the OpenAPI document's minLength/maxLength do.
pub(super) const MAX_PASSWORD_CHARS: usize = 1024;
pub(super) const MAX_TAGS: usize = 64;
pub(super) const MAX_TAG_KEY_CHARS: usize = 128;
pub(super) const MAX_TAG_VALUE_CHARS: usize = 512;

/// Register a device or replace its password (and tags, secret when given).
#[utoipa::path(put, path = "/api/v1/devices/{devid}", tag = "devices",
    params(("devid" = String, Path, description = "DevID, e.g. IMEI:493005100592800")),
    request_body = DeviceRegistration,
    responses(
        (status = 201, description = "Registered", body = DeviceView),
        (status = 200, description = "Updated", body = DeviceView),
        (status = 400, description = "Invalid body", body = super::schema::ErrorBody),
        (status = 413, description = "Body over the limit", body = super::schema::ErrorBody),
        (status = 415, description = "Not JSON", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.put_device", skip_all, fields(device_id = %device_id))]
pub(super) async fn put_device(
    state: web::Data<AppState>,
    request: HttpRequest,
    device_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let registration: DeviceRegistration = json_body(&request, payload, state.config.max_body_bytes).await?;
    check_registration(&registration)?;
    let now = now_millis();
    let existing = state.store.get_device(device_id).await.map_err(store_failure("get_device"))?;
    let created = existing.is_none();
    let credentials = credentials_for(device_id, &state.config.realm, &registration.password);
    let device = match existing {
        Some(mut device) => {
            device.credentials = credentials;
            if let Some(secret) = registration.auth_secret {
                device.auth_secret = Some(secret);
            }
            if let Some(tags) = registration.tags {
                device.tags = tags;
            }
            if let Some(address) = registration.notify_address {
                device.notify_address = Some(address);
            }
            if let Some(msisdn) = registration.msisdn {
                device.msisdn = Some(msisdn);
            }
            if let Some(order) = &registration.notify {
                device.notify_order = notify_order(order);
            }
            device.updated_at = now;
            device
        }
        None => Device {
            auth_secret: registration.auth_secret,
            tags: registration.tags.unwrap_or_default(),
            notify_address: registration.notify_address,
            msisdn: registration.msisdn,
            notify_order: registration.notify.as_deref().map(notify_order).unwrap_or_default(),
            ..Device::new(device_id, credentials, now)
        },
    };
    let batch = WriteBatch { devices: vec![device.clone()], ..WriteBatch::default() };
    state.store.commit(batch).await.map_err(store_failure("commit"))?;
    tracing::info!(created, "device registered");
    let view = device_view(&state, &device).await?;
    if created {
        Ok(HttpResponse::Created()
            .insert_header(("Location", format!("{}/devices/{}", super::PREFIX, device.id)))
            .json(view))
    } else {
        Ok(HttpResponse::Ok().json(view))
    }
}

/// The order as stored: repeats dropped (the first kept); empty for the default order.
fn notify_order(order: &[NotifyTransport]) -> Vec<NotifyTransport> {
    if order.is_empty() { Vec::new() } else { NotifyTransport::effective_order(order) }
}

fn check_registration(registration: &DeviceRegistration) -> Result<(), HttpError> {
    if registration.password.is_empty() {
        return Err(HttpError::bad_request("password must not be empty"));
    }
    if registration.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(HttpError::bad_request(format!("password longer than {MAX_PASSWORD_CHARS} characters")));
    }
    if registration.auth_secret.as_deref().is_some_and(str::is_empty) {
        return Err(HttpError::bad_request("auth_secret must not be empty (leave it out instead)"));
    }
    if let Some(msisdn) = &registration.msisdn {
        check_msisdn(msisdn).map_err(|error| HttpError::bad_request(error.to_string()))?;
    }
    let Some(tags) = &registration.tags else { return Ok(()) };
    if tags.len() > MAX_TAGS {
        return Err(HttpError::bad_request(format!("more than {MAX_TAGS} tags")));
    }
    for (key, value) in tags {
        let key_length = key.chars().count();
        if key_length == 0 || key_length > MAX_TAG_KEY_CHARS || key.contains(':') || key.chars().any(char::is_control) {
            return Err(HttpError::bad_request(format!(
                "invalid tag key {key:?}: 1 to {MAX_TAG_KEY_CHARS} characters, no ':' and no control characters"
            )));
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(HttpError::bad_request(format!(
                "tag {key:?}: value longer than {MAX_TAG_VALUE_CHARS} characters"
            )));
        }
    }
    Ok(())
}

/// The full view: device record, last session and pending count.
async fn device_view(state: &AppState, device: &Device) -> Result<DeviceView, HttpError> {
    let pending_commands = state.store.pending_count(&device.id).await.map_err(store_failure("pending_count"))?;
    let sessions = state.store.list_sessions(&device.id, 1).await.map_err(store_failure("list_sessions"))?;
    let mut last_session = sessions.first().map(SessionView::from);
    // An open session is not in the history yet: show it from the open-session record.
    if let Some(session_id) = &device.last_session_id
        && last_session.as_ref().is_none_or(|session| &session.id != session_id)
        && let Some(open) =
            state.store.get_session(&device.id, session_id).await.map_err(store_failure("get_session"))?
    {
        last_session = Some(SessionView {
            id: open.id,
            started_at: open.started_at,
            ended_at: None,
            outcome: "active".to_owned(),
            packages: open.packages,
            commands_answered: open.commands_answered,
        });
    }
    Ok(DeviceView {
        id: device.id.clone(),
        tags: device.tags.clone(),
        inventory: InventoryView::from(&device.inventory),
        mos: serde_json::to_value(&device.supported_objects).unwrap_or(serde_json::Value::Array(Vec::new())),
        has_auth_secret: device.auth_secret.is_some(),
        notify_address: device.notify_address,
        msisdn: device.msisdn.clone(),
        push_registered_at: device.push_registration.as_ref().map(|registration| registration.registered_at),
        notify: NotifyTransport::effective_order(&device.notify_order),
        last_session,
        pending_commands,
        created_at: device.created_at,
        updated_at: device.updated_at,
    })
}

/// One device: tags, inventory, MOS, last session, pending count.
#[utoipa::path(get, path = "/api/v1/devices/{devid}", tag = "devices",
    params(("devid" = String, Path, description = "DevID")),
    responses(
        (status = 200, description = "The device", body = DeviceView),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.get_device", skip_all, fields(device_id = %device_id))]
pub(super) async fn get_device(
    state: web::Data<AppState>,
    device_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    let device = require_device(&state, device_id).await?;
    Ok(HttpResponse::Ok().json(device_view(&state, &device).await?))
}

/// Remove a device with its queue, sessions, mirror and alerts.
#[utoipa::path(delete, path = "/api/v1/devices/{devid}", tag = "devices",
    params(("devid" = String, Path, description = "DevID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Unknown device", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.delete_device", skip_all, fields(device_id = %device_id))]
pub(super) async fn delete_device(
    state: web::Data<AppState>,
    device_id: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let device_id = checked_device_id(&device_id)?;
    if state.store.delete_device(device_id).await.map_err(store_failure("delete_device"))? {
        tracing::info!("device deleted");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(HttpError::not_found(format!("unknown device {device_id:?}")))
    }
}

/// The filters and cursor of `GET /api/v1/devices` (`tag` may repeat; all must match).
#[derive(Debug, Default, PartialEq)]
struct DeviceListQuery {
    filter: DeviceFilter,
    limit: Option<usize>,
    after: Option<String>,
}

fn parse_list_query(query: &str) -> Result<DeviceListQuery, HttpError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|error| HttpError::bad_request(format!("invalid query string: {error}")))?;
    let mut parsed = DeviceListQuery::default();
    let single = |slot: &mut Option<String>, name: &str, value: String| {
        if slot.replace(value).is_some() {
            return Err(HttpError::bad_request(format!("query parameter {name} given twice")));
        }
        Ok(())
    };
    for (name, value) in pairs {
        match name.as_str() {
            "man" => single(&mut parsed.filter.man, "man", value)?,
            "mod" => single(&mut parsed.filter.model, "mod", value)?,
            "fwv" => single(&mut parsed.filter.fwv, "fwv", value)?,
            "swv" => single(&mut parsed.filter.swv, "swv", value)?,
            "devtype" => single(&mut parsed.filter.dev_type, "devtype", value)?,
            "after" => single(&mut parsed.after, "after", value)?,
            "tag" => {
                let Some((key, tag_value)) = value.split_once(':') else {
                    return Err(HttpError::bad_request(format!("tag filter {value:?} must be key:value")));
                };
                parsed.filter.tags.push((key.to_owned(), tag_value.to_owned()));
            }
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .map_err(|_| HttpError::bad_request(format!("limit {value:?} is not a number")))?;
                parsed.limit = Some(limit);
            }
            other => {
                return Err(HttpError::bad_request(format!(
                    "unknown query parameter {other:?}: expected man, mod, fwv, swv, devtype, tag, limit or after"
                )));
            }
        }
    }
    Ok(parsed)
}

/// Devices in id order, filtered by DevInfo values and tags, one page at a time.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    params(
        ("man" = Option<String>, Query, description = "DevInfo Man equals"),
        ("mod" = Option<String>, Query, description = "DevInfo Mod equals"),
        ("fwv" = Option<String>, Query, description = "DevInfo FwV equals"),
        ("swv" = Option<String>, Query, description = "DevInfo SwV equals"),
        ("devtype" = Option<String>, Query, description = "DevInfo DevType equals"),
        ("tag" = Option<Vec<String>>, Query, description = "key:value, repeatable; every one must match"),
        ("limit" = Option<usize>, Query, description = "page size, 1 to 1000, default 100"),
        ("after" = Option<String>, Query, description = "cursor: the `next` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = DevicePageView),
        (status = 400, description = "Invalid query", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.list_devices", skip_all)]
pub(super) async fn list_devices(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let query = parse_list_query(request.query_string())?;
    let limit = page_limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let page = state
        .store
        .list_devices(&query.filter, query.after.as_deref(), limit)
        .await
        .map_err(store_failure("list_devices"))?;
    let view = DevicePageView { devices: page.devices.iter().map(DeviceSummaryView::from).collect(), next: page.next };
    Ok(HttpResponse::build(StatusCode::OK).json(view))
}

/// How many devices a filter matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCountView {
    pub count: u64,
}

/// How many devices match the filters of `GET /api/v1/devices` (the same parameters; no `limit` or `after`),
/// from the inventory index: a one-term filter is answered from the term's count.
#[utoipa::path(get, path = "/api/v1/counts/devices", tag = "devices",
    params(
        ("man" = Option<String>, Query, description = "DevInfo Man equals"),
        ("mod" = Option<String>, Query, description = "DevInfo Mod equals"),
        ("fwv" = Option<String>, Query, description = "DevInfo FwV equals"),
        ("swv" = Option<String>, Query, description = "DevInfo SwV equals"),
        ("devtype" = Option<String>, Query, description = "DevInfo DevType equals"),
        ("tag" = Option<Vec<String>>, Query, description = "key:value, repeatable; every one must match"),
    ),
    responses(
        (status = 200, description = "The count", body = DeviceCountView),
        (status = 400, description = "Invalid query", body = super::schema::ErrorBody),
    ))]
#[tracing::instrument(name = "api.count_devices", skip_all)]
pub(super) async fn count_devices(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let query = parse_list_query(request.query_string())?;
    if query.limit.is_some() || query.after.is_some() {
        return Err(HttpError::bad_request("a count takes filters only: no limit or after"));
    }
    let count = state.store.count_devices(&query.filter).await.map_err(store_failure("count_devices"))?;
    Ok(HttpResponse::build(StatusCode::OK).json(DeviceCountView { count }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn list_query_reads_filters_and_repeated_tags() {
        let query =
            parse_list_query("man=Acme&mod=X%201&tag=fleet:meters&tag=region:eu:west&limit=5&after=IMEI:1").unwrap();
        assert_eq!(query.filter.man.as_deref(), Some("Acme"));
        assert_eq!(query.filter.model.as_deref(), Some("X 1"));
        assert_eq!(
            query.filter.tags,
            vec![("fleet".to_owned(), "meters".to_owned()), ("region".to_owned(), "eu:west".to_owned())]
        );
        assert_eq!(query.limit, Some(5));
        assert_eq!(query.after.as_deref(), Some("IMEI:1"));
        assert_eq!(parse_list_query("").unwrap(), DeviceListQuery::default());
    }

    #[test]
    fn list_query_refusals() {
        for bad in ["color=red", "tag=fleet", "limit=ten", "man=a&man=b"] {
            assert_eq!(parse_list_query(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn registration_checks() {
        let registration = |password: &str, tags: &[(&str, &str)]| DeviceRegistration {
            password: password.to_owned(),
            auth_secret: None,
            tags: Some(tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            notify_address: None,
            msisdn: None,
            notify: None,
        };
        assert!(check_registration(&registration("pw", &[("fleet", "meters")])).is_ok());
        assert!(check_registration(&registration("", &[])).is_err());
        assert!(check_registration(&registration("pw", &[("a:b", "c")])).is_err());
        assert!(check_registration(&registration("pw", &[("", "c")])).is_err());
    }

    #[test]
    fn the_document_names_every_transport_an_order_may_hold() {
        let document = super::super::openapi_document();
        let transport = &document["components"]["schemas"]["NotifyTransport"];
        assert_eq!(transport["enum"], serde_json::json!(["push", "udp", "sms"]), "{transport}");
        let items = &document["components"]["schemas"]["DeviceRegistration"]["properties"]["notify"]["items"];
        assert_eq!(items["$ref"], "#/components/schemas/NotifyTransport", "{items}");
        for name in ["push", "udp", "sms"] {
            let parsed: NotifyTransport = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed.name(), name);
        }
    }

    #[test]
    fn the_documented_msisdn_rule_is_the_checked_one() {
        let document = super::super::openapi_document();
        let schema = &document["components"]["schemas"]["DeviceRegistration"]["properties"]["msisdn"];
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        for msisdn in ["+491701234567", "+123456", "+123456789012345", "+12345", "+1234567890123456", "0170", "+49 1"] {
            let registration = DeviceRegistration {
                password: "pw".to_owned(),
                auth_secret: None,
                tags: None,
                notify_address: None,
                msisdn: Some(msisdn.to_owned()),
                notify: None,
            };
            assert_eq!(pattern.is_match(msisdn), check_registration(&registration).is_ok(), "{msisdn:?}");
        }
    }

    #[test]
    fn the_documented_tag_key_rule_is_the_checked_one() {
        let document = super::super::openapi_document();
        let key_schema =
            &document["components"]["schemas"]["DeviceRegistration"]["properties"]["tags"]["propertyNames"];
        let pattern = regex::Regex::new(key_schema["pattern"].as_str().unwrap()).unwrap();
        let longest = key_schema["maxLength"].as_u64().unwrap() as usize;
        let long = "é".repeat(longest);
        let too_long = "é".repeat(longest + 1);
        for key in ["fleet", "caf\u{e9}", "a b", "", "a:b", "a\nb", "a\u{85}b", "\u{a0}", &long, &too_long] {
            let documented = pattern.is_match(key) && key.chars().count() <= longest;
            let tags = BTreeMap::from([(key.to_owned(), "v".to_owned())]);
            let registration = DeviceRegistration {
                password: "pw".to_owned(),
                auth_secret: None,
                tags: Some(tags),
                notify_address: None,
                msisdn: None,
                notify: None,
            };
            assert_eq!(documented, check_registration(&registration).is_ok(), "{key:?}");
        }
    }
}
