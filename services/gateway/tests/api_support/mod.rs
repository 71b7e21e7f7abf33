//! A real server for the API and ops tests: embedded store, JSONL bus and content directory in a temp dir (or the
//! store and content engine a test names), 127.0.0.1 port 0.

#![allow(dead_code)]
// Test harness code: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use actix_web::web;
use omadm_core::session::SessionConfig;
use omadm_gateway::device::DeviceEdge;
use omadm_gateway::server::{self, Server, ServerOptions};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig};

pub const TOKEN: &str = "test-admin-token-0123456789";
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_REPOSITORY_BYTES: usize = 128 * 1024;
pub const SERVER_ID: &str = "dms.test";

pub struct TestServer {
    pub base: String,
    /// The ops listener (`/metrics`, `/healthz`, `/readyz`), as `omadm serve --ops-listen` runs it.
    pub ops_base: String,
    pub state: web::Data<AppState>,
    pub client: reqwest::Client,
    server: Option<Server>,
    ops: Option<omadm_runtime::ops::OpsServer>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(TestServer::options()).await
    }

    /// The server options of [`TestServer::start`]: short timeouts, two workers.
    pub fn options() -> ServerOptions {
        ServerOptions {
            workers: Some(2),
            client_request_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            ..ServerOptions::default()
        }
    }

    pub async fn start_with(options: ServerOptions) -> TestServer {
        TestServer::start_on(options, None).await
    }

    /// The test server on the store at `store_url` (e.g. a test Redis), or on an embedded store in its temp dir.
    pub async fn start_on(options: ServerOptions, store_url: Option<&str>) -> TestServer {
        TestServer::start_custom(options, store_url, None, |_| {}).await
    }

    /// [`TestServer::start_on`] with the content engine at `content_url` (else a directory in the temp dir) and
    /// the gateway settings changed by `tweak`.
    pub async fn start_custom(
        options: ServerOptions,
        store_url: Option<&str>,
        content_url: Option<&str>,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let embedded_url = dir.path().join("store").to_string_lossy().into_owned();
        let store = omadm_core::store::open(store_url.unwrap_or(&embedded_url)).await.unwrap();
        let bus = omadm_core::bus::open(&dir.path().join("events").to_string_lossy(), "omadm.").await.unwrap();
        let listener = server::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = GatewayConfig {
            admin_token: TOKEN.to_owned(),
            nonce_key: vec![7; 32],
            session: SessionConfig {
                max_commands_per_package: 5,
                supported_alert_mime_types: Vec::new(),
                ..omadm_testkit::config::session(&format!("{base}/dm/s/"))
            },
            max_body_bytes: MAX_BODY_BYTES,
            max_repository_bytes: MAX_REPOSITORY_BYTES as u64,
            bootstrap: BootstrapConfig {
                server_id: SERVER_ID.to_owned(),
                server_name: "test".to_owned(),
                ..omadm_testkit::config::bootstrap()
            },
            ..omadm_testkit::config::gateway(&base)
        };
        tweak(&mut config);
        let directory = dir.path().join("content").to_string_lossy().into_owned();
        let content = omadm_core::content::ContentEngine::open(content_url.unwrap_or(&directory)).unwrap();
        let state = web::Data::new(AppState { store, bus, content, config });
        let edge = DeviceEdge::new(state.clone());
        let ops = server::run_ops(
            state.clone(),
            Some(edge.cluster().clone()),
            server::bind("127.0.0.1:0").unwrap(),
            &options,
        )
        .unwrap();
        let ops_base = format!("http://{}", ops.local_addr());
        let server = server::run(state.clone(), edge, listener, options).await.unwrap();
        TestServer {
            base,
            ops_base,
            state,
            client: reqwest::Client::new(),
            server: Some(server),
            ops: Some(ops),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("{}{path}", self.ops_base)
    }

    /// A request with the admin token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Where the JSONL event files are.
    pub fn events_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("events")
    }

    /// Graceful stop, then the relay drains the outbox.
    pub async fn shutdown(&mut self, relay: omadm_core::bus::relay::OutboxRelay) {
        if let Some(server) = self.server.take() {
            server.shutdown(relay).await.unwrap();
        }
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.unwrap();
        }
    }

    /// Registers a device through the API.
    pub async fn register(&self, device_id: &str, tags: serde_json::Value) {
        let response = self
            .api(reqwest::Method::PUT, &format!("/api/v1/devices/{device_id}"))
            .json(&serde_json::json!({"password": "pw", "tags": tags}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
}

/// Asserts a one-line JSON error with `status` and returns its reason.
pub async fn expect_error(response: reqwest::Response, status: u16) -> String {
    let actual = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|value| value.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    assert!(content_type.starts_with("application/json"), "content type {content_type:?} of {text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let reason = body["error"].as_str().unwrap_or_else(|| panic!("no error member in {text}")).to_owned();
    assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
    reason
}

/// Sends raw bytes over a fresh connection and returns everything the server answers until it closes
/// or `wait` passes.
pub fn raw_exchange(base: &str, parts: &[(&[u8], Duration)], wait: Duration) -> String {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    for (bytes, pause) in parts {
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(*pause);
    }
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
