//! Retries and failover of the client transport over real sockets: a scripted HTTP/1.1 server on 127.0.0.1 that
//! answers 503 + Retry-After, drops connections or forwards to the real gateway; refused ports from a listener
//! that was bound and closed. The gateway runs on the embedded store in a temp dir, as in conformance.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::net::TcpListener as StdTcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use omadm_client::device::{Device, ServerAccount};
use omadm_client::retry::{RetryPolicy, ServerList, ServerSelection};
use omadm_client::session::{SessionRequest, run_session};
use omadm_client::transport::Transport;
use omadm_core::model::CommandRecord;
use omadm_core::store::Store;
use omadm_gateway::device::{DeviceEdge, DeviceEdgeOptions};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig};
use omadm_testkit::fixtures::devinfo;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
enum Action {
    /// Answer with this status, extra headers and body.
    Answer { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Close the connection without answering (a node that died mid-request).
    Drop,
    /// Pass the request to `upstream` and send its answer back.
    Forward,
    /// Pass the request to `upstream`, then close the connection without answering (the Package#2 is lost).
    ForwardThenDrop,
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Action {
    Action::Answer {
        status,
        headers: headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
    at: Instant,
}

/// A minimal HTTP/1.1 server: each request takes the next scripted action (`fallback` once the script is spent),
/// optionally only for paths starting with a prefix.
struct ScriptServer {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Script {
    actions: Mutex<VecDeque<(Option<String>, Action)>>,
    fallback: Action,
    upstream: Option<String>,
    http: reqwest::Client,
}

impl Script {
    /// The action for a request to `path`: the first scripted one whose prefix matches, else the fallback.
    fn next(&self, path: &str) -> Action {
        let mut actions = self.actions.lock().unwrap();
        let position =
            actions.iter().position(|(prefix, _)| prefix.as_deref().is_none_or(|prefix| path.starts_with(prefix)));
        match position {
            Some(position) => actions.remove(position).unwrap().1,
            None => self.fallback.clone(),
        }
    }
}

impl ScriptServer {
    async fn start(actions: Vec<(Option<&str>, Action)>, fallback: Action, upstream: Option<String>) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Script {
            actions: Mutex::new(
                actions.into_iter().map(|(prefix, action)| (prefix.map(str::to_owned), action)).collect(),
            ),
            fallback,
            upstream,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        });
        let recorded = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(serve_connection(stream, Arc::clone(&script), Arc::clone(&recorded)));
            }
        });
        ScriptServer { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_connection(mut stream: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some((method, path, headers, body)) = read_request(&mut stream, &mut buffer).await else { return };
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        let (status, reply_headers, reply_body) = match script.next(&path) {
            Action::Answer { status, headers, body } => (status, headers, body),
            Action::Drop => return,
            action @ (Action::Forward | Action::ForwardThenDrop) => {
                let upstream = script.upstream.as_ref().unwrap();
                let mut request =
                    script.http.request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{upstream}{path}"));
                for (name, value) in &headers {
                    if !["host", "content-length", "connection", "transfer-encoding"].contains(&name.as_str()) {
                        request = request.header(name, value);
                    }
                }
                let response = request.body(body).send().await.unwrap();
                if matches!(action, Action::ForwardThenDrop) {
                    let _ = response.bytes().await;
                    return;
                }
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .filter(|(name, _)| !["content-length", "connection", "transfer-encoding"].contains(&name.as_str()))
                    .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                    .collect();
                (status, headers, response.bytes().await.unwrap().to_vec())
            }
        };
        let mut head = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\n", reply_body.len());
        for (name, value) in reply_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&reply_body).await.is_err() {
            return;
        }
    }
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request (head and Content-Length body) from `stream`; `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_owned();
    let path = request_line.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(name, _)| name == "content-length").map_or(0, |(_, value)| value.parse().unwrap());
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some((method, path, headers, body))
}

/// A base URL nothing listens on: a port that was bound, then released.
fn refused_base() -> String {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    base
}

fn credentials() -> omadm_client::device::Credentials {
    omadm_client::device::Credentials { device_id: "IMEI:1".into(), password: "pw".into() }
}

fn quick_policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy { max_retries, backoff: Duration::from_millis(20), ..RetryPolicy::default() }
}

#[tokio::test]
async fn a_503_with_retry_after_is_waited_out_and_the_same_bytes_sent_again() {
    let server = ScriptServer::start(
        vec![(None, answer(503, &[("Retry-After", "1")], "{\"error\": \"store unavailable\"}"))],
        answer(200, &[("Content-Type", "text/plain")], "ok"),
        None,
    )
    .await;
    let transport = Transport::new(credentials()).unwrap();
    let body = b"{\"Status\": [[200]]}".to_vec();
    let started = Instant::now();
    let reply = transport
        .send_plain(Method::POST, &format!("{}/dm/s/abc", server.base), Some("application/json"), None, body.clone())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"ok");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|request| request.body == body && request.path == "/dm/s/abc"));
    // The Retry-After of one second was honoured.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950), "{:?}", seen[1].at - seen[0].at);
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = transport.stats();
    assert_eq!((stats.retries, stats.unavailable_answers, stats.failovers), (1, 1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_429_without_retry_after_backs_off_and_the_budget_ends_with_the_last_answer() {
    let server =
        ScriptServer::start(vec![(None, answer(429, &[], ""))], answer(503, &[("Retry-After", "0")], ""), None).await;
    let transport = Transport::new(credentials()).unwrap().with_retry_policy(quick_policy(3));
    let reply =
        transport.send_plain(Method::GET, &format!("{}/repo/x", server.base), None, None, Vec::new()).await.unwrap();
    // First attempt and three retries; the fourth 503 is returned as the answer.
    assert_eq!(reply.status, 503);
    assert_eq!(server.seen().len(), 4);
    assert_eq!(transport.stats().retries, 3);
    assert_eq!(transport.stats().unavailable_answers, 4);

    // Other statuses are final at once.
    let server = ScriptServer::start(Vec::new(), answer(500, &[("Retry-After", "1")], ""), None).await;
    let transport = Transport::new(credentials()).unwrap();
    let reply =
        transport.send_plain(Method::GET, &format!("{}/repo/x", server.base), None, None, Vec::new()).await.unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(transport.stats().retries, 0);

    // RetryPolicy::never() returns the first 503.
    let server = ScriptServer::start(Vec::new(), answer(503, &[("Retry-After", "0")], ""), None).await;
    let transport = Transport::new(credentials()).unwrap().with_retry_policy(RetryPolicy::never());
    let reply = transport.send_plain(Method::GET, &format!("{}/x", server.base), None, None, Vec::new()).await.unwrap();
    assert_eq!((reply.status, server.seen().len()), (503, 1));
}

#[tokio::test]
async fn a_refused_port_fails_over_to_the_next_server_and_is_passed_over_afterwards() {
    let good = ScriptServer::start(Vec::new(), answer(200, &[], "from the good one"), None).await;
    let dead = refused_base();
    let servers = Arc::new(ServerList::new([dead.clone(), good.base.clone()], ServerSelection::Sticky));
    let transport = Transport::new(credentials()).unwrap().with_servers(servers);
    let reply =
        transport.send_plain(Method::POST, &format!("{dead}/dm/s/q?x=1"), None, None, b"abc".to_vec()).await.unwrap();
    assert_eq!(&reply.body[..], b"from the good one");
    assert_eq!(good.seen()[0].path, "/dm/s/q?x=1");
    assert_eq!(good.seen()[0].body, b"abc");
    assert_eq!((transport.stats().retries, transport.stats().failovers), (1, 1));
    // The dead server is passed over for a while: the next request naming it goes straight to the good one.
    transport.send_plain(Method::POST, &format!("{dead}/dm"), None, None, Vec::new()).await.unwrap();
    assert_eq!(good.seen().len(), 2);
    assert_eq!((transport.stats().retries, transport.stats().failovers), (1, 1));
}

#[tokio::test]
async fn a_dropped_connection_is_retried_and_without_other_servers_the_error_is_final_after_the_budget() {
    let server = ScriptServer::start(vec![(None, Action::Drop)], answer(200, &[], "second time"), None).await;
    let transport = Transport::new(credentials()).unwrap().with_retry_policy(quick_policy(2));
    let reply =
        transport.send_plain(Method::POST, &format!("{}/dm", server.base), None, None, b"p".to_vec()).await.unwrap();
    assert_eq!(&reply.body[..], b"second time");
    assert_eq!(transport.stats().failovers, 0);

    let dead = refused_base();
    let transport = Transport::new(credentials()).unwrap().with_retry_policy(quick_policy(2));
    let started = Instant::now();
    let error = transport.send_plain(Method::POST, &format!("{dead}/dm"), None, None, Vec::new()).await.unwrap_err();
    assert!(error.to_string().contains(&dead), "{error}");
    assert_eq!(transport.stats().retries, 2);
    // Backoff 20 ms then 40 ms between the three attempts on the one server.
    assert!(started.elapsed() >= Duration::from_millis(55), "{:?}", started.elapsed());
}

#[tokio::test]
async fn random_selection_spreads_requests_over_every_server() {
    let first = ScriptServer::start(Vec::new(), answer(200, &[], "1"), None).await;
    let second = ScriptServer::start(Vec::new(), answer(200, &[], "2"), None).await;
    let servers =
        Arc::new(ServerList::new([first.base.clone(), second.base.clone()], ServerSelection::RandomPerRequest));
    let transport = Transport::new(credentials()).unwrap().with_servers(servers);
    for _ in 0..40 {
        transport.send_plain(Method::GET, &format!("{}/x", first.base), None, None, Vec::new()).await.unwrap();
    }
    // 40 fair draws all landing on one server would happen once in 2^39 runs.
    assert!(!first.seen().is_empty() && !second.seen().is_empty());
    assert_eq!(first.seen().len() + second.seen().len(), 40);
}

// Against the real gateway.

const SERVER_ID: &str = "omadm-test";

struct Gateway {
    store: Arc<dyn Store>,
    handle: actix_web::dev::ServerHandle,
    _temp: tempfile::TempDir,
}

/// The gateway's device edge on the embedded store; CONT URLs point at `public_url` (the scripted server in front).
async fn start_gateway(listener: StdTcpListener, public_url: &str) -> Gateway {
    let temp = tempfile::tempdir().unwrap();
    let store = omadm_core::store::open(temp.path().join("store").to_str().unwrap()).await.unwrap();
    let bus = omadm_core::bus::open(temp.path().join("events").to_str().unwrap(), "omadm.").await.unwrap();
    let config = GatewayConfig {
        bootstrap: BootstrapConfig { server_id: SERVER_ID.to_owned(), ..omadm_testkit::config::bootstrap() },
        ..omadm_testkit::config::gateway(public_url)
    };
    let content = omadm_core::content::ContentEngine::open("memory://").unwrap();
    let state = web::Data::new(AppState { store: store.clone(), bus, content, config });
    let edge = DeviceEdge::with_options(state.clone(), DeviceEdgeOptions::default());
    let handle = omadm_testkit::edge::serve(state, edge, listener, 1);
    Gateway { store, handle, _temp: temp }
}

impl Gateway {
    async fn register_with_gets(&self, device_id: &str, gets: usize) {
        omadm_testkit::fixtures::register(&*self.store, device_id, "s3cret").await;
        let commands = vec![json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"]); gets];
        omadm_testkit::fixtures::enqueue(&*self.store, device_id, json!(commands)).await;
    }

    async fn commands(&self, device_id: &str) -> Vec<CommandRecord> {
        self.store.list_commands(device_id, None, 1000).await.unwrap()
    }
}

#[actix_rt::test]
async fn a_session_fails_over_from_a_refused_server_to_the_real_gateway() {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gateway = start_gateway(listener, &base).await;
    let device_id = "IMEI:35000001";
    gateway.register_with_gets(device_id, 5).await;
    let dead = refused_base();
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: format!("{dead}/dm") };
    let mut device = Device::new(devinfo(device_id), "s3cret", account).unwrap();
    let servers = Arc::new(ServerList::new([dead, base], ServerSelection::Sticky));
    let transport = Transport::new(device.credentials.clone()).unwrap().with_servers(servers);
    let report = run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();
    assert!(report.packages >= 3, "{report:?}");
    let records = gateway.commands(device_id).await;
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|record| record.status == Some(200)), "{records:?}");
    assert_eq!(transport.stats().failovers, 1, "{:?}", transport.stats());
    gateway.handle.stop(true).await;
}

#[actix_rt::test]
async fn a_lost_package2_is_recovered_by_resending_the_same_package3() {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    // The scripted server is the address devices know; it loses the answer to the first Package#3.
    let front =
        ScriptServer::start(vec![(Some("/dm/s/"), Action::ForwardThenDrop)], Action::Forward, Some(upstream)).await;
    let gateway = start_gateway(listener, &front.base).await;
    let device_id = "IMEI:35000002";
    gateway.register_with_gets(device_id, 5).await;
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: format!("{}/dm", front.base) };
    let mut device = Device::new(devinfo(device_id), "s3cret", account).unwrap();
    let transport = Transport::new(device.credentials.clone()).unwrap();
    let report = run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();

    let package3s: Vec<Seen> = front.seen().into_iter().filter(|seen| seen.path.starts_with("/dm/s/")).collect();
    assert!(package3s.len() >= 3, "{package3s:?}");
    // The retransmission is the first Package#3, byte for byte, to the same URL.
    assert_eq!(package3s[0].path, package3s[1].path);
    assert_eq!(package3s[0].body, package3s[1].body);
    assert_eq!(package3s[0].method, "POST");
    assert_eq!(transport.stats().retries, 1);
    // Every command was answered once and is final; the device answered each exactly once too.
    let records = gateway.commands(device_id).await;
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|record| record.status == Some(200) && record.attempts == 1), "{records:?}");
    let answered_gets =
        report.commands.iter().filter(|command| command.command.is_some_and(|name| name.as_str() == "GET")).count();
    assert!(answered_gets >= 5, "{report:?}");
    gateway.handle.stop(true).await;
}

#[actix_rt::test]
async fn a_lost_end_is_recovered_by_resending_the_last_package3() {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    // Five GETs two per package: three Package#3s; the answer to the last one (the END) is lost.
    let script = vec![
        (Some("/dm/s/"), Action::Forward),
        (Some("/dm/s/"), Action::Forward),
        (Some("/dm/s/"), Action::ForwardThenDrop),
    ];
    let front = ScriptServer::start(script, Action::Forward, Some(upstream)).await;
    let gateway = start_gateway(listener, &front.base).await;
    let device_id = "IMEI:35000003";
    gateway.register_with_gets(device_id, 5).await;
    let account = ServerAccount { server_id: SERVER_ID.to_owned(), package1_url: format!("{}/dm", front.base) };
    let mut device = Device::new(devinfo(device_id), "s3cret", account).unwrap();
    let transport = Transport::new(device.credentials.clone()).unwrap();
    let report = run_session(&mut device, &transport, SessionRequest::default()).await.unwrap();
    assert_eq!(report.packages, 4, "{report:?}");
    let package3s: Vec<Seen> = front.seen().into_iter().filter(|seen| seen.path.starts_with("/dm/s/")).collect();
    assert_eq!(package3s.len(), 4, "{package3s:?}");
    assert_eq!(package3s[2].body, package3s[3].body);
    let records = gateway.commands(device_id).await;
    assert!(records.iter().all(|record| record.status == Some(200) && record.attempts == 1), "{records:?}");
    gateway.handle.stop(true).await;
}
