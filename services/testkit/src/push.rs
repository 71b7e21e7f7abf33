//! A test push gateway: an HTTP server on a loopback port of its own that answers FCM HTTP v1 `messages:send`
//! requests and records every request (body and auth header) for a test to read.
//!
//! ```text
//! let gateway = TestPushGateway::start(PushGatewayOptions::default());
//! POST {gateway.url()} {"message":{"token":"t1","data":{"SMS":"IQ..."}}}
//!   -> 200 {"name": "projects/omadm-test/messages/1"}
//! gateway.unregister("t1"); POST ... "token":"t1"
//!   -> 404 {"error": {"code": 404, "status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED", ...}]}}
//! gateway.fail_with(Some(503)); POST ...
//!   -> 503 {"error": {"code": 503, "status": "UNAVAILABLE", ...}}
//! PushGatewayOptions { delay: 5 s }: every answer waits that long (a slow gateway)
//! ```
//!
//! It runs on a thread with its own actix system, so the test's runtime can be busy or gone without stopping
//! it; it stops when the [`TestPushGateway`] is dropped.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// The path FCM HTTP v1 sends to, for the test project.
pub const SEND_PATH: &str = "/v1/projects/omadm-test/messages:send";

/// How the gateway behaves from the start.
#[derive(Debug, Clone, Default)]
pub struct PushGatewayOptions {
    /// Every answer waits this long.
    pub delay: Duration,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRequest {
    /// The `Authorization` header, when present.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    /// `message.token` of the body.
    pub token: Option<String>,
    /// `message.data.SMS` of the body: the base64 Package#0.
    pub sms: Option<String>,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug, Default)]
struct Behaviour {
    unregistered: BTreeSet<String>,
    fail_with: Option<u16>,
    delay: Duration,
    requests: Vec<PushRequest>,
}

/// A running test push gateway; stopped when dropped.
pub struct TestPushGateway {
    address: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestPushGateway {
    pub fn start(options: PushGatewayOptions) -> TestPushGateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(Behaviour { delay: options.delay, ..Behaviour::default() }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = behaviour.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let state = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new().app_data(state.clone()).route(SEND_PATH, web::post().to(answer))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)
                .unwrap()
                .run();
                let handle = server.handle();
                actix_web::rt::spawn(server);
                let _ = stopped.await;
                handle.stop(false).await;
            });
        });
        TestPushGateway { address, behaviour, stop: Some(stop), thread: Some(thread) }
    }

    /// The `messages:send` URL to configure as the push gateway.
    pub fn url(&self) -> String {
        format!("http://{}{SEND_PATH}", self.address)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<PushRequest> {
        self.lock().requests.clone()
    }

    /// From now on `token` is answered 404 UNREGISTERED, as FCM answers a token the app gave up.
    pub fn unregister(&self, token: &str) {
        self.lock().unregistered.insert(token.to_owned());
    }

    /// From now on every request is answered with `status` (an FCM-shaped error), or normally again with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.lock().fail_with = status;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.behaviour.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TestPushGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fcm_error(status: u16, name: &str, message: &str, error_code: &str) -> Value {
    json!({"error": {"code": status, "message": message, "status": name, "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
    ]}})
}

async fn answer(state: web::Data<Mutex<Behaviour>>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = json.pointer("/message/token").and_then(Value::as_str).map(str::to_owned);
    let sms = json.pointer("/message/data/SMS").and_then(Value::as_str).map(str::to_owned);
    let delay = state.lock().unwrap_or_else(PoisonError::into_inner).delay;
    if !delay.is_zero() {
        actix_web::rt::time::sleep(delay).await;
    }
    let mut behaviour = state.lock().unwrap_or_else(PoisonError::into_inner);
    let (status, reply) = if let Some(status) = behaviour.fail_with {
        (status, fcm_error(status, "UNAVAILABLE", "the test gateway was told to fail", "UNAVAILABLE"))
    } else if token.as_ref().is_none_or(|token| token.is_empty()) || sms.is_none() {
        (400, fcm_error(400, "INVALID_ARGUMENT", "message.token and message.data.SMS are required", "INVALID_ARGUMENT"))
    } else if token.as_ref().is_some_and(|token| behaviour.unregistered.contains(token)) {
        (404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"))
    } else {
        let number = behaviour.requests.iter().filter(|request| request.status == 200).count() + 1;
        (200, json!({"name": format!("projects/omadm-test/messages/{number}")}))
    };
    behaviour.requests.push(PushRequest {
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: json,
        token,
        sms,
        status,
    });
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    HttpResponse::build(status).json(reply)
}
