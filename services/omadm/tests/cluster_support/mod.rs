//! The process harness of the cluster tests: a redis-server, a Kafka-protocol broker (tansu) and N `omadm gateway`
//! processes, each on free loopback ports with its files in a temp dir, stopped when dropped.
//!
//! Helpers wait for readiness (`/readyz`, a Redis PING, the broker's port), kill a gateway with SIGKILL, stop and
//! restart Redis or the broker on the same port, and read `/metrics`. Every wait has a deadline and fails with
//! the process's own log tail, so a test says what was missing instead of hanging.
//!
//! `CLUSTER_TEST_LOG` sets the gateways' `RUST_LOG` (default `warn`); with `CLUSTER_TEST_KEEP` set, a failed
//! test leaves the gateways' logs in a temp dir it names.
//!
//! The broker: `OMADM_TEST_KAFKA=host:port` uses an external one (Apache Kafka, say) and starts nothing; else
//! tansu from `OMADM_TANSU`, else `~/.cache/omadm-tools/tansu-0.6.0/bin/tansu`, else `tansu` on PATH, with the
//! storage engine of `OMADM_TANSU_STORAGE` (default `memory://tansu/`).

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

pub mod fleet;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The operator API token every gateway of the harness is started with.
pub const ADMIN_TOKEN: &str = "cluster-test-token";

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The last `lines` lines of a log file (empty when unreadable), for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `command` with stdout and stderr appended to `log`, and no `OMADM_*` variable of the test's own
/// environment leaking into it.
fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let out = File::options().create(true).append(true).open(log).unwrap();
    let err = out.try_clone().unwrap();
    for (name, _) in std::env::vars() {
        if name.starts_with("OMADM_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    command.spawn().unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"))
}

/// SIGTERM, then up to `grace` for the process to exit, then SIGKILL.
fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn kill_now(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A redis-server of its own: AOF with fsync on every write, so a restart on the same port and directory keeps
/// every write Redis acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut redis = RedisServer { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let child = spawn_logged(&mut command, &self.log());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited ({status}) on port {}:\n{}", self.port, log_tail(&self.log(), 20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer PING within 20 s:\n{}", self.port, log_tail(&self.log(), 20));
    }

    /// PING answered with PONG.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// Stops Redis (SIGTERM: it finishes the AOF and exits; SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Starts Redis again on the same port and directory (its AOF reloads what was acknowledged).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_now(&mut child);
        }
    }
}

/// The Kafka-protocol broker the cluster's bus runs on.
pub struct Broker {
    /// `host:port` clients bootstrap from.
    pub bootstrap: String,
    /// `None` for an external broker (`OMADM_TEST_KAFKA`), which the harness neither starts nor stops.
    local: Option<LocalBroker>,
}

struct LocalBroker {
    port: u16,
    binary: PathBuf,
    storage: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Where the tansu binary is: `OMADM_TANSU`, the tools cache, else PATH.
pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("OMADM_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    let cached = Path::new(&home).join(".cache/omadm-tools/tansu-0.6.0/bin/tansu");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("tansu")
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(external) = std::env::var("OMADM_TEST_KAFKA") {
            eprintln!("cluster harness: using the external broker at {external}");
            return Broker { bootstrap: external.trim_start_matches("kafka://").to_owned(), local: None };
        }
        let port = free_port();
        let storage = std::env::var("OMADM_TANSU_STORAGE").unwrap_or_else(|_| "memory://tansu/".to_owned());
        let mut local =
            LocalBroker { port, binary: tansu_binary(), storage, dir: tempfile::tempdir().unwrap(), child: None };
        local.launch();
        Broker { bootstrap: format!("127.0.0.1:{port}"), local: Some(local) }
    }

    /// The URL `omadm_core::bus::open` takes.
    pub fn bus_url(&self) -> String {
        format!("kafka://{}", self.bootstrap)
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// librdkafka settings every client of the test uses, as `key=value`: tansu 0.6.0 serves a fetch from inside
    /// a record batch only from the next batch on, so its producers send one record per batch; plus whatever
    /// `OMADM_TEST_KAFKA_SETTINGS` (comma separated) adds, e.g. security settings of an external broker.
    pub fn client_settings(&self) -> Vec<String> {
        let mut settings = Vec::new();
        if self.is_local() {
            settings.push("batch.num.messages=1".to_owned());
        }
        let extra = std::env::var("OMADM_TEST_KAFKA_SETTINGS").unwrap_or_default();
        settings.extend(extra.split(',').map(str::trim).filter(|setting| !setting.is_empty()).map(str::to_owned));
        settings
    }

    /// Stops the broker (SIGTERM, SIGKILL after 5 s). Panics for an external broker: a test that needs this
    /// must check [`Broker::is_local`] first.
    pub fn stop(&mut self) {
        let local = self.local.as_mut().expect("an external broker cannot be stopped by the test");
        if let Some(mut child) = local.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }

    /// Starts the broker again on the same port (with the memory engine it starts empty).
    pub fn restart(&mut self) {
        self.stop();
        self.local.as_mut().expect("an external broker cannot be restarted by the test").launch();
    }

    pub fn log(&self) -> Option<PathBuf> {
        self.local.as_ref().map(LocalBroker::log)
    }
}

impl LocalBroker {
    fn log(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn launch(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&self.binary);
        command
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", &self.storage])
            .current_dir(self.dir.path());
        let child = spawn_logged(&mut command, &self.log());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if port_open(self.port) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the broker {} exited ({status}); build it with `cargo install tansu --version 0.6.0 --locked \
                     --features dynostore --root ~/.cache/omadm-tools/tansu-0.6.0` or set OMADM_TANSU / \
                     OMADM_TEST_KAFKA:\n{}",
                    self.binary.display(),
                    log_tail(&self.log(), 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the broker did not listen on {} within 30 s:\n{}", self.port, log_tail(&self.log(), 20));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.local.as_mut().and_then(|local| local.child.as_mut()) {
            kill_now(child);
        }
    }
}

/// One `omadm gateway` process.
pub struct Gateway {
    pub node_id: String,
    /// `http://127.0.0.1:P`: devices and the operator API.
    pub base: String,
    pub internal_base: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGKILL: no shutdown code runs, the node vanishes from its peers' point of view only by silence.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_now(&mut child);
        }
    }

    /// SIGTERM and wait (a clean leave).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_now(&mut child);
        }
    }
}

/// Redis, a broker and N gateways sharing them.
pub struct Cluster {
    pub redis: RedisServer,
    pub broker: Broker,
    pub gateways: Vec<Gateway>,
    pub topic_prefix: String,
    /// The gateways' logs; kept after a failed test when `CLUSTER_TEST_KEEP` is set.
    dir: Option<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for gateway in &mut self.gateways {
            gateway.kill();
        }
        if std::thread::panicking()
            && std::env::var_os("CLUSTER_TEST_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("cluster harness: gateway logs kept in {}", dir.keep().display());
        }
    }
}

impl Cluster {
    /// Starts everything and waits until every gateway's `/readyz` answers 200. `extra` is passed to every
    /// gateway (e.g. `--max-commands-per-package 1`).
    pub async fn start(nodes: usize, extra: &[&str]) -> Cluster {
        let redis = RedisServer::start();
        let broker = Broker::start();
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        // A prefix of its own, so runs against one external broker do not read each other's events.
        let topic_prefix = format!("omadm{}.", free_port());
        let mut cluster = Cluster { redis, broker, gateways: Vec::new(), topic_prefix, dir: Some(dir), http };
        for index in 0..nodes {
            let gateway = cluster.launch_gateway(&format!("node-{}", index + 1), extra);
            cluster.gateways.push(gateway);
        }
        for index in 0..nodes {
            cluster.wait_ready(index, Duration::from_secs(60)).await;
        }
        cluster
    }

    fn launch_gateway(&self, node_id: &str, extra: &[&str]) -> Gateway {
        let (port, internal_port) = (free_port(), free_port());
        let base = format!("http://127.0.0.1:{port}");
        let internal_base = format!("http://127.0.0.1:{internal_port}");
        let dir = self.dir.as_ref().map_or_else(std::env::temp_dir, |dir| dir.path().to_owned());
        let log = dir.join(format!("{node_id}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_omadm"));
        command
            .arg("gateway")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--internal-listen", &format!("127.0.0.1:{internal_port}")])
            .args(["--redis", &self.redis.url()])
            .args(["--kafka", &self.broker.bootstrap])
            .args(self.broker.client_settings().iter().flat_map(|setting| ["--kafka-setting", setting.as_str()]))
            .args(["--admin-token", ADMIN_TOKEN])
            .args(["--public-url", &base])
            .args(["--node-id", node_id])
            .args(["--topic-prefix", &self.topic_prefix])
            .args(extra)
            .env("RUST_LOG", std::env::var("CLUSTER_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()));
        let child = spawn_logged(&mut command, &log);
        Gateway { node_id: node_id.to_owned(), base, internal_base, log, child: Some(child) }
    }

    /// The devices' view of the cluster: every gateway's public base URL.
    pub fn bases(&self) -> Vec<String> {
        self.gateways.iter().map(|gateway| gateway.base.clone()).collect()
    }

    /// `/readyz` status of gateway `index` (`None`: no answer).
    pub async fn readyz(&self, index: usize) -> Option<u16> {
        let url = format!("{}/readyz", self.gateways[index].base);
        self.http.get(url).send().await.ok().map(|response| response.status().as_u16())
    }

    /// Waits until gateway `index` is ready; fails with its log when it exits or the deadline passes.
    pub async fn wait_ready(&mut self, index: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.readyz(index).await == Some(200) {
                return;
            }
            let gateway = &mut self.gateways[index];
            if !gateway.is_running() {
                panic!("gateway {} exited before it was ready:\n{}", gateway.node_id, gateway.log_tail(30));
            }
            if Instant::now() > deadline {
                panic!("gateway {} not ready within {within:?}:\n{}", gateway.node_id, gateway.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/readyz` of gateway `index` answers `status` (e.g. 503 while Redis is down).
    pub async fn wait_readyz(&self, index: usize, status: u16, within: Duration) -> Result<Duration, Option<u16>> {
        let started = Instant::now();
        loop {
            let seen = self.readyz(index).await;
            if seen == Some(status) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                return Err(seen);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a metric line `name` (with its labels as written, e.g. `omadm_outbox_backlog` or
    /// `omadm_http_responses_total{status="503"}`) on gateway `index`, summed over the lines that start so.
    pub async fn metric(&self, index: usize, name: &str) -> Option<f64> {
        let url = format!("{}/metrics", self.gateways[index].base);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        let mut found = None;
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let matches = series == name || (series.starts_with(name) && series[name.len()..].starts_with('{'));
            if matches && let Ok(value) = value.parse::<f64>() {
                found = Some(found.unwrap_or(0.0) + value);
            }
        }
        found
    }

    /// An operator API call on gateway `index`: (status, JSON body or Null).
    pub async fn api(
        &self,
        index: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.gateways[index].base);
        let mut request = self.http.request(method, url).bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(serde_json::Value::Null);
                (status, body)
            }
            Err(error) => panic!("operator API {path} on {}: {error}", self.gateways[index].node_id),
        }
    }

    /// Logs of every process, for a failure message.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for gateway in &self.gateways {
            out.push_str(&format!("--- {} ({})\n{}\n", gateway.node_id, gateway.base, gateway.log_tail(lines)));
        }
        out.push_str(&format!("--- redis\n{}\n", log_tail(&self.redis.log(), lines)));
        if let Some(log) = self.broker.log() {
            out.push_str(&format!("--- broker\n{}\n", log_tail(&log, lines)));
        }
        out
    }
}
