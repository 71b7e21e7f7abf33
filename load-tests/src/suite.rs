//! One run of the harness: the baseline, then each scenario asked for, each started fresh and stopped after.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use omadm_testkit::kafka::KafkaBroker;
use omadm_testkit::process::{Output, Spawned};
use omadm_testkit::redis::RedisServer;
use serde::Serialize;

use crate::process_stats::resident_bytes;
use crate::redis_stats;
use crate::replay::PreparedRequest;
use crate::scenario::{
    ADMIN_TOKEN, Baseline, Binaries, DevsimRun, Measured, RedisCost, Settings, Target, bytes_on_disk, devsim, loopback,
    measure, package1_requests, probe_minimal_answer, queue_typical_commands, subdir, wait_ready, with_redis_cost,
};

/// Which scenarios a run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// `omadm serve`: first sessions (DevInfo + SessionInfo, by devsim), then minimal sessions (replayed).
    Embedded,
    /// One Redis and 1..N `omadm gateway` nodes (JSONL bus): minimal sessions, Redis commands per exchange.
    Cluster,
    /// One Redis, the tansu broker and one `omadm gateway` on the Kafka bus: minimal sessions.
    Kafka,
}

/// One line of the table: a rate, and its share of the baseline's.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub scenario: String,
    pub rate_per_s: f64,
    pub unit: &'static str,
    pub ratio_to_baseline: f64,
    /// The share of the baseline the scenario is meant to reach (issue targets), when one is set.
    pub target_ratio: Option<f64>,
    pub server_cpu_us_per_exchange: f64,
    pub p99_ms: Option<f64>,
    pub redis_commands_per_exchange: Option<f64>,
    pub redis_round_trips_per_exchange: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub devices: u32,
    pub connections: usize,
    pub seconds: f64,
    pub workers: usize,
    pub baseline: Measured,
    pub lines: Vec<Line>,
    /// Everything each scenario measured, by scenario.
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Runs the baseline and `scenarios`, in that order.
pub fn run(
    binaries: &Binaries,
    settings: &Settings,
    scenarios: &[ScenarioName],
    gateways: &[usize],
) -> anyhow::Result<Report> {
    let work = tempfile::Builder::new().prefix("omadm-load-").tempdir()?;
    let requests = package1_requests(settings.devices)?;
    let mut lines = Vec::new();
    let mut details = serde_json::Map::new();

    // The embedded server comes first: its probe answer is what the baseline sends back.
    let data_dir = subdir(work.path(), "embedded")?;
    let max_sessions = (u32::MAX).to_string();
    let workers = settings.workers.to_string();
    let served = omadm_testkit::process::serve(
        &binaries.omadm,
        &data_dir,
        &["--workers", &workers, "--max-sessions-per-device", &max_sessions],
    );
    let pid = served.process.id().context("omadm serve gone")?;
    eprintln!("omadm-load: omadm serve at {} (pid {pid})", served.base);
    let first = first_sessions(binaries, std::slice::from_ref(&served.base), &[pid], &served.token, settings)?;
    // Scenario 5's figures: registered devices after their first session (DevInfo and SessionInfo mirrored).
    let store_bytes = bytes_on_disk(&data_dir.join("store"));
    let memory = serde_json::json!({
        "store_bytes_on_disk": store_bytes,
        "store_bytes_per_device": store_bytes / u64::from(settings.devices),
        "server_rss_bytes": resident_bytes(pid),
    });
    let address: SocketAddr = served.base.trim_start_matches("http://").parse()?;
    let first_request = requests.first().context("no devices")?;
    let (content_type, answer) = probe_minimal_answer(address, first_request)?;

    eprintln!("omadm-load: baseline ({} workers, {} byte answers)", settings.workers, answer.len());
    let baseline_process = Baseline::start(binaries, settings.workers, &content_type, &answer)?;
    let baseline = measure(&baseline_process.target()?, &requests, settings)?;
    drop(baseline_process);
    let ratio = |rate: f64| rate / baseline.drive.requests_per_s.max(1e-9);

    if scenarios.contains(&ScenarioName::Embedded) {
        eprintln!("omadm-load: embedded, minimal sessions");
        let target = Target { addresses: vec![address], pids: vec![pid] };
        let minimal = measure(&target, &requests, settings)?;
        eprintln!("omadm-load: embedded, typical sessions (3 commands each, devsim)");
        queue_typical_commands(address, &served.token, settings.devices)?;
        let typical = typical_sessions(binaries, &served.base, pid, &served.token, settings)?;
        lines.push(devsim_line("4 first session, embedded (devsim)", &first, None, &ratio));
        lines.push(replay_line("1 minimal session, embedded", &minimal, Some(0.5), None, &ratio));
        lines.push(devsim_line("2 typical session, embedded (devsim)", &typical, Some(0.35), &ratio));
        details.insert(
            "embedded".into(),
            serde_json::json!({"first_session": first, "minimal": minimal, "typical": typical, "memory": memory}),
        );
    }
    drop(served);

    if scenarios.contains(&ScenarioName::Cluster) {
        let redis = RedisServer::start();
        // What an empty server uses, so the per-device figure is the devices' own.
        let empty = redis_stats::used_memory(&redis.url())?;
        let mut registered = false;
        let mut cluster = serde_json::Map::new();
        for &nodes in gateways {
            eprintln!("omadm-load: cluster, {nodes} gateway(s) on one Redis");
            let bus = Bus::Jsonl;
            let running = Gateways::start(
                binaries,
                work.path(),
                &format!("cluster-{nodes}"),
                nodes,
                &redis.url(),
                &bus,
                settings,
            )?;
            if !registered {
                let first = first_sessions(binaries, &running.bases, &running.pids(), ADMIN_TOKEN, settings)?;
                lines.push(devsim_line("4 first session, 1 gateway + Redis (devsim)", &first, None, &ratio));
                cluster.insert("first_session".into(), serde_json::to_value(&first)?);
                let used = redis_stats::used_memory(&redis.url())?;
                cluster.insert("redis_used_memory_bytes".into(), used.into());
                cluster.insert(
                    "redis_used_memory_per_device_bytes".into(),
                    (used.saturating_sub(empty) / u64::from(settings.devices.max(1))).into(),
                );
                registered = true;
            }
            let (minimal, cost) = running.measure_minimal(&redis, &requests, settings)?;
            lines.push(replay_line(
                &format!("3 minimal, {nodes} gateway(s) + Redis"),
                &minimal,
                Some(0.5),
                Some(&cost),
                &ratio,
            ));
            cluster.insert(format!("minimal_{nodes}_gateways"), serde_json::json!({"drive": minimal, "redis": cost}));
        }
        details.insert("cluster".into(), cluster.into());
    }

    if scenarios.contains(&ScenarioName::Kafka) {
        eprintln!("omadm-load: 1 gateway, Redis and the tansu broker");
        let redis = RedisServer::start();
        let broker = KafkaBroker::start();
        let bus = Bus::Kafka(broker.url());
        let running = Gateways::start(binaries, work.path(), "kafka", 1, &redis.url(), &bus, settings)?;
        let first = first_sessions(binaries, &running.bases, &running.pids(), ADMIN_TOKEN, settings)?;
        let (minimal, cost) = running.measure_minimal(&redis, &requests, settings)?;
        lines.push(devsim_line("4 first session, gateway + Redis + Kafka (devsim)", &first, None, &ratio));
        lines.push(replay_line("3 minimal, gateway + Redis + Kafka", &minimal, Some(0.5), Some(&cost), &ratio));
        details.insert("kafka".into(), serde_json::json!({"first_session": first, "minimal": minimal, "redis": cost}));
    }

    Ok(Report {
        machine: machine(),
        devices: settings.devices,
        connections: settings.load.connections,
        seconds: settings.load.duration.as_secs_f64(),
        workers: settings.workers,
        baseline,
        lines,
        details,
    })
}

/// Registers the fleet and gives every device its first session (DevInfo and SessionInfo): scenario 4, and
/// what makes the inventory fresh for the minimal sessions after it.
fn first_sessions(
    binaries: &Binaries,
    servers: &[String],
    pids: &[u32],
    admin_token: &str,
    settings: &Settings,
) -> anyhow::Result<DevsimRun> {
    let devices = settings.devices.to_string();
    let concurrency = settings.load.connections.to_string();
    devsim(binaries, servers, pids, admin_token, &["--devices", &devices, "--register", "--concurrency", &concurrency])
}

/// One session per device, each with the three queued commands (scenario 2).
fn typical_sessions(
    binaries: &Binaries,
    server: &str,
    pid: u32,
    admin_token: &str,
    settings: &Settings,
) -> anyhow::Result<DevsimRun> {
    let devices = settings.devices.to_string();
    let concurrency = settings.load.connections.to_string();
    devsim(binaries, &[server.to_owned()], &[pid], admin_token, &["--devices", &devices, "--concurrency", &concurrency])
}

fn devsim_line(name: &str, run: &DevsimRun, target_ratio: Option<f64>, ratio: &dyn Fn(f64) -> f64) -> Line {
    let exchanges = run.report.get("packages").and_then(serde_json::Value::as_f64).unwrap_or(0.0).max(1.0);
    Line {
        scenario: name.to_owned(),
        rate_per_s: run.sessions_per_s,
        unit: "sessions/s",
        ratio_to_baseline: ratio(run.exchanges_per_s),
        target_ratio,
        server_cpu_us_per_exchange: run.server_cpu_s * 1e6 / exchanges,
        p99_ms: run.report.pointer("/latency_ms/exchange/p99").and_then(serde_json::Value::as_f64),
        redis_commands_per_exchange: None,
        redis_round_trips_per_exchange: None,
    }
}

fn replay_line(
    name: &str,
    measured: &Measured,
    target_ratio: Option<f64>,
    cost: Option<&RedisCost>,
    ratio: &dyn Fn(f64) -> f64,
) -> Line {
    Line {
        scenario: name.to_owned(),
        rate_per_s: measured.drive.requests_per_s,
        unit: "sessions/s",
        ratio_to_baseline: ratio(measured.drive.requests_per_s),
        target_ratio,
        server_cpu_us_per_exchange: measured.server_cpu_us_per_request,
        p99_ms: Some(measured.drive.latency_ms.p99),
        redis_commands_per_exchange: cost.map(|cost| cost.commands_per_exchange),
        redis_round_trips_per_exchange: cost.map(|cost| cost.client_round_trips_per_exchange),
    }
}

/// The event bus of a cluster scenario.
enum Bus {
    /// JSONL files, a directory per node.
    Jsonl,
    Kafka(String),
}

/// `omadm gateway` nodes on one store; SIGKILLed when dropped.
struct Gateways {
    processes: Vec<Spawned>,
    bases: Vec<String>,
    ops_bases: Vec<String>,
}

impl Gateways {
    fn start(
        binaries: &Binaries,
        work: &Path,
        name: &str,
        nodes: usize,
        store: &str,
        bus: &Bus,
        settings: &Settings,
    ) -> anyhow::Result<Gateways> {
        let root = subdir(work, name)?;
        let content = subdir(&root, "content")?;
        let mut running = Gateways { processes: Vec::new(), bases: Vec::new(), ops_bases: Vec::new() };
        for node in 1..=nodes {
            let (listen, internal, ops) = (loopback(), loopback(), loopback());
            let bus_url = match bus {
                Bus::Jsonl => subdir(&root, &format!("events-{node}"))?.display().to_string(),
                Bus::Kafka(url) => url.clone(),
            };
            let mut command = omadm_testkit::process::command(&binaries.omadm);
            command
                .arg("gateway")
                .args(["--listen", &listen, "--internal-listen", &internal, "--ops-listen", &ops])
                .args(["--store", store, "--bus", &bus_url, "--admin-token", ADMIN_TOKEN])
                .arg("--content")
                .arg(&content)
                .args(["--public-url", &format!("http://{listen}"), "--node-id", &format!("node-{node}")])
                .args(["--workers", &settings.workers.to_string()])
                .args(["--max-sessions-per-device", &u32::MAX.to_string()])
                .env("RUST_LOG", "warn");
            let log = root.join(format!("node-{node}.log"));
            running.processes.push(Spawned::spawn(command, Output::LogFile(log)));
            running.bases.push(format!("http://{listen}"));
            running.ops_bases.push(format!("http://{ops}"));
        }
        for base in &running.bases {
            wait_ready(base, Duration::from_secs(60))?;
        }
        Ok(running)
    }

    /// Minimal sessions replayed over the nodes, with what Redis and the nodes counted meanwhile.
    fn measure_minimal(
        &self,
        redis: &RedisServer,
        requests: &[PreparedRequest],
        settings: &Settings,
    ) -> anyhow::Result<(Measured, RedisCost)> {
        with_redis_cost(
            &redis.url(),
            &self.ops_bases,
            |measured: &Measured| measured.drive.requests,
            || measure(&self.target(), requests, settings),
        )
    }

    fn pids(&self) -> Vec<u32> {
        self.processes.iter().filter_map(Spawned::id).collect()
    }

    fn target(&self) -> Target {
        Target {
            addresses: self.bases.iter().filter_map(|base| base.trim_start_matches("http://").parse().ok()).collect(),
            pids: self.pids(),
        }
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    Machine { cpus: std::thread::available_parallelism().map_or(1, usize::from), cpu_model, kernel }
}
