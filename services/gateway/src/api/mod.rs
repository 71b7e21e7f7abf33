//! The operator API under `/api/v1`: devices, command queues, MO mirrors, repository content, notifications.
//!
//! JSON in and out, bearer token (`GatewayConfig::admin_token`) on every route
//! but `GET /api/v1/openapi.json`. Every failure is an [`HttpError`]
//! (`{"error": "one line"}`): client mistakes get their 4xx, backend failures 503.
//!
//! ```text
//! PUT    /api/v1/devices/{devid}                 {"password": "...", "tags": {"fleet": "meters"}}
//! GET    /api/v1/devices?man=Acme&tag=fleet:meters&limit=100&after=IMEI:1
//! POST   /api/v1/devices/{devid}/commands        {"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//"]]}
//! GET    /api/v1/devices/{devid}/tree?uri=urn:oma:mo:oma-dm-devinfo:1.2//FwV
//! PUT    /api/v1/repository/firmware/v2.bin      (any media type)
//! POST   /api/v1/devices/{devid}/notify          {"req_mos": true}
//! POST   /api/v1/notifications                   {"device_ids": ["IMEI:1"]} or {"filter": {"tags": {"fleet": "meters"}}}
//! GET    /api/v1/notifications/{request_id}
//! ```
//!
//! Each handler file owns one resource family; [`ROUTES`] is the one table the
//! routes are registered from, so the OpenAPI test can check each of them is documented.

mod auth;
pub mod body;
mod campaigns;
mod commands;
mod devices;
mod mirror;
mod notify;
mod openapi;
mod repository;
pub mod schema;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, Route, web};

use omadm_core::model::{Device, check_device_id};

use crate::{AppState, HttpError};

pub use openapi::openapi_document;

/// The prefix of every operator API route.
pub const PREFIX: &str = "/api/v1";

/// Builds one actix route (method guard + handler); plain function pointers so the table is a constant.
type MakeRoute = fn() -> Route;

/// One route of the operator API: method, path below [`PREFIX`] (actix pattern syntax), handler.
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    make: MakeRoute,
}

impl ApiRoute {
    /// The path as OpenAPI writes it: `/api/v1/repository/{path}` for `/repository/{path:.*}`.
    pub fn openapi_path(&self) -> String {
        let mut openapi = String::from(PREFIX);
        let mut rest = self.path;
        while let Some((before, after)) = rest.split_once('{') {
            let Some((parameter, tail)) = after.split_once('}') else { break };
            let name = parameter.split(':').next().unwrap_or(parameter);
            openapi.push_str(before);
            openapi.push('{');
            openapi.push_str(name);
            openapi.push('}');
            rest = tail;
        }
        openapi.push_str(rest);
        openapi
    }

    /// The method as actix writes it.
    pub fn http_method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).unwrap_or(Method::GET)
    }
}

/// Every authenticated route, in registration order. Routes sharing a path become one resource,
/// so a known path with an unknown method answers 405.
pub const ROUTES: &[ApiRoute] = &[
    ApiRoute { method: "GET", path: "/devices", make: || web::get().to(devices::list_devices) },
    ApiRoute { method: "GET", path: "/counts/devices", make: || web::get().to(devices::count_devices) },
    ApiRoute { method: "PUT", path: "/devices/{devid}", make: || web::put().to(devices::put_device) },
    ApiRoute { method: "GET", path: "/devices/{devid}", make: || web::get().to(devices::get_device) },
    ApiRoute { method: "DELETE", path: "/devices/{devid}", make: || web::delete().to(devices::delete_device) },
    ApiRoute { method: "POST", path: "/devices/{devid}/commands", make: || web::post().to(commands::post_commands) },
    ApiRoute { method: "GET", path: "/devices/{devid}/commands", make: || web::get().to(commands::list_commands) },
    ApiRoute { method: "GET", path: "/devices/{devid}/commands/{id}", make: || web::get().to(commands::get_command) },
    ApiRoute { method: "GET", path: "/devices/{devid}/tree", make: || web::get().to(mirror::get_tree) },
    ApiRoute { method: "GET", path: "/devices/{devid}/alerts", make: || web::get().to(mirror::list_alerts) },
    ApiRoute { method: "GET", path: "/devices/{devid}/sessions", make: || web::get().to(mirror::list_sessions) },
    ApiRoute { method: "POST", path: "/devices/{devid}/notify", make: || web::post().to(notify::post_notify) },
    ApiRoute { method: "POST", path: "/notifications", make: || web::post().to(notify::post_notifications) },
    ApiRoute { method: "GET", path: "/notifications/{request_id}", make: || web::get().to(notify::get_notification) },
    ApiRoute { method: "POST", path: "/campaigns", make: || web::post().to(campaigns::create_campaign) },
    ApiRoute { method: "GET", path: "/campaigns", make: || web::get().to(campaigns::list_campaigns) },
    ApiRoute { method: "GET", path: "/campaigns/{id}", make: || web::get().to(campaigns::get_campaign) },
    ApiRoute { method: "POST", path: "/campaigns/{id}/approve", make: || web::post().to(campaigns::approve) },
    ApiRoute { method: "POST", path: "/campaigns/{id}/pause", make: || web::post().to(campaigns::pause) },
    ApiRoute { method: "POST", path: "/campaigns/{id}/resume", make: || web::post().to(campaigns::resume) },
    ApiRoute { method: "POST", path: "/campaigns/{id}/cancel", make: || web::post().to(campaigns::cancel) },
    ApiRoute { method: "POST", path: "/campaigns/{id}/retry", make: || web::post().to(campaigns::retry) },
    ApiRoute { method: "GET", path: "/campaigns/{id}/devices", make: || web::get().to(campaigns::list_devices) },
    ApiRoute { method: "GET", path: "/campaigns/{id}/devices/{devid}", make: || web::get().to(campaigns::get_device) },
    ApiRoute { method: "PUT", path: "/repository/{path:.+}", make: || web::put().to(repository::put_content) },
    ApiRoute { method: "GET", path: "/repository/{path:.+}", make: || web::get().to(repository::get_content) },
    ApiRoute { method: "HEAD", path: "/repository/{path:.+}", make: || web::head().to(repository::head_content) },
    ApiRoute { method: "DELETE", path: "/repository/{path:.+}", make: || web::delete().to(repository::delete_content) },
];

/// The route served without a token: the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Registers the operator API (called for every worker; expects `web::Data<AppState>`).
pub fn configure(config: &mut web::ServiceConfig) {
    config.route(OPENAPI_PATH, web::get().to(openapi::get_openapi));
    let mut scope = web::scope(PREFIX)
        // The last wrap runs first: the token is checked before anything about the path is said.
        .wrap(actix_web::middleware::from_fn(crate::path::require_utf8_path))
        .wrap(actix_web::middleware::from_fn(auth::require_operator))
        .default_service(web::to(no_such_route));
    let mut registered: Vec<&str> = Vec::new();
    for route in ROUTES {
        if registered.contains(&route.path) {
            continue;
        }
        registered.push(route.path);
        let same_path: Vec<&ApiRoute> = ROUTES.iter().filter(|other| other.path == route.path).collect();
        let allowed = same_path.iter().map(|other| other.method).collect::<Vec<_>>().join(", ");
        let mut resource = web::resource(route.path)
            .default_service(web::to(move |request: HttpRequest| method_not_allowed(request, allowed.clone())));
        for other in same_path {
            resource = resource.route((other.make)());
        }
        scope = scope.service(resource);
    }
    config.service(scope);
}

async fn no_such_route() -> Result<HttpResponse, HttpError> {
    Err(HttpError::not_found("no such route in the operator API (see /api/v1/openapi.json)"))
}

async fn method_not_allowed(request: HttpRequest, allowed: String) -> Result<HttpResponse, HttpError> {
    Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {} is not allowed here", request.method()))
        .with_header("Allow", allowed))
}

pub(crate) use crate::error::store_failure;

/// Checks a device id taken from the path against the one device-id rule (`omadm_core::model::check_device_id`),
/// the one the device edge applies to `OMADM-DevID`: 400 with the rule in the message.
pub(crate) fn checked_device_id(device_id: &str) -> Result<&str, HttpError> {
    check_device_id(device_id).map_err(|error| HttpError::bad_request(error.to_string()))?;
    Ok(device_id)
}

/// The registered device, or 404.
pub(crate) async fn require_device(state: &AppState, device_id: &str) -> Result<Device, HttpError> {
    state
        .store
        .get_device(device_id)
        .await
        .map_err(store_failure("get_device"))?
        .ok_or_else(|| HttpError::not_found(format!("unknown device {device_id:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_paths_drop_patterns() {
        let repository = ROUTES.iter().find(|route| route.path.starts_with("/repository")).unwrap();
        assert_eq!(repository.openapi_path(), "/api/v1/repository/{path}");
        let command = ROUTES.iter().find(|route| route.path.ends_with("{id}")).unwrap();
        assert_eq!(command.openapi_path(), "/api/v1/devices/{devid}/commands/{id}");
    }
}
