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
//! Redis (with an AOF fsynced on every write, so a restart keeps what it acknowledged) and the broker are the
//! test kit's: `OMADM_TEST_KAFKA=host:port` uses an external broker (Apache Kafka, say) and starts nothing; else
//! tansu from `OMADM_TANSU`, else `~/.cache/omadm-tools/tansu-0.6.0/bin/tansu`, else `tansu` on PATH, with the
//! storage engine of `OMADM_TANSU_STORAGE` (default `memory://tansu/`).

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

pub mod fleet;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use omadm_testkit::kafka::KafkaBroker;
use omadm_testkit::ports::free_port;
use omadm_testkit::process::{self, Output, Spawned, log_tail};
use omadm_testkit::redis::RedisServer;

/// The operator API token every gateway of the harness is started with.
pub const ADMIN_TOKEN: &str = "cluster-test-token";

/// One `omadm gateway` process.
pub struct Gateway {
    pub node_id: String,
    /// `http://127.0.0.1:P`: devices and the operator API.
    pub base: String,
    pub internal_base: String,
    /// `http://127.0.0.1:P` of the ops listener: `/metrics`, `/readyz`.
    pub ops_base: String,
    pub log: PathBuf,
    process: Spawned,
}

impl Gateway {
    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL: no shutdown code runs, the node vanishes from its peers' point of view only by silence.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM and wait (a clean leave).
    pub fn terminate(&mut self) {
        self.process.terminate(Duration::from_secs(30));
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

/// Redis, a broker and N gateways sharing them.
pub struct Cluster {
    pub redis: RedisServer,
    pub broker: KafkaBroker,
    pub gateways: Vec<Gateway>,
    pub topic_prefix: String,
    /// What every process is given as `--store`: the redis-server's URL, or a Redis Cluster's.
    pub store_url: String,
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
        Cluster::start_on(nodes, extra, None).await
    }

    /// [`Cluster::start`] with the store at `store_url` (a Redis Cluster's `redis+cluster://`) when given.
    pub async fn start_on(nodes: usize, extra: &[&str], store_url: Option<String>) -> Cluster {
        let redis = RedisServer::start_durable();
        let store_url = store_url.unwrap_or_else(|| redis.url());
        let broker = KafkaBroker::start();
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        // A prefix of its own, so runs against one external broker do not read each other's events.
        let topic_prefix = format!("omadm{}.", free_port());
        let mut cluster =
            Cluster { redis, broker, gateways: Vec::new(), topic_prefix, store_url, dir: Some(dir), http };
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
        let (port, internal_port, ops_port) = (free_port(), free_port(), free_port());
        let base = format!("http://127.0.0.1:{port}");
        let internal_base = format!("http://127.0.0.1:{internal_port}");
        let ops_base = format!("http://127.0.0.1:{ops_port}");
        let dir = self.dir.as_ref().map_or_else(std::env::temp_dir, |dir| dir.path().to_owned());
        let log = dir.join(format!("{node_id}.log"));
        let mut command = process::command(env!("CARGO_BIN_EXE_omadm"));
        command
            .arg("gateway")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--internal-listen", &format!("127.0.0.1:{internal_port}")])
            .args(["--ops-listen", &format!("127.0.0.1:{ops_port}")])
            .args(["--store", &self.store_url])
            .args(["--bus", &format!("kafka://{}", self.broker.brokers())])
            // A directory every node shares, as a volume mounted on each would be.
            .args(["--content", &dir.join("content").to_string_lossy()])
            .args(self.broker.client_setting_args())
            .args(["--admin-token", ADMIN_TOKEN])
            .args(["--public-url", &base])
            .args(["--node-id", node_id])
            .args(["--topic-prefix", &self.topic_prefix])
            .args(extra)
            .env("RUST_LOG", std::env::var("CLUSTER_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()));
        let process = Spawned::spawn(command, Output::LogFile(log.clone()));
        Gateway { node_id: node_id.to_owned(), base, internal_base, ops_base, log, process }
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
        let url = format!("{}/metrics", self.gateways[index].ops_base);
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
        if let Some(log) = self.broker.log_path() {
            out.push_str(&format!("--- broker\n{}\n", log_tail(&log, lines)));
        }
        out
    }
}
