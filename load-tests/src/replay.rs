//! The load generator for single exchanges: precomputed requests replayed over keep-alive HTTP/1.1 connections.
//!
//! It plays the part wrk plays in a hand-run measurement: one thread (a current-thread tokio runtime), a fixed
//! number of connections, each sending its next request as soon as the previous answer is read. Requests are
//! built before the clock starts and rotate over the list, so the generator does no JSON work of its own and
//! its CPU time (printed) stays small next to the server's.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::process_stats::CpuTime;

/// One request to replay: path, headers and body, ready to send.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// How hard and how long to drive.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
}

/// What one drive measured.
#[derive(Debug, Clone, Serialize)]
pub struct DriveReport {
    pub requests: u64,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    /// HTTP status -> answers.
    pub statuses: BTreeMap<u16, u64>,
    /// Connections that failed (refused, reset, closed mid-answer); each is opened again.
    pub connection_errors: u64,
    pub latency_ms: Latency,
    /// CPU seconds the generator itself used (user + system).
    pub generator_cpu_s: f64,
    /// Bytes of the last answer body (the size the baseline answers with).
    pub answer_bytes: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Shared by the connection tasks of one drive (one thread, so plain cells).
struct Tally {
    next: Cell<usize>,
    requests: Cell<u64>,
    connection_errors: Cell<u64>,
    answer_bytes: Cell<usize>,
    statuses: std::cell::RefCell<BTreeMap<u16, u64>>,
    latency_us: std::cell::RefCell<Histogram<u64>>,
}

/// Sends `requests` in rotation over `load.connections` connections for `load.duration`, connection i to
/// `addresses[i % n]` (the way a load balancer spreads devices over nodes).
pub fn drive(addresses: &[SocketAddr], requests: &[PreparedRequest], load: Load) -> anyhow::Result<DriveReport> {
    anyhow::ensure!(!requests.is_empty(), "nothing to replay");
    anyhow::ensure!(!addresses.is_empty(), "nowhere to send");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cpu_before = CpuTime::of_self()?;
    let report = runtime.block_on(async {
        let local = tokio::task::LocalSet::new();
        local.run_until(drive_all(addresses, requests, load)).await
    })?;
    let cpu = CpuTime::of_self()?.since(cpu_before);
    Ok(DriveReport { generator_cpu_s: cpu, ..report })
}

async fn drive_all(addresses: &[SocketAddr], requests: &[PreparedRequest], load: Load) -> anyhow::Result<DriveReport> {
    let tally = Rc::new(Tally {
        next: Cell::new(0),
        requests: Cell::new(0),
        connection_errors: Cell::new(0),
        answer_bytes: Cell::new(0),
        statuses: Default::default(),
        latency_us: std::cell::RefCell::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
    });
    // Each node's requests, as bytes, with its own Host header: built before the clock starts.
    let wires: Vec<Rc<Vec<Bytes>>> = addresses
        .iter()
        .map(|address| Rc::new(requests.iter().map(|request| wire_bytes(request, &address.to_string())).collect()))
        .collect();
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for index in 0..load.connections {
        let tally = tally.clone();
        let address = *addresses.get(index % addresses.len()).context("no address")?;
        let wire = wires.get(index % addresses.len()).context("no requests")?.clone();
        tasks.push(tokio::task::spawn_local(async move {
            while Instant::now() < deadline {
                if connection(address, &wire, &tally, deadline).await.is_err() {
                    tally.connection_errors.set(tally.connection_errors.get() + 1);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests_done = tally.requests.get();
    let histogram = tally.latency_us.borrow();
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(DriveReport {
        requests: requests_done,
        elapsed_s: elapsed,
        requests_per_s: requests_done as f64 / elapsed,
        statuses: tally.statuses.borrow().clone(),
        connection_errors: tally.connection_errors.get(),
        latency_ms: Latency {
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        },
        generator_cpu_s: 0.0,
        answer_bytes: tally.answer_bytes.get(),
    })
}

/// One keep-alive connection, used until the deadline or until it fails.
///
/// Requests go out as precomputed bytes and answers are framed with httparse and Content-Length, as wrk does:
/// the generator's cost per request stays a few microseconds, far below the server's.
async fn connection(address: SocketAddr, wire: &[Bytes], tally: &Tally, deadline: Instant) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        let index = tally.next.get();
        tally.next.set((index + 1) % wire.len());
        let Some(request) = wire.get(index) else { continue };
        let sent = Instant::now();
        stream.write_all(request).await?;
        let (status, body_len) = read_answer(&mut stream, &mut buffer).await?;
        let took = sent.elapsed().as_micros() as u64;
        tally.requests.set(tally.requests.get() + 1);
        tally.answer_bytes.set(body_len);
        *tally.statuses.borrow_mut().entry(status).or_default() += 1;
        let _ = tally.latency_us.borrow_mut().record(took.max(1));
    }
    Ok(())
}

/// Reads one answer off `stream`: its status and body length. Bytes past it stay in `buffer`.
async fn read_answer(stream: &mut tokio::net::TcpStream, buffer: &mut BytesMut) -> anyhow::Result<(u16, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = response.parse(buffer)? {
            let status = response.code.context("no status")?;
            let mut body_len = 0usize;
            for header in response.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(header.value)?.trim().parse()?;
                } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    anyhow::bail!("chunked answers are not read by the load generator");
                }
            }
            let total = head_len + body_len;
            while buffer.len() < total {
                if stream.read_buf(buffer).await? == 0 {
                    anyhow::bail!("connection closed mid-answer");
                }
            }
            let _ = buffer.split_to(total);
            return Ok((status, body_len));
        }
        if stream.read_buf(buffer).await? == 0 {
            anyhow::bail!("connection closed");
        }
    }
}

/// `request` as the bytes of an HTTP/1.1 request to `host`.
fn wire_bytes(request: &PreparedRequest, host: &str) -> Bytes {
    let mut wire =
        format!("POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n", request.path, request.body.len());
    for (name, value) in &request.headers {
        wire.push_str(name.as_str());
        wire.push_str(": ");
        wire.push_str(&String::from_utf8_lossy(value.as_bytes()));
        wire.push_str("\r\n");
    }
    wire.push_str("\r\n");
    let mut bytes = BytesMut::from(wire.as_bytes());
    bytes.extend_from_slice(&request.body);
    bytes.freeze()
}

/// Sends one request and returns the answer's status, content type and body (the probe before a drive).
pub fn probe(address: SocketAddr, request: &PreparedRequest) -> anyhow::Result<(u16, String, Bytes)> {
    let mut builder = Request::post(request.path.as_str()).header(hyper::header::HOST, address.to_string());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    one_request(address, builder.body(Full::new(request.body.clone()))?)
}

/// `GET path` on `address`: the answer's status.
pub fn get_status(address: SocketAddr, path: &str) -> anyhow::Result<u16> {
    Ok(one_request(address, get(address, path)?)?.0)
}

/// `GET path` on `address`: the answer's body as text, refused unless 200.
pub fn get_text(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let (status, _, body) = one_request(address, get(address, path)?)?;
    anyhow::ensure!(status == 200, "GET {path} on {address}: {status}");
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `POST path` on `address` with a JSON body and a bearer token: the answer's status.
pub fn post_json(address: SocketAddr, path: &str, token: &str, body: &serde_json::Value) -> anyhow::Result<u16> {
    let request = Request::post(path)
        .header(hyper::header::HOST, address.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    Ok(one_request(address, request)?.0)
}

fn get(address: SocketAddr, path: &str) -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::get(path).header(hyper::header::HOST, address.to_string()).body(Full::new(Bytes::new()))?)
}

/// One request on a connection of its own, on a runtime of its own.
fn one_request(address: SocketAddr, request: Request<Full<Bytes>>) -> anyhow::Result<(u16, String, Bytes)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(address).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        drop(sender);
        let _ = connection.await;
        Ok((status, content_type, body))
    })
}
