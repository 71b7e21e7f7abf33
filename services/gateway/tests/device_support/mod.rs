//! What the device edge tests share: a real server on 127.0.0.1 over the embedded store and the JSONL bus,
//! and a DM client written here (the client crate comes in its own issue).
//!
//! The client authenticates with an independent Digest implementation (the
//! `digest_auth` crate) or Basic, answers each command of a Package#2 like a
//! small device would, and builds its Package#3 with omadm-proto.

// Test scaffolding: a failed setup step should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use base64::Engine as _;
use omadm_core::bus::Bus;
use omadm_core::bus::relay::OutboxRelay;
use omadm_core::store::Store;
use omadm_gateway::device::{DeviceEdge, DeviceEdgeOptions};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig};
use omadm_proto::command::Command;
use omadm_proto::mo::{BearerType, DevInfo, RoamingStatus, SessionInfo};
use omadm_proto::multipart::{GetResultPart, derive_boundary, encode_response};
use omadm_proto::package::media::{INITIATION_JSON, REQUEST_JSON};
use omadm_proto::package::{CommandStatus, InitiationPackage, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use omadm_proto::uri::ServerUriParams;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

pub const DEVICE_ID_HEADER: &str = "OMADM-DevID";

/// A running server and the backends behind it.
pub struct TestServer {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub edge: DeviceEdge,
    pub state: web::Data<AppState>,
    pub data_dir: PathBuf,
    /// The relay `omadm serve` runs: outbox -> bus.
    relay: OutboxRelay,
    server: Running,
    _temp: Option<tempfile::TempDir>,
}

/// The HTTP server of a test: a bare `HttpServer` with only the device routes, or the gateway's own
/// `server::run` (middleware, JSON errors, metrics, the relay's waker) around them.
enum Running {
    Bare(actix_web::dev::ServerHandle),
    FullStack(tokio::sync::Mutex<Option<omadm_gateway::server::Server>>),
}

/// The configuration the tests start from; `tweak` changes it per test.
pub fn base_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        bootstrap: BootstrapConfig {
            defaults: vec![(format!("{base}/repo/defaults/scomo"), "urn:oma:mo:oma-scomo:1.0".to_owned())],
            ..omadm_testkit::config::bootstrap()
        },
        ..omadm_testkit::config::gateway(base)
    }
}

impl TestServer {
    /// A server over a fresh data dir.
    pub async fn start(tweak: impl FnOnce(&mut GatewayConfig, &mut DeviceEdgeOptions)) -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().to_owned();
        let mut server = Self::start_in(data_dir, tweak).await;
        server._temp = Some(temp);
        server
    }

    /// A server over a fresh data dir, run by `omadm_gateway::server::run` as `omadm serve` runs it.
    pub async fn start_full_stack() -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().to_owned();
        let store = omadm_core::store::open(data_dir.join("store").to_str().unwrap()).await.unwrap();
        let bus = omadm_core::bus::open(data_dir.join("events").to_str().unwrap(), "omadm.").await.unwrap();
        let mut server = Self::start_with(store, bus, data_dir, true, true, |_, _| {}).await;
        server._temp = Some(temp);
        server
    }

    /// A server over `store` (the Redis engine, say), its JSONL events in a fresh directory.
    pub async fn start_on(
        store: Arc<dyn Store>,
        tweak: impl FnOnce(&mut GatewayConfig, &mut DeviceEdgeOptions),
    ) -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().to_owned();
        let bus = omadm_core::bus::open(data_dir.join("events").to_str().unwrap(), "omadm.").await.unwrap();
        let mut server = Self::start_with(store, bus, data_dir, true, false, tweak).await;
        server._temp = Some(temp);
        server
    }

    /// A server over `data_dir`, which may hold a previous server's state (a restart).
    pub async fn start_in(
        data_dir: PathBuf,
        tweak: impl FnOnce(&mut GatewayConfig, &mut DeviceEdgeOptions),
    ) -> TestServer {
        let store = omadm_core::store::open(data_dir.join("store").to_str().unwrap()).await.unwrap();
        let bus = omadm_core::bus::open(data_dir.join("events").to_str().unwrap(), "omadm.").await.unwrap();
        Self::start_with(store, bus, data_dir, true, false, tweak).await
    }

    /// A new process over the same backends: a new edge and server, nothing kept in memory.
    pub async fn restart(&self, tweak: impl FnOnce(&mut GatewayConfig, &mut DeviceEdgeOptions)) -> TestServer {
        self.stop().await;
        Self::start_with(self.store.clone(), self.bus.clone(), self.data_dir.clone(), true, false, tweak).await
    }

    /// Like [`TestServer::restart`] without `recover()`: sessions are found only when a package asks for them.
    pub async fn restart_without_recover(&self) -> TestServer {
        self.stop().await;
        Self::start_with(self.store.clone(), self.bus.clone(), self.data_dir.clone(), false, false, |_, _| {}).await
    }

    async fn start_with(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        data_dir: PathBuf,
        recover: bool,
        full_stack: bool,
        tweak: impl FnOnce(&mut GatewayConfig, &mut DeviceEdgeOptions),
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = base_config(&base);
        let mut options = DeviceEdgeOptions::default();
        tweak(&mut config, &mut options);
        let content = omadm_core::content::ContentEngine::directory(&data_dir.join("content")).unwrap();
        let state = web::Data::new(AppState { store: store.clone(), bus: bus.clone(), content, config });
        let edge = DeviceEdge::with_options(state.clone(), options);
        if recover {
            edge.recover().await.unwrap();
        }
        let relay = OutboxRelay::spawn(store.clone(), bus.clone());
        let running = if full_stack {
            let options = omadm_gateway::server::ServerOptions {
                workers: Some(2),
                outbox_waker: Some(relay.waker()),
                shutdown_timeout: Duration::from_secs(1),
                ..Default::default()
            };
            let server = omadm_gateway::server::run(state.clone(), edge.clone(), listener, options).await.unwrap();
            Running::FullStack(tokio::sync::Mutex::new(Some(server)))
        } else {
            let handle = omadm_testkit::edge::serve(state.clone(), edge.clone(), listener, 2);
            Running::Bare(handle)
        };
        TestServer { base, store, bus, edge, state, data_dir, relay, server: running, _temp: None }
    }

    /// Stops accepting and lets in-flight requests finish.
    pub async fn stop(&self) {
        match &self.server {
            Running::Bare(handle) => handle.stop(true).await,
            Running::FullStack(server) => {
                if let Some(server) = server.lock().await.take() {
                    server.stop().await.unwrap();
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers `device_id` with `password`, as the operator API would.
    pub async fn register(&self, device_id: &str, password: &str) {
        omadm_testkit::fixtures::register(&*self.store, device_id, password).await;
    }

    /// Queues commands given in the Package#2 array form.
    pub async fn enqueue(&self, device_id: &str, commands: serde_json::Value) -> Vec<u64> {
        omadm_testkit::fixtures::enqueue(&*self.store, device_id, commands).await
    }

    /// Waits until the outbox relay has published everything committed so far to the JSONL bus.
    pub async fn drain_outbox(&self) {
        self.relay.drain().await.unwrap();
    }

    /// The events of one topic file of the JSONL bus.
    pub fn topic_lines(&self, topic: &str) -> Vec<serde_json::Value> {
        let path = self.data_dir.join("events").join(format!("omadm.{topic}.jsonl"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    DigestSha256,
    DigestMd5,
    Basic,
}

/// The `Authorization` value for a request, after fetching a challenge when Digest.
pub async fn authorization(
    client: &reqwest::Client,
    server: &TestServer,
    mode: AuthMode,
    method: &str,
    path_and_query: &str,
    device_id: &str,
    password: &str,
) -> String {
    if mode == AuthMode::Basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{device_id}:{password}"));
        return format!("Basic {token}");
    }
    // Any unauthenticated Package#1 earns the challenges.
    let challenge_response = client
        .post(server.url("/dm"))
        .header(CONTENT_TYPE, INITIATION_JSON)
        .header(DEVICE_ID_HEADER, device_id)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(challenge_response.status(), 401);
    digest_answer(&challenge_response, mode, method, path_and_query, device_id, password)
}

/// Answers the Digest challenge of `response` (a 401) for the given request.
pub fn digest_answer(
    response: &reqwest::Response,
    mode: AuthMode,
    method: &str,
    path_and_query: &str,
    device_id: &str,
    password: &str,
) -> String {
    let wanted = if mode == AuthMode::DigestMd5 { "algorithm=MD5" } else { "algorithm=SHA-256" };
    let challenge = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("Digest") && value.contains(wanted))
        .expect("a Digest challenge of the wanted algorithm");
    let mut prompt = digest_auth::parse(&challenge).unwrap();
    let mut context = digest_auth::AuthContext::new_with_method(
        device_id,
        password,
        path_and_query,
        Option::<&[u8]>::None,
        digest_auth::HttpMethod(method.to_owned().into()),
    );
    context.set_custom_cnonce("0a4f113b");
    prompt.respond(&context).unwrap().to_header_string()
}

/// What the simulated device answered, for the test's assertions.
#[derive(Debug, Default)]
pub struct SessionTranscript {
    /// Every Package#2 received, in order.
    pub packages: Vec<RequestPackage>,
    pub session_url: Option<String>,
    /// Bodies fetched by HGET.
    pub fetched: Vec<(String, Vec<u8>)>,
    /// Statuses the repository gave HPUT/HPOST uploads.
    pub uploads: Vec<(String, u16)>,
}

/// A small device: DevInfo, SessionInfo and a settings leaf; it answers every command the way a client would.
pub struct SimulatedDevice {
    pub device_id: String,
    pub password: String,
    pub auth: AuthMode,
    pub firmware_version: String,
    client: reqwest::Client,
}

impl SimulatedDevice {
    pub fn new(device_id: &str, password: &str, auth: AuthMode) -> Self {
        SimulatedDevice {
            device_id: device_id.to_owned(),
            password: password.to_owned(),
            auth,
            firmware_version: "1.0.3".to_owned(),
            client: http(),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a Package#1 with authentication; returns the raw response.
    pub async fn send_package1(&self, server: &TestServer, package: &InitiationPackage) -> reqwest::Response {
        let body = package.to_json_bytes().unwrap();
        let authorization =
            authorization(&self.client, server, self.auth, "POST", "/dm", &self.device_id, &self.password).await;
        self.client
            .post(server.url("/dm"))
            .header(CONTENT_TYPE, INITIATION_JSON)
            .header(DEVICE_ID_HEADER, &self.device_id)
            .header(AUTHORIZATION, authorization)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs a whole session: Package#1, then a Package#3 per Package#2 until END.
    pub async fn run_session(&self, server: &TestServer, package: &InitiationPackage) -> SessionTranscript {
        let mut transcript = SessionTranscript::default();
        let response = self.send_package1(server, package).await;
        let mut reply = read_package2(response).await;
        for _ in 0..20 {
            transcript.packages.push(reply.clone());
            if reply.ends_session() {
                return transcript;
            }
            let (package3, parts) = self.answer(server, &reply, &mut transcript).await;
            let url = transcript.session_url.clone().expect("CONT named the session URL");
            let response = self.send_package3(&url, &package3, &parts).await;
            reply = read_package2(response).await;
        }
        panic!("the session did not end within 20 packages");
    }

    /// Sends a Package#3 (multipart when there are GET parts).
    pub async fn send_package3(
        &self,
        url: &str,
        package: &ResponsePackage,
        parts: &[GetResultPart],
    ) -> reqwest::Response {
        let encoded = encode_response(package, parts, &derive_boundary(parts)).unwrap();
        self.client
            .post(url)
            .header(CONTENT_TYPE, encoded.content_type)
            .header(DEVICE_ID_HEADER, &self.device_id)
            .body(encoded.body)
            .send()
            .await
            .unwrap()
    }

    /// The Package#3 for `reply`: one status per command, GET data as parts.
    pub async fn answer(
        &self,
        server: &TestServer,
        reply: &RequestPackage,
        transcript: &mut SessionTranscript,
    ) -> (ResponsePackage, Vec<GetResultPart>) {
        let mut statuses = Vec::new();
        let mut parts = Vec::new();
        for (index, command) in reply.commands.iter().enumerate() {
            let position = index + 1;
            let status = match command {
                Command::Cont(cont) => {
                    transcript.session_url = Some(cont.server_uri().to_string());
                    CommandStatus::new(StatusCode::OK)
                }
                Command::Get(get) => match self.get(&get.client_uri().to_string()) {
                    Some((content_type, body)) => {
                        parts.push(GetResultPart::new(position, content_type, body));
                        CommandStatus::new(StatusCode::OK)
                    }
                    None => CommandStatus::new(StatusCode::NOT_FOUND),
                },
                Command::Hget(hget) => {
                    let url = hget.server_uri().substitute(&self.uri_params());
                    let response = self.client.get(&url).header("Accept", "*/*").send().await.unwrap();
                    if response.status().is_success() {
                        transcript.fetched.push((url, response.bytes().await.unwrap().to_vec()));
                        match hget.client_uri() {
                            Some(_) => CommandStatus::new(StatusCode::OK),
                            None => CommandStatus::with_location(StatusCode::CREATED, "urn:oma:mo:oma-mo:1.0/miid1/"),
                        }
                    } else {
                        CommandStatus::new(StatusCode::NOT_FOUND)
                    }
                }
                Command::Hput(hput) => {
                    let url = hput.server_uri().substitute(&self.uri_params());
                    let code = self.upload(server, "PUT", &url).await;
                    transcript.uploads.push((url, code));
                    CommandStatus::new(if code < 300 { StatusCode::OK } else { StatusCode::INTERNAL_ERROR })
                }
                _ => CommandStatus::new(StatusCode::OK),
            };
            statuses.push(status);
        }
        (ResponsePackage::new(statuses), parts)
    }

    /// What this device substitutes in ServerURIs: its DevID, the rest unknown.
    pub fn uri_params(&self) -> ServerUriParams {
        ServerUriParams { dev_id: Some(self.device_id.clone()), ..ServerUriParams::default() }
    }

    /// Uploads this device's settings to `url` with HTTP authentication.
    pub async fn upload(&self, server: &TestServer, method: &str, url: &str) -> u16 {
        let path = url.strip_prefix(&server.base).unwrap();
        let authorization =
            authorization(&self.client, server, self.auth, method, path, &self.device_id, &self.password).await;
        let request = match method {
            "PUT" => self.client.put(url),
            _ => self.client.post(url),
        };
        request
            .header(CONTENT_TYPE, "application/json")
            .header(DEVICE_ID_HEADER, &self.device_id)
            .header(AUTHORIZATION, authorization)
            .body(r#"{"Settings": {"Volume": 7}}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The data a GET of `uri` returns: the media type and the body.
    pub fn get(&self, uri: &str) -> Option<(String, Vec<u8>)> {
        let document = if uri.starts_with(DevInfo::MOID) {
            let devinfo = DevInfo {
                firmware_version: self.firmware_version.clone(),
                ..omadm_testkit::fixtures::devinfo(&self.device_id)
            };
            serde_json::json!({"MOID": DevInfo::MOID, "MIID": "", "MOData": devinfo.to_mo_data()})
        } else if uri.starts_with(SessionInfo::MOID) {
            let info = SessionInfo { bearer_type: BearerType::Wireline, roaming: RoamingStatus::Unknown };
            serde_json::json!({"MOID": SessionInfo::MOID, "MIID": "", "MOData": info.to_mo_data()})
        } else if uri == "urn:oma:mo:example-settings:1.0//Volume" {
            return Some(("text/plain".to_owned(), b"7".to_vec()));
        } else {
            return None;
        };
        Some(("application/dmmo+json".to_owned(), serde_json::to_vec(&document).unwrap()))
    }
}

/// The Package#2 of a 200 response, checked for its media type.
pub async fn read_package2(response: reqwest::Response) -> RequestPackage {
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).map(|value| value.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type.as_deref(), Some(REQUEST_JSON));
    RequestPackage::parse(&body, &Default::default()).unwrap()
}

/// Asserts a JSON error answer with `status` whose one-line reason contains `fragment`.
pub async fn assert_refused(response: reqwest::Response, status: u16, fragment: &str) {
    let got = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    let reason = body["error"].as_str().expect("an error field").to_owned();
    assert_eq!(got, status, "{reason}");
    assert!(reason.contains(fragment), "{reason:?} does not contain {fragment:?}");
    assert!(!reason.contains('\n'), "{reason:?} is one line");
}
