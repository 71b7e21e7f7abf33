//! The HTTP servers of one node: the device edge, the operator API, `/healthz` and `/readyz` on the public
//! listener; the DM routes for requests forwarded by peers, and `/healthz`, on the internal listener;
//! `/metrics`, `/healthz` and `/readyz` on the ops listener ([`run_ops`], the role runtime's `OpsServer`), which only
//! operators should reach.
//!
//! Around every route: a tracing span per request (with the `OMADM-DevID`
//! header as `device_id`), HTTP metrics by route pattern (never the raw
//! path, which carries ids), and JSON one-line errors for whatever actix
//! itself refuses (bad JSON, path or query, bodies over the limit, unknown routes).
//! Slow clients get 408 (headers: `client_request_timeout`; bodies read by the
//! API: [`BodyReadTimeout`]) and never hold a worker, since everything is async.
//!
//! ```text
//! let server = server::run(state, edge, server::bind("127.0.0.1:0")?, ServerOptions::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown(relay).await?;   // readyz 503, stop accepting, finish in-flight requests, drain the outbox
//! ```
//!
//! The internal listener ([`run_internal`]) refuses every request but `/healthz`
//! that lacks the cluster's token (`OMADM-Internal-Token`) with 403 and
//! `OMADM-Internal-Refused`, so a peer tells a misconfiguration from a device's 403.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

use actix_http::{Request, Response};
use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{AppConfig, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use omadm_core::bus::relay::{OutboxRelay, OutboxWaker};
use omadm_core::metrics::{metrics, status_class};
use omadm_runtime::ops::OpsServer;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, TracingLogger};

use crate::api::body::BodyReadTimeout;
use crate::device::DeviceEdge;
use crate::ops::Readiness;
use crate::{AppState, HttpError};

/// How the HTTP server treats connections; body limits live in [`crate::GatewayConfig`].
#[derive(Clone)]
pub struct ServerOptions {
    /// Worker threads; `None` means one per CPU core.
    pub workers: Option<usize>,
    /// A client must send the request head within this time, else 408.
    pub client_request_timeout: Duration,
    /// A body read by the API must arrive within this time once the head is in, else 408.
    pub body_read_timeout: Duration,
    /// Idle keep-alive connections are closed after this time.
    pub keep_alive: Duration,
    /// On graceful stop, in-flight requests get this long to finish before workers are stopped.
    pub shutdown_timeout: Duration,
    /// Pokes the outbox relay; handlers that commit events get it as app data (`OutboxWaker`), and session
    /// steps wake the shards of their events, so events reach the bus at once instead of at the next sweep.
    pub outbox_waker: Option<OutboxWaker>,
    /// What `/readyz` reads; servers started with clones of the same options share it, so stopping the public
    /// listener turns the ops listener's `/readyz` 503 as well.
    pub readiness: web::Data<Readiness>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            workers: None,
            client_request_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            outbox_waker: None,
            readiness: web::Data::new(Readiness::new()),
        }
    }
}

/// A running server: its bound address, its readiness flag, and the way to stop it.
pub struct Server {
    local_addr: SocketAddr,
    handle: ServerHandle,
    readiness: web::Data<Readiness>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Server {
    /// The address the listener is bound to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The flag `/readyz` reads; [`Server::stop`] sets it first.
    pub fn readiness(&self) -> web::Data<Readiness> {
        self.readiness.clone()
    }

    /// Graceful stop: `/readyz` turns 503, the listener closes, in-flight requests finish
    /// (up to `shutdown_timeout`), then the workers end. Draining the outbox is the caller's next step.
    pub async fn stop(self) -> io::Result<()> {
        self.readiness.begin_shutdown();
        tracing::info!("graceful stop: no new connections, finishing requests in flight");
        self.handle.stop(true).await;
        self.wait().await
    }

    /// [`Server::stop`], then hands every event committed so far to the bus and stops the relay.
    /// Events the bus refuses stay in the outbox for the next start (logged, not an error here).
    pub async fn shutdown(self, relay: OutboxRelay) -> io::Result<()> {
        let stopped = self.stop().await;
        match relay.drain().await {
            Ok(()) => tracing::info!("outbox drained"),
            Err(error) => tracing::warn!(%error, "outbox not drained; its events stay for the next start"),
        }
        relay.stop().await;
        stopped
    }

    /// Waits until the server ends (after [`Server::stop`] or a fatal error).
    pub async fn wait(self) -> io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(io::Error::other(format!("server task failed: {join_error}"))),
        }
    }
}

/// Binds a listener on `address` (`127.0.0.1:8080`, `localhost:0`...), before the server runs,
/// so the caller knows the real address (port 0) when it builds the public URL.
pub fn bind(address: &str) -> io::Result<TcpListener> {
    let addresses: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    TcpListener::bind(addresses.as_slice())
}

/// Starts the server on `listener`; returns once it accepts connections.
pub async fn run(
    state: web::Data<AppState>,
    edge: DeviceEdge,
    listener: TcpListener,
    options: ServerOptions,
) -> io::Result<Server> {
    share_outbox_waker(&edge, &options);
    let app_readiness = options.readiness.clone();
    let max_body_bytes = state.config.max_body_bytes;
    let body_read_timeout = BodyReadTimeout(options.body_read_timeout);
    let outbox_waker = options.outbox_waker.clone();
    let http_server = HttpServer::new(move || {
        let edge = edge.clone();
        let mut app = App::new();
        if let Some(waker) = &outbox_waker {
            app = app.app_data(waker.clone());
        }
        app.app_data(state.clone())
            .app_data(app_readiness.clone())
            .app_data(body_read_timeout)
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .error_handler(|error, _request| json_payload_error(&error).into()),
            )
            .app_data(web::PayloadConfig::new(max_body_bytes))
            .app_data(path_config())
            .app_data(web::QueryConfig::default().error_handler(|error, _request| {
                HttpError::bad_request(format!("invalid query string: {error}")).into()
            }))
            .wrap(ErrorHandlers::new().default_handler(errors_as_json))
            .wrap(from_fn(record_http_metrics))
            .wrap(TracingLogger::<DeviceRootSpan>::new())
            .configure(crate::ops::configure_probes)
            .configure(crate::api::configure)
            .configure(move |config| edge.configure(config))
            .default_service(web::to(no_such_route))
    });
    let server = start_listener(http_server, listener, &options)?;
    tracing::info!(local_addr = %server.local_addr, "HTTP server listening");
    Ok(server)
}

/// Starts the internal listener of a cluster node on `listener`: the DM routes of `edge` for requests
/// forwarded by peers (token checked) and `/healthz`. Stop it with [`Server::stop`] after the public one.
pub async fn run_internal(
    state: web::Data<AppState>,
    edge: DeviceEdge,
    listener: TcpListener,
    options: ServerOptions,
) -> io::Result<Server> {
    share_outbox_waker(&edge, &options);
    let max_body_bytes = state.config.max_body_bytes;
    let outbox_waker = options.outbox_waker.clone();
    let http_server = HttpServer::new(move || {
        let edge = edge.clone();
        let mut app = App::new();
        if let Some(waker) = &outbox_waker {
            app = app.app_data(waker.clone());
        }
        app.app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body_bytes))
            .app_data(path_config())
            .wrap(ErrorHandlers::new().default_handler(errors_as_json))
            .wrap(from_fn(require_internal_token))
            .wrap(TracingLogger::<DeviceRootSpan>::new())
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }))
            .configure(move |config| edge.configure_internal(config))
            .default_service(web::to(no_such_route))
    });
    let server = start_listener(http_server, listener, &options)?;
    tracing::info!(local_addr = %server.local_addr, "internal listener ready");
    Ok(server)
}

/// Applies the connection settings both DM listeners share to `http_server` and starts it on `listener`.
fn start_listener<F, I, S, B>(
    http_server: HttpServer<F, I, S, B>,
    listener: TcpListener,
    options: &ServerOptions,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local_addr = listener.local_addr()?;
    let mut http_server = http_server
        .client_request_timeout(options.client_request_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .keep_alive(options.keep_alive)
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        // `omadm serve` handles SIGTERM/SIGINT itself, to drain the outbox after the server stops.
        .disable_signals();
    if let Some(workers) = options.workers {
        http_server = http_server.workers(workers);
    }
    let server = http_server.listen(listener)?.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(Server { local_addr, handle, readiness: options.readiness.clone(), task })
}

/// 400 with the JSON error body for a path parameter that does not parse.
fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|error, _request| HttpError::bad_request(format!("invalid path parameter: {error}")).into())
}

/// Hands the outbox waker to the edge, so session steps wake the relay.
fn share_outbox_waker(edge: &DeviceEdge, options: &ServerOptions) {
    if let Some(waker) = &options.outbox_waker {
        edge.set_outbox_waker(waker.clone());
    }
}

/// Starts the ops listener on `listener` (the role runtime's [`OpsServer`]): `/metrics`, `/healthz` and
/// `/readyz` (the store, the cluster and the shared readiness of `options`), nothing else. It stops last, so
/// `/readyz` answers 503 while the other listeners drain.
pub fn run_ops(
    state: web::Data<AppState>,
    cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    listener: TcpListener,
    options: &ServerOptions,
) -> io::Result<OpsServer> {
    let readiness = options.readiness.clone();
    OpsServer::start_with(listener, move |config| {
        if let Some(cluster) = &cluster {
            config.app_data(web::Data::from(cluster.clone()));
        }
        config.app_data(state.clone()).app_data(readiness.clone());
        crate::ops::configure(config);
    })
}

/// Lets through `/healthz` and requests that carry the cluster's internal token; 403 otherwise.
async fn require_internal_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    use crate::cluster::Cluster;
    use crate::cluster::forward::{INTERNAL_REFUSED_HEADER, INTERNAL_TOKEN_HEADER, token_matches};
    let allowed = request.path() == "/healthz"
        || request.app_data::<web::Data<Cluster>>().is_some_and(|cluster| {
            let given = request.headers().get(INTERNAL_TOKEN_HEADER).map(|value| value.as_bytes());
            token_matches(&cluster.config().internal_token, given)
        });
    if allowed {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    tracing::warn!(path = request.path(), "internal request without the cluster's token refused");
    let refusal = HttpError::new(StatusCode::FORBIDDEN, "the internal listener needs the cluster's token")
        .with_header(INTERNAL_REFUSED_HEADER, "token")
        .error_response();
    Ok(request.into_response(refusal).map_into_right_body())
}

/// Request spans carry the device (`OMADM-DevID`) and leave `session_id` for the device edge to record.
struct DeviceRootSpan;

impl RootSpanBuilder for DeviceRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // tracing-actix-web's fields, each capped in length (crate::logging).
        crate::logging::request_span(request)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        // A 4xx is the caller's: the 401 that opens every Digest session, a throttled device, a bad package.
        // Each is counted in the metrics and failed authentications are summarised by crate::logging; a warning
        // line per request would flood the log at fleet rates. Only 5xx are logged here.
        if status.is_client_error() {
            span.record("http.status_code", status.as_u16());
            return;
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Latency and responses by route pattern, method and status class.
async fn record_http_metrics(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // The pattern (`/api/v1/devices/{devid}`), never the path: ids must not become label values.
    let endpoint = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let outcome = next.call(request).await;
    let status = match &outcome {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    let metrics = metrics();
    metrics.http_latency.with_label_values(&[endpoint.as_str(), method]).observe(started.elapsed().as_secs_f64());
    metrics.http_responses.with_label_values(&[endpoint.as_str(), method, status_class(status.as_u16())]).inc();
    outcome
}

/// A bounded method label: anything unusual counts as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The one-line error for actix's JSON extractor: 413 over the limit, 415 for another media type, else 400.
fn json_payload_error(error: &actix_web::error::JsonPayloadError) -> HttpError {
    use actix_web::error::JsonPayloadError;
    match error {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes"))
        }
        JsonPayloadError::ContentType => HttpError::unsupported_media_type("expected Content-Type: application/json"),
        JsonPayloadError::Deserialize(inner) => HttpError::bad_request(format!("invalid JSON body: {inner}")),
        other => HttpError::bad_request(format!("cannot read the JSON body: {other}")),
    }
}

/// Rewrites any error response that is not JSON yet (actix's own: payload limits, method guards...)
/// into `{"error": "one line"}`, keeping its status and headers.
fn errors_as_json<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(response.map_into_left_body()));
    }
    let status = response.status();
    let reason = match response.response().error() {
        Some(error) => error.to_string(),
        None => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (request, old_response) = response.into_parts();
    let mut rebuilt = HttpError::new(status, reason).error_response();
    for (name, value) in old_response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    rebuilt.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let rebuilt: HttpResponse<EitherBody<B, BoxBody>> = rebuilt.map_into_right_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(request, rebuilt)))
}

async fn no_such_route() -> Result<HttpResponse, HttpError> {
    Err(HttpError::not_found("no such route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_extractor_errors_map_to_their_status() {
        use actix_web::error::JsonPayloadError;
        assert_eq!(json_payload_error(&JsonPayloadError::Overflow { limit: 10 }).status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            json_payload_error(&JsonPayloadError::OverflowKnownLength { length: 11, limit: 10 }).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(json_payload_error(&JsonPayloadError::ContentType).status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let syntax = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(json_payload_error(&JsonPayloadError::Deserialize(syntax)).status, StatusCode::BAD_REQUEST);
    }

    #[actix_rt::test]
    async fn plain_error_responses_become_json_keeping_headers() {
        let plain = HttpResponse::PayloadTooLarge()
            .insert_header(("Retry-After", "1"))
            .content_type("text/plain")
            .body("A payload reached size limit.");
        let response = actix_web::test::TestRequest::default().to_srv_response(plain);
        let ErrorHandlerResponse::Response(converted) = errors_as_json(response).unwrap() else {
            panic!("expected a response");
        };
        assert_eq!(converted.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(converted.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(converted.headers().get("Retry-After").unwrap(), "1");
        let body = actix_web::body::to_bytes(converted.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"error": "Payload Too Large"}));

        // Already JSON: left alone.
        let json = HttpError::not_found("unknown device").error_response();
        let response = actix_web::test::TestRequest::default().to_srv_response(json);
        let ErrorHandlerResponse::Response(kept) = errors_as_json(response).unwrap() else {
            panic!("expected a response");
        };
        let body = actix_web::body::to_bytes(kept.into_body()).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"unknown device"}"#);
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
